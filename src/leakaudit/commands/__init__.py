"""Command modules of the ``leakaudit`` CLI.

Each module here defines ``register(app: typer.Typer) -> None`` that adds its commands (or a
sub-app) to the main app. ``register_all`` imports every module in this package, in name order,
so a new command family is one new file and no edit elsewhere; modules whose name starts
with ``_`` are shared helpers, not commands. Modules import only typer, ``leakaudit.errors`` and
``leakaudit.commands._kit`` at import time; heavy imports (torch, transformers) go inside the
commands, so ``leakaudit --help`` stays fast. Nothing below imports a command module: what a
command runs lives in ``audits/``, ``lab/`` and the layers under them.
"""

from __future__ import annotations

import importlib
import pkgutil


def register_all(app) -> None:
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):  # private helpers (_kit: the shared CLI plumbing)
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is None:
            raise RuntimeError(f"leakaudit.commands.{info.name} has no register(app)")
        register(app)
