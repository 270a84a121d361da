"""Command-line conventions: version, -h, python -m, --json on every command, config show, lazy imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from miunlearn import __version__
from miunlearn.cli import app

runner = CliRunner()
SRC = Path(__file__).resolve().parents[1] / "src"
COMMANDS = ["demo", "run", "audit", "report", "forget", "list", "config show"]


def _python(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env)


def test_help_imports_neither_torch_nor_the_package_internals():
    """What makes `miunlearn --help` quick: the command line loads PyTorch only inside a command."""
    probe = _python("-c", "import sys; from miunlearn.cli import app; import miunlearn; "
                          "print(sorted(m for m in ('torch', 'numpy', 'matplotlib', 'miunlearn.pipeline') "
                          "if m in sys.modules))")
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "[]"


def test_python_dash_m_and_version():
    result = _python("-m", "miunlearn", "--version")
    assert result.returncode == 0 and result.stdout.strip() == f"miunlearn {__version__}"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_short_help_examples_and_json(command):
    result = runner.invoke(app, [*command.split(), "-h"])
    assert result.exit_code == 0, result.output
    assert "Example" in result.output and "--json" in result.output


def test_shell_completion_is_offered():
    result = runner.invoke(app, ["--help"])
    assert "--install-completion" in result.output and "--show-completion" in result.output


def test_list_json_is_a_document_of_registries():
    result = runner.invoke(app, ["list", "--json"])
    assert result.exit_code == 0
    registries = json.loads(result.stdout)
    assert "remi" in registries["methods"] and "npz" in registries["datasets"]


def test_config_show_prints_defaults_with_their_documentation():
    from miunlearn.config import RunConfig, load_config

    result = runner.invoke(app, ["config", "show"])
    assert result.exit_code == 0
    assert "# Master seed" in result.stdout and "epochs: 30" in result.stdout
    assert "miunlearn config show --section forget" in result.stdout
    section = runner.invoke(app, ["config", "show", "--section", "train"])
    assert section.stdout.startswith("# The training recipe") and "data:" not in section.stdout
    forget = runner.invoke(app, ["config", "show", "-s", "forget", "--json"])
    assert json.loads(forget.stdout)["forget"]["held_out"] == {"reference": None, "shadow": None, "audit": None,
                                                                "seed": 0}
    # the JSON defaults are the dataclasses' defaults, and load back as a config
    defaults = json.loads(runner.invoke(app, ["config", "show", "--json"]).stdout)
    assert defaults["train"] == json.loads(json.dumps(RunConfig().train.__dict__))
    assert load_config(None, [f"train.epochs={defaults['train']['epochs']}"]).train.epochs == 30


def test_config_show_unknown_section_is_one_line():
    result = runner.invoke(app, ["config", "show", "--section", "trian"])
    assert result.exit_code == 2 and result.output.startswith("error: unknown config section 'trian'")


def test_run_json_is_the_results_on_stdout(tmp_path):
    result = runner.invoke(app, ["run", "train.epochs=3", "approximator.num_shadows=2",
                                 "unlearn.methods=[finetune]", "train.progress=false", "--out", str(tmp_path / "r"),
                                 "--json", "-q"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert set(document["metrics"]) == {"original", "finetune"}
    assert {f["check"] for f in document["usefulness"]["methods"]["finetune"]} == {"did-nothing", "over-forgetting"}
    assert document["out_dir"] == str(tmp_path / "r")
