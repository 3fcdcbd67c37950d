"""DP-SGD training of classifiers (Abadi et al., CCS 2016) through Opacus, on top of
:mod:`leakaudit.training.classifier`.

Per-example gradients are clipped to L2 norm ``max_grad_norm`` (C) and Gaussian noise of standard
deviation ``noise_multiplier · C`` (σ·C) is added to their sum; batches are Poisson-sampled with
rate q = 1 / len(data loader) = 1 / ⌈n / batch_size⌉ (Opacus' rule, which differs from
batch_size / n unless batch_size divides n). The privacy spent is accounted with Rényi DP (Mironov 2017) and reported
as (ε, δ) for the given δ. The returned record holds everything needed to reproduce the claim:
ε, δ, σ, C, q, steps, epochs, accountant.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass

import numpy as np

from leakaudit.errors import InputError
from leakaudit.training.classifier import (
    MLPSpec,
    TrainConfig,
    build_mlp,
    check_training_data,
)


@dataclass(frozen=True)
class DPConfig:
    """DP-SGD parameters: noise multiplier σ, per-example clipping norm C, target δ."""

    noise_multiplier: float
    max_grad_norm: float
    delta: float
    accountant: str = "rdp"


def train_classifier_dp(x: np.ndarray, y: np.ndarray, spec: MLPSpec, config: TrainConfig,
                        dp: DPConfig, *, on_optimizer=None):
    """Train an MLP with DP-SGD (SGD optimizer with ``config.lr``; Poisson batches of expected
    size ``config.batch_size``). Returns ``(module, record)``; ``record["epsilon"]`` is the ε spent
    at ``dp.delta``. Deterministic for a given ``config.seed`` on CPU (the noise comes from a
    seeded generator; Opacus' secure RNG is off — fine for auditing, not for deployment).
    ``on_optimizer(optimizer, q)``, if given, is called once with Opacus' ``DPOptimizer`` and the
    sampling rate before the first step (a white-box auditor's tap:
    :func:`leakaudit.training.dp_steps.tap_dp_optimizer`)."""
    try:
        import torch
        from opacus import PrivacyEngine
        from opacus.validators import ModuleValidator
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError("DP-SGD needs opacus: pip install 'opacus>=1.5'") from e

    x, y = check_training_data(x, y, spec)
    if not (dp.noise_multiplier > 0 and dp.max_grad_norm > 0 and 0 < dp.delta < 1):
        raise InputError(f"DP-SGD needs noise_multiplier > 0, max_grad_norm > 0, 0 < delta < 1; got {dp}")
    torch.manual_seed(config.seed)
    model = build_mlp(spec)
    errors = ModuleValidator.validate(model, strict=False)
    if errors:
        raise InputError(f"model is not DP-SGD compatible: {errors[0]}")
    with warnings.catch_warnings():
        # Known, recorded conditions, not problems: secure_mode=False is stored in the record, and
        # the full-backward-hook note fires because inputs do not require gradients.
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        return _train(torch, PrivacyEngine, model, x, y, spec, config, dp, on_optimizer)


def _train(torch, PrivacyEngine, model, x, y, spec, config, dp, on_optimizer=None):
    gen = torch.Generator().manual_seed(config.seed)
    ds = torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
    loader = torch.utils.data.DataLoader(ds, batch_size=config.batch_size, shuffle=True, generator=gen)
    opt = torch.optim.SGD(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    engine = PrivacyEngine(accountant=dp.accountant, secure_mode=False)
    model.train()
    model, opt, loader = engine.make_private(module=model, optimizer=opt, data_loader=loader,
                                             noise_multiplier=dp.noise_multiplier,
                                             max_grad_norm=dp.max_grad_norm, poisson_sampling=True,
                                             noise_generator=torch.Generator().manual_seed(config.seed + 1))
    if on_optimizer is not None:
        on_optimizer(opt, float(loader.sample_rate))
    t0 = time.time()
    steps = 0
    last = float("nan")
    for _ in range(config.epochs):
        for xb, yb in loader:
            if len(xb) == 0:  # Poisson sampling can draw an empty batch
                continue
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
            steps += 1
            last = float(loss.detach())
    eps = float(engine.get_epsilon(dp.delta))
    plain = build_mlp(spec)
    plain.load_state_dict({k.removeprefix("_module."): v for k, v in model.state_dict().items()})
    # The sampling rate and step count the accountant actually used (Opacus: q = 1/len(loader)),
    # so ε recomputed from the record equals the ε reported.
    history = list(engine.accountant.history)
    rates = {float(h[1]) for h in history}
    if len(rates) != 1 or any(float(h[0]) != dp.noise_multiplier for h in history):
        raise RuntimeError(f"unexpected accountant history {history}")
    record = {"defense": "dp_sgd", **asdict(dp), "epsilon": eps, "sample_rate": rates.pop(),
              "nominal_sample_rate": config.batch_size / len(x),
              "accounted_steps": int(sum(int(h[2]) for h in history)), "steps": steps, "epochs": config.epochs, "lr": config.lr, "batch_size": config.batch_size,
              "seed": config.seed, "final_loss": last, "wall_s": round(time.time() - t0, 2),
              "secure_mode": False}
    return plain.eval(), record
