"""Classifier membership: shadow-model manager (keep matrix, reuse, resume) and the digits lab."""

import numpy as np
import pytest

from leakaudit.attacks.membership.classifier import ClassifierSignals, LiRAAttack, RMIAAttack
from leakaudit.attacks.membership.shadow import ShadowModels, SklearnTrainer, make_keep_matrix
from leakaudit.errors import InputError
from leakaudit.lab.membership import ClassifierLabConfig, classifier_membership_experiment


def _logreg(seed):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=10.0, max_iter=300, random_state=seed)


def _digits(n=300):
    from leakaudit.lab.digits import load_digits_data

    d = load_digits_data()
    return d.x[:n], d.y[:n]


def test_keep_matrix_is_balanced_and_respects_population():
    elig = np.ones(50, bool)
    elig[40:] = False
    k = make_keep_matrix(6, elig, seed=3)
    assert k.shape == (6, 50)
    assert (k.sum(1) == 20).all() and not k[:, 40:].any()  # each model: a random half of 40
    assert (k == make_keep_matrix(6, elig, seed=3)).all()


class _Interrupt(Exception):
    pass


def test_shadow_manager_resumes_and_reuses(tmp_path):
    x, y = _digits()
    elig = np.ones(len(y), bool)
    trainer = SklearnTrainer(_logreg, n_classes=10)
    calls = []

    class Flaky:
        def describe(self):
            return trainer.describe()

        def fit_predict(self, *a, **kw):
            if len(calls) == 2:
                raise _Interrupt()
            calls.append(1)
            return trainer.fit_predict(*a, **kw)

    with pytest.raises(_Interrupt):
        ShadowModels(tmp_path / "s", n_models=4, seed=0, trainer=Flaky()).train(x, y, eligible=elig)
    sm = ShadowModels(tmp_path / "s", n_models=4, seed=0, trainer=trainer)
    assert sm.done() == [0, 1]
    out = sm.train(x, y, eligible=elig)
    assert sm.trained_now_ == 2 and out.shape == (4, len(y), 10)
    fresh = ShadowModels(tmp_path / "fresh", n_models=4, seed=0, trainer=trainer).train(x, y, eligible=elig)
    np.testing.assert_allclose(out, fresh)  # resumed run == uninterrupted run
    again = ShadowModels(tmp_path / "s", n_models=4, seed=0, trainer=trainer)
    again.train(x, y, eligible=elig)
    assert again.trained_now_ == 0  # all reused
    assert (tmp_path / "s" / "keep.npy").is_file() and (tmp_path / "s" / "models" / "0" / "estimator.json").is_file()
    # IN records are fitted better than OUT records by the model that trained on them
    keep = np.load(tmp_path / "s" / "keep.npy")
    py = out[0][np.arange(len(y)), y]
    assert py[keep[0]].mean() > py[~keep[0]].mean()
    with pytest.raises(InputError, match="different setup"):
        ShadowModels(tmp_path / "s", n_models=4, seed=1, trainer=trainer).train(x, y, eligible=elig)


def test_lira_hand_checked_numbers():
    # one record, 2 IN models with phi = 2, 4 and 2 OUT models with phi = 0, 2 (p = sigmoid(phi))
    def p(phi):
        q = 1 / (1 + np.exp(-phi))
        return np.array([[1 - q, q]])
    ref = np.stack([p(2.0), p(4.0), p(0.0), p(2.0)])
    keep = np.array([[True], [True], [False], [False]])
    s = ClassifierSignals(y=np.array([1]), target_probs=p(3.0), ref_probs=ref, ref_keep=keep)
    # per-example sample sd (ddof=1): sqrt(2) on both sides.
    # online: log N(3; 3, √2) − log N(3; 1, √2) = 0 + (3 − 1)² / (2·2) = 1
    assert LiRAAttack(online=True, fixed_variance=False).score(s)[0] == pytest.approx(1.0, abs=1e-6)
    # offline: −log Pr[Z > 3], Z ~ N(1, √2) = −log(1 − Φ(√2)) = 2.5428...
    assert LiRAAttack(online=False, fixed_variance=False).score(s)[0] == pytest.approx(2.54275, abs=1e-4)


def test_rmia_hand_checked_number():
    # target p_y(x) = 0.8; one OUT reference p = 0.4 -> offline a = 0: p(x) = 0.5*(0.4 + 1) = 0.7;
    # LR(x) = 0.8/0.7. Population z: target 0.5, 0.9, 0.3 with reference 0.5 -> p(z) = 0.75,
    # LR(z) = 0.667, 1.2, 0.4: two of three below LR(x) -> count 2 (score in [2/4, 3/4)).
    t = np.array([[0.2, 0.8]])
    s = ClassifierSignals(y=np.array([1]), target_probs=t, ref_probs=np.array([[[0.6, 0.4]]]),
                          ref_keep=np.array([[False]]), pop_y=np.array([1, 1, 1]),
                          pop_target_probs=np.array([[0.5, 0.5], [0.1, 0.9], [0.7, 0.3]]),
                          pop_ref_probs=np.array([[[0.5, 0.5]] * 3]))
    sc = RMIAAttack(a=0.0, gamma=1.0, online=False).score(s)[0]
    assert 2 / 4 <= sc < 3 / 4


def test_small_digits_lab_leaks_and_negative_control(tmp_path):
    cfg = ClassifierLabConfig(n_shadow=6, n_targets=1, epochs=60, hidden=(128,))
    a = classifier_membership_experiment(tmp_path / "shadows", cfg, log=lambda m: None)
    assert a.info["train_accuracy"] > 0.98 and a.info["train_accuracy"] > a.info["test_accuracy"]
    lira = a.get("lira-online-per-example-var").metrics
    loss = a.get("clf_loss").metrics
    assert lira.auc > 0.55 and lira.tpr(0.01).tpr > loss.tpr(0.01).tpr
    # negative control: the same scores against the IN/OUT split of an unrelated model -> chance
    from leakaudit.metrics.roc import auc
    keep = np.load(tmp_path / "shadows" / "keep.npy")
    e = a.get("lira-online-per-example-var")
    from leakaudit.lab.digits import load_digits_data, split_digits
    data = load_digits_data()
    parts = split_digits(data, {"pool": 1 - cfg.population_fraction,
                                "population": cfg.population_fraction}, seed=cfg.seed)
    pool = np.isin(data.ids, parts["pool"].ids)
    assert (keep[0][pool] == e.labels.astype(bool)).all()
    unrelated = keep[3][pool].astype(int)
    assert abs(auc(e.scores, unrelated) - 0.5) < 0.06


@pytest.mark.slow
def test_digits_lab_16_shadows_lira_and_rmia_beat_loss(tmp_path):
    cfg = ClassifierLabConfig(n_shadow=16, n_targets=2)
    a = classifier_membership_experiment(tmp_path / "shadows", cfg, log=print)
    for e in a.evaluations:
        print(f"{e.label:32s} AUC {e.metrics.auc:.3f} " +
              " ".join(f"TPR@{r.fpr:g}={r.label()}" for r in e.metrics.tpr_at))
    loss = a.get("clf_loss").metrics
    lira = a.get("lira-online-fixed-var").metrics
    assert lira.tpr(0.001).resolvable
    assert lira.tpr(0.001).tpr >= 5 * loss.tpr(0.001).tpr
    assert lira.tpr(0.001).tpr > 0.01
    rmia2 = a.get("rmia-online-2ref").metrics
    assert rmia2.tpr(0.01).tpr > loss.tpr(0.01).tpr


def test_classifier_lab_report_and_reuse(tmp_path):
    """run_classifier_membership_lab writes report.jsonl/html with tagged membership records, and
    a second run in the same folder reuses every shadow model."""
    import json

    from leakaudit.attacks.membership.evaluate import EvalConfig
    from leakaudit.lab.membership import run_classifier_membership_lab

    cfg = ClassifierLabConfig(n_shadow=6, n_targets=1, epochs=15, hidden=(32,),
                              eval=EvalConfig(n_boot=30, top_n=3))
    logs = []
    run_classifier_membership_lab(tmp_path / "out", cfg, log=logs.append)
    recs = [json.loads(x) for x in (tmp_path / "out" / "report.jsonl").read_text().splitlines()]
    evs = [r for r in recs if r["entry_type"] == "membership"]
    assert len(evs) == 9 and all(r["tags"] == ["owasp:LLM02:2025", "atlas:AML.T0024.000"] for r in evs)
    assert sum(r["entry_type"] == "membership_record" for r in recs) == 9 * 3
    assert "TPR @" in (tmp_path / "out" / "report.html").read_text()
    run_classifier_membership_lab(tmp_path / "out", cfg, log=logs.append)
    assert any("(0 trained now, 6 reused)" in m for m in logs)
