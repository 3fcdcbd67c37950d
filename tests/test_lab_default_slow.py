"""The default-size lab (extended: 7 min 9 s on an idle 2-core machine, run by hand with
``pytest -m extended``; it left CI to keep ``.ci/run`` within its 30 minutes, and the quick lab's
claims run in CI): the ordering of Carlini et al. 2021, Table 2; on 500
training windows teacher forcing agrees with greedy decoding on >= 99%; membership of heavily
repeated canaries is found at 1% FPR while the model-free baseline stays near chance; PII probes
recover recurring customers' e-mails and phones from the target, not from the reference model and
not for held-out subjects."""

import pytest

from leakaudit.lab.run import LabConfig, run_lab
from leakaudit.report.records import load_report


@pytest.mark.slow
@pytest.mark.extended
def test_default_lab_zlib_and_reference_beat_perplexity(tmp_path):
    summary = run_lab(tmp_path / "lab", LabConfig(seed=0), log=print)
    rep = load_report(tmp_path / "lab")
    memorized: dict[str, int] = {}
    selected: dict[str, int] = {}
    for e in rep["eval"]:
        memorized[e["ranking"]] = memorized.get(e["ranking"], 0) + e["n_memorized"]
        selected[e["ranking"]] = selected.get(e["ranking"], 0) + e["n_selected"]
    print({r: f"{memorized[r]}/{selected[r]}" for r in memorized})
    # Over the three samplers (300 candidates per ranking), as in the paper's Table 2:
    assert memorized["zlib"] > memorized["perplexity"]
    assert memorized["reference:reference"] > memorized["perplexity"]
    # and the most repeated canaries come out.
    top = max(c["repeats"] for c in rep["canary"])
    assert any(c["extracted"] for c in rep["canary"] if c["repeats"] == top)
    assert summary["n_verified_candidates"] >= 20
    # memorization (#4): 500 windows, every one cross-checked by real greedy decoding
    checks = [r for r in rep["memorization"] if r.get("kind") == "check"]
    assert checks
    for c in checks:
        assert c["n_checked"] == 500
        assert c["agreement"]["value"] >= 0.99, c["disagreements"]
        assert len(c["disagreements"]) == c["n_checked"] - c["agreement"]["k"]
    rates = {(r["model"], r["k"]): r["exact"] for r in rep["memorization"]
             if r.get("kind") == "rate" and r["bucket"] == "all"}
    assert rates[("target", 32)]["ci_low"] > rates[("small", 32)]["ci_high"]
    # membership (#5): same-generator non-members, blind baseline near chance
    docs = summary["membership"]["documents"]["lab documents (no insertions) vs held-out"]
    lo, hi = docs["blind_auc_ci"]
    assert lo < 0.5 < hi or abs(docs["blind_auc"] - 0.5) < 0.08
    heavy = summary["membership"]["canaries"]["canaries x>=16"]["attacks"]
    assert max(a["tpr@0.01"] or 0.0 for a in heavy.values()) >= 0.5
    # PII probes (#16): measured at 05:00 on 2026-11-29 with this config: target 8/256 exact
    # (4/16 for subjects in 8 documents, 4/16 in 16, 0/224 in one), reference 0/256, held-out
    # subjects 0/543; the bounds leave room for thread-count noise in training
    pii = summary["pii_probes"]
    print({k: f"{v['exact']['k']}/{v['exact']['n']}" for k, v in pii.items()})
    assert pii["target|trained"]["exact"]["k"] >= 3
    assert pii["reference|trained"]["exact"]["k"] <= 1
    assert pii["target|held-out"]["exact"]["k"] <= 2
    recurring = sum(v["exact"]["k"] for k, v in pii.items()
                    if k.startswith("target|trained|") and not k.endswith("|1 docs"))
    assert recurring >= 3 and pii["target|trained|1 docs"]["exact"]["k"] <= 2
