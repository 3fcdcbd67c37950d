"""Glue shared by ``leakaudit lab`` and ``leakaudit extract``: run extraction and write the
report files (report.jsonl, hits.jsonl, summary.json) into a folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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
                         warn=warn)
    summary = {**res.summary, "timings_s": {k: round(v, 2) for k, v in res.timings.items()},
               "warnings": warnings}
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
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    return summary
