"""`miunlearn forget` end to end, as a user with their own model class, loop, weights and arrays would run it."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from sklearn.datasets import make_classification
from typer.testing import CliRunner

import miunlearn
from miunlearn.cli import app
from miunlearn.errors import MiunlearnError
from miunlearn.guidance import load_approximator
from miunlearn.guidance.approximators import ShadowMLP
from miunlearn.guidance.per_example import PerExampleOut

SRC = Path(__file__).resolve().parents[1] / "src"
USER_MODULE = textwrap.dedent("""
    import torch
    from torch import nn

    class TwoLayer(nn.Module):
        def __init__(self, features=12, hidden=32, classes=3):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(features, hidden), nn.ReLU())
            self.head = nn.Linear(hidden, classes)

        def forward(self, x):
            return self.head(self.body(x))
""")
#: a cheap set-up: few epochs (the default per-example approximator: its OUT models), no progress bars
FAST = ["train.epochs=15", "train.progress=false"]


@pytest.fixture(scope="module")
def user(tmp_path_factory):
    """What a user brings: a module with their class, a .pt state_dict from their own loop, float64 .npz
    training and held-out files (int32 labels), and request files of row IDs."""
    root = tmp_path_factory.mktemp("user")
    (root / "usernets").mkdir()
    (root / "usernets" / "__init__.py").write_text("")
    (root / "usernets" / "mlp.py").write_text(USER_MODULE)
    x, y = make_classification(n_samples=500, n_features=12, n_informative=8, n_classes=3, flip_y=0.1, random_state=1)
    y = y.astype(np.int32)
    np.savez(root / "train.npz", x=x[:250], y=y[:250])
    np.savez(root / "held_out.npz", x=x[250:], y=y[250:])
    sys.path.insert(0, str(root))
    try:
        from usernets.mlp import TwoLayer
    finally:
        sys.path.remove(str(root))
    torch.manual_seed(0)
    model = TwoLayer()
    optimizer = torch.optim.Adam(model.parameters(), 1e-2)
    features, labels = torch.tensor(x[:250], dtype=torch.float32), torch.tensor(y[:250]).long()
    for _ in range(200):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(features), labels).backward()
        optimizer.step()
    torch.save(model.state_dict(), root / "model.pt")
    (root / "first.txt").write_text("0\n1\n2\n5\n")
    (root / "second.csv").write_text("ids\n7\n9\n11\n")
    (root / "again.txt").write_text("9, 30\n")
    return root, TwoLayer


def _cli(root: Path, *args: str, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{root}", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "miunlearn", *args], cwd=root, env=env, capture_output=True,
                          text=True, **kwargs)


def _snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(folder.rglob("*"))}


@pytest.mark.slow
def test_two_requests_a_refused_repeat_and_a_killed_request(user):
    root, two_layer = user
    state = root / "state"
    first = _cli(root, "forget", "state", "--request", "first.txt", "--model", "usernets.mlp:TwoLayer",
                 "--model-arg", "hidden=32", "--weights", "model.pt", "--train", "train.npz", "--held-out",
                 "held_out.npz", "--json", *FAST, "unlearn.remi.min_epochs=1")
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)  # stdout is one JSON document; the logs went to stderr
    assert report["request"] == 1 and report["certificate_data"]["forgotten_ids"] == [0, 1, 2, 5]
    deployment = json.loads((state / "deployment.json").read_text())
    assert deployment["settings"]["approximator"]["name"] == "per-example"  # ReMI v2's guidance by default
    with pytest.raises(MiunlearnError, match="reload it through the state folder"):  # OUT models of the user's class
        load_approximator(state / "approximator.safetensors")
    # 4 rows cannot give a population audit power: the verdict says so, and what size would (min_epochs: the
    # per-example rule finds 4 rows already like held-out ones and would return the model untouched: did-nothing)
    assert report["verdict"] == "inconclusive"
    power = report["certificate_data"]["verdict"]["findings"][0]
    assert power["check"] == "audit-power" and power["numbers"]["required_request_size"] > 4

    second = _cli(root, "forget", "state", "-r", "second.csv", "--json", "unlearn.remi.epochs=5")
    assert second.returncode == 0, second.stderr
    ledger = [json.loads(line) for line in (state / "ledger.jsonl").read_text().splitlines()]
    assert [e["ids"] for e in ledger] == [[0, 1, 2, 5], [7, 9, 11]]
    assert [e["settings"]["epochs"] for e in ledger] == [30, 5]
    assert ledger[1]["input_weights_sha256"] == ledger[0]["output_weights_sha256"]
    current = hashlib.sha256((state / "current.safetensors").read_bytes()).hexdigest()
    assert current == ledger[1]["output_weights_sha256"]

    # the outputs are ordinary files: plain safetensors/torch read them into the user's own class
    model = two_layer()
    model.load_state_dict(load_file(str(state / "requests" / "0002" / "weights.safetensors")))
    certificate = json.loads((state / "requests" / "0002" / "certificate.json").read_text())
    assert certificate["forgotten_ids"] == [7, 9, 11] and certificate["provenance"]["torch"] == torch.__version__
    assert "Verdict" in (state / "requests" / "0002" / "certificate.html").read_text()
    umask = os.umask(0)
    os.umask(umask)
    assert (state / "current.safetensors").stat().st_mode & 0o777 == 0o666 & ~umask

    before = _snapshot(state)
    repeat = _cli(root, "forget", "state", "-r", "again.txt")
    assert repeat.returncode == 2 and repeat.stderr.startswith("error:") and "Traceback" not in repeat.stderr
    assert "already forgotten" in repeat.stderr and "ID 9 by request 2" in repeat.stderr
    assert _snapshot(state) == before

    # a request killed while it unlearns (stopping rule disabled, so it runs until killed)
    (root / "third.txt").write_text("40\n41\n")
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{root}", "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "miunlearn", "forget", "state", "-r", "third.txt",
                                "unlearn.remi.epochs=100000", "unlearn.remi.min_epochs=100000"], cwd=root, env=env,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    for line in process.stderr:
        if "request 3: forgetting" in line or time.monotonic() > deadline:
            break
    time.sleep(1.0)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    assert _snapshot(state) == before

    # the next request still works, and the ledger holds exactly the applied requests
    third = _cli(root, "forget", "state", "-r", "third.txt", "--json", "unlearn.remi.epochs=3")
    assert third.returncode == 0, third.stderr
    assert [e["request"] for e in (json.loads(line) for line in (state / "ledger.jsonl").read_text().splitlines())] \
        == [1, 2, 3]
    assert not list(root.glob(".state.request-*"))


def test_an_interrupted_request_changes_nothing(user, tmp_path, monkeypatch):
    root, two_layer = user
    state = tmp_path / "state"
    miunlearn.forget(state, [3, 12], model=f"{root}/usernets/mlp.py:TwoLayer", weights=root / "model.pt",
                     train=root / "train.npz", held_out=root / "held_out.npz", settings=FAST)
    before = _snapshot(state)

    def fail(cert):
        raise KeyboardInterrupt

    monkeypatch.setattr("miunlearn.reporting.certificate.certificate_html", fail)
    with pytest.raises(KeyboardInterrupt):
        miunlearn.forget(state, [4, 6])
    assert _snapshot(state) == before
    assert not list(tmp_path.glob(".state.request-*"))


def test_api_takes_a_module_and_arrays_with_their_own_ids(user, tmp_path):
    root, two_layer = user
    with np.load(root / "train.npz") as f:
        x, y = f["x"], f["y"]  # float64 and int32, straight from scikit-learn
    with np.load(root / "held_out.npz") as f:
        held = (f["x"], f["y"])
    ids = np.array([f"user-{i}" for i in range(len(y))])
    model = two_layer()
    model.load_state_dict(torch.load(root / "model.pt", weights_only=True))
    result = miunlearn.forget(tmp_path / "state", ["user-3", "user-8"], model=model, train=(x, y, ids),
                              held_out=held, settings=FAST)
    assert result.certificate["forgotten_ids"] == ["user-3", "user-8"]
    assert isinstance(result.model, two_layer)
    with pytest.raises(MiunlearnError, match="already forgotten"):
        miunlearn.forget(tmp_path / "state", ["user-8"], model=model, train=(x, y, ids), held_out=held)
    with pytest.raises(MiunlearnError, match="not rows of the training data"):
        miunlearn.forget(tmp_path / "state", ["user-9999"], model=model, train=(x, y, ids), held_out=held)
    with pytest.raises(MiunlearnError, match="train.epochs=3 differs from the state folder's train.epochs=15"):
        miunlearn.forget(tmp_path / "state", ["user-10"], model=model, train=(x, y, ids), held_out=held,
                         settings=["train.epochs=3"])
    later = miunlearn.forget(tmp_path / "state", ["user-10", "user-11"], model=model, train=(x, y, ids),
                             held_out=held, settings=["train.device=cpu", "unlearn.remi.epochs=2"])
    assert later.request == 2 and later.certificate["method"]["settings"]["epochs"] == 2
    limited = miunlearn.forget(tmp_path / "state", ["user-13"], model=model, train=(x, y, ids), held_out=held,
                               settings=["max_cost=0.001", "unlearn.remi.min_epochs=1"])
    assert limited.certificate["method"]["stop_reason"].startswith("work limit reached (0.001 of a retrain's work")
    with pytest.raises(MiunlearnError, match="pass model="):
        miunlearn.forget(tmp_path / "state", ["user-12"], train=(x, y, ids), held_out=held)


def _in_process(root: Path, monkeypatch, *args: str):
    """The CLI in this process (no interpreter start-up), from the user's folder with it on the path."""
    monkeypatch.chdir(root)
    monkeypatch.syspath_prepend(str(root))
    return CliRunner().invoke(app, list(args))


def test_wrong_architecture_names_keys_and_shapes(user, tmp_path, monkeypatch):
    root, _ = user
    result = _in_process(root, monkeypatch, "forget", str(tmp_path / "state"), "-r", "first.txt", "--model",
                         "usernets.mlp:TwoLayer", "--model-arg", "hidden=16", "--weights", "model.pt", "--train",
                         "train.npz", "--held-out", "held_out.npz", *FAST)
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    assert "body.0.weight: file (32, 12), model (16, 12)" in result.output
    assert not (tmp_path / "state").exists()


@pytest.mark.parametrize("args,message", [
    (["--model", "usernets.mlp:Nope"], "has no 'Nope'; its nn.Module classes: TwoLayer"),
    (["--model", "nowhere.mod:Net"], "cannot import 'nowhere.mod'"),
    (["--model", "usernets.mlp:TwoLayer", "--model-arg", "depth=3"], "unexpected keyword argument 'depth'"),
    (["--model", "usernets.mlp:TwoLayer", "--held-out", "missing.npz"], "does not exist"),
    (["--model", "usernets.mlp:TwoLayer", "held_out.reference=400"], "held_out.* ask for"),
    (["--model", "usernets.mlp:TwoLayer", "approximator.attack_epochs=40"],
     "approximator.attack_epochs=40 is ignored by approximator 'per-example'"),  # forget's own default
    (["--model", "usernets.mlp:TwoLayer", "approximator.name=shadow-nn", "approximator.hidden=0"],
     "approximator.hidden must be at least 1"),
    (["--model", "usernets.mlp:TwoLayer", "approximator.name=lira"], "unknown approximator 'lira'"),
    (["--model", "usernets.mlp:TwoLayer", "max_cost=0"], "max_cost must be a positive fraction"),
    (["--model", "usernets.mlp:TwoLayer", "unlearn.remi.frozen=[neck.]"],
     "remi.frozen: no parameter named 'neck.'...; this model's top-level parameter names start with: body, head"),
])
def test_bad_first_request_is_one_line_before_any_training(user, tmp_path, monkeypatch, args, message):
    root, _ = user

    def fitted(*args, **kwargs):
        raise AssertionError("the approximator was fitted before the request was refused")

    monkeypatch.setattr(PerExampleOut, "fit_held_out", classmethod(fitted))
    base = ["forget", str(tmp_path / "state"), "-r", "first.txt", "--weights", "model.pt", "--train", "train.npz"]
    if "--held-out" not in args:
        base += ["--held-out", "held_out.npz"]
    result = _in_process(root, monkeypatch, *base, *args, *FAST)
    assert result.exit_code == 2 and result.output.startswith("error:"), result.output
    assert message in " ".join(result.output.split()) and "Traceback" not in result.output
    assert not (tmp_path / "state").exists()


def test_csv_training_file_and_pt_weights_wrapped_in_a_dict(user, tmp_path):
    root, _ = user
    with np.load(root / "train.npz") as f:
        x, y = f["x"], f["y"]
    lines = ["id,label," + ",".join(f"f{i}" for i in range(x.shape[1]))]
    lines += [f"row{i},{y[i]}," + ",".join(str(float(v)) for v in x[i]) for i in range(len(y))]
    (tmp_path / "train.csv").write_text("\n".join(lines) + "\n")
    torch.save({"state_dict": torch.load(root / "model.pt", weights_only=True), "epoch": 200}, tmp_path / "ckpt.pth")
    result = miunlearn.forget(tmp_path / "state", ["row1", "row2"], model=f"{root}/usernets/mlp.py:TwoLayer",
                              weights=tmp_path / "ckpt.pth", train=tmp_path / "train.csv",
                              held_out=root / "held_out.npz",
                              settings=[*FAST, "approximator.name=shadow-nn", "approximator.attack_epochs=40"])
    assert result.certificate["forgotten_ids"] == ["row1", "row2"]
    # the spec's shadow-model approximator, when named, is the one the state folder keeps and the next request uses
    assert json.loads((tmp_path / "state" / "deployment.json").read_text())["settings"]["approximator"]["name"] \
        == "shadow-nn"
    assert isinstance(load_approximator(tmp_path / "state" / "approximator.safetensors"), ShadowMLP)
    again = miunlearn.forget(tmp_path / "state", ["row3", "row4"], model=f"{root}/usernets/mlp.py:TwoLayer",
                             train=tmp_path / "train.csv")
    assert again.certificate["forgotten_ids"] == ["row3", "row4"]


def test_unlearn_takes_scikit_learn_arrays_as_they_come():
    """float64 features and int32 labels (what scikit-learn and many loaders give) need no casting by hand."""
    from miunlearn import TensorData, unlearn

    x, y = make_classification(n_samples=80, n_features=6, n_classes=2, random_state=0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    data = TensorData(torch.from_numpy(x), torch.from_numpy(y.astype("int32")))
    result = unlearn(model, data.subset(range(10)), data.subset(range(10, 80)), "finetune", {"epochs": 1})
    assert result.record.method == "finetune"


def test_load_weights_lists_missing_unexpected_and_mis_shaped_keys(tmp_path):
    from torch import nn

    from miunlearn.data import DatasetInfo
    from miunlearn.models import build_model, load_weights, save_weights

    save_weights(build_model("mlp", DatasetInfo("t", (4,), 3, False), 8), tmp_path / "w.safetensors")
    other = nn.Sequential(nn.Flatten(), nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3), nn.ReLU(), nn.Identity(),
                          nn.Linear(3, 3), nn.Linear(3, 3))
    with pytest.raises(MiunlearnError) as error:
        load_weights(other, tmp_path / "w.safetensors")
    message = str(error.value)
    assert "1.weight: file (8, 4), model (16, 4)" in message
    assert "missing from the file: 6.weight (3, 3)" in message
    assert "5.weight (3, 8)" in message.split("unexpected in the file:")[1]


def test_an_unknown_id_in_the_first_request_is_refused_before_any_training(user, tmp_path):
    root, _ = user
    with pytest.raises(MiunlearnError, match="not rows of the training data"):
        miunlearn.forget(tmp_path / "state", [3, 100_000], model=f"{root}/usernets/mlp.py:TwoLayer",
                         weights=root / "model.pt", train=root / "train.npz", held_out=root / "held_out.npz",
                         settings=FAST)
    assert not (tmp_path / "state").exists() and not list(tmp_path.iterdir())


def test_a_model_left_unchanged_on_purpose_is_not_reported_as_did_nothing():
    """No step taken because the stopping test already held, and no attack objects: the rows already looked
    unseen. The same unchanged model with an attack that still sees the rows stays "did-nothing"."""
    from miunlearn.audit.usefulness import Finding
    from miunlearn.deployed.forget import _verdict

    power = Finding("audit-power", False, "enough power")
    unchanged = [Finding("did-nothing", True, "did nothing: ...")]
    passed = {"loss": {"auc": 0.51, "threshold": 0.6, "passed": True}}
    failed = {"loss": {"auc": 0.70, "threshold": 0.6, "passed": False}}
    assert _verdict(passed, power, unchanged, trained_samples=0)["status"] == "nothing-to-forget"
    assert _verdict(failed, power, unchanged, trained_samples=0)["status"] == "did-nothing"
    assert _verdict(passed, power, unchanged, trained_samples=128)["status"] == "did-nothing"
    weak = Finding("audit-power", True, "the audit has no power here")
    assert _verdict(passed, weak, unchanged, trained_samples=0)["status"] == "inconclusive"
