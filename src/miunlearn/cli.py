"""The ``miunlearn`` command line: ``demo``, ``run``, ``audit``, ``report`` and ``list``."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from typer.core import TyperGroup

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


app = typer.Typer(add_completion=False, no_args_is_help=True, cls=OneLineErrors,
                  help="Machine unlearning guided by membership inference, audited against retraining.")
err = Console(stderr=True)

OutOption = Annotated[Path | None, typer.Option("--out", help="Run folder to write (default: runs/<name>-<time>).")]
OverwriteOption = Annotated[bool, typer.Option("--overwrite", help="Replace an existing run folder.")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress log.")]
OverridesArgument = Annotated[list[str] | None,
                              typer.Argument(help="section.key=value overrides, e.g. train.lr=0.1")]


def _default_out(prefix: str) -> Path:
    return Path("runs") / f"{prefix}-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"


def _execute(config_path: Path | None, overrides: list[str], out: Path | None, overwrite: bool, quiet: bool,
             title: str, prefix: str) -> None:
    from miunlearn.config import load_config
    from miunlearn.pipeline import run_experiment, show

    try:
        config = load_config(config_path, overrides)
        run = run_experiment(config, out or _default_out(prefix), overwrite, Console(stderr=True, quiet=quiet))
    except MiunlearnError as exc:
        raise _fail(exc) from None
    show(run, title)


@app.command()
def demo(out: OutOption = None, overwrite: OverwriteOption = False, quiet: QuietOption = False) -> None:
    """Digits + MLP: train a target and shadows, forget 10% at random, compare ReMI with retraining."""
    _execute(None, [], out, overwrite, quiet, "miunlearn demo: digits, mlp, forget 10% at random", "demo")


@app.command()
def run(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML run config.")] = None,
    overrides: OverridesArgument = None,
    out: OutOption = None,
    overwrite: OverwriteOption = False,
    quiet: QuietOption = False,
) -> None:
    """Run any dataset/model/forget scenario from a config file plus key=value overrides."""
    _execute(config, overrides or [], out, overwrite, quiet, f"miunlearn run {config or ''}".strip(), "run")


RunDirArgument = Annotated[Path, typer.Argument(help="A run folder written by `miunlearn run` or `miunlearn demo`.")]


def _fail(exc: MiunlearnError) -> typer.Exit:
    err.print(f"[bold red]error:[/bold red] {exc}", highlight=False, soft_wrap=True)
    return typer.Exit(2)


@app.command()
def audit(
    run_dir: RunDirArgument,
    overrides: Annotated[list[str] | None, typer.Argument(
        help="key=value settings (StrongAuditConfig fields), e.g. num_references=8 variance=per-example "
             "ulira=true challenge_copies=8")] = None,
    quiet: QuietOption = False,
) -> None:
    """Strong audit of a run: LiRA and RMIA with the auditor's own reference models; writes audit.json."""
    from miunlearn.audit.strong import audit_config, run_strong_audit
    from miunlearn.reporting.html import print_audit
    from miunlearn.unlearning.replay import RunReplay

    try:
        report = run_strong_audit(run_dir, audit_config(overrides), Console(stderr=True, quiet=quiet), RunReplay())
    except MiunlearnError as exc:
        raise _fail(exc) from None
    print_audit(report, Console(width=200))
    Console().print(f"written: {run_dir / 'audit.json'}")


@app.command()
def report(
    run_dir: RunDirArgument,
    out: Annotated[Path | None, typer.Option("--out", help="HTML file (default: RUN_DIR/report.html).")] = None,
) -> None:
    """A self-contained HTML report (tables and plots) and a Markdown summary of a run and its audit."""
    from miunlearn.reporting.html import write_report

    try:
        html_path, md_path = write_report(run_dir, out)
    except MiunlearnError as exc:
        raise _fail(exc) from None
    Console().print(f"written: {html_path} and {md_path}")


@app.command("list")
def list_components() -> None:
    """Show the registered datasets, models, approximators, unlearning methods and audit attacks."""
    from miunlearn import APPROXIMATORS, AUDIT_ATTACKS, DATASETS, METHODS, MODELS
    from miunlearn.audit import REFERENCE_ATTACKS
    from miunlearn.data import FORGET_SELECTORS
    from miunlearn.training.executors import EXECUTORS

    console = Console()
    for title, registry in (("datasets", DATASETS), ("models", MODELS), ("approximators", APPROXIMATORS),
                            ("methods", METHODS), ("audit attacks", AUDIT_ATTACKS), ("forget modes", FORGET_SELECTORS),
                            ("reference attacks (miunlearn audit)", REFERENCE_ATTACKS), ("executors", EXECUTORS)):
        console.print(f"[bold]{title}[/bold]: {', '.join(registry.names())}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
