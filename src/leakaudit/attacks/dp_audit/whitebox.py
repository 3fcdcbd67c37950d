"""White-box DP-SGD audits: gradient (Dirac) canaries put into the per-example gradients of every
step, scored on the released noisy updates.

Threat model (recorded with every result): the auditor adds m virtual examples whose per-example
gradient it chooses — canary i is ``norm_factor · C`` along one parameter coordinate (a Dirac
canary, Steinke, Nasr & Jagielski 2023 §5; Nasr et al. 2023), sign random — each in the dataset
with probability ½, and it sees the noisy sum of clipped gradients of every step (the model
updates). An honest pipeline clips a canary to norm C, so the canary shifts its coordinate by C
in the steps that sample it; noise σ·C hides the shift. A canary longer than C is what catches a
pipeline that skips clipping.

Three results from one training run:

- ``one_run`` (Steinke et al. 2023, white-box, *sound for the claim as stated*): each canary's
  score is the log-likelihood ratio of its coordinate's observations over all steps under the
  claimed (σ, q) (:func:`~leakaudit.metrics.dp_audit.whitebox_llr_scores`), of the raw
  observations and of the observations minus their running median (the other examples' slow
  drift along the coordinate), each tested at β/2; which steps sampled a canary is *not* used —
  that randomness is what the claim's subsampling amplification rests on. ε̂ is the one-run bound
  with its maximum certifiable value. Sound but loose: even an exact Gaussian mechanism at ε = 8
  yields ε̂ ≈ 2.5 with m = 1000 (Steinke et al.'s own observation); it is the witness that needs
  no trust in the claim's sampling or composition.
- ``step_gdp`` (after Nasr et al. 2023, "Tight Auditing of Differentially Private Machine
  Learning"): the per-step observations with the canary in the batch against those without give
  a lower bound μ̂ on one step's Gaussian-DP μ (assumes the Gaussian trade-off shape); σ̂ = 1/μ̂
  is composed over the claimed q and T by the same RDP accountant that made the claim. The auditor
  here knows which steps sampled each canary (the pipeline reports it) and trusts the claimed
  sampling and composition; the sampling itself is tested separately. Nasr et al.'s two runs
  (with the canary, without it) come from one run here: the coin flips and the per-step sampling
  of m canaries give both distributions. Tight: an honest pipeline's ε̂ is typically 0.6–0.9 ε.
- ``sampling``: p-value of the claimed Poisson sampling from how often each canary was sampled
  (shuffled fixed-size batches put every canary in exactly one batch per epoch).

A pipeline of your own serves the audit by taking a :class:`DiracCanaries` (the
:class:`leakaudit.training.dp_steps.StepHook` protocol): call ``start(n_params)``, add
``n_rows`` virtual examples to the data your sampler draws from, use ``rows(ids)`` as their
per-example gradients (before clipping), and call ``observe(step, noisy_sum, sampled)`` after
every step; return the claim ``{"epsilon", "delta", "noise_multiplier", "max_grad_norm",
"sample_rate", "steps"}`` (:func:`hook_trainer` adapts ``train(x, y, *, seed, whitebox)``). A
pipeline built on Opacus only hands its ``DPOptimizer`` to
:func:`leakaudit.training.dp_steps.tap_dp_optimizer` (the auditor then samples the canaries at
the claimed q, so the pipeline's own sampler is not tested).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from leakaudit.errors import InputError
from leakaudit.metrics.dp_audit import (
    NOT_A_PROOF,
    detrend_steps,
    one_run_audit,
    poisson_sampling_p_value,
    step_gdp_audit,
    whitebox_llr_scores,
)
from leakaudit.training.dp_steps import rdp_epsilon

THREAT_MODEL = {
    "one_run": "white-box: the auditor inserts gradient canaries into the per-example gradients and "
               "sees every step's noisy update, not which steps sampled a canary (Steinke et al. 2023)",
    "step_gdp": "white-box, known sampling: the auditor also knows which steps sampled each canary; "
                "one step audited as Gaussian DP (Nasr et al. 2023), composed with the claimed q and "
                "steps by the RDP accountant",
    "sampling": "the canaries' sampling pattern tested against the claimed Poisson rate q",
}
CLAIM_KEYS = ("epsilon", "delta", "noise_multiplier", "max_grad_norm", "sample_rate", "steps")


class DiracCanaries:
    """m gradient canaries for one run (the :class:`~leakaudit.training.dp_steps.StepHook`
    protocol): distinct random coordinates, random signs, inclusion coin flips, all from ``seed``.
    Collects each step's observations ``x[t, i] = sign_i · update_t[coord_i] / C`` and the
    sampled mask."""

    def __init__(self, m: int, *, clip: float, seed: int, norm_factor: float = 10.0):
        if m < 2 or not (clip > 0 and norm_factor >= 1):
            raise InputError(f"need m >= 2 canaries, clip > 0 and norm_factor >= 1; got {m}, {clip}, {norm_factor}")
        self.m, self.clip, self.seed, self.norm_factor = m, float(clip), seed, float(norm_factor)
        rng = np.random.default_rng(seed)
        self.included = rng.integers(0, 2, m).astype(np.int64)
        self.signs = rng.choice([-1.0, 1.0], m)
        self.in_ids = np.flatnonzero(self.included)
        self.n_rows = len(self.in_ids)
        self.coords: np.ndarray | None = None
        self._x: list[np.ndarray] = []
        self._sampled: list[np.ndarray] = []

    def start(self, n_params: int) -> None:
        if n_params < self.m:
            raise InputError(f"{self.m} Dirac canaries need at least as many parameters; the model has {n_params}")
        self.n_params = n_params
        self.coords = np.random.default_rng([self.seed, 1]).choice(n_params, self.m, replace=False)
        self._x, self._sampled = [], []

    def rows(self, ids) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        out = np.zeros((len(ids), self.n_params))
        c = self.in_ids[ids]
        out[np.arange(len(ids)), self.coords[c]] = self.signs[c] * self.norm_factor * self.clip
        return out

    def observe(self, step: int, update, sampled) -> None:
        if step != len(self._x):
            raise InputError(f"steps must be observed in order 0, 1, …; got step {step} after {len(self._x)}")
        u = np.asarray(update, dtype=np.float64).reshape(-1)
        if len(u) != self.n_params:
            raise InputError(f"update has {len(u)} entries, the model {self.n_params} parameters")
        mask = np.zeros(self.m, dtype=bool)
        mask[self.in_ids[np.asarray(sampled, dtype=bool)]] = True
        self._x.append(self.signs * u[self.coords] / self.clip)
        self._sampled.append(mask)

    @property
    def observations(self) -> np.ndarray:
        """(T, m) observations in units of C."""
        return np.array(self._x)

    @property
    def sampled(self) -> np.ndarray:
        """(T, m) booleans: canary i was in step t's batch."""
        return np.array(self._sampled)


@dataclass
class WhiteBoxResult:
    """The three white-box results of one run next to the claim; ``caught`` lists what refutes it."""

    claim: dict
    one_run: dict
    step_gdp: dict
    sampling: dict
    m: int
    steps: int
    threat_model: dict = field(default_factory=lambda: dict(THREAT_MODEL))

    @property
    def caught(self) -> list[str]:
        eps = self.claim["epsilon"]
        out = [k for k in ("one_run", "step_gdp") if getattr(self, k)["epsilon"] > eps]
        return out + (["sampling"] if self.sampling["refuted"] else [])

    def verdict(self) -> str:
        c = self.claim
        if not self.caught:
            return "consistent with the claim — " + NOT_A_PROOF
        why = {"one_run": "one-run ε̂", "step_gdp": "per-step ε̂", "sampling": "the sampling test"}
        return (f"claim refuted by {', '.join(why[k] for k in self.caught)}: the training is not "
                f"({c['epsilon']:.3g}, {c['delta']:g})-DP as claimed")

    def summary_lines(self) -> list[str]:
        """What a report prints: each result with its maximum certifiable value and threat model."""
        o, s, p = self.one_run, self.step_gdp, self.sampling
        return [(f"white-box audit, {self.m} gradient canaries, {self.steps} steps; claimed ε = "
                 f"{self.claim['epsilon']:.3f} at δ = {self.claim['delta']:g} (σ = {self.claim['noise_multiplier']:.3g}, "
                 f"q = {self.claim['sample_rate']:.3g})"),
                (f"  one-run   ε̂ = {o['epsilon']:.3f} (max certifiable {o['max_certifiable']:.3f}, confidence "
                 f"{o['confidence']:g}) — {o['threat_model']}"),
                (f"  per-step  ε̂ = {s['epsilon']:.3f} (max certifiable {s['max_certifiable']:.3f}, confidence "
                 f"{s['confidence']:g}; μ̂ = {s['mu']:.3f} per step vs claimed {s['claimed_mu']:.3f}) — {s['threat_model']}"),
                f"  sampling  p = {p['p_value']:.3g} (refuted below {p['beta']:g}) — {p['threat_model']}",
                f"  {self.verdict()}"]

    def to_dict(self) -> dict:
        return {"claim": self.claim, "one_run": self.one_run, "step_gdp": self.step_gdp,
                "sampling": self.sampling, "m": self.m, "steps": self.steps, "caught": self.caught,
                "refuted": bool(self.caught), "verdict": self.verdict(), "threat_model": self.threat_model,
                "note": NOT_A_PROOF}


#: Default level of the per-step audit: its bound sits close to an honest pipeline's true μ (it is
#: tight), so a false refutation happens at nearly this rate; 1% keeps it rare at little cost.
STEP_ALPHA = 0.01


def whitebox_audit(train_fn: Callable[[DiracCanaries], dict], *, m: int, seed: int, beta: float = 0.05,
                   alpha: float = STEP_ALPHA, norm_factor: float = 10.0) -> WhiteBoxResult:
    """Run ``train_fn(canaries) -> claim`` once with m Dirac canaries and audit its claim.

    ``claim`` needs :data:`CLAIM_KEYS` (``max_grad_norm`` is C; the canaries are built before
    training, so ``train_fn`` must carry C as ``train_fn.max_grad_norm``). ``beta``: one-run level;
    ``alpha``: step-GDP level; the sampling test runs at :data:`SAMPLING_LEVEL`."""
    clip = getattr(train_fn, "max_grad_norm", None)
    if clip is None:
        raise InputError("the white-box trainer must say its clipping norm C (train_fn.max_grad_norm)")
    canaries = DiracCanaries(m, clip=clip, seed=seed, norm_factor=norm_factor)
    claim = dict(train_fn(canaries))
    missing = [k for k in CLAIM_KEYS if k not in claim]
    if missing:
        raise InputError(f"the white-box trainer's claim lacks {', '.join(missing)}")
    if float(claim["max_grad_norm"]) != float(clip):
        raise InputError(f"the claim's C ({claim['max_grad_norm']}) differs from the trainer's ({clip})")
    x, sampled = canaries.observations, canaries.sampled
    if len(x) == 0:
        raise InputError("the white-box trainer observed no step")
    return WhiteBoxResult(claim={k: claim[k] for k in CLAIM_KEYS}, m=m, steps=len(x),
                          one_run=audit_one_run(x, canaries.included, claim, beta=beta, seed=seed),
                          step_gdp=audit_steps(x, sampled, claim, alpha=alpha, seed=seed),
                          sampling=audit_sampling(sampled, canaries.included, claim))


#: The one-run scores, fixed before any data: the LLR of the raw observations, and of the
#: observations minus their running median over DETREND_WINDOW steps; each is tested at beta / 2.
DETREND_WINDOW = 5


def hook_trainer(train_fn: Callable, x, y, *, seed: int, max_grad_norm: float) -> Callable[[DiracCanaries], dict]:
    """A user's white-box training entry point ``train(x, y, *, seed, whitebox) -> (model, claim)``
    (or just the claim) as :func:`whitebox_audit` calls it; C is given by the auditor (the
    canaries are built before training) and checked against the claim."""

    def run(hook: DiracCanaries) -> dict:
        out = train_fn(x, y, seed=seed, whitebox=hook)
        claim = out[1] if isinstance(out, tuple) and len(out) == 2 else out
        if not isinstance(claim, dict):
            raise InputError("a white-box training entry point must return (model, claim dict) or the claim dict")
        return claim

    run.max_grad_norm = float(max_grad_norm)
    return run


def audit_one_run(x: np.ndarray, included: np.ndarray, claim: dict, *, beta: float, seed: int) -> dict:
    """Steinke et al. one-run ε̂ from the observations (no sampling knowledge): the better of two
    scores, each tested at beta / 2 (Bonferroni), ``max_certifiable`` at the same level."""
    sigma, q = float(claim["noise_multiplier"]), float(claim["sample_rate"])
    inputs = {"llr_all_steps": x, f"llr_detrended_{DETREND_WINDOW}": detrend_steps(x, window=DETREND_WINDOW)}
    best = None
    for name, obs in inputs.items():
        scores = whitebox_llr_scores(obs, noise_multiplier=sigma, sample_rate=q)
        res = one_run_audit(scores, included, delta=float(claim["delta"]), beta=beta / len(inputs), seed=seed)
        if best is None or res.epsilon > best[1].epsilon:
            best = (name, res)
    return {**best[1].to_dict(), "beta": beta, "n_scores": len(inputs), "score": best[0],
            "threat_model": THREAT_MODEL["one_run"]}


def audit_steps(x: np.ndarray, sampled: np.ndarray, claim: dict, *, alpha: float, seed: int) -> dict:
    """Per-step GDP audit → σ̂ = 1/μ̂ → ε̂ by the claim's accountant (q, T, δ)."""
    if not sampled.any() or sampled.all():
        raise InputError("the step audit needs observations with and without a canary in the batch")
    res = step_gdp_audit(x[sampled], x[~sampled], alpha=alpha, seed=seed)
    q, steps, delta = float(claim["sample_rate"]), int(claim["steps"]), float(claim["delta"])

    def eps(mu: float) -> float:
        return 0.0 if mu <= 0 else rdp_epsilon(1.0 / mu, q, steps, delta)

    return {**res.to_dict(), "epsilon": eps(res.mu), "max_certifiable": eps(res.max_mu),
            "sigma_hat": math.inf if res.mu <= 0 else 1.0 / res.mu,
            "claimed_mu": 1.0 / float(claim["noise_multiplier"]), "threat_model": THREAT_MODEL["step_gdp"]}


#: Level of the sampling test. A shuffled or misreported sampler gives p-values of 1e-100 and
#: less, so a strict level costs no power and keeps honest runs' false alarms at 1 in 1000.
SAMPLING_LEVEL = 1e-3


def audit_sampling(sampled: np.ndarray, included: np.ndarray, claim: dict, *, beta: float = SAMPLING_LEVEL) -> dict:
    """Test the claimed Poisson rate on the in-canaries' sampling counts, at level ``beta``."""
    counts = sampled[:, included.astype(bool)].sum(axis=0)
    p = poisson_sampling_p_value(counts, steps=len(sampled), sample_rate=float(claim["sample_rate"]))
    return {"p_value": p, "refuted": bool(p < beta), "beta": beta, "mean_count": float(counts.mean()),
            "var_count": float(counts.var()), "threat_model": THREAT_MODEL["sampling"]}
