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


@contextmanager
def steps_progress(progress: ProgressFactory, description: str
                   ) -> Iterator[Callable[[int, int, float], None]]:
    """A trainer's ``progress(step, total, loss)`` callback over a bar with a total: trainers
    know their number of steps only once they start, so the bar opens at the first step with
    that total (and advances to ``step`` at each call).

    >>> seen = []
    >>> @contextmanager
    ... def rec(description, total):
    ...     seen.append((description, total)); yield lambda n=1: seen.append(n)
    >>> with steps_progress(rec, "training") as cb:
    ...     cb(1, 3, 0.5); cb(3, 3, 0.4)
    >>> seen
    [('training', 3), 1, 2]
    """
    from contextlib import ExitStack

    with ExitStack() as stack:
        state = {"done": 0, "advance": None}

        def cb(step: int, total: int, loss: float) -> None:
            if state["advance"] is None:
                state["advance"] = stack.enter_context(progress(description, total))
            state["advance"](step - state["done"])
            state["done"] = step

        yield cb
