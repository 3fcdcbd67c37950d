"""Each kind of report page says what it audited: its subtitle and its "How to read" guide are
its own (erasure, output filter, defenses), not the extraction audit's; the output-filter page
leads with how many canary secrets still came out; no "final loss —" row."""

from __future__ import annotations

from leakaudit.report.html import render_html
from leakaudit.report.html_base import ReportData
from leakaudit.report.writer import write_report

EXTRACTION_GUIDE = "rankings pick the top candidates of each sampler"
RUN = {"command": "leakaudit test", "seed": 0, "config": {"show_pii": False},
       "started": "2026-01-02T03:04:05+00:00",
       "models": {"target": {"path": "models/target"}},
       "training": {"target": {"final_loss": 1.2345, "wall_s": 10.0}, "dp": {"final_loss": None}}}


def _page(tmp_path, name, records, summary):
    d = tmp_path / name
    d.mkdir()
    write_report(d, run_record=RUN, records=records, summary=summary, formats=("jsonl",))
    render_html(d)
    return (d / "report.html").read_text()


def _erasure_records():
    from leakaudit.audits.erasure import VerifyConfig, verify_models
    from tests.test_unlearning import _Scores

    forget, unseen = [f"f{i}" for i in range(8)], [f"u{i}" for i in range(10)]
    base = {**{u: i for i, u in enumerate(unseen)}, "r0": 5, "r1": 5}
    tables = {"original": [20 + i for i in range(8)], "oracle": [0.5, 1.5, 2.5, 3.5, 4.5, -1, -2, -3]}
    models = {m: _Scores({**base, **dict(zip(forget, f))}) for m, f in tables.items()}
    recs = verify_models(models, forget=forget, retain=["r0", "r1"], unseen=unseen,
                         reference=None, oracle="oracle", cfg=VerifyConfig(n_boot=100))
    return [("erasure", r) for r in recs]


def test_erasure_page_has_its_own_title_guide_and_oracle_row(tmp_path):
    html = _page(tmp_path, "erasure", _erasure_records(), {"attack": "erasure"})
    assert "Erasure verification (right to be forgotten)" in html
    assert "Training-data extraction audit" not in html and EXTRACTION_GUIDE not in html
    assert "Each unlearning method is judged against the oracle" in html
    assert "the oracle (the yardstick)" in html and "retained" in html  # original vs the oracle
    assert "+0.812" in html  # original's Δ AUC vs the oracle, 1 − 0.1875
    # the training table: a number or nothing, never "final loss —"
    assert "final loss 1.234" in html and "final loss —" not in html


def _filter_records(k_spaced):
    setup = {"kind": "setup", "filter": {"n": 8, "library": "bloom", "fp_rate": 1e-4},
             "fp_rate": {"measured": {"k": 0, "n": 100, "value": 0.0, "ci_low": 0.0,
                                      "ci_high": 0.03}}}
    rates = []
    for variant, style, k in (("unfiltered", "plain", 9), ("memfree", "plain", 1),
                              ("memfree", "spaced", k_spaced)):
        for measure in ("exact", "near", "normalized", "filter_ngram", "text_window"):
            rates.append({"kind": "rate", "variant": variant, "style": style,
                          "probe_kind": "secret", "measure": measure,
                          "k": k if measure == "normalized" else 0, "n": 18,
                          "value": k / 18, "ci_low": 0.0, "ci_high": 0.5})
    return [("output_filter", setup), *[("output_filter", r) for r in rates]]


def test_output_filter_page_leads_with_the_secrets_that_came_through(tmp_path):
    head = ("Canary secrets still extracted with the filter on: 1/18 plain, 2/18 spaced "
            "(unfiltered: 9/18 plain).")
    html = _page(tmp_path, "of", _filter_records(2), {"attack": "output_filter"})
    assert "Output filter evaluation" in html and head in html
    assert "Training-data extraction audit" not in html and EXTRACTION_GUIDE not in html
    assert "walked around by asking for the text spaced out" in html


def test_output_filter_headline_when_nothing_came_through():
    from leakaudit.report.sections_erasure import secret_headline

    recs = [r for _, r in _filter_records(0)]
    for r in recs:
        if r.get("variant") == "memfree":
            r["k"] = 0
    assert secret_headline(recs) == ("No canary secret extracted with the filter on: 0/18 plain, "
                                     "0/18 spaced (unfiltered: 9/18 plain).")
    assert secret_headline([r for r in recs if r.get("probe_kind") != "secret"]) is None


def test_defenses_page_title_and_guide():
    from leakaudit.report.html import audit_kind, build_header

    rd = ReportData({"run": [RUN], "defense_comparison": [{"variant": "undefended"}]}, RUN, {})
    h = build_header(rd)
    assert audit_kind(rd) == "defenses" and h["audit_title"].startswith("Defense evaluation")
    assert any("tie at a measure's floor" in g for g in h["guide"])
    # the training rows: "dp" has no number and is left out
    assert [t["name"] for t in h["training"]] == ["target"]
    # negative control: an extraction report keeps the extraction title and its template guide
    rd = ReportData({"run": [RUN], "sample": [{"verified": True}]}, RUN, {})
    h = build_header(rd)
    assert h["audit_title"] == "Training-data extraction audit" and h["guide"] == []


def test_erasure_finding_severity_follows_the_oracle_comparison():
    from leakaudit.findings import RunContext, to_record

    by = {r["model"]: r for _, r in _erasure_records()}
    ctx = RunContext.from_run(RUN)
    sev = {m: to_record("erasure", dict(r), ctx).severity for m, r in by.items()}
    assert sev == {"original": "high", "oracle": "info"}  # the oracle is the yardstick
    # an oracle whose own AUC CI is above 0.5 (the issue's 0.770) is still no finding
    hi = dict(by["oracle"], membership={**by["oracle"]["membership"], "auc_forget_vs_unseen": {
        "value": 0.77, "ci_low": 0.70, "ci_high": 0.84}})
    assert to_record("erasure", hi, ctx).severity == "info"
    over = dict(by["original"], vs_oracle={**by["original"]["vs_oracle"],
                                           "verdict": "over-forgotten"})
    assert to_record("erasure", over, ctx).severity == "medium"
