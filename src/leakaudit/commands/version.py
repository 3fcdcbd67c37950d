"""``leakaudit version``: the versions of leakaudit and its main dependencies."""

from __future__ import annotations

import typer

from leakaudit.commands._kit import out_console


def version() -> None:
    """Print the versions of leakaudit and its main dependencies."""
    from leakaudit.versions import versions

    for k, v in versions().items():
        out_console.print(f"{k} {v}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("version")(version)
