"""The ``leakaudit`` command line: assembles the app from the command modules in
``leakaudit/commands/`` (one per command or group, each with ``register(app)``) and owns the
global options and the console entry point."""

from __future__ import annotations

from typing import Annotated

import typer

import leakaudit.commands._kit as _clikit
from leakaudit.commands import register_all
from leakaudit.commands._kit import OneLineErrorGroup, _terminate

app = typer.Typer(cls=OneLineErrorGroup, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Measure how much a trained model leaks its training data.")


@app.callback()
def _global_options(
    share: Annotated[bool, typer.Option("--share", help="Write outputs with the usual umask modes instead of owner-only (0600 files, 0700 folders).")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Let a run replace files in --out that leakaudit did not write (never its own inputs).")] = False,
    threads: Annotated[int | None, typer.Option("--threads", min=0, help="Torch/OpenMP threads (default: OMP_NUM_THREADS when set, else the CPUs this process may use). 0: the CPUs the machine's load leaves free (on a busy machine; training then depends on the load, as it does on the thread count).")] = None,
) -> None:
    """Measure how much a trained model leaks its training data."""
    _clikit._apply_global_options(share=share, overwrite=overwrite, threads=threads)


register_all(app)


def main() -> None:
    """The console entry point: ``app`` plus a clean exit status after SIGINT (130) or SIGTERM (143).

    The SIGTERM handler raises ``SystemExit`` wherever the main thread is. If that is inside an
    import or a ``__set_name__`` hook, Python wraps it in another exception; the staged output is
    still removed on the way out, and here the process still exits with 128 + signal.
    """
    import signal

    signal.signal(signal.SIGINT, _terminate)  # exit 130 (not click's "Aborted!" exit 1)
    signal.signal(signal.SIGTERM, _terminate)  # exit 143
    try:
        app(prog_name="leakaudit")
    except BaseException:
        if _clikit._terminated_by is not None:
            raise SystemExit(128 + _clikit._terminated_by) from None
        raise


if __name__ == "__main__":  # pragma: no cover
    main()
