"""Render a report folder's ``report.jsonl`` as one self-contained HTML page.

The page has no external URLs and no scripts: CSS is inline, plots are inline base64 PNGs made with
matplotlib's Agg backend, and a Content-Security-Policy forbids loading anything else. Every text
that comes from a model or a corpus is untrusted: the template escapes everything (autoescape on,
nothing is marked safe).

The body is a list of independent :class:`Section` blocks. Each is built by one function of
``SECTION_BUILDERS`` (which returns ``None`` when it has nothing to show) and drawn by the template
macro named after its ``kind``; a new attack family adds a builder and a macro, nothing else.
"""

from __future__ import annotations

import base64
import io
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from leakaudit.findings import paper_uri_of
from leakaudit.runs.atomic import atomic_write_text
from leakaudit.report.html_base import ReportData, Section, _new_figure, _png  # noqa: F401
from leakaudit.taxonomy import FALLBACK_DOC_PAGE, TAXONOMY, TAXONOMY_NAMES, page_url

TEMPLATE_DIR = Path(__file__).parent / "templates"
TEMPLATE_NAME = "report.html"
TEXT_PREVIEW_CHARS = 400  #: memorized texts longer than this are cut, the rest in a <details>
MAX_SAMPLE_ROWS = 500  #: rows of the memorized-samples table (all of them are in hits.jsonl)
VERSION_KEYS = (("leakaudit", ("leakaudit_version", "leakaudit")), ("python", ("python",)),
                ("torch", ("torch",)), ("transformers", ("transformers",)),
                ("tokenizers", ("tokenizers",)), ("numpy", ("numpy",)))


# ---------------------------------------------------------------- formatting helpers

def _pct(x: float | None, digits: int = 1) -> str:
    return "—" if x is None else f"{100 * x:.{digits}f}%"


def _ci(low: float | None, high: float | None) -> str:
    if low is None or high is None:
        return ""
    return f"95% CI {100 * low:.1f}–{100 * high:.1f}%"


def _int(x: Any) -> str:
    if x is None:
        return "—"
    try:
        return f"{int(x):,}"
    except (TypeError, ValueError):
        return str(x)


def _n(count: Any, noun: str) -> str:
    return f"{_int(count)} {noun}{'' if count == 1 else 's'}"


def _params(n: Any) -> str:
    if not isinstance(n, (int, float)):
        return "—"
    for unit, div in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= div:
            return f"{n / div:.2f}{unit}"
    return str(int(n))


def _scalar(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (dict, list)):
        return json.dumps(v, ensure_ascii=False, default=str)
    return str(v)


def _name(v: Any) -> str:
    """A target given as ``{"name", "fingerprint"}`` (findings schema) or a bare name."""
    if isinstance(v, dict):
        return _scalar(v.get("name"))
    return _scalar(v)


def _order(seen: list[str], preferred: Any) -> list[str]:
    """``seen`` (order of appearance, unique) reordered to follow ``preferred`` where it can."""
    pref = [p for p in (preferred or []) if isinstance(p, str) and p in seen]
    return pref + [s for s in seen if s not in pref]


def _unique(xs) -> list[str]:
    out: list[str] = []
    for x in xs:
        if x is not None and x not in out:
            out.append(x)
    return out


def _tags(tags: Any) -> list[dict[str, str]]:
    return [{"tag": t, "name": TAXONOMY_NAMES.get(t, t)} for t in (tags or [])]


def _parse_selection(item: str) -> tuple[str, int | None]:
    """``"ranking#3"`` → ``("ranking", 3)``."""
    name, _, rank = str(item).rpartition("#")
    if not name:
        return str(item), None
    try:
        return name, int(rank)
    except ValueError:
        return str(item), None


def _segments(text: str, span: Any, match_text: Any) -> list[tuple[str, bool]]:
    """Split ``text`` into (piece, is_match) around the corpus match, but only when the recorded
    span still points at the recorded match text (masking can shift offsets; then no highlight)."""
    if (isinstance(span, list) and len(span) == 2 and all(isinstance(v, int) for v in span)
            and isinstance(match_text, str) and match_text):
        a, b = span
        if 0 <= a < b <= len(text) and text[a:b] == match_text:
            return [(p, m) for p, m in ((text[:a], False), (text[a:b], True), (text[b:], False)) if p]
    return [(text, False)] if text else []


def _clip(segments: list[tuple[str, bool]], limit: int) -> list[tuple[str, bool]]:
    out, left = [], limit
    for piece, is_match in segments:
        if left <= 0:
            break
        out.append((piece[:left], is_match))
        left -= len(piece)
    return out


# ---------------------------------------------------------------- plots

def _plot_precision_at_k(evals: list[dict[str, Any]], samplers: list[str],
                         rankings: list[str]) -> str | None:
    curves = [e for e in evals if e.get("precision_at_k")]
    if not curves:
        return None
    samplers = [s for s in samplers if any(e.get("sampler") == s for e in curves)]
    n = len(samplers)
    fig = _new_figure(figsize=(min(4.2 * n, 13), 3.4))
    axes = fig.subplots(1, n, sharey=True, squeeze=False)[0]
    colors = {r: f"C{i % 10}" for i, r in enumerate(rankings)}
    for ax, s in zip(axes, samplers):
        for e in curves:
            if e.get("sampler") != s:
                continue
            ys = [float("nan") if y is None else y for y in e["precision_at_k"]]
            ax.plot(range(1, len(ys) + 1), ys, label=e.get("ranking"), color=colors.get(e.get("ranking")),
                    lw=1.6)
        ax.set_title(s, fontsize=10)
        ax.set_xlabel("top-k candidates")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("precision@k (memorized)")
    handles, labels = axes[0].get_legend_handles_labels()
    seen = dict(zip(labels, handles))
    for ax in axes[1:]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(lab, h)
    fig.legend(list(seen.values()), list(seen.keys()), loc="upper center", ncol=min(len(seen), 6),
               bbox_to_anchor=(0.5, 1.08), frameon=False, fontsize=9)
    return _png(fig)


def _plot_match_hist(samples: list[dict[str, Any]], match_tokens: Any) -> str | None:
    ver = [s["longest_match_tokens"] for s in samples
           if s.get("verified") is True and isinstance(s.get("longest_match_tokens"), (int, float))]
    unv = [s["longest_match_tokens"] for s in samples
           if s.get("verified") is False and isinstance(s.get("longest_match_tokens"), (int, float))]
    if not ver and not unv:
        return None
    hi = max(ver + unv + [1])
    nbins = int(min(40, max(5, hi)))
    bins = [hi * i / nbins for i in range(nbins + 1)]
    fig = _new_figure(figsize=(6.4, 3.2))
    ax = fig.subplots()
    if unv:
        ax.hist(unv, bins=bins, color="#9aa5b1", alpha=0.85, label=f"not verified ({len(unv)})")
    if ver:
        ax.hist(ver, bins=bins, color="#c0392b", alpha=0.75, label=f"verified memorized ({len(ver)})")
    if isinstance(match_tokens, (int, float)):
        ax.axvline(match_tokens, color="k", ls="--", lw=1, label=f"threshold ({match_tokens} tokens)")
    ax.set_yscale("log")
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("longest verbatim match with the corpus (tokens)")
    ax.set_ylabel("samples (log)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    return _png(fig)


# ---------------------------------------------------------------- header

#: the page's subtitle by what the report holds (:func:`audit_kind`)
AUDIT_TITLES = {
    "erasure": "Erasure verification (right to be forgotten)",
    "output_filter": "Output filter evaluation",
    "defenses": "Defense evaluation: the same attacks on every defended variant",
    "dp_audit": "Differential-privacy audit",
    "membership": "Membership inference audit",
    "memorization": "Memorization audit",
    "inversion": "Model inversion audit",
    "extraction": "Training-data extraction audit",
}

#: "How to read this report" of each kind of page (extraction and inversion: in the template)
GUIDES: dict[str, list[str]] = {
    "erasure": [
        "Each unlearning method is judged against the oracle, the model retrained without the "
        "forget set: an exact retrain is what erasure means, and its own forget-vs-never-seen "
        "AUC need not be 0.5. The oracle gets no verdict.",
        "AUC: the forget documents' membership scores against never-seen documents' (0.5 = "
        "indistinguishable). Δ AUC vs oracle: the method's AUC minus the oracle's, with a paired "
        "95% bootstrap interval that resamples both the forget and the never-seen documents.",
        "as the oracle: the interval holds 0 and no more secrets are extracted than from the "
        "oracle; retained: above the oracle, or more secrets extracted; over-forgotten: below "
        "it, so the unlearning itself is detectable.",
        "Relapse rows repeat the measures after 8/4-bit quantization and a short fine-tune on "
        "related documents: forgetting that comes back was hidden, not removed.",
        "Method: Hayes et al. 2024 (per-example U-MIAs); Shi et al. 2024, MUSE (PrivLeak); "
        "Bourtoule et al. 2021 (SISA).",
    ],
    "output_filter": [
        "The headline counts canary secrets whose letters and digits still appear in the "
        "output with the filter on, per prompt style: a filter that blocks verbatim n-grams can "
        "be walked around by asking for the text spaced out, upper-cased or reformatted.",
        "exact / near / normalized compare the output with the true continuation; filter "
        "n-gram and text window check the output itself against the training corpus. Every "
        "rate has an exact (Clopper–Pearson) 95% interval; a style that recovers nothing shows 0.",
        "Method: Ippolito et al. 2023, \"Preventing Generation of Verbatim Memorization in "
        "Language Models Gives a False Sense of Privacy\" (MemFree).",
    ],
    "defenses": [
        "Every variant is trained on the same corpus with the same seed and schedule; only the "
        "defense differs, and every attack targets the original training data.",
        "Leakage (memorization, exposure, membership TPR at 1% FPR, extraction) is read "
        "against utility (held-out perplexity): a defense that leaks less only because the "
        "model learned less is visible in the plot.",
        "A claim holds when the measured intervals separate as it says; a tie at a measure's "
        "floor (0/N against 0/N) is not resolvable, and so is a claim whose undefended model "
        "leaked nothing to cut.",
    ],
    "dp_audit": [
        "An audit gives a lower bound on ε from the attack's true- and false-positive counts "
        "(Clopper–Pearson, 95%); a bound above the claimed ε refutes the claim, a bound below "
        "it does not prove it.",
    ],
    "membership": [
        "Every score is oriented so that higher = more likely member. Results are TPR at low "
        "FPR with exact 95% intervals (Carlini et al. 2022); a TPR at an FPR below 1/(number of "
        "non-members) is not resolvable. The model-free baseline shows how much of a result "
        "the data's own differences explain.",
    ],
    "memorization": [
        "A window is memorized when the model's greedy continuation of its prefix reproduces "
        "the suffix exactly (Carlini et al. 2022); rates carry exact 95% intervals and are "
        "broken down by how often the window is duplicated in the corpus.",
    ],
}


def audit_kind(rd: ReportData) -> str:
    """What a report folder audited, for its subtitle and guide (first match): erasure, output
    filter, defenses (pages of their own); extraction (the lab's page too); a DP audit,
    inversion, membership or memorization without extraction; else extraction."""
    for kind, entry in (("erasure", "erasure"), ("output_filter", "output_filter"),
                        ("defenses", "defense_comparison")):
        if rd.of(entry):
            return kind
    if rd.of("sample") or rd.of("eval") or rd.summary("extraction"):
        return "extraction"
    if rd.of("dp_audit"):
        return "dp_audit"
    if rd.of("inversion") or rd.of("attribute_inference"):
        return "inversion"
    for kind in ("membership", "memorization"):
        if rd.of(kind):
            return kind
    return "extraction"


def build_header(rd: ReportData) -> dict[str, Any]:
    run = rd.run
    audit = audit_kind(rd)
    models = []
    for name, m in (run.get("models") or {}).items():
        m = m if isinstance(m, dict) else {"path": m}
        models.append({"name": name, "path": _scalar(m.get("path")),
                       "fingerprint": _scalar(m.get("fingerprint")), "n_params": _params(m.get("n_params"))})
    versions = []
    for label, keys in VERSION_KEYS:
        for k in keys:
            if run.get(k) is not None:
                versions.append((label, _scalar(run[k])))
                break
    corpus = run.get("corpus")
    corpus_rows = [(k, _scalar(v)) for k, v in corpus.items()] if isinstance(corpus, dict) else (
        [("path", _scalar(corpus))] if corpus else [])
    lab = run.get("lab")
    lab_rows = [(k, _scalar(v)) for k, v in lab.items()] if isinstance(lab, dict) else []
    training = []
    for name, t in (run.get("training") or {}).items():
        t = t if isinstance(t, dict) else {"final_loss": t}
        if t.get("final_loss") is None and t.get("wall_s") is None:
            continue  # nothing measured to show (no "final loss —" row)
        training.append({"name": name, "final_loss": _scalar(t.get("final_loss")),
                         "wall_s": _scalar(t.get("wall_s"))})
    extras = [(k, _scalar(run[k])) for k in ("seed", "started", "command", "threads") if run.get(k) is not None]
    return {
        "models": models, "versions": versions, "corpus": corpus_rows, "lab": lab_rows,
        "training": training, "facts": extras,
        "config_json": json.dumps(rd.config, indent=2, ensure_ascii=False, sort_keys=True, default=str),
        "title": f"leakaudit report — {', '.join(m['name'] for m in models) or 'model audit'}",
        # a report with only inversion findings (``leakaudit invert``) has no corpus and no extraction
        "inversion_only": audit == "inversion",
        "audit": audit, "audit_title": AUDIT_TITLES[audit], "guide": GUIDES.get(audit, []),
        "doc_uri": page_url(FALLBACK_DOC_PAGE),
    }


# ---------------------------------------------------------------- extraction sections

def _ext(rd: ReportData) -> tuple[list[dict], list[dict], list[str], list[str]]:
    evals = rd.of("eval", "extraction")
    samples = rd.of("sample", "extraction")
    samplers = _order(_unique([e.get("sampler") for e in evals] + [s.get("sampler") for s in samples]),
                      rd.config.get("samplers"))
    rankings = _order(_unique([e.get("ranking") for e in evals]), rd.summary("extraction").get("rankings"))
    return evals, samples, samplers, rankings


def _has_corpus(rd: ReportData, evals: list[dict], samples: list[dict]) -> bool:
    s = rd.summary("extraction")
    if "verified" in s:
        return bool(s["verified"])
    if evals:
        return any(e.get("verified") for e in evals)
    return any(x.get("verified") is not None for x in samples)


def build_summary(rd: ReportData) -> Section | None:
    evals, samples, samplers, _ = _ext(rd)
    s = rd.summary("extraction")
    if not (s or evals or samples):
        return None
    verified_run = _has_corpus(rd, evals, samples)
    n_candidates = s.get("n_candidates")
    if n_candidates is None:
        n_candidates = sum(1 for x in samples if x.get("selected_by"))
    n_verified_cand = s.get("n_verified_candidates")
    if n_verified_cand is None:
        n_verified_cand = sum(1 for x in samples if x.get("selected_by") and x.get("verified"))
    best = s.get("best")
    if not best and evals:
        e = max(evals, key=lambda e: e.get("precision") or 0)
        best = {k: e.get(k) for k in ("sampler", "ranking", "precision", "ci_low", "ci_high")}
    canaries = rd.of("canary")
    per_sampler = s.get("n_samples_per_sampler") or {}
    cards = [
        {"label": "samples generated", "value": _int(s.get("n_samples", len(samples))),
         "note": ", ".join(f"{k}: {_int(v)}" for k, v in per_sampler.items())},
        {"label": "candidates selected", "value": _int(n_candidates), "note": "distinct, after dedup"},
        {"label": "verified memorized candidates",
         "value": _int(n_verified_cand) if verified_run else "unverified",
         "note": "≥ match_tokens tokens verbatim in the corpus" if verified_run else "no corpus given",
         "alert": bool(verified_run and n_verified_cand)},
    ]
    if best and verified_run:
        cards.append({"label": "best precision", "value": _pct(best.get("precision")),
                      "note": f"{best.get('sampler')} × {best.get('ranking')}; "
                              f"{_ci(best.get('ci_low'), best.get('ci_high'))}"})
    if canaries:
        ext = [c for c in canaries if c.get("extracted")]
        cards.append({"label": "canaries extracted", "value": f"{len(ext)} / {len(canaries)}",
                      "note": ", ".join(str(c.get("canary_id")) for c in ext[:6]) + ("…" if len(ext) > 6 else ""),
                      "alert": bool(ext)})
    frac = s.get("verified_fraction_of_all")
    notes = []
    if frac is not None:
        notes.append(f"{_pct(frac, 2)} of all samples contain a verified memorized span "
                     f"({_int(s.get('n_verified_samples'))} samples).")
    if not verified_run:
        notes.append("No training corpus was given: no candidate could be verified; every hit below is "
                     "unverified (a high score is not proof of memorization).")
    if s.get("n_empty_samples"):
        notes.append(f"{_n(s['n_empty_samples'], 'sample')} decoded to empty text.")
    if s.get("n_truncated_samples"):
        notes.append(f"{_n(s['n_truncated_samples'], 'sample')} got fewer new tokens than asked: the prompt plus max_new_tokens exceeded the model's context.")
    return Section("summary", "Summary", "summary", {
        "cards": cards, "notes": notes, "show_pii": rd.show_pii,
        "tags": _tags(s.get("tags") or TAXONOMY["extraction"]),
    })


def _cell(k: Any, n: Any, precision: Any, low: Any, high: Any, verified: bool) -> dict[str, Any]:
    if not verified:
        return {"count": f"? / {_int(n)}", "pct": "unverified", "ci": "", "unverified": True}
    return {"count": f"{_int(k)} / {_int(n)}", "pct": _pct(precision), "ci": _ci(low, high),
            "unverified": False}


def build_precision(rd: ReportData) -> Section | None:
    evals, samples, samplers, rankings = _ext(rd)
    if not evals:
        return None
    by = {(e.get("sampler"), e.get("ranking")): e for e in evals}
    best = rd.summary("extraction").get("best") or {}
    rows = []
    for r in rankings:
        cells = []
        for s in samplers:
            e = by.get((s, r))
            if e is None:
                cells.append({"count": "—", "pct": "", "ci": "", "unverified": False, "best": False})
                continue
            c = _cell(e.get("n_memorized"), e.get("n_selected"), e.get("precision"), e.get("ci_low"),
                      e.get("ci_high"), bool(e.get("verified", True)))
            c["best"] = (best.get("sampler") == s and best.get("ranking") == r and not c["unverified"])
            c["dups"] = e.get("duplicates_skipped")
            cells.append(c)
        rows.append({"name": r, "cells": cells})
    baseline = []
    for s in samplers:
        rb = next((e["random_baseline"] for e in evals
                   if e.get("sampler") == s and isinstance(e.get("random_baseline"), dict)), None)
        baseline.append(_cell(rb.get("k"), rb.get("n"), rb.get("value"), rb.get("ci_low"), rb.get("ci_high"), True)
                        if rb else None)
    verified_run = _has_corpus(rd, evals, samples)
    totals = []
    for s in samplers:
        ids = {x.get("sample_id") for x in samples
               if x.get("sampler") == s and x.get("selected_by") and x.get("verified")}
        cand = {x.get("sample_id") for x in samples if x.get("sampler") == s and x.get("selected_by")}
        totals.append({"count": _int(len(ids)) if verified_run else "unverified",
                       "of": _int(len(cand))})
    return Section("precision", "Extraction precision by sampler and ranking", "precision", {
        "samplers": samplers, "rows": rows,
        "baseline": baseline if any(b is not None for b in baseline) else None,
        "totals": totals if samples else None, "verified": verified_run,
        "select": rd.config.get("select"), "match_tokens": rd.config.get("match_tokens"),
    })


def build_precision_plot(rd: ReportData) -> Section | None:
    evals, samples, samplers, rankings = _ext(rd)
    if not _has_corpus(rd, evals, samples):
        return None
    img = _plot_precision_at_k(evals, samplers, rankings)
    if img is None:
        return None
    return Section("precision-at-k", "Precision@k", "plot", {
        "img": img, "alt": "precision at k per ranking, one panel per sampler",
        "caption": "Fraction of the top-k selected candidates (per sampler, ranked by each ranking, after "
                   "dedup) that are verified memorized. A ranking that works stays high as k grows."})


def build_match_hist(rd: ReportData) -> Section | None:
    _, samples, _, _ = _ext(rd)
    img = _plot_match_hist(samples, rd.config.get("match_tokens"))
    if img is None:
        return None
    return Section("match-length", "Longest verbatim match with the corpus", "plot", {
        "img": img, "alt": "histogram of the longest corpus match, verified versus not verified samples",
        "caption": "Every sample checked against the corpus, by the length of its longest run of tokens "
                   "found verbatim in the training corpus (log count). Samples at or past the dashed "
                   "threshold are verified memorized."})


def _sample_row(x: dict[str, Any]) -> dict[str, Any]:
    text = x.get("text") or ""
    segs = _segments(text, x.get("match_char_span"), x.get("match_text"))
    long = len(text) > TEXT_PREVIEW_CHARS + 50
    sel = [_parse_selection(i) for i in (x.get("selected_by") or [])]
    sel.sort(key=lambda p: (p[1] is None, p[1] or 0))
    return {
        "id": _scalar(x.get("sample_id")),
        "sampler": _scalar(x.get("sampler")),
        "selected_by": [{"ranking": r, "rank": k} for r, k in sel],
        "longest": _int(x.get("longest_match_tokens")),
        "doc_count": _int(x.get("match_doc_count")),
        "match_count": _int(x.get("match_count")),
        "docs": [str(d) for d in (x.get("match_docs") or [])][:5],
        "pii": [str(p) for p in (x.get("pii_kinds") or [])],
        "status": "verified" if x.get("verified") else "unverified",
        "prompt": x.get("prompt") or "",
        "preview": _clip(segs, TEXT_PREVIEW_CHARS) if long else segs,
        "full": segs if long else None,
        "n_chars": len(text),
    }


def build_memorized(rd: ReportData) -> Section | None:
    evals, samples, _, _ = _ext(rd)
    if not samples:
        return None
    verified_run = _has_corpus(rd, evals, samples)
    if verified_run:
        rows = [x for x in samples if x.get("verified") and x.get("selected_by")]
        rows.sort(key=lambda x: (-(x.get("match_doc_count") or 0), -(x.get("longest_match_tokens") or 0),
                                 x.get("sample_id") if isinstance(x.get("sample_id"), int) else 0))
        title = "Memorized samples (verified, selected)"
    else:
        rows = [x for x in samples if x.get("selected_by")]

        def best_rank(x):
            ranks = [k for _, k in map(_parse_selection, x.get("selected_by") or []) if k is not None]
            return min(ranks) if ranks else 10 ** 9
        rows.sort(key=best_rank)
        title = "Top candidates (unverified: no corpus given)"
    n_total = len(rows)
    return Section("memorized-samples", title, "samples", {
        "rows": [_sample_row(x) for x in rows[:MAX_SAMPLE_ROWS]],
        "n_total": n_total, "n_shown": min(n_total, MAX_SAMPLE_ROWS), "verified": verified_run,
        "show_pii": rd.show_pii, "preview_chars": TEXT_PREVIEW_CHARS,
    })


def build_canaries(rd: ReportData) -> Section | None:
    canaries = rd.of("canary")
    if not canaries:
        return None
    rows = [{
        "id": _scalar(c.get("canary_id")), "kind": _scalar(c.get("kind")), "repeats": _int(c.get("repeats")),
        "secret": _scalar(c.get("secret")), "extracted": bool(c.get("extracted")),
        "n_samples": _int(c.get("n_samples_with_secret")),
        "in_verified": c.get("in_verified_sample"), "in_selected": c.get("in_selected_candidate"),
        "samplers": ", ".join(str(s) for s in (c.get("samplers") or [])) or "—",
    } for c in sorted(canaries, key=lambda c: (-(c.get("repeats") or 0), str(c.get("canary_id"))))]
    return Section("canaries", "Canaries", "canaries", {
        "rows": rows, "n_extracted": sum(1 for r in rows if r["extracted"]), "show_pii": rd.show_pii})


def build_pii(rd: ReportData) -> Section | None:
    recs = rd.of("pii")
    if not recs:
        return None
    p = recs[-1]
    counts = p.get("counts") or {}
    if not isinstance(counts, dict) or not all(isinstance(v, (int, float)) or v is None
                                                for v in counts.values()):
        raise ValueError("pii.counts must map each kind to a number")
    counts = sorted(counts.items(), key=lambda kv: (-(kv[1] or 0), kv[0]))
    return Section("pii", "PII in verified samples", "pii", {
        "counts": [(k, _int(v)) for k, v in counts], "scope": _scalar(p.get("scope")),
        "n_samples": _int(p.get("n_samples_with_pii")), "show_pii": rd.show_pii})


# ---------------------------------------------------------------- model inversion sections

def _rate_cell(r: Any) -> dict[str, str]:
    if not isinstance(r, dict) or not r.get("n"):
        return {"count": "—", "pct": "", "ci": ""}
    return {"count": f"{_int(r.get('k'))} / {_int(r.get('n'))}", "pct": _pct(r.get("value")),
            "ci": _ci(r.get("ci_low"), r.get("ci_high"))}


def _inv_label(e: dict[str, Any]) -> str:
    parts = [str(e.get("attack")), _name(e.get("target"))]
    if e.get("variant"):
        parts.append(str(e["variant"]))
    if e.get("defense") not in (None, "none"):
        parts.append(str(e.get("defense")))
    return " · ".join(parts)


def build_inversion(rd: ReportData) -> Section | None:
    evals = [e for e in rd.of("inversion") if not e.get("sweep")]
    if not evals:
        return None
    rows = []
    for e in evals:
        budget = e.get("budget_per_class")
        rows.append({
            "attack": _scalar(e.get("attack")), "variant": e.get("variant"), "target": _name(e.get("target")),
            "defense": _scalar(e.get("defense")), "control": bool(e.get("control")),
            "threat_model": _scalar(e.get("threat_model")),
            "budget": "white-box (gradients)" if budget is None else f"{_int(budget)} queries/class",
            "queries": _int(e.get("queries_total")), "runs": _int(e.get("n_runs")),
            "top1": _rate_cell(e.get("top1")), "topk": _rate_cell(e.get("topk")),
            "near": _rate_cell(e.get("nearest_own_mean")),
            "target_conf": _pct(e.get("mean_target_confidence")),
            "eval_conf": _pct(e.get("mean_eval_confidence")),
            "target_acc": _pct(e.get("target_accuracy")),
        })
    first = evals[0]
    dp = next((e["dp"] for e in evals if isinstance(e.get("dp"), dict)), None)
    facts = [("start", _scalar(first.get("start"))), ("evaluator", _scalar(first.get("evaluator"))),
             ("evaluator accuracy", _pct(first.get("evaluator_accuracy"))),
             ("seeds (black-box runs)", ", ".join(str(s) for s in (next((e.get("seeds") for e in evals
                                                   if e.get("attack") == "nes"), None) or first.get("seeds") or [])) or "—")]
    targets = _unique([f"{e.get('target')}: {e.get('target_description')}" for e in evals
                       if e.get("target_description")])
    if dp:
        facts.append(("DP-SGD", f"ε = {dp.get('epsilon', float('nan')):.2f} at δ = {dp.get('delta')}, noise multiplier σ = "
                                f"{dp.get('noise_multiplier')}, clipping norm C = {dp.get('max_grad_norm')}, sampling rate "
                                f"{_scalar(dp.get('sample_rate'))}, {_int(dp.get('steps'))} steps ({dp.get('accountant')} accountant)"))
    return Section("inversion", "Model inversion of classifiers", "inversion", {
        "rows": rows, "top_k": first.get("top_k", 5), "facts": facts, "targets": targets,
        "chance": _pct(first.get("chance_top1")), "tags": _tags(first.get("tags") or TAXONOMY["inversion"]),
    })


def _plot_inversion_grid(means: list, groups: list[tuple[str, dict[int, list]]], shape: tuple[int, int],
                         means_source: str) -> str:
    import numpy as np

    classes = sorted({c for _, g in groups for c in g} | set(range(len(means))))
    rows = ([(f"class mean ({means_source})", {c: means[c] for c in range(len(means))})] if means else []) + groups
    fig = _new_figure(figsize=(0.62 * len(classes) + 2.6, 0.66 * len(rows) + 0.3))
    axes = fig.subplots(len(rows), len(classes), squeeze=False)
    for i, (label, imgs) in enumerate(rows):
        for j, c in enumerate(classes):
            ax = axes[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            for sp in ax.spines.values():
                sp.set_visible(False)
            if c in imgs:
                ax.imshow(np.asarray(imgs[c], dtype=float).reshape(shape), cmap="gray_r", vmin=0, vmax=1)
            if i == 0:
                ax.set_title(str(c), fontsize=9)
        axes[i][0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    fig.subplots_adjust(wspace=0.05, hspace=0.08)
    return _png(fig)


def build_inversion_grid(rd: ReportData) -> Section | None:
    recs = [r for r in rd.of("inversion_record") if r.get("run", 0) == 0 and isinstance(r.get("reconstruction"), list)]
    evals = [e for e in rd.of("inversion") if not e.get("sweep")]
    if not recs:
        return None
    shape = next((tuple(r["image_shape"]) for r in recs if isinstance(r.get("image_shape"), list)
                  and len(r["image_shape"]) == 2), None)
    if shape is None or shape[0] * shape[1] != len(recs[0]["reconstruction"]):
        return None
    groups: dict[str, dict[int, list]] = {}
    for r in recs:
        key = _inv_label(r) + (" (control)" if r.get("control") else "")
        groups.setdefault(key, {})[int(r.get("class", 0))] = r["reconstruction"]
    with_means = next((e for e in evals if isinstance(e.get("class_means"), list)), {})
    means = with_means.get("class_means") or []
    img = _plot_inversion_grid(means, list(groups.items()), shape,
                               str(with_means.get("class_means_source") or "target's training data"))
    return Section("inversion-grid", "Reconstructions next to class means", "plot", {
        "img": img, "alt": "grid of class reconstructions per attack and target, below the class means",
        "caption": "Top row (when known): the mean image of each class (what inversion can reveal "
                   "about a class). Other rows: the reconstruction of each class by one attack on one target "
                   "(first run/seed), darker = higher pixel value. A row that looks like the top row leaks."})


def _plot_budget(sweep: list[dict[str, Any]]) -> str | None:
    series: dict[str, list[tuple[int, float, float, float]]] = {}
    for e in sweep:
        b, t1 = e.get("budget_per_class"), e.get("top1") or {}
        if not isinstance(b, (int, float)) or t1.get("value") is None:
            continue
        series.setdefault(f"{e.get('target')} · {e.get('defense')}", []).append(
            (b, t1["value"], t1.get("ci_low") or 0.0, t1.get("ci_high") or 1.0))
    if not series:
        return None
    fig = _new_figure(figsize=(6.4, 3.4))
    ax = fig.subplots()
    for i, (label, pts) in enumerate(sorted(series.items())):
        pts.sort()
        xs = [p[0] for p in pts]
        ax.plot(xs, [p[1] for p in pts], marker="o", lw=1.6, color=f"C{i % 10}", label=label)
        ax.fill_between(xs, [p[2] for p in pts], [p[3] for p in pts], color=f"C{i % 10}", alpha=0.12)
    ax.set_xscale("log")
    ax.set_xlabel("query budget per class")
    ax.set_ylabel("evaluator top-1 accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    return _png(fig)


def build_inversion_budget(rd: ReportData) -> Section | None:
    sweep = [e for e in rd.of("inversion") if e.get("budget_per_class") and e.get("attack") != "start_only"]
    if len({e.get("budget_per_class") for e in sweep}) < 2:
        return None
    img = _plot_budget(sweep)
    if img is None:
        return None
    return Section("inversion-budget", "Black-box inversion by query budget", "plot", {
        "img": img, "alt": "evaluator top-1 accuracy of black-box reconstructions against the query budget",
        "caption": "Black-box (confidence-only) inversion: the fraction of reconstructions the independent "
                   "evaluator assigns to their target class, by the number of queries allowed per class, for "
                   "each output defense (bands: exact 95% intervals over all classes and seeds)."})


def build_attribute_inference(rd: ReportData) -> Section | None:
    recs = rd.of("attribute_inference")
    if not recs:
        return None
    rows = [{
        "target": _name(r.get("target")), "control": bool(r.get("control")), "mode": _scalar(r.get("mode")),
        "records": _scalar(r.get("records")), "n": _int(r.get("n")),
        "acc": _rate_cell(r.get("accuracy")), "base": _rate_cell(r.get("baseline")),
        "advantage": "—" if r.get("advantage") is None else f"{100 * r['advantage']:+.1f} pts",
        "beats": bool((r.get("accuracy") or {}).get("ci_low", 0) > (r.get("baseline") or {}).get("ci_high", 1)),
        "queries": _int(r.get("queries")), "target_acc": _pct(r.get("target_accuracy")),
    } for r in recs]
    first = recs[0]
    return Section("attribute-inference", "Attribute inference (tabular model inversion)", "attribute", {
        "rows": rows, "attribute": _scalar(first.get("sensitive_attribute")), "label": _scalar(first.get("label")),
        "prior": _scalar(first.get("prior")), "prior_source": _scalar(first.get("prior_source")),
        "features": ", ".join(str(f) for f in first.get("features") or []
                              if f != first.get("sensitive_attribute")),
        "paper_uri": _scalar(paper_uri_of(first))})
# ---------------------------------------------------------------- membership inference

def _membership_groups(rd: ReportData) -> list[tuple[str, str, list[dict[str, Any]]]]:
    """Membership evaluations grouped by (world, subset), in report order."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rd.of("membership"):
        if r.get("skipped"):  # listed separately (:func:`_membership_skipped`)
            continue
        groups.setdefault((str(r.get("world", "")), str(r.get("subset", ""))), []).append(r)
    return [(w, sub, recs) for (w, sub), recs in groups.items()]


def _tpr_cell(t: dict[str, Any]) -> dict[str, Any]:
    if not t.get("resolvable"):
        return {"value": "not resolvable", "ci": f"needs ≥ {int(round(1 / t['fpr']))} non-members",
                "nr": True}
    return {"value": _pct(t.get("tpr"), 2), "ci": _ci(t.get("ci_low"), t.get("ci_high")), "nr": False}


def _eps_cell(r: dict[str, Any]) -> str:
    """The ROC-derived ε: a DP lower bound only for randomized member/non-member splits."""
    v = r.get("epsilon_lb")
    if v is None:
        return "–"
    if r.get("epsilon_lb_kind") == "dp_lower_bound":
        return f"ε ≥ {v:.2f}"
    return f"{v:.2f} (ROC statistic, not a DP statement: split not randomized)"


def build_membership(rd: ReportData) -> Section | None:
    """One table per (world, subset): AUC with bootstrap CI, TPR at each low FPR with
    Clopper–Pearson CI or "not resolvable", advantage, ε lower bound; the blind baseline row."""
    groups = _membership_groups(rd)
    if not groups and not any(r.get("skipped") for r in rd.of("membership")):
        return None
    tables = []
    for world, subset, recs in groups:
        fprs = [t["fpr"] for t in (recs[0].get("tpr_at_fpr") or [])]
        rows = []
        for r in recs:
            rows.append({
                "label": r.get("label") or r.get("method"), "baseline": bool(r.get("baseline")),
                "auc": f"{r['auc']:.3f}" if r.get("auc") is not None else "–",
                "auc_ci": _ci(*(r.get("auc_ci") or [None, None])),
                "tpr": [_tpr_cell(t) for t in r.get("tpr_at_fpr") or []],
                "advantage": f"{r['advantage']:.3f}" if r.get("advantage") is not None else "–",
                "eps": _eps_cell(r),
                "threat_model": r.get("threat_model", ""), "paper_uri": paper_uri_of(r) or "",
                "warnings": list(r.get("warnings") or []),
                "blind_auc": (f"{r['blind_baseline']['auc']:.3f}"
                              if isinstance(r.get("blind_baseline"), dict) else None)})
        n_pos = recs[0].get("n_members")
        n_neg = recs[0].get("n_nonmembers")
        tables.append({"world": world, "subset": subset, "fprs": [_pct(f, 2) for f in fprs],
                       "rows": rows, "n_members": _int(n_pos), "n_nonmembers": _int(n_neg),
                       "plot": _plot_membership_roc(recs, f"{world}: {subset}")})
    skipped = [{"label": r.get("label") or r.get("attack"), "reason": r.get("reason", "")}
               for r in rd.of("membership") if r.get("skipped")]
    return Section("membership", "Membership inference", "membership",
                   {"tables": tables, "skipped": skipped})


def _plot_membership_roc(recs: list[dict[str, Any]], title: str) -> str | None:
    """Log-log ROC (Carlini et al. 2022, Fig. 1 style) of every evaluation, chance as a diagonal."""
    curves = [r for r in recs if isinstance(r.get("roc"), dict) and r["roc"].get("fpr")]
    if not curves:
        return None
    fig = _new_figure(figsize=(5.2, 4.2))
    ax = fig.subplots()
    n_neg = max(int(r.get("n_nonmembers") or 1) for r in curves)
    lo = 1.0 / max(n_neg, 10)
    for i, r in enumerate(curves):
        fpr = [max(f, lo / 2) for f in r["roc"]["fpr"]]
        tpr = [max(t, lo / 2) for t in r["roc"]["tpr"]]
        ax.plot(fpr, tpr, lw=1.4, ls="--" if r.get("baseline") else "-", color=f"C{i % 10}",
                label=f"{r.get('label') or r.get('method')} (AUC {r.get('auc') or 0:.2f})")
    ax.plot([lo / 2, 1], [lo / 2, 1], color="grey", lw=0.8, ls=":", label="chance")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo / 2, 1)
    ax.set_ylim(lo / 2, 1.05)
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="lower right")
    return _png(fig)


def build_membership_records(rd: ReportData) -> Section | None:
    """The most exposed records per attack (text PII-masked for LLM documents)."""
    recs = rd.of("membership_record")
    if not recs:
        return None
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in recs:
        key = f"{r.get('label') or r.get('method')} — {r.get('subset', '')}"
        groups.setdefault(key, []).append(r)
    out = []
    for key, rows in groups.items():
        rows = sorted(rows, key=lambda r: r.get("rank") or 0)
        out.append({"key": key, "rows": [{
            "rank": _int(r.get("rank")), "id": _scalar(r.get("record_id")),
            "score": f"{r['score']:.4g}" if r.get("score") is not None else "–",
            "member": r.get("is_member"),
            "tail": _pct(r.get("nonmember_fraction_above"), 2),
            "text": (str(r.get("text"))[:TEXT_PREVIEW_CHARS] if r.get("text") is not None else None)}
            for r in rows]})
    return Section("membership-records", "Most exposed records (membership)", "membership_records",
                   {"groups": out, "show_pii": rd.show_pii})


# ---------------------------------------------------------------- DP audit section

def _num_or(v: Any, fmt: str, missing: str) -> str:
    return missing if not isinstance(v, (int, float)) or isinstance(v, bool) else format(v, fmt)


def dp_audit_terms(r: dict[str, Any]) -> dict[str, str]:
    """A ``dp_audit`` record's ε values as the page states them, each with its δ and unit: the
    bound and the maximum certifiable at the audit's δ per canary unit (a document in the LM
    world, an example otherwise), the claim at its own δ and privacy unit (from the record, or
    the pipeline's training info for records written before those fields existed); an unstated
    δ or unit is said to be unstated."""
    training = r.get("training") if isinstance(r.get("training"), dict) else {}
    audit_unit = r.get("audit_unit") or ("document" if r.get("world") == "lm" else "example")
    at = f"at δ = {_num_or(r.get('delta'), 'g', 'unstated δ')} per {audit_unit}"
    eps = r.get("claimed_epsilon")
    if eps is None:
        claim = "none (the pipeline claims no ε)"
    else:
        cd = r.get("claimed_delta", training.get("delta"))
        unit = r.get("privacy_unit") or training.get("privacy_unit") \
            or "unstated unit (treat the guarantee as unknown)"
        claim = (f"ε = {_num_or(eps, '.3f', '?')} at "
                 f"{'unstated δ' if cd is None else 'δ = ' + _num_or(cd, 'g', '?')} per {unit}")
    return {"bound": f"ε̂ = {_num_or(r.get('epsilon_lb'), '.3f', '–')} {at}",
            "max": f"ε = {_num_or(r.get('max_certifiable'), '.3f', '–')} {at}", "claim": claim}


def build_dp_audit(rd: ReportData) -> Section | None:
    """One row per DP audit: what was audited, the lower bound ε̂ and the maximum certifiable ε
    (each at its δ and per the unit one canary is), the claimed ε with its δ and privacy unit,
    and the verdict."""
    recs = rd.of("dp_audit")
    if not recs:
        return None
    rows = []
    for r in recs:
        t = dp_audit_terms(r)
        rows.append([f"{_scalar(r.get('mode'))} {_scalar(r.get('world'))}", _scalar(r.get("trainer")),
                     _int(r.get("n_canaries")), t["bound"], t["max"], t["claim"],
                     _scalar(r.get("confidence")), _scalar(r.get("verdict"))])
    intro = ("ε̂ is a lower bound on ε at the confidence shown; a bound above the claimed ε "
             "refutes the claim, one below it proves nothing, and the audit cannot certify more "
             "than its maximum certifiable ε.")
    return Section("dp-audit", "Differential-privacy audit", "tables", {
        "intro": intro, "figures": [],
        "tables": [{"id": "dp-audit-table", "caption": "Lower bound, maximum certifiable and claim",
                    "headers": ["audit", "pipeline", "canaries", "lower bound",
                                "max certifiable", "claimed", "confidence", "verdict"],
                    "rows": rows}]})


#: Section builders in page order. Each reads what it needs from the records and returns a
#: Section, or None when the report has nothing for it.
SECTION_BUILDERS: list[Callable[[ReportData], Section | None]] = [
    build_summary,
    build_precision,
    build_precision_plot,
    build_match_hist,
    build_memorized,
    build_canaries,
    build_pii,
    build_inversion,
    build_inversion_grid,
    build_inversion_budget,
    build_attribute_inference,
    build_membership,
    build_membership_records,
    build_dp_audit,
]


def _late_builders() -> list[Callable[[ReportData], Section | None]]:
    # Sections that live in their own modules (they import this one).
    from leakaudit.report.sections_defenses import build_defenses
    from leakaudit.report.sections_erasure import build_erasure, build_output_filter
    from leakaudit.report.sections_memorization import build_exposure, build_memorization
    from leakaudit.report.sections_probes import build_pii_probes

    return [build_defenses, build_memorization, build_exposure, build_pii_probes,
            build_output_filter, build_erasure]


def build_context(report_dir: str | Path) -> dict[str, Any]:
    rd = ReportData.load(report_dir)
    sections = [s for s in (_shaped(b, rd, report_dir)
                            for b in [*SECTION_BUILDERS, *_late_builders()]) if s is not None]
    return {"header": _shaped(build_header, rd, report_dir), "sections": sections,
            "show_pii": rd.show_pii, "match_tokens": rd.config.get("match_tokens")}


def _shaped(build: Callable[[ReportData], Any], rd: ReportData, report_dir: str | Path) -> Any:
    """``build(rd)``, or an :class:`InputError` when a record has fields of a shape leakaudit never
    writes (an edited or foreign report.jsonl: e.g. ``pii.counts`` a list, not an object)."""
    from leakaudit.errors import InputError

    try:
        return build(rd)
    except (TypeError, ValueError, AttributeError, KeyError, IndexError) as e:
        what = build.__name__.removeprefix("build_").replace("_", " ")
        raise InputError(f"the {what} records do not have the shape leakaudit writes "
                         f"({type(e).__name__}: {e})",
                         path=str(Path(report_dir) / "report.jsonl")) from None


def _environment():
    import jinja2

    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render_html(report_dir: str | Path, verdicts=None) -> Path:
    """Write ``report_dir/report.html`` from ``report_dir/report.jsonl`` and return its path.
    (``verdicts``, the ``--fail-on`` results every renderer is given, are not shown here.)

    The file is written to a temporary name in the same folder and moved into place, so a reader
    never sees a half-written page.
    """
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:  # never switch (and close) a caller's pyplot figures
        matplotlib.use("Agg")
    report_dir = Path(report_dir)
    html = _environment().get_template(TEMPLATE_NAME).render(**build_context(report_dir))
    return atomic_write_text(report_dir / "report.html", html)
