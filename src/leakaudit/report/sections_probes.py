"""HTML section for the PII probes (``pii_probe`` records, ProPILE-style)."""

from __future__ import annotations

from leakaudit.report.html_base import ReportData, Section


def _rate(r: dict | None) -> str:
    if not r or r.get("value") is None:
        return "—"
    return f"{r['k']}/{r['n']} = {r['value']:.1%} [{r['ci_low']:.1%}, {r['ci_high']:.1%}]"


def build_pii_probes(rd: ReportData) -> Section | None:
    recs = rd.of("pii_probe")
    rates = [r for r in recs if r.get("kind") == "rate"]
    if not rates:
        return None
    setup = next((r for r in recs if r.get("kind") == "setup"), {})
    templates = (setup.get("config") or {}).get("templates") or []

    def who(r: dict) -> str:
        t = r.get("target")
        return t.get("name", "?") if isinstance(t, dict) else str(t)

    overall = [r for r in rates if r.get("template") == "all" and r.get("subject_docs") is None]
    dose = [r for r in rates if r.get("subject_docs") is not None]
    per_template = [r for r in rates if r.get("template") != "all"]
    intro = (
        "ProPILE-style probes (Kim et al. 2023): a data subject's known attributes are put into a "
        "prompt that asks for another one; the greedy reply is compared with the truth. exact = "
        "the true value is in the reply's first line (e-mails lowercased, phone numbers and dates "
        "as digits); partial = exact, or the first candidate is at least "
        f"{(setup.get('config') or {}).get('partial_ratio', 80)}% similar. trained = subjects of "
        "the training documents; held-out = subjects no model saw (what a name's format alone "
        "gives away). A model not trained on the documents (the reference) is the other control. "
        "Rates with 95% Clopper–Pearson intervals; values are masked unless --show-pii."
        + (" Templates: " + "; ".join(f"{t['id']}: \"{t['prompt']}\" → {t['target']}"
                                      for t in templates) if templates else ""))
    headers = ["model", "subjects", "template", "exact", "partial"]
    tables = [{"id": "pii-probes", "caption": "PII probes, all templates",
               "headers": headers,
               "rows": [[who(r), r["group"], "all", _rate(r.get("exact")), _rate(r.get("partial"))]
                        for r in overall]}]
    if dose:
        tables.append({
            "id": "pii-probes-dose", "caption": "By the number of training documents a subject "
            "occurs in (all templates)",
            "headers": ["model", "subjects", "documents per subject", "subjects probed", "exact",
                        "partial"],
            "rows": [[who(r), r["group"], r["subject_docs"], r.get("n_subjects", "—"),
                      _rate(r.get("exact")), _rate(r.get("partial"))] for r in dose]})
    tables.append({"id": "pii-probes-templates", "caption": "By template", "headers": headers,
                   "rows": [[who(r), r["group"], r["template"], _rate(r.get("exact")),
                             _rate(r.get("partial"))] for r in per_template]})
    return Section(id="pii-probes", title="PII probes", kind="tables",
                   data={"intro": intro, "tables": tables, "figures": []})
