"""Progress reporting that the library can use without knowing about the terminal.

Library functions take a ``progress`` factory: ``with progress("scoring", total) as advance:
advance(n)``. The CLI passes :func:`rich_progress`; library callers get :func:`null_progress`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol


class ProgressFactory(Protocol):
    def __call__(self, description: str, total: int | None) -> "contextmanager[Callable[[int], None]]": ...


@contextmanager
def null_progress(description: str, total: int | None) -> Iterator[Callable[[int], None]]:
    yield lambda n=1: None


def make_rich_progress(console=None):
    """A factory that shows one rich progress bar per task (on stderr)."""
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    console = console or Console(stderr=True)

    @contextmanager
    def factory(description: str, total: int | None) -> Iterator[Callable[[int], None]]:
        with Progress(TextColumn("{task.description:<28}", markup=False), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), TimeRemainingColumn(), console=console,
                      transient=False) as prog:
            task = prog.add_task(description, total=total)
            yield lambda n=1: prog.advance(task, n)

    return factory
