"""Small fixtures built to leak, shared by the membership tests (fast: a few seconds each)."""

from __future__ import annotations

import numpy as np

WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november "
         "oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu red green "
         "blue amber river stone cloud maple cedar pine").split()


def random_docs(n: int, seed: int, n_words: int = 14) -> list[str]:
    rng = np.random.default_rng(seed)
    docs = []
    for _ in range(n):
        words = rng.choice(WORDS, n_words)
        words[0] = words[0].capitalize()
        docs.append(" ".join(words) + f". Code {rng.integers(1000, 9999)}.")
    return docs


def train_leaky_lms(tmp_path, *, n: int = 40, seed: int = 0):
    """A target LM trained hard on ``members``, a reference on other docs of the same generator;
    ``nonmembers`` come from the same generator too. Returns (target, reference, members, nonmembers)."""
    from leakaudit.targets.hf import HFCausalLM
    from leakaudit.training.lm import LMSpec, train_causal_lm, train_tokenizer

    members = random_docs(n, seed)
    nonmembers = random_docs(n, seed + 1)
    ref_docs = random_docs(n, seed + 2)
    tok = train_tokenizer(members + ref_docs, vocab_size=300)
    spec = LMSpec(n_layer=2, n_embd=48, n_head=2, n_ctx=48, epochs=30, lr=3e-3, batch_size=8)
    train_causal_lm(members, tok, spec, seed=seed, out_dir=tmp_path / "target")
    rspec = LMSpec(n_layer=2, n_embd=48, n_head=2, n_ctx=48, epochs=30, lr=3e-3, batch_size=8)
    train_causal_lm(ref_docs, tok, rspec, seed=seed + 1, out_dir=tmp_path / "reference")
    return (HFCausalLM.load(tmp_path / "target", name="target"),
            HFCausalLM.load(tmp_path / "reference", name="reference"), members, nonmembers)
