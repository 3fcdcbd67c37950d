"""Shared pieces of the command line: consoles, one-line errors, logging, progress, library
set-up, the output and input checks every audit command makes first, and the command group of a
command whose modes are subcommands. Every command module (``leakaudit/commands/*``) and
``cli.py`` import these."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from leakaudit.errors import LeakauditError

# markup=False: user text (paths, JSONL keys, an endpoint's error body) is printed verbatim, never
# parsed as console markup ("[/]" in a file name must not crash, "[b]" must not vanish).
console = Console(stderr=True, markup=False, emoji=False)
out_console = Console(markup=False, emoji=False)

#: the help texts' "needs Ray" sentence: the extra's brackets escaped, or rich (which renders the
#: help) reads "[ray]" as markup and prints ``pip install 'leakaudit'``
NEEDS_RAY = "Needs pip install 'leakaudit\\[ray]'."

#: the umask the process started with (``--share`` keeps it; by default outputs are private)
_START_UMASK = os.umask(0o077)
os.umask(_START_UMASK)


_terminated_by: int | None = None


def _terminate(signum, frame):  # pragma: no cover - exercised by a subprocess test
    global _terminated_by
    _terminated_by = signum
    raise SystemExit(128 + signum)


#: transformers messages that a user cannot act on: leakaudit passes an attention mask with
#: every batch it generates from or scores; for a GPT-2-style model whose pad token is its BOS
#: token, a forward pass inside ``generate()`` sees the BOS at position 0 of an unpadded prompt
#: and guesses "may be padded".
_ADVISORY_TRANSFORMERS = ("We strongly recommend passing in an `attention_mask`",)


def _quiet_libraries() -> None:
    # SIGTERM becomes an exception, so staged outputs are cleaned up as on Ctrl-C.
    import signal

    signal.signal(signal.SIGTERM, _terminate)
    import rich.progress  # noqa: F401  (imported before any output is staged)

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers

    # Warnings that change results (weights missing or newly initialised, truncation) are shown,
    # one line each; only progress bars and the advisory noise listed below are silenced.
    import logging

    class _OneLineHandler(logging.Handler):
        def emit(self, record):  # pragma: no cover - exercised through the CLI
            msg = " ".join(record.getMessage().split())
            if not msg.startswith(_ADVISORY_TRANSFORMERS):
                _log(f"warning: transformers: {msg}")

    tlog = transformers.utils.logging
    tlog.set_verbosity_warning()
    tlog.disable_default_handler()
    root = tlog.get_logger()
    if not any(isinstance(h, _OneLineHandler) or type(h).__name__ == "_OneLineHandler"
               for h in root.handlers):
        root.addHandler(_OneLineHandler())
    tlog.disable_progress_bar()
    import warnings

    def _one_line(message, category, filename, lineno, file=None, line=None):
        _log(f"warning: {category.__name__}: {' '.join(str(message).split())}")

    warnings.showwarning = _one_line
    for pattern in (r".*TypedStorage is deprecated.*", r".*`resume_download` is deprecated.*",
                    r".*torch\.utils\._pytree.*", r".*Secure RNG turned off.*"):
        warnings.filterwarnings("ignore", message=pattern)


def _fail(e: Exception) -> None:
    """Print ``error: <message>`` (one line, verbatim) and exit with status 2."""
    _error_line(str(e).split("\n")[0] if str(e).strip() else type(e).__name__)
    raise typer.Exit(code=2)


def _error_line(msg: str) -> None:
    from rich.text import Text

    line = Text("error:", style="bold red")
    line.append(" " + " ".join(msg.split()), style="")
    console.print(line, highlight=False, soft_wrap=True)


try:
    from typer.core import TyperGroup as _TyperGroup
except ImportError:  # pragma: no cover
    _TyperGroup = object  # type: ignore[assignment,misc]


class OneLineErrorGroup(_TyperGroup):
    """The command group of the CLI: usage errors (an unknown option, a value out of range, an
    unknown command) print as one line ``error: leakaudit CMD: what is wrong`` and exit with 2,
    like every other bad input (click would print a usage block)."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:  # typer >= 0.20 vendors click
            from typer import _click as click
        except ImportError:  # pragma: no cover
            import click

        try:
            rv = super().main(args=args, prog_name=prog_name, complete_var=complete_var,
                              standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as e:
            if not standalone_mode:
                raise
            e.show()
            sys.exit(e.exit_code)
        except click.ClickException as e:
            if not standalone_mode:
                raise
            where = getattr(getattr(e, "ctx", None), "command_path", None)
            _error_line(f"{where}: {e.format_message()}" if where else e.format_message())
            sys.exit(e.exit_code)
        except getattr(click.exceptions, "Abort", ()):  # typer's vendored click has no Abort
            if not standalone_mode:
                raise
            _error_line("aborted")
            sys.exit(1)
        except BrokenPipeError:  # `leakaudit ... | head`: the reader went away; nothing to say
            try:
                sys.stdout = open(os.devnull, "w")  # no second error while flushing at exit
            except OSError:  # pragma: no cover
                pass
            sys.exit(0 if standalone_mode else 1)
        if not standalone_mode:
            return rv
        sys.exit(rv if isinstance(rv, int) else 0)


def mode_group(renamed: dict[str, str]) -> type:
    """The command group of a command whose modes became subcommands (``lab defenses``,
    ``membership llm``). ``renamed`` maps each old mode flag to the line that names its new
    spelling; an old flag given before any subcommand prints that one line and exits with 2."""

    class ModeGroup(_TyperGroup):
        def parse_args(self, ctx, args):
            for a in args:
                if a == "--" or a in self.commands:  # a subcommand's options are its own
                    break
                line = renamed.get(a.split("=", 1)[0])
                if line is not None:
                    _error_line(line)
                    raise typer.Exit(code=2)
            return super().parse_args(ctx, args)

    return ModeGroup


def no_options_before(ctx, command: str) -> None:
    """``lab --out X defenses`` would run ``defenses`` with its own default --out: the options
    before a subcommand belong to the group's default mode, so giving any is an error, not
    silently ignored."""
    from leakaudit.errors import InputError

    given = [p.opts[0] for p in ctx.command.params
             if getattr(ctx.get_parameter_source(p.name), "name", "DEFAULT") not in ("DEFAULT", "DEFAULT_MAP")]
    if given:
        _fail(InputError(f"{given[0]} before '{ctx.invoked_subcommand}' belongs to the default "
                         f"'leakaudit {command}'; write 'leakaudit {command} "
                         f"{ctx.invoked_subcommand} {given[0]} ...'"))


def _apply_global_options(*, share: bool, overwrite: bool, threads: int | None = None) -> None:
    """``leakaudit --share`` / ``--overwrite`` / ``--threads``: file modes, replacement of foreign
    files and the torch/OpenMP thread count for every command of this process."""
    from leakaudit.runs.files import set_share
    from leakaudit.runs.staged import set_overwrite
    from leakaudit.targets.threads import configure_threads

    configure_threads(threads)
    set_share(share)
    set_overwrite(overwrite)
    os.umask(_START_UMASK if share else 0o077)


def _log(msg: str) -> None:
    console.print(msg, highlight=False, markup=False, soft_wrap=True)  # one line, even in a log file


def _progress():
    from leakaudit.progress import make_rich_progress

    return make_rich_progress(console)


def _command() -> str:
    return "leakaudit " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _check_out(out: Path, produces, inputs=()) -> None:
    """The output location, checked first of all (a file, unwritable, a foreign file in the way,
    one of the inputs)."""
    from leakaudit.runs.staged import check_output_location

    try:
        check_output_location(out, produces=produces, inputs=inputs)
    except LeakauditError as e:
        _fail(e)


def _check_specs(specs: list[str], allow_download: bool) -> None:
    """Check target specs before anything heavy is imported: a missing path or an unknown
    scheme fails in well under a second, with no network request."""
    from leakaudit.targets import check_spec

    try:
        for spec in specs:
            check_spec(spec, allow_download=allow_download)
    except LeakauditError as e:
        _fail(e)


def _parse_ints(value: str, *, what: str) -> tuple[int, ...]:
    from leakaudit.errors import InputError

    try:
        out = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise InputError(f"{what} must be comma-separated integers, got {value!r}") from None
    if not out or any(v < 1 for v in out):
        raise InputError(f"{what} must be positive integers, got {value!r}")
    return out


def _print_summary(out: Path, summary: dict) -> None:
    """The extraction summary of ``extract`` and the lab."""
    best = summary.get("best") or {}
    out_console.print(f"samples {summary['n_samples']}  candidates "
                      f"{summary['n_candidates']}  verified memorized candidates "
                      f"{summary['n_verified_candidates']}", highlight=False)
    if best:
        out_console.print(f"best: {best['ranking']} on {best['sampler']} samples, precision "
                          f"{best['precision']:.0%} (95% CI {best['ci_low']:.0%}–{best['ci_high']:.0%})",
                          highlight=False)
    if summary.get("n_canaries"):
        out_console.print(f"canaries extracted: {len(summary['canaries_extracted'])} of "
                          f"{summary['n_canaries']} ({', '.join(summary['canaries_extracted']) or 'none'})",
                          highlight=False)
    out_console.print(f"report: {out / 'report.html'}\nrecords: {out / 'report.jsonl'} "
                      f"(verified hits in {out / 'hits.jsonl'})", highlight=False)



# ---------------------------------------------------------------- outputs CI acts on

FORMAT_HELP = ("Outputs, comma-separated: jsonl (always written), html, sarif (report.sarif, SARIF "
               "2.1.0), junit (junit.xml).")
FAIL_ON_HELP = ("Exit 1 if this threshold is crossed, e.g. 'extraction.verified > 0', "
                "'membership.tpr@0.01 > 0.05', 'exposure.max > 20', 'canaries.extracted > 0' "
                "(repeatable: any crossed fails). Exit codes: 0 passed, 1 threshold crossed, "
                "2 bad input, 130/143 interrupted.")


FORMAT = Annotated[Optional[str], typer.Option("--format", help=FORMAT_HELP)]
FAIL_ON = Annotated[Optional[list[str]], typer.Option("--fail-on", help=FAIL_ON_HELP)]


def _outputs(formats: str | None, fail_on: list[str] | None) -> tuple[tuple[str, ...], list[str]]:
    """Check ``--format`` and ``--fail-on`` before any expensive work (bad input exits 2)."""
    from leakaudit.report.thresholds import parse_all
    from leakaudit.report.writer import parse_formats

    try:
        fmts = parse_formats(formats)
        parse_all(fail_on)
    except LeakauditError as e:
        _fail(e)
    return fmts, list(fail_on or [])


def _verdicts(written, out) -> None:
    """Print the ``--fail-on`` verdicts; exit 1 when one was crossed. Call it after the staged
    output has moved into ``out``."""
    if written is None:
        return
    unmeasured = [v for v in written.verdicts if v.unmeasured]
    if unmeasured:  # a gate on something this run never measured must not pass silently
        _fail(LeakauditError(unmeasured[0].error()))
    for v in written.verdicts:
        vals = ", ".join(f"{k} = {'not measured' if x is None else f'{x:g}'}" for k, x in v.values.items())
        style = {"crossed": "bold red", "passed": "green", "not evaluated": "yellow"}[v.status]
        # markup off: the expression is user text (no console markup is ever interpreted in it)
        out_console.print(f"fail-on {v.status}: {v.expression} ({vals})", style=style,
                          highlight=False, markup=False, soft_wrap=True)
    for fmt in ("sarif", "junit"):
        if fmt in written.files:
            out_console.print(f"{fmt}: {Path(out) / written.files[fmt].name}", highlight=False)
    if written.exit_code:
        raise typer.Exit(code=written.exit_code)


def _audit(module, request, out: Path, *, produces, inputs, formats, fail_on, catch=(LeakauditError,)):
    """Run one audit module (``prepare`` + ``run``) into ``out``; bad input exits 2."""
    fmts, thresholds = _outputs(formats, fail_on)
    _quiet_libraries()
    from leakaudit.api import run_audit  # the Python API's own path: same audit, same files

    try:
        return run_audit(module, request, out, produces=produces, inputs=inputs, formats=fmts,
                         fail_on=thresholds, command=_command(), progress=_progress(), log=_log)
    except catch as e:
        _fail(e)
