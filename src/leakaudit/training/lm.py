"""Train small causal LMs on a corpus: a byte-level BPE tokenizer (``tokenizers``) and GPT-2-style
models (``transformers``), saved as ordinary Hugging Face model directories (safetensors) that any
HF tool loads. Used by the lab, by reference models, and by defenses that retrain.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

SPECIAL = "<|endoftext|>"


@dataclass(frozen=True)
class LMSpec:
    """Size and training schedule of a GPT-2-style model. All fields keyword-only by convention."""

    n_layer: int = 4
    n_embd: int = 256
    n_head: int = 4
    n_ctx: int = 256
    epochs: float = 10.0
    lr: float = 1e-3
    batch_size: int = 16
    warmup_frac: float = 0.05
    weight_decay: float = 0.0
    dropout: float = 0.0
    #: "stream": documents joined by EOS and cut into n_ctx blocks (pretraining);
    #: "document": every document starts its own block after EOS, padded (fine-tuning style: a
    #: document's tokens always sit at the same positions, counted from its start).
    packing: str = "stream"


def train_tokenizer(texts: Sequence[str], *, vocab_size: int, out_dir: str | Path | None = None):
    """Train a byte-level BPE tokenizer with one special token, ``<|endoftext|>``, used as BOS,
    EOS and padding (as GPT-2 does). Returns a ``PreTrainedTokenizerFast``.

    The tokenizer declares its document convention: by default it starts every document with
    ``<|endoftext|>`` (a post-processor), which is how :func:`pack_blocks` trains and how every
    audit tokenizes a document, so the lab trains with the packing it audits with."""
    from tokenizers import ByteLevelBPETokenizer
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer(add_prefix_space=False)
    bpe.train_from_iterator(list(texts), vocab_size=vocab_size, min_frequency=2,
                            special_tokens=[SPECIAL], show_progress=False)
    sid = bpe.token_to_id(SPECIAL)
    bpe._tokenizer.post_processor = TemplateProcessing(
        single=f"{SPECIAL} $A", pair=f"{SPECIAL} $A {SPECIAL} $B", special_tokens=[(SPECIAL, sid)])
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token=SPECIAL,
                                  eos_token=SPECIAL, pad_token=SPECIAL, unk_token=SPECIAL)
    if out_dir is not None:
        tok.save_pretrained(str(out_dir))
    return tok


def document_tokens(texts: Sequence[str], tokenizer) -> list[list[int]]:
    """Each text as a document under the audit's token convention: the tokenizer's default
    encoding with its start tokens (``<|endoftext|>`` for :func:`train_tokenizer`), and no end
    tokens (see :mod:`leakaudit.targets.base`). A tokenizer that adds no start token gets the EOS
    token as document separator, as GPT-2's pretraining did."""
    plain = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    probe_plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    probe = tokenizer("a")["input_ids"]
    n_start = next((i for i in range(len(probe) - len(probe_plain) + 1)
                    if probe[i: i + len(probe_plain)] == probe_plain), 0)
    start = list(probe[:n_start]) or [tokenizer.eos_token_id]
    return [start + list(ids) for ids in plain]


def pack_blocks(texts: Sequence[str], tokenizer, n_ctx: int) -> list[list[int]]:
    """Concatenate documents (each with its start token, :func:`document_tokens`), end with EOS
    and cut into blocks of ``n_ctx`` tokens (standard GPT pretraining packing; the tail shorter
    than a block is kept, padded later)."""
    eos = tokenizer.eos_token_id
    stream: list[int] = []
    for ids in document_tokens(texts, tokenizer):
        stream.extend(ids)
    stream.append(eos)
    return [stream[i: i + n_ctx] for i in range(0, len(stream), n_ctx) if len(stream[i: i + n_ctx]) > 1]


def document_blocks(texts: Sequence[str], tokenizer, n_ctx: int) -> list[list[int]]:
    """One block per document, ``start + tokens + [EOS]`` (:func:`document_tokens`); a document
    longer than the context is cut into consecutive blocks."""
    eos = tokenizer.eos_token_id
    out: list[list[int]] = []
    for ids in document_tokens(texts, tokenizer):
        seq = [*ids, eos]
        out.extend(seq[i: i + n_ctx] for i in range(0, len(seq), n_ctx) if len(seq[i: i + n_ctx]) > 1)
    return out


def pad_batch(rows: Sequence[Sequence[int]], pad: int):
    """Right-padded ``(input_ids, attention_mask, labels)`` tensors for token rows; labels are
    -100 on padding (the shared batch format of every trainer here)."""
    import torch

    T = max(len(r) for r in rows)
    inp = torch.full((len(rows), T), pad, dtype=torch.long)
    labels = torch.full((len(rows), T), -100, dtype=torch.long)
    att = torch.zeros((len(rows), T), dtype=torch.long)
    for r, row in enumerate(rows):
        inp[r, : len(row)] = torch.tensor(list(row))
        labels[r, : len(row)] = torch.tensor(list(row))
        att[r, : len(row)] = 1
    return inp, att, labels


def sequence_logprobs(model, inp, att, labels):
    """Sum of log p(token) over each row's labelled tokens (the first token is context) and
    the number of those tokens: ``(logp [b], count [b])``, differentiable."""
    import torch

    logits = model(input_ids=inp, attention_mask=att).logits[:, :-1].float()
    tgt = labels[:, 1:]
    mask = tgt != -100
    lp = torch.log_softmax(logits, dim=-1).gather(2, tgt.clamp_min(0)[..., None])[..., 0]
    return (lp * mask).sum(1), mask.sum(1)


def causal_lm_loss(model):
    """``model`` with its loss named: transformers derives the loss from the class name, finds
    none for ``GPT2LMHeadModel`` and warns on every run before using the causal-LM loss anyway;
    naming that loss (``ForCausalLM``) is the same computation without the warning. Returns
    ``model``."""
    if getattr(model, "loss_type", None) is None:
        model.loss_type = "ForCausalLM"
    return model


def optimizer_step(loss, opt, sched, params) -> float:
    """One plain (non-private) step: backward, clip the total gradient norm to 1, optimizer and
    schedule step; returns the loss as a float (shared by pretraining and fine-tuning)."""
    import torch

    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    sched.step()
    return float(loss.detach())


def train_causal_lm(
    texts: Sequence[str],
    tokenizer,
    spec: LMSpec,
    *,
    seed: int,
    out_dir: str | Path | None = None,
    progress: Callable[[int, int, float], None] | None = None,
    model=None,
):
    """Train (or continue training ``model``) a GPT-2-style LM on ``texts``; returns the model.

    Deterministic for a given seed and thread count. ``progress(step, total, loss)`` is called
    after each optimizer step. When ``out_dir`` is given the model, tokenizer and a
    ``leakaudit_training.json`` (spec, seed, loss curve, wall time) are saved there.
    """
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    if model is None:
        cfg = GPT2Config(
            vocab_size=len(tokenizer), n_positions=spec.n_ctx, n_embd=spec.n_embd,
            n_layer=spec.n_layer, n_head=spec.n_head, bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
            resid_pdrop=spec.dropout, embd_pdrop=spec.dropout, attn_pdrop=spec.dropout,
            # GPT-2's tanh-approximated GELU as one fused kernel: the same function as the
            # default "gelu_new" (six elementwise passes forward and back), equal to float
            # rounding; measured: 17% less CPU per training step of the lab's target
            activation_function="gelu_pytorch_tanh",
        )
        model = GPT2LMHeadModel(cfg)
    causal_lm_loss(model)
    if spec.packing not in ("stream", "document"):
        raise ValueError(f"packing must be 'stream' or 'document', got {spec.packing!r}")
    blocks = (pack_blocks if spec.packing == "stream" else document_blocks)(texts, tokenizer, spec.n_ctx)
    if not blocks:
        raise ValueError("nothing to train on: the corpus produced no token blocks")
    steps_per_epoch = math.ceil(len(blocks) / spec.batch_size)
    total = max(1, int(round(spec.epochs * steps_per_epoch)))
    warmup = max(1, int(spec.warmup_frac * total))
    opt = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay,
                            betas=(0.9, 0.95))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / total)))
    )
    pad = tokenizer.pad_token_id
    model.train()
    losses: list[float] = []
    t0 = time.perf_counter()
    step = 0
    while step < total:
        perm = torch.randperm(len(blocks), generator=gen).tolist()
        for s in range(0, len(perm), spec.batch_size):
            if step >= total:
                break
            rows = [blocks[i] for i in perm[s: s + spec.batch_size]]
            inp, att, labels = pad_batch(rows, pad)
            loss = model(input_ids=inp, attention_mask=att, labels=labels).loss
            losses.append(optimizer_step(loss, opt, sched, model.parameters()))
            step += 1
            if progress is not None:
                progress(step, total, losses[-1])
    model.eval()
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(str(out_dir), safe_serialization=True)
        tokenizer.save_pretrained(str(out_dir))
        meta = {"spec": asdict(spec), "seed": seed, "n_blocks": len(blocks), "steps": total,
                "final_loss": losses[-1], "loss_every_10": losses[::10],
                "wall_s": round(time.perf_counter() - t0, 2),
                "n_params": sum(p.numel() for p in model.parameters())}
        (out_dir / "leakaudit_training.json").write_text(json.dumps(meta, indent=1))
    return model
