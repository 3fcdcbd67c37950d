"""Random-secret canary sentences for causal LMs and their scores (the LM world of the DP audit).

Canary i is the sentence ``"{prefix} {i} is {secret_i}."`` (Carlini et al., "The Secret Sharer",
USENIX Security 2019), ``secret_i`` a sequence of ``length`` symbols drawn uniformly and
independently from a public ``alphabet`` (by default :data:`SECRET_WORDS`, 128 common English
words: 8 words = 56 bits, so no two canaries share their secret's word pairs by chance more than
rarely). Each canary is one document (one privacy unit of DP-SGD with document packing).

**Score** (higher = more likely trained on): the secret's log-probability given its prompt minus
a *reference*: the mean log-probability of ``n_reference`` candidate secrets that were never
used, namely the same secret's symbols in other random orders::

    score_i = log p(secret_i | prompt_i) − mean_r log p(shuffle_r(secret_i) | prompt_i)

A model that never saw canary i has no reason to prefer its order of the symbols over another
(the canaries are drawn independently), so the score is centred near 0 whatever the symbols'
frequencies; a model trained on it has learned its order (the transitions w_j → w_{j+1}), which
the reorderings do not share. The reference removes the symbol-frequency variance that made the
raw log-probability a weak statistic for a tiny LM (a canary's secret is seen a few times at
most). :func:`secret_logprobs` is the raw term, :func:`secret_scores` the score; both follow the
model's own tokenizer (nothing inserted; the secret's tokens are those after the prompt's).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: The default secret alphabet: 128 common English words (single tokens for GPT-2-style
#: tokenizers trained on English; the lab tokenizer is trained on them).
SECRET_WORDS: tuple[str, ...] = tuple("""
apple river stone cloud table green horse music paper light night water black bread chair dream
field glass heart house juice knife lemon metal north ocean piano queen radio sugar tiger union
voice whale yellow zebra anchor basket candle dollar engine forest garden hammer island jacket
kettle ladder magnet needle orange pencil rabbit saddle tunnel violet window silver copper butter
castle dragon falcon ginger harbor insect jungle lizard marble nectar oyster parrot rocket salmon
tomato velvet walnut button camera donkey feather guitar helmet iris jelly koala lantern mango
nickel olive pepper quartz ribbon spider timber umbrella valley wagon yacht badger cactus desert
eagle fossil glacier hazel igloo jasmine kayak lotus meadow nutmeg orchid pebble quiver raven
sponge thistle beacon cobalt dune ember fjord grove husk ivory jade kiln
""".split())
assert len(SECRET_WORDS) == 128 and len(set(SECRET_WORDS)) == 128


@dataclass(frozen=True)
class SecretCanaries:
    prompts: tuple[str, ...]
    secrets: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.secrets)

    def texts(self) -> list[str]:
        return [f"{p} {s}." for p, s in zip(self.prompts, self.secrets)]

    def fingerprint(self) -> str:
        return hashlib.sha256("\n".join(self.texts()).encode()).hexdigest()[:16]


def secret_canaries(m: int, *, seed: int, length: int = 8, alphabet: Sequence[str] = SECRET_WORDS,
                    prefix: str = "The access code of account") -> SecretCanaries:
    """m canaries with independent uniform secrets of ``length`` symbols from ``alphabet``.

    >>> c = secret_canaries(2, seed=0, length=4, alphabet="0123456789")
    >>> c.texts()
    ['The access code of account 0 is 8 6 5 2.', 'The access code of account 1 is 3 0 0 0.']
    >>> len(secret_canaries(3, seed=0).secrets[0].split())
    8
    """
    if m < 1 or length < 2 or len(alphabet) < 2:
        raise ValueError(f"need m >= 1, length >= 2 and >= 2 symbols; got {m}, {length}, {len(alphabet)}")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(alphabet), (m, length))
    return SecretCanaries(prompts=tuple(f"{prefix} {i} is" for i in range(m)),
                          secrets=tuple(" ".join(alphabet[j] for j in row) for row in idx))


def reordered_secrets(canaries: SecretCanaries, n_reference: int, *, seed: int) -> list[list[str]]:
    """For each canary, ``n_reference`` random reorderings of its secret's symbols (seeded; an
    order equal to the secret itself is redrawn, unless all symbols are equal).

    >>> c = secret_canaries(1, seed=0, length=4, alphabet="0123456789")
    >>> reordered_secrets(c, 2, seed=0)
    [['5 8 6 2', '2 5 6 8']]
    """
    rng = np.random.default_rng(seed)
    out = []
    for s in canaries.secrets:
        words = s.split(" ")
        refs = []
        for _ in range(n_reference):
            for _try in range(20):
                cand = " ".join(words[j] for j in rng.permutation(len(words)))
                if cand != s:
                    break
            refs.append(cand)
        out.append(refs)
    return out


def secret_logprobs(model, tokenizer, canaries: SecretCanaries, *, batch_size: int = 64) -> np.ndarray:
    """Σ log p(secret tokens | prompt) per canary, float64 (m,).

    Prompt and secret are tokenized together (as the model saw the canary); the secret's tokens
    are those after the prompt's."""
    return _logprobs(model, tokenizer, list(canaries.prompts), list(canaries.secrets), batch_size)


def secret_scores(model, tokenizer, canaries: SecretCanaries, *, n_reference: int = 4, seed: int = 0,
                  batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(score, raw) per canary: ``score`` = raw secret log-prob minus the mean over
    ``n_reference`` reorderings of the secret (see the module docstring); higher = more likely
    trained on. ``n_reference = 0`` gives the raw log-prob as the score."""
    raw = secret_logprobs(model, tokenizer, canaries, batch_size=batch_size)
    if n_reference == 0:
        return raw, raw
    refs = reordered_secrets(canaries, n_reference, seed=seed)
    prompts = [p for p in canaries.prompts for _ in range(n_reference)]
    lp = _logprobs(model, tokenizer, prompts, [r for rs in refs for r in rs], batch_size)
    return raw - lp.reshape(len(canaries), n_reference).mean(1), raw


def _logprobs(model, tokenizer, prompts: list[str], secrets: list[str], batch_size: int) -> np.ndarray:
    import torch

    out = np.empty(len(secrets))
    texts = [f"{p} {s}." for p, s in zip(prompts, secrets)]
    device = next(model.parameters()).device
    model.eval()
    for i in range(0, len(texts), batch_size):
        chunk = range(i, min(i + batch_size, len(texts)))
        enc = [tokenizer(texts[j])["input_ids"] for j in chunk]
        n_prompt = [len(tokenizer(prompts[j])["input_ids"]) for j in chunk]
        T = max(len(e) for e in enc)
        ids = torch.zeros((len(enc), T), dtype=torch.long)
        att = torch.zeros((len(enc), T), dtype=torch.long)
        for r, e in enumerate(enc):
            ids[r, :len(e)] = torch.tensor(e)
            att[r, :len(e)] = 1
        with torch.no_grad():
            logits = model(input_ids=ids.to(device), attention_mask=att.to(device)).logits.double().cpu()
        lp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:, None])[..., 0]
        for r, (e, k) in enumerate(zip(enc, n_prompt)):
            # token t (t >= k) is predicted at position t - 1; the final "." is not part of the secret
            out[chunk[r]] = float(lp[r, k - 1:len(e) - 2].sum())
    return out
