"""``leakaudit triage``: deployment profiles → ranked risks, first audits, the control that helps
most, regulatory flags (see ``leakaudit.triage``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from leakaudit.commands._kit import _fail, out_console


def triage(
    profiles: Annotated[Optional[list[Path]], typer.Argument(help="Deployment profile(s): TOML or YAML (schema: leakaudit/schemas/profile.schema.json).")] = None,
    example: Annotated[Optional[list[str]], typer.Option("--example", help="A shipped example: A … E (the seed article's five deployments); repeatable, or 'all'.")] = None,
    compare: Annotated[bool, typer.Option("--compare", help="Rank the profiles against each other.")] = False,
    results: Annotated[Optional[list[Path]], typer.Option("--results", help="leakaudit result folder(s) of this deployment's model: measured numbers replace assumptions (one profile only).")] = None,
    html: Annotated[Optional[Path], typer.Option("--html", help="Also write the triage as a self-contained HTML page.")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the triage as JSON.")] = None,
) -> None:
    """Triage deployments: how exposed is each, what to audit first, which single control helps most."""
    import json

    from leakaudit.errors import LeakauditError
    from leakaudit.triage import assess, compare as rank, load_example, load_profile
    from leakaudit.triage.measured import load_results
    from leakaudit.triage.profile import example_names
    from leakaudit.triage.render import print_assessment, print_comparison, write_html

    from leakaudit.runs.staged import check_output_file, write_owned_text

    try:
        for path, option in ((html, "--html"), (json_out, "--json")):
            if path is not None:  # before any work: a foreign file there is refused now
                check_output_file(path, option)
        names = [n for e in example or [] for n in (example_names() if e.lower() == "all" else [e])]
        loaded = [load_example(n) for n in names] + [load_profile(p) for p in profiles or []]
        if not loaded:
            raise LeakauditError("give a profile file or --example A (examples: " + ", ".join(example_names()) + ")")
        if results and len(loaded) != 1:
            raise LeakauditError("--results applies to one profile (the deployment those results measured)")
        measured = load_results(results) if results else None
        assessed = [assess(p, measured) for p in loaded]
        ranked = rank(assessed) if compare else assessed
        for a in ranked:
            print_assessment(a, out_console)
            out_console.print()
        if compare and len(ranked) > 1:
            print_comparison(ranked, out_console)
        if html:
            write_html(ranked, html)
            out_console.print(f"html: {html}", highlight=False)
        if json_out:
            write_owned_text(json_out, "--json", json.dumps([a.to_dict() for a in ranked],
                                                            indent=1, ensure_ascii=False))
            out_console.print(f"json: {json_out}", highlight=False)
    except LeakauditError as e:
        _fail(e)


def register(app: typer.Typer) -> None:
    app.command("triage")(triage)
