"""The three generation strategies of Carlini et al. 2021 (§4.1, §5.1).

- ``top_k``: from the BOS token alone, top-k sampling with k = 40 (the paper's "Top-n").
- ``temperature``: from BOS, softmax temperature decaying linearly from 10 to 1 over the first 20
  generated tokens, then plain sampling (§5.1.1). The high early temperature diversifies the
  prefixes; once t = 1 the model can follow a memorized path.
- ``internet``: prefixes of 5–10 tokens cut from a user-supplied text source that is *not* the
  training data (the paper used Common Crawl), then top-k sampling (§5.1.2).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from leakaudit.registry import Registry
from leakaudit.errors import LeakauditError
from leakaudit.targets.base import LanguageModel, SamplingConfig


@dataclass(frozen=True)
class SamplerSpec:
    name: str
    sampling: SamplingConfig
    needs_prompts: bool
    description: str


SAMPLERS: Registry[SamplerSpec] = Registry("sampler")


def sampler_spec(name: str, *, max_new_tokens: int = 256, top_k: int = 40) -> SamplerSpec:
    if name == "top_k":
        return SamplerSpec(name, SamplingConfig(max_new_tokens=max_new_tokens, top_k=top_k), False,
                           f"top-k (k={top_k}) from BOS")
    if name == "temperature":
        return SamplerSpec(name, SamplingConfig(max_new_tokens=max_new_tokens, top_k=None,
                                                decay=(10.0, 1.0, 20)), False,
                           "temperature 10→1 over the first 20 tokens, from BOS")
    if name == "internet":
        return SamplerSpec(name, SamplingConfig(max_new_tokens=max_new_tokens, top_k=top_k), True,
                           f"top-k (k={top_k}) after 5–10-token prefixes from a text source")
    SAMPLERS.get(name)  # raises a KeyError with suggestions
    raise AssertionError


for _n in ("top_k", "temperature", "internet"):
    SAMPLERS.register(_n)(sampler_spec(_n))


def internet_prompts(
    model: LanguageModel,
    source_texts: Sequence[str],
    n: int,
    *,
    seed: int,
    min_tokens: int = 5,
    max_tokens: int = 10,
) -> list[list[int]]:
    """``n`` prompts of ``min_tokens``..``max_tokens`` consecutive tokens, each from a random
    position of a random source text (seeded). Texts shorter than ``min_tokens`` are never used."""
    if not 1 <= min_tokens <= max_tokens:
        raise ValueError("need 1 <= min_tokens <= max_tokens")
    rng = random.Random(seed)
    toks = [t for t in model.tokenize(list(source_texts)) if len(t) >= min_tokens]
    if not toks:
        raise LeakauditError(f"no prompt source text has at least {min_tokens} tokens")
    prompts = []
    for _ in range(n):
        t = toks[rng.randrange(len(toks))]
        length = rng.randint(min_tokens, min(max_tokens, len(t)))
        start = rng.randrange(len(t) - length + 1)
        prompts.append(t[start: start + length])
    return prompts
