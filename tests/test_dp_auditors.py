"""DP auditors as registered classes made by ``create_auditor`` (like Opacus's
``create_accountant``): the plan each makes, and that its bound is the statistics' own number."""

from __future__ import annotations

import numpy as np
import pytest

from leakaudit.attacks.dp_audit.auditors import MultiRunAuditor, OneRunAuditor, create_auditor
from leakaudit.attacks.dp_audit.canaries import coin_flips
from leakaudit.audits.dp_audit import DPAuditConfig
from leakaudit.errors import InputError
from leakaudit.metrics.dp_audit import multi_run_audit, one_run_audit
from leakaudit.registry import UnknownName


def test_one_run_plans_one_training_and_a_perfect_attacker_reaches_the_maximum():
    a = create_auditor("one-run", n_canaries=1000, confidence=0.95, seed=0)
    assert isinstance(a, OneRunAuditor) and a.params() == {"n_canaries": 1000, "confidence": 0.95,
                                                           "seed": 0}
    (t,) = a.trainings()
    assert t.seed == 0 and t.include.tolist() == coin_flips(1000, seed=1).tolist()
    a.observe(t.include.astype(float), t.include)  # scores that say exactly who was included
    res = a.result(delta=1e-5)
    same = one_run_audit(t.include.astype(float), t.include, delta=1e-5, beta=1 - 0.95, seed=0)
    assert res.v == res.r == 750 and res.epsilon == same.epsilon > 4.3  # 4.3368: 750 of 750 right
    with pytest.raises(ValueError, match="exactly one trained model"):
        a.observe(t.include.astype(float), t.include)


def test_one_run_negative_control_certifies_almost_nothing():
    a = create_auditor("one-run", n_canaries=1000, confidence=0.95, seed=1)
    (t,) = a.trainings()
    a.observe(np.random.default_rng(1).normal(size=1000), t.include)  # no information
    assert a.result(delta=1e-5).epsilon < 0.3


def test_multi_run_alternates_in_and_out_and_gives_the_statistics_number():
    a = create_auditor("multi-run", n_models=15, confidence=0.95, seed=2, select_fraction=0.5)
    assert isinstance(a, MultiRunAuditor) and a.n_canaries == 1
    plan = a.trainings()
    assert [int(t.include[0]) for t in plan] == [1, 0] * 15
    assert [t.seed for t in plan] == [2 * 1_000_003 + j for j in range(30)]
    for t in plan:
        a.observe(np.array([float(t.include[0])]), t.include)  # perfect separation
    res = a.result(delta=0.0)
    same = multi_run_audit(np.ones(15), np.zeros(15), alpha=1 - 0.95, delta=0.0, seed=2,
                           select_fraction=0.5)
    assert res.epsilon == same.epsilon == res.max_certifiable > 0.3  # 0.3656: 7 of 7, 0 of 7
    assert (res.n_select_in + res.n_in, res.n_select_out + res.n_out) == (15, 15)
    b = create_auditor("multi-run", n_models=15, confidence=0.95, seed=2, select_fraction=0.5)
    for t in plan:
        b.observe(np.array([0.5]), t.include)  # negative control: the model ignores the canary
    assert b.result(delta=0.0).epsilon == 0.0


def test_names_come_from_the_registry():
    with pytest.raises(UnknownName, match="Did you mean: one-run"):
        create_auditor("one-runn", n_canaries=10, confidence=0.95, seed=0)
    cfg = dict(n_canaries=10, n_models=4, confidence=0.95, delta=1e-5, canary_kind="crafted", seed=0)
    assert DPAuditConfig(mode="one-run", **cfg).models_to_train() == 1
    assert DPAuditConfig(mode="multi-run", **cfg).models_to_train() == 8
    with pytest.raises(InputError, match="mode must be one of one-run, multi-run; got 'bogus'"):
        DPAuditConfig(mode="bogus", **cfg).validate()
