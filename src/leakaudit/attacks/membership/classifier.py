"""Classifier membership attacks over precomputed outputs (:class:`ClassifierSignals`).

============  ===============================================================================
name          score (higher = member)
============  ===============================================================================
loss          log p_y(x) = −cross-entropy of the target (Yeom et al. 2018): a global threshold
shokri        P(member) from an attack model fitted on reference ("shadow") models' outputs with
              known IN/OUT (Shokri et al. 2017)
lira          per-example Gaussian likelihood ratio on the logit-scaled confidence φ (Carlini et
              al. 2022): online log N(φ; μ_in, σ_in) − log N(φ; μ_out, σ_out); offline the
              one-sided test against the OUT distribution, −log Pr[Z > φ], Z ~ N(μ_out, σ_out);
              σ per example or one fixed (pooled) σ
rmia          Pr_z[LR(x)/LR(z) ≥ γ] over population records z, LR(·) = p_θ(y|·)/p(y|·) with p
              the average over reference models; offline p(x) = ½((1+a)·P_OUT(x) + (1−a))
              (Zarifzadeh, Liu & Shokri 2024)
============  ===============================================================================

The reference/shadow outputs come from :class:`leakaudit.attacks.membership.shadow.ShadowModels`
or from the user (precomputed files). ``ref_keep[j, i]`` is True when record i was in the training
set of reference model j.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from leakaudit.attacks.membership.base import MembershipAttack, validated
from leakaudit.errors import CapabilityError, InputError
from leakaudit.signals.membership_clf import log_probs, logit_confidence, true_class_logprob


@dataclass
class ClassifierSignals:
    """Outputs of the target and of reference models on the audited records (and a population).

    Shapes: ``y`` (n,), ``target_probs`` (n, C), ``ref_probs`` (m, n, C), ``ref_keep`` (m, n)
    bool; population: ``pop_y`` (z,), ``pop_target_probs`` (z, C), ``pop_ref_probs`` (m, z, C) —
    records that no model (target or reference) trained on.
    """

    y: np.ndarray
    target_probs: np.ndarray
    ref_probs: np.ndarray | None = None
    ref_keep: np.ndarray | None = None
    pop_y: np.ndarray | None = None
    pop_target_probs: np.ndarray | None = None
    pop_ref_probs: np.ndarray | None = None

    def __post_init__(self):
        n = len(self.y)
        if self.target_probs.shape[0] != n:
            raise InputError(f"target_probs has {self.target_probs.shape[0]} rows, y has {n}")
        if self.ref_probs is not None:
            if self.ref_probs.shape[1] != n:
                raise InputError(f"ref_probs covers {self.ref_probs.shape[1]} records, y has {n}")
            if self.ref_keep is not None and self.ref_keep.shape != self.ref_probs.shape[:2]:
                raise InputError(f"ref_keep has shape {self.ref_keep.shape}; expected "
                                 f"{self.ref_probs.shape[:2]}")

    def __len__(self) -> int:
        return len(self.y)

    def require(self, *what: str, who: str) -> None:
        missing = [w for w in what if getattr(self, w) is None]
        if missing:
            raise CapabilityError(f"{who} needs {', '.join(missing)} (reference models / a "
                                  "population), which were not given")

    @property
    def n_refs(self) -> int:
        return 0 if self.ref_probs is None else int(self.ref_probs.shape[0])


class ClassifierAttack(MembershipAttack):
    kind = "classifier"
    #: every attack here reads the target's probability vectors
    #: (:class:`leakaudit.targets.classifier.ClassifierCapabilities`)
    capabilities = ("probabilities",)


@validated
class ClassifierLossAttack(ClassifierAttack):
    """Global-threshold LOSS attack: members have lower loss."""

    name = "clf_loss"
    threat_model = "black-box: class probabilities of the target"
    doc_uri = "https://arxiv.org/abs/1709.01604"

    def score(self, s: ClassifierSignals) -> np.ndarray:
        return true_class_logprob(s.target_probs, s.y)


def shokri_features(probs: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Attack-model features of one model's outputs: log p_y, φ, entropy, correctness and the
    three largest log-probabilities (sorted), for probabilities ``(n, C)`` and labels ``(n,)``."""
    lp = log_probs(probs)
    p = np.clip(probs, 0, 1)
    top = -np.sort(-lp, axis=1)[:, :3]
    ent = -(p * lp).sum(axis=1)
    correct = (probs.argmax(axis=1) == y).astype(np.float64)
    return np.column_stack([true_class_logprob(probs, y), np.clip(logit_confidence(probs, y), -50, 50),
                            ent, correct, np.clip(top, -50, 0)])


@validated
class ShokriAttack(ClassifierAttack):
    """Shadow models + a learned attack model (Shokri et al. 2017).

    A gradient-boosted tree classifier (``max_iter`` boosting rounds, ``seed``) learns IN vs OUT
    from every reference model's outputs on every record, then scores the target's outputs.
    """

    name = "shokri"
    threat_model = "black-box + shadow models trained by the attacker on same-distribution data"
    doc_uri = "https://arxiv.org/abs/1610.05820"
    needs = ("ref_probs", "ref_keep")

    def __init__(self, *, max_iter: int, seed: int):
        self.max_iter = max_iter
        self.seed = seed

    def score(self, s: ClassifierSignals) -> np.ndarray:
        from sklearn.ensemble import HistGradientBoostingClassifier

        s.require("ref_probs", "ref_keep", who="the shadow-model (Shokri) attack")
        feats = np.concatenate([shokri_features(s.ref_probs[j], s.y) for j in range(s.n_refs)])
        labels = s.ref_keep.reshape(-1).astype(np.int64)
        if labels.min() == labels.max():
            raise InputError("the shadow models need both IN and OUT records to train an attack model")
        clf = HistGradientBoostingClassifier(max_iter=self.max_iter, random_state=self.seed)
        clf.fit(feats, labels)
        return clf.predict_proba(shokri_features(s.target_probs, s.y))[:, 1]


def _masked_mean_std(x: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-column mean, std (ddof=1; 0 where fewer than 2) and count of ``x`` (m, n) over rows
    where ``mask`` is True."""
    cnt = mask.sum(axis=0)
    s1 = np.where(mask, x, 0).sum(axis=0)
    mean = s1 / np.maximum(cnt, 1)
    var = np.where(mask, (x - mean) ** 2, 0).sum(axis=0) / np.maximum(cnt - 1, 1)
    return mean, np.sqrt(var), cnt


@validated
class LiRAAttack(ClassifierAttack):
    """Likelihood-ratio attack (Carlini et al. 2022) on φ = logit-scaled confidence.

    ``online=True`` fits N(μ_in, σ_in) and N(μ_out, σ_out) per example from reference models that
    did / did not train on it and scores log N(φ; μ_in, σ_in) − log N(φ; μ_out, σ_out).
    ``online=False`` uses only OUT models and scores −log Pr[Z > φ], Z ~ N(μ_out, σ_out) (the
    paper's one-sided test, as a log so scores deep in the tail stay distinct).
    ``fixed_variance=True`` uses one σ per side pooled over all examples (better with few
    models, as the paper's Fig. 17 shows); otherwise σ per example, with examples that have fewer
    than 2 IN (or OUT) observations falling back to the pooled σ (sample σ, ddof = 1). A record
    with no IN (OUT) model, possible with few models, takes μ_in = μ_out + the mean IN−OUT shift
    (μ_out = μ_in − shift).
    """

    name = "lira"
    threat_model = "black-box + reference models trained by the attacker (IN/OUT) on same-distribution data"
    doc_uri = "https://arxiv.org/abs/2112.03570"
    needs = ("ref_probs", "ref_keep")

    def __init__(self, *, online: bool, fixed_variance: bool):
        self.online = online
        self.fixed_variance = fixed_variance

    @property
    def label(self) -> str:
        return (f"lira-{'online' if self.online else 'offline'}-"
                f"{'fixed' if self.fixed_variance else 'per-example'}-var")

    def score(self, s: ClassifierSignals) -> np.ndarray:
        s.require("ref_probs", "ref_keep", who="LiRA")
        phi_t = logit_confidence(s.target_probs, s.y)
        phi = logit_confidence(s.ref_probs, s.y)  # (m, n)
        keep = s.ref_keep.astype(bool)
        mu_out, sd_out, n_out = _masked_mean_std(phi, ~keep)
        mu_in, sd_in, n_in = _masked_mean_std(phi, keep)
        for side, n_side in (("OUT", n_out), ("IN", n_in)) if self.online else (("OUT", n_out),):
            if not (n_side >= 2).any():  # no variance can be estimated, pooled or per record
                raise InputError(
                    f"LiRA needs at least two {side} reference models for some record to estimate "
                    f"a variance; here every record has at most {int(n_side.max())} "
                    f"({phi.shape[0]} reference models). Train more reference models (the paper "
                    "uses 16-256), each on a random half of the records")
        both = (n_in > 0) & (n_out > 0)
        if (n_out == 0).any() or (self.online and (n_in == 0).any()):
            if not both.any():
                raise InputError("some records lack an OUT (or, online, an IN) reference model and "
                                 "no record has both to estimate the IN-OUT shift; train the "
                                 "reference models on random halves of the records")
            # a record with no OUT (IN) model: μ from the other side and the mean IN−OUT shift
            shift = float(np.mean((mu_in - mu_out)[both]))
            mu_out = np.where(n_out > 0, mu_out, mu_in - shift)
            mu_in = np.where(n_in > 0, mu_in, mu_out + shift)
        pooled_out = float(np.sqrt(np.average(sd_out ** 2, weights=np.maximum(n_out - 1, 0))))
        if self.fixed_variance:
            sd_out = np.full_like(sd_out, pooled_out)
        else:
            sd_out = np.where(n_out >= 2, sd_out, pooled_out)
        sd_out = np.maximum(sd_out, 1e-6)
        if not self.online:
            return -norm.logsf(phi_t, loc=mu_out, scale=sd_out)
        pooled_in = float(np.sqrt(np.average(sd_in ** 2, weights=np.maximum(n_in - 1, 0))))
        if self.fixed_variance:
            sd_in = np.full_like(sd_in, pooled_in)
        else:
            sd_in = np.where(n_in >= 2, sd_in, pooled_in)
        sd_in = np.maximum(sd_in, 1e-6)
        return norm.logpdf(phi_t, mu_in, sd_in) - norm.logpdf(phi_t, mu_out, sd_out)


@validated
class RMIAAttack(ClassifierAttack):
    """RMIA (Zarifzadeh, Liu & Shokri 2024): pairwise likelihood ratios against population records.

    LR(x) = p_θ(y|x) / p(y|x), p(y|x) averaged over reference models. Offline (``online=False``,
    OUT models only): p(y|x) = ½((1 + a)·P_OUT(x) + (1 − a)), the paper's linear approximation of
    P_IN from P_OUT with parameter ``a`` (a record that every reference trained on falls back to
    the online estimate). Online: the mean over all reference models.
    Score(x) = Pr_z[LR(x)/LR(z) ≥ γ] over the population records z. That fraction is a step
    function of LR(x); ties are broken by LR(x) itself (score = (count + sigmoid(log LR(x)))/(|Z|+1)),
    which keeps the ranking identical to the paper's wherever the fraction differs.
    """

    name = "rmia"
    threat_model = ("black-box + 1 or more reference models and population records the target "
                    "did not train on")
    doc_uri = "https://arxiv.org/abs/2312.03262"
    needs = ("ref_probs", "pop_y", "pop_target_probs", "pop_ref_probs")

    def __init__(self, *, a: float, gamma: float, online: bool):
        if not 0 <= a <= 1:
            raise ValueError(f"a must lie in [0, 1], got {a}")
        if gamma <= 0:
            raise ValueError(f"gamma must be positive, got {gamma}")
        self.a = a
        self.gamma = gamma
        self.online = online

    def _p_ref(self, ref_p: np.ndarray, keep: np.ndarray | None) -> np.ndarray:
        if self.online:
            return ref_p.mean(axis=0)
        out = ~keep if keep is not None else np.ones_like(ref_p, dtype=bool)
        n_out = out.sum(axis=0)
        p_out = np.where(out, ref_p, 0).sum(axis=0) / np.maximum(n_out, 1)
        p = 0.5 * ((1 + self.a) * p_out + (1 - self.a))
        # a record that every reference trained on: the online estimate (mean of the references)
        return np.where(n_out > 0, p, ref_p.mean(axis=0))

    def score(self, s: ClassifierSignals) -> np.ndarray:
        s.require("ref_probs", "pop_y", "pop_target_probs", "pop_ref_probs", who="RMIA")
        if not self.online and s.ref_keep is None:
            keep = None  # user-supplied references that never trained on the audited records
        else:
            keep = s.ref_keep.astype(bool) if s.ref_keep is not None else None
        tx = np.exp(true_class_logprob(s.target_probs, s.y))
        rx = np.exp(true_class_logprob(s.ref_probs, s.y))
        tz = np.exp(true_class_logprob(s.pop_target_probs, s.pop_y))
        rz = np.exp(true_class_logprob(s.pop_ref_probs, s.pop_y))
        log_lr_x = np.log(np.maximum(tx, 1e-300)) - np.log(np.maximum(self._p_ref(rx, keep), 1e-300))
        log_lr_z = np.log(np.maximum(tz, 1e-300)) - np.log(
            np.maximum(self._p_ref(rz, np.zeros_like(rz, dtype=bool)), 1e-300))
        # count of z with LR(x)/LR(z) >= gamma  <=>  log LR(z) <= log LR(x) - log gamma
        zs = np.sort(log_lr_z)
        count = np.searchsorted(zs, log_lr_x - np.log(self.gamma), side="right")
        tie = 1.0 / (1.0 + np.exp(-np.clip(log_lr_x, -500, 500)))
        return (count + tie) / (len(zs) + 1)


def tune_rmia_a(pseudo: ClassifierSignals, pseudo_member, *, grid, gamma: float) -> tuple[float, dict]:
    """Choose RMIA's offline ``a`` as the paper does: treat one reference model as the target
    (its IN/OUT split is known to the attacker) and keep the ``a`` of ``grid`` with the highest
    AUC. No membership label of the real target is used. Returns ``(a, {a: auc})``."""
    from leakaudit.metrics.roc import auc

    res = {float(a): auc(RMIAAttack(a=float(a), gamma=gamma, online=False).score(pseudo), pseudo_member)
           for a in grid}
    best = max(res, key=lambda a: (res[a], -a))
    return best, res
