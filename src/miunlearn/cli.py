"""The ``miunlearn`` command line: ``demo``, ``run``, ``audit``, ``report``, ``forget``, ``list`` and ``config``.

Only Typer and rich are imported up front; each command imports what it needs, so ``--help`` is quick.
Every command takes ``--json`` (one JSON document on stdout; logs stay on stderr).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from miunlearn import __version__
from miunlearn.errors import MiunlearnError


class OneLineErrors(TyperGroup):
    """Usage errors (unknown command or option, bad value) and file-system refusals as one ``error:`` line and
    exit 2, not a box or a traceback."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):  # noqa: ANN201 (click's signature)
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except typer.Abort:
            typer.echo("error: aborted", err=True)
            code = 1
        except OSError as exc:  # the file system refused a read or write the checks could not foresee
            where = f": {exc.filename}" if exc.filename else ""
            typer.echo(f"error: {exc.strerror or exc}{where}", err=True)
            code = 2
        except typer.TyperException as exc:  # typer's click exceptions: usage errors and the like
            ctx, code = getattr(exc, "ctx", None), getattr(exc, "exit_code", 2)
            if type(exc).__name__ == "NoArgsIsHelpError":  # bare `miunlearn`: the help, as before
                typer.echo(ctx.get_help())
            else:
                where = f" (see {ctx.command_path} --help)" if ctx is not None else ""
                typer.echo(f"error: {exc.format_message()}{where}", err=True)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(no_args_is_help=True, cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]},
                  help="Machine unlearning guided by membership inference, audited against retraining.")
err = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        print(f"miunlearn {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Print the version and exit.")] = False) -> None:
    """Machine unlearning guided by membership inference, audited against retraining."""


JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout (logs stay on stderr).")]
WideOption = Annotated[bool, typer.Option("--wide", help="Show every column of the table (default: the main ones).")]


def _emit(data: Any) -> None:
    """The ``--json`` document, on stdout."""
    print(json.dumps(data, indent=2, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


@contextlib.contextmanager
def _working(console: Console, text: str) -> Iterator[None]:
    """A spinner on an interactive stderr that shows the latest log line, so no step runs in silence."""
    if console.quiet or not console.is_terminal:
        yield
        return
    with console.status(text) as status:
        log = console.log

        def log_and_show(*objects: Any, **kwargs: Any) -> None:
            log(*objects, _stack_offset=2, **kwargs)
            status.update(f"{objects[0]} …" if objects else text)

        console.log = log_and_show  # type: ignore[method-assign]
        try:
            yield
        finally:
            del console.log

OutOption = Annotated[Path | None, typer.Option("--out", help="Run folder to write (default: runs/<name>-<time>).")]
OverwriteOption = Annotated[bool, typer.Option("--overwrite", help="Replace an existing run folder.")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress log.")]
OverridesArgument = Annotated[list[str] | None,
                              typer.Argument(help="section.key=value overrides, e.g. train.lr=0.1")]


def _default_out(prefix: str) -> Path:
    return Path("runs") / f"{prefix}-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"


def _execute(config_path: Path | None, overrides: list[str], out: Path | None, overwrite: bool, quiet: bool,
             title: str, prefix: str, as_json: bool = False, wide: bool = False) -> Path:
    from miunlearn.config import load_config
    from miunlearn.pipeline import run_experiment, show

    console = Console(stderr=True, quiet=quiet)
    try:
        config = load_config(config_path, overrides)
        with _working(console, f"{prefix}: starting"):
            run = run_experiment(config, out or _default_out(prefix), overwrite, console)
    except MiunlearnError as exc:
        raise _fail(exc) from None
    if as_json:
        _emit({"out_dir": str(run.out_dir), "metrics": run.metrics, "notes": run.notes, "usefulness": run.usefulness,
               "timings_seconds": run.timings, "requests": run.requests})
    else:
        show(run, title, wide=wide)
    return run.out_dir


#: The demo's target memorises: 30% of the digits' training labels are wrong and it trains 100 epochs without
#: weight decay, so membership leaks (loss-attack AUC on D_f well above 0.5) and forgetting has something to do.
#: ReMI is guided by the default approximator, folds (one model per fold of D_train left out).
DEMO = ["data.label_noise=0.3", "train.weight_decay=0", "train.epochs=100"]


@app.command(epilog="Examples:\n  miunlearn demo --out runs/demo\n  miunlearn demo --json > demo.json")
def demo(out: OutOption = None, overwrite: OverwriteOption = False, quiet: QuietOption = False,
         as_json: JsonOption = False, wide: WideOption = False) -> None:
    """Digits (30% noisy labels) + MLP: forget 10% at random, compare ReMI with retraining, audit both."""
    from miunlearn.audit.strong import run_strong_audit

    run_dir = _execute(None, DEMO, out, overwrite, quiet, "miunlearn demo: digits with 30% noisy labels, mlp, "
                       "forget 10% at random", "demo", as_json, wide)
    try:
        report = run_strong_audit(run_dir, console=Console(stderr=True, quiet=quiet))
    except MiunlearnError as exc:
        raise _fail(exc) from None
    # With --json, stdout holds the run's JSON only; the verdicts are in RUN_DIR/audit.json and on stderr.
    console = Console(stderr=as_json)
    for model, verdict in report["verdicts"].items():
        console.print(f"[bold]verdict[/bold] ({model}, LiRA + RMIA with the auditor's own reference models): "
                      f"{verdict['sentence']}", highlight=False)


@app.command(epilog="Examples:\n  miunlearn run --config benchmarks/configs/fashion_mnist_cnn.yaml\n"
                    "  miunlearn run data.name=npz data.root=mine.npz forget.fraction=0.05 --out runs/mine\n"
                    "  miunlearn run forget.mode=class forget.classes=[3] unlearn.methods=\\[salun,retrain] --wide")
def run(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML run config.")] = None,
    overrides: OverridesArgument = None,
    out: OutOption = None,
    overwrite: OverwriteOption = False,
    quiet: QuietOption = False,
    as_json: JsonOption = False,
    wide: WideOption = False,
) -> None:
    """Run any dataset/model/forget scenario from a config file plus key=value overrides."""
    _execute(config, overrides or [], out, overwrite, quiet, f"miunlearn run {config or ''}".strip(), "run", as_json,
             wide)


RunDirArgument = Annotated[Path, typer.Argument(help="A run folder written by `miunlearn run` or `miunlearn demo`.")]


def _fail(exc: MiunlearnError) -> typer.Exit:
    # the message is plain text: a path's "[x]" is not markup, "torchvision:X:root:train:" holds no emoji
    err.print(f"[bold red]error:[/bold red] {escape(str(exc))}", highlight=False, soft_wrap=True, emoji=False)
    return typer.Exit(2)


@app.command(epilog="Examples:\n  miunlearn audit runs/demo\n"
                    "  miunlearn audit runs/demo num_references=8 attacks=\\[lira-online,rmia-offline]")
def audit(
    run_dir: RunDirArgument,
    overrides: Annotated[list[str] | None, typer.Argument(
        help="key=value settings (StrongAuditConfig fields), e.g. num_references=8 variance=per-example "
             "ulira=true challenge_copies=8")] = None,
    quiet: QuietOption = False,
    as_json: JsonOption = False,
) -> None:
    """Strong audit of a run: LiRA and RMIA with the auditor's own reference models; writes audit.json."""
    from miunlearn.audit.strong import audit_config, run_strong_audit
    from miunlearn.reporting.html import print_audit
    from miunlearn.unlearning.replay import RunReplay

    console = Console(stderr=True, quiet=quiet)
    try:
        with _working(console, "audit: starting"):
            report = run_strong_audit(run_dir, audit_config(overrides), console, RunReplay())
    except MiunlearnError as exc:
        raise _fail(exc) from None
    if as_json:
        _emit(report)
        return
    print_audit(report, Console())
    Console().print(f"written: {run_dir / 'audit.json'}")


@app.command(epilog="Examples:\n  miunlearn report runs/demo\n  miunlearn report runs/demo --out /tmp/demo.html")
def report(
    run_dir: RunDirArgument,
    out: Annotated[Path | None, typer.Option("--out", help="HTML file (default: RUN_DIR/report.html).")] = None,
    as_json: JsonOption = False,
) -> None:
    """A self-contained HTML report (tables and plots) and a Markdown summary of a run and its audit."""
    from miunlearn.reporting.html import write_report

    try:
        html_path, md_path = write_report(run_dir, out)
    except MiunlearnError as exc:
        raise _fail(exc) from None
    if as_json:
        _emit({"html": str(html_path), "markdown": str(md_path)})
        return
    Console().print(f"written: {html_path} and {md_path}")


FORGET_EXAMPLES = """Examples:
  # first request: creates state/ and fits the approximator once
  miunlearn forget state/ -r ids.txt --model mynets.py:TwoLayer \\
      --model-arg hidden=64 --weights model.pt --train train.npz \\
      --held-out held_out.npz train.epochs=20
  # later requests: only the IDs
  miunlearn forget state/ -r more_ids.csv
  # with a retrained comparator, as JSON
  miunlearn forget state/ -r ids.txt --retrain --json"""


@app.command(epilog=FORGET_EXAMPLES)
def forget(
    state: Annotated[Path, typer.Argument(help="The deployed model's state folder (created by the first request).")],
    request: Annotated[Path, typer.Option("--request", "-r", help="File of row IDs to forget: one per line, a CSV "
                                          "with an 'ids' column, a JSON list, or .npy/.npz.")],
    model: Annotated[str | None, typer.Option("--model", help="First request: a registered model name, "
                                              "package.module:Class or path/to/file.py:Class.")] = None,
    model_arg: Annotated[list[str] | None, typer.Option("--model-arg", help="key=value keyword argument of the "
                                                        "model class (repeatable).")] = None,
    weights: Annotated[Path | None, typer.Option("--weights", help="First request: the deployed weights, "
                                                 ".safetensors or a .pt/.pth state_dict.")] = None,
    train: Annotated[Path | None, typer.Option("--train", help="The rows the model was trained on: .npz x,y[,ids], "
                                               ".csv, an image folder (root/class/img.png; IDs are paths relative "
                                               "to root) or torchvision:NAME:ROOT[:train|test]; IDs are its 'ids' "
                                               "or row numbers.")] = None,
    held_out: Annotated[Path | None, typer.Option("--held-out", help="First request: rows the model never saw "
                                                  "(any form --train takes), divided into reference/shadow/audit "
                                                  "by held_out.*.")] = None,
    reference: Annotated[Path | None, typer.Option("--reference", help="... or the reference rows ...")] = None,
    shadow: Annotated[Path | None, typer.Option("--shadow", help="... the approximator's rows (shadow) ...")] = None,
    audit_rows: Annotated[Path | None, typer.Option("--audit", help="... and the audit rows, as files.")] = None,
    method: Annotated[str, typer.Option("--method", help="Unlearning method (see `miunlearn list`).")] = "remi",
    retrain: Annotated[bool, typer.Option("--retrain", help="Also retrain from scratch on what remains, and "
                                          "compare (costs a full training).")] = False,
    label_column: Annotated[str | None, typer.Option("--label-column", help="CSV label column (default: label, y, "
                                                     "target or class).")] = None,
    overrides: Annotated[list[str] | None, typer.Argument(help="section.key=value settings (`miunlearn config "
                                                          "show --section forget`), e.g. train.epochs=20 "
                                                          "unlearn.remi.epochs=60")] = None,
    quiet: QuietOption = False,
    as_json: JsonOption = False,
) -> None:
    """Forget rows of a deployed model's training data: new weights, a certificate and a ledger entry."""
    from miunlearn.config import parse_overrides
    from miunlearn.deployed import forget as apply_request

    console = Console(stderr=True, quiet=quiet)
    try:
        with _working(console, "forget: reading the inputs"):
            result = apply_request(state, request, model=model, model_args=parse_overrides(model_arg or []),
                                   weights=weights, train=train, held_out=held_out, reference=reference,
                                   shadow=shadow, audit=audit_rows, method=method, settings=overrides or [],
                                   retrain=retrain, label_column=label_column, console=console)
    except MiunlearnError as exc:
        raise _fail(exc) from None
    paths = {"weights": str(result.weights), "certificate": str(result.certificate_path),
             "html": str(result.html_path), "current": str(state / "current.safetensors"),
             "ledger": str(state / "ledger.jsonl")}
    if as_json:
        _emit({"request": result.request, "verdict": result.certificate["verdict"]["status"], **paths,
               "certificate_data": result.certificate})
        return
    from miunlearn.reporting.table import print_certificate

    print_certificate(result.certificate, paths, Console())


@app.command("list", epilog="Examples:\n  miunlearn list\n  miunlearn list --json")
def list_components(as_json: JsonOption = False) -> None:
    """Show the registered datasets, models, approximators, unlearning methods, audit attacks and data formats."""
    from miunlearn import APPROXIMATORS, AUDIT_ATTACKS, DATASETS, METHODS, MODELS
    from miunlearn.audit import REFERENCE_ATTACKS
    from miunlearn.data import FORGET_SELECTORS
    from miunlearn.deployed.inputs import READERS
    from miunlearn.training.executors import EXECUTORS

    registries = (("datasets", DATASETS), ("models", MODELS), ("approximators", APPROXIMATORS),
                  ("methods", METHODS), ("audit attacks", AUDIT_ATTACKS), ("forget modes", FORGET_SELECTORS),
                  ("reference attacks (miunlearn audit)", REFERENCE_ATTACKS), ("executors", EXECUTORS),
                  ("data formats (miunlearn forget)", READERS))
    if as_json:
        _emit({title: registry.names() for title, registry in registries})
        return
    console = Console()
    for title, registry in registries:
        console.print(f"[bold]{title}[/bold]: {', '.join(registry.names())}")


config_app = typer.Typer(no_args_is_help=True, help="Inspect configuration: defaults and what each setting does.")
app.add_typer(config_app, name="config")


@config_app.command("show", epilog="Examples:\n  miunlearn config show\n  miunlearn config show --section train\n"
                                   "  miunlearn config show --section forget --json")
def config_show(
    section: Annotated[str | None, typer.Option("--section", "-s", help="One section only (data, forget, model, "
                                                "train, approximator, unlearn, audit, executor; 'forget' shows "
                                                "`miunlearn forget`'s settings).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Print the default configuration as YAML, with each setting's documentation as comments."""
    from miunlearn.reporting.config_doc import config_defaults, config_yaml

    try:
        if as_json:
            _emit(config_defaults(section))
            return
        sys.stdout.write(config_yaml(section))
    except MiunlearnError as exc:
        raise _fail(exc) from None


def main() -> None:
    app()


if __name__ == "__main__":
    main()
