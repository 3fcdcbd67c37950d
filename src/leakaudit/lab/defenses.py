"""``leakaudit lab --defenses``: every training-side defense judged by re-running the same attacks.

One seeded lab corpus (:mod:`leakaudit.lab.corpus`), one tokenizer (trained on the undefended
training split, so per-token perplexities compare), one seed, the target's training schedule;
the variants differ only in the defense:

- ``undefended``: the lab target;
- ``dedup``: trained on the training split after NearDup + ExactSubstr (:mod:`leakaudit.defenses.dedup`,
  Lee et al.'s parameters, tokens of the lab tokenizer);
- ``scrubbed``: trained on the training split with every detected PII value redacted
  (:mod:`leakaudit.defenses.scrub`);
- ``dp_eps8``, ``dp_eps1``: DP-SGD (:mod:`leakaudit.training.dp_lm`, ghost clipping, C = 1,
  δ = 1/(10·n)) calibrated to ε = 8 and ε = 1;
- ``small``, ``tiny``: the target's schedule at two smaller widths (capacity).

The battery, the same for every variant and always against the *original* training split (the
question is what each model gives away of the data the owner holds): held-out perplexity
(utility, bootstrap CI over documents); exact memorization of training windows (Carlini et al.
2022) overall and by duplicate count, for formerly duplicated windows (count ≥ 2) and for windows
without PII; canary exposure (Secret Sharer; bootstrap CI over canaries); LLM membership inference
(documents vs held-out and canaries vs same-template secrets, the best attack's TPR at 1% FPR with
its Clopper–Pearson interval, next to the model-free baseline's AUC); untargeted extraction
(best ranking's precision with CI, verified samples, canaries whose secret appears in a sample,
distinct training-corpus PII values that appear in a sample, by kind).

Every variant gives one ``defense_comparison`` record; the HTML report draws the table and the
privacy–utility plot (:mod:`leakaudit.report.sections_defenses`).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from leakaudit.attacks.extraction.pipeline import ExtractionConfig
from leakaudit.attacks.memorization.measure import MemorizationConfig
from leakaudit.progress import null_progress
from leakaudit.training.lm import LMSpec

VARIANTS = ("undefended", "dedup", "scrubbed", "dp_eps8", "dp_eps1", "small", "tiny")


@dataclass(frozen=True)
class DefenseLabConfig:
    n_docs: int = 300
    n_heldout: int = 300
    n_reference: int = 300
    vocab_size: int = 1024
    canary_repeats: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    boilerplate_repeats: tuple[int, ...] = (2, 8, 16, 32)
    target: LMSpec = field(default_factory=lambda: LMSpec(n_layer=2, n_embd=128, n_head=4, n_ctx=256,
                                                          epochs=22, lr=3e-3, batch_size=8))
    reference: LMSpec = field(default_factory=lambda: LMSpec(n_layer=2, n_embd=96, n_head=4, n_ctx=256,
                                                             epochs=8, lr=3e-3, batch_size=8))
    #: widths of the capacity variants (same depth, heads and schedule as the target)
    small_widths: tuple[int, int] = (64, 32)
    dp_epsilons: tuple[float, float] = (8.0, 1.0)
    dp_max_grad_norm: float = 1.0
    scrub_mode: str = "redact"
    variants: tuple[str, ...] = VARIANTS
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

    @classmethod
    def quick(cls, seed: int = 0) -> "DefenseLabConfig":
        return cls(
            n_docs=150, n_heldout=150, n_reference=150,
            target=LMSpec(n_layer=2, n_embd=128, n_head=4, n_ctx=256, epochs=15, lr=3e-3, batch_size=8),
            reference=LMSpec(n_layer=2, n_embd=64, n_head=4, n_ctx=256, epochs=5, lr=3e-3, batch_size=8),
            memorization=MemorizationConfig(prefix_lengths=(32,), suffix_length=32, n_sequences=200,
                                            greedy_check=0),
            extraction=ExtractionConfig(samplers=("top_k", "internet"), n_samples=50, select=25,
                                        generate_batch_size=50, score_batch_size=32,
                                        max_new_tokens=240, show_pii=True),
            exposure_references=300, membership_reference_secrets=20, membership_boot=100,
            n_boot=500, seed=seed)

    def with_seed(self, seed: int) -> "DefenseLabConfig":
        return replace(self, seed=seed, extraction=replace(self.extraction, seed=seed),
                       memorization=replace(self.memorization, seed=seed))


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
    """Token-level perplexity on ``texts`` (exp of the mean per-token NLL), with a bootstrap CI
    over documents (each document weighted by its number of tokens)."""
    ids = model.tokenize(list(texts))
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
                    "auc": e.metrics.auc, "n_pos": t.n_pos, "n_neg": t.n_neg}
    b = audit.baseline.get(main)
    out = best or {"attack": None, "tpr": None, "ci_low": None, "ci_high": None}
    out["blind_auc"] = b.metrics.auc if b is not None else None
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


def run_battery(models: dict[str, Any], *, reference, corpus, index, cfg: DefenseLabConfig,
                cache_dir: Path, progress=null_progress, log=print) -> tuple[dict[str, dict], list]:
    """The same attacks on every model of ``models`` (name → HFCausalLM); returns per-model rows
    and the memorization records (for the report's memorization section)."""
    from leakaudit.attacks.extraction.pipeline import run_extraction
    from leakaudit.attacks.membership.evaluate import EvalConfig
    from leakaudit.corpus.pii import find_pii
    from leakaudit.lab.membership import llm_lab_membership
    from leakaudit.workflow import exposure_records, memorization_records

    train = corpus.train
    texts = [d["text"] for d in train]
    ids = [d["id"] for d in train]
    heldout = [d["text"] for d in corpus.heldout]
    canaries = corpus.manifest["canaries"]
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
    log(f"defenses: memorization ({time.perf_counter() - t0:.1f}s)")
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
        pairs, by_rep = exposure_records(m, canaries, n_references=cfg.exposure_references,
                                         seed=cfg.seed, batch_size=cfg.extraction.score_batch_size,
                                         progress=progress)
        exp = [r for et, r in pairs if r.get("kind") == "canary"]
        row["exposure"] = {
            "mean": bootstrap_mean_ci([r["exposure_rank"] for r in exp], n_boot=cfg.n_boot, seed=cfg.seed),
            "by_repeats": {str(r["repeats"]): r["mean_exposure_rank"] for r in by_rep},
            "by_kind": {k: float(np.mean([r["exposure_rank"] for r in exp if r["canary_kind"] == k]))
                        for k in sorted({r["canary_kind"] for r in exp})},
            "max_possible": float(math.log2(cfg.exposure_references + 1)),
        }
        mia = llm_lab_membership(
            m, {"reference": reference}, corpus, k=cfg.membership_k,
            n_reference_secrets=cfg.membership_reference_secrets, heavy_repeats=16, seed=cfg.seed,
            eval_config=EvalConfig(n_boot=cfg.membership_boot, seed=cfg.seed), cache_dir=cache_dir,
            batch_size=cfg.extraction.score_batch_size, progress=progress, log=lambda *_: None)
        row["membership"] = {"documents": _best_tpr(mia.documents), "canaries": _best_tpr(mia.canaries)}
        ext = run_extraction(m, references={"reference": reference}, index=index, prompt_texts=heldout,
                             canaries=canaries, config=cfg.extraction, cache_dir=cache_dir,
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
            "canaries_extracted_by_kind": {k: sum(kinds_of[c["canary_id"]] == k for c in extracted_canaries)
                                           for k in sorted(set(kinds_of.values()))},
            "corpus_pii_in_samples": {k: sum(v in sample_text for v in vals)
                                      for k, vals in sorted(corpus_pii.items())},
            "corpus_pii_total": {k: len(v) for k, v in sorted(corpus_pii.items())},
        }
        d = row["membership"]["documents"]
        tpr = "n/a" if d["tpr"] is None else f"{d['tpr']:.1%}"
        log(f"{name}: held-out ppl {row['utility']['heldout_ppl']['value']:.2f}, exact mem "
            f"{(row['memorization'].get('all') or {}).get('value') or 0:.1%} (dup>=2 "
            f"{(row['memorization'].get('dup') or {}).get('value') or 0:.1%}), exposure "
            f"{row['exposure']['mean']['value']:.2f} bits, MIA TPR@1% "
            f"{tpr}, extraction verified "
            f"{row['extraction']['verified_samples']}, canaries {len(extracted_canaries)} "
            f"({time.perf_counter() - t0:.1f}s)")
    # memorization records of the report, without raw suffix text
    mem_report = [(et, {k: v for k, v in r.items() if k != "suffix_text"}) for et, r in mem_pairs
                  if r.get("kind") != "sequence"]
    return rows, mem_report


# ------------------------------------------------------------------------------ the lab

def run_defense_lab(out_dir: str | Path, config: DefenseLabConfig, *, progress=null_progress, log=print,
                    command: str = "leakaudit lab --defenses") -> dict[str, Any]:
    """Corpus → variants → the battery → ``report.jsonl`` (one ``defense_comparison`` record per
    variant), ``summary.json`` and ``report.html`` in ``out_dir``."""
    import torch

    from leakaudit.corpus.index import CorpusIndex
    from leakaudit.defenses.dedup import DedupConfig, deduplicate
    from leakaudit.defenses.scrub import ScrubConfig, residual_secrets, scrub_texts
    from leakaudit.lab.corpus import LabCorpusConfig, generate_lab_corpus
    from leakaudit.lab.run import _jsonable, versions
    from leakaudit.report.html import render_html
    from leakaudit.report.records import staged_output
    from leakaudit.targets.hf import HFCausalLM
    from leakaudit.training.dp_lm import DPLMConfig, train_causal_lm_dp
    from leakaudit.training.lm import train_causal_lm, train_tokenizer
    from leakaudit.workflow import write_records_report

    cfg = config.with_seed(config.seed)
    unknown = [v for v in cfg.variants if v not in VARIANTS]
    if unknown or "undefended" not in cfg.variants:
        raise ValueError(f"variants must include 'undefended' and come from {VARIANTS}; got {cfg.variants}")
    t_start = time.perf_counter()
    with staged_output(out_dir) as stage:
        corpus = generate_lab_corpus(LabCorpusConfig(
            n_docs=cfg.n_docs, n_heldout=cfg.n_heldout, n_reference=cfg.n_reference, seed=cfg.seed,
            canary_repeats=cfg.canary_repeats, boilerplate_repeats=cfg.boilerplate_repeats))
        corpus.write(stage / "corpus")
        train_texts = [d["text"] for d in corpus.train]
        tok = train_tokenizer(train_texts, vocab_size=cfg.vocab_size)
        defenses: dict[str, dict[str, Any]] = {}
        data: dict[str, list[str]] = {"undefended": train_texts}
        if "dedup" in cfg.variants:
            dd = deduplicate(train_texts, [d["id"] for d in corpus.train], tokenizer=tok, config=DedupConfig())
            data["dedup"] = [t for t, k in zip(dd.texts, dd.kept) if k]
            defenses["dedup"] = dd.summary()
            log(f"dedup: {dd.stats['n_near_duplicate_docs']} near-duplicate documents, "
                f"{dd.stats['n_repeated_spans']} repeated spans ({dd.stats['n_repeated_span_tokens']} tokens) "
                f"removed; windows before {dd.windows_before}, after {dd.windows_after}")
        if "scrubbed" in cfg.variants:
            sc = scrub_texts(train_texts, ScrubConfig(mode=cfg.scrub_mode))
            data["scrubbed"] = sc.texts
            truth = [(c["kind"], c["secret"]) for c in corpus.manifest["canaries"]]
            defenses["scrubbed"] = {**sc.summary(), "canary_secrets_left": residual_secrets(sc.texts, truth)}
            log(f"scrub: replaced {sc.counts}; residual {sc.residual}; canary secrets left "
                f"{defenses['scrubbed']['canary_secrets_left']}")
        training: dict[str, Any] = {}
        models: dict[str, HFCausalLM] = {}
        specs: dict[str, LMSpec] = {}

        def fit(name: str, texts, spec: LMSpec, seed_off: int, dp: DPLMConfig | None = None):
            mdir = stage / "models" / name
            t0 = time.perf_counter()
            with progress(f"training {name}", None) as adv:
                cb = lambda s, total, loss, _a=adv: _a(1)  # noqa: E731
                if dp is None:
                    train_causal_lm(texts, tok, spec, seed=cfg.seed * 101 + seed_off, out_dir=mdir, progress=cb)
                    rec = None
                else:
                    _, rec = train_causal_lm_dp(texts, tok, spec, dp, seed=cfg.seed * 101 + seed_off,
                                                out_dir=mdir, progress=cb)
            training[name] = {"wall_s": round(time.perf_counter() - t0, 1), "spec": asdict(spec),
                              "n_docs": len(texts), **({"dp": rec} if rec else {})}
            specs[name] = spec
            log(f"trained {name}: {spec.n_layer}×{spec.n_embd}"
                + (f", ε = {rec['epsilon']:.2f} (σ = {rec['noise_multiplier']:.3f}, q = {rec['sample_rate']:.4f}, "
                   f"{rec['steps']} steps)" if rec else "") + f" ({training[name]['wall_s']}s)")
            return HFCausalLM.load(mdir, name=name)

        models["undefended"] = fit("undefended", train_texts, cfg.target, 0)
        for v in ("dedup", "scrubbed"):
            if v in cfg.variants:
                models[v] = fit(v, data[v], cfg.target, 0)
        for v, eps in zip(("dp_eps8", "dp_eps1"), cfg.dp_epsilons):
            if v in cfg.variants:
                models[v] = fit(v, train_texts, cfg.target, 0,
                                DPLMConfig(target_epsilon=eps, max_grad_norm=cfg.dp_max_grad_norm))
        for v, w in zip(("small", "tiny"), cfg.small_widths):
            if v in cfg.variants:
                models[v] = fit(v, train_texts, replace(cfg.target, n_embd=w), 0)
        reference = fit("reference", [d["text"] for d in corpus.reference], cfg.reference, 1)
        index = CorpusIndex.build(train_texts, [d["id"] for d in corpus.train])
        rows, mem_records = run_battery(models, reference=reference, corpus=corpus, index=index, cfg=cfg,
                                        cache_dir=stage / "cache", progress=progress, log=log)
        records = []
        for name in models:
            row = rows[name]
            row.update({"defense": name, "n_params": sum(p.numel() for p in models[name].model.parameters()),
                        "training": training[name], "defense_record": defenses.get(name)})
            records.append(("defense_comparison", row))
        claims = evaluate_claims(rows)
        summary = {"attack": "defense_comparison", "variants": list(models), "claims": claims,
                   "wall_s": round(time.perf_counter() - t_start, 1)}
        run_record = {**versions(), "command": command, "seed": cfg.seed, "threads": torch.get_num_threads(),
                      "config": {"defense_lab": _jsonable(asdict(cfg))},
                      "models": {n: {"path": f"models/{n}", "fingerprint": m.fingerprint(),
                                     "n_params": rows[n]["n_params"]} for n, m in models.items()},
                      "corpus": {"path": "corpus/train.jsonl", "n_docs": len(train_texts)},
                      "training": training}
        write_records_report(stage, run_record=run_record, records=records + mem_records, summary=summary)
        import shutil

        shutil.rmtree(stage / "cache", ignore_errors=True)
        render_html(stage)
    return summary


def _v(r: dict | None):
    return None if not r else r.get("value", r.get("tpr"))


def evaluate_claims(rows: dict[str, dict]) -> dict[str, dict[str, Any]]:
    """The seeds' four claims, each as measured numbers and a verdict (True / False / None when a
    variant is missing or a number is not resolvable). Intervals are 95%."""
    out: dict[str, dict[str, Any]] = {}
    u = rows.get("undefended")
    if u is None:
        return out
    if "dedup" in rows:
        a, b = u["memorization"].get("dup"), rows["dedup"]["memorization"].get("dup")
        ratio = (a["value"] / b["value"]) if a and b and b["value"] else (math.inf if a and a["value"] else None)
        out["dedup_cuts_duplicated_memorization"] = {
            "claim": "deduplication cuts verbatim memorization of formerly duplicated content several-fold",
            "undefended": a, "dedup": b, "ratio": ratio,
            # several-fold (≥ 3×), and the intervals separate
            "holds": None if a is None or b is None else bool(
                (ratio is not None and ratio >= 3) and a["ci_low"] > b["ci_high"])}
    if "dp_eps8" in rows:
        a, b = u["membership"]["documents"], rows["dp_eps8"]["membership"]["documents"]
        ea, eb = u["exposure"]["mean"], rows["dp_eps8"]["exposure"]["mean"]
        ok = None if a["tpr"] is None or b["tpr"] is None else bool(b["tpr"] <= a["tpr"] / 3)
        out["dp_eps8_cuts_mia_and_exposure"] = {
            "claim": "DP-SGD at ε≈8 cuts the best membership attack's TPR at 1% FPR to at most a third "
                     "of the undefended model's, and canary exposure falls",
            "undefended_tpr": a, "dp_tpr": b, "undefended_exposure": ea, "dp_exposure": eb,
            "holds": None if ok is None else bool(ok and eb["ci_high"] < ea["ci_low"])}
    if "scrubbed" in rows:
        a, b = u["extraction"], rows["scrubbed"]["extraction"]
        ma, mb = u["memorization"].get("nonpii"), rows["scrubbed"]["memorization"].get("nonpii")
        pii_b = sum(b["corpus_pii_in_samples"].values())
        out["scrub_removes_pii_keeps_other_memorization"] = {
            "claim": "scrubbing removes the scrubbed PII kinds from what can be extracted while "
                     "memorization of non-PII text stays",
            "undefended_pii_in_samples": a["corpus_pii_in_samples"], "scrubbed_pii_in_samples": b["corpus_pii_in_samples"],
            "undefended_canaries_extracted": a["canaries_extracted"], "scrubbed_canaries_extracted": b["canaries_extracted"],
            "undefended_nonpii_memorization": ma, "scrubbed_nonpii_memorization": mb,
            # no training-corpus PII value and no canary secret in any sample, and the non-PII
            # memorization intervals overlap
            "holds": None if ma is None or mb is None else bool(
                pii_b == 0 and b["canaries_extracted"] == 0
                and mb["ci_high"] >= ma["ci_low"] and ma["ci_high"] >= mb["ci_low"])}
    sizes = [n for n in ("undefended", "small", "tiny") if n in rows]
    if len(sizes) > 1:
        rs = [rows[n]["memorization"].get("all") for n in sizes]
        out["smaller_models_memorize_less"] = {
            "claim": "smaller models memorize less",
            "by_size": {n: {"n_params": rows[n].get("n_params"), "exact": r} for n, r in zip(sizes, rs)},
            "holds": None if any(r is None for r in rs) else bool(
                all(rs[i]["value"] > rs[i + 1]["value"] for i in range(len(rs) - 1))
                and rs[0]["ci_low"] > rs[-1]["ci_high"])}
    return out
