"""Inserting Secret Sharer canaries into a corpus (the step before training and ``exposure``)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from leakaudit.errors import InputError


def insert_into_corpus(corpus: Path, out: Path, *, templates: list[str], spaces: list[str],
                       repeats: tuple[int, ...], text_field: str = "text", seed: int = 0,
                       log=None) -> tuple[int, int]:
    """Write ``out/corpus.jsonl`` (the corpus with canaries) and ``out/manifest.json`` (the
    canaries with their secrets), staged. Returns (canaries inserted, documents)."""
    from leakaudit.attacks.canaries.insert import CanarySpec, insert_canaries
    from leakaudit.corpus.load import load_corpus, save_jsonl
    from leakaudit.runs.staged import check_output_location, staged_output

    produces = ("corpus.jsonl", "manifest.json")
    check_output_location(out, produces=produces, inputs=[corpus])
    if len(spaces) not in (1, len(templates)):
        raise InputError(f"give one --space for all templates or one per template "
                         f"({len(templates)} templates, {len(spaces)} spaces)")
    specs = [CanarySpec(t, spaces[i] if len(spaces) > 1 else spaces[0]) for i, t in enumerate(templates)]
    docs = load_corpus(corpus, text_field=text_field)
    new_docs, records = insert_canaries([{"id": d.id, "text": d.text} for d in docs], specs,
                                        repeats, seed=seed)
    with staged_output(out, produces=produces, inputs=[corpus], log=log) as stage:
        save_jsonl([replace(d, text=n["text"]) for d, n in zip(docs, new_docs)], stage / "corpus.jsonl")
        (stage / "manifest.json").write_text(json.dumps(
            {"source_corpus": str(corpus), "seed": seed, "repeats": list(repeats),
             "canaries": records}, indent=1, ensure_ascii=False), encoding="utf-8")
    return len(records), len(docs)
