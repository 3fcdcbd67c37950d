import numpy as np
import pytest

from leakaudit.errors import CapabilityError, InputError
from leakaudit.lab.digits import load_digits_data, split_digits
from leakaudit.targets.classifier import SklearnClassifier, TorchClassifier
from leakaudit.training.classifier import (MLPSpec, TrainConfig, load_classifier, save_classifier,
                                           train_classifier)


@pytest.fixture(scope="module")
def digits_parts():
    return split_digits(load_digits_data(), {"train": 0.5, "test": 0.5}, seed=0)


@pytest.fixture(scope="module")
def mlp(digits_parts):
    tr = digits_parts["train"]
    spec = MLPSpec(input_dim=64, n_classes=10, hidden=(32,))
    return train_classifier(tr.x, tr.y, spec, TrainConfig(epochs=30, seed=0)), spec


def test_split_is_disjoint_stratified_and_seeded(digits_parts):
    a, b = digits_parts["train"], digits_parts["test"]
    assert not set(a.ids) & set(b.ids)
    assert len(a) + len(b) == 1797
    assert np.all(np.bincount(a.y) >= 85)
    again = split_digits(load_digits_data(), {"train": 0.5, "test": 0.5}, seed=0)
    assert np.array_equal(again["train"].ids, a.ids)


def test_torch_classifier_probabilities_gradients_and_round_trip(mlp, digits_parts, tmp_path):
    module, spec = mlp
    te = digits_parts["test"]
    clf = TorchClassifier(module, n_classes=10, input_shape=(64,))
    p = clf.predict_proba(te.x)
    assert p.shape == (len(te), 10) and np.allclose(p.sum(1), 1)
    assert clf.queries == len(te)
    assert (p.argmax(1) == te.y).mean() > 0.9  # a real classifier, not a constant
    # gradient of log p(target|x) matches a finite difference
    x = te.x[:1].astype(np.float64)
    logp, g = clf.input_gradient(x, 3)
    e = np.zeros_like(x); e[0, 10] = 1e-3
    fd = (np.log(clf.predict_proba(x + e)[0, 3]) - np.log(clf.predict_proba(x - e)[0, 3])) / 2e-3
    assert g[0, 10] == pytest.approx(fd, rel=1e-2, abs=1e-4)
    assert logp[0] == pytest.approx(np.log(clf.predict_proba(x)[0, 3]), abs=1e-5)
    # save/load through safetensors gives the same function and fingerprint
    save_classifier(module, spec, tmp_path / "m")
    module2, spec2, _ = load_classifier(tmp_path / "m")
    clf2 = TorchClassifier(module2, n_classes=10, input_shape=(64,))
    assert spec2 == spec and np.allclose(clf2.predict_proba(te.x), p)
    assert clf2.fingerprint() == clf.fingerprint()
    with pytest.raises(InputError, match="expects"):
        clf.predict_proba(np.zeros((2, 8, 8)))


def test_same_seed_same_model(digits_parts):
    tr = digits_parts["train"]
    spec = MLPSpec(input_dim=64, n_classes=10, hidden=(16,))
    a = TorchClassifier(train_classifier(tr.x, tr.y, spec, TrainConfig(epochs=3, seed=7)),
                        n_classes=10, input_shape=(64,))
    b = TorchClassifier(train_classifier(tr.x, tr.y, spec, TrainConfig(epochs=3, seed=7)),
                        n_classes=10, input_shape=(64,))
    assert a.fingerprint() == b.fingerprint()


def test_sklearn_classifier_is_black_box(digits_parts):
    from sklearn.linear_model import LogisticRegression

    tr, te = digits_parts["train"], digits_parts["test"]
    clf = SklearnClassifier(LogisticRegression(max_iter=500).fit(tr.x, tr.y))
    assert clf.input_shape == (64,) and clf.n_classes == 10
    loss = clf.loss(te.x[:5], te.y[:5])
    assert loss.shape == (5,) and np.all(loss >= 0)
    with pytest.raises(CapabilityError, match="black-box"):
        clf.input_gradient(te.x[:1], 0)
    with pytest.raises(InputError, match="0..C-1"):
        SklearnClassifier(LogisticRegression(max_iter=50).fit(tr.x, tr.y + 1))
