"""HTML sections for memorization (Carlini et al. 2022) and canary exposure (Secret Sharer).

Each builder reads ``memorization`` / ``exposure`` records and returns a generic ``tables``
section: an introduction, tables of pre-formatted cells and inline PNG figures.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from leakaudit.report.html_base import ReportData, Section, _new_figure, _png


def _pct(r: dict | None) -> str:
    if not r or r.get("value") is None:
        return "—"
    return f"{r['value']:.1%} [{r['ci_low']:.1%}, {r['ci_high']:.1%}]"


def _f(x: Any, fmt: str = "{:.2f}") -> str:
    """A number for the page: "—" when missing, "∞" / "−∞" when infinite."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    if isinstance(x, float) and math.isinf(x):
        return "∞" if x > 0 else "−∞"
    return fmt.format(x)


def _mem(rd: ReportData, kind: str) -> list[dict[str, Any]]:
    return [r for r in rd.of("memorization") if r.get("kind") == kind]


def _plot_lines(series: dict[str, list[tuple[float, dict]]], *, xlabel: str, logx: bool,
                title: str) -> str:
    fig = _new_figure(figsize=(5.2, 3.4))
    ax = fig.subplots()
    for i, (label, pts) in enumerate(sorted(series.items())):
        pts = sorted(pts, key=lambda p: p[0])
        xs = [p[0] for p in pts]
        ys = [p[1]["value"] for p in pts]
        lo = [p[1]["value"] - p[1]["ci_low"] for p in pts]
        hi = [p[1]["ci_high"] - p[1]["value"] for p in pts]
        ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=3, label=label, color=f"C{i % 10}")
    if logx:
        ax.set_xscale("log", base=2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fraction memorized (exact)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def build_memorization(rd: ReportData) -> Section | None:
    setup = _mem(rd, "setup")
    rates = _mem(rd, "rate")
    if not setup or not rates:
        return None
    s = setup[-1]
    cfg = s.get("config") or {}
    seqs = s.get("sequences") or {}
    models = s.get("models") or {}
    ell = cfg.get("suffix_length")
    ks = sorted({r["k"] for r in rates})
    kmax = max(ks)
    ns = [str(n) for n in cfg.get("extraction_n") or []]
    samp = cfg.get("sampling") or {}
    tables = []
    overall = [r for r in rates if r["bucket"] == "all"]
    tables.append({
        "id": "memorization-table",
        "caption": f"Exact (greedy-discoverable) memorization of a {ell}-token suffix given a k-token "
                   "prefix, with 95% Clopper–Pearson intervals",
        "headers": ["model", "parameters", "k", "exact", "fractional (teacher-forced)",
                    "median log p_z"] + [f"mean P(extracted in {n})" for n in ns],
        "rows": [[r["model"], _f((models.get(r["model"]) or {}).get("n_params"), "{:,}"), r["k"],
                  _pct(r["exact"]), _f(r["mean_fraction"], "{:.3f}"), _f(r["median_log_pz"], "{:.1f}")]
                 + [_f((r.get("mean_p_extract") or {}).get(n), "{:.3f}") for n in ns]
                 for r in overall],
    })
    tables.append({
        "id": "memorization-dup-table",
        "caption": f"By duplicate count of the {kmax + (ell or 0)}-token window in the corpus (k = {kmax})",
        "headers": ["model", "duplicates", "exact", "fractional", "1-eidetic memorized"],
        "rows": [[r["model"], r["bucket"], _pct(r["exact"]), _f(r["mean_fraction"], "{:.3f}"),
                  (r.get("k_eidetic") or {}).get("1", 0)]
                 for r in rates if r["bucket"] != "all" and r["k"] == kmax],
    })
    checks = _mem(rd, "check")
    if checks:
        tables.append({
            "id": "memorization-check-table",
            "caption": "Slow path: real greedy decoding on a subset, compared with teacher forcing",
            "headers": ["model", "k", "checked", "agreement", "exact (generated)",
                        f"approximate (edit distance ≤ {cfg.get('approx_fraction', 0.1):.0%} of ℓ)",
                        "batch-1 re-check flips", "disagreements"],
            "rows": [[c["model"], c["k"], c.get("n_checked", 0), _pct(c.get("agreement")),
                      _pct(c.get("exact_generated")), _pct(c.get("approximate")),
                      _f((c.get("batch1") or {}).get("n_flipped"), "{}") if c.get("batch1") else "not run",
                      "; ".join(f"{d['doc_id']}@{d['offset']} (teacher forcing "
                                f"{'yes' if d['teacher_forced'] else 'no'}, generated "
                                f"{'yes' if d['generated'] else 'no'})"
                                for d in c.get("disagreements") or []) or "none"]
                     for c in checks],
        })
    seq_rows = [r for r in _mem(rd, "sequence") if r.get("exact") and r.get("k") == kmax]
    seq_rows.sort(key=lambda r: (-(r.get("dup_count") or 0), r.get("model", "")))
    if seq_rows:
        tables.append({
            "id": "memorization-examples",
            "caption": f"Memorized suffixes (k = {kmax}; first 30 by duplicate count"
                       f"{'' if rd.show_pii else ', PII masked'})",
            "headers": ["model", "document", "offset", "duplicates", "documents", "suffix"],
            "rows": [[r["model"], r["doc_id"], r["offset"], r["dup_count"], r["doc_count"],
                      r.get("suffix_text", "")] for r in seq_rows[:30]],
        })
    figs = []
    by_dup: dict[str, list] = defaultdict(list)
    for r in rates:
        if r["bucket"] != "all" and r["k"] == kmax:
            by_dup[r["model"]].append((float(r["bucket_lo"]), r["exact"]))
    if by_dup:
        figs.append({"img": _plot_lines(by_dup, xlabel="duplicates in the training corpus (log₂)",
                                        logx=True, title=f"Memorization vs duplicates (k = {kmax})"),
                     "alt": "memorized fraction against duplicate count",
                     "caption": "Fraction of windows whose suffix is greedy-discoverable, by the number "
                                "of times the window occurs in the training corpus (lower bucket edge)."})
    by_k: dict[str, list] = defaultdict(list)
    for r in overall:
        by_k[r["model"]].append((float(r["k"]), r["exact"]))
    if len(ks) > 1:
        figs.append({"img": _plot_lines(by_k, xlabel="prefix length k (tokens)", logx=True,
                                        title="Memorization vs context length"),
                     "alt": "memorized fraction against prefix length",
                     "caption": "Longer prompts discover more memorized suffixes (Carlini et al. 2022, Fig. 1c)."})
    sized = {m: info for m, info in models.items()
             if info.get("n_params") and (info.get("trained_on") in (None, "training split"))}
    if len(sized) > 1:
        pts = {"exact": [(float(sized[r["model"]]["n_params"]), r["exact"]) for r in overall
                         if r["k"] == kmax and r["model"] in sized]}
        figs.append({"img": _plot_lines(pts, xlabel="parameters (log₂)", logx=True,
                                        title=f"Memorization vs model size (k = {kmax})"),
                     "alt": "memorized fraction against model size",
                     "caption": "Models trained on the same data; models that did not see the "
                                "training split are left out of this plot."})
    intro = (f"{seqs.get('n', '?')} training windows of {seqs.get('window', '?')} tokens "
             f"({'stratified by duplicate count' if seqs.get('stratified') else 'uniform'}; "
             f"{seqs.get('n_docs_skipped', 0)} of {seqs.get('n_docs', '?')} documents skipped as too "
             f"short). p_z: probability that one sample (temperature {samp.get('temperature')}, "
             f"top-k {samp.get('top_k')}) reproduces the suffix (Hayes et al. 2024).")
    return Section("memorization", "Memorization of training data", "tables",
                   {"intro": intro, "tables": tables, "figures": figs})


def build_exposure(rd: ReportData) -> Section | None:
    recs = [r for r in rd.of("exposure") if r.get("kind") == "canary"]
    if not recs:
        return None
    by_rep = [r for r in rd.of("exposure") if r.get("kind") == "by_repeats"]
    tables = [{
        "id": "exposure-table",
        "caption": "Mean exposure per repetition count (bits; rank-based exposure is at most "
                   "log₂ of the number of references)",
        "headers": ["model", "repeats", "canaries", "exposure (rank)", "exposure (extrapolated)",
                    "ranked first"],
        "rows": [[r["model"], r["repeats"], r["n_canaries"], _f(r["mean_exposure_rank"]),
                  _f(r["mean_exposure_extrapolated"]), f"{r['n_rank_1']} / {r['n_canaries']}"]
                 for r in by_rep],
    }, {
        "id": "exposure-canaries",
        "caption": "Every canary" + ("" if rd.show_pii else " (secrets masked)"),
        "headers": ["model", "canary", "repeats", "secret", "log-perplexity (bits)", "rank",
                    "references", "exposure (rank)", "exposure (extrapolated)"],
        "rows": [[r["model"], r.get("canary_id"), r["repeats"], r.get("secret"),
                  _f(r["log_perplexity_bits"], "{:.1f}"), r["rank"], r["n_references"],
                  _f(r["exposure_rank"]),
                  _f(r["exposure_extrapolated"]) + (" (capped)" if r.get("extrapolation_capped") else "")]
                 for r in sorted(recs, key=lambda r: (r["model"], r["repeats"], str(r.get("canary_id"))))],
    }]
    fig = _new_figure(figsize=(5.2, 3.4))
    ax = fig.subplots()
    models = sorted({r["model"] for r in by_rep})
    for i, m in enumerate(models):
        pts = sorted((r["repeats"], r["mean_exposure_rank"], r["mean_exposure_extrapolated"])
                     for r in by_rep if r["model"] == m)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", color=f"C{i}", label=f"{m} (rank)")
        ax.plot([p[0] for p in pts], [p[2] for p in pts], marker="x", ls="--", color=f"C{i}",
                label=f"{m} (extrapolated)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("times the canary was inserted")
    ax.set_ylabel("exposure (bits)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    figs = [{"img": _png(fig), "alt": "canary exposure against repetition count",
             "caption": "Exposure rises with the number of times a canary was inserted; a model that "
                        "did not see the canaries stays near 1 bit."}]
    intro = ("Secret Sharer (Carlini et al. 2019): each canary's log-perplexity is ranked among "
             f"{recs[0].get('n_references')} reference candidates drawn from the same secret space "
             "that were never inserted; exposure = log₂(references) − log₂(rank), and by a skew-normal "
             "fit to the references beyond that.")
    return Section("exposure", "Canary exposure", "tables",
                   {"intro": intro, "tables": tables, "figures": figs})
