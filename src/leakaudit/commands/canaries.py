"""``leakaudit canaries insert`` and ``canaries exposure``: Secret Sharer canaries."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from leakaudit.commands._kit import (
    FAIL_ON, FORMAT, _audit, _check_out, _check_specs, _fail, _parse_ints, _verdicts,
    out_console,
)
from leakaudit.errors import LeakauditError

canaries_app = typer.Typer(no_args_is_help=True, help="Secret Sharer canaries: insert them, then measure exposure.")


@canaries_app.command("insert")
def canaries_insert(
    corpus: Annotated[Path, typer.Option("--corpus", help="The corpus to insert canaries into (JSONL, .txt, Parquet or a folder).")],
    template: Annotated[list[str], typer.Option("--template", help="Canary sentence with one {secret}; repeatable.")],
    space: Annotated[list[str], typer.Option("--space", help="Secret space per template: ssn, api_key, phone, credit_card, or a pattern such as 'ddd-dd-dddd' (d digit, a/A letter, x base62, h hex). One for all templates, or one per template.")],
    repeats: Annotated[str, typer.Option("--repeats", help="Repetition counts, comma-separated: one canary per template and count.")] = "1,2,4,8,16,32",
    out: Annotated[Path, typer.Option("--out", help="Output folder: corpus.jsonl + manifest.json.")] = Path("leakaudit-canaries"),
    text_field: Annotated[str, typer.Option("--text-field", help="JSONL/Parquet field holding the text.")] = "text",
    seed: Annotated[int, typer.Option("--seed")] = 0,
) -> None:
    """Insert canaries at chosen repetition counts; writes the new corpus and a manifest."""
    from leakaudit.audits.canaries import insert_into_corpus

    try:
        n, n_docs = insert_into_corpus(corpus, out, templates=list(template), spaces=list(space),
                                       repeats=_parse_ints(repeats, what="--repeats"),
                                       text_field=text_field, seed=seed)
    except LeakauditError as e:
        _fail(e)
    out_console.print(f"inserted {n} canaries into {n_docs} documents: "
                      f"{out / 'corpus.jsonl'}, manifest {out / 'manifest.json'} (it holds the secrets: "
                      "keep it private)", highlight=False)


@canaries_app.command("exposure")
def canaries_exposure(
    model: Annotated[str, typer.Option("--model", help="Model trained on the canaried corpus.")],
    manifest: Annotated[Path, typer.Option("--manifest", help="manifest.json from 'canaries insert' or a lab corpus.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("leakaudit-exposure"),
    references: Annotated[int, typer.Option("--references", min=10, help="Never-inserted reference candidates per canary.")] = 1000,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 64,
    device: Annotated[str, typer.Option("--device", help="cpu or cuda.")] = "cpu",
    show_pii: Annotated[bool, typer.Option("--show-pii", help="Write the secrets into the report (masked by default).")] = False,
    allow_download: Annotated[bool, typer.Option("--allow-download", help="Allow fetching a hub model (leakaudit works offline by default).")] = False,
    formats: FORMAT = None,
    fail_on: FAIL_ON = None,
) -> None:
    """Exposure of each canary by rank among reference candidates and by extrapolation."""
    from leakaudit.runs.staged import REPORT_OUTPUTS

    _check_out(out, REPORT_OUTPUTS, [manifest, model])
    _check_specs([model], allow_download)  # a typo in a path answers at once
    from leakaudit.audits import exposure

    req = exposure.ExposureRequest(model=model, manifest=manifest, references=references, seed=seed,
                                   batch_size=batch_size, device=device, show_pii=show_pii,
                                   allow_download=allow_download)
    result, written = _audit(exposure, req, out, produces=REPORT_OUTPUTS, inputs=[manifest, model],
                             formats=formats, fail_on=fail_on, catch=(LeakauditError, ValueError))
    for r in result.summary["by_repeats"]:
        out_console.print(f"repeats {r['repeats']:>4}: exposure {r['mean_exposure_rank']:.2f} bits by rank, "
                          f"{r['mean_exposure_extrapolated']:.2f} extrapolated ({r['n_canaries']} canaries)",
                          highlight=False)
    out_console.print(f"report: {out / 'report.html'}", highlight=False)
    _verdicts(written, out)


def register(app: typer.Typer) -> None:
    app.add_typer(canaries_app, name="canaries")
