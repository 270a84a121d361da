import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from miunlearn.cli import app
from miunlearn.io import staged_run_dir

runner = CliRunner()
QUICK = ["train.epochs=5", "approximator.num_shadows=2", "unlearn.methods=[remi]"]


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "demo"
    result = runner.invoke(app, ["demo", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    return out, result.output


def test_demo_prints_the_comparison_table_within_the_terminal_width(demo_dir):
    _, output = demo_dir
    for row in ("original", "retrain", "remi"):
        assert row in output
    for word in ("forget", "AUC", "MIA-eff", "speedup", "more column(s) with --wide"):
        assert word in output
    assert max(len(line) for line in output.splitlines()) <= 80  # the runner's terminal is 80 columns wide


def test_demo_does_not_call_retraining_over_forgetting(demo_dir):
    """The demo's training labels are 30% wrong and a retrained model gets most wrong ones wrong; judged against
    clean-labelled test rows it was flagged as over-forgetting. Its yardstick is the audit rows, labelled alike."""
    out, output = demo_dir
    findings = json.loads((out / "metrics.json").read_text())["usefulness"]["methods"]
    retrain = next(f for f in findings["retrain"] if f["check"] == "over-forgetting")
    assert not retrain["flagged"], retrain["message"]
    assert retrain["numbers"]["heldout_acc_same_classes"] < 0.75  # noisy labels: well below the clean test accuracy
    assert "retrain: over-forgetting" not in output


def test_wide_table_has_every_column():
    from rich.console import Console

    from miunlearn.reporting.table import COLUMNS, print_table

    metrics = {"original": {key: 0.5 for key, _, _ in COLUMNS}, "remi": {key: 0.25 for key, _, _ in COLUMNS}}
    console = Console(width=400, record=True)
    print_table(metrics, "t", console, wide=True)
    text = console.export_text()
    assert all(header in text for _, header, _ in COLUMNS)
    console = Console(width=400, record=True)
    print_table(metrics, "t", console)
    text = console.export_text()
    assert "KL bound" not in text and "speedup" in text


def test_demo_writes_a_complete_run_folder(demo_dir):
    out, _ = demo_dir
    for name in ("config.yaml", "splits.npz", "metrics.json", "table.md", "approximator.safetensors",
                 "models/original.safetensors", "models/remi.safetensors", "models/retrain.safetensors",
                 "plots/audit_roc.png", "plots/s_histograms.png"):
        assert (out / name).is_file(), name
    for png in (out / "plots").glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["models"]) == {"original", "remi", "retrain"}
    assert metrics["records"]["remi"]["history"] and metrics["records"]["original"]["history"]
    assert not list(out.parent.glob(".*partial")), "staging folder left behind"


def rerun_demo(demo_dir, out_dir, *overrides):
    """The demo's saved run again, on its trained target and fitted approximator, with ``overrides``."""
    out, _ = demo_dir
    result = runner.invoke(app, ["run", "--config", str(out / "config.yaml"),
                                 f"model.weights={out}/models/original.safetensors",
                                 f"approximator.load={out}/approximator.safetensors", *overrides,
                                 "--out", str(out_dir), "--quiet"])
    assert result.exit_code == 0, result.output


def test_rerun_from_saved_config_and_reuse_target_and_approximator(demo_dir, tmp_path):
    out, _ = demo_dir
    rerun_demo(demo_dir, tmp_path / "again", "unlearn.methods=[remi]")
    metrics = json.loads((tmp_path / "again" / "metrics.json").read_text())
    first = json.loads((out / "metrics.json").read_text())
    assert metrics["models"]["original"]["test_acc"] == first["models"]["original"]["test_acc"]
    assert "approximator_fit" not in metrics["timings_seconds"]


def test_a_work_limit_stops_every_method_but_the_retrain_it_is_priced_on(demo_dir, tmp_path):
    rerun_demo(demo_dir, tmp_path / "limited", "unlearn.max_cost=0.001")
    records = json.loads((tmp_path / "limited" / "metrics.json").read_text())["records"]
    assert records["remi"]["stop_reason"].startswith("work limit reached (0.001 of a retrain's work")
    assert not records["retrain"]["stop_reason"].startswith("work limit")
    assert "max_cost: 0.001" in (tmp_path / "limited" / "config.yaml").read_text()


def test_list_shows_registries():
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0
    for name in ("digits", "fashion-mnist", "cifar10", "location", "npz", "mlp", "cnn", "resnet18", "vgg11_bn",
                 "shadow-nn", "gaussian", "loss-threshold", "remi", "retrain"):
        assert name in result.output


def _fails(args, message, tmp_path):
    result = runner.invoke(app, ["run", *args, "--out", str(tmp_path / "out"), "-q"])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert message in lines[0]
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args,message", [
    (["data.name=mnist"], "valid: cifar10, digits, fashion-mnist, location, npz"),
    (["model.name=resnet"], "unknown model 'resnet'"),
    (["unlearn.methods=[remi,forgetful]"], "unknown unlearning method 'forgetful'"),
    (["approximator.name=lira"], "unknown approximator 'lira'"),
    (["data.name=fashion-mnist", "data.root=/nonexistent/fm"], "looked in /nonexistent/fm"),
    (["forget.mode=indices", "forget.indices=[0,100000]"], "out of range"),
    (["forget.mode=indices", "forget.indices=[3,3]"], "repeat"),
    (["forget.mode=indices", "forget.indices=[]"], "empty"),
    (["forget.mode=random", "forget.count=575"], "all 575 training samples"),
    (["forget.mode=class", "forget.classes=[12]"], "class id(s) [12] do not exist"),
    (["unlearn.params.remi.alpha=-1"], "alpha must not be negative"),
    (["unlearn.params.remi.beta=-1"], "beta must not be negative"),
    (["train.lr=-0.1"], "train.lr must not be negative"),
    (["train.epochs=0"], "train.epochs must be at least 1"),
    (["unlearn.params.remi.epochs=0"], "remi.epochs must be at least 1"),
    (["train.lrr=0.1"], "did you mean train.lr?"),
])
def test_bad_input_is_one_clear_line(args, message, tmp_path):
    _fails(QUICK + args, message, tmp_path)


def test_weights_of_another_architecture(demo_dir, tmp_path):
    out, _ = demo_dir
    _fails(["model.name=cnn", f"model.weights={out}/models/original.safetensors", *QUICK],
           "holds weights for model 'mlp'", tmp_path)


def test_existing_run_folder_needs_overwrite(demo_dir, tmp_path):
    out, _ = demo_dir
    before = (out / "metrics.json").read_bytes()
    result = runner.invoke(app, ["demo", "--out", str(out), "-q"])
    assert result.exit_code == 2 and "already exists" in result.output and "--overwrite" in result.output
    assert (out / "metrics.json").read_bytes() == before


def test_interrupted_run_leaves_earlier_result_intact(tmp_path):
    final = tmp_path / "run"
    with staged_run_dir(final) as staging:
        (staging / "metrics.json").write_text("first")
    with pytest.raises(KeyboardInterrupt), staged_run_dir(final, overwrite=True) as staging:
        (staging / "metrics.json").write_text("half")
        raise KeyboardInterrupt
    assert (final / "metrics.json").read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["run"]
    with staged_run_dir(final, overwrite=True) as staging:
        (staging / "metrics.json").write_text("second")
    assert (final / "metrics.json").read_text() == "second"


def test_console_script_entry_point():
    result = subprocess.run([sys.executable, "-m", "miunlearn.cli", "list"], capture_output=True, text=True)
    assert result.returncode == 0 and "remi" in result.stdout


def test_results_get_the_usual_permissions(tmp_path):
    from miunlearn.io import write_json

    write_json(tmp_path / "a.json", {"x": 1})
    with staged_run_dir(tmp_path / "run") as staging:
        (staging / "f").write_text("x")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o666 & ~umask
    assert (tmp_path / "run").stat().st_mode & 0o777 == 0o777 & ~umask
