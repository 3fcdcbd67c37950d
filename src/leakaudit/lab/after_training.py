"""Lab experiments for defenses applied after training: the MemFree output filter against its
bypasses, and the erasure of one data subject (unlearning and its verification).

The data subject is the owner of one canary secret (an SSN, a phone number, ...) that the lab
corpus copies into several training documents: their forget set is every training document that
holds the secret, found by searching the corpus for it, as an operator answering a GDPR request
would search for the subject's identifiers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from leakaudit.defenses.unlearning import shard_of


def pick_subject(canaries: Sequence[Mapping[str, Any]], train: Sequence[Mapping[str, str]], *,
                 n_shards: int, max_repeats: int) -> dict[str, Any]:
    """The canary (data subject) with the most repeats, at most ``max_repeats``, whose documents
    all sit in one SISA shard (so its deletion retrains one shard; the lab reports how many
    shards a deletion touches in general). Its forget set is every training document containing
    the secret."""
    best = None
    for c in canaries:
        if c["repeats"] > max_repeats:
            continue
        docs = [d["id"] for d in train if c["secret"] in d["text"]]
        if len({shard_of(i, n_shards) for i in docs}) == 1 and \
                (best is None or c["repeats"] > best[0]["repeats"]):
            best = (c, docs)
    if best is None:
        raise ValueError(f"no canary with <= {max_repeats} repeats lies in one of {n_shards} shards")
    c, docs = best
    return {"canary": c, "forget_ids": sorted(docs)}


def lab_output_filter(target_dir: Path, corpus, out: Path, *, n: int, fp_rate: float, config,
                      log=print) -> dict:
    """Run the output-filter evaluation on a lab target and its corpus (report in ``out``)."""
    from leakaudit.commands.output_filter import run_output_filter
    from leakaudit.targets import load_target

    model = load_target(target_dir, name="target")
    return run_output_filter(model=model, docs=corpus.train, canaries=corpus.canaries, n=n,
                             fp_rate=fp_rate, config=config, out=out,
                             repeated=[b["text"] for b in corpus.boilerplate],
                             run_extra={"models": {"target": {"path": str(target_dir)}},
                                        "corpus": {"n_docs": len(corpus.train)}}, log=log)

