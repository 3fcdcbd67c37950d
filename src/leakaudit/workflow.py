"""Glue shared by ``leakaudit lab`` and the commands: run an audit and return its report records
(``(entry_type, dict)`` pairs for :func:`leakaudit.report.writer.write_report`) and a summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from leakaudit.attacks.extraction.pipeline import ExtractionConfig, run_extraction
from leakaudit.progress import null_progress

Pairs = list[tuple[str, dict[str, Any]]]


def extraction_records(
    *,
    target,
    references,
    index,
    prompt_texts,
    canaries,
    config: ExtractionConfig,
    progress=null_progress,
    log=print,
    cache_dir=None,
    doc_locations: dict[str, dict[str, Any]] | None = None,
) -> tuple[Pairs, dict[str, Any]]:
    """Run extraction; return its report records and its summary.

    ``doc_locations`` maps a corpus document id to ``{"file": path, "line": n}`` (the corpus
    loader's ``Document.source`` / ``line``); every verified sample then carries
    ``match_locations`` for the documents it matched, which SARIF reports as result locations.
    """
    warnings: list[str] = []

    def warn(msg: str) -> None:
        warnings.append(msg)
        log(f"warning: {msg}")

    res = run_extraction(target, references=references, index=index, prompt_texts=prompt_texts,
                         canaries=canaries, config=config, cache_dir=cache_dir, progress=progress,
                         warn=warn)
    summary = {**res.summary, "timings_s": {k: round(v, 2) for k, v in res.timings.items()},
               "warnings": warnings}
    samples = res.samples
    if doc_locations:
        samples = [_with_locations(s, doc_locations) for s in samples]
    pairs: Pairs = [("sample", s) for s in samples]
    pairs += [("eval", e) for e in res.evals]
    pairs += [("canary", c) for c in res.canaries]
    pairs.append(("pii", res.pii))
    return pairs, summary


def _with_locations(sample: dict[str, Any], locations: dict[str, dict[str, Any]]) -> dict[str, Any]:
    if not sample.get("verified"):
        return sample
    locs = [{"doc_id": d, **locations[d]} for d in sample.get("match_docs") or [] if d in locations]
    return {**sample, "match_locations": locs}


def write_extraction_report(out: Path, *, run_record: dict[str, Any], extra_records=(),
                            summary_extra: dict[str, Any] | None = None,
                            formats=("jsonl",), **kwargs) -> dict[str, Any]:
    """Deprecated: run :func:`extraction_records` and write through
    :func:`leakaudit.report.writer.write_report` (the one writer)."""
    from leakaudit.report.writer import write_report

    pairs, summary = extraction_records(**kwargs)
    summary.update(summary_extra or {})
    write_report(out, run_record=run_record, records=pairs + list(extra_records), summary=summary,
                 formats=formats)
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
    """Deprecated: use :func:`leakaudit.report.writer.write_report` (the one writer)."""
    from leakaudit.report.writer import write_report

    write_report(out, run_record=run_record, records=records, summary=summary, formats=("jsonl",))
