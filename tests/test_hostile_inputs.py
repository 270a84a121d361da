"""Hostile and careless inputs: each one exits 2 with exactly one ``error:`` line and changes nothing on disk.

Every case builds its files in a fresh workspace, snapshots the workspace (paths, bytes, modes), runs the
CLI in-process and compares. Validation runs before any training, so no case trains a model.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from miunlearn.artefacts import model_key, store_folder
from miunlearn.cli import app
from miunlearn.config import ApproximatorConfig, load_config
from miunlearn.data import DatasetInfo, load_dataset, prepare_splits
from miunlearn.guidance.approximators import ShadowMLP
from miunlearn.guidance.per_example import PerExampleOut
from miunlearn.io import RUN_MARKER
from miunlearn.models import build_model, save_weights

runner = CliRunner()
CHEAP = ["train.epochs=1", "train.progress=false", "approximator.num_shadows=2"]


def blobs(n: int = 120, features: int = 4, classes: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, features)).astype(np.float32), rng.integers(0, classes, n).astype(np.int64)


def write_npz(path: Path, **arrays) -> Path:
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
    return path


def good_npz(ws: Path) -> Path:
    x, y = blobs()
    return write_npz(ws / "data.npz", x=x, y=y)


def run_args(ws: Path, *overrides: str, data: Path | None = None) -> list[str]:
    data = data if data is not None else good_npz(ws)
    return ["run", "data.name=npz", f"data.root={data}", *CHEAP, *overrides, "--out", str(ws / "out"), "-q"]


def with_npz(**arrays) -> Callable[[Path], list[str]]:
    def build(ws: Path) -> list[str]:
        return run_args(ws, data=write_npz(ws / "bad.npz", **arrays))
    return build


def overrides(*items: str) -> Callable[[Path], list[str]]:
    return lambda ws: run_args(ws, *items)


def yaml_file(content: bytes) -> Callable[[Path], list[str]]:
    def build(ws: Path) -> list[str]:
        (ws / "c.yaml").write_bytes(content)
        return ["run", "--config", str(ws / "c.yaml"), "--out", str(ws / "out"), "-q"]
    return build


# --- IDX (Fashion-MNIST) --------------------------------------------------------------------------------

def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + array.astype(np.uint8).tobytes()


def fashion(damage: Callable[[Path], None] | None = None, labels: int = 10) -> Callable[[Path], list[str]]:
    def build(ws: Path) -> list[str]:
        root = ws / "fm"
        root.mkdir()
        rng = np.random.default_rng(0)
        for prefix, n in (("train", 100), ("t10k", 20)):
            images, y = rng.integers(0, 255, (n, 8, 8)), rng.integers(0, labels, n)
            (root / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(images)))
            (root / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(y)))
        if damage:
            damage(root / "train-images-idx3-ubyte.gz")
        return ["run", "data.name=fashion-mnist", f"data.root={root}", *CHEAP, "--out", str(ws / "out"), "-q"]
    return build


def not_gzip(path: Path) -> None:
    path.write_bytes(gzip.decompress(path.read_bytes()))


def trailing_bytes(path: Path) -> None:
    path.write_bytes(path.read_bytes() + b"garbage!")


def truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


def short_idx(path: Path) -> None:
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-10]))


# --- Location -------------------------------------------------------------------------------------------

def location_csv(rows: int = 60, bad_row: str | None = None, label: int | None = None) -> str:
    rng = np.random.default_rng(0)
    lines = [",".join([f'"{label or rng.integers(1, 31)}"'] + [str(v) for v in rng.integers(0, 2, 446)])
             for _ in range(rows)]
    if bad_row is not None:
        lines[3] = bad_row
    return "\n".join(lines) + "\n"


def location(write: Callable[[Path], None]) -> Callable[[Path], list[str]]:
    def build(ws: Path) -> list[str]:
        root = ws / "loc"
        root.mkdir()
        write(root)
        return ["run", "data.name=location", f"data.root={root}", *CHEAP, "--out", str(ws / "out"), "-q"]
    return build


def truncated_tgz(root: Path) -> None:
    data = location_csv().encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        info = tarfile.TarInfo("bangkok")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    (root / "dataset_location.tgz").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])


# --- weights and approximators --------------------------------------------------------------------------

TABULAR = DatasetInfo("npz", (4,), 3, False)


def nan_weights(ws: Path) -> list[str]:
    model = build_model("mlp", TABULAR, 16)
    with torch.no_grad():
        model[1].weight[0, 0] = float("nan")
    save_weights(model, ws / "w.safetensors")
    return run_args(ws, "model.width=16", f"model.weights={ws / 'w.safetensors'}")


def width_mismatch(ws: Path) -> list[str]:
    save_weights(build_model("mlp", TABULAR, 8), ws / "w.safetensors")
    return run_args(ws, "model.width=16", f"model.weights={ws / 'w.safetensors'}")


def text_as_weights(ws: Path) -> list[str]:
    (ws / "w.safetensors").write_text("not weights")
    return run_args(ws, f"model.weights={ws / 'w.safetensors'}")


def approximator_file(classes: int = 3, drop: str | None = None) -> Callable[[Path], list[str]]:
    def build(ws: Path) -> list[str]:
        path = ws / "a.safetensors"
        ShadowMLP(ApproximatorConfig(hidden=4), classes).save(path)
        if drop:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as fh:
                metadata = fh.metadata()
            state = {k: v for k, v in load_file(str(path)).items() if k != drop}
            save_file(state, str(path), metadata=metadata)
        return run_args(ws, f"approximator.load={path}")
    return build


def model_as_approximator(ws: Path) -> list[str]:
    save_weights(build_model("mlp", TABULAR, 8), ws / "m.safetensors")
    return run_args(ws, f"approximator.load={ws / 'm.safetensors'}")


# --- output locations -----------------------------------------------------------------------------------

def out_is_file(ws: Path) -> list[str]:
    (ws / "notes.txt").write_text("my data")
    return run_args(ws)[:-3] + ["--out", str(ws / "notes.txt"), "--overwrite", "-q"]


def out_is_foreign_folder(ws: Path) -> list[str]:
    (ws / "thesis").mkdir()
    (ws / "thesis" / "thesis.tex").write_text("\\documentclass{article}")
    return run_args(ws)[:-3] + ["--out", str(ws / "thesis"), "--overwrite", "-q"]


def out_is_cwd(ws: Path) -> list[str]:
    return run_args(ws)[:-3] + ["--out", ".", "--overwrite", "-q"]


def out_is_parent_of_cwd(ws: Path) -> list[str]:
    return run_args(ws)[:-3] + ["--out", "..", "--overwrite", "-q"]


def out_under_a_file(ws: Path) -> list[str]:
    (ws / "plain").write_text("x")
    return run_args(ws)[:-3] + ["--out", str(ws / "plain" / "run"), "-q"]


def out_in_read_only_folder(ws: Path) -> list[str]:
    (ws / "locked").mkdir()
    os.chmod(ws / "locked", 0o555)
    return run_args(ws)[:-3] + ["--out", str(ws / "locked" / "run"), "-q"]


def out_is_link(ws: Path) -> list[str]:
    (ws / "real").mkdir()
    (ws / "real" / RUN_MARKER).write_text("{}")
    (ws / "link").symlink_to(ws / "real")
    return run_args(ws)[:-3] + ["--out", str(ws / "link"), "--overwrite", "-q"]


def out_exists_without_overwrite(ws: Path) -> list[str]:
    (ws / "old").mkdir()
    (ws / "old" / RUN_MARKER).write_text("{}")
    return run_args(ws)[:-3] + ["--out", str(ws / "old"), "-q"]


# --- run folders for audit and report -------------------------------------------------------------------

def fake_run(ws: Path, metrics: str | None = None) -> Path:
    run = ws / "run"
    (run / "models").mkdir(parents=True)
    (run / "config.yaml").write_text("data:\n  name: digits\n")
    write_npz(run / "splits.npz", train=np.arange(10), ref=np.arange(10, 20), shadow=np.arange(20, 30),
              audit=np.arange(30, 40), forget=np.arange(3), retain=np.arange(3, 10), test_size=np.array(360))
    digits = DatasetInfo("digits", (1, 8, 8), 10, True)
    save_weights(build_model("mlp", digits), run / "models" / "original.safetensors")
    (run / "metrics.json").write_text(metrics if metrics is not None else json.dumps(
        {"schema_version": 1, "dataset": {}, "sizes": {}, "models": {"original": {"test_acc": 0.5}},
         "timings_seconds": {}, "records": {}, "approximator": {}, "notes": []}))
    return run


def on_run(command: str, metrics: str | None = None, damage: Callable[[Path], None] | None = None,
           *extra: str) -> Callable[[Path], list[str]]:
    def build(ws: Path) -> list[str]:
        run = fake_run(ws, metrics)
        if damage:
            damage(run)
        return [command, str(run), *extra]
    return build


def report_read_only(ws: Path) -> list[str]:
    run = fake_run(ws)
    (ws / "locked").mkdir()
    os.chmod(ws / "locked", 0o555)
    if os.geteuid() == 0:  # root writes anyway: a path under a file fails for everyone
        return ["report", str(run), "--out", str(run / "metrics.json" / "report.html")]
    return ["report", str(run), "--out", str(ws / "locked" / "report.html")]


def corrupt_scores(run: Path) -> None:
    (run / "audit.json").write_text(json.dumps({"attacks": {}}))
    (run / "audit_scores.npz").write_bytes(b"PK\x03\x04 this is not a zip")


def corrupt_audit_json(run: Path) -> None:
    (run / "audit.json").write_text("{broken")


def corrupt_splits(run: Path) -> None:
    (run / "splits.npz").write_bytes(os.urandom(64))


def missing_split_role(run: Path) -> None:
    write_npz(run / "splits.npz", train=np.arange(10))


# --- artefact stores ------------------------------------------------------------------------------------

def damaged_store(damage: Callable[[Path], None]) -> Callable[[Path], list[str]]:
    """A run of the shadow-nn approximator whose shadow-model store ``damage`` spoiled."""
    def build(ws: Path) -> list[str]:
        args = run_args(ws, f"executor.cache_dir={ws / 'cache'}", "approximator.name=shadow-nn")
        config = load_config(None, [a for a in args if "=" in a])
        dataset = load_dataset(config.data)
        splits = prepare_splits(dataset, config.data, config.forget)
        key = model_key(config, dataset.info.num_classes, "shadow", config.seed, config.approximator.num_shadows,
                        dataset.pool.subset(splits.shadow))
        folder = store_folder("shadow-models", key, config.executor.cache_dir)
        folder.parent.mkdir(parents=True)
        damage(folder, key)
        return args
    return build


def damaged_out_store(damage: Callable[[Path], None]) -> Callable[[Path], list[str]]:
    """A run of the per-example approximator whose OUT-model store ``damage`` spoiled."""
    def build(ws: Path) -> list[str]:
        args = run_args(ws, f"executor.cache_dir={ws / 'cache'}", "approximator.name=per-example")
        config = load_config(None, [a for a in args if "=" in a])
        dataset = load_dataset(config.data)
        splits = prepare_splits(dataset, config.data, config.forget)
        folder, key, _ = PerExampleOut.store_location(config, dataset, splits)
        folder.parent.mkdir(parents=True)
        damage(folder, key)
        return args
    return build


def cache_is_a_file(ws: Path) -> list[str]:
    (ws / "cachefile").write_text("x")
    return run_args(ws, f"executor.cache_dir={ws / 'cachefile'}")


def corrupt_meta(folder: Path, key: dict) -> None:
    folder.mkdir()
    (folder / "meta.json").write_text("{not json")


def corrupt_membership(folder: Path, key: dict) -> None:
    folder.mkdir()
    (folder / "meta.json").write_text(json.dumps({"key": key}))
    (folder / "membership.npz").write_bytes(b"junk")


def store_is_a_file(folder: Path, key: dict) -> None:
    folder.write_text("x")


def foreign_store(folder: Path, key: dict) -> None:
    folder.mkdir()
    (folder / "holiday.jpg").write_bytes(b"\xff\xd8")


# --- `miunlearn forget` on image folders and torchvision datasets -----------------------------------------

def image_folder(root: Path, classes: tuple[str, ...] = ("cat", "dog", "frog"), per_class: int = 4) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(root / name / f"{i}.png")
    return root


def forget_images(train: Callable[[Path], str],
                  held_out: Callable[[Path], str] | None = None) -> Callable[[Path], list[str]]:
    """A first `forget` request whose training data is ``train(ws)`` (held-out: a good image folder unless
    ``held_out`` builds another)."""
    def build(ws: Path) -> list[str]:
        save_weights(build_model("mlp", DatasetInfo("images", (3, 8, 8), 3, True), 8), ws / "model.safetensors")
        (ws / "ids.txt").write_text("cat/0.png\n")
        held = held_out(ws) if held_out else str(image_folder(ws / "held"))
        return ["forget", str(ws / "state"), "-r", str(ws / "ids.txt"), "--model", "mlp", "--model-arg", "width=8",
                "--weights", str(ws / "model.safetensors"), "--train", train(ws), "--held-out", held, *CHEAP]
    return build


def empty_folder(ws: Path) -> str:
    (ws / "empty").mkdir()
    return str(ws / "empty")


def unreadable_image(ws: Path) -> str:
    root = image_folder(ws / "imgs")
    (root / "dog" / "2.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(64))
    return str(root)


def mixed_sizes(ws: Path) -> str:
    from PIL import Image

    root = image_folder(ws / "imgs")
    Image.fromarray(np.zeros((16, 16), dtype=np.uint8)).save(root / "frog" / "3.png")
    return str(root)


# --- downloads without a network ------------------------------------------------------------------------

def download(name: str) -> Callable[[Path], list[str]]:
    def build(ws: Path) -> list[str]:
        return ["run", f"data.name={name}", f"data.root={ws / 'new' / 'data'}", "data.download=true", *CHEAP,
                "--out", str(ws / "out"), "-q"]
    return build


x, y = blobs()
CASES: dict[str, tuple[Callable[[Path], list[str]], str]] = {
    # name: (builds the files and returns the CLI arguments, a fragment the error line must contain)
    # hyper-parameters
    "lr nan": (overrides("train.lr=.nan"), 'train.lr must be finite'),
    "lr inf": (overrides("train.lr=.inf"), 'train.lr must be finite'),
    "momentum inf": (overrides("train.momentum=.inf"), 'train.momentum must be finite'),
    "weight decay nan": (overrides("train.weight_decay=.nan"), 'train.weight_decay must be finite'),
    "remi lr nan": (overrides("unlearn.params.remi.lr=.nan"), 'unlearn.params.remi.lr must be finite'),
    "remi alpha inf": (overrides("unlearn.params.remi.alpha=.inf"), 'unlearn.params.remi.alpha must be finite'),
    "remi distill negative": (overrides("unlearn.params.remi.distill=-1"), 'remi.distill must not be negative'),
    "remi frozen names no parameter": (overrides("unlearn.params.remi.frozen=[conv9.]"),
                                       "remi.frozen: no parameter named 'conv9.'"),
    "remi frozen leaves nothing": (overrides("unlearn.params.remi.frozen=['']"),
                                   'remi.frozen leaves no parameter to train'),
    "low fpr nan": (overrides("audit.low_fpr=.nan"), 'audit.low_fpr must be finite'),
    "max cost zero": (overrides("unlearn.max_cost=0"), "unlearn.max_cost must be a positive fraction"),
    "max cost nan": (overrides("unlearn.max_cost=.nan"), "unlearn.max_cost must be finite"),
    "train fraction nan": (overrides("data.train_fraction=.nan"), 'data.train_fraction must be finite'),
    "width 0": (overrides("model.width=0"), 'model.width must be at least 1'),
    "width negative": (overrides("model.width=-5"), 'model.width must be at least 1'),
    "seed negative": (overrides("seed=-1"), 'seed must not be negative'),
    "data seed negative": (overrides("data.seed=-1"), 'data.seed must not be negative'),
    "forget seed negative": (overrides("forget.seed=-2"), 'forget.seed must not be negative'),
    "train seed negative": (overrides("train.seed=-3"), 'train.seed must not be negative'),
    "attack epochs negative": (overrides("approximator.name=shadow-nn", "approximator.attack_epochs=-5"),
                               'approximator.attack_epochs must be at least 1'),
    "hidden 0": (overrides("approximator.name=shadow-nn", "approximator.hidden=0"),
                 'approximator.hidden must be at least 1'),
    "shadow-nn field under the default": (overrides("approximator.attack_epochs=50"),
                                          "approximator.attack_epochs=50 is ignored by approximator 'folds'; "
                                          "remove it"),
    "no shadows": (overrides("approximator.num_shadows=0"), 'approximator.num_shadows must be at least 1'),
    "hidden set for gaussian": (overrides("approximator.name=gaussian", "approximator.hidden=16"),
                                "approximator.hidden=16 is ignored by approximator 'gaussian'"),
    "per-class variance for shadow-nn": (overrides("approximator.name=shadow-nn",
                                                   "approximator.per_class_variance=true"),
                                         "approximator.per_class_variance=True is ignored by approximator 'shadow-nn'"),
    "top k 0": (overrides("approximator.name=shadow-nn", "approximator.top_k=0"),
                'approximator.top_k must be at least 1'),
    "fraction in class mode": (overrides("forget.mode=class", "forget.classes=[0]", "forget.fraction=0.2"),
                               "forget.fraction=0.2 is ignored in forget mode 'class'"),
    "count in indices mode": (overrides("forget.mode=indices", "forget.indices=[1,2]", "forget.count=3"),
                              'forget.count=3 is ignored'),
    "classes in random mode": (overrides("forget.classes=[1]"), 'forget.classes=[1] is ignored'),
    "count and fraction": (overrides("forget.count=5", "forget.fraction=0.2"), 'not both'),
    "requests above forget size": (overrides("forget.requests=100000"),
                                   'forget.requests=100000 but the forget set has only'),
    "zero requests": (overrides("forget.requests=0"), 'forget.requests must be at least 1'),
    "one-sample request for the population objective": (
        overrides("approximator.name=shadow-nn", "forget.count=1", "unlearn.methods=[remi]"),
        "remi objective 'population' matches batch statistics and needs at least 2 forgotten samples, got 1"),
    "zero epochs": (overrides("train.epochs=0"), 'train.epochs must be at least 1'),
    "zero batch": (overrides("train.batch_size=0"), 'train.batch_size must be at least 1'),
    "unknown optimizer": (overrides("train.optimizer=adamw2"), "unknown optimizer 'adamw2'"),
    "unknown dataset": (overrides("data.name=nosuch"), "unknown dataset 'nosuch'"),
    "unknown model": (overrides("model.name=nosuch"), "unknown model 'nosuch'"),
    "unknown method": (overrides("unlearn.methods=[nosuch]"), "unknown unlearning method 'nosuch'"),
    "no methods": (overrides("unlearn.methods=[]"), 'unlearn.methods is empty'),
    "repeated method": (overrides("unlearn.methods=[remi,remi]"), 'repeats a method'),
    "lr not a number": (overrides("train.lr=abc"), 'train.lr must be a number'),
    "unknown key": (overrides("train.lrr=0.1"), 'did you mean train.lr?'),
    "class out of range": (overrides("forget.mode=class", "forget.classes=[99]"), 'class id(s) [99] do not exist'),
    "negative index": (overrides("forget.mode=indices", "forget.indices=[-1]"), 'out of range'),
    "cnn on tabular": (overrides("model.name=cnn"), 'needs image data'),
    "subset 0": (overrides("data.subset=0"), 'data.subset must be positive'),
    "unknown approximator": (overrides("approximator.name=nosuch"), "unknown approximator 'nosuch'"),
    "unknown audit attack": (overrides("audit.attacks=[nosuch]"), "unknown audit attack 'nosuch'"),
    "override without equals": (overrides("trainlr"), 'not of the form section.key=value'),
    "many problems at once": (overrides("train.lr=.nan", "model.width=0", "seed=-1", "approximator.hidden=0"),
                              '7 problems: '),
    # config files
    "yaml list": (yaml_file(b"- a\n- b\n"), 'must hold a mapping of sections'),
    "yaml scalar": (yaml_file(b"42\n"), 'must hold a mapping of sections'),
    "yaml not utf8": (yaml_file(b"data:\n  name: \xff\xfe\n"), 'is not UTF-8 text'),
    "yaml syntax": (yaml_file(b"data: [unclosed\n"), 'is not valid YAML'),
    "yaml missing": (lambda ws: ["run", "--config", str(ws / "nowhere.yaml"), "-q"], 'does not exist'),
    "yaml section not mapping": (yaml_file(b"train: 3\n"), "config section 'train' must be a mapping"),
    # npz data
    "npz string x": (with_npz(x=np.array(["a", "b", "c"] * 40), y=y), 'are not numeric'),
    "npz object x": (lambda ws: run_args(ws, data=_object_npz(ws)), 'is not a readable npz dataset'),
    "npz zero rows": (with_npz(x=np.zeros((0, 4), np.float32), y=np.zeros(0, np.int64)), 'have no rows'),
    "npz corrupt zip": (lambda ws: run_args(ws, data=_write(ws / "bad.npz", b"PK\x03\x04" + os.urandom(200))),
                        'is not a readable npz dataset'),
    "npz is npy": (lambda ws: run_args(ws, data=_npy(ws)), 'not an .npz archive'),
    "npz empty file": (lambda ws: run_args(ws, data=_write(ws / "bad.npz", b"")), 'is not a readable npz dataset'),
    "npz nan feature": (with_npz(x=np.where(np.arange(120)[:, None] == 7, np.nan, x).astype(np.float32), y=y),
                        '1 sample(s) of the training pool hold NaN'),
    "npz inf test feature": (with_npz(x=x, y=y, x_test=np.full((10, 4), np.inf, np.float32), y_test=y[:10]),
                             'of the test set hold NaN or infinite'),
    "npz negative test label": (with_npz(x=x, y=y, x_test=x[:10], y_test=np.r_[-1, y[:9]]),
                                "'y_test' must be non-negative"),
    "npz test label out of range": (with_npz(x=x, y=y, x_test=x[:10], y_test=np.r_[500, y[:9]]),
                                    'the test set has label(s) outside 0..2: [500]'),
    "npz float labels": (with_npz(x=x, y=y.astype(np.float32)), 'must be integers'),
    "npz missing y": (with_npz(x=x), "must hold arrays 'x' and 'y'"),
    "npz length mismatch": (with_npz(x=x, y=y[:50]), 'one label per row'),
    "npz x_test without y_test": (with_npz(x=x, y=y, x_test=x[:10]), 'or neither'),
    "npz test width differs": (with_npz(x=x, y=y, x_test=x[:10, :3], y_test=y[:10]), "must match 'x'"),
    "npz missing file": (lambda ws: run_args(ws, data=ws / "nowhere.npz"), 'does not exist'),
    # IDX files
    "gz not gzip": (fashion(not_gzip), 'train-images-idx3-ubyte.gz cannot be read'),
    "gz trailing bytes": (fashion(trailing_bytes), 'train-images-idx3-ubyte.gz cannot be read'),
    "gz truncated": (fashion(truncated), 'train-images-idx3-ubyte.gz cannot be read'),
    "idx shorter than header": (fashion(short_idx), 'train-images-idx3-ubyte.gz is truncated'),
    "idx labels out of range": (fashion(labels=12), 'label(s) outside 0..9'),
    # Location
    "location bad row": (location(lambda r: (r / "bangkok").write_text(location_csv(bad_row='"3",x,y,z'))),
                         'has a bad row'),
    "location short row": (location(lambda r: (r / "bangkok").write_text(location_csv(bad_row='"3",1,0'))),
                           'has a bad row'),
    "location binary": (location(lambda r: (r / "bangkok").write_bytes(os.urandom(4000))),
                        'cannot be read as the Location CSV'),
    "location truncated tgz": (location(truncated_tgz), 'dataset_location.tgz cannot be read'),
    "location label out of range": (location(lambda r: (r / "bangkok").write_text(location_csv(label=31))),
                                    'Location labels must be 1..30'),
    # downloads
    "cifar10 download offline": (download("cifar10"), 'could not download CIFAR-10'),
    "fashion download offline": (download("fashion-mnist"), 'could not download Fashion-MNIST'),
    # output locations
    "out is a file": (out_is_file, 'is a file or a link, not a run folder'),
    "out is a foreign folder": (out_is_foreign_folder, 'miunlearn did not write'),
    "out is cwd": (out_is_cwd, 'current folder'),
    "out is above cwd": (out_is_parent_of_cwd, 'current folder'),
    "out under a file": (out_under_a_file, 'is a file, not a folder'),
    "out in read-only folder": (out_in_read_only_folder, 'is read-only'),
    "out is a link to a run folder": (out_is_link, "is a file or a link"),
    "out exists": (out_exists_without_overwrite, 'already exists'),
    # weights and approximators
    "nan weights": (nan_weights, 'holds NaN or infinite weights'),
    "width mismatch": (width_mismatch, 'they differ in width: 8 there, 16 here'),
    "text as weights": (text_as_weights, 'not a readable .safetensors weights file'),
    "weights missing": (overrides("model.weights=/nonexistent/w.safetensors"), 'does not exist'),
    "model file as approximator": (model_as_approximator, 'is not a miunlearn approximator file'),
    "approximator lacks a tensor": (approximator_file(drop="net.0.weight"), 'net.0.weight'),
    "approximator other classes": (approximator_file(classes=7), 'was fitted for 7 classes'),
    "approximator missing": (overrides("approximator.load=/nonexistent/a.safetensors"), 'does not exist'),
    # run folders
    "report corrupt metrics": (on_run("report", "{oops"), 'metrics.json is not a readable run metrics file'),
    "audit corrupt metrics": (on_run("audit", "{oops"), 'metrics.json is not a readable run metrics file'),
    "report metrics is a list": (on_run("report", "[1, 2]"), 'a JSON object was expected'),
    "report old schema": (on_run("report", json.dumps({"models": {}})), 'schema version None'),
    "report metrics not utf8": (on_run("report", None, lambda run: (run / "metrics.json").write_bytes(b"\xff\xfe")),
                                'metrics.json is not a readable'),
    "report corrupt scores": (on_run("report", None, corrupt_scores), 'audit_scores.npz is not a readable'),
    "report corrupt audit json": (on_run("report", None, corrupt_audit_json), 'audit.json is not a readable'),
    "audit corrupt splits": (on_run("audit", None, corrupt_splits), 'splits.npz is not a readable split file'),
    "audit splits lack a role": (on_run("audit", None, missing_split_role), 'lacks ref, shadow'),
    "audit missing folder": (lambda ws: ["audit", str(ws / "nowhere")], 'does not exist'),
    "report missing folder": (lambda ws: ["report", str(ws / "nowhere")], 'has no metrics.json'),
    "report into a read-only folder": (report_read_only, "/ws/"),  # names the path it could not write
    "audit run config with nan": (on_run("audit", None, lambda run: (run / "config.yaml").write_text(
        "data:\n  name: digits\ntrain:\n  lr: .nan\n")), "train.lr must be finite"),
    "audit unknown setting": (on_run("audit", None, None, "num_refs=4"), "unknown config key 'audit.num_refs'"),
    # artefact stores
    "cache meta corrupt": (damaged_store(corrupt_meta), 'meta.json is not a readable'),
    "cache membership corrupt": (damaged_store(corrupt_membership), 'membership.npz is not a readable'),
    "cache store is a file": (damaged_store(store_is_a_file), 'is a file, not a folder of shadow models'),
    "cache dir is a file": (cache_is_a_file, "cannot create the store of fold models"),
    "cache OUT store is a file": (damaged_out_store(store_is_a_file), 'is a file, not a folder of OUT models'),
    "cache OUT store is foreign": (damaged_out_store(foreign_store), 'no meta.json'),
    "audit gamma nan": (on_run("audit", None, None, "rmia_gamma=.nan"), "rmia_gamma must be finite"),
    "audit seed negative": (on_run("audit", None, None, "seed=-4"), "seed must not be negative"),
    "cache store is foreign": (damaged_store(foreign_store), 'no meta.json'),
    # `miunlearn forget` data: image folders and torchvision datasets
    "forget empty image folder": (forget_images(empty_folder), "is not an image folder"),
    "forget class folder without images": (forget_images(lambda ws: str(image_folder(ws / "imgs", per_class=0))),
                                           "is not an image folder"),
    "forget unreadable image": (forget_images(unreadable_image), "image 'dog/2.png' cannot be read"),
    "forget images of two sizes": (forget_images(mixed_sizes), "images differ in size"),
    "forget held-out lacks a class": (forget_images(lambda ws: str(image_folder(ws / "imgs")),
                                                    lambda ws: str(image_folder(ws / "held", ("cat", "frog")))),
                                      "missing: dog"),
    "forget torchvision files absent": (forget_images(lambda ws: f"torchvision:FashionMNIST:{ws / 'fm'}"),
                                        "download=True"),
    "forget torchvision unknown dataset": (forget_images(lambda ws: f"torchvision:FashionMNIS:{ws}"),
                                           "did you mean 'FashionMNIST'?"),
    "forget unknown data format": (forget_images(lambda ws: _write(ws / "train.txt", b"1,2\n").as_posix()),
                                   "unknown data format 'txt'"),
    # usage
    "unknown command": (lambda ws: ["bogus"], "No such command 'bogus'"),
    "unknown option": (lambda ws: ["run", "--bogus"], 'No such option: --bogus'),
    "option without value": (lambda ws: ["run", "--config"], 'requires an argument'),
    "report option unknown": (lambda ws: ["report", str(ws), "--bogus"], 'No such option: --bogus'),
}


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _npy(ws: Path) -> Path:
    np.save(ws / "data.npy", x)
    return ws / "data.npy"


def _object_npz(ws: Path) -> Path:
    return write_npz(ws / "bad.npz", x=np.array([[1, "a"]] * 120, dtype=object), y=y)


def snapshot(root: Path) -> dict[str, tuple[int, bytes | None]]:
    out = {}
    for path in sorted(root.rglob("*")):
        stat = path.lstat()
        out[str(path.relative_to(root))] = (stat.st_mode, path.read_bytes() if path.is_file() else None)
    return out


def test_the_matrix_is_large_enough():
    assert len(CASES) >= 60


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_input_is_one_error_line_and_changes_nothing(case, tmp_path, monkeypatch):
    ws = tmp_path / "ws"
    (ws / "cwd").mkdir(parents=True)
    monkeypatch.chdir(ws / "cwd")
    monkeypatch.setenv("MIUNLEARN_CACHE", str(ws / "default-cache"))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    build, fragment = CASES[case]
    args = build(ws)
    before = snapshot(ws)
    result = runner.invoke(app, args)
    after = snapshot(ws)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert fragment in lines[0]
    assert "Traceback" not in result.output
    assert after == before, sorted(set(after) ^ set(before)) or "file contents changed"
