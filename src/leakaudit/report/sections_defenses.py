"""HTML section for ``defense_comparison`` records: one row per variant (leakage next to utility,
95% intervals) and the privacy–utility plot."""

from __future__ import annotations

from typing import Any

from leakaudit.report.html_base import ReportData, Section, _new_figure, _png


def _ci(r: dict | None, pct: bool = True, key: str = "value") -> str:
    if not r or r.get(key) is None:
        return "—"
    f = (lambda x: f"{x:.1%}") if pct else (lambda x: f"{x:.2f}")
    lo, hi = r.get("ci_low"), r.get("ci_high")
    return f(r[key]) + (f" [{f(lo)}, {f(hi)}]" if lo is not None and hi is not None else "")


VERDICT_WORDS = {True: "holds", False: "does not hold", None: "not resolvable"}


def _arrow(a: dict | None, b: dict | None, pct: bool = True, key: str = "value") -> str:
    return f"{_ci(a, pct, key)} → {_ci(b, pct, key)}"


def claim_numbers(c: dict[str, Any]) -> str:
    """The measured numbers behind a claim's verdict, undefended → defended with 95% intervals
    (the claims of :func:`leakaudit.lab.defenses.evaluate_claims`).

    >>> claim_numbers({"undefended": {"value": 0.21, "ci_low": 0.16, "ci_high": 0.27},
    ...                "dedup": {"value": 0.05, "ci_low": 0.03, "ci_high": 0.08}, "ratio": 4.2})
    'duplicated windows memorized 21.0% [16.0%, 27.0%] → 5.0% [3.0%, 8.0%] (4.2×)'
    """
    if "dedup" in c:
        r = c.get("ratio")
        return (f"duplicated windows memorized {_arrow(c.get('undefended'), c.get('dedup'))}"
                + (f" ({r:.1f}×)" if isinstance(r, (int, float)) and r != float("inf") else ""))
    if "dp_tpr" in c:
        return (f"MIA TPR@1%FPR {_arrow(c.get('undefended_tpr'), c.get('dp_tpr'), key='tpr')}; "
                f"mean canary exposure "
                f"{_arrow(c.get('undefended_exposure'), c.get('dp_exposure'), pct=False)} bits")
    if "scrubbed_pii_in_samples" in c:
        pa = sum((c.get("undefended_pii_in_samples") or {}).values())
        pb = sum((c.get("scrubbed_pii_in_samples") or {}).values())
        return (f"corpus PII values in samples {pa} → {pb}; canaries extracted "
                f"{c.get('undefended_canaries_extracted')} → {c.get('scrubbed_canaries_extracted')}; "
                f"non-PII memorization {_arrow(c.get('undefended_nonpii_memorization'), c.get('scrubbed_nonpii_memorization'))}")
    if "by_size" in c:
        parts = " → ".join(f"{n} {_ci(v.get('exact'))}" for n, v in c["by_size"].items())
        floor = c.get("floor_ties") or []
        return parts + "".join(f"; {a} and {b} tie at 0 (the floor)" for a, b in floor)
    return "—"


def _eps(row: dict) -> str:
    """ε with its δ and privacy unit, never alone."""
    from leakaudit.training.finetune import privacy_statement

    return privacy_statement((row.get("training") or {}).get("dp"))


def _verdict(c: dict) -> str:
    """A claim's verdict: ``verdict`` when recorded (``not testable`` when the undefended side
    leaked nothing), else from ``holds`` (reports written before verdicts existed)."""
    if c.get("verdict"):
        return c["verdict"]
    return VERDICT_WORDS[c.get("holds")]


def _plot(rows: list[dict[str, Any]]) -> str:
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    fig = _new_figure(figsize=(9.6, 3.6))
    axes = fig.subplots(1, 2)
    for ax, (title, get) in zip(axes, (
            ("exact memorization of training windows", lambda r: (r["memorization"] or {}).get("all")),
            ("best membership TPR at 1% FPR (documents)", lambda r: {
                "value": r["membership"]["documents"]["tpr"], "ci_low": r["membership"]["documents"]["ci_low"],
                "ci_high": r["membership"]["documents"]["ci_high"]}))):
        for i, r in enumerate(rows):
            y = get(r)
            u = r["utility"]["heldout_ppl"]
            if not y or y.get("value") is None:
                continue
            ax.errorbar([u["value"]], [y["value"]],
                        xerr=[[u["value"] - u["ci_low"]], [u["ci_high"] - u["value"]]],
                        yerr=[[y["value"] - y["ci_low"]], [y["ci_high"] - y["value"]]],
                        marker="o", capsize=3, color=f"C{i % 10}", label=r["variant"])
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.set_xlabel("held-out perplexity, log scale (utility: lower is better)")
        ax.set_ylabel("leakage")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def build_defenses(rd: ReportData) -> Section | None:
    rows = rd.of("defense_comparison")
    if not rows:
        return None
    table = {
        "id": "defense-table",
        "caption": "Each variant against the same attacks on the original training data (95% intervals)",
        "headers": ["variant", "parameters", "privacy (ε, δ, unit)", "held-out perplexity", "exact memorization",
                    "… of duplicated windows", "mean canary exposure (bits)", "MIA TPR@1%FPR (best)",
                    "blind baseline AUC", "extraction precision", "verified samples",
                    "canaries extracted", "corpus PII values in samples"],
        "rows": [[r["variant"], f"{r.get('n_params', 0):,}", _eps(r), _ci(r["utility"]["heldout_ppl"], pct=False),
                  _ci((r["memorization"] or {}).get("all")), _ci((r["memorization"] or {}).get("dup")),
                  _ci((r.get("exposure") or {}).get("mean"), pct=False),
                  _ci(r["membership"]["documents"], key="tpr") + (
                      f" ({r['membership']['documents']['attack']})" if r["membership"]["documents"].get("attack") else ""),
                  "—" if r["membership"]["documents"].get("blind_auc") is None
                  else f"{r['membership']['documents']['blind_auc']:.3f}",
                  _ci(r["extraction"]["precision"]), r["extraction"]["verified_samples"],
                  r["extraction"]["canaries_extracted"],
                  sum(r["extraction"]["corpus_pii_in_samples"].values())] for r in rows],
    }
    if any(r.get("general_ppl") for r in rows):  # the fine-tuning lab: forgetting
        table["headers"].insert(4, "out-of-domain perplexity")
        for r, cells in zip(rows, table["rows"]):
            cells.insert(4, _ci(r.get("general_ppl"), pct=False))
    summ = rd.summary("defense_comparison") or {}
    claims = summ.get("claims") or {}
    claim_table = {
        "id": "defense-claims",
        "caption": "The literature's claims, reproduced or not on this corpus",
        "headers": ["claim", "verdict here", "measured (undefended → defended, 95% intervals)"],
        "rows": [[c["claim"] + (f" ({c['privacy']})" if c.get("privacy") else ""), _verdict(c),
                  claim_numbers(c)]
                 for c in claims.values()],
    }
    figs = [{"img": _plot(rows), "alt": "privacy-utility plot",
             "caption": "Privacy–utility: leakage against held-out perplexity, one point per variant "
                        "(95% intervals). Down and left is better."}]
    return Section("defenses", "Defenses judged by re-running the attacks", "tables",
                   {"intro": "Every variant is trained on the same corpus with the same seed and "
                             "schedule; only the defense differs. All attacks target the original "
                             "(undefended) training data." + (
                                 " " + summ["practical_below_eps3"]["sentence"]
                                 if (summ.get("practical_below_eps3") or {}).get("sentence") else ""),
                    "warnings": list(summ.get("warnings") or []),
                    "tables": [table] + ([claim_table] if claims else []), "figures": figs})
