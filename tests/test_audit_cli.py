"""`miunlearn audit` and `miunlearn report` on a finished run folder: results, cache, bad input, the HTML."""

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from miunlearn import build_model, save_weights
from miunlearn.cli import app
from miunlearn.data import DatasetInfo

runner = CliRunner()
ATTACKS = ["lira-online", "lira-offline", "rmia-online", "rmia-offline"]


@pytest.fixture(scope="module")
def audited(blobs_run, tmp_path_factory):
    """A copy of the blobs run folder, audited with 4 reference models, and its report."""
    run_dir = tmp_path_factory.mktemp("audit") / "run"
    shutil.copytree(blobs_run.out_dir, run_dir)
    cache = run_dir.parent / "cache"
    result = runner.invoke(app, ["audit", str(run_dir), f"cache_dir={cache}", "bootstrap=30", "-q"])
    assert result.exit_code == 0, result.output
    report = runner.invoke(app, ["report", str(run_dir)])
    assert report.exit_code == 0, report.output
    return run_dir, cache, result.output


def test_audit_scores_every_model_with_every_attack(audited):
    run_dir, _, output = audited
    audit = json.loads((run_dir / "audit.json").read_text())
    assert set(audit["attacks"]) == set(ATTACKS)
    for attack in ATTACKS:
        by_model = audit["attacks"][attack]
        assert set(by_model) == {"original", "remi", "retrain"}
        for r in by_model.values():
            assert 0 <= r["auc"] <= 1 and r["auc_ci"][0] <= r["auc_ci"][1]
            assert r["tpr_at_0.1%fpr"] is None  # fewer than 1000 non-members: said, not guessed
        # The original model trained on D_f; the retrained one did not.
        assert by_model["original"]["auc"] > by_model["retrain"]["auc"]
    assert audit["references"]["count"] == 4 and audit["references"]["trained_now"] == 4
    assert "remi" in audit["comparison"]["lira-online"]
    assert "Strongest attack" in output


def test_reference_models_are_cached_and_reused(audited):
    run_dir, cache, _ = audited
    again = runner.invoke(app, ["audit", str(run_dir), f"cache_dir={cache}", "bootstrap=0",
                                "attacks=[rmia-online]", "-q"])
    assert again.exit_code == 0, again.output
    audit = json.loads((run_dir / "audit.json").read_text())
    assert audit["references"]["trained_now"] == 0
    folder = Path(audit["references"]["folder"])
    assert (folder / "membership.npz").is_file() and len(list(folder.glob("ref-*.safetensors"))) == 4
    # Restore the full audit for the report tests.
    assert runner.invoke(app, ["audit", str(run_dir), f"cache_dir={cache}", "bootstrap=30", "-q"]).exit_code == 0


def test_markdown_summary_and_html_are_written(audited):
    run_dir, _, _ = audited
    runner.invoke(app, ["report", str(run_dir)])
    markdown = (run_dir / "report.md").read_text()
    assert "Strong audit" in markdown and "lira-online" in markdown and "retrain" in markdown
    page = (run_dir / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 5
    assert "<script" not in page and "http" not in page.replace("http-equiv", "")  # self-contained


def _fails(args, message):
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert message in lines[0], lines[0]
    assert "Traceback" not in result.output


def test_bad_input_is_one_line(audited, tmp_path):
    run_dir, cache, _ = audited
    incomplete = tmp_path / "incomplete"
    shutil.copytree(run_dir, incomplete, ignore=shutil.ignore_patterns("models"))
    _fails(["audit", str(incomplete), f"cache_dir={cache}"], "lacks models/original.safetensors")
    _fails(["audit", str(tmp_path / "nowhere")], "does not exist")
    _fails(["report", str(tmp_path)], "has no metrics.json")
    _fails(["audit", str(run_dir), "num_references=1", "attacks=[lira-online]"], "too few reference models")
    _fails(["audit", str(run_dir), "attacks=[lira]"], "unknown reference attack 'lira'")
    _fails(["audit", str(run_dir), "num_refs=4"], "unknown config key 'audit.num_refs'")


def test_reference_models_of_another_setup_or_architecture_are_refused(audited, tmp_path):
    run_dir, cache, _ = audited
    folder = Path(json.loads((run_dir / "audit.json").read_text())["references"]["folder"])
    other = tmp_path / "refs"
    shutil.copytree(folder, other)
    meta = json.loads((other / "meta.json").read_text())
    meta["key"]["model"]["name"] = "cnn"
    (other / "meta.json").write_text(json.dumps(meta))
    _fails(["audit", str(run_dir), f"references_dir={other}"], "were made for another set-up (model.name: 'cnn'")



def test_a_swapped_reference_model_fails_its_digest_and_is_retrained(audited, tmp_path):
    """A weights file that does not match the sha256 stored beside it is never loaded: it is retrained."""
    run_dir, _, _ = audited
    before = json.loads((run_dir / "audit.json").read_text())
    swapped = tmp_path / "swapped"
    shutil.copytree(before["references"]["folder"], swapped)
    save_weights(build_model("mlp", DatasetInfo("digits", (64,), 10, False)), swapped / "ref-00.safetensors")
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    result = runner.invoke(app, ["audit", str(copy), f"references_dir={swapped}", "bootstrap=30", "-q"])
    assert result.exit_code == 0, result.output
    after = json.loads((copy / "audit.json").read_text())
    assert after["references"]["trained_now"] == 1
    assert after["attacks"] == before["attacks"]


@pytest.mark.slow
def test_ulira_and_challenge_on_a_tiny_run(audited, tmp_path):
    run_dir, cache, _ = audited
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    result = runner.invoke(app, ["audit", str(copy), f"cache_dir={cache}", "attacks=[lira-online]", "bootstrap=0",
                                 "ulira=true", "challenge_copies=2", "-q"])
    assert result.exit_code == 0, result.output
    audit = json.loads((copy / "audit.json").read_text())
    assert 0 <= audit["ulira"]["remi"]["auc"] <= 1
    # ReMI re-ran on each reference model with folds fitted on that model's own training set, not the run's
    stores = Path(os.environ["MIUNLEARN_CACHE"]) / "fold-models"  # the run's cache (conftest)
    owners = [json.loads(m.read_text())["key"] for m in stores.glob("*/meta.json")]
    assert sum(key["pool"] == "owner-folds" for key in owners) == 4  # one per reference model (all hold some of D_f)
    challenge = audit["challenge"]["remi"]
    assert 0 <= challenge["forgetting_quality"] <= 1 and challenge["copies"] == 2
    assert "U-LiRA" in result.output


CHROMIUM = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
IMAGE_CHECK = """<script>window.addEventListener('load', () => {
  const imgs = [...document.images];
  const ok = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
  document.body.setAttribute('data-images', ok + '/' + imgs.length);
  const verdict = document.getElementById('verdict').getBoundingClientRect();
  document.body.setAttribute('data-verdict', Math.ceil(verdict.top) + '-' + Math.ceil(verdict.bottom) + '/'
                                             + window.innerHeight);
});</script>"""


def _chromium(*args: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                               "--disable-background-networking", "--disable-component-update", "--no-first-run",
                               "--disable-sync",
                               f"--user-data-dir={profile}", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(CHROMIUM is None, reason="no headless browser (chromium) installed; `make test` installs "
                                             "Debian's chromium when it runs as root with apt-get")
def test_report_renders_with_its_images_in_a_headless_browser(audited, tmp_path):
    run_dir, _, _ = audited
    page = (run_dir / "report.html").read_text()
    probe = tmp_path / "probe.html"  # the report plus a script that counts decoded images
    probe.write_text(page.replace("</body>", IMAGE_CHECK + "</body>"))
    dom = _chromium("--dump-dom", "--window-size=1280,800", probe.as_uri())
    match = re.search(r'data-images="(\d+)/(\d+)"', dom.stdout)
    assert match, dom.stderr[-2000:]
    loaded, total = map(int, match.groups())
    assert total >= 5 and loaded == total
    assert "Strong audit" in dom.stdout
    # the verdict is the first thing a reader sees: whole, without scrolling, in a 1280x800 window
    top, bottom, viewport = map(int, re.search(r'data-verdict="(\d+)-(\d+)/(\d+)"', dom.stdout).groups())
    assert 0 <= top < bottom <= viewport

    shot = tmp_path / "shot.png"
    _chromium(f"--screenshot={shot}", "--window-size=1200,2000", (run_dir / "report.html").as_uri())
    assert shot.is_file() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_ulira_refuses_a_request_of_whole_classes_before_any_training():
    """No reference model is one that never saw a class (they train on halves of D_train ∪ D_audit): U-LiRA's
    reference distribution would not be the retrain's, so a class request gets an error, not a number."""
    from types import SimpleNamespace

    import numpy as np
    import torch

    from miunlearn import MiunlearnError
    from miunlearn.audit.strong import StrongAuditConfig, _check_extras
    from miunlearn.data import Splits, TensorData

    empty = np.array([], dtype=np.int64)
    pool = TensorData(torch.zeros(6, 2), torch.tensor([0, 0, 1, 1, 2, 2]))
    replay = SimpleNamespace(check=lambda run, name: None)

    def run(forget: list[int]) -> SimpleNamespace:
        return SimpleNamespace(models={"original": None, "remi": None, "retrain": None}, path=Path("run"),
                               dataset=SimpleNamespace(pool=pool),
                               splits=Splits(np.arange(6), empty, empty, empty, np.array(forget), 0))

    with pytest.raises(MiunlearnError, match=r"removes whole classes \(0\).*without ulira=true"):
        _check_extras(run([0, 1]), StrongAuditConfig(ulira=True), replay)
    _check_extras(run([0, 2]), StrongAuditConfig(ulira=True), replay)  # samples of classes D_r keeps: fine
    _check_extras(run([0, 1]), StrongAuditConfig(), replay)  # without U-LiRA a class request is audited as usual
