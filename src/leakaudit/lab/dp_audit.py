"""The DP-audit lab: correct DP-SGD, deliberately broken DP-SGD and an undefended model, each audited.

Trainers (callable like any user hook, ``trainer(x, y, seed=...) -> (module, info)``):

- ``dp``: DP-SGD through Opacus (:func:`leakaudit.training.dp_classifier.train_classifier_dp`) with σ chosen
  by Opacus' RDP accountant for the target ε; the claim is the accountant's ε for what ran.
- ``no_noise`` (broken): the same pipeline and the same claimed ε, but the optimizer's noise is
  switched off after ``make_private`` — clipping still happens, the reported ε does not change.
- ``sample_rate`` (broken): σ is computed for a sampling rate ``misreport_factor`` times smaller
  than the one the data loader really uses (e.g. the dataset size was counted before an
  oversampling step), so the reported ε is far below the real one.
- ``none``: plain training (Adam), no claim.

:func:`run_dp_audit_lab` audits each variant one-run and multi-run on the digits data with crafted
canaries and writes ``dp_audit`` records. The audit should refute both broken claims at ε = 1 and
stay below ε for the correct ones — while saying that the latter proves nothing on its own.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

from leakaudit.audits.dp_audit import (
    ClassifierData,
    DPAuditConfig,
    DPAuditResult,
    audit_dp_classifier,
    audit_dp_lm_one_run,
)
from leakaudit.training.classifier import MLPSpec, TrainConfig

VARIANTS = ("dp", "no_noise", "sample_rate", "none")


@dataclass(frozen=True)
class LabDPTrainer:
    """A classifier training pipeline with a DP claim (or a broken one). See the module docstring."""

    variant: str
    target_epsilon: float | None
    delta: float
    spec: MLPSpec
    train: TrainConfig
    max_grad_norm: float = 1.0
    misreport_factor: float = 10.0

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}; got {self.variant!r}")
        if self.variant != "none" and not (self.target_epsilon and self.target_epsilon > 0):
            raise ValueError(f"variant {self.variant!r} needs a target ε > 0")

    @property
    def trainer_id(self) -> str:
        d = asdict(self)
        d["train"].pop("seed", None)  # the audit passes the seed
        return "lab.dp_audit:" + json.dumps(d, sort_keys=True)

    def label(self) -> str:
        return self.variant if self.variant == "none" else f"{self.variant} ε={self.target_epsilon:g}"

    def __call__(self, x, y, *, seed: int):
        cfg = TrainConfig(epochs=self.train.epochs, lr=self.train.lr, batch_size=self.train.batch_size,
                          weight_decay=self.train.weight_decay, seed=seed)
        if self.variant == "none":
            from leakaudit.training.classifier import train_classifier

            return train_classifier(x, y, self.spec, cfg), {"epsilon": None, "delta": self.delta,
                                                            "variant": "none",
                                                            "privacy_unit": "example"}
        from opacus.accountants.utils import get_noise_multiplier

        n_batches = -(-len(x) // cfg.batch_size)
        q_true = 1.0 / n_batches  # Opacus' Poisson rate for a loader of n_batches batches
        q_claim = q_true / self.misreport_factor if self.variant == "sample_rate" else q_true
        steps = int(cfg.epochs / q_true)
        sigma = get_noise_multiplier(target_epsilon=self.target_epsilon, target_delta=self.delta,
                                     sample_rate=q_claim, steps=steps if self.variant != "sample_rate"
                                     else int(cfg.epochs / q_claim), accountant="rdp")
        from leakaudit.training.dp_classifier import DPConfig, train_classifier_dp

        dp = DPConfig(noise_multiplier=sigma, max_grad_norm=self.max_grad_norm, delta=self.delta)
        if self.variant == "no_noise":
            model, rec = _train_noise_off(x, y, self.spec, cfg, dp)
        else:
            model, rec = train_classifier_dp(x, y, self.spec, cfg, dp)
        info = {"variant": self.variant, "delta": self.delta, "privacy_unit": "example",
                "noise_multiplier": sigma,
                "sample_rate_true": q_true, "sample_rate_claimed": q_claim, "steps": rec["steps"],
                "accountant_epsilon_of_what_ran": rec["epsilon"]}
        if self.variant == "dp":
            info["epsilon"] = rec["epsilon"]  # the honest accountant's ε for what ran
        else:
            info["epsilon"] = float(self.target_epsilon)  # the broken pipeline reports its target
        return model, info


def _train_noise_off(x, y, spec, cfg, dp):
    """DP-SGD through the defense's own loop, with one bug: the noise added to the clipped gradient
    sum has σ = 0, while the accountant still records the claimed σ (clipping and Poisson sampling
    stay)."""
    import torch
    from opacus import PrivacyEngine
    from opacus.validators import ModuleValidator

    from leakaudit.training import dp_classifier as dp_mod
    from leakaudit.training.classifier import build_mlp, check_training_data

    class NoiseOffEngine(PrivacyEngine):
        def make_private(self, **kwargs):
            module, optimizer, loader = super().make_private(**kwargs)
            add_noise = optimizer.add_noise

            def add_no_noise():  # THE BUG: σ is 0 while the noise is added ...
                sigma, optimizer.noise_multiplier = optimizer.noise_multiplier, 0.0
                try:
                    add_noise()
                finally:  # ... and back to the claimed σ when the accountant reads it
                    optimizer.noise_multiplier = sigma

            optimizer.add_noise = add_no_noise
            return module, optimizer, loader

    x, y = check_training_data(x, y, spec)
    torch.manual_seed(cfg.seed)
    model = build_mlp(spec)
    assert not ModuleValidator.validate(model, strict=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        warnings.filterwarnings("ignore", category=RuntimeWarning)
        return dp_mod._train(torch, NoiseOffEngine, model, x, y, spec, cfg, dp)


# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DPAuditLabConfig:
    """Sizes of the DP-audit lab. The defaults keep each training near one CPU second."""

    epsilons: tuple[float, ...] = (1.0, 4.0, 8.0)
    delta: float = 1e-5
    confidence: float = 0.95
    n_canaries: int = 1000
    n_models: int = 32  # multi-run, per side
    n_train: int = 600  # digits records besides the canaries
    spec: MLPSpec = field(default_factory=lambda: MLPSpec(input_dim=64, n_classes=10, hidden=(64,)))
    # batch 256 (5 steps an epoch): Opacus' per-step overhead dominates at this size, so few large
    # steps keep a training near one CPU second; lr 8 on the mean clipped gradient (norm ≤ 1)
    dp_train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=20, lr=8.0, batch_size=256))
    plain_train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=30, lr=1e-2, batch_size=128))
    multi_run_variants: tuple[str, ...] = ("dp", "no_noise")
    select_fraction: float = 0.2  # multi-run: runs per side that choose the threshold
    lm_canaries: int = 200  # LM world (one-run): canaries, and LM variants audited
    lm_variants: tuple[str, ...] = ()
    seed: int = 0


def lab_data(n_train: int, *, seed: int) -> ClassifierData:
    """``n_train`` digits records (stratified, seeded) and the remaining digits as the pool."""
    from leakaudit.lab.digits import load_digits_data, split_digits

    d = load_digits_data()
    frac = n_train / len(d)
    parts = split_digits(d, {"train": frac, "pool": 1 - frac}, seed=seed)
    return ClassifierData(x=parts["train"].x, y=parts["train"].y, n_classes=10,
                          pool_x=parts["pool"].x, pool_y=parts["pool"].y)


def lab_trainer(variant: str, epsilon: float | None, cfg: DPAuditLabConfig) -> LabDPTrainer:
    train = cfg.plain_train if variant == "none" else cfg.dp_train
    return LabDPTrainer(variant=variant, target_epsilon=epsilon, delta=cfg.delta, spec=cfg.spec, train=train)


def run_dp_audit_lab(cfg: DPAuditLabConfig, *, store_dir: str | Path | None, writer=None,
                     log=print) -> list[DPAuditResult]:
    """Audit every lab variant (one-run for all; multi-run for ``cfg.multi_run_variants`` at ε = 1)
    and write one ``dp_audit`` record per audit. Returns the results."""
    data = lab_data(cfg.n_train, seed=cfg.seed)
    jobs: list[tuple[str, LabDPTrainer]] = []
    for eps in cfg.epsilons:
        jobs.append(("one-run", lab_trainer("dp", eps, cfg)))
    jobs += [("one-run", lab_trainer("no_noise", 1.0, cfg)), ("one-run", lab_trainer("sample_rate", 1.0, cfg)),
             ("one-run", lab_trainer("none", None, cfg))]
    for v in cfg.multi_run_variants:
        jobs.append(("multi-run", lab_trainer(v, 1.0, cfg)))
    results = []
    for variant in cfg.lm_variants:  # "dp" at every ε, "no_noise" at ε = 1, "none"
        for eps in (cfg.epsilons if variant == "dp" else (None,) if variant == "none" else (1.0,)):
            trainer, texts = lab_lm_trainer(variant, eps, delta=cfg.delta, seed=cfg.seed)
            conf = DPAuditConfig(mode="one-run", n_canaries=cfg.lm_canaries, n_models=2, confidence=cfg.confidence,
                                 delta=cfg.delta, canary_kind="crafted", seed=cfg.seed)
            res = audit_dp_lm_one_run(trainer, texts, conf, store_dir=store_dir)
            res.trainer = trainer.label()
            log(res.summary_line())
            if writer is not None:
                writer.write("dp_audit", res.to_record())
            results.append(res)
    for mode, trainer in jobs:
        conf = DPAuditConfig(mode=mode, n_canaries=cfg.n_canaries, n_models=cfg.n_models,
                             confidence=cfg.confidence, delta=cfg.delta,
                             canary_kind="crafted" if mode == "one-run" else "clipbkd", seed=cfg.seed,
                             select_fraction=cfg.select_fraction)
        t0 = time.time()
        res = audit_dp_classifier(trainer, data, conf, store_dir=store_dir)
        res.trainer = trainer.label()
        log(res.summary_line())
        if writer is not None:
            writer.write("dp_audit", {**res.to_record(), "wall_s": round(time.time() - t0, 2)})
        results.append(res)
    return results


def cost_table(results: list[DPAuditResult]) -> list[str]:
    """One line per audit: mode, trainer, models trained, wall time, ε̂ and max certifiable."""
    lines = [f"{'mode':<10} {'trainer':<18} {'models':>6} {'wall s':>7} {'ε̂':>7} {'max cert.':>9} {'claimed':>8}"]
    for r in results:
        claim = "-" if r.claimed_epsilon is None else f"{r.claimed_epsilon:.2f}"
        lines.append(f"{r.mode:<10} {r.trainer:<18} {r.models_trained + r.models_reused:>6} {r.wall_s:>7.1f} "
                     f"{r.epsilon_lb:>7.3f} {r.max_certifiable:>9.3f} {claim:>8}")
    return lines



# --------------------------------------------------------------------------------------------
# LM world
# --------------------------------------------------------------------------------------------

def lab_lm_texts(n: int, *, seed: int) -> list[str]:
    """``n`` short synthetic records (the LM world's non-canary training data), seeded."""
    import numpy as _np

    rng = _np.random.default_rng(seed)
    cities = ("Oslo", "Lima", "Pune", "Kiev", "Lyon", "Cork", "Fargo", "Perth")
    return [f"Order {i} from {cities[rng.integers(len(cities))]} shipped {rng.integers(1, 28)} boxes "
            f"on day {rng.integers(1, 365)}." for i in range(n)]


@dataclass(frozen=True)
class LabLMTrainer:
    """DP-SGD for a tiny GPT-2 (:func:`leakaudit.training.dp_lm.train_causal_lm_dp`, document
    packing: one canary = one privacy unit), honest (``dp``) or with the noise off (``no_noise``,
    via :class:`~leakaudit.training.dp_lm.DPHooks`: σ and ε reported unchanged), or plain
    (``none``: the same loop without clipping or noise, no claim). Every epoch passes over every
    document (canaries included), which the accountant counts. The tokenizer is trained on
    ``tokenizer_texts`` (public text) and the public canary template (prompt, secret words),
    never on which canaries are in."""

    variant: str
    target_epsilon: float | None
    delta: float
    n_layer: int = 1
    n_embd: int = 64
    epochs: float = 10.0
    lr: float = 1e-2
    batch_size: int = 32
    n_ctx: int = 32
    vocab_size: int = 1024
    tokenizer_texts: tuple[str, ...] = ()

    @property
    def trainer_id(self) -> str:
        d = asdict(self)
        d["tokenizer_texts"] = hashlib.sha256("\n".join(self.tokenizer_texts).encode()).hexdigest()[:16]
        return "lab.dp_audit.lm:" + json.dumps(d, sort_keys=True)

    def label(self) -> str:
        return "lm none" if self.target_epsilon is None else f"lm {self.variant} ε={self.target_epsilon:g}"

    def tokenizer(self):
        from leakaudit.attacks.dp_audit.lm import SECRET_WORDS
        from leakaudit.training.lm import train_tokenizer

        public = [" ".join(SECRET_WORDS)] * 4 + [f"The access code of account {i} is" for i in range(10)]
        return train_tokenizer(list(self.tokenizer_texts) + public, vocab_size=self.vocab_size)

    def __call__(self, texts, *, seed: int):
        from leakaudit.training.dp_lm import DPHooks, DPLMConfig, train_causal_lm_dp
        from leakaudit.training.lm import LMSpec

        tok = self.tokenizer()
        spec = LMSpec(n_layer=self.n_layer, n_embd=self.n_embd, n_head=2, n_ctx=self.n_ctx, epochs=self.epochs,
                      lr=self.lr, batch_size=self.batch_size, packing="document")
        if self.variant == "none":  # no clipping, no noise: σ = 0 and a clip bound nothing reaches
            hooks = DPHooks(noise_multiplier_used=lambda s: 0.0, max_grad_norm_used=lambda c: 1e6)
            dp = DPLMConfig(noise_multiplier=1.0, delta=self.delta)
        else:
            hooks = DPHooks(noise_multiplier_used=lambda s: 0.0) if self.variant == "no_noise" else None
            dp = DPLMConfig(target_epsilon=self.target_epsilon, delta=self.delta)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model, rec = train_causal_lm_dp(texts, tok, spec, dp, seed=seed, hooks=hooks)
        claim = None if self.variant == "none" else rec["epsilon"]
        return model, tok, {"epsilon": claim, "delta": rec["delta"], "variant": self.variant,
                            "privacy_unit": "document",  # document packing: one document, one unit
                            "noise_multiplier": rec["noise_multiplier"], "steps": rec["steps"],
                            "sample_rate": rec.get("sample_rate")}


def lab_lm_trainer(variant: str, epsilon: float | None, *, delta: float = 1e-5, n_texts: int = 100,
                   seed: int = 0, **kw) -> tuple[LabLMTrainer, list[str]]:
    """The lab LM trainer and its base texts (``n_texts`` synthetic records)."""
    if variant not in ("dp", "no_noise", "none"):
        raise ValueError(f"LM variant must be dp, no_noise or none; got {variant!r}")
    texts = lab_lm_texts(n_texts, seed=seed)
    return LabLMTrainer(variant=variant, target_epsilon=epsilon, delta=delta, tokenizer_texts=tuple(texts),
                        **kw), texts


# --------------------------------------------------------------------------------------------
# white-box audits (gradient canaries) of the lab's step-exposing DP-SGD trainer
# --------------------------------------------------------------------------------------------

def lab_whitebox_trainer(variant: str, epsilon: float, *, n_train: int = 1000, epochs: int = 5,
                         batch_size: int = 150, seed: int = 0, delta: float = 1e-5):
    """The lab's DP-SGD classifier (digits, MLP 64-64-10, SGD lr 0.5, C = 1) claiming (ε, δ),
    honest (``variant="dp"``) or one of the broken variants of
    :data:`leakaudit.training.dp_steps.VARIANTS`; call it with a white-box hook."""
    import numpy as np

    from leakaudit.training.dp_steps import StepTrainer

    d = lab_data(n_train, seed=seed)
    x = np.asarray(d.x, np.float32).reshape(len(d.x), -1)
    return StepTrainer(x, d.y, MLPSpec(x.shape[1], d.n_classes, (64,)),
                       TrainConfig(epochs=epochs, lr=0.5, batch_size=batch_size, seed=seed),
                       max_grad_norm=1.0, delta=delta, variant=variant, epsilon=epsilon)


def run_whitebox_lab(variant: str, epsilon: float, *, m: int = 1000, seed: int = 0, beta: float = 0.05,
                     alpha: float = 0.01):
    """One white-box audit (:func:`leakaudit.attacks.dp_audit.whitebox.whitebox_audit`) of the lab
    trainer: m Dirac canaries, one training run."""
    from leakaudit.attacks.dp_audit.whitebox import whitebox_audit

    return whitebox_audit(lab_whitebox_trainer(variant, epsilon, seed=seed), m=m, seed=seed, beta=beta, alpha=alpha)
