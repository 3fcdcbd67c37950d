"""The default-size lab reproduces the ordering of Carlini et al. 2021, Table 2 (slow: ~6 min)."""

import pytest

from leakaudit.lab.run import LabConfig, run_lab
from leakaudit.report.records import load_report


@pytest.mark.slow
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
