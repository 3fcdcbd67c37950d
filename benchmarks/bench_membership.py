"""Cost of the LLM membership attacks: shared cached signals vs recomputing per attack.

Seven attacks (LOSS, zlib, lowercase, reference ratio, Min-K% at k = 0.1 and 0.2, Min-K%++) over
the same documents. Shared: one target pass (with vocab statistics), one lowercase pass and one
reference pass per document, then numpy. Naive: every attack runs the passes it needs itself.
Forward passes are counted (documents run through a model) and printed with wall times.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/bench_membership.py [--docs 200]

Model weights do not change the cost, so the models are randomly initialized GPT-2s of the lab
target's size (2 layers × 128, 256-token context) with a BPE tokenizer fitted on the documents.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=200)
    args = ap.parse_args()

    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from leakaudit.attacks.membership.llm import (LossAttack, LowercaseAttack, MinKAttack,
                                                  MinKPlusPlusAttack, ReferenceAttack, ZlibAttack)
    from leakaudit.lab.corpus import LabCorpusConfig, generate_lab_corpus
    from leakaudit.signals.membership_lm import compute_lm_signals
    from leakaudit.targets.hf import HFCausalLM
    from leakaudit.training.lm import train_tokenizer

    corpus = generate_lab_corpus(LabCorpusConfig(n_docs=args.docs, n_heldout=10, seed=0))
    texts = [d["text"] for d in corpus.train][: args.docs]
    tok = train_tokenizer(texts, vocab_size=1024)
    tmp = Path(tempfile.mkdtemp())
    models = {}
    for name, emb in (("target", 128), ("reference", 96)):
        torch.manual_seed(0)
        m = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=256, n_embd=emb, n_layer=2,
                                       n_head=4, bos_token_id=tok.bos_token_id,
                                       eos_token_id=tok.eos_token_id))
        m.save_pretrained(tmp / name)
        tok.save_pretrained(tmp / name)
        models[name] = HFCausalLM.load(tmp / name, name=name)
    target, ref = models["target"], models["reference"]
    attacks = [LossAttack(), ZlibAttack(), LowercaseAttack(), ReferenceAttack(reference="ref"),
               MinKAttack(k=0.1), MinKAttack(k=0.2), MinKPlusPlusAttack(k=0.2)]
    bs = 16

    # shared: one signals object for all seven attacks
    t0 = time.perf_counter()
    sig = compute_lm_signals(target, texts, references={"ref": ref}, lowercase=True,
                             vocab_stats=True, cache_dir=None, batch_size=bs)
    shared_scores = [a.score(sig) for a in attacks]
    t_shared = time.perf_counter() - t0
    shared_passes = sum(sig.forward_passes.values())

    # naive: each attack computes only what it needs, from scratch, with no cache
    t0 = time.perf_counter()
    naive_passes = 0
    naive_scores = []
    for a in attacks:
        s = compute_lm_signals(target, texts, references={"ref": ref} if "reference" in a.needs else {},
                               lowercase="lowercase" in a.needs, vocab_stats="vocab_stats" in a.needs,
                               cache_dir=None, batch_size=bs)
        naive_passes += sum(s.forward_passes.values())
        naive_scores.append(a.score(s))
    t_naive = time.perf_counter() - t0
    for x, y in zip(shared_scores, naive_scores):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)

    # a second audit of the same documents with the on-disk signal cache: no forward pass
    cache = tmp / "cache"
    compute_lm_signals(target, texts, references={"ref": ref}, lowercase=True, vocab_stats=True,
                       cache_dir=cache, batch_size=bs)
    t0 = time.perf_counter()
    sig2 = compute_lm_signals(target, texts, references={"ref": ref}, lowercase=True,
                              vocab_stats=True, cache_dir=cache, batch_size=bs)
    _ = [a.score(sig2) for a in attacks]
    t_cached = time.perf_counter() - t0

    n = len(texts)
    print(f"documents: {n}, attacks: {len(attacks)} ({', '.join(a.label for a in attacks)})")
    print(f"shared signals : {shared_passes} document passes = {shared_passes / n:.1f} per document, "
          f"{t_shared:.2f}s")
    print(f"per-attack     : {naive_passes} document passes = {naive_passes / n:.1f} per document, "
          f"{t_naive:.2f}s")
    print(f"cached rerun   : {sum(sig2.forward_passes.values())} document passes, {t_cached:.2f}s")
    print(f"speed-up: {t_naive / t_shared:.1f}x wall, {naive_passes / shared_passes:.1f}x passes "
          "(same scores)")


if __name__ == "__main__":
    main()
