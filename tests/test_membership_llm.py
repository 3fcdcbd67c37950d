"""LLM membership attacks end to end on a small LM trained in the test, plus the blind baseline."""

import numpy as np
import pytest

from leakaudit.attacks.membership.audit_llm import audit_llm_membership
from leakaudit.attacks.membership.blind import BlindBaselineConfig, blind_baseline_scores
from leakaudit.attacks.membership.evaluate import EvalConfig
from leakaudit.metrics.roc import auc
from tests.membership_fixtures import random_docs, train_leaky_lms


@pytest.fixture(scope="module")
def leaky(tmp_path_factory):
    return train_leaky_lms(tmp_path_factory.mktemp("leaky_lm"))


def test_llm_attacks_detect_members_and_records_are_complete(leaky, tmp_path):
    target, reference, members, nonmembers = leaky
    logs = []
    a = audit_llm_membership(target, {"reference": reference}, members, nonmembers, k=0.2,
                             eval_config=EvalConfig(n_boot=200, top_n=5), cache_dir=tmp_path,
                             log=logs.append)
    assert {e.method for e in a.evaluations} == {"loss", "zlib", "lowercase", "reference", "min_k",
                                                 "min_k_pp"}
    # one target pass (with vocab stats), one lowercase pass, one reference pass per document
    assert a.cost["passes_per_document"] == 3.0
    for m in ("loss", "min_k", "min_k_pp", "reference"):
        assert a.get(m).metrics.auc > 0.7, m
    assert a.get("loss").metrics.tpr(0.1).tpr > 0.3
    recs = a.records()
    kinds = [k for k, _ in recs]
    assert kinds.count("membership") == len(a.evaluations) + 1  # + the blind baseline
    ev = [r for k, r in recs if k == "membership" and r["method"] == "min_k"][0]
    assert ev["tags"] == ["owasp:LLM02:2025", "atlas:AML.T0024.000"]
    assert ev["blind_baseline"]["auc"] < ev["auc"]
    assert ev["tpr_at_fpr"][-1]["resolvable"] is False  # 40 non-members cannot resolve 0.01%
    assert kinds.count("membership_record") == 5 * len(a.evaluations)
    # a second audit of the same documents reuses the cached passes: no forward pass
    b = audit_llm_membership(target, {"reference": reference}, members, nonmembers, k=0.2,
                             eval_config=EvalConfig(n_boot=200, top_n=5), cache_dir=tmp_path,
                             log=logs.append)
    assert sum(b.signals.forward_passes.values()) == 0
    assert sum(a.signals.forward_passes.values()) == 3 * len(members + nonmembers)
    np.testing.assert_allclose(b.get("min_k_pp").scores, a.get("min_k_pp").scores)
    # ... and reports the same records, less timings: what the cache answered is not part of a
    # result (a lab run resumed after kill -9, its passes cached by the killed process, must equal
    # an uninterrupted one; the cost said "0 passes" on the resumed run)
    assert _less_timings(b.records()) == _less_timings(recs)
    assert ev["cost"]["forward_passes"] == {"target": 80, "target-lowercase": 80,
                                            "reference:reference": 80}
    assert any("240 of 240 document passes answered by the signal cache" in m for m in logs)


def _less_timings(x):
    if isinstance(x, dict):
        return {k: _less_timings(v) for k, v in x.items() if not k.endswith("_s")}
    if isinstance(x, (list, tuple)):
        return [_less_timings(v) for v in x]
    return x


def test_negative_control_unseen_documents(leaky):
    """Two sets the target never saw, from the same generator: every attack near chance."""
    target, reference, _, _ = leaky
    a = audit_llm_membership(target, {"reference": reference}, random_docs(100, 11),
                             random_docs(100, 12), k=0.2, eval_config=EvalConfig(n_boot=200),
                             log=lambda m: None)
    for e in a.evaluations:
        assert abs(e.metrics.auc - 0.5) < 0.13, (e.label, e.metrics.auc)  # ~3 standard errors
        assert e.metrics.tpr(0.1).tpr < 0.3


def test_blind_baseline_separates_shifted_sets_and_not_same_distribution():
    same = blind_baseline_scores(random_docs(60, 1) + random_docs(60, 2), np.r_[np.ones(60), np.zeros(60)],
                                 config=BlindBaselineConfig(seed=0))
    assert abs(auc(same, np.r_[np.ones(60), np.zeros(60)]) - 0.5) < 0.15
    # distribution shift: non-members mention a later year -> the blind classifier sees it
    shifted = [d + " Filed in 2024." for d in random_docs(60, 3)]
    old = [d + " Filed in 2019." for d in random_docs(60, 4)]
    s = blind_baseline_scores(old + shifted, np.r_[np.ones(60), np.zeros(60)],
                              config=BlindBaselineConfig(seed=0))
    assert auc(s, np.r_[np.ones(60), np.zeros(60)]) > 0.95


def test_lab_documents_without_insertions_are_blind_indistinguishable():
    """The LLM lab's member documents (insertions removed) vs its held-out documents: the blind
    baseline is at chance; with the insertions left in, it is not (and warns the user)."""
    from leakaudit.lab.corpus import LabCorpusConfig, generate_lab_corpus
    from leakaudit.audits.lab_membership import strip_insertions
    from leakaudit.metrics.roc import evaluate_membership

    c = generate_lab_corpus(LabCorpusConfig(n_docs=150, n_heldout=150, seed=0))
    stripped = strip_insertions(c.train, c.manifest)
    assert not any(can["sentence"] in t for can in c.manifest["canaries"] for t in stripped)
    held = [d["text"] for d in c.heldout]
    y = np.r_[np.ones(150), np.zeros(150)]
    clean = evaluate_membership(blind_baseline_scores(stripped + held, y, config=BlindBaselineConfig()),
                                y, n_boot=300)
    assert clean.auc_ci[0] < 0.5 < clean.auc_ci[1]
    raw = evaluate_membership(blind_baseline_scores([d["text"] for d in c.train] + held, y,
                                                    config=BlindBaselineConfig()), y, n_boot=300)
    assert raw.auc_ci[0] > 0.6
