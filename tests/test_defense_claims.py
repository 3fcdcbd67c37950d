"""Honest defense claims (issue 28): ε never without δ and its privacy unit, a warning when the
blind baseline separates members from non-members or a defended variant leaks more than the
undefended one, and "not testable" (never "holds") when the undefended side leaked nothing."""

from __future__ import annotations

from leakaudit.audits.compare import claim_verdict, comparison_warnings
from leakaudit.lab.defenses import evaluate_claims
from leakaudit.training.finetune import privacy_statement


def _rate(v, w=0.02):
    return {"value": v, "ci_low": max(0.0, v - w), "ci_high": min(1.0, v + w), "n": 100}


def _row(name, mem, tpr, exposure, *, blind=0.5, pii=0, canaries=0, verified=0, dp=None):
    return {"variant": name, "n_params": 1000,
            "utility": {"heldout_ppl": {"value": 20.0, "ci_low": 19.0, "ci_high": 21.0}},
            "memorization": {"all": _rate(mem), "dup": _rate(mem), "nonpii": _rate(mem)},
            "membership": {"documents": {"tpr": tpr, "ci_low": tpr / 2, "ci_high": min(1.0, tpr * 1.5),
                                         "blind_auc": blind, "attack": "loss"}},
            "exposure": {"mean": {"value": exposure, "ci_low": exposure - 0.5, "ci_high": exposure + 0.5}},
            "extraction": {"precision": _rate(0.1), "verified_samples": verified,
                           "canaries_extracted": canaries, "corpus_pii_in_samples": {"email": pii}},
            "training": {"dp": dp} if dp else None}


DP = {"epsilon": 7.98, "delta": 1e-5, "privacy_unit": "document", "accountant": "rdp"}


def test_privacy_statement_states_delta_and_unit():
    assert privacy_statement(DP) == "ε = 7.98 at δ = 1e-05 per document"
    block = {"epsilon": 1.0, "delta": 2e-6, "privacy_unit": "one 128-token training block (stream packing)"}
    assert privacy_statement(block) == "ε = 1 at δ = 2e-06 per one 128-token training block (stream packing)"
    assert "unstated unit" in privacy_statement({"epsilon": 3.0, "delta": 1e-5})  # old records
    assert privacy_statement(None) == "∞ (non-private)"


def test_not_testable_when_the_undefended_side_leaked_nothing():
    quiet = {"undefended": _row("undefended", 0.0, 0.0, 0.0),
             "dedup": _row("dedup", 0.0, 0.0, 0.0), "dp_eps8": _row("dp_eps8", 0.0, 0.0, 0.0, dp=DP),
             "scrubbed": _row("scrubbed", 0.0, 0.0, 0.0)}
    c = evaluate_claims(quiet)
    assert {k: v["verdict"] for k, v in c.items()} == {
        "dedup_cuts_duplicated_memorization": "not testable",
        "dp_eps8_cuts_mia_and_exposure": "not testable",
        "scrub_removes_pii_keeps_other_memorization": "not testable"}
    assert all(v["holds"] is None for v in c.values())  # never "holds"
    assert c["dp_eps8_cuts_mia_and_exposure"]["privacy"] == "ε = 7.98 at δ = 1e-05 per document"
    # negative control: the same defended numbers against a leaking undefended model hold
    # (the scrubbed model keeps the non-PII memorization, as the scrub claim asks)
    leaky = dict(quiet, undefended=_row("undefended", 0.5, 0.4, 8.0, pii=3, canaries=2),
                 scrubbed=_row("scrubbed", 0.5, 0.4, 8.0))
    c = evaluate_claims(leaky)
    assert {v["verdict"] for v in c.values()} == {"holds"}
    assert claim_verdict({"holds": False, "undefended_leaked": True}) == "does not hold"
    assert claim_verdict({"holds": None, "undefended_leaked": True}) == "not resolvable"


def test_warnings_blind_baseline_and_defended_scoring_higher():
    rows = {"undefended": _row("undefended", 0.3, 0.2, 5.0, blind=0.55, verified=4),
            "dp": _row("dp", 0.1, 0.05, 2.0, blind=0.58, verified=1, dp=DP)}
    assert comparison_warnings(rows, baseline="undefended") == []  # negative control
    rows["dp"] = _row("dp", 0.35, 0.05, 2.0, blind=0.72, verified=1, dp=DP)
    w = comparison_warnings(rows, baseline="undefended")
    assert len(w) == 2
    assert w[0].startswith("dp: the blind baseline separates") and "0.720" in w[0]
    assert "dp scores higher than the undefended model (undefended) on exact memorization (0.35 vs 0.3)" in w[1]


def test_report_shows_unit_delta_warnings_and_verdicts(tmp_path):
    from leakaudit.report.html import render_html
    from leakaudit.report.writer import write_report

    rows = {"undefended": _row("undefended", 0.0, 0.0, 0.0),
            "dp_eps8": _row("dp_eps8", 0.0, 0.0, 0.0, blind=0.8, dp=DP)}
    claims = evaluate_claims(rows)
    warnings = comparison_warnings(rows, baseline="undefended")
    write_report(tmp_path, formats=("jsonl",), run_record={"command": "test", "seed": 0},
                 records=[("defense_comparison", r) for r in rows.values()],
                 summary={"attack": "defense_comparison", "variants": list(rows), "claims": claims,
                          "warnings": warnings})
    html = render_html(tmp_path).read_text()
    assert "ε = 7.98 at δ = 1e-05 per document" in html and "∞ (non-private)" in html
    assert "not testable" in html and ">holds<" not in html
    assert "the blind baseline separates members from non-members (AUC 0.800" in html
