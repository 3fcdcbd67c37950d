"""Shared pieces of the command line: consoles, one-line errors, logging, progress, library
set-up. Every command module (``cli.py`` and ``leakaudit/commands/*``) imports these."""

from __future__ import annotations

import os
import shlex
import sys

import typer
from rich.console import Console

console = Console(stderr=True)
out_console = Console()


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
    msg = str(e).splitlines()[0] if str(e) else type(e).__name__
    from rich.markup import escape

    # the message is data: "[ray]" in pip install 'leakaudit[ray]' is not markup
    console.print(f"[bold red]error:[/] {escape(msg)}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(code=2)


def _log(msg: str) -> None:
    console.print(msg, highlight=False, markup=False, soft_wrap=True)  # one line, even in a log file


def _progress():
    from leakaudit.progress import make_rich_progress

    return make_rich_progress(console)


def _command() -> str:
    return "leakaudit " + " ".join(shlex.quote(a) for a in sys.argv[1:])


