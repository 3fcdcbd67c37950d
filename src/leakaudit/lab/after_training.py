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
    from leakaudit.targets.hf import HFCausalLM

    model = HFCausalLM.load(target_dir, name="target")
    return run_output_filter(model=model, docs=corpus.train, canaries=corpus.canaries, n=n,
                             fp_rate=fp_rate, config=config, out=out,
                             repeated=[b["text"] for b in corpus.boilerplate],
                             run_extra={"models": {"target": {"path": str(target_dir)}},
                                        "corpus": {"n_docs": len(corpus.train)}}, log=log)


def run_defenses_lab(stage: Path, corpus, *, target_dir: Path, reference_dir: Path, n_shards: int,
                     seed: int, filter_n: int, log=print) -> list[tuple[str, dict]]:
    """Both experiments on a lab run's target; returns ``output_filter`` and ``erasure`` records
    for the lab report. Models of the erasure go to ``stage/erasure``."""
    from types import SimpleNamespace

    from leakaudit.commands.unlearn import erasure_records, run_unlearn, summary_lines
    from leakaudit.corpus.index import CorpusIndex
    from leakaudit.defenses.erasure import VerifyConfig
    from leakaudit.defenses.output_filter import MemFreeLM, NgramFilter
    from leakaudit.defenses.output_filter_eval import BypassConfig, evaluate_bypass
    from leakaudit.defenses.unlearning import training_spec
    from leakaudit.targets.hf import HFCausalLM

    texts = [d["text"] for d in corpus.train]
    target = HFCausalLM.load(target_dir, name="target")
    filt = NgramFilter.from_texts(texts, target, n=filter_n, fp_rate=1e-4)
    fp = filt.measure_fp_rate(vocab_size=target.vocab_size, n_probes=20_000, seed=seed)
    bcfg = BypassConfig(n_docs=30, seed=seed)
    res = evaluate_bypass({"unfiltered": target, "memfree": MemFreeLM(target, filt, name="memfree")},
                          texts, CorpusIndex.build(texts), n=filter_n, canaries=corpus.canaries,
                          config=bcfg, repeated=[b["text"] for b in corpus.boilerplate])
    out: list[tuple[str, dict]] = [("output_filter", {
        "kind": "setup", "filter": filt.describe(), "fp_rate": fp, "config": res["config"],
        "n_probes": res["n_probes"], "filter_stats": res["filter_stats"]})]
    for r in res["rates"]:
        rr = dict(r)
        rr["probe_kind"] = rr.pop("kind")
        rr["variant"] = rr.pop("target")
        out.append(("output_filter", {"kind": "rate", **rr}))
    log("output filter: " + ", ".join(
        f"{r['target']} {r['kind']} exact {r['k']}/{r['n']}"
        for r in res["rates"] if r["style"] == "plain" and r["measure"] == "exact"))

    subj = pick_subject(corpus.canaries, corpus.train, n_shards=n_shards, max_repeats=8)
    docs = [SimpleNamespace(id=d["id"], text=d["text"]) for d in corpus.train]
    spec = training_spec(target_dir)
    run_unlearn(model=target_dir, docs=docs, forget_ids=subj["forget_ids"],
                methods=["ga", "gd", "npo", "oracle", "sisa"], out=stage / "erasure", steps=15,
                lr=5e-4, batch_size=8, beta=0.1, retain_weight=1.0, shards=n_shards,
                train_spec=spec, seed=seed, log=log)
    reference = HFCausalLM.load(reference_dir, name="reference")
    recs = erasure_records(stage / "erasure", docs=docs,
                           unseen=[d["text"] for d in corpus.heldout], reference=reference,
                           manifest=corpus.manifest, relapse=["ga", "gd", "npo"],
                           cfg=VerifyConfig(exposure_references=100, seed=seed), log=log)
    for line in summary_lines(recs):
        log("erasure: " + line)
    return out + [("erasure", r) for r in recs]
