"""Hugging Face transformers backend for causal language models.

Loads a local model directory (safetensors or any format transformers reads), a GGUF file, or a
hub name (when the machine is online). Scoring is batched and teacher-forced, and never holds the
full ``batch × sequence × vocabulary`` log-softmax in memory: the LM head runs over chunks of
positions and only per-token statistics are kept. Sampling is batched, seeded and KV-cached
(``model.generate``), with a real decaying-temperature logits processor.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import re
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from leakaudit.errors import InputError, LeakauditError
from leakaudit.targets.base import (
    Capabilities,
    Generation,
    LanguageModel,
    Progress,
    SamplingConfig,
    TokenScores,
    tokenizer_start_ids,
)

_HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")

#: Bytes of LM-head output (float32 logits and their temporaries) allowed per chunk.
DEFAULT_CHUNK_BYTES = 256 * 2**20


def _torch():
    import torch

    return torch


def _make_decay_processor():
    """Build the processor class lazily so that importing this module does not import torch."""
    from transformers import LogitsProcessor

    class DecayingTemperatureLogitsProcessor(LogitsProcessor):
        """Divide logits by a temperature that falls linearly from ``start`` to ``end`` over the
        first ``steps`` generated tokens, then stays at ``end`` (Carlini et al. 2021, §5.1.1:
        10 → 1 over the first 20 tokens). Unlike two published reimplementations, it returns the
        rescaled scores rather than the input unchanged.
        """

        def __init__(self, start: float, end: float, steps: int, prompt_length: int):
            if start <= 0 or end <= 0:
                raise ValueError("temperatures must be positive")
            if steps < 1:
                raise ValueError("steps must be >= 1")
            self.start, self.end, self.steps = float(start), float(end), int(steps)
            self.prompt_length = int(prompt_length)

        def temperature(self, step: int) -> float:
            frac = min(max(step, 0), self.steps) / self.steps
            return self.start + (self.end - self.start) * frac

        def __call__(self, input_ids, scores):
            step = input_ids.shape[1] - self.prompt_length
            return scores / self.temperature(step)

    return DecayingTemperatureLogitsProcessor


def decaying_temperature_processor(start: float, end: float, steps: int, prompt_length: int):
    """A transformers ``LogitsProcessor`` implementing the decaying temperature."""
    return _make_decay_processor()(start, end, steps, prompt_length)


def _sampling_logprob(logits, targets, sampling: SamplingConfig):
    """log p(target) under temperature-then-top-k sampling, as transformers' warpers apply them:
    logits / T, keep every logit >= the k-th largest (ties kept), renormalize. -inf outside."""
    torch = _torch()
    t = float(sampling.temperature)
    z = logits / t if t != 1.0 else logits
    z_t = z.gather(1, targets[:, None])[:, 0]
    if not sampling.top_k or int(sampling.top_k) >= z.shape[-1]:
        return z_t - torch.logsumexp(z, dim=-1)
    # The normalizer over the kept set from the k largest values alone (plus any logits tied
    # with the k-th, which the warper keeps too): no masked copy and no second full softmax.
    k = int(sampling.top_k)
    vals = torch.topk(z, k + 1, dim=-1).values  # one past k shows where ties may reach beyond k
    kth = vals[:, k - 1]
    extra = torch.zeros_like(kth)
    tied = vals[:, k] == kth  # rare: count the tied logits outside the top k exactly
    if bool(tied.any()):
        zt, vt = z[tied], vals[tied, :k]
        extra[tied] = ((zt == kth[tied, None]).sum(-1) - (vt == kth[tied, None]).sum(-1)).to(kth.dtype)
    vals = vals[:, :k]
    top = vals[:, 0]
    lse = top + torch.log(torch.exp(vals - top[:, None]).sum(-1) + extra * torch.exp(kth - top))
    return torch.where(z_t >= kth, z_t - lse, torch.full_like(z_t, float("-inf")))


def resolve_local(model: str | os.PathLike, *, gguf: bool = False,
                  allow_download: bool = False) -> tuple[str, str | None, bool]:
    """Return (directory or hub name, gguf file name or None, is_local), checking only the file
    system: a local-looking path that does not exist is an error naming it, never a hub request;
    a hub name needs ``allow_download`` unless it is in the local Hugging Face cache."""
    from leakaudit.targets.base import looks_local

    s = str(model)
    p = Path(s).expanduser()
    if p.suffix == ".gguf" or (gguf and not p.is_dir()):
        if not p.is_file():
            raise InputError("GGUF file not found", path=s)
        return str(p.parent), p.name, True
    if p.is_dir():
        if not (p / "config.json").is_file():
            ggufs = sorted(p.glob("*.gguf"))
            if len(ggufs) == 1:
                return str(p), ggufs[0].name, True
            raise InputError("not a model directory: no config.json (nor a single .gguf file)",
                             path=s)
        if gguf:
            raise InputError("a gguf: target must be a .gguf file", path=s)
        return str(p), None, True
    if p.exists():
        raise InputError("not a model directory or .gguf file", path=s)
    if looks_local(s) or not _HUB_NAME.fullmatch(s):
        raise InputError("model directory not found", path=s)
    if not allow_download and not _in_hub_cache(s):
        raise InputError("no such local directory, and not in the local Hugging Face cache; "
                         "leakaudit works offline: pass --allow-download to fetch it from the "
                         "hub", path=s)
    return s, None, False  # a hub name such as "gpt2" or "EleutherAI/pythia-70m"


def _in_hub_cache(name: str) -> bool:
    """Whether a hub model's config is in the local cache (no network)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    try:
        got = try_to_load_from_cache(name, "config.json")
    except Exception:  # an invalid repo id
        return False
    return isinstance(got, str)


def _tokenizer_definition(tok) -> str:
    """A string that changes whenever the tokenizer's behaviour can change."""
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is not None:
        body = backend.to_str()
    else:  # a slow tokenizer: its vocabulary and special tokens
        body = json.dumps(tok.get_vocab(), sort_keys=True)
    special = json.dumps({k: str(v) for k, v in sorted(tok.special_tokens_map.items())})
    return body + special


#: Most padding a scoring batch may carry, as a fraction of its padded tokens.
MAX_PADDING_FRACTION = 0.1


def length_batches(lengths: Sequence[int], batch_size: int,
                   max_padding: float = MAX_PADDING_FRACTION) -> list[list[int]]:
    """Indices of ``lengths`` grouped into batches of at most ``batch_size``, shortest first, a
    batch closing early when padding to its longest member would exceed ``max_padding`` of its
    tokens.

    Sorting alone is not enough for documents of mixed length: 16 documents of 220-1,083 tokens
    sorted into one batch pad to 17,328 positions for 10,470 real ones, and the padded attention
    ran 2.8x slower than the same documents one at a time (Pythia-70m shape, one CPU thread).

    >>> length_batches([50, 100, 52, 101, 50], batch_size=4)
    [[0, 4, 2], [1, 3]]
    >>> length_batches([50, 100, 52, 101, 50], batch_size=4, max_padding=0.0)  # generation
    [[0, 4], [2], [1], [3]]
    """
    if batch_size < 1:
        raise InputError(f"batch size must be at least 1, got {batch_size}")
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    batches: list[list[int]] = []
    total = 0
    for i in order:
        if batches and len(batches[-1]) < batch_size:
            padded = (len(batches[-1]) + 1) * lengths[i]  # ascending: the newcomer is longest
            if padded - (total + lengths[i]) <= max_padding * padded:
                batches[-1].append(i)
                total += lengths[i]
                continue
        batches.append([i])
        total = lengths[i]
    return batches


@functools.lru_cache(maxsize=None)
def _buffered_layer_class():
    """A transformers ``DynamicLayer`` that keeps its keys and values in a buffer grown by
    doubling and hands out views of the filled part: the same tensors, values and shapes as the
    default layer's ``torch.cat`` of the whole cache at every generated token (quadratic copying:
    26% of the lab's sampling time in a profile), at amortized constant cost per token. The
    filled length is read from the view itself, so a ``crop`` (a shorter view) or a reorder (a
    new tensor, copied into a fresh buffer) stays correct."""
    from transformers.cache_utils import DynamicLayer

    class BufferedKVLayer(DynamicLayer):
        def update(self, key_states, value_states, *args, **kwargs):
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
                self._kb = self._vb = None
            n = 0 if self._kb is None else self.keys.shape[-2]
            add = key_states.shape[-2]
            if self._kb is None or self.keys.data_ptr() != self._kb.data_ptr() \
                    or self.values.data_ptr() != self._vb.data_ptr() \
                    or n + add > self._kb.shape[-2]:
                cap = max(2 * (n + add), 64)
                kb = key_states.new_empty(*key_states.shape[:-2], cap, key_states.shape[-1])
                vb = value_states.new_empty(*value_states.shape[:-2], cap, value_states.shape[-1])
                if n:
                    kb[..., :n, :] = self.keys
                    vb[..., :n, :] = self.values
                self._kb, self._vb = kb, vb
            self._kb[..., n:n + add, :] = key_states
            self._vb[..., n:n + add, :] = value_states
            self.keys, self.values = self._kb[..., :n + add, :], self._vb[..., :n + add, :]
            return self.keys, self.values

    return BufferedKVLayer


def buffered_cache(model):
    """A fresh ``DynamicCache`` for ``model`` whose full-attention layers are
    :func:`_buffered_layer_class`'s (sliding-window and other layer types stay as transformers
    makes them), or ``None`` where transformers has no per-layer caches (before 5.x)."""
    try:
        from transformers import DynamicCache
        from transformers.cache_utils import DynamicLayer
    except ImportError:  # pragma: no cover - older transformers
        return None
    try:
        cache = DynamicCache(config=model.config)
    except TypeError:  # pragma: no cover - older transformers
        return None
    cls = _buffered_layer_class()
    cache.layers = [cls() if type(layer) is DynamicLayer else layer for layer in cache.layers]
    return cache


def _cache_kwargs(model) -> dict:
    """``generate``'s keyword for a :func:`buffered_cache` (``cache`` since transformers 5)."""
    import transformers

    cache = buffered_cache(model)
    if cache is None or int(transformers.__version__.split(".")[0]) < 5:
        return {}
    return {"cache": cache}


def argmax_hits(logp, tgt):
    """``logp.argmax(-1) == tgt`` per row, the same bits, about 10x faster on the CPU: torch's
    argmax over a row is a scalar loop, its max a vectorized one. Only a row whose target
    holds the row's maximum can be a hit; those rows (few) are settled by argmax itself, so
    ties go to the first index as before (and a NaN row as argmax has it)."""
    lp = logp.gather(1, tgt[:, None])[:, 0]
    hit = (lp == logp.amax(dim=-1)) | lp.isnan()
    rows = hit.nonzero()[:, 0]
    if rows.numel():
        hit[rows] = logp[rows].argmax(dim=-1) == tgt[rows]
    return hit


@contextmanager
def no_loading_bars(gguf: bool = False):
    """transformers' "Loading weights" progress bars off while a model loads (a lab loads its
    small models dozens of times; the bars say nothing a user can act on), restored after. With
    ``gguf``, also its "Converting and de-quantizing GGUF tensors" bar, which is a plain ``tqdm``
    of that module that transformers' switch does not reach."""
    from transformers.utils import logging as tlog

    was = tlog.is_progress_bar_enabled()
    tlog.disable_progress_bar()
    mod = bar = None
    if gguf:
        import transformers.modeling_gguf_pytorch_utils as mod

        bar = getattr(mod, "tqdm", None)
        if bar is not None:
            mod.tqdm = functools.partial(bar, disable=True)
    try:
        yield
    finally:
        if bar is not None:
            mod.tqdm = bar
        if was:
            tlog.enable_progress_bar()


def explicit_generation_config(sampling: SamplingConfig, *, max_new_tokens: int,
                               pad_token_id: int, bos_token_id: int):
    """A ``GenerationConfig`` with every setting that changes which token is drawn written out:
    nothing is left for a model's shipped ``generation_config.json`` to fill in. EOS never stops
    a sample (``eos_token_id=None``, as the papers sample a fixed number of tokens)."""
    from transformers import GenerationConfig

    neutral = dict(num_beams=1, num_beam_groups=1, penalty_alpha=None, repetition_penalty=1.0,
                   encoder_repetition_penalty=1.0, no_repeat_ngram_size=0,
                   encoder_no_repeat_ngram_size=0, length_penalty=1.0, bad_words_ids=None,
                   force_words_ids=None, begin_suppress_tokens=None, suppress_tokens=None,
                   forced_bos_token_id=None, forced_eos_token_id=None, sequence_bias=None,
                   exponential_decay_length_penalty=None, min_length=0,
                   max_new_tokens=int(max_new_tokens), eos_token_id=None,
                   pad_token_id=int(pad_token_id), bos_token_id=int(bos_token_id),
                   typical_p=1.0, epsilon_cutoff=0.0, eta_cutoff=0.0, min_p=None,
                   renormalize_logits=False, guidance_scale=None, watermarking_config=None,
                   use_cache=True)
    if sampling.greedy:
        # greedy: no sampling settings at all (a top_k of 0 next to do_sample=False is a flag
        # that transformers warns about on every call)
        return GenerationConfig(do_sample=False, **neutral)
    return GenerationConfig(
        do_sample=True, top_k=int(sampling.top_k) if sampling.top_k else 0,
        top_p=float(sampling.top_p) if sampling.top_p is not None else 1.0,
        temperature=float(sampling.temperature), **neutral)


class HFCausalLM(LanguageModel):
    """A transformers causal LM (``AutoModelForCausalLM``) on the CPU or a CUDA device."""

    def __init__(self, model, tokenizer, *, name: str, source: str | None = None,
                 chunk_bytes: int = DEFAULT_CHUNK_BYTES):
        torch = _torch()
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.source = source
        self.chunk_bytes = int(chunk_bytes)
        self.device = next(model.parameters()).device
        self.vocab_size = int(model.get_output_embeddings().weight.shape[0]) \
            if model.get_output_embeddings() is not None else int(model.config.vocab_size)
        n_tok = len(tokenizer)
        if n_tok > self.vocab_size:
            raise LeakauditError(
                f"tokenizer/model mismatch for {name}: the tokenizer has {n_tok} tokens but the "
                f"model's vocabulary has {self.vocab_size}"
            )
        self.max_length = int(
            getattr(model.config, "max_position_embeddings", None)
            or getattr(model.config, "n_positions", None)
            or 2048
        )
        # In process, the whole next-token distribution is there: top-k log-probs of generated
        # tokens for any k up to the vocabulary (generate_ids(top_logprobs=k)).
        self.capabilities = Capabilities(
            prompt_logprobs=True, vocab_stats=True, argmax=True, sampling_logprobs=True,
            generation=True, seeded_generation=True, logits_processors=True, gradients=True,
            top_logprobs=self.vocab_size,
        )
        self._fingerprint: str | None = None
        self._start_ids: list[int] | None = None
        with torch.inference_mode():
            self._chunked_head = self._check_chunked_head()

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, model: str | os.PathLike, *, name: str | None = None, device: str = "cpu",
             dtype: str = "float32", allow_download: bool = False,
             gguf: bool = False) -> "HFCausalLM":
        """Load a model directory, a ``.gguf`` file, or a hub name (from the local cache, or
        fetched when ``allow_download``). Prefer :func:`leakaudit.targets.load_target`.

        A missing path raises :class:`InputError` naming it, before torch is imported.
        """
        path, gguf_file, is_local = resolve_local(model, gguf=gguf, allow_download=allow_download)
        if gguf_file and importlib.util.find_spec("gguf") is None:
            raise LeakauditError("loading a GGUF file needs the 'gguf' package: "
                                 "pip install 'leakaudit[gguf]'")
        torch = _torch()
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if is_local and not gguf_file and Path(path).is_dir():
            from leakaudit.targets.checks import check_hf_model_dir

            check_hf_model_dir(path)  # safetensors only, complete; pickle refused
        kwargs: dict = {"local_files_only": not allow_download}
        if gguf_file:
            kwargs["gguf_file"] = gguf_file
        if not hasattr(torch, str(dtype)) or not isinstance(getattr(torch, str(dtype)), torch.dtype):
            raise InputError(f"unknown dtype {dtype!r} (float32, bfloat16, float16)")
        try:
            with no_loading_bars(gguf=bool(gguf_file)):
                tok = AutoTokenizer.from_pretrained(path, **kwargs)
                mdl = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype), **kwargs)
        except (OSError, ValueError, ImportError) as e:
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            where = "" if is_local else " (hub name; offline? pass a local directory)"
            raise InputError(f"could not load the model{where}: {msg}", path=str(model)) from None
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token if tok.eos_token is not None else tok.convert_ids_to_tokens(0)
        mdl.to(device)
        label = name or gguf_file or (Path(path).name if is_local else path)
        return cls(mdl, tok, name=label, source=str(model))

    # ------------------------------------------------------------------ tokens
    @property
    def start_ids(self) -> list[int]:
        """The tokens the tokenizer puts before a text by default (``add_special_tokens=True``),
        found by encoding a probe both ways; tokens it appends at the end are not included."""
        if self._start_ids is None:
            self._start_ids = tokenizer_start_ids(self.tokenizer)
        return list(self._start_ids)

    @property
    def bos_id(self) -> int:
        if self.start_ids:
            return self.start_ids[-1]
        t = self.tokenizer
        for cand in (t.bos_token_id, t.eos_token_id, t.pad_token_id):
            if cand is not None:
                return int(cand)
        return 0

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        if not texts:
            return []
        enc = self.tokenizer(list(texts), add_special_tokens=False)
        return [list(x) for x in enc["input_ids"]]

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return [tuple(o) for o in enc["offset_mapping"]]

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    def decode_special(self, ids: Sequence[int]) -> list[str]:
        return [str(t) for t in self.tokenizer.convert_ids_to_tokens(list(ids))]

    def fingerprint(self) -> str:
        """sha256 over the config, the tokenizer (its full definition: vocabulary, merges,
        normalizer, pre- and post-processor) and every parameter's bytes in its own dtype
        (bf16 included), cached after the first call. Where the model was loaded from does not
        enter: the same weights anywhere give the same fingerprint."""
        if self._fingerprint is None:
            torch = _torch()
            h = hashlib.sha256()
            cfg = {k: v for k, v in self.model.config.to_dict().items()
                   if k not in ("_name_or_path", "_commit_hash", "transformers_version")}
            h.update(json.dumps(cfg, sort_keys=True, default=str).encode())
            h.update(_tokenizer_definition(self.tokenizer).encode())
            for k, v in sorted(self.model.state_dict().items()):
                t = v.detach().cpu().contiguous().reshape(-1)
                h.update(f"{k}:{t.dtype}:{tuple(v.shape)}".encode())
                h.update(t.view(torch.uint8).numpy().tobytes())
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint

    # ------------------------------------------------------------------ scoring
    def _head_weight_path(self):
        out = self.model.get_output_embeddings()
        base = getattr(self.model, "base_model", None)
        if out is None or base is None or base is self.model:
            return None
        return base, out

    def _check_chunked_head(self) -> bool:
        """Use the chunked LM head only if it reproduces the model's own logits on a probe.

        Models that post-process logits (soft-capping, logit scaling) fall back to full logits.
        """
        torch = _torch()
        parts = self._head_weight_path()
        if parts is None:
            return False
        base, head = parts
        ids = torch.tensor([[self.bos_id, 1 % self.vocab_size, 2 % self.vocab_size]],
                           device=self.device)
        try:
            mask = torch.ones_like(ids)
            full = self.model(input_ids=ids, attention_mask=mask).logits.float()
            hidden = base(input_ids=ids, attention_mask=mask).last_hidden_state
            mine = head(hidden).float()
        except Exception:  # any architecture quirk: use the safe path
            return False
        return bool(torch.allclose(full, mine, atol=1e-4, rtol=1e-4))

    def _batch_logits_stats(self, input_ids, attention_mask, lengths, vocab_stats, sampling=None,
                            last=None):
        """Per-token stats for one right-padded batch; returns lists of numpy arrays per row.
        With ``last``, only each row's last ``last`` predicted tokens are scored."""
        torch = _torch()
        b, t = input_ids.shape
        # Positions 0..L-2 of each row predict tokens 1..L-1.
        pos_mask = torch.zeros(b, t, dtype=torch.bool, device=self.device)
        counts = [max(0, L - 1 if last is None else min(L - 1, last)) for L in lengths]
        for r, L in enumerate(lengths):
            if counts[r]:
                pos_mask[r, L - 1 - counts[r]: L - 1] = True
        targets = input_ids[:, 1:][pos_mask[:, :-1]]
        if self._chunked_head:
            base, head = self._head_weight_path()
            hidden = base(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            h = hidden[pos_mask]
            logits_fn = head
        else:
            logits_all = self.model(input_ids=input_ids, attention_mask=attention_mask).logits
            h = logits_all[pos_mask]
            logits_fn = None
        n = h.shape[0]
        # float32 logits and ~3 temporaries of the same size per position.
        step = max(1, self.chunk_bytes // (self.vocab_size * 4 * 4))
        lp = torch.empty(n, dtype=torch.float32)
        am = torch.empty(n, dtype=torch.bool)
        mu = torch.empty(n, dtype=torch.float32) if vocab_stats else None
        var = torch.empty(n, dtype=torch.float32) if vocab_stats else None
        slp = torch.empty(n, dtype=torch.float32) if sampling is not None else None
        for s in range(0, n, step):
            e = min(n, s + step)
            logits = (logits_fn(h[s:e]) if logits_fn is not None else h[s:e]).float()
            # log_softmax + gather is cheaper on the CPU than logsumexp (measured ~20% of the
            # post-matmul time); both are exact.
            tgt = targets[s:e]
            if sampling is not None:
                slp[s:e] = _sampling_logprob(logits, tgt, sampling).cpu()
            logp = torch.log_softmax(logits, dim=-1)
            del logits
            lp[s:e] = logp.gather(1, tgt[:, None])[:, 0].cpu()
            am[s:e] = argmax_hits(logp, tgt).cpu()
            if vocab_stats:
                # E[log p] and E[(log p)^2] under p over one temporary: p log p in place, then a
                # row sum and a row dot product (bmm, BLAS). Measured 2.3x faster on the CPU than
                # the (p*logp).sum / (p*logp*logp).sum form, which writes three [n, V] temporaries.
                plogp = logp.exp().mul_(logp)
                m1 = plogp.sum(-1)
                m2 = torch.bmm(plogp.unsqueeze(1), logp.unsqueeze(2)).view(-1)
                mu[s:e] = m1.cpu()
                var[s:e] = (m2 - m1 * m1).clamp_min(0).cpu()
                del plogp
            del logp
        out = []
        off = 0
        for k in counts:
            out.append((
                lp[off: off + k].numpy().copy(),
                am[off: off + k].numpy().copy(),
                None if mu is None else mu[off: off + k].numpy().copy(),
                None if var is None else var[off: off + k].numpy().copy(),
                None if slp is None else slp[off: off + k].numpy().copy(),
            ))
            off += k
        return out

    def score_ids(self, ids, *, batch_size: int = 16, vocab_stats: bool = False,
                  sampling: SamplingConfig | None = None, last: int | None = None,
                  progress: Progress | None = None) -> list[TokenScores]:
        torch = _torch()
        if last is not None and last < 1:
            raise InputError(f"last must be a positive number of tokens, got {last}")
        if sampling is not None and (sampling.top_p is not None or sampling.decay is not None):
            raise InputError("sampling log-probabilities support temperature and top-k only "
                             "(not top-p or a decaying temperature)")
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.bos_id
        seqs = []
        truncated = []
        for x in ids:  # nothing inserted: the first token is context only
            x = [int(v) for v in x]
            truncated.append(len(x) > self.max_length)
            seqs.append(x[: self.max_length])
        results: list[TokenScores | None] = [None] * len(seqs)
        with torch.inference_mode():
            for idx in length_batches([len(x) for x in seqs], batch_size):
                lengths = [len(seqs[i]) for i in idx]
                T = max(lengths)
                inp = torch.full((len(idx), T), pad, dtype=torch.long)
                att = torch.zeros((len(idx), T), dtype=torch.long)
                for r, i in enumerate(idx):
                    inp[r, : lengths[r]] = torch.tensor(seqs[i])
                    att[r, : lengths[r]] = 1
                inp, att = inp.to(self.device), att.to(self.device)
                if T < 2:  # nothing to score in this batch (texts of at most one token)
                    stats = [(np.zeros(0, np.float32), np.zeros(0, bool),
                              np.zeros(0, np.float32) if vocab_stats else None,
                              np.zeros(0, np.float32) if vocab_stats else None,
                              np.zeros(0, np.float32) if sampling is not None else None)] * len(idx)
                else:
                    stats = self._batch_logits_stats(inp, att, lengths, vocab_stats, sampling,
                                                     last)
                for r, i in enumerate(idx):
                    lp, am, mu, var, slp = stats[r]
                    toks = seqs[i][1:] if last is None else seqs[i][1:][-last:]
                    results[i] = TokenScores(
                        token_ids=np.asarray(toks, dtype=np.int64), logprobs=lp,
                        is_argmax=am, vocab_mean=mu, vocab_var=var, truncated=truncated[i],
                        sampling_logprobs=slp,
                    )
                if progress is not None:
                    progress(len(idx))
        return results  # type: ignore[return-value]

    # ------------------------------------------------------------------ sampling
    def generate_ids(self, prompts, sampling: SamplingConfig, *, seed: int, batch_size: int = 32,
                     progress: Progress | None = None,
                     processors: Sequence = (), top_logprobs: int = 0) -> list[Generation]:
        """Sample ``sampling.max_new_tokens`` tokens after each prompt (EOS does not stop a sample,
        as in the paper: every sample has exactly that many new tokens unless the context fills).

        Prompts are grouped by length so a batch needs no padding; each batch draws from its own
        seeded generator state, so a run is reproducible for a given seed and batch size.
        ``processors``: factories ``f(sampling, prompt_length) -> LogitsProcessor`` whose
        processors run after the decaying temperature and before transformers' temperature, top-k
        and top-p warpers (decoding-time defenses such as
        :class:`~leakaudit.defenses.output_filter.MemFreeLM` plug in here).
        ``top_logprobs=k`` fills each Generation's ``top_logprobs`` (see
        :class:`~leakaudit.targets.base.Generation`) from the model's unprocessed logits of the
        same forward passes that drew the tokens.
        """
        torch = _torch()
        from transformers import GenerationConfig, LogitsProcessorList

        top_k_lp = int(top_logprobs or 0)
        if top_k_lp < 0 or top_k_lp > self.vocab_size:
            raise InputError(f"top_logprobs must be between 0 and the vocabulary size "
                             f"{self.vocab_size}, got {top_logprobs}")

        prompts = [[int(v) for v in p] or [self.bos_id] for p in prompts]
        results: list[Generation | None] = [None] * len(prompts)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.bos_id
        # Equal-length prompts only (no padding), at most batch_size per batch.
        batches = length_batches([len(p) for p in prompts], batch_size, max_padding=0.0)
        with torch.inference_mode():
            for b, idx in enumerate(batches):
                plen = len(prompts[idx[0]])
                new = min(sampling.max_new_tokens, self.max_length - plen)
                if new < 1:
                    raise InputError(f"prompt of {plen} tokens leaves no room in the model's "
                                     f"context of {self.max_length} tokens")
                inp = torch.tensor([prompts[i] for i in idx], dtype=torch.long, device=self.device)
                procs = LogitsProcessorList()
                if sampling.decay is not None:
                    procs.append(decaying_temperature_processor(*sampling.decay, prompt_length=plen))
                for make in processors:
                    procs.append(make(sampling, plen))
                cfg = explicit_generation_config(sampling, max_new_tokens=new, pad_token_id=pad,
                                                 bos_token_id=self.bos_id)
                torch.manual_seed(int(seed) * 1_000_003 + b)
                # generate() fills every field left at its default from the model's own
                # generation_config (a shipped generation_config.json: repetition_penalty,
                # no_repeat_ngram_size, eos_token_id, ...). Swap in a blank one for the call so
                # the sampler is exactly the one asked for.
                shipped = self.model.generation_config
                self.model.generation_config = GenerationConfig()
                extra = ({"return_dict_in_generate": True, "output_logits": True}
                         if top_k_lp else {})
                try:
                    out = self.model.generate(
                        input_ids=inp, attention_mask=torch.ones_like(inp), generation_config=cfg,
                        logits_processor=procs, **extra, **_cache_kwargs(self.model),
                    )
                finally:
                    self.model.generation_config = shipped
                tops: list | None = None
                if top_k_lp:
                    # [steps, batch, k]: log-softmax of the raw logits, then the k largest
                    steps = [torch.log_softmax(lg.float(), dim=-1).topk(top_k_lp, dim=-1)
                             for lg in out.logits]
                    tops = [[{int(t): float(v) for t, v in zip(st.indices[r].tolist(),
                                                                  st.values[r].tolist())}
                             for st in steps] for r in range(len(idx))]
                    out = out.sequences
                for r, i in enumerate(idx):
                    new_ids = out[r, plen:].tolist()
                    results[i] = Generation(
                        prompt_ids=prompts[i], new_ids=new_ids,
                        text=self.decode(prompts[i] + new_ids),
                        prompt_text=self.decode(prompts[i]),
                        meta={"batch": b, "batch_size": len(idx), "truncated": new < sampling.max_new_tokens},
                        top_logprobs=None if tops is None else tops[r],
                    )
                if progress is not None:
                    progress(len(idx))
        return results  # type: ignore[return-value]


def load_hf(rest: str, *, name: str | None = None, device: str = "cpu", dtype: str = "float32",
            allow_download: bool = False) -> HFCausalLM:
    """The ``hf:`` backend of :func:`leakaudit.targets.load_target`."""
    return HFCausalLM.load(rest, name=name, device=device, dtype=dtype,
                           allow_download=allow_download)


def load_gguf(rest: str, *, name: str | None = None, device: str = "cpu", dtype: str = "float32",
              allow_download: bool = False) -> HFCausalLM:
    """The ``gguf:`` backend: a GGUF file, dequantized by transformers (``leakaudit[gguf]``)."""
    return HFCausalLM.load(rest, name=name, device=device, dtype=dtype,
                           allow_download=allow_download, gguf=True)
