"""Model inversion: the stopping rule, a hand-computable optimum, black-box query accounting,
defended outputs, attribute inference, DP-SGD accounting, and the lab's thresholds (quick lab)."""

import doctest

import numpy as np
import pytest

from leakaudit.attacks.inversion import INVERSION_ATTACKS, MIFace, NESInversion, PlateauStop
from leakaudit.attacks.inversion import base as inv_base
from leakaudit.attacks.inversion.attribute import (ATTRIBUTE_ATTACKS, MarginalBaseline,
                                                   ModelInversionAttribute)
from leakaudit.errors import CapabilityError, InputError
from leakaudit.metrics import inversion as inv_metrics
from leakaudit.report.records import TAXONOMY
from leakaudit.targets.classifier import (Classifier, LabelOnlyOutputs, RoundedOutputs,
                                          TorchClassifier)


def test_doctests_pin_tv_and_metric_numbers():
    for mod in (inv_base, inv_metrics):
        res = doctest.testmod(mod)
        assert res.attempted > 0 and res.failed == 0


# ------------------------------------------------------------------ stopping rule (scripted costs)

def run_stop(costs, **kw):
    s = PlateauStop(1, **kw)
    for i, c in enumerate(costs):
        if not s.update(np.array([c]))[0]:
            return i, s.reason[0], s.best[0]
    return None, None, s.best[0]


def test_stops_when_cost_falls_below_gamma():
    assert run_stop([0.9, 0.5, 0.2, 0.05, 0.01], patience=10, gamma=0.1, min_delta=0.0) == (3, "gamma", 0.05)


def test_stops_after_patience_steps_without_improvement_and_not_while_improving():
    # improving every step: never stops (the inverted rule of the reference implementation would)
    assert run_stop([1.0 - 0.01 * i for i in range(50)], patience=3, gamma=0.0, min_delta=0.0)[0] is None
    # improves until index 2, then flat/worse: stops at index 5 (3 steps without improvement)
    assert run_stop([0.9, 0.8, 0.7, 0.75, 0.7, 0.71, 0.6], patience=3, gamma=0.0, min_delta=0.0) == (5, "plateau", 0.7)
    # improvements below min_delta do not count
    assert run_stop([0.9, 0.8999, 0.8998, 0.8997], patience=3, gamma=0.0, min_delta=1e-3)[:2] == (3, "plateau")


def test_the_reference_rule_transcribed_is_inverted():
    # ART MIFace: active = (cost <= threshold) + (cost >= max(window)); window starts at +inf
    def art_active(costs, threshold, window_length):
        window = [np.inf] * window_length
        states = []
        for i, c in enumerate(costs):
            states.append(bool(c <= threshold or c >= max(window)))
            window[i % window_length] = c
        return states

    flat = [0.5] * 10  # no progress at all
    assert art_active(flat, threshold=0.99, window_length=3) == [True] * 10  # never stops
    assert run_stop(flat, patience=3, gamma=0.0, min_delta=0.0)[:2] == (3, "plateau")
    done = [0.9, 0.001]  # reached the goal
    assert art_active(done, threshold=0.01, window_length=3)[-1] is True  # keeps going
    assert run_stop(done, patience=3, gamma=0.01, min_delta=0.0)[:2] == (1, "gamma")


def test_rows_stop_independently():
    s = PlateauStop(2, patience=2, gamma=0.1, min_delta=0.0)
    s.update(np.array([0.5, 0.05]))
    assert s.active.tolist() == [True, False] and s.reason == [None, "gamma"]
    s.update(np.array([0.6, 9.0]))  # a stopped row's value is ignored
    assert s.best[1] == 0.05
    s.update(np.array([0.6, 9.0]))
    assert s.active.tolist() == [False, False] and s.reason == ["plateau", "gamma"]


# ------------------------------------------------------------------ golden: 2-class logistic regression

W_DIFF = np.array([2.0, -1.0, 0.5, -3.0])  # w1 - w0


def logistic_target():
    import torch

    lin = torch.nn.Linear(4, 2)
    with torch.no_grad():
        lin.weight[:] = torch.tensor([[0.0] * 4, W_DIFF.tolist()])
        lin.bias[:] = torch.tensor([0.0, -1.0])
    return TorchClassifier(lin, n_classes=2, input_shape=(4,))


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def test_mi_face_first_step_and_optimum_match_hand_computation():
    t = logistic_target()
    x0 = np.full(4, 0.5)
    # one step: x1 = clip(x0 - lr * d(1-p)/dx) = x0 + lr * p (1-p) (w1 - w0), p = σ(w·x0 + b)
    p0 = sigmoid(W_DIFF @ x0 - 1.0)
    one = MIFace(lr=0.1, max_iter=2, patience=10, gamma=0.0, min_delta=0.0, tv_weight=0.0,
                 l2_weight=0.0, clip=(0.0, 1.0), image_shape=None)
    r = one.invert(t, [1], start=x0)
    assert r.x[0] == pytest.approx(np.clip(x0 + 0.1 * p0 * (1 - p0) * W_DIFF, 0, 1))  # best = 2nd iterate
    assert r.queries.tolist() == [2] and t.queries == 2
    # the optimum of 1 - p(1|x) over [0,1]^4 is the corner x_i = [w1_i > w0_i]
    full = MIFace(lr=1.0, max_iter=500, patience=50, gamma=0.0, min_delta=1e-9, tv_weight=0.0,
                  l2_weight=0.0, clip=(0.0, 1.0), image_shape=None)
    r = full.invert(t, [0, 1], start=x0)
    assert r.x[1] == pytest.approx([1, 0, 1, 0])
    assert r.x[0] == pytest.approx([0, 1, 0, 1])
    assert r.confidence[1] == pytest.approx(sigmoid(2.5 - 1.0), abs=1e-6)
    assert r.confidence[0] == pytest.approx(1 - sigmoid(-4.0 - 1.0), abs=1e-6)
    assert r.stop_reason == ["plateau", "plateau"]


def test_gamma_stops_early():
    t = logistic_target()
    a = MIFace(lr=1.0, max_iter=500, patience=50, gamma=0.5, min_delta=0.0, tv_weight=0.0,
               l2_weight=0.0, clip=(0.0, 1.0), image_shape=None)
    r = a.invert(t, [1], start=np.full(4, 0.5))
    assert r.stop_reason == ["gamma"] and r.cost[0] < 0.5 and r.steps[0] < 20


def test_nes_counts_every_query_respects_the_budget_and_is_seeded():
    t = logistic_target()
    kw = dict(budget=210, n_directions=5, sigma=0.05, lr=2.0, patience=1000, gamma=0.0, min_delta=0.0,
              tv_weight=0.0, l2_weight=0.0, clip=(0.0, 1.0), image_shape=None)
    a = NESInversion(**kw)
    r = a.invert(t, [0, 1], start=np.full(4, 0.5), seed=3)
    # 2·5 + 1 = 11 queries per step; a 20th step would pass 210, so each class spends 19·11 = 209
    assert t.queries == r.queries.sum() == 2 * 209
    assert r.steps.tolist() == [19, 19] and r.stop_reason == ["budget", "budget"]
    assert r.confidence[1] > 0.6 and r.confidence[0] > 0.99  # went toward the hand-computed corners
    again = NESInversion(**kw).invert(logistic_target(), [0, 1], start=np.full(4, 0.5), seed=3)
    assert np.array_equal(again.x, r.x)
    other = NESInversion(**kw).invert(logistic_target(), [0, 1], start=np.full(4, 0.5), seed=4)
    assert not np.array_equal(other.x, r.x)
    with pytest.raises(ValueError, match="budget"):
        NESInversion(**{**kw, "budget": 5}).invert(t, [1], start=np.full(4, 0.5), seed=0)


def test_label_only_signal_is_flat_far_from_the_boundary():
    t = LabelOnlyOutputs(logistic_target())
    a = NESInversion(budget=110, n_directions=5, sigma=0.01, lr=1.0, patience=1000, gamma=0.0,
                     min_delta=0.0, tv_weight=0.0, l2_weight=0.0, clip=(0.0, 1.0), image_shape=None)
    x0 = np.array([0.0, 1.0, 0.0, 1.0])  # deep inside class 0
    r = a.invert(t, [1], start=x0, seed=0)
    assert np.array_equal(r.x[0], x0) and r.confidence[0] == 0.0  # no gradient signal at all


def test_defended_outputs_and_capabilities():
    inner = logistic_target()
    x = np.array([[0.5, 0.5, 0.5, 0.5], [1, 0, 1, 0]], dtype=np.float32)
    p = inner.predict_proba(x)
    r = RoundedOutputs(inner, decimals=1)
    assert np.array_equal(r.predict_proba(x), np.round(p, 1)) and r.queries == 2
    lo = LabelOnlyOutputs(inner)
    assert p[:, 1] == pytest.approx(sigmoid(np.array([-0.75 - 1.0, 2.5 - 1.0])))
    assert lo.predict_proba(x).tolist() == [[1.0, 0.0], [0.0, 1.0]]
    assert lo.capabilities.probabilities is False and not r.capabilities.gradients
    with pytest.raises(CapabilityError, match="white-box"):
        MIFace(lr=1.0, max_iter=5, patience=5, gamma=0.0, min_delta=0.0, tv_weight=0.0, l2_weight=0.0,
               clip=(0.0, 1.0), image_shape=None).invert(r, [1], start=np.zeros(4))


def test_registry_metadata():
    for name in ("mi_face", "nes"):
        cls = INVERSION_ATTACKS.get(name)
        assert cls.threat_model and cls.doc_uri.startswith("https://") and cls.tags == TAXONOMY["inversion"]
    for name in ("fredrikson14", "marginal"):
        assert ATTRIBUTE_ATTACKS.get(name).doc_uri.startswith("https://")
    with pytest.raises(KeyError, match="Did you mean: mi_face"):
        INVERSION_ATTACKS.get("miface")


def test_tv_prior_needs_an_image_shape_for_flat_inputs():
    with pytest.raises(InputError, match="image_shape"):
        MIFace(lr=1.0, max_iter=5, patience=5, gamma=0.0, min_delta=0.0, tv_weight=0.1, l2_weight=0.0,
               clip=(0.0, 1.0), image_shape=None).invert(logistic_target(), [1], start=np.zeros(4))
    with pytest.raises(InputError, match="does not tile"):
        inv_base.image_shape_for((64,), (3, 5))


# ------------------------------------------------------------------ attribute inference (golden)

class ScriptedSmokerModel(Classifier):
    """p(y=1 | record) = 0.8 if the record's column 1 (smoker) is 1 else 0.2."""

    def __init__(self):
        super().__init__(n_classes=2, input_shape=(2,))

    def _predict_proba(self, x):
        p1 = np.where(x[:, 1] == 1, 0.8, 0.2)
        return np.stack([1 - p1, p1], axis=1)


def test_attribute_inference_map_estimate_matches_hand_computation():
    t = ScriptedSmokerModel()
    a = ModelInversionAttribute(column=1, values=[0, 1], prior=[0.7, 0.3], mode="label", tau=1.0)
    known = np.array([[5.0, np.nan], [6.0, np.nan]])
    pred, post = a.infer(t, known, np.array([1, 0]))
    # y=1: 0.7·0.2 = 0.14 vs 0.3·0.8 = 0.24 → smoker; y=0: 0.7·0.8 = 0.56 vs 0.3·0.2 = 0.06 → not
    assert pred.tolist() == [1.0, 0.0]
    assert post[0] == pytest.approx([0.14 / 0.38, 0.24 / 0.38])
    assert post[1] == pytest.approx([0.56 / 0.62, 0.06 / 0.62])
    assert t.queries == 4  # one query per candidate value per record
    # confidences mode: the observed output [0.2, 0.8] is reproduced only by smoker = 1
    pred, _ = ModelInversionAttribute(column=1, values=[0, 1], prior=[0.7, 0.3], mode="confidences",
                                      tau=0.05).infer(t, known, np.array([[0.2, 0.8], [0.8, 0.2]]))
    assert pred.tolist() == [1.0, 0.0]
    base, _ = MarginalBaseline(values=[0, 1], prior=[0.7, 0.3]).infer(2)
    assert base.tolist() == [0.0, 0.0]
    with pytest.raises(InputError, match="probability vector"):
        ModelInversionAttribute(column=1, values=[0, 1], prior=[0.7, 0.7], mode="label", tau=1.0).infer(
            t, known, np.array([1, 0]))


# ------------------------------------------------------------------ DP-SGD accounting

def test_dp_training_records_epsilon_from_the_rdp_accountant():
    from opacus.accountants.analysis.rdp import compute_rdp, get_privacy_spent

    from leakaudit.training.dp_classifier import DPConfig, train_classifier_dp
    from leakaudit.training.classifier import MLPSpec, TrainConfig

    rng = np.random.default_rng(0)
    x = rng.random((200, 4)).astype(np.float32)
    y = (x[:, 0] > 0.5).astype(np.int64)
    module, rec = train_classifier_dp(x, y, MLPSpec(4, 2, ()), TrainConfig(epochs=3, lr=0.5, batch_size=50, seed=0),
                                      DPConfig(noise_multiplier=1.5, max_grad_norm=1.0, delta=1e-5))
    orders = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64))
    eps, _ = get_privacy_spent(orders=orders, rdp=compute_rdp(q=0.25, noise_multiplier=1.5,
                                                              steps=rec["steps"], orders=orders), delta=1e-5)
    assert rec["epsilon"] == pytest.approx(eps, rel=1e-6)
    assert rec["noise_multiplier"] == 1.5 and rec["max_grad_norm"] == 1.0 and rec["delta"] == 1e-5
    assert 6 <= rec["steps"] <= 18  # Poisson batches: about 4 per epoch
    # golden (opacus accountants_test): σ = 1.5, q = 0.04, 2250 steps, δ = 1e-5 → ε = 7.32911117143
    eps_g, _ = get_privacy_spent(orders=orders, rdp=compute_rdp(q=0.04, noise_multiplier=1.5, steps=2250,
                                                                orders=orders), delta=1e-5)
    assert eps_g == pytest.approx(7.32911117143, rel=1e-6)
    # the DP model is a plain module of the same architecture
    clf = TorchClassifier(module, n_classes=2, input_shape=(4,))
    assert clf.predict_proba(x).shape == (200, 2)


# ------------------------------------------------------------------ the lab (quick) end to end

@pytest.fixture(scope="module")
def lab_records():
    from leakaudit.lab.inversion import InversionLabConfig, run_inversion_lab

    return run_inversion_lab(InversionLabConfig.quick(seed=0), log=lambda m: None)


def evals(records, **match):
    return [r for t, r in records if t == "inversion" and all(r.get(k) == v for k, v in match.items())]


def one(records, **match):
    found = evals(records, **match)
    assert len(found) == 1, match
    return found[0]


def test_lab_white_box_reconstructions_are_recognized_and_near_their_class_mean(lab_records):
    e = one(lab_records, attack="mi_face", target="softmax_regression", variant=None)
    assert e["top1"]["k"] >= 9 and e["nearest_own_mean"]["k"] >= 8 and e["n_reconstructions"] == 10
    assert e["mean_dist_own_mean"] < e["mean_dist_nearest_other_mean"]
    # from a blank image (no auxiliary data at all) the attack still recovers most classes
    z = one(lab_records, attack="mi_face", target="softmax_regression", variant="zero start")
    assert z["top1"]["k"] >= 8 and z["start"].startswith("all-zero")
    assert e["tags"] == TAXONOMY["inversion"] and e["start"].startswith("mean image of the public split")
    recs = [r for t, r in lab_records if t == "inversion_record" and r["attack"] == "mi_face"
            and r["target"] == "softmax_regression" and r["variant"] is None]
    assert sorted(r["class"] for r in recs) == list(range(10)) and len(recs[0]["reconstruction"]) == 64


def test_lab_black_box_reaches_70_percent_of_white_box_within_its_budget(lab_records):
    wb = one(lab_records, attack="mi_face", target="softmax_regression", variant=None)
    bb = one(lab_records, attack="nes", target="softmax_regression", defense="none", sweep=False)
    assert bb["budget_per_class"] == 504 and bb["queries_per_class_max"] <= 504
    assert bb["top1"]["value"] >= 0.7 * wb["top1"]["value"]


def test_lab_defended_outputs_reduce_black_box_success(lab_records):
    plain = one(lab_records, attack="nes", target="softmax_regression", defense="none", sweep=False)
    rounded = one(lab_records, attack="nes", target="softmax_regression", defense="rounded_1", sweep=False)
    label = one(lab_records, attack="nes", target="softmax_regression", defense="label_only", sweep=False)
    assert rounded["top1"]["value"] <= plain["top1"]["value"]
    assert rounded["mean_target_confidence"] < plain["mean_target_confidence"]
    assert label["top1"]["value"] <= plain["top1"]["value"] - 0.3
    dp = one(lab_records, attack="mi_face", target="dp_softmax_regression")
    assert dp["dp"]["epsilon"] > 0 and dp["dp"]["noise_multiplier"] == 4.0 and dp["dp"]["max_grad_norm"] == 1.0


def test_lab_negative_controls_stay_at_chance(lab_records):
    ctrl = one(lab_records, attack="mi_face", target="untrained")
    assert ctrl["control"] and ctrl["top1"]["k"] <= 3 and ctrl["nearest_own_mean"]["k"] <= 3
    start = one(lab_records, attack="start_only")
    assert start["top1"]["k"] <= 2


def test_lab_attribute_inference_beats_the_marginal_and_control_does_not(lab_records):
    ai = [r for t, r in lab_records if t == "attribute_inference"]
    main = [r for r in ai if r["target"] == "mlp" and r["mode"] == "label" and r["records"] == "members"][0]
    assert main["accuracy"]["ci_low"] > main["baseline"]["ci_high"]  # non-overlapping exact 95% CIs
    for r in ai:
        if r["control"]:  # the model never saw the attribute: the attack is the baseline
            assert r["accuracy"]["k"] == r["baseline"]["k"]


def test_nes_inverts_a_scikit_learn_estimator():
    from sklearn.linear_model import LogisticRegression

    from leakaudit.attacks.inversion.nes import NESParams
    from leakaudit.lab.digits import load_digits_data, split_digits
    from leakaudit.targets.classifier import SklearnClassifier

    parts = split_digits(load_digits_data(), {"target": 0.7, "public": 0.3}, seed=0)
    tr, pub = parts["target"], parts["public"]
    t = SklearnClassifier(LogisticRegression(max_iter=500).fit(tr.x, tr.y))
    p = {**vars(NESParams()), "budget": 252}
    r = NESInversion(**p, clip=(0.0, 1.0), image_shape=(8, 8)).invert(t, list(range(10)), start=pub.x.mean(0), seed=0)
    assert t.queries == r.queries.sum() and r.queries.max() <= 252
    assert (t.predict(r.x) == np.arange(10)).sum() >= 9 and r.confidence.mean() > 0.9
    means = np.stack([tr.x[tr.y == c].mean(0) for c in range(10)])
    assert inv_metrics.nearest_mean(r.x, means, np.arange(10))["nearest_is_own"].sum() >= 7
