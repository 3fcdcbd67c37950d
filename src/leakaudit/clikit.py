"""Shared pieces of the command line: consoles, one-line errors, logging, progress, library
set-up. Every command module (``cli.py`` and ``leakaudit/commands/*``) imports these."""

from __future__ import annotations

import os
import shlex
import sys

import typer
from rich.console import Console

# markup=False: user text (paths, JSONL keys, an endpoint's error body) is printed verbatim, never
# parsed as console markup ("[/]" in a file name must not crash, "[b]" must not vanish).
console = Console(stderr=True, markup=False, emoji=False)
out_console = Console(markup=False, emoji=False)

#: the umask the process started with (``--share`` keeps it; by default outputs are private)
_START_UMASK = os.umask(0o077)
os.umask(_START_UMASK)


_terminated_by: int | None = None


def _terminate(signum, frame):  # pragma: no cover - exercised by a subprocess test
    global _terminated_by
    _terminated_by = signum
    raise SystemExit(128 + signum)


def _quiet_libraries() -> None:
    # SIGTERM becomes an exception, so staged outputs are cleaned up as on Ctrl-C.
    import signal

    signal.signal(signal.SIGTERM, _terminate)
    import rich.progress  # noqa: F401  (imported before any output is staged)

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    import warnings

    warnings.filterwarnings("ignore", category=UserWarning)


def _fail(e: Exception) -> None:
    """Print ``error: <message>`` (one line, verbatim) and exit with status 2."""
    from rich.text import Text

    msg = " ".join(str(e).split("\n")[0].split()) if str(e).strip() else type(e).__name__
    line = Text("error:", style="bold red")
    line.append(" " + msg, style="")
    console.print(line, highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


def _apply_global_options(*, share: bool, overwrite: bool) -> None:
    """``leakaudit --share`` / ``--overwrite``: file modes and replacement of foreign files for
    every command of this process."""
    from leakaudit.runs.files import set_share
    from leakaudit.runs.staged import set_overwrite

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


