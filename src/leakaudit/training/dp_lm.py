"""DP-SGD training and fine-tuning of causal language models (Abadi et al., CCS 2016) through
Opacus, for the GPT-2-style models of :mod:`leakaudit.training.lm`.

The privacy unit is one training *block* (a row of ``n_ctx`` tokens, as
:func:`~leakaudit.training.lm.pack_blocks` / :func:`~leakaudit.training.lm.document_blocks` cut
the corpus; with ``packing="document"`` and documents shorter than the context that is one
document). Each step Poisson-samples blocks with rate q (Opacus' ``DPDataLoader``: q = 1 /
ceil(n / batch_size)), clips every block's gradient to L2 norm C, sums, adds Gaussian noise of
standard deviation σ·C and divides by the expected batch size; the optimizer (AdamW, as the
non-private trainer) only post-processes that noisy gradient. ε at δ is accounted with Opacus' RDP
(Mironov 2017) or PRV (Gopi et al. 2021) accountant from (σ, q, steps).

**Clipping.** ``clipping="ghost"`` (default) uses Opacus' fast gradient clipping with ghost norms
(Li et al. 2022, "Large language models can be strong differentially private learners";
``GradSampleModuleFastGradientClipping``): per-example gradient norms of Linear and Embedding
layers are computed from activations and backprops without materialising per-example
gradients, other layers (LayerNorm) get per-example gradients from Opacus' grad samplers, and a
second backward pass applies the clipping coefficients. ``clipping="flat"`` is the classic
per-example-gradient DP-SGD (``GradSampleModule``). Both compute the same clipped sum; a test
checks the ghost norms against per-example gradients computed one example at a time.

**What the GPT-2 architecture needs, and what this module does about it.**
(1) HF GPT-2 uses ``transformers.pytorch_utils.Conv1D`` (a transposed Linear), which Opacus has
no grad or norm sampler for: each Conv1D is converted to an equivalent ``nn.Linear`` for
training and back to Conv1D afterwards, so the saved model is an ordinary GPT-2 directory.
(2) GPT-2 ties the output projection to the token embedding; ghost clipping computes one norm per
layer and would overwrite (not add) the tied weight's two contributions, so the model is
*untied* for DP training (``lm_head`` gets its own copy of the embedding matrix) and saved with
``tie_word_embeddings=False``. (3) ``position_ids`` are passed with a batch dimension, so the
position embedding's per-example norms are per example.

**The record** (``record`` returned and written to ``leakaudit_training.json["dp"]``) holds ε,
δ, σ, C, the sampling rate Opacus' loader actually used, the number of steps and the accountant;
:func:`epsilon_from_record` recomputes ε from those fields with a fresh Opacus accountant, and
for an unmodified run equals the accountant Opacus kept during training (checked at the end of
training; a mismatch raises).

**Hooks for deliberately broken trainers** (:class:`DPHooks`). A DP auditor (lower bounds on ε
from canaries, ``attacks/dp_audit``) must be tested on trainers that *claim* more privacy than
they give. The hooks change what is done or what is reported without touching the rest:

- ``noise_multiplier_used(sigma) -> sigma'``: the σ the optimizer actually adds (e.g.
  ``lambda s: 0.0``: noise off), while σ, and the ε computed from it, are reported unchanged.
- ``sample_rate_reported(q) -> q'``: the sampling rate written in the record, and used to
  calibrate σ for a target ε (e.g. ``lambda q: q / 10``: the classic bug of accounting with the
  wrong q, which yields too little noise for the ε claimed).
- ``max_grad_norm_used(C) -> C'``: the clipping norm actually applied (C is still reported, and
  the noise is σ·C' as an implementation that clips at C' would add — e.g. ``lambda c: 1e6``:
  clipping effectively off, noise scaled to the huge bound, so keep σ small or the model
  diverges; use it with ``noise_multiplier_used`` for "no clipping, small noise").
- ``on_step(step, optimizer)``: called after every optimizer step (for logging or further
  sabotage).
- ``on_optimizer(optimizer, q)``: called once with Opacus' ``DPOptimizer`` and the true sampling
  rate before the first step;
  a white-box auditor attaches its gradient canaries there
  (:func:`leakaudit.training.dp_steps.tap_dp_optimizer`, ``clipping="flat"``).

The record lists the hooks that were set under ``"hooks"`` (so a run is never mistaken for an
honest one when its record is read by a person); an auditor under test should be given only the
claimed (ε, δ) and the model, never this field. Never set hooks for real training.

Determinism: for a given seed and thread count the run is reproducible; Opacus' secure RNG is off
(recorded as ``secure_mode: false``): fine for audits and experiments, not for a deployment whose
guarantee must hold against an adversary who can predict the noise.
"""

from __future__ import annotations

import copy
import json
import math
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from leakaudit.errors import InputError
from leakaudit.training.lm import LMSpec, document_blocks, pack_blocks

ACCOUNTANTS = ("rdp", "prv")
CLIPPING = ("ghost", "flat")


@dataclass(frozen=True)
class DPLMConfig:
    """DP-SGD parameters. Give exactly one of ``noise_multiplier`` (σ) and ``target_epsilon``
    (σ is then the smallest that reaches it, from Opacus' ``get_noise_multiplier``). ``delta``
    defaults to 1 / (10·n) for n training blocks, and must be < 1/n."""

    max_grad_norm: float = 1.0
    noise_multiplier: float | None = None
    target_epsilon: float | None = None
    delta: float | None = None
    accountant: str = "rdp"
    clipping: str = "ghost"


@dataclass(frozen=True)
class DPHooks:
    """Deliberate deviations from DP-SGD, for testing DP auditors; see the module docstring."""

    noise_multiplier_used: Callable[[float], float] | None = None
    sample_rate_reported: Callable[[float], float] | None = None
    max_grad_norm_used: Callable[[float], float] | None = None
    on_step: Callable[[int, Any], None] | None = None
    on_optimizer: Callable[[Any, float], None] | None = None

    def names(self) -> list[str]:
        return [k for k, v in (("noise_multiplier_used", self.noise_multiplier_used),
                               ("sample_rate_reported", self.sample_rate_reported),
                               ("max_grad_norm_used", self.max_grad_norm_used),
                               ("on_step", self.on_step), ("on_optimizer", self.on_optimizer)) if v is not None]


def _accountant(name: str):
    from opacus.accountants import PRVAccountant, RDPAccountant

    return {"rdp": RDPAccountant, "prv": PRVAccountant}[name]()


def epsilon_from_record(record: dict[str, Any]) -> float:
    """ε at ``record["delta"]`` recomputed with a fresh Opacus accountant of kind
    ``record["accountant"]`` from ``record["noise_multiplier"]``, ``record["sample_rate"]`` and
    ``record["steps"]`` (every step at the same σ and q, as this trainer runs)."""
    acc = _accountant(record["accountant"])
    if record["steps"] == 0:
        return 0.0
    acc.history = [(float(record["noise_multiplier"]), float(record["sample_rate"]), int(record["steps"]))]
    return float(acc.get_epsilon(delta=float(record["delta"])))


def noise_for_epsilon(target_epsilon: float, delta: float, sample_rate: float, steps: int,
                      accountant: str = "rdp") -> float:
    """The noise multiplier σ that spends ``target_epsilon`` at ``delta`` in ``steps`` steps of
    Poisson sampling at ``sample_rate`` (Opacus' ``get_noise_multiplier``, tolerance 0.01 in ε).
    The search's trial σ (the small ones) end at the last RDP order and Opacus warns of each; the
    ε of the σ returned is computed again by whoever trains with it, which warns if it matters."""
    from opacus.accountants.utils import get_noise_multiplier

    with quiet_orders():
        return float(get_noise_multiplier(target_epsilon=target_epsilon, target_delta=delta,
                                          sample_rate=sample_rate, steps=steps,
                                          accountant=accountant))


@contextmanager
def quiet_orders():
    """An extreme σ (an audit's σ̂, or a trial σ of the σ search) reaches the end of the RDP order
    grid: Opacus warns that ε is then looser, a known and harmless condition there."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Optimal order is the")
        yield


def conv1d_to_linear(module) -> int:
    """Replace every ``transformers`` ``Conv1D`` in ``module`` (in place) by the equivalent
    ``nn.Linear`` (weight transposed); returns how many were replaced."""
    import torch
    from transformers.pytorch_utils import Conv1D

    n = 0
    for name, child in list(module.named_children()):
        if isinstance(child, Conv1D):
            nx, nf = child.weight.shape
            lin = torch.nn.Linear(nx, nf, bias=child.bias is not None)
            with torch.no_grad():
                lin.weight.copy_(child.weight.t())
                if child.bias is not None:
                    lin.bias.copy_(child.bias)
            setattr(module, name, lin)
            n += 1
        else:
            n += conv1d_to_linear(child)
    return n


def linear_to_conv1d(module, names: set[str], prefix: str = "") -> None:
    """Undo :func:`conv1d_to_linear` for the Linear modules whose qualified names are in
    ``names``."""
    import torch
    from transformers.pytorch_utils import Conv1D

    for name, child in list(module.named_children()):
        q = f"{prefix}{name}"
        if q in names and isinstance(child, torch.nn.Linear):
            conv = Conv1D(child.out_features, child.in_features)
            with torch.no_grad():
                conv.weight.copy_(child.weight.t())
                conv.bias.copy_(child.bias)
            setattr(module, name, conv)
        else:
            linear_to_conv1d(child, names, q + ".")


def untie_output_embeddings(model) -> bool:
    """Give ``lm_head`` its own copy of the tied token-embedding matrix (in place) and set
    ``tie_word_embeddings=False``; returns whether the model was tied."""
    import torch

    out = model.get_output_embeddings()
    inp = model.get_input_embeddings()
    if out is None or out.weight is not inp.weight:
        model.config.tie_word_embeddings = False
        return False
    out.weight = torch.nn.Parameter(inp.weight.detach().clone())
    model.config.tie_word_embeddings = False
    if hasattr(model, "_tied_weights_keys"):
        model._tied_weights_keys = {} if isinstance(model._tied_weights_keys, dict) else []
    return True


def _new_model(tokenizer, spec: LMSpec):
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(
        vocab_size=len(tokenizer), n_positions=spec.n_ctx, n_embd=spec.n_embd,
        n_layer=spec.n_layer, n_head=spec.n_head, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        resid_pdrop=spec.dropout, embd_pdrop=spec.dropout, attn_pdrop=spec.dropout,
        tie_word_embeddings=False,
    )
    return GPT2LMHeadModel(cfg)


def _check(dp: DPLMConfig, spec: LMSpec) -> None:
    if (dp.noise_multiplier is None) == (dp.target_epsilon is None):
        raise InputError("DP-SGD: give exactly one of a noise multiplier and a target epsilon")
    if dp.noise_multiplier is not None and not dp.noise_multiplier > 0:
        raise InputError(f"DP-SGD: noise multiplier must be > 0, got {dp.noise_multiplier}")
    if dp.target_epsilon is not None and not dp.target_epsilon > 0:
        raise InputError(f"DP-SGD: target epsilon must be > 0, got {dp.target_epsilon}")
    if not dp.max_grad_norm > 0:
        raise InputError(f"DP-SGD: clipping norm must be > 0, got {dp.max_grad_norm}")
    if dp.accountant not in ACCOUNTANTS:
        raise InputError(f"DP-SGD: accountant must be one of {', '.join(ACCOUNTANTS)}, got {dp.accountant!r}")
    if dp.clipping not in CLIPPING:
        raise InputError(f"DP-SGD: clipping must be one of {', '.join(CLIPPING)}, got {dp.clipping!r}")
    if spec.packing not in ("stream", "document"):
        raise InputError(f"packing must be 'stream' or 'document', got {spec.packing!r}")
    if not spec.epochs > 0 or spec.batch_size < 1:
        raise InputError(f"DP-SGD needs epochs > 0 and batch_size >= 1, got {spec.epochs}, {spec.batch_size}")


def train_causal_lm_dp(
    texts: Sequence[str],
    tokenizer,
    spec: LMSpec,
    dp: DPLMConfig,
    *,
    seed: int,
    out_dir: str | Path | None = None,
    model=None,
    hooks: DPHooks | None = None,
    progress: Callable[[int, int, float], None] | None = None,
):
    """Train a new GPT-2-style model (``model=None``, sized by ``spec``) or fine-tune ``model``
    (a Hugging Face causal LM; it is copied, not modified) with DP-SGD on ``texts``.

    ``spec`` gives the context, packing, epochs, lr, expected batch size (q = 1/ceil(n/B)),
    warm-up and weight decay as for the non-private trainer. Returns ``(model, record)``; the
    model is in eval mode and, for GPT-2, has its Conv1D layers back and untied output
    embeddings. With ``out_dir`` the model, tokenizer and ``leakaudit_training.json`` (with the
    record under ``"dp"``) are saved there.
    """
    try:
        import torch
        from opacus import PrivacyEngine
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError("DP-SGD needs opacus: pip install 'opacus>=1.5'") from e

    _check(dp, spec)
    hooks = hooks or DPHooks()
    blocks = (pack_blocks if spec.packing == "stream" else document_blocks)(texts, tokenizer, spec.n_ctx)
    if not blocks:
        raise InputError("DP-SGD: nothing to train on: the corpus produced no token blocks")
    n = len(blocks)
    delta = dp.delta if dp.delta is not None else 1.0 / (10 * n)
    if not 0 < delta < 1.0 / n:
        raise InputError(f"DP-SGD: delta must be in (0, 1/n) = (0, {1.0 / n:.3g}) for n = {n} "
                         f"training blocks, got {delta}")

    torch.manual_seed(seed)
    if model is None:
        model = _new_model(tokenizer, spec)
    else:
        model = copy.deepcopy(model)
    conv_names = {name for name, m in model.named_modules() if type(m).__name__ == "Conv1D"}
    conv1d_to_linear(model)
    untied = untie_output_embeddings(model)
    T = max(len(b) for b in blocks)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    ids = torch.full((n, T), pad, dtype=torch.long)
    att = torch.zeros((n, T), dtype=torch.long)
    for i, b in enumerate(blocks):
        ids[i, : len(b)] = torch.tensor(b)
        att[i, : len(b)] = 1
    ds = torch.utils.data.TensorDataset(ids, att)
    gen = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(ds, batch_size=spec.batch_size, shuffle=True, generator=gen)
    steps_per_epoch = len(loader)
    q_true = 1.0 / steps_per_epoch
    q_reported = float(hooks.sample_rate_reported(q_true)) if hooks.sample_rate_reported else q_true
    total = max(1, int(round(spec.epochs * steps_per_epoch)))
    if dp.noise_multiplier is not None:
        sigma = float(dp.noise_multiplier)
    else:
        sigma = noise_for_epsilon(dp.target_epsilon, delta, q_reported, total, dp.accountant)
    sigma_used = float(hooks.noise_multiplier_used(sigma)) if hooks.noise_multiplier_used else sigma
    clip_used = float(hooks.max_grad_norm_used(dp.max_grad_norm)) if hooks.max_grad_norm_used else dp.max_grad_norm

    opt = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay,
                            betas=(0.9, 0.95))
    warmup = max(1, int(spec.warmup_frac * total))
    engine = PrivacyEngine(accountant=dp.accountant, secure_mode=False)
    model.train()
    crit = torch.nn.CrossEntropyLoss(ignore_index=-100)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        warnings.filterwarnings("ignore", message=".*[Ff]ull backward hook.*")
        warnings.filterwarnings("ignore", message=".*Using a non-full backward hook.*")
        warnings.filterwarnings("ignore", message=".*retain_graph.*")
        warnings.filterwarnings("ignore", category=UserWarning, module="opacus")
        made = engine.make_private(
            module=model, optimizer=opt, data_loader=loader, criterion=crit,
            noise_multiplier=sigma_used, max_grad_norm=clip_used, poisson_sampling=True,
            grad_sample_mode="ghost" if dp.clipping == "ghost" else "hooks",
            noise_generator=torch.Generator().manual_seed(seed + 1))
        if dp.clipping == "ghost":
            gm, dpopt, dpcrit, dploader = made
        else:
            gm, dpopt, dploader = made
            dpcrit = None
        q_opacus = float(dploader.sample_rate)
        if hooks.on_optimizer is not None:
            hooks.on_optimizer(dpopt, q_opacus)
        if abs(q_opacus - q_true) > 1e-12:  # pragma: no cover - Opacus changed its rule
            raise RuntimeError(f"Opacus sampled at q={q_opacus}, expected {q_true}")
        sched = torch.optim.lr_scheduler.LambdaLR(
            dpopt.original_optimizer,
            lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / total))))
        params = [p for p in gm.parameters() if p.requires_grad]
        losses: list[float] = []
        empty = 0
        step = 0
        t0 = time.perf_counter()
        while step < total:
            for xb, mb in dploader:
                if step >= total:
                    break
                dpopt.zero_grad(set_to_none=True)
                if len(xb) == 0:
                    # Poisson sampling drew no block: the step still happens (noise only), as the
                    # accountant assumes; skipping it would reveal that the batch was empty.
                    empty += 1
                    for p in params:
                        if dp.clipping == "ghost":
                            p.grad = torch.zeros_like(p)
                        else:
                            p.grad_sample = torch.zeros((0, *p.shape), dtype=p.dtype)
                    loss_val = float("nan")
                else:
                    B, L = xb.shape
                    pos = torch.arange(L).unsqueeze(0).repeat(B, 1)
                    logits = gm(input_ids=xb, attention_mask=mb, position_ids=pos).logits[:, :-1]
                    tgt = xb[:, 1:].masked_fill(mb[:, 1:] == 0, -100)
                    if dpcrit is not None:
                        loss = dpcrit(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1),
                                      shape=logits.shape)
                    else:
                        per_tok = torch.nn.functional.cross_entropy(
                            logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1),
                            ignore_index=-100, reduction="none").view(B, -1)
                        valid = (tgt != -100).sum(1).clamp(min=1)
                        loss = (per_tok.sum(1) / valid).mean()
                    loss.backward()
                    loss_val = float(loss.detach())
                dpopt.step()
                sched.step()
                step += 1
                losses.append(loss_val)
                if hooks.on_step is not None:
                    hooks.on_step(step, dpopt)
                if progress is not None:
                    progress(step, total, loss_val)
        wall = time.perf_counter() - t0

    record: dict[str, Any] = {
        "defense": "dp_sgd", "epsilon": None, "delta": delta, "noise_multiplier": sigma,
        "max_grad_norm": dp.max_grad_norm, "sample_rate": q_reported, "steps": total,
        "accountant": dp.accountant, "target_epsilon": dp.target_epsilon,
        "expected_batch_size": spec.batch_size, "n_blocks": n, "epochs": spec.epochs,
        "privacy_unit": f"one {spec.n_ctx}-token training block ({spec.packing} packing)",
        "clipping": dp.clipping, "optimizer": "AdamW", "lr": spec.lr, "seed": seed,
        "empty_batches": empty, "untied_embeddings": untied, "secure_mode": False,
        "hooks": hooks.names(), "wall_s": round(wall, 2),
        "final_loss": next((x for x in reversed(losses) if not math.isnan(x)), float("nan")),
    }
    record["epsilon"] = epsilon_from_record(record)
    if not hooks.names():
        kept = float(engine.accountant.get_epsilon(delta=delta))
        if not math.isclose(kept, record["epsilon"], rel_tol=1e-9, abs_tol=1e-12):  # pragma: no cover
            raise RuntimeError(f"DP-SGD: record ε {record['epsilon']} ≠ Opacus' running accountant {kept}")

    plain = gm._module
    plain.eval()
    linear_to_conv1d(plain, conv_names)
    for p in plain.parameters():  # drop Opacus' per-parameter attributes
        for attr in ("grad_sample", "_norm_sample", "summed_grad", "_forward_counter", "_current_grad_sample"):
            if hasattr(p, attr):
                try:
                    delattr(p, attr)
                except AttributeError:
                    pass
        p.grad = None
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        plain.save_pretrained(str(out_dir), safe_serialization=True)
        tokenizer.save_pretrained(str(out_dir))
        meta = {"spec": asdict(spec), "seed": seed, "n_blocks": n, "steps": total,
                "final_loss": record["final_loss"],
                "loss_every_10": [x for x in losses[::10]], "wall_s": record["wall_s"],
                "n_params": sum(p.numel() for p in plain.parameters()), "dp": record}
        (out_dir / "leakaudit_training.json").write_text(json.dumps(meta, indent=1, default=str))
    return plain, record
