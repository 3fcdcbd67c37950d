"""Glue shared by ``leakaudit lab`` and ``leakaudit extract``: run extraction and write the
report files (report.jsonl, hits.jsonl, summary.json) into a folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from leakaudit.atomic import atomic_write_text
from leakaudit.attacks.extraction.pipeline import ExtractionConfig, run_extraction
from leakaudit.progress import null_progress
from leakaudit.report.records import JsonlWriter, write_jsonl_atomic


def write_extraction_report(
    out: Path,
    *,
    target,
    references,
    index,
    prompt_texts,
    canaries,
    config: ExtractionConfig,
    run_record: dict[str, Any],
    progress=null_progress,
    log=print,
    cache_dir=None,
    extra_records=(),
    summary_extra: dict[str, Any] | None = None,
    store=None,
) -> dict[str, Any]:
    """Run extraction and write report.jsonl, hits.jsonl and summary.json into ``out``.

    ``extra_records``: ``(entry_type, record)`` pairs from other audits of the same run
    (memorization, membership, inversion), written before the summary line.
    """
    warnings: list[str] = []

    def warn(msg: str) -> None:
        warnings.append(msg)
        log(f"warning: {msg}")

    res = run_extraction(target, references=references, index=index, prompt_texts=prompt_texts,
                         canaries=canaries, config=config, cache_dir=cache_dir, progress=progress,
                         warn=warn, store=store)
    n_trunc = res.summary.get("n_truncated_samples") or 0
    if n_trunc:
        warn(f"{n_trunc} of {res.summary['n_samples']} samples got fewer than "
             f"{config.max_new_tokens} new tokens: the model's context capped them")
    summary = {**res.summary, "timings_s": {k: round(v, 2) for k, v in res.timings.items()},
               "warnings": warnings}
    summary.update(summary_extra or {})
    with JsonlWriter(out / "report.jsonl") as w:
        w.write("run", run_record)
        for s in res.samples:
            w.write("sample", s)
        for e in res.evals:
            w.write("eval", e)
        for c in res.canaries:
            w.write("canary", c)
        w.write("pii", res.pii)
        for entry_type, rec in extra_records:
            w.write(entry_type, rec)
        w.write("summary", summary)
    write_jsonl_atomic(out / "hits.jsonl", [s for s in res.samples if s.get("verified")])
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1, default=str))
    return summary


def memorization_records(models, *, texts, doc_ids, index, config, show_pii: bool = False,
                         trained_on: dict[str, str] | None = None,
                         progress=null_progress, log=print) -> tuple[list[tuple[str, dict]], dict]:
    """Measure memorization of every model on the same training windows.

    Returns the ``(entry_type, record)`` pairs for report.jsonl and a short summary
    (exact-memorization rate per model at the longest prefix, greedy cross-check agreement).
    """
    from leakaudit.attacks.memorization import measure_memorization, select_sequences

    first = next(iter(models.values()))
    seqs = select_sequences(first, texts, doc_ids, index, config=config, log=log)
    log(f"memorization: {len(seqs.ids)} windows of {config.window} tokens from "
        f"{seqs.n_docs - seqs.n_docs_skipped} documents ({seqs.n_docs_skipped} skipped as too short)")
    res = measure_memorization(models, seqs, config=config, show_pii=show_pii, progress=progress,
                               log=log)
    for name, data in (trained_on or {}).items():  # e.g. a reference that never saw the corpus
        res.models[name]["trained_on"] = data
    kmax = max(config.prefix_lengths)
    summary = {"n_sequences": len(seqs.ids), "n_docs_skipped": seqs.n_docs_skipped,
               "exact_rate": {r["model"]: r["exact"]["value"] for r in res.rates
                              if r["bucket"] == "all" and r["k"] == kmax},
               "greedy_agreement": {f"{c['model']}@k={c['k']}": c["agreement"]["value"]
                                    for c in res.checks if "agreement" in c}}
    return res.report_records(), summary


def exposure_records(model, canaries, *, n_references: int, seed: int, batch_size: int,
                     show_pii: bool = False, progress=null_progress) -> tuple[list[tuple[str, dict]], list[dict]]:
    """Canary exposure records (one per canary, then one per repetition count) for report.jsonl."""
    from leakaudit.attacks.canaries.exposure import canary_exposure, exposure_by_repeats

    recs = canary_exposure(model, canaries, n_references=n_references, seed=seed,
                           batch_size=batch_size, show_pii=show_pii, progress=progress)
    by_rep = exposure_by_repeats(recs)
    name = getattr(model, "name", "model")
    # "kind" is the record kind; the canary's own kind (ssn, pattern, …) becomes "canary_kind"
    pairs = [("exposure", {"model": name, **{k: v for k, v in r.items() if k != "kind"},
                           "kind": "canary", "canary_kind": r.get("kind")}) for r in recs]
    pairs += [("exposure", {"kind": "by_repeats", "attack": "canary_exposure", "model": name, **r})
              for r in by_rep]
    return pairs, by_rep


def write_records_report(out: Path, *, run_record: dict[str, Any],
                         records: list[tuple[str, dict[str, Any]]],
                         summary: dict[str, Any]) -> None:
    """report.jsonl (run record, the given records, summary) and summary.json for audits that
    do not sample (memorization, exposure)."""
    out = Path(out)
    with JsonlWriter(out / "report.jsonl") as w:
        w.write("run", run_record)
        for entry_type, rec in records:
            w.write(entry_type, rec)
        w.write("summary", summary)
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1, default=str))
