"""Does a leaderboard setting's target leak? Its seed-0 target against the setting's cached reference models.

    OMP_NUM_THREADS=1 python benchmarks/leak_check.py fashion_mnist_cnn [--references 8]

Prints one JSON line: train/test accuracy, the loss attack's AUC (D_train vs D_audit) and every reference
attack's AUC on a random 10% of D_train vs D_audit, as the leaderboard scores the original. The leaderboard
asks for a strongest reference-attack AUC of at least 0.65; its full run records the same figure per cell.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

import leaderboard as lb
import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console

from miunlearn.audit import REFERENCE_ATTACKS, ReferenceInputs, accuracy
from miunlearn.audit.reference_models import prepare_reference_models
from miunlearn.data import prepare_splits
from miunlearn.training import predict_logits, train_model


def main(argv: list[str]) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("setting")
    parser.add_argument("--references", type=int, default=8)
    args = parser.parse_args(argv)
    opts = lb.parse_args(["--settings", args.setting])
    config = lb.setting_config(args.setting, opts)
    dataset = lb.load_setting_data(args.setting, config, opts)
    splits = prepare_splits(dataset, config.data, dataclasses.replace(config.forget, mode="indices", indices=[0]))
    start = time.perf_counter()
    refs = prepare_reference_models(config, dataset, splits, args.references, 0, cache_root=opts.cache,
                                    console=Console(stderr=True))
    torch.manual_seed(0)
    model = lb.build_model(config.model.name, dataset.info, config.model.width)
    train = dataset.pool.subset(splits.train)
    train_model(model, train, dataclasses.replace(config.train, seed=0))
    model.eval()
    audit = dataset.pool.subset(splits.audit)
    members = np.sort(np.random.default_rng(1).choice(splits.train, len(splits.train) // 10, replace=False))
    scored_idx = np.r_[members, splits.audit]
    scored, pop = dataset.pool.subset(scored_idx), dataset.test
    inputs = ReferenceInputs(predict_logits(model, scored), scored.y,
                             torch.stack([predict_logits(m, scored) for m in refs.models]),
                             refs.membership_of(scored_idx), predict_logits(model, pop), pop.y,
                             torch.stack([predict_logits(m, pop) for m in refs.models]))
    n = len(members)
    aucs = {}
    for name in lb.STRONG_ATTACKS:
        s = REFERENCE_ATTACKS.get(name)().scores(inputs)
        aucs[name] = float(lb.auc_many(s[None, :n], s[None, n:])[0])
    train_logits, audit_logits = predict_logits(model, train), predict_logits(model, audit)
    loss_auc = lb.auc_many(-F.cross_entropy(train_logits, train.y, reduction="none").numpy()[None],
                           -F.cross_entropy(audit_logits, audit.y, reduction="none").numpy()[None])[0]
    result = {"setting": args.setting, "train_acc": accuracy(train_logits, train.y),
              "test_acc": accuracy(predict_logits(model, pop), pop.y), "loss_auc": float(loss_auc),
              "reference_auc": aucs, "strongest_auc": max(aucs.values()), "references": args.references,
              "seconds": time.perf_counter() - start}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
