"""``leakaudit list [KIND]``: what can be named on the command line and in the Python API, from the
one registry (:mod:`leakaudit.registry`), plugins included.

    leakaudit list                   every kind
    leakaudit list backends          target backends, with the capabilities each provides
    leakaudit list attacks --json    attacks as JSON, with what each needs, its threat model, paper

Kinds: backends, attacks, defenses (with what each produces), formats, audits, dp-auditors.
Reading the list imports no backend (no torch).
"""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from leakaudit.commands._kit import _fail, _log, out_console

#: The heading of the capabilities column, by kind: what a backend provides, an attack needs, ...
_CAPS_HEADING = {"backends": "provides", "attacks": "needs", "audits": "needs",
                 "defenses": "produces", "formats": "writes", "dp-auditors": "trainings"}


def register(app: typer.Typer) -> None:
    app.command("list")(list_cmd)


def list_cmd(
    kind: Annotated[Optional[str], typer.Argument(help="backends, attacks, defenses, formats, audits or dp-auditors (default: all).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (one object: kind → entries) instead of tables.")] = False,
) -> None:
    """List the registered backends, attacks, defenses, output formats, audits and DP auditors,
    with their capabilities, threat model and reference."""
    import warnings

    from leakaudit import registry

    with warnings.catch_warnings():  # a broken plugin is reported below, once
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            kinds = registry.KINDS if kind is None else (kind,)
            table = {k: registry.entries(k) for k in kinds}
        except registry.UnknownName as e:
            _fail(e)
    for line in registry.plugin_errors():
        _log(f"warning: {line}")
    if as_json:
        typer.echo(json.dumps({k: [e.to_dict() for e in v] for k, v in table.items()}, indent=1,
                              ensure_ascii=False))
        return
    for k, entries in table.items():
        out_console.print(_table(k, entries))


def _caps(e) -> str:
    if e.kind in ("defenses", "formats"):
        return e.produces
    if e.kind == "dp-auditors":
        return str(e.meta.get("models", ""))
    signals = e.meta.get("needs") or ()
    return ", ".join([*e.capabilities, *(f"{n} (input)" for n in signals)])


def _name(e) -> str:
    """The name, and under it an attack's family and world (membership, llm)."""
    group = ", ".join(str(e.meta[k]) for k in ("family", "world") if e.meta.get(k))
    return e.name + (f"\n({group})" if group else "")


def _what(e) -> str:
    origin = {"leakaudit": "", "runtime": " (registered at runtime)"}.get(e.source,
                                                                       f" (plugin {e.source})")
    return e.summary + origin + (f"\n{e.reference}" if e.reference else "")


def _table(kind: str, entries):
    from rich.table import Table

    t = Table(title=f"{kind} ({len(entries)})", title_justify="left", show_lines=False)
    rows = [(_name(e), _what(e), _caps(e), e.threat_model) for e in entries]
    heads = ("name", "what it is; reference", _CAPS_HEADING[kind], "threat model")
    keep = [i for i in range(len(heads)) if i < 2 or any(r[i] for r in rows)]
    for i in keep:
        t.add_column(heads[i], overflow="fold", no_wrap=i == 0)
    for r in rows:
        t.add_row(*(r[i] for i in keep))
    return t
