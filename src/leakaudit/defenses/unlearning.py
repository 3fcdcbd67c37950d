"""Machine unlearning for causal LMs: approximate methods as small losses on one trainer, and
the two exact options.

Approximate (the model is updated in place of retraining; ``research/defenses_scale.md`` §3):

==========  ==========================================================================  =========
method      loss per step (forget batch F, retain batch R)                               paper
==========  ==========================================================================  =========
ga          −CE(F)  (gradient ascent on the forget set)                                   Jang 2023
gd          −CE(F) + λ·CE(R)  (gradient difference)                                       Liu 2022
npo         (2/β)·mean softplus(β·(log πθ(F) − log π_ref(F))) + λ·CE(R)                   Zhang 2024
==========  ==========================================================================  =========

CE is the mean token cross-entropy; log π(F) is a forget document's summed token log-probability;
π_ref is the model before unlearning (frozen). NPO's loss is (2/β)·log(1 + (πθ/π_ref)^β), which is
(2/β)·log 2 at the start (θ = ref) and, unlike GA, bounded below by 0 as πθ → 0 (Zhang et al.
2024, arXiv 2404.05868, eq. 3; open-unlearning default β = 0.1). λ = 0 gives plain NPO.

Exact:

- **oracle**: retrain from scratch on the corpus without the forget set, same architecture and
  schedule (read from ``leakaudit_training.json`` when the model was trained here).
- **SISA** (Bourtoule et al., IEEE S&P 2021): the corpus is split into shards by a hash of the
  document id, one model per shard; the ensemble averages the members' next-token distributions.
  Deleting documents retrains only the shards that held them. Implemented without slicing (one
  slice per shard: a deletion retrains its shard from scratch).
"""

from __future__ import annotations

import copy
import json
import math
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from leakaudit.errors import InputError
from leakaudit.targets.base import (
    Capabilities,
    Generation,
    Progress,
    SamplingConfig,
    TokenScores,
    WrappedLM,
)
# the GGUF-load markers' removal lives with the fine-tuning code; re-exported for the commands
from leakaudit.training.finetune import dequantized  # noqa: F401
from leakaudit.training.finetune import drop_gguf_config as _drop_gguf_config
from leakaudit.training.lm import LMSpec, causal_lm_loss, document_blocks, pad_batch, sequence_logprobs

METHODS = ("ga", "gd", "npo")


@dataclass(frozen=True)
class UnlearnConfig:
    """One approximate unlearning run. ``steps`` optimizer steps of AdamW at constant ``lr``
    on batches of ``batch_size`` forget blocks (and as many retain blocks for gd/npo)."""

    method: str
    steps: int
    lr: float
    batch_size: int
    beta: float = 0.1  #: NPO inverse temperature (open-unlearning default)
    retain_weight: float = 1.0  #: λ for gd and npo (0: plain NPO)
    seed: int = 0

    def validate(self) -> None:
        if self.method not in METHODS:
            raise InputError(f"unknown unlearning method {self.method!r}; known: {', '.join(METHODS)}")
        if self.steps < 1 or self.batch_size < 1:
            raise InputError("steps and batch size must be at least 1")
        if not self.lr > 0 or not self.beta > 0 or self.retain_weight < 0:
            raise InputError("lr and beta must be positive, retain_weight non-negative")


def npo_loss(logp_theta, logp_ref, beta: float):
    """NPO loss per example, (2/β)·softplus(β·(logp_θ − logp_ref)) (Zhang et al. 2024, eq. 3).

    >>> import torch
    >>> round(float(npo_loss(torch.tensor([-5.0]), torch.tensor([-5.0]), 0.1)[0]), 4)  # 20·ln 2
    13.8629
    """
    import torch.nn.functional as F

    return (2.0 / beta) * F.softplus(beta * (logp_theta - logp_ref))


def unlearning_loss(method: str, model, ref_model, forget, retain, *, beta: float,
                    retain_weight: float):
    """The loss of one step; ``forget``/``retain`` are ``pad_batch`` tuples (retain may be None
    for ga)."""
    inp, att, lab = forget
    if method in ("ga", "gd"):
        loss = -model(input_ids=inp, attention_mask=att, labels=lab).loss
    else:
        import torch

        lp, _ = sequence_logprobs(model, inp, att, lab)
        with torch.no_grad():
            lp_ref, _ = sequence_logprobs(ref_model, inp, att, lab)
        loss = npo_loss(lp, lp_ref, beta).mean()
    if method in ("gd", "npo") and retain_weight > 0 and retain is not None:
        r_inp, r_att, r_lab = retain
        loss = loss + retain_weight * model(input_ids=r_inp, attention_mask=r_att,
                                            labels=r_lab).loss
    return loss


def unlearn_model(model, tokenizer, forget_texts: Sequence[str], retain_texts: Sequence[str],
                  config: UnlearnConfig, *, progress: Callable[[int, int, float], None] | None = None):
    """Run approximate unlearning on ``model`` (updated in place and returned, in eval mode);
    returns ``(model, info)`` with the loss curve."""
    import torch

    config.validate()
    if not forget_texts:
        raise InputError("the forget set is empty")
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    n_ctx = int(getattr(model.config, "n_positions", None)
                or getattr(model.config, "max_position_embeddings", 1024))
    fb = document_blocks(forget_texts, tokenizer, n_ctx)
    rb = document_blocks(retain_texts, tokenizer, n_ctx) if retain_texts else []
    if config.method in ("gd", "npo") and config.retain_weight > 0 and not rb:
        raise InputError(f"{config.method} needs retain documents")
    ref = None
    if config.method == "npo":
        ref = copy.deepcopy(model).eval()
        for p in ref.parameters():
            p.requires_grad_(False)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, betas=(0.9, 0.95), weight_decay=0.0)
    causal_lm_loss(model).train()
    losses = []

    def draw(blocks):
        idx = torch.randint(len(blocks), (min(config.batch_size, len(blocks)),), generator=gen)
        return pad_batch([blocks[i] for i in idx.tolist()], pad)

    t0 = time.perf_counter()
    for step in range(config.steps):
        loss = unlearning_loss(config.method, model, ref, draw(fb), draw(rb) if rb else None,
                               beta=config.beta, retain_weight=config.retain_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(float(loss.detach()))
        if progress is not None:
            progress(step + 1, config.steps, losses[-1])
    model.eval()
    return model, {"config": asdict(config), "losses": losses,
                   "wall_s": round(time.perf_counter() - t0, 3)}


# --------------------------------------------------------------------------------------------
# Exact options
# --------------------------------------------------------------------------------------------


def training_spec(model_dir: str | Path) -> tuple[LMSpec, int] | None:
    """The spec and seed a model was trained with here (``leakaudit_training.json``), or None."""
    p = Path(model_dir) / "leakaudit_training.json"
    if not p.is_file():
        return None
    meta = json.loads(p.read_text())
    return LMSpec(**meta["spec"]), int(meta["seed"])


def retrain(model_dir: str | Path, texts: Sequence[str], spec: LMSpec, *, seed: int,
            out_dir: str | Path | None = None, progress=None):
    """Retrain ``model_dir``'s architecture (its config, fresh weights) on ``texts``.
    ``model_dir`` is a model directory or a loaded in-process target (one with ``model`` and
    ``tokenizer``, e.g. from a ``gguf:`` file): its config and tokenizer are used."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from leakaudit.training.lm import train_causal_lm

    if hasattr(model_dir, "model") and hasattr(model_dir, "tokenizer"):
        tok, cfg = model_dir.tokenizer, _drop_gguf_config(copy.deepcopy(model_dir.model.config))
    else:
        tok = AutoTokenizer.from_pretrained(str(model_dir))
        cfg = AutoConfig.from_pretrained(str(model_dir))
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg)
    return train_causal_lm(texts, tok, spec, seed=seed, out_dir=out_dir, progress=progress,
                           model=model)


def shard_of(doc_id: str, n_shards: int) -> int:
    """SISA shard of a document: crc32 of its id modulo the number of shards (stable across
    runs and machines).

    >>> shard_of("doc-0", 4), shard_of("doc-1", 4)
    (3, 1)
    """
    return zlib.crc32(doc_id.encode("utf-8")) % n_shards


def sisa_train(model_dir: str | Path, docs: Sequence[dict], spec: LMSpec, *, n_shards: int,
               seed: int, out_dir: str | Path, progress=None) -> dict:
    """Train one model per shard (``out_dir/shard-K``) with ``model_dir``'s architecture and
    tokenizer; write ``sisa.json`` (shard of each document, per-shard wall time)."""
    if n_shards < 1:
        raise InputError(f"need at least 1 shard, got {n_shards}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shards: dict[int, list[dict]] = {k: [] for k in range(n_shards)}
    for d in docs:
        shards[shard_of(d["id"], n_shards)].append(d)
    walls = {}
    for k, sd in shards.items():
        if not sd:
            raise InputError(f"shard {k} of {n_shards} is empty: use fewer shards")
        t0 = time.perf_counter()
        retrain(model_dir, [d["text"] for d in sd], spec, seed=seed + k, out_dir=out / f"shard-{k}",
                progress=progress)
        walls[k] = round(time.perf_counter() - t0, 3)
    manifest = {"n_shards": n_shards, "seed": seed, "spec": asdict(spec),
                "doc_shards": {d["id"]: shard_of(d["id"], n_shards) for d in docs},
                "train_wall_s": walls}
    (out / "sisa.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def sisa_delete(sisa_dir: str | Path, model_dir: str | Path, docs: Sequence[dict],
                forget_ids: Sequence[str], *, out_dir: str | Path, progress=None) -> dict:
    """Delete ``forget_ids``: copy the SISA ensemble to ``out_dir`` and retrain only the shards
    that held a forgotten document, on their remaining documents. Returns which shards were
    retrained and their wall time."""
    import shutil

    src = Path(sisa_dir)
    man = json.loads((src / "sisa.json").read_text())
    n, seed = int(man["n_shards"]), int(man["seed"])
    spec = LMSpec(**man["spec"])
    forget = set(forget_ids)
    touched = sorted({shard_of(i, n) for i in forget})
    out = Path(out_dir)
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(src, out)
    walls = {}
    for k in touched:
        keep = [d for d in docs if shard_of(d["id"], n) == k and d["id"] not in forget]
        if not keep:
            raise InputError(f"deleting these documents empties shard {k}")
        shutil.rmtree(out / f"shard-{k}")
        t0 = time.perf_counter()
        retrain(model_dir, [d["text"] for d in keep], spec, seed=seed + k,
                out_dir=out / f"shard-{k}", progress=progress)
        walls[k] = round(time.perf_counter() - t0, 3)
    man["deleted"] = sorted(forget)
    man["retrained_shards"] = touched
    man["retrain_wall_s"] = walls
    (out / "sisa.json").write_text(json.dumps(man, indent=1))
    return man


def load_sisa(rest: str, *, name: str | None = None, device: str = "cpu", dtype: str = "float32",
              allow_download: bool = False) -> "EnsembleLM":
    """The ``sisa:`` backend of :func:`leakaudit.targets.load_target`: a SISA folder."""
    return EnsembleLM.load(rest, name=name, device=device, dtype=dtype)


class EnsembleLM(WrappedLM):
    """SISA aggregation: the mean of the members' next-token distributions,
    p(x_t | x_<t) = (1/S) Σ_s p_s(x_t | x_<t). Members share a tokenizer. Scores are exact under
    that mixture; generation is greedy or temperature/top-k sampling from it (no KV cache:
    meant for the small models that SISA shards are)."""

    def __init__(self, members: Sequence, *, name: str):
        if not members:
            raise InputError("an ensemble needs at least one member")
        super().__init__(members[0], name=name)  # the members' shared tokenizer and convention
        self.members = list(members)
        self.tokenizer = self.members[0].tokenizer
        self.capabilities = Capabilities(prompt_logprobs=True, vocab_stats=True, argmax=True,
                                         generation=True, seeded_generation=True)

    @classmethod
    def load(cls, sisa_dir: str | Path, *, name: str | None = None, device: str = "cpu",
             dtype: str = "float32") -> "EnsembleLM":
        """The ensemble of a SISA folder; each member loads through
        :func:`leakaudit.targets.load_target` (the ``sisa:`` backend calls this)."""
        from leakaudit.targets import load_target

        d = Path(sisa_dir).expanduser()
        try:
            man = json.loads((d / "sisa.json").read_text())
            n = int(man["n_shards"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise InputError(f"not a SISA ensemble folder: {e}", path=str(sisa_dir)) from None
        members = [load_target(d / f"shard-{k}", name=f"shard-{k}", device=device, dtype=dtype)
                   for k in range(n)]
        ens = cls(members, name=name or d.name)
        ens.source = str(sisa_dir)
        return ens

    def fingerprint(self) -> str:
        return "ensemble(" + ",".join(m.fingerprint() for m in self.members) + ")"

    def _logp(self, inp, att):
        import torch

        lps = [torch.log_softmax(m.model(input_ids=inp, attention_mask=att).logits.float(), -1)
               for m in self.members]
        return torch.logsumexp(torch.stack(lps), 0) - math.log(len(lps))

    def score_ids(self, ids, *, batch_size: int = 16, vocab_stats: bool = False,
                  sampling: SamplingConfig | None = None, last: int | None = None,
                  progress: Progress | None = None) -> list[TokenScores]:
        import torch

        from leakaudit.targets.hf import length_batches

        if sampling is not None:
            raise InputError("the SISA ensemble does not report sampling log-probabilities")
        bos = self.bos_id  # padding only: nothing is inserted (first token is context only)
        ctx = min(m.max_length for m in self.members)
        seqs = [[int(v) for v in x][:ctx] for x in ids]
        out: list[TokenScores | None] = [None] * len(seqs)
        with torch.inference_mode():
            for idx in length_batches([len(s) for s in seqs], batch_size):
                T = max(len(seqs[i]) for i in idx)
                inp = torch.full((len(idx), T), bos, dtype=torch.long)
                att = torch.zeros((len(idx), T), dtype=torch.long)
                for r, i in enumerate(idx):
                    inp[r, : len(seqs[i])] = torch.tensor(seqs[i])
                    att[r, : len(seqs[i])] = 1
                logp = self._logp(inp, att)
                for r, i in enumerate(idx):
                    L = len(seqs[i])
                    if L < 2:  # nothing to score
                        z = np.zeros(0, np.float32)
                        out[i] = TokenScores(np.zeros(0, np.int64), z, np.zeros(0, bool),
                                             vocab_mean=z if vocab_stats else None,
                                             vocab_var=z if vocab_stats else None)
                        continue
                    lp = logp[r, : L - 1]
                    tgt = inp[r, 1:L]
                    tok_lp = lp.gather(1, tgt[:, None])[:, 0]
                    mu = var = None
                    if vocab_stats:
                        p = lp.exp()
                        mu = (p * lp).sum(-1)
                        var = ((p * lp * lp).sum(-1) - mu * mu).clamp_min(0)
                    k = L - 1 if last is None else min(L - 1, last)
                    sl = slice(L - 1 - k, L - 1)
                    out[i] = TokenScores(
                        token_ids=tgt[sl].numpy().astype(np.int64), logprobs=tok_lp[sl].numpy(),
                        is_argmax=(lp.argmax(-1) == tgt)[sl].numpy(),
                        vocab_mean=None if mu is None else mu[sl].numpy(),
                        vocab_var=None if var is None else var[sl].numpy(),
                        truncated=len(ids[i]) > ctx)
                if progress is not None:
                    progress(len(idx))
        return out  # type: ignore[return-value]

    def generate_ids(self, prompts, sampling: SamplingConfig, *, seed: int, batch_size: int = 32,
                     progress: Progress | None = None) -> list[Generation]:
        import torch

        from leakaudit.targets.hf import length_batches

        if sampling.decay is not None or sampling.top_p is not None:
            raise InputError("the SISA ensemble samples greedily or with temperature/top-k only")
        prompts = [[int(v) for v in p] or [self.bos_id] for p in prompts]
        res: list[Generation | None] = [None] * len(prompts)
        ctx = min(m.max_length for m in self.members)
        with torch.inference_mode():
            for b, idx in enumerate(length_batches([len(p) for p in prompts], batch_size,
                                                   max_padding=0.0)):
                g = torch.Generator().manual_seed(int(seed) * 1_000_003 + b)
                x = torch.tensor([prompts[i] for i in idx], dtype=torch.long)
                plen = x.shape[1]
                for _ in range(min(sampling.max_new_tokens, ctx - plen)):
                    lp = self._logp(x, torch.ones_like(x))[:, -1]
                    if sampling.greedy:
                        nxt = lp.argmax(-1)
                    else:
                        z = lp / sampling.temperature
                        if sampling.top_k:
                            kth = torch.topk(z, min(int(sampling.top_k), z.shape[-1]), -1).values[:, -1:]
                            z = z.masked_fill(z < kth, float("-inf"))
                        nxt = torch.multinomial(torch.softmax(z, -1), 1, generator=g)[:, 0]
                    x = torch.cat([x, nxt[:, None]], 1)
                for r, i in enumerate(idx):
                    new = x[r, plen:].tolist()
                    res[i] = Generation(prompt_ids=prompts[i], new_ids=new,
                                        text=self.decode(prompts[i] + new),
                                        prompt_text=self.decode(prompts[i]), meta={"batch": b})
                if progress is not None:
                    progress(len(idx))
        return res  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------
# Relapse probes
# --------------------------------------------------------------------------------------------


def fake_quantize_(model, bits: int) -> int:
    """Round-to-nearest, symmetric, per-output-channel fake quantization of every linear weight
    in place (``nn.Linear`` and transformers' ``Conv1D``; embeddings, norms and the output
    embeddings, which GPT-2 ties to the input ones, are left in full precision, as bitsandbytes
    leaves ``lm_head`` by default):
    w ← clamp(round(w / s), −q, q)·s with q = 2^(bits−1) − 1 and s = max|w| / q over each output
    channel. Returns the number of weight matrices quantized.

    >>> import torch
    >>> lin = torch.nn.Linear(3, 1, bias=False)
    >>> with torch.no_grad(): _ = lin.weight.copy_(torch.tensor([[1.0, -0.3, 0.26]]))
    >>> fake_quantize_(lin, 4); [round(v, 4) for v in lin.weight[0].tolist()]  # s = 1/7
    1
    [1.0, -0.2857, 0.2857]
    """
    import torch
    from transformers.pytorch_utils import Conv1D

    if bits < 2:
        raise InputError(f"quantization needs at least 2 bits, got {bits}")
    q = 2 ** (bits - 1) - 1
    n = 0
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    with torch.no_grad():
        for mod in model.modules():
            if head is not None and mod is head:
                continue
            if isinstance(mod, torch.nn.Linear):
                w, dim = mod.weight, 1  # [out, in]: reduce over inputs
            elif isinstance(mod, Conv1D):
                w, dim = mod.weight, 0  # [in, out]
            else:
                continue
            s = w.abs().amax(dim=dim, keepdim=True).clamp_min(1e-12) / q
            w.copy_(torch.clamp(torch.round(w / s), -q, q) * s)
            n += 1
    return n
