"""``leakaudit compare``: one attack battery over several models (e.g. an undefended model and its
defended variants) on the same training data; leakage next to utility, in one report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from leakaudit.commands._kit import _command, _fail, _log, _progress, _quiet_libraries, out_console


def training_record(spec: str) -> dict | None:
    """How a compared model was trained, when leakaudit trained it: ``leakaudit_training.json``
    (lab and defense trainers) or ``finetune.json`` (``leakaudit finetune``); its ``dp`` entry
    carries ε with δ and the privacy unit."""
    folder = Path(spec.split(":", 1)[1] if spec.startswith(("hf:", "peft:")) else spec)
    for name in ("leakaudit_training.json", "finetune.json"):
        if (folder / name).is_file():
            return json.loads((folder / name).read_text())
    return None


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
    from dataclasses import replace

    from leakaudit.errors import InputError, LeakauditError
    from leakaudit.runs.staged import check_output_location, staged_output
    from leakaudit.targets import check_spec

    outputs = ("report.jsonl", "summary.json", "report.html")
    try:
        specs = []
        for m in model:
            name, sep, path = m.partition("=")
            if not sep or not name or not path:
                raise InputError(f"--model takes NAME=DIR (or NAME=SPEC), got {m!r}")
            specs.append((name, path))
        if len({n for n, _ in specs}) != len(specs):
            raise InputError("--model names must be distinct")
        check_output_location(out, produces=outputs, inputs=[corpus, heldout])
        for _, p in specs + ([("reference", reference)] if reference is not None else []):
            check_spec(p, allow_download=allow_download)  # a typo answers at once, no torch
    except LeakauditError as e:
        _fail(e)
    from leakaudit.audits.compare import BatteryConfig, comparison_warnings, run_battery
    from leakaudit.corpus.index import CorpusIndex
    from leakaudit.corpus.load import load_corpus
    from leakaudit.versions import versions
    from leakaudit.report.html import render_html
    from leakaudit.targets import load_target, require_capabilities
    from leakaudit.targets.checks import check_device
    from leakaudit.report.writer import write_report

    _quiet_libraries()
    try:
        check_device(device)
        train = load_corpus(corpus, text_field=text_field)
        held = load_corpus(heldout, text_field=text_field)
        models = {n: load_target(p, name=n, device=device, allow_download=allow_download)
                  for n, p in specs}
        ref = (load_target(reference, name="reference", device=device, allow_download=allow_download)
               if reference is not None else None)
        for (n, p), m in zip(specs + [("reference", reference)], [*models.values(), ref]):
            if m is not None:  # the battery scores, samples and checks greedy choices
                require_capabilities(m, "prompt_logprobs", "argmax", "generation",
                                     who="compare", spec=p)
        base = BatteryConfig(seed=seed)
        cfg = replace(base, memorization=replace(base.memorization, n_sequences=windows, seed=seed),
                      extraction=replace(base.extraction, n_samples=samples, seed=seed))
        index = CorpusIndex.build([d.text for d in train], [d.id for d in train])
        with staged_output(out, produces=outputs, inputs=[corpus, heldout]) as stage:
            rows, mem = run_battery(models, reference=ref, train_texts=[d.text for d in train],
                                    train_ids=[d.id for d in train], heldout_texts=[d.text for d in held],
                                    index=index, config=cfg, cache_dir=stage / "cache",
                                    progress=_progress(), log=_log)
            recs = []
            for n, m in models.items():
                net = getattr(m, "model", None)
                rows[n]["n_params"] = (sum(p.numel() for p in net.parameters())
                                       if net is not None else None)
                rows[n]["training"] = training_record(dict(specs)[n])
                recs.append(("defense_comparison", rows[n]))
            run = {**versions(), "command": _command(), "seed": seed,
                   "models": {n: {"path": str(p), "fingerprint": models[n].fingerprint(),
                                  "n_params": rows[n]["n_params"]} for n, p in specs},
                   "corpus": {"path": str(corpus), "n_docs": len(train), "heldout": str(heldout)}}
            warnings = comparison_warnings(rows, baseline=specs[0][0])
            for w in warnings:
                _log(f"warning: {w}")
            write_report(stage, formats=("jsonl",), run_record=run, records=recs + mem,
                         summary={"attack": "defense_comparison", "variants": list(models),
                                  "baseline": specs[0][0], "warnings": warnings})
            import shutil

            shutil.rmtree(stage / "cache", ignore_errors=True)
            render_html(stage)
    except LeakauditError as e:
        _fail(e)
    for n, r in rows.items():
        u = r["utility"]["heldout_ppl"]
        mem_all = (r["memorization"].get("all") or {}).get("value")
        d = r["membership"]["documents"]
        tpr = "n/a" if d["tpr"] is None else f"{d['tpr']:.1%}"
        mem_s = "—" if mem_all is None else f"{mem_all:.1%}"
        from leakaudit.training.finetune import privacy_statement

        priv = privacy_statement((r.get("training") or {}).get("dp"))
        out_console.print(f"{n} ({priv}): held-out perplexity {u['value']:.2f}; exact memorization "
                          f"{mem_s}; membership TPR@1%FPR {tpr}; verified extraction samples "
                          f"{r['extraction']['verified_samples']}", highlight=False, markup=False)
    out_console.print(f"report: {out / 'report.html'}", highlight=False, markup=False)
