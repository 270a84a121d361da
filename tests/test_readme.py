"""The README's Python example must run as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_api_example_runs(capsys):
    block = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    exec(compile(block, "README.md", "exec"), {})
    assert re.search(r"in \d+\.\d+s", capsys.readouterr().out)


def test_readme_own_model_example_runs(capsys):
    """The "your own model" example: a plain nn.Module, sklearn's float64 arrays, one deletion request."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    block = next(b for b in blocks if "miunlearn.forget(" in b)
    exec(compile(block, "README.md", "exec"), {})
    out = capsys.readouterr().out
    statuses = "forgotten|nothing-to-forget|inconclusive|not-forgotten|did-nothing|over-forgetting"
    assert re.search(rf"^({statuses}) - ", out, re.M)
    assert "new weights:" in out
