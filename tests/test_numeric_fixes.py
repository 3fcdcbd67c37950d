"""One test per numeric fix of issue 11; each failed before its fix (noted per test)."""

import json
import math

import numpy as np
import pytest

from leakaudit.targets.base import TokenScores


def _ts(lp):
    lp = np.asarray(lp, np.float32)
    return TokenScores(np.arange(len(lp)), lp, np.zeros(len(lp), bool))


def test_queries_needed_in_log_space_below_float_underflow():
    """Before: p_z = exp(-800) underflowed to 0 and log1p(-0) = 0 divided by zero."""
    from leakaudit.metrics.memorization import log_queries_needed, queries_needed

    assert queries_needed(-800.0, 0.5) == math.inf  # n ≈ 0.69·e^800: beyond a float
    assert log_queries_needed(-800.0, 0.5) == pytest.approx(math.log(math.log(2)) + 800, abs=1e-9)
    assert log_queries_needed(float("-inf"), 0.5) == math.inf  # p_z = 0: truly never
    # continuity across the branch at log p_z = -30 and agreement with the direct formula
    for lz in (-29.9, -30.1, -5.0, -0.1):
        direct = math.log(math.log1p(-0.9) / math.log1p(-math.exp(lz)))
        assert log_queries_needed(lz, 0.9) == pytest.approx(direct, rel=1e-12)
    assert queries_needed(-700.0, 0.5) == pytest.approx(math.log(2) * math.exp(700), rel=1e-9)


def test_memorization_records_carry_log10_n(tiny_lm):
    from leakaudit.attacks.memorization import MemorizationConfig
    from leakaudit.attacks.memorization.measure import measure_memorization, select_sequences
    from leakaudit.corpus.index import CorpusIndex

    from .conftest import TEXTS

    docs = [" ".join(TEXTS[:4])]
    cfg = MemorizationConfig(prefix_lengths=(4,), suffix_length=12, n_sequences=2,
                             stratify=False, greedy_check=0)
    seqs = select_sequences(tiny_lm, docs, ["d"], CorpusIndex.build(docs, ["d"]), config=cfg,
                            log=lambda *_: None)
    res = measure_memorization({"m": tiny_lm}, seqs, config=cfg, log=lambda *_: None)
    assert res.records
    for r in res.records:
        if r["log_pz"] == -math.inf:  # a suffix token outside the top-k: never sampled
            assert r["log10_n_for_p"] == math.inf and r["n_for_p"] == math.inf
            continue
        pz = math.exp(r["log_pz"])
        direct = math.log10(math.log1p(-0.5) / math.log1p(-pz))
        assert r["log10_n_for_p"] == pytest.approx(direct, rel=1e-9)


def test_infinities_stay_distinct_from_missing_values_in_jsonl(tmp_path):
    """Before: both inf and NaN were written as null."""
    from leakaudit.report.records import JsonlWriter, read_jsonl
    from leakaudit.report.sections_memorization import _f

    with JsonlWriter(tmp_path / "r.jsonl") as w:
        w.write("memorization", {"n_for_p": math.inf, "log_pz": -math.inf, "missing": math.nan,
                                 "nested": [np.float64("inf"), 1.5], "text": "ok"})
    raw = json.loads((tmp_path / "r.jsonl").read_text())
    assert raw["n_for_p"] == "Infinity" and raw["log_pz"] == "-Infinity" and raw["missing"] is None
    (back,) = read_jsonl(tmp_path / "r.jsonl")
    assert back["n_for_p"] == math.inf and back["log_pz"] == -math.inf
    assert back["missing"] is None and back["nested"] == [math.inf, 1.5]
    assert _f(math.inf) == "∞" and _f(None) == "—" and _f(-math.inf) == "−∞"


def test_dp_record_stores_the_sampling_rate_opacus_used():
    """Before: the record said q = batch/n = 0.3; Opacus samples at 1/len(loader) = 1/4 here,
    so ε recomputed from the record differed from the ε reported."""
    pytest.importorskip("opacus")
    from opacus.accountants import RDPAccountant

    from leakaudit.training.dp_classifier import DPConfig, train_classifier_dp
    from leakaudit.training.classifier import MLPSpec, TrainConfig

    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    _, rec = train_classifier_dp(x, y, MLPSpec(4, 2, ()),
                                 TrainConfig(epochs=2, lr=0.5, batch_size=30, seed=0),
                                 DPConfig(noise_multiplier=1.1, max_grad_norm=1.0, delta=1e-5))
    assert rec["sample_rate"] == pytest.approx(1 / math.ceil(100 / 30))
    assert rec["nominal_sample_rate"] == pytest.approx(0.3)
    acc = RDPAccountant()
    acc.history = [(rec["noise_multiplier"], rec["sample_rate"], rec["accounted_steps"])]
    assert acc.get_epsilon(rec["delta"]) == pytest.approx(rec["epsilon"], rel=1e-9)


def test_lowercase_is_one_statistic_in_membership_and_extraction():
    """Before: membership used mean log p(text) − mean log p(lower); extraction the ratio."""
    from leakaudit.attacks.extraction.rankings import RankingInputs, lowercase_score
    from leakaudit.attacks.membership.llm import LowercaseAttack
    from leakaudit.signals.membership_lm import LMSignals

    tgt = [_ts([-1.0, -2.0]), _ts([-0.5, -0.5, -0.5])]
    low = [_ts([-3.0, -3.0]), _ts([-0.25, -0.25, -0.25])]
    texts = ["Ab", "Cde"]
    sig = LMSignals(texts=texts, target=tgt, lowercase=low, references={},
                    zlib=np.ones(2), forward_passes={})
    mia = LowercaseAttack().score(sig)
    ext = lowercase_score(RankingInputs(texts, tgt, low, {}))
    np.testing.assert_allclose(mia, ext)
    np.testing.assert_allclose(mia, [3.0 / 1.5, 0.25 / 0.5])  # log PPL(lower) / log PPL(text)


def test_min_k_selects_int_k_n_tokens_as_the_official_code():
    """Before: ceil(k·n): 2 of 9 tokens at k = 0.2, where the official code takes int(1.8) = 1."""
    from leakaudit.signals.lm import min_k_mean, min_k_pp_mean

    lp = [-5.0, -4.0, -1.0, -1.0, -1.0, -1.0, -1.0, -1.0, -1.0]
    assert min_k_mean([_ts(lp)], k=0.2)[0] == -5.0
    assert min_k_mean([_ts(lp + [-1.0])], k=0.2)[0] == -4.5  # int(2.0) = 2
    assert min_k_mean([_ts([-2.0, -1.0])], k=0.2)[0] == -2.0  # int(0.4) = 0 → at least one
    ts = _ts(lp)
    ts.vocab_mean = np.zeros(9, np.float32)
    ts.vocab_var = np.ones(9, np.float32)
    assert min_k_pp_mean([ts], k=0.2)[0] == -5.0


def test_lira_with_too_few_references_is_a_clear_error():
    """Before: np.average over all-zero weights raised ZeroDivisionError."""
    from leakaudit.attacks.membership.classifier import ClassifierSignals, LiRAAttack
    from leakaudit.errors import InputError

    rng = np.random.default_rng(0)
    n = 6
    p = rng.dirichlet([1, 1], size=(3, n))
    keep = np.array([[True, False] * 3, [False, True] * 3])  # 1 IN and 1 OUT per record
    s = ClassifierSignals(y=np.zeros(n, np.int64), target_probs=p[0], ref_probs=p[1:],
                          ref_keep=keep)
    for online in (True, False):
        with pytest.raises(InputError, match="at least two OUT reference models"):
            LiRAAttack(online=online, fixed_variance=True).score(s)


def test_roc_epsilon_is_a_dp_bound_only_for_randomized_splits():
    from leakaudit.metrics.roc import evaluate_membership
    from leakaudit.report.html import _eps_cell

    s = np.r_[np.ones(50), np.zeros(50)]
    y = s.astype(np.int64)
    plain = evaluate_membership(s, y, n_boot=10).to_dict()
    rand = evaluate_membership(s, y, n_boot=10, randomized_split=True).to_dict()
    assert plain["epsilon_lb_kind"] == "roc_statistic_not_dp"
    assert rand["epsilon_lb_kind"] == "dp_lower_bound"
    assert "not a DP statement" in _eps_cell(plain) and _eps_cell(rand).startswith("ε ≥")


def test_documentation_states_what_is_implemented():
    from leakaudit.attacks.inversion import mi_face
    from leakaudit.metrics import memorization

    assert "Stopping rule implemented" in mi_face.__doc__
    assert "upper bound" not in memorization.fractional_match.__doc__
