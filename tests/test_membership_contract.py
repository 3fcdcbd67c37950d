"""Contract over every registered membership attack: metadata, finite (n,) scores, and known
members ranked above non-members on a fixture built to leak (one polarity: higher = member)."""

import numpy as np
import pytest

from leakaudit.attacks.membership import MEMBERSHIP_ATTACKS
from leakaudit.attacks.membership.classifier import ClassifierSignals
from leakaudit.metrics.roc import auc
from leakaudit.report.records import TAXONOMY
from leakaudit.signals.membership_lm import LMSignals
from leakaudit.targets.base import TokenScores

#: Hyper-parameters for each registered attack (a new attack must add its entry here).
PARAMS = {
    "loss": {}, "zlib": {}, "lowercase": {}, "reference": {"reference": "ref"},
    "min_k": {"k": 0.2}, "min_k_pp": {"k": 0.2},
    "clf_loss": {}, "shokri": {"max_iter": 50, "seed": 0},
    "lira": {"online": True, "fixed_variance": False},
    "rmia": {"a": 0.3, "gamma": 1.0, "online": False},
    "label_gap": {"budget": 1},
    "label_augment": {"budget": 9, "max_shift": 0, "noise_sigmas": (0.1, 0.2), "n_noise": 4, "seed": 0},
    "boundary_distance": {"budget": 60, "n_starts": 2, "tol": 0.01, "grad_steps": 1, "n_grad": 10,
                          "delta": 0.1, "seed": 0},
}
N = 60  # 30 members, 30 non-members


def _ts(rng, mean, n_tok=20):
    lp = (mean + 0.3 * rng.normal(size=n_tok)).astype(np.float32)
    return TokenScores(np.arange(n_tok), np.minimum(lp, -1e-3), np.zeros(n_tok, bool),
                       vocab_mean=np.full(n_tok, -3.0, np.float32),
                       vocab_var=np.full(n_tok, 1.0, np.float32))


def llm_fixture():
    """Members are predicted far better by the target than by the reference or in lowercase."""
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(N // 2, int), np.zeros(N // 2, int)]
    texts = [f"Document {i} with some words." for i in range(N)]
    target = [_ts(rng, -0.5 if m else -3.0) for m in y]
    lower = [_ts(rng, -3.2) for _ in y]
    ref = [_ts(rng, -3.0) for _ in y]
    sig = LMSignals(texts=texts, target=target, lowercase=lower, references={"ref": ref},
                    zlib=np.full(N, 30.0))
    return sig, y


def clf_fixture():
    """Reference models (random 50% IN/OUT) give IN records p_y ≈ 0.97 and OUT ≈ 0.6, with a
    per-record difficulty offset; the target follows the same law with its own membership."""
    rng = np.random.default_rng(1)
    m, C = 8, 3
    y = rng.integers(0, C, N)
    difficulty = rng.normal(0, 1, N)
    keep = rng.uniform(size=(m, N)).argsort(0) < m // 2
    member = np.r_[np.ones(N // 2, bool), np.zeros(N // 2, bool)]

    def probs(is_in, noise_seed, yy, diff):
        r = np.random.default_rng(noise_seed)
        logit = np.where(is_in, 4.0, 0.5) + diff + 0.3 * r.normal(size=len(yy))
        py = 1 / (1 + np.exp(-logit))
        p = np.tile(((1 - py) / (C - 1))[:, None], (1, C))
        p[np.arange(len(yy)), yy] = py
        return p

    ref = np.stack([probs(keep[j], 10 + j, y, difficulty) for j in range(m)])
    tgt = probs(member, 99, y, difficulty)
    z = 40
    pop_y = rng.integers(0, C, z)
    pdiff = rng.normal(0, 1, z)
    sig = ClassifierSignals(
        y=y, target_probs=tgt, ref_probs=ref, ref_keep=keep, pop_y=pop_y,
        pop_target_probs=probs(np.zeros(z, bool), 5, pop_y, pdiff),
        pop_ref_probs=np.stack([probs(np.zeros(z, bool), 50 + j, pop_y, pdiff) for j in range(m)]))
    return sig, member.astype(int)


def label_fixture():
    """A label-only target (class 1 iff x[0] > 0.5) and records on a 4-D grid: members 0.3-0.45
    from the boundary on their label's side; 27 of 30 non-members on the wrong side, the other 3
    within 0.1 of the boundary."""
    from leakaudit.attacks.membership.label_only import LabelQueries
    from leakaudit.targets.classifier import FunctionClassifier

    def rule(x):
        return np.eye(2)[(x[:, 0] > 0.5).astype(int)]

    rng = np.random.default_rng(2)
    side = rng.integers(0, 2, N)
    margin = np.r_[rng.uniform(0.3, 0.45, N // 2), -rng.uniform(0.05, 0.3, N // 2 - 3),
                   rng.uniform(0.02, 0.1, 3)]
    x = rng.uniform(0.2, 0.8, (N, 4))
    x[:, 0] = 0.5 + np.where(side == 1, margin, -margin)
    target = FunctionClassifier(rule, n_classes=2, input_shape=(4,))
    member = np.r_[np.ones(N // 2, int), np.zeros(N // 2, int)]
    return LabelQueries(target, x, side, clip=(0.0, 1.0)), member


def _fixture(kind):
    return {"llm": llm_fixture, "label_only": label_fixture}.get(kind, clf_fixture)()


@pytest.mark.parametrize("name", MEMBERSHIP_ATTACKS.names())
def test_attack_contract(name):
    cls = MEMBERSHIP_ATTACKS.get(name)
    for attr in ("threat_model", "doc_uri", "kind"):
        assert isinstance(getattr(cls, attr), str) and getattr(cls, attr), attr
    assert cls.doc_uri.startswith("https://")
    assert cls.tags == TAXONOMY["membership"]
    assert name in PARAMS, f"add hyper-parameters for {name!r} to PARAMS"
    atk = cls(**PARAMS[name])
    assert atk.params() == PARAMS[name]  # stored as given
    sig, y = _fixture(cls.kind)
    s = atk.score(sig)
    assert s.shape == (N,) and s.dtype == np.float64 and np.all(np.isfinite(s))
    if cls.kind == "label_only":  # every query counted, none past the per-record budget
        assert atk.queries_.max() <= atk.budget and sig.target.queries == atk.queries_.sum()
    assert auc(s, y) > 0.9, f"{name} does not rank known members above non-members"


def test_registry_is_kind_when_misspelled():
    with pytest.raises(KeyError, match="Did you mean: min_k"):
        MEMBERSHIP_ATTACKS.get("mink")


@pytest.mark.parametrize("name", MEMBERSHIP_ATTACKS.names())
def test_negative_control_no_leak(name):
    """A target that behaves the same on members and non-members: AUC near 0.5."""
    cls = MEMBERSHIP_ATTACKS.get(name)
    atk = cls(**PARAMS[name])
    sig, y = _fixture(cls.kind)
    rng = np.random.default_rng(7)
    perm = rng.permutation(N)  # shuffle which records are "members": no relation to the model
    assert 0.2 < auc(atk.score(sig), y[perm]) < 0.8
