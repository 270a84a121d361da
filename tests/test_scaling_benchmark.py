"""The scaling benchmark end to end at its smallest setting (digits), so the full run cannot break unnoticed."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import scaling  # noqa: E402

DIGITS = ["data.name=digits", "data.root=null", "data.test_subset=null", "train.augment=false", "train.epochs=3",
          "approximator.num_shadows=2", "unlearn.params.remi.epochs=3"]


@pytest.mark.slow
def test_smallest_setting_reuses_one_target_and_states_work_against_the_floor(tmp_path):
    scaling.main(["cifar10_cnn", *DIGITS, "--train-sizes", "250", "--sweep-at", "250", "--forget", "0.1,class",
                  "--out", str(tmp_path)])
    record = json.loads((tmp_path / "scaling.json").read_text())
    assert record["command"] and record["date"] and record["machine"]["cpu"] is not None
    first, whole_class = record["points"]
    assert (first["forget"], first["reused_target"], whole_class["reused_target"]) == ("0.1", False, True)
    assert whole_class["forget_size"] + whole_class["retain_size"] == 250
    for point in record["points"]:
        remi, retrain = point["methods"]["remi"], point["methods"]["retrain"]
        assert retrain["samples_trained"] == retrain["floor"] == 3 * point["retain_size"]
        assert remi["floor"] > point["forget_size"] and remi["work"] > 0
        assert remi["speedup"] == pytest.approx(retrain["seconds"] / remi["seconds"])
        assert point["peak_rss_mib"] > 0
    assert (tmp_path / "scaling.png").stat().st_size > 10_000
