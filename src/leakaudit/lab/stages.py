"""The labs as declared lists of stages.

A lab is a tuple of ``(name, stage)`` pairs. A stage is a small named function whose first
parameter is the lab's run (its config, output folder, log, …) and whose other parameters are
named after earlier stages, whose results it takes; it returns its own result. :func:`run_stages`
walks the list in order; :func:`stage_order_errors` says where a list asks for a result that no
earlier stage produces.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

Stages = Sequence[tuple[str, Callable[..., Any]]]


def needs(stage: Callable[..., Any]) -> list[str]:
    """The earlier stages whose results ``stage`` takes: its parameters after the run."""
    return list(inspect.signature(stage).parameters)[1:]


def stage_order_errors(stages: Stages) -> list[str]:
    """Each stage that takes a result no earlier stage produced, or reuses a name."""
    done: set[str] = set()
    errors = []
    for name, fn in stages:
        errors += [f"{name} needs {n!r}, which no earlier stage produces"
                   for n in needs(fn) if n not in done]
        if name in done:
            errors.append(f"{name} is declared twice")
        done.add(name)
    return errors


def run_stages(stages: Stages, run: Any) -> dict[str, Any]:
    """Every stage of ``stages`` in order, each given ``run`` and the results it names; returns
    the results by stage name."""
    errors = stage_order_errors(stages)
    if errors:
        raise ValueError("; ".join(errors))
    got: dict[str, Any] = {}
    for name, fn in stages:
        got[name] = fn(run, **{n: got[n] for n in needs(fn)})
    return got
