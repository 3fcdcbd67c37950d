"""Fine-tune a pretrained causal LM a user has (a transformers folder, a cached hub model, or a
GGUF file dequantized by transformers) on their corpus: all weights (``full``), a LoRA adapter
(``lora``, Hu et al. 2022, through ``peft``) or the output projection only (``head``);
non-private, or with DP-SGD on the trained parameters.

**The privacy unit is chosen, not implied.** DP-SGD's guarantee is about one *unit* of the
training data being in or out (Abadi et al. 2016). Here the unit is

- ``document`` (default): one document of the corpus, all its token blocks together;
- ``record``: all documents sharing a record key (``record_keys``, e.g. one patient's notes): a
  person's data as a whole, the unit a data subject cares about;
- ``block``: one ``n_ctx``-token block (what a per-example DP-SGD over packed blocks gives;
  weaker whenever a document or a person spans several blocks).

Each step Poisson-samples *units* with rate q = min(1, B / n_units) (Opacus'
``UniformWithReplacementSampler``: every unit independently, so the batch size varies), takes
the gradient of each sampled unit's mean token loss over all its blocks, clips it to L2 norm C
over the trained parameters, sums, adds Gaussian noise N(0, σ²C²) per coordinate and divides by
the expected batch size q·n_units; AdamW post-processes that noisy gradient. Per-unit gradients
are computed one unit at a time (microbatches of one unit, as tf-privacy's microbatching):
exact for any architecture and any unit size, and cheap when few parameters train (LoRA, head).
ε at δ comes from Opacus' accountant (RDP by default, or PRV) over (σ, q, steps); the record
holds everything needed to recompute it (:func:`leakaudit.training.dp_lm.epsilon_from_record`),
and training checks that the recomputed ε equals the accountant it stepped once per step.

**What is written.** ``lora``: a PEFT adapter folder (``adapter_config.json`` whose
``base_model_name_or_path`` is the base spec, ``adapter_model.safetensors``) that
:func:`leakaudit.targets.load_target` loads on its base; ``full`` and ``head``: an ordinary
transformers folder (safetensors + tokenizer). Both get ``finetune.json``: the base, its
fingerprint, the method and schedule, the corpus, the privacy unit and (with DP) ε, δ, σ, C,
the sampling rate, steps and accountant. The base is thereby known, and the audits use it as the
default reference model (:func:`leakaudit.targets.peft.default_reference`).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from leakaudit.errors import InputError, LeakauditError

METHODS = ("full", "lora", "head")
PRIVACY_UNITS = ("document", "record", "block")
ACCOUNTANTS = ("rdp", "prv")


@dataclass(frozen=True)
class FinetuneConfig:
    """What is trained and for how long. ``batch_size``: blocks per step (non-private) or the
    expected number of privacy units per step (DP-SGD)."""

    method: str = "lora"
    epochs: float = 3.0
    lr: float = 1e-3
    batch_size: int = 8
    n_ctx: int = 256
    lora_r: int = 8
    lora_alpha: int = 16
    #: module names LoRA adapts; None: peft's default for the architecture
    lora_target_modules: tuple[str, ...] | None = None
    warmup_frac: float = 0.05
    weight_decay: float = 0.0
    seed: int = 0

    def validate(self) -> None:
        if self.method not in METHODS:
            raise InputError(f"--method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if not self.epochs > 0:
            raise InputError(f"--epochs must be > 0, got {self.epochs}")
        if not self.lr > 0:
            raise InputError(f"--lr must be > 0, got {self.lr}")
        if self.batch_size < 1 or self.n_ctx < 2:
            raise InputError(f"--batch-size must be >= 1 and --max-tokens >= 2, got "
                             f"{self.batch_size}, {self.n_ctx}")
        if self.method == "lora" and (self.lora_r < 1 or self.lora_alpha <= 0):
            raise InputError(f"--lora-r must be >= 1 and --lora-alpha > 0, got {self.lora_r}, "
                             f"{self.lora_alpha}")


@dataclass(frozen=True)
class FinetuneDP:
    """DP-SGD settings: exactly one of ``target_epsilon`` and ``noise_multiplier``; ``delta``
    defaults to 1 / (10 · n_units) and must be below 1 / n_units."""

    privacy_unit: str = "document"
    target_epsilon: float | None = None
    noise_multiplier: float | None = None
    delta: float | None = None
    max_grad_norm: float = 1.0
    accountant: str = "rdp"

    def validate(self) -> None:
        if self.privacy_unit not in PRIVACY_UNITS:
            raise InputError(f"--privacy-unit must be one of {', '.join(PRIVACY_UNITS)}, got "
                             f"{self.privacy_unit!r}")
        if (self.target_epsilon is None) == (self.noise_multiplier is None):
            raise InputError("DP-SGD: give exactly one of --epsilon and --noise-multiplier")
        if self.target_epsilon is not None and not self.target_epsilon > 0:
            raise InputError(f"--epsilon must be > 0, got {self.target_epsilon}")
        if self.noise_multiplier is not None and not self.noise_multiplier > 0:
            raise InputError(f"--noise-multiplier must be > 0, got {self.noise_multiplier}")
        if self.delta is not None and not 0 < self.delta < 1:
            raise InputError(f"--delta must be in (0, 1), got {self.delta}")
        if not self.max_grad_norm > 0:
            raise InputError(f"--max-grad-norm must be > 0, got {self.max_grad_norm}")
        if self.accountant not in ACCOUNTANTS:
            raise InputError(f"--accountant must be one of {', '.join(ACCOUNTANTS)}, got "
                             f"{self.accountant!r}")


# ------------------------------------------------------------------------------ data

def privacy_units(texts: Sequence[str], tokenizer, n_ctx: int, unit: str,
                  keys: Sequence[str] | None = None) -> list[list[list[int]]]:
    """The training data as privacy units, each a list of token blocks
    (:func:`~leakaudit.training.lm.document_blocks` of its documents). ``keys[i]``: the record
    key of document i (``unit="record"`` only; documents with equal keys form one unit, in
    order of first appearance)."""
    from leakaudit.training.lm import document_blocks

    if unit not in PRIVACY_UNITS:
        raise InputError(f"privacy unit must be one of {', '.join(PRIVACY_UNITS)}, got {unit!r}")
    if unit == "record" and (keys is None or len(keys) != len(texts)):
        raise InputError("the record privacy unit needs a record key per document (--record-key)")
    per_doc = [document_blocks([t], tokenizer, n_ctx) for t in texts]
    if unit == "block":
        return [[b] for blocks in per_doc for b in blocks]
    if unit == "document":
        return [blocks for blocks in per_doc if blocks]
    groups: dict[str, list[list[int]]] = {}
    for k, blocks in zip(keys, per_doc):
        groups.setdefault(str(k), []).extend(blocks)
    return [g for g in groups.values() if g]


# ------------------------------------------------------------------------------ model

def dequantized(model):
    """``model`` (a transformers model, edited in place) without the marker of a GGUF load.

    transformers dequantizes a GGUF file into plain float tensors but keeps its quantizer on the
    model and a ``quantization_config`` on its config, and then refuses to save the model or to
    build a fresh one from that config. The weights are ordinary, so both markers go."""
    q = getattr(model, "hf_quantizer", None)
    if q is not None and getattr(getattr(q, "quantization_config", None), "quant_method", None) \
            is not None and "gguf" in str(q.quantization_config.quant_method).lower():
        model.hf_quantizer = None
        drop_gguf_config(model.config)
    return model


def drop_gguf_config(cfg):
    """A model config without the ``quantization_config`` a GGUF load leaves on it."""
    qc = getattr(cfg, "quantization_config", None)
    if qc is not None and "gguf" in str(getattr(qc, "quant_method", "")).lower():
        del cfg.quantization_config
    return cfg


def trainable(model, cfg: FinetuneConfig):
    """The model to train (a ``peft`` model for LoRA) with only the method's parameters
    requiring gradients; returns ``(model, params)``."""
    if cfg.method == "lora":
        try:
            from peft import LoraConfig, get_peft_model
        except ImportError as e:
            raise LeakauditError("--method lora needs the 'peft' package: "
                                 "pip install 'leakaudit[finetune]'") from e
        conv1d = any(type(m).__name__ == "Conv1D" for m in model.modules())  # GPT-2's layout
        lcfg = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0,
                          target_modules=list(cfg.lora_target_modules)
                          if cfg.lora_target_modules else None,
                          fan_in_fan_out=conv1d, task_type="CAUSAL_LM")
        try:
            from leakaudit.targets.peft import peft_quiet

            with peft_quiet():
                model = get_peft_model(model, lcfg)
        except ValueError as e:
            raise InputError(f"LoRA: {str(e).splitlines()[0]} (name the modules with "
                             "--lora-target-modules)") from None
    elif cfg.method == "head":
        from leakaudit.training.dp_lm import untie_output_embeddings

        untie_output_embeddings(model)  # the head trains alone; the input embedding stays
        for p in model.parameters():
            p.requires_grad_(False)
        model.get_output_embeddings().weight.requires_grad_(True)
    else:
        for p in model.parameters():
            p.requires_grad_(True)
    return model, [p for p in model.parameters() if p.requires_grad]


def _loss(model, rows: Sequence[Sequence[int]], pad: int):
    """Mean next-token loss over every real token of ``rows`` (padding excluded)."""
    from leakaudit.training.lm import pad_batch

    inp, att, labels = pad_batch(rows, pad)
    dev = next(model.parameters()).device
    return model(input_ids=inp.to(dev), attention_mask=att.to(dev), labels=labels.to(dev)).loss


def _schedule(opt, total: int, warmup_frac: float):
    import torch

    warmup = max(1, int(warmup_frac * total))
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / total))))


# ------------------------------------------------------------------------------ training

Progress = Callable[[int, int, float], None]


def train_plain(model, params, units, pad: int, cfg: FinetuneConfig,
                progress: Progress | None = None) -> dict[str, Any]:
    """Non-private fine-tuning: shuffled minibatches of ``cfg.batch_size`` blocks, AdamW, cosine
    schedule, gradient norm clipped to 1 (the usual stabiliser, not a privacy mechanism)."""
    import torch

    from leakaudit.training.lm import optimizer_step

    blocks = [b for u in units for b in u]
    gen = torch.Generator().manual_seed(cfg.seed)
    total = max(1, round(cfg.epochs * math.ceil(len(blocks) / cfg.batch_size)))
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = _schedule(opt, total, cfg.warmup_frac)
    losses: list[float] = []
    step = 0
    model.train()
    while step < total:
        perm = torch.randperm(len(blocks), generator=gen).tolist()
        for s in range(0, len(perm), cfg.batch_size):
            if step >= total:
                break
            loss = _loss(model, [blocks[i] for i in perm[s: s + cfg.batch_size]], pad)
            losses.append(optimizer_step(loss, opt, sched, params))
            step += 1
            if progress is not None:
                progress(step, total, losses[-1])
    model.eval()
    return {"steps": total, "losses": losses}


def clipped_unit_sum(model, params, units, pad: int, max_grad_norm: float):
    """Σ over ``units`` of each unit's gradient (of its mean token loss over all its blocks,
    w.r.t. ``params``) scaled by min(1, C / ‖g‖₂); returns ``(sums, norms, losses)``, one
    tensor per parameter and one norm and loss per unit. The core of DP-SGD at a privacy unit:
    a unit's blocks and documents share one clipping budget."""
    import torch

    acc = [torch.zeros_like(p) for p in params]
    norms: list[float] = []
    losses: list[float] = []
    for unit in units:
        for p in params:
            p.grad = None
        loss = _loss(model, unit, pad)
        loss.backward()
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        norm = float(torch.sqrt(sum((g.float() ** 2).sum() for g in grads)))
        coef = min(1.0, max_grad_norm / (norm + 1e-6))
        for a, g in zip(acc, grads):
            a.add_(g, alpha=coef)
        norms.append(norm)
        losses.append(float(loss.detach()))
    for p in params:
        p.grad = None
    return acc, norms, losses


def train_dp(model, params, units, pad: int, cfg: FinetuneConfig, dp: FinetuneDP,
             progress: Progress | None = None, hooks=None) -> dict[str, Any]:
    """DP-SGD over privacy units (see the module docstring); returns the losses and the DP
    record (ε, δ, σ, C, q, steps, accountant, privacy unit).

    ``hooks`` (a :class:`leakaudit.training.dp_lm.DPHooks`; for testing DP auditors only, never
    for real training): ``noise_multiplier_used`` changes the σ the noise is drawn with while ε
    is still reported for the σ the accountant chose (a broken pipeline the audit must catch);
    the record then lists the hook under ``"hooks"``."""
    import torch
    from opacus.accountants import create_accountant
    from opacus.utils.uniform_sampler import UniformWithReplacementSampler

    from leakaudit.training.dp_lm import epsilon_from_record, noise_for_epsilon

    n = len(units)
    delta = dp.delta if dp.delta is not None else 1.0 / (10 * n)
    if not 0 < delta < 1.0 / n:
        raise InputError(f"DP-SGD: δ must be in (0, 1/n) = (0, {1.0 / n:.3g}) for n = {n} "
                         f"privacy units ({dp.privacy_unit}), got {delta}")
    q = min(1.0, cfg.batch_size / n)
    total = max(1, round(cfg.epochs / q))
    sigma = (float(dp.noise_multiplier) if dp.noise_multiplier is not None
             else noise_for_epsilon(dp.target_epsilon, delta, q, total, dp.accountant))
    if hooks is not None and set(hooks.names()) - {"noise_multiplier_used"}:
        raise ValueError(f"train_dp supports the noise_multiplier_used hook only; got {hooks.names()}")
    sigma_used = float(hooks.noise_multiplier_used(sigma)) \
        if hooks is not None and hooks.noise_multiplier_used else sigma
    C = float(dp.max_grad_norm)
    gen = torch.Generator().manual_seed(cfg.seed)
    noise_gen = torch.Generator().manual_seed(cfg.seed + 1)
    sampler = UniformWithReplacementSampler(num_samples=n, sample_rate=q, generator=gen,
                                            steps=total)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = _schedule(opt, total, cfg.warmup_frac)
    accountant = create_accountant(dp.accountant)
    losses: list[float] = []
    sizes: list[int] = []
    clipped = 0
    model.train()
    for step, idx in enumerate(sampler, start=1):
        acc, norms, step_loss = clipped_unit_sum(model, params, [units[i] for i in idx], pad, C)
        clipped += sum(x > C for x in norms)
        for a, p in zip(acc, params):
            noise = torch.normal(0.0, sigma_used * C, size=a.shape, generator=noise_gen)
            p.grad = (a + noise.to(a.device, a.dtype)) / (q * n)
        opt.step()
        sched.step()
        accountant.step(noise_multiplier=sigma, sample_rate=q)
        sizes.append(len(idx))
        losses.append(float(sum(step_loss) / len(step_loss)) if step_loss else float("nan"))
        if progress is not None:
            progress(step, total, losses[-1])
    model.eval()
    record = {"defense": "dp_sgd", "epsilon": None, "delta": delta, "privacy_unit": dp.privacy_unit,
              "n_units": n, "noise_multiplier": sigma, "max_grad_norm": C, "sample_rate": q,
              "steps": total, "accountant": dp.accountant, "target_epsilon": dp.target_epsilon,
              "expected_batch_size": q * n, "mean_batch_size": float(sum(sizes) / len(sizes)),
              "empty_batches": sum(s == 0 for s in sizes),
              "clipped_fraction": clipped / max(1, sum(sizes)), "secure_mode": False,
              "sampling": "Poisson (opacus UniformWithReplacementSampler)",
              "clipping": "per unit, over the trained parameters"}
    if hooks is not None and hooks.names():
        record["hooks"] = hooks.names()
        record["noise_multiplier_used"] = sigma_used
    record["epsilon"] = epsilon_from_record(record)
    kept = float(accountant.get_epsilon(delta=delta))
    if not math.isclose(kept, record["epsilon"], rel_tol=1e-9, abs_tol=1e-12):  # pragma: no cover
        raise RuntimeError(f"DP-SGD: record ε {record['epsilon']} ≠ Opacus' running accountant {kept}")
    return {"steps": total, "losses": losses, "dp": record}


# ------------------------------------------------------------------------------ the whole job

def base_location(spec: str | os.PathLike) -> str:
    """A base spec as the output records it: an absolute path for a local model (a folder, or a
    ``.gguf`` file), a hub name as given."""
    from leakaudit.targets import parse_spec
    from leakaudit.targets.base import looks_local

    _, rest = parse_spec(spec)
    if looks_local(rest):
        return str(Path(os.path.expanduser(rest)).resolve())
    return rest


def finetune(base_spec: str, texts: Sequence[str], out_dir: str | Path, cfg: FinetuneConfig, *,
             dp: FinetuneDP | None = None, record_keys: Sequence[str] | None = None,
             device: str = "cpu", allow_download: bool = False, base_target=None,
             progress: Progress | None = None) -> dict[str, Any]:
    """Fine-tune the model ``base_spec`` names on ``texts`` and write the result into ``out_dir``
    (see the module docstring); returns the ``finetune.json`` record (without corpus and
    command, which the caller adds)."""
    model, tok, rec = fit(base_spec, texts, cfg, dp=dp, record_keys=record_keys, device=device,
                          allow_download=allow_download, base_target=base_target,
                          progress=progress)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if cfg.method == "lora":
        from leakaudit.targets.peft import peft_quiet

        model.peft_config["default"].base_model_name_or_path = rec["base"]
        with peft_quiet():
            model.save_pretrained(str(out_dir), safe_serialization=True)
    else:
        model.save_pretrained(str(out_dir), safe_serialization=True)
        tok.save_pretrained(str(out_dir))
    return rec


def fit(base_spec: str, texts: Sequence[str], cfg: FinetuneConfig, *,
        dp: FinetuneDP | None = None, record_keys: Sequence[str] | None = None,
        device: str = "cpu", allow_download: bool = False, base_target=None,
        progress: Progress | None = None, hooks=None) -> tuple[Any, Any, dict[str, Any]]:
    """:func:`finetune` without writing anything: ``(model, tokenizer, record)``, the trained
    model in memory (a ``peft`` model for LoRA; the base target's model is trained in place, so
    pass a fresh ``base_target`` or none), its tokenizer and the record :func:`finetune` writes.
    ``hooks``: see :func:`train_dp` (DP-SGD only; for testing DP auditors)."""
    import torch

    from leakaudit.targets import load_target
    from leakaudit.targets.hf import HFCausalLM

    cfg.validate()
    if dp is not None:
        dp.validate()
    elif hooks is not None:
        raise ValueError("DP hooks need DP-SGD (dp)")
    if not texts:
        raise InputError("nothing to fine-tune on: the corpus has no documents")
    base = base_target or load_target(base_spec, name="base", device=device,
                                      allow_download=allow_download)
    if type(base) is not HFCausalLM:  # not an adapter (PeftCausalLM), endpoint or wrapper
        raise InputError("fine-tuning needs a transformers model (a model folder, a cached hub "
                         "name or a .gguf file), not an adapter, endpoint or wrapper",
                         path=str(base_spec))
    base_fp = base.fingerprint()
    tok = base.tokenizer
    n_ctx = min(cfg.n_ctx, base.max_length)
    unit = dp.privacy_unit if dp is not None else "document"
    units = privacy_units(texts, tok, n_ctx, unit, record_keys)
    if not units:
        raise InputError("nothing to fine-tune on: the corpus produced no token blocks")
    torch.manual_seed(cfg.seed)
    model, params = trainable(dequantized(base.model), cfg)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    t0 = time.perf_counter()
    res = (train_dp(model, params, units, pad, cfg, dp, progress, hooks) if dp is not None
           else train_plain(model, params, units, pad, cfg, progress))
    wall = time.perf_counter() - t0
    kind = "adapter" if cfg.method == "lora" else "model"
    losses = res["losses"]
    return model, tok, {
        "base": base_location(base_spec), "base_fingerprint": base_fp, "output": kind, "method": cfg.method,
        "config": {**asdict(cfg), "n_ctx": n_ctx}, "n_documents": len(texts),
        "n_blocks": sum(len(u) for u in units), "privacy_unit": unit if dp is not None else None,
        "n_units": len(units) if dp is not None else None,
        "dp": res.get("dp"), "steps": res["steps"],
        "trainable_parameters": int(sum(p.numel() for p in params)),
        "final_loss": next((x for x in reversed(losses) if not math.isnan(x)), float("nan")),
        "loss_every_10": losses[::10], "wall_s": round(wall, 2), "device": device,
    }


# ------------------------------------------------------------------------------ reporting

def privacy_statement(dp: dict[str, Any] | None) -> str:
    """ε as a report must state it: with δ and the privacy unit, from a DP-SGD record (this
    module's or :mod:`leakaudit.training.dp_lm`'s); ``"∞ (non-private)"`` without one.

    >>> privacy_statement({"epsilon": 7.98, "delta": 1e-5, "privacy_unit": "document"})
    'ε = 7.98 at δ = 1e-05 per document'
    >>> privacy_statement(None)
    '∞ (non-private)'
    """
    if not dp:
        return "∞ (non-private)"
    eps, delta = dp.get("epsilon"), dp.get("delta")
    unit = dp.get("privacy_unit") or "unstated unit (treat the guarantee as unknown)"
    e = "?" if eps is None else f"{float(eps):.3g}"
    d = "unstated δ" if delta is None else f"δ = {float(delta):.3g}"
    return f"ε = {e} at {d} per {unit}"
