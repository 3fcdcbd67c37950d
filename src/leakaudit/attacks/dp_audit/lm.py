"""Random-secret canary sentences for causal LMs and their scores (the LM world of the DP audit).

Canary i is the sentence ``"{prefix} {i} is {secret_i}."`` with ``secret_i`` a string of
``n_digits`` uniformly random digits (Carlini et al., "The Secret Sharer", USENIX Security 2019):
the prefix names the canary, so only a model that saw canary i can know its secret. Each canary is
one document (one privacy unit of DP-SGD with document packing).

score_i = log p(secret_i | "{prefix} {i} is") summed over the secret's tokens (natural log),
higher = more likely trained on. Secrets are uniform, so without training on canary i every
secret of the same length is equally likely a priori; the exposure of Carlini et al. is a
monotone function of the same rank. (Tokenization follows the model's own tokenizer; nothing is
inserted.)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np


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


def secret_canaries(m: int, *, seed: int, n_digits: int = 4,
                    prefix: str = "The access code of account") -> SecretCanaries:
    """m canaries with independent uniform ``n_digits``-digit secrets.

    >>> c = secret_canaries(2, seed=0)
    >>> c.texts()
    ['The access code of account 0 is 8 6 5 2.', 'The access code of account 1 is 3 0 0 0.']
    """
    if m < 1 or n_digits < 1:
        raise ValueError(f"need m >= 1 and n_digits >= 1; got {m}, {n_digits}")
    rng = np.random.default_rng(seed)
    digits = rng.integers(0, 10, (m, n_digits))
    return SecretCanaries(prompts=tuple(f"{prefix} {i} is" for i in range(m)),
                          secrets=tuple(" ".join(str(d) for d in row) for row in digits))


def secret_logprobs(model, tokenizer, canaries: SecretCanaries, *, batch_size: int = 64) -> np.ndarray:
    """Σ log p(secret tokens | prompt) per canary, float64 (m,); higher = more likely trained on.

    Prompt and secret are tokenized together (as the model saw the canary); the secret's tokens
    are those after the prompt's tokens."""
    import torch

    out = np.empty(len(canaries))
    texts = canaries.texts()
    model.eval()
    for i in range(0, len(texts), batch_size):
        chunk = range(i, min(i + batch_size, len(texts)))
        enc = [tokenizer(texts[j])["input_ids"] for j in chunk]
        n_prompt = [len(tokenizer(canaries.prompts[j])["input_ids"]) for j in chunk]
        T = max(len(e) for e in enc)
        ids = torch.zeros((len(enc), T), dtype=torch.long)
        att = torch.zeros((len(enc), T), dtype=torch.long)
        for r, e in enumerate(enc):
            ids[r, :len(e)] = torch.tensor(e)
            att[r, :len(e)] = 1
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=att).logits.double()
        lp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:, None])[..., 0]
        for r, (e, k) in enumerate(zip(enc, n_prompt)):
            # token t (t >= k) is predicted at position t - 1; the final "." is not part of the secret
            out[chunk[r]] = float(lp[r, k - 1:len(e) - 2].sum())
    return out
