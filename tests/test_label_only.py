"""Label-only membership inference: numbers checkable by hand on a threshold classifier, the
per-record query budget as a hard cap that is counted, members found on an overfit digits target,
and chance on the negative controls (non-members against non-members; an untrained model)."""

import numpy as np
import pytest

from leakaudit.attacks.membership.audit_clf import LabelOnlySettings, audit_classifier_membership
from leakaudit.attacks.membership.evaluate import EvalConfig
from leakaudit.attacks.membership.label_only import (AugmentationAttack, BoundaryDistanceAttack,
                                                     LabelGapAttack, LabelQueries)
from leakaudit.errors import CapabilityError, InputError
from leakaudit.metrics.roc import auc
from leakaudit.targets.classifier import FunctionClassifier, LabelOnlyOutputs, TorchClassifier


def threshold_classifier(dim=2):
    """Class 1 iff x[0] > 0.5."""
    return FunctionClassifier(lambda x: np.eye(2)[(x[:, 0] > 0.5).astype(int)], n_classes=2,
                              input_shape=(dim,))


def boundary(budget, grad_steps, **kw):
    return BoundaryDistanceAttack(budget=budget, n_starts=1, tol=0.01, grad_steps=grad_steps,
                                  n_grad=kw.get("n_grad", 20), delta=0.1, seed=0)


def test_binary_search_distance_by_hand():
    """x = (0.2, 0.5), label 0, toward (0.9, 0.5), label 1: the boundary is 0.3 away. The search
    halves [0, 1] until the bracket is ≤ 0.01 in L2, i.e. 2^-k · 0.7 ≤ 0.01: k = 7 queries,
    plus 1 for the record's own label = 8; the answer lies in [0.3, 0.3 + 0.7 · 2^-7]."""
    q = LabelQueries(threshold_classifier(), np.array([[0.2, 0.5], [0.9, 0.5]]), np.array([0, 1]))
    atk = boundary(100, 0)
    d = atk.score(q)
    assert 0.3 <= d[0] <= 0.3 + 0.7 / 128 and 0.4 <= d[1] <= 0.4 + 0.7 / 128
    assert atk.queries_.tolist() == [8, 8] and q.target.queries == 16
    # a misclassified record is at distance 0 after its single query
    q2 = LabelQueries(threshold_classifier(), np.array([[0.2, 0.5], [0.9, 0.5]]), np.array([1, 1]))
    atk2 = boundary(100, 0)
    assert atk2.score(q2)[0] == 0 and atk2.queries_[0] == 1


def test_records_with_nothing_to_search_toward_use_random_points_and_stay_finite():
    """Every audited record is labelled 0 and lies left of the boundary: the search starts from
    random points of [0, 1]² (half of them labelled 1), so each distance is an upper bound ≥ the
    true one (0.5 − x[0]); a target with no boundary at all gives equal, finite scores."""
    x = np.array([[0.1, 0.5], [0.3, 0.5], [0.45, 0.5]])
    atk = boundary(30, 0)
    d = atk.score(LabelQueries(threshold_classifier(), x, np.zeros(3, int)))
    assert np.all(d >= 0.5 - x[:, 0] - 1e-9) and np.all(d < 1.5) and atk.queries_.max() <= 30
    constant = FunctionClassifier(lambda z: np.tile([1.0, 0.0], (len(z), 1)), n_classes=2,
                                  input_shape=(2,))
    atk = boundary(30, 2)
    d = atk.score(LabelQueries(constant, x, np.zeros(3, int)))
    assert d.tolist() == [0.0, 0.0, 0.0] and atk.queries_.tolist() == [2, 2, 2]  # 1 + n_starts probes


def test_hopskipjump_steps_move_toward_the_nearest_boundary_point():
    """Toward (0.9, 0.9) from (0.2, 0.2) the line crosses the boundary 0.3·√2 ≈ 0.424 away; the
    nearest boundary point is 0.3 away. Gradient-estimate steps close most of that gap."""
    x = np.array([[0.2, 0.2], [0.9, 0.9]])
    start = boundary(400, 0).score(LabelQueries(threshold_classifier(), x, np.array([0, 1])))
    assert start[0] == pytest.approx(0.3 * np.sqrt(2), abs=0.01)
    atk = boundary(400, 4)
    d = atk.score(LabelQueries(threshold_classifier(), x, np.array([0, 1])))
    assert 0.3 - 1e-9 <= d[0] < 0.33 and atk.queries_.max() <= 400


def test_gap_and_augmentation_by_hand():
    """Noise σ = 0.1 around x[0] = 0.2 (3σ from the boundary) keeps the label almost always; at
    x[0] = 0.49 about half the copies flip."""
    x = np.array([[0.2, 0.5], [0.49, 0.5], [0.7, 0.5]])
    y = np.array([0, 0, 0])  # the third is misclassified
    gap = LabelGapAttack(budget=1)
    assert gap.score(LabelQueries(threshold_classifier(), x, y)).tolist() == [1.0, 1.0, 0.0]
    aug = AugmentationAttack(budget=41, max_shift=0, noise_sigmas=(0.1,), n_noise=40, seed=0)
    s = aug.score(LabelQueries(threshold_classifier(), x, y))
    assert s[0] >= 40 and 10 <= s[1] <= 31 and s[2] <= 3
    assert aug.queries_.tolist() == [41, 41, 41]
    with pytest.raises(InputError, match="needs at least 41 queries"):
        AugmentationAttack(budget=40, max_shift=0, noise_sigmas=(0.1,), n_noise=40,
                           seed=0).score(LabelQueries(threshold_classifier(), x, y))


def test_text_targets_are_refused_by_name():
    clf = threshold_classifier()
    from dataclasses import replace

    clf.capabilities = replace(clf.capabilities, float_inputs=False)
    with pytest.raises(CapabilityError, match="float_inputs"):
        LabelQueries(clf, np.zeros((2, 2)), np.zeros(2, int))


@pytest.fixture(scope="module")
def digits_models():
    """An overfit MLP (90 members, 200 epochs) and an untrained one, with disjoint unseen sets."""
    from leakaudit.lab.digits import load_digits_data, split_digits
    from leakaudit.training.classifier import MLPSpec, TrainConfig, train_classifier

    parts = split_digits(load_digits_data(), {"m": 0.05, "n": 0.05, "c1": 0.25, "c2": 0.25}, seed=0)
    spec = MLPSpec(input_dim=64, n_classes=10, hidden=(256,))
    fit = train_classifier(parts["m"].x, parts["m"].y, spec, TrainConfig(epochs=200, seed=0))
    untrained = train_classifier(parts["m"].x, parts["m"].y, spec, TrainConfig(epochs=0, seed=0))
    return parts, fit, untrained


def _queries(parts, a, b, module):
    x = np.concatenate([parts[a].x, parts[b].x]).reshape(-1, 8, 8)
    y = np.concatenate([parts[a].y, parts[b].y])
    target = LabelOnlyOutputs(TorchClassifier(module, n_classes=10, input_shape=(8, 8)))
    labels = np.r_[np.ones(len(parts[a].y)), np.zeros(len(parts[b].y))]
    return LabelQueries(target, x, y, clip=(0.0, 1.0)), labels


ATTACKS = {"boundary": lambda: BoundaryDistanceAttack(budget=100, n_starts=3, tol=0.01, grad_steps=2,
                                                      n_grad=20, delta=0.1, seed=0),
           "augment": lambda: AugmentationAttack(budget=33, max_shift=1, noise_sigmas=(0.1, 0.2, 0.3),
                                                 n_noise=8, seed=0)}


def test_overfit_target_leaks_through_labels_alone(digits_models):
    """Measured: boundary distance AUC 0.66, augmentation 0.63, LOSS (with probabilities) 0.67."""
    parts, fit, _ = digits_models
    for name, mk in ATTACKS.items():
        q, labels = _queries(parts, "m", "n", fit)
        atk = mk()
        s = atk.score(q)
        assert auc(s, labels) > (0.6 if name == "boundary" else 0.57), name
        assert atk.queries_.max() <= atk.budget and q.target.queries == atk.queries_.sum()


@pytest.mark.parametrize("control", ["nonmembers_vs_nonmembers", "untrained"])
def test_negative_controls_are_at_chance(digits_models, control):
    parts, fit, untrained = digits_models
    args = ("c1", "c2", fit) if control == "nonmembers_vs_nonmembers" else ("m", "c2", untrained)
    for name, mk in ATTACKS.items():
        q, labels = _queries(parts, *args)
        a = auc(mk().score(q), labels)
        assert abs(a - 0.5) < 0.07, (name, a)


@pytest.mark.parametrize("budget", [2, 5, 17, 60])
def test_budget_is_a_hard_cap(digits_models, budget):
    parts, fit, _ = digits_models
    q, _ = _queries(parts, "m", "n", fit)
    atk = BoundaryDistanceAttack(budget=budget, n_starts=3, tol=0.001, grad_steps=3, n_grad=20,
                                 delta=0.1, seed=0)
    s = atk.score(q)
    assert atk.queries_.max() <= budget and q.target.queries == atk.queries_.sum()
    assert np.all(np.isfinite(s)) and (s >= 0).all()
    with pytest.raises(InputError, match="at least 2 queries"):
        BoundaryDistanceAttack(budget=1, n_starts=3, tol=0.01, grad_steps=0, n_grad=20, delta=0.1,
                               seed=0).score(q)


def test_audit_reports_tpr_at_low_fpr_with_ci_queries_and_the_baseline(digits_models):
    parts, fit, _ = digits_models
    target = LabelOnlyOutputs(TorchClassifier(fit, n_classes=10, input_shape=(64,)))
    res = audit_classifier_membership(
        target, parts["m"].x, parts["m"].y, parts["c1"].x, parts["c1"].y, rmia_a=0.3, seed=0,
        eval_config=EvalConfig(n_boot=100), label_only=LabelOnlySettings(budget=50, image_shape=(8, 8)),
        log=lambda *_: None)
    assert [s["missing"] for s in res.skipped] == [["probabilities"]]  # LOSS needs confidences
    ev = res.get("boundary_distance")
    t1 = ev.metrics.tpr(0.01)
    assert t1.resolvable and t1.ci_low <= t1.tpr <= t1.ci_high and t1.ci_high > t1.ci_low
    assert ev.extra["queries"]["max_per_record"] <= 50
    assert ev.extra["queries"]["total"] == res.queries["boundary_distance"]["total"]
    assert ev.metrics.auc > 0.6
    # the model-free baseline sees only the records (members and non-members are the same
    # distribution): near chance
    assert abs(res.get("blind_baseline").metrics.auc - 0.5) < 0.12
    rec = ev.record()
    assert rec["queries"]["budget_per_record"] == 50 and rec["method"] == "boundary_distance"
