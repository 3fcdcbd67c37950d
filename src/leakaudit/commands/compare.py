"""``leakaudit compare``: one attack battery over several models (e.g. an undefended model and its
defended variants) on the same training data; leakage next to utility, in one report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from leakaudit.commands._kit import _command, _fail, _log, _progress, _quiet_libraries, out_console


def register(app: typer.Typer) -> None:
    app.command("compare")(compare)


def compare(
    model: Annotated[list[str], typer.Option("--model", help="NAME=SPEC of a causal LM (HF directory, .gguf file or hub name); repeatable (same tokenizer). The first is the baseline.")],
    corpus: Annotated[Path, typer.Option("--corpus", help="The original training data (JSONL, .txt, Parquet or folder): what every model is attacked on.")],
    heldout: Annotated[Path, typer.Option("--heldout", help="Held-out documents of the same kind, never trained on: utility, membership non-members, extraction prompts.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder: report.jsonl, summary.json, report.html.")] = Path("leakaudit-compare"),
    reference: Annotated[Optional[str], typer.Option("--reference", help="Reference model (saw neither split) for the ratio attacks: HF directory, .gguf or hub name.")] = None,
    samples: Annotated[int, typer.Option("--samples", min=1, help="Extraction generations per sampler.")] = 200,
    windows: Annotated[int, typer.Option("--windows", min=1, help="Training windows measured for memorization.")] = 500,
    text_field: Annotated[str, typer.Option("--text-field")] = "text",
    seed: Annotated[int, typer.Option("--seed")] = 0,
    device: Annotated[str, typer.Option("--device", help="cpu or cuda.")] = "cpu",
    allow_download: Annotated[bool, typer.Option("--allow-download", help="Allow fetching a hub model (leakaudit works offline by default).")] = False,
) -> None:
    """Compare models (undefended vs defended): the same attacks on each, with utility."""
    from leakaudit import api
    from leakaudit.errors import LeakauditError

    try:
        specs = api._named_specs(model)  # NAME=SPEC answers before anything loads
        from leakaudit.targets import check_spec

        for p in [s for _, s in specs] + ([reference] if reference is not None else []):
            check_spec(p, allow_download=allow_download)  # a typo answers before transformers loads
        _quiet_libraries()
        rep = api.compare(dict(specs), corpus, heldout, out=out, reference=reference, samples=samples,
                          windows=windows, text_field=text_field, seed=seed, device=device,
                          allow_download=allow_download, progress=_progress(), log=_log,
                          command=_command())
    except LeakauditError as e:
        _fail(e)
    from leakaudit.training.finetune import privacy_statement

    for n, r in rep.variants.items():
        u = r["utility"]["heldout_ppl"]
        mem_all = (r["memorization"].get("all") or {}).get("value")
        d = r["membership"]["documents"]
        tpr = "n/a" if d["tpr"] is None else f"{d['tpr']:.1%}"
        mem_s = "—" if mem_all is None else f"{mem_all:.1%}"
        priv = privacy_statement((r.get("training") or {}).get("dp"))
        out_console.print(f"{n} ({priv}): held-out perplexity {u['value']:.2f}; exact memorization "
                          f"{mem_s}; membership TPR@1%FPR {tpr}; verified extraction samples "
                          f"{r['extraction']['verified_samples']}", highlight=False, markup=False)
    out_console.print(f"report: {out / 'report.html'}", highlight=False, markup=False)
