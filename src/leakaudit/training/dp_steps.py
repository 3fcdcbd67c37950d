"""DP-SGD classifier training that exposes every step to a white-box auditor, with the broken
variants DP libraries have shipped as ready-made negative controls.

The step is Opacus' own (``GradSampleModule`` per-example gradients, ``DPOptimizer`` clipping and
Gaussian noise); this module owns the batch sampler so that extra *virtual examples* (an auditor's
gradient canaries) are sampled exactly like the data rows. The auditor is a :class:`StepHook`:

- ``start(n_params)`` once, with the number of trainable parameters (the flat order is
  ``model.parameters()``);
- ``n_rows``: how many virtual examples it adds to the dataset (ids ``0 .. n_rows − 1``);
- ``rows(ids)``: their per-example gradients, ``(len(ids), n_params)``, *before* clipping;
- ``observe(step, update, sampled)`` after every step: ``update`` is the released noisy sum of
  clipped per-example gradients, flat (``(n_params,)``, before the division by the batch size and
  the learning rate), ``sampled`` the boolean ``(n_rows,)`` mask of virtual examples in the batch.

A user's own pipeline can serve the same protocol (see
:mod:`leakaudit.attacks.dp_audit.whitebox`).

Variants (``variant=``), each *claiming* the honest (σ, C, q, T) and reporting the honest ε:

========================  =====================================================================
``dp``                    honest DP-SGD: Poisson sampling at q, clip to C, noise σ·C every step
``sigma_div10``           noise σ/10 · C (a unit or parameter mix-up)
``no_noise``              no noise at all
``no_clip``               per-example clipping skipped (noise σ·C still added)
``clip_after_noise``      noise added to the unclipped sum, then the noisy sum clipped
                          (torch.nn.utils.clip_grad_norm_ in place of per-example clipping)
``shuffle``               shuffled fixed-size batches, accounted as Poisson sampling at q
``noise_once_per_epoch``  noise only in the first step of each epoch
========================  =====================================================================
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import asdict
from typing import Protocol

import numpy as np

from leakaudit.errors import InputError
from leakaudit.training.classifier import (
    MLPSpec,
    TrainConfig,
    build_mlp,
    check_training_data,
)
from leakaudit.training.dp_classifier import DPConfig
from leakaudit.training.dp_lm import (
    epsilon_from_record,
    noise_for_epsilon,
    quiet_orders,
)

VARIANTS = ("dp", "sigma_div10", "no_noise", "no_clip", "clip_after_noise", "shuffle",
            "noise_once_per_epoch")


class StepHook(Protocol):
    """What a white-box auditor gives a training pipeline (see the module docstring)."""

    n_rows: int

    def start(self, n_params: int) -> None: ...

    def rows(self, ids: np.ndarray) -> np.ndarray: ...

    def observe(self, step: int, update: np.ndarray, sampled: np.ndarray) -> None: ...


def rdp_epsilon(noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> float:
    """ε of T Poisson-subsampled Gaussian steps by Opacus' RDP accountant (Mironov 2017); inf for
    σ = 0. The same accountant makes the claim and converts an audited σ̂ into ε̂."""
    if noise_multiplier <= 0:
        return math.inf
    with quiet_orders():
        return epsilon_from_record({"accountant": "rdp", "noise_multiplier": noise_multiplier,
                                    "sample_rate": sample_rate, "steps": steps, "delta": delta})


def schedule(n_rows: int, batch_size: int, epochs: int) -> tuple[float, int, int]:
    """(q, steps per epoch, T): q = batch_size / N (N counts virtual rows too), ⌈N / batch_size⌉
    steps per epoch, T = epochs · that.

    >>> schedule(1000, 100, 5)
    (0.1, 10, 50)
    """
    if not 0 < batch_size <= n_rows or epochs < 1:
        raise InputError(f"need 0 < batch_size <= rows ({n_rows}) and epochs >= 1; got {batch_size}, {epochs}")
    per_epoch = math.ceil(n_rows / batch_size)
    return batch_size / n_rows, per_epoch, epochs * per_epoch


def train_classifier_dp_steps(x: np.ndarray, y: np.ndarray, spec: MLPSpec, config: TrainConfig,
                              dp: DPConfig, *, variant: str = "dp", hook: StepHook | None = None):
    """Train an MLP with DP-SGD (plain SGD at ``config.lr`` on the batch mean), calling ``hook``
    around every step. Returns ``(module, record)``; ``record["epsilon"]`` is the *claimed* ε (the
    honest σ, q, T through the RDP accountant) whatever the variant, and ``record["variant"]``
    says what really ran. Deterministic for ``config.seed`` on CPU (secure RNG off)."""
    try:
        import torch
        from opacus import GradSampleModule
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError("DP-SGD needs opacus: pip install 'opacus>=1.5'") from e
    if variant not in VARIANTS:
        raise InputError(f"unknown DP-SGD variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    x, y = check_training_data(x, y, spec)
    if not (dp.noise_multiplier > 0 and dp.max_grad_norm > 0 and 0 < dp.delta < 1):
        raise InputError(f"DP-SGD needs noise_multiplier > 0, max_grad_norm > 0, 0 < delta < 1; got {dp}")
    n_virtual = int(hook.n_rows) if hook is not None else 0
    q, per_epoch, steps = schedule(len(x) + n_virtual, config.batch_size, config.epochs)
    torch.manual_seed(config.seed)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        model = GradSampleModule(build_mlp(spec), loss_reduction="sum")
        params = [p for p in model.parameters() if p.requires_grad]
        opt = _optimizer(torch, params, config, dp, variant)
        if hook is not None:
            hook.start(sum(p.numel() for p in params))
        t0 = time.time()
        last = _run_steps(torch, model, params, opt, x, y, config, q, per_epoch,
                          shuffle=variant == "shuffle", hook=hook, n_virtual=n_virtual)
    record = {"defense": "dp_sgd", **asdict(dp), "epsilon": rdp_epsilon(dp.noise_multiplier, q, steps, dp.delta),
              "sample_rate": q, "steps": steps, "epochs": config.epochs, "lr": config.lr,
              "batch_size": config.batch_size, "seed": config.seed, "variant": variant,
              "claimed_sampling": "poisson", "sampling": "shuffle" if variant == "shuffle" else "poisson",
              "actual_noise_multiplier": opt.noise_multiplier, "n_virtual_rows": n_virtual,
              "final_loss": last, "wall_s": round(time.time() - t0, 2), "secure_mode": False}
    return model._module.eval(), record


def _batches(rng: np.random.Generator, n_rows: int, q: float, per_epoch: int, *, shuffle: bool):
    """One epoch of batches (arrays of row ids): Poisson (each row in each batch with probability
    q, independently) or a shuffle cut into ``per_epoch`` batches of (nearly) equal size."""
    if shuffle:
        return np.array_split(rng.permutation(n_rows), per_epoch)
    return [np.flatnonzero(rng.random(n_rows) < q) for _ in range(per_epoch)]


def _run_steps(torch, model, params, opt, x, y, config, q, per_epoch, *, shuffle, hook, n_virtual):
    rng = np.random.default_rng(config.seed)
    xt, yt, n = torch.from_numpy(x), torch.from_numpy(y), len(x)
    last, step = float("nan"), 0
    for _ in range(config.epochs):
        for j, idx in enumerate(_batches(rng, n + n_virtual, q, per_epoch, shuffle=shuffle)):
            data, virtual = idx[idx < n], idx[idx >= n] - n
            opt.zero_grad(set_to_none=True)
            if len(data):
                loss = torch.nn.functional.cross_entropy(model(xt[data]), yt[data], reduction="sum")
                loss.backward()
                last = float(loss.detach()) / len(data)
            else:  # Poisson sampling can draw no data row: the step still runs (and is noised)
                for p in params:
                    p.grad_sample = torch.zeros((0, *p.shape), dtype=p.dtype)
            if len(virtual):
                _append_rows(torch, params, hook.rows(virtual))
            opt.noise_this_step = j == 0  # read by the noise_once_per_epoch variant only
            opt.step()
            if hook is not None:
                sampled = np.zeros(n_virtual, dtype=bool)
                sampled[virtual] = True
                update = torch.cat([p.grad.reshape(-1) for p in params]) * opt.expected_batch_size
                hook.observe(step, update.detach().numpy().astype(np.float64), sampled)
            step += 1
    return last


def _append_rows(torch, params, rows: np.ndarray) -> None:
    """Add virtual examples' per-example gradients (flat rows) to every parameter's grad_sample."""
    rows = torch.as_tensor(np.asarray(rows), dtype=params[0].dtype)
    at = 0
    for p in params:
        part = rows[:, at:at + p.numel()].reshape(len(rows), *p.shape)
        gs = p.grad_sample
        if isinstance(gs, list):  # accumulated micro-batches
            gs = torch.cat(gs) if gs else None
        p.grad_sample = part if gs is None else torch.cat([gs, part.to(gs.dtype)])
        at += p.numel()


def tap_dp_optimizer(optimizer, hook: StepHook, *, sample_rate: float, seed: int) -> None:
    """Serve ``hook`` from an existing Opacus ``DPOptimizer`` (any pipeline built on Opacus with
    per-example gradients, i.e. not ghost clipping): before each clipping every virtual example
    joins the batch independently with probability ``sample_rate`` (the claimed q; the auditor
    samples, so the pipeline's own sampler is *not* tested this way), and after the noise the
    released noisy sum is observed (``p.grad`` times the expected batch size when Opacus averages).
    The optimizer's own step hook (the accountant's) still runs first."""
    import torch

    if not hasattr(optimizer, "clip_and_accumulate") or "FastGradientClipping" in type(optimizer).__name__:
        raise InputError(f"the white-box tap needs an Opacus DPOptimizer with per-example gradients "
                         f"(flat clipping); got {type(optimizer).__name__}")
    params = list(optimizer.params)
    hook.start(sum(p.numel() for p in params))
    rng = np.random.default_rng(seed)
    state = {"step": 0, "sampled": np.zeros(hook.n_rows, dtype=bool)}
    clip, previous = optimizer.clip_and_accumulate, optimizer.step_hook

    def clip_with_canaries():
        state["sampled"] = rng.random(hook.n_rows) < sample_rate
        ids = np.flatnonzero(state["sampled"])
        if len(ids):
            _append_rows(torch, params, hook.rows(ids))
        clip()

    def observe(opt):
        if previous is not None:
            previous(opt)
        scale = opt.expected_batch_size * opt.accumulated_iterations if opt.loss_reduction == "mean" else 1
        update = torch.cat([p.grad.detach().reshape(-1) for p in params]) * scale
        hook.observe(state["step"], update.numpy().astype(np.float64), state["sampled"])
        state["step"] += 1

    optimizer.clip_and_accumulate = clip_with_canaries
    optimizer.step_hook = observe


def _optimizer(torch, params, config: TrainConfig, dp: DPConfig, variant: str):
    from opacus.optimizers import DPOptimizer

    sigma = {"sigma_div10": dp.noise_multiplier / 10, "no_noise": 0.0}.get(variant, dp.noise_multiplier)
    cls = _variant_classes(DPOptimizer).get(variant, DPOptimizer)
    opt = cls(torch.optim.SGD(params, lr=config.lr, weight_decay=config.weight_decay), noise_multiplier=sigma,
              max_grad_norm=dp.max_grad_norm, expected_batch_size=config.batch_size, loss_reduction="mean",
              generator=torch.Generator().manual_seed(config.seed + 1))
    opt.noise_this_step = True
    return opt


def _variant_classes(DPOptimizer) -> dict:
    """The broken optimizers: each overrides one stage of Opacus' clip → noise → scale step."""
    import torch

    class NoClip(DPOptimizer):
        def clip_and_accumulate(self):  # THE BUG: per-example gradients summed unclipped
            for p in self.params:
                g = self._get_flat_grad_sample(p).to(p.dtype).sum(0)
                p.summed_grad = g if p.summed_grad is None else p.summed_grad + g

    class ClipAfterNoise(NoClip):
        def add_noise(self):  # THE BUG: noise on the unclipped sum, then the sum clipped
            super().add_noise()
            total = torch.sqrt(sum((p.grad ** 2).sum() for p in self.params))
            bound = self.max_grad_norm * self.expected_batch_size
            for p in self.params:
                p.grad = p.grad * min(1.0, bound / (float(total) + 1e-6))

    class NoiseOncePerEpoch(DPOptimizer):
        def add_noise(self):  # THE BUG: noise only when the epoch starts
            if self.noise_this_step:
                return super().add_noise()
            for p in self.params:
                p.grad = p.summed_grad.view_as(p).clone()

    return {"no_clip": NoClip, "clip_after_noise": ClipAfterNoise, "noise_once_per_epoch": NoiseOncePerEpoch}


class StepTrainer:
    """``train(hook) -> record`` over fixed data: the shape :func:`leakaudit.attacks.dp_audit.
    whitebox.whitebox_audit` calls. ``epsilon`` given: σ is set so that the honest run's RDP ε
    equals it (on the schedule the hook's virtual rows make)."""

    def __init__(self, x, y, spec: MLPSpec, config: TrainConfig, *, max_grad_norm: float, delta: float,
                 variant: str = "dp", epsilon: float | None = None, noise_multiplier: float | None = None):
        if (epsilon is None) == (noise_multiplier is None):
            raise InputError("give exactly one of epsilon and noise_multiplier")
        self.x, self.y, self.spec, self.config = x, y, spec, config
        self.max_grad_norm, self.delta, self.variant = float(max_grad_norm), float(delta), variant
        self.epsilon, self.noise_multiplier = epsilon, noise_multiplier

    def __call__(self, hook: StepHook | None = None) -> dict:
        sigma = self.noise_multiplier
        if sigma is None:
            q, _, steps = schedule(len(self.x) + (hook.n_rows if hook else 0), self.config.batch_size,
                                   self.config.epochs)
            sigma = noise_for_epsilon(self.epsilon, self.delta, q, steps)
        dp = DPConfig(noise_multiplier=sigma, max_grad_norm=self.max_grad_norm, delta=self.delta)
        self.model_, record = train_classifier_dp_steps(self.x, self.y, self.spec, self.config, dp,
                                                        variant=self.variant, hook=hook)
        return record


class LMStepTrainer:
    """``train(hook) -> record`` for :func:`leakaudit.training.dp_lm.train_causal_lm_dp` with flat
    clipping: the hook is attached to its ``DPOptimizer`` by :func:`tap_dp_optimizer` (canaries
    sampled by the auditor at the pipeline's q). ``hooks`` may add deliberate deviations
    (:class:`~leakaudit.training.dp_lm.DPHooks`), e.g. ``noise_multiplier_used``."""

    def __init__(self, texts, tokenizer, spec, dp, *, seed: int, hooks=None):
        from leakaudit.training.dp_lm import DPHooks

        if dp.clipping != "flat":
            raise InputError("white-box LM audits need clipping='flat' (per-example gradients to add canaries to)")
        self.texts, self.tokenizer, self.spec, self.dp, self.seed = texts, tokenizer, spec, dp, seed
        self.hooks = hooks or DPHooks()
        self.max_grad_norm = float(dp.max_grad_norm)

    def __call__(self, hook: StepHook) -> dict:
        from dataclasses import replace

        from leakaudit.training.dp_lm import train_causal_lm_dp

        def attach(optimizer, q):
            tap_dp_optimizer(optimizer, hook, sample_rate=q, seed=self.seed + 7)

        self.model_, record = train_causal_lm_dp(self.texts, self.tokenizer, self.spec, self.dp, seed=self.seed,
                                                 hooks=replace(self.hooks, on_optimizer=attach))
        return record
