"""One attack battery over several models: leakage next to utility, with intervals.

``leakaudit compare`` and the lab's defense section (:mod:`leakaudit.lab.defenses`) run the same
attacks on every model against the same training documents: held-out perplexity (utility,
bootstrap CI over documents, weighted by tokens); exact memorization of training windows
(Carlini et al. 2022) overall, for windows occurring ≥ 2 times in the corpus ("dup"), once
("unique"), and for windows with / without PII; LLM membership inference (best attack's TPR at
1% FPR with its Clopper–Pearson interval, next to the model-free baseline's AUC); untargeted
extraction (best ranking's precision with CI, verified samples, distinct PII values of the
training corpus that appear in generated continuations); and, on the lab, canary exposure
(bootstrap CI over canaries).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from leakaudit.attacks.extraction.pipeline import ExtractionConfig
from leakaudit.attacks.memorization.measure import MemorizationConfig
from leakaudit.progress import null_progress


@dataclass(frozen=True)
class BatteryConfig:
    """The attack settings of :func:`run_battery` (the defenses lab builds one from its config)."""

    memorization: MemorizationConfig = field(default_factory=lambda: MemorizationConfig(
        prefix_lengths=(32,), suffix_length=32, n_sequences=500, greedy_check=0))
    extraction: ExtractionConfig = field(default_factory=lambda: ExtractionConfig(
        samplers=("top_k", "internet"), n_samples=200, select=50, generate_batch_size=100,
        score_batch_size=32, max_new_tokens=240, show_pii=True))
    exposure_references: int = 1000
    membership_k: float = 0.2
    membership_reference_secrets: int = 50
    membership_boot: int = 200
    n_boot: int = 1000
    seed: int = 0


# ------------------------------------------------------------------------------ statistics

def bootstrap_mean_ci(x, *, n_boot: int, seed: int, alpha: float = 0.05, weights=None) -> dict[str, Any]:
    """Mean (weighted by ``weights`` if given) with a percentile bootstrap CI over the items."""
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        return {"value": None, "ci_low": None, "ci_high": None, "n": 0}
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(n_boot, x.size))
    boots = (x[idx] * w[idx]).sum(1) / w[idx].sum(1)
    lo, hi = np.quantile(boots, [alpha / 2, 1 - alpha / 2])
    return {"value": float((x * w).sum() / w.sum()), "ci_low": float(lo), "ci_high": float(hi),
            "n": int(x.size)}


def heldout_perplexity(model, texts, *, n_boot: int, seed: int, batch_size: int = 32) -> dict[str, Any]:
    """Token-level perplexity on ``texts`` (exp of the mean per-token NLL over the positions the
    model's token convention scores: each document as the tokenizer encodes it, every token after
    the first), with a bootstrap CI over documents (each weighted by its number of tokens)."""
    ids = model.document_ids(list(texts)) if hasattr(model, "document_ids") else model.tokenize(list(texts))
    scores = model.score_ids(ids, batch_size=batch_size)
    nll = np.array([-float(np.mean(s.logprobs)) for s in scores if len(s.logprobs)])
    n = np.array([len(s.logprobs) for s in scores if len(s.logprobs)], dtype=np.float64)
    r = bootstrap_mean_ci(nll, weights=n, n_boot=n_boot, seed=seed)
    return {"value": math.exp(r["value"]), "ci_low": math.exp(r["ci_low"]),
            "ci_high": math.exp(r["ci_high"]), "n": r["n"], "n_tokens": int(n.sum())}


def _rate(k: int, n: int) -> dict[str, Any]:
    from leakaudit.metrics.stats import rate

    return rate(k, n).to_dict() if n else {"value": None, "ci_low": None, "ci_high": None, "k": 0, "n": 0}


# ------------------------------------------------------------------------------ the battery

def _best_tpr(audit) -> dict[str, Any]:
    """The attack with the highest TPR at 1% FPR on all members (the audit's first subset; the
    others are member groups), and the blind baseline's AUC on the same subset."""
    best = None
    main = audit.evaluations[0].subset if audit.evaluations else "all"
    for e in audit.evaluations:
        if e.subset != main:
            continue
        t = e.metrics.tpr(0.01)
        if not t.resolvable:
            continue
        if best is None or t.tpr > best["tpr"]:
            best = {"attack": e.label, "tpr": t.tpr, "ci_low": t.ci_low, "ci_high": t.ci_high,
                    "auc": e.metrics.auc, "auc_ci": [float(x) for x in e.metrics.auc_ci],
                    "n_pos": t.n_pos, "n_neg": t.n_neg}
    b = audit.baseline.get(main)
    out = best or {"attack": None, "tpr": None, "ci_low": None, "ci_high": None}
    out["blind_auc"] = b.metrics.auc if b is not None else None
    out["blind_auc_ci"] = [float(x) for x in b.metrics.auc_ci] if b is not None else None
    # the attack with the highest AUC (resolvable on any sample size, unlike TPR at 1% FPR)
    top = max((e for e in audit.evaluations if e.subset == main), key=lambda e: e.metrics.auc,
              default=None)
    out["best_auc"] = None if top is None else {
        "attack": top.label, "auc": top.metrics.auc,
        "auc_ci": [float(x) for x in top.metrics.auc_ci]}
    return out


def _mem_rows(mem_records, kmax: int, pii_windows: set[tuple[str, int]]) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, list[int]]] = {}
    for et, r in mem_records:
        if r.get("kind") != "sequence" or r.get("k") != kmax:
            continue
        d = rows.setdefault(r["model"], {"all": [0, 0], "dup": [0, 0], "unique": [0, 0], "nonpii": [0, 0],
                                         "pii": [0, 0]})
        keys = ["all", "dup" if (r.get("dup_count") or 1) >= 2 else "unique",
                "pii" if (r["doc_id"], r["offset"]) in pii_windows else "nonpii"]
        for key in keys:
            d[key][0] += int(bool(r["exact"]))
            d[key][1] += 1
    return {m: {k: _rate(*v) for k, v in d.items()} for m, d in rows.items()}


def run_battery(models: dict[str, Any], *, reference, train_texts: Sequence[str], train_ids: Sequence[str],
                heldout_texts: Sequence[str], index, config, lab_corpus=None, cache_dir: Path,
                progress=null_progress, log=print) -> tuple[dict[str, dict], list]:
    """The same attacks on every model of ``models`` (name → HFCausalLM), all against the same
    training documents; returns per-model rows and the memorization records (for the report's
    memorization section). ``config`` is a :class:`BatteryConfig`.
    With ``lab_corpus`` (a :class:`~leakaudit.lab.corpus.LabCorpus`) canary exposure runs too and
    membership is the lab's two audits (:func:`leakaudit.audits.lab_membership.llm_lab_membership`:
    documents without insertions, canaries); without it, membership is the training documents vs
    ``heldout_texts``."""
    from leakaudit.attacks.extraction.pipeline import run_extraction
    from leakaudit.corpus.pii import find_pii
    from leakaudit.audits.memorization import memorization_records

    cfg = config

    texts, ids, heldout = list(train_texts), list(train_ids), list(heldout_texts)
    canaries = lab_corpus.manifest["canaries"] if lab_corpus is not None else []
    rows: dict[str, dict] = {m: {"variant": m} for m in models}

    t0 = time.perf_counter()
    mem_pairs, _ = memorization_records(models, texts=texts, doc_ids=ids, index=index,
                                        config=cfg.memorization, show_pii=True, progress=progress,
                                        log=log)
    kmax = max(cfg.memorization.prefix_lengths)
    # windows whose text holds PII in the original corpus (for "non-PII memorization stays")
    pii_windows: set[tuple[str, int]] = set()
    tok_model = next(iter(models.values()))
    by_id = dict(zip(ids, texts))
    for et, r in mem_pairs:
        if r.get("kind") == "sequence" and r.get("k") == kmax and r["model"] == tok_model.name:
            offs = tok_model.token_offsets(by_id[r["doc_id"]])
            a = offs[r["offset"]][0] if r["offset"] < len(offs) else 0
            end_tok = min(len(offs), r["offset"] + cfg.memorization.window) - 1
            b = offs[end_tok][1] if end_tok >= 0 else 0
            if find_pii(by_id[r["doc_id"]][a:b]):
                pii_windows.add((r["doc_id"], r["offset"]))
    mem = _mem_rows(mem_pairs, kmax, pii_windows)
    log(f"compare: memorization ({time.perf_counter() - t0:.1f}s)")
    corpus_pii: dict[str, set[str]] = {}
    for t in texts:
        for f in find_pii(t):
            corpus_pii.setdefault(f.kind, set()).add(f.value)
    kinds_of = {c["id"]: c["kind"] for c in canaries}
    for name, m in models.items():
        t0 = time.perf_counter()
        row = rows[name]
        row["utility"] = {"heldout_ppl": heldout_perplexity(m, heldout, n_boot=cfg.n_boot, seed=cfg.seed,
                                                            batch_size=cfg.extraction.score_batch_size)}
        row["memorization"] = mem.get(name, {})
        row["exposure"] = _exposure(m, canaries, cfg, progress) if canaries else None
        row["membership"] = _membership(m, reference, lab_corpus, texts, ids, heldout, cfg, cache_dir,
                                        progress)
        ext = run_extraction(m, references={"reference": reference} if reference is not None else {},
                             index=index, prompt_texts=heldout,
                             canaries=canaries or None, config=cfg.extraction, cache_dir=cache_dir,
                             progress=progress)
        # the generated continuations only (an internet prompt is held-out text, not the model's)
        sample_text = "\x00".join(s["text"][len(s["prompt"]):] if s["text"].startswith(s["prompt"])
                                  else s["text"] for s in ext.samples)
        extracted_canaries = [c for c in ext.canaries if c["extracted"]]
        best = ext.summary.get("best") or {}
        row["extraction"] = {
            "precision": {"value": best.get("precision"), "ci_low": best.get("ci_low"),
                          "ci_high": best.get("ci_high"), "sampler": best.get("sampler"),
                          "ranking": best.get("ranking")},
            "n_samples": ext.summary["n_samples"],
            "verified_samples": ext.summary["n_verified_samples"],
            "verified_fraction": ext.summary["verified_fraction_of_all"],
            "canaries_extracted": len(extracted_canaries),
            "canaries_extracted_by_kind": {k: sum(kinds_of.get(c["canary_id"]) == k for c in extracted_canaries)
                                           for k in sorted(set(kinds_of.values()))},
            "corpus_pii_in_samples": {k: sum(v in sample_text for v in vals)
                                      for k, vals in sorted(corpus_pii.items())},
            "corpus_pii_total": {k: len(v) for k, v in sorted(corpus_pii.items())},
        }
        d = row["membership"]["documents"]
        tpr = "n/a" if d["tpr"] is None else f"{d['tpr']:.1%}"
        expo = "n/a" if row["exposure"] is None else f"{row['exposure']['mean']['value']:.2f} bits"
        log(f"{name}: held-out ppl {row['utility']['heldout_ppl']['value']:.2f}, exact mem "
            f"{(row['memorization'].get('all') or {}).get('value') or 0:.1%} (dup>=2 "
            f"{(row['memorization'].get('dup') or {}).get('value') or 0:.1%}), exposure "
            f"{expo}, MIA TPR@1% "
            f"{tpr}, extraction verified "
            f"{row['extraction']['verified_samples']}, canaries {len(extracted_canaries)} "
            f"({time.perf_counter() - t0:.1f}s)")
    # memorization records of the report, without raw suffix text
    mem_report = [(et, {k: v for k, v in r.items() if k != "suffix_text"}) for et, r in mem_pairs
                  if r.get("kind") != "sequence"]
    return rows, mem_report


def _exposure(m, canaries, cfg, progress) -> dict[str, Any]:
    from leakaudit.audits.exposure import exposure_records

    pairs, by_rep = exposure_records(m, canaries, n_references=cfg.exposure_references,
                                     seed=cfg.seed, batch_size=cfg.extraction.score_batch_size,
                                     progress=progress)
    exp = [r for et, r in pairs if r.get("kind") == "canary"]
    return {
        "mean": bootstrap_mean_ci([r["exposure_rank"] for r in exp], n_boot=cfg.n_boot, seed=cfg.seed),
        "by_repeats": {str(r["repeats"]): r["mean_exposure_rank"] for r in by_rep},
        "by_kind": {k: float(np.mean([r["exposure_rank"] for r in exp if r["canary_kind"] == k]))
                    for k in sorted({r["canary_kind"] for r in exp})},
        "max_possible": float(math.log2(cfg.exposure_references + 1)),
    }


def _membership(m, reference, lab_corpus, texts, ids, heldout, cfg, cache_dir,
                progress) -> dict[str, Any]:
    from leakaudit.attacks.membership.evaluate import EvalConfig

    refs = {"reference": reference} if reference is not None else {}
    ev = EvalConfig(n_boot=cfg.membership_boot, seed=cfg.seed)
    if lab_corpus is not None:
        from leakaudit.audits.lab_membership import llm_lab_membership

        mia = llm_lab_membership(
            m, refs, lab_corpus, k=cfg.membership_k, n_reference_secrets=cfg.membership_reference_secrets,
            heavy_repeats=16, seed=cfg.seed, eval_config=ev, cache_dir=cache_dir,
            batch_size=cfg.extraction.score_batch_size, progress=progress, log=lambda *_: None)
        return {"documents": _best_tpr(mia.documents), "canaries": _best_tpr(mia.canaries)}
    from leakaudit.attacks.membership.audit_llm import audit_llm_membership

    docs = audit_llm_membership(m, refs, texts, heldout, k=cfg.membership_k, member_ids=ids,
                                eval_config=ev, cache_dir=cache_dir,
                                batch_size=cfg.extraction.score_batch_size, progress=progress,
                                log=lambda *_: None, subset_name="training documents vs held-out")
    return {"documents": _best_tpr(docs)}


# ------------------------------------------------------------------------------ honest verdicts

#: a model-free baseline AUC above this means the member and non-member sets differ in ways a
#: blind attacker sees (length, topic, date): membership numbers then measure the split
BLIND_AUC_WARN = 0.6

#: leakage measures of a battery row, higher = more leaked: (label, getter)
_LEAKAGE = (
    ("membership TPR@1%FPR", lambda r: ((r.get("membership") or {}).get("documents") or {}).get("tpr")),
    ("exact memorization", lambda r: ((r.get("memorization") or {}).get("all") or {}).get("value")),
    ("mean canary exposure", lambda r: ((r.get("exposure") or {}).get("mean") or {}).get("value")),
    ("verified extraction samples", lambda r: (r.get("extraction") or {}).get("verified_samples")),
    ("canaries extracted", lambda r: (r.get("extraction") or {}).get("canaries_extracted")),
)


def comparison_warnings(rows: dict[str, dict], *, baseline: str) -> list[str]:
    """What makes a defense comparison misleading, one sentence each: a blind (model-free)
    baseline that separates members from non-members (AUC > 0.6), and a defended variant that
    leaks *more* than the undefended ``baseline`` on some measure (point estimates).

    >>> rows = {"undefended": {"membership": {"documents": {"tpr": 0.2, "blind_auc": 0.5}}},
    ...         "dp": {"membership": {"documents": {"tpr": 0.3, "blind_auc": 0.7}}}}
    >>> for w in comparison_warnings(rows, baseline="undefended"): print(w)
    dp: the blind baseline separates members from non-members (AUC 0.700 > 0.6): the membership numbers measure the split as much as the model
    dp scores higher than the undefended model (undefended) on membership TPR@1%FPR (0.3 vs 0.2): the defense did not reduce it here
    """
    out: list[str] = []
    for name, r in rows.items():
        for subset, m in ((r.get("membership") or {}).items()):
            auc = (m or {}).get("blind_auc")
            if auc is not None and auc > BLIND_AUC_WARN:
                where = "" if subset == "documents" else f" ({subset})"
                out.append(f"{name}{where}: the blind baseline separates members from non-members "
                           f"(AUC {auc:.3f} > {BLIND_AUC_WARN}): the membership numbers measure the "
                           f"split as much as the model")
    base = rows.get(baseline)
    if base is None:
        return out
    for name, r in rows.items():
        if name == baseline:
            continue
        for label, get in _LEAKAGE:
            a, b = get(base), get(r)
            if a is not None and b is not None and b > a:
                out.append(f"{name} scores higher than the undefended model ({baseline}) on "
                           f"{label} ({b:.3g} vs {a:.3g}): the defense did not reduce it here")
    return out


def claim_verdict(claim: dict[str, Any]) -> str:
    """The verdict of a defense claim (``holds``: True / False / None, ``undefended_leaked``:
    whether the undefended side leaked anything the claim could cut): ``"not testable"`` when
    it leaked nothing (a defense cannot be credited for removing what was never there; ``holds``
    is then set to None), else ``"holds"``, ``"does not hold"`` or ``"not resolvable"``.

    >>> claim_verdict({"holds": True, "undefended_leaked": False})
    'not testable'
    >>> claim_verdict({"holds": True, "undefended_leaked": True})
    'holds'
    """
    if claim.get("undefended_leaked") is False:
        claim["holds"] = None
        return "not testable"
    return {True: "holds", False: "does not hold", None: "not resolvable"}[claim.get("holds")]
