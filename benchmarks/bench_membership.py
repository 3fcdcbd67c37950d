"""Cost of the LLM membership attacks: shared cached signals vs recomputing per attack.

Seven attacks (LOSS, zlib, lowercase, reference ratio, Min-K% at k = 0.1 and 0.2, Min-K%++) over
the same documents, three ways, side by side in one run:

- **shared** (leakaudit): one target pass (with vocab statistics), one lowercase pass and one
  reference pass per document, batched, then numpy for every attack;
- **per attack, batched**: every attack runs the passes it needs itself through leakaudit's own
  batched scorer (isolates what sharing saves: 9 passes instead of 3, so at most ~3×);
- **per attack, reference pattern**: every attack runs the passes it needs itself the way the
  official Min-K% / Min-K%++ code scores a text — one document at a time (batch size 1), the full
  ``log_softmax`` over the vocabulary, then a gather (and softmax moments for Min-K%++).

Forward passes are counted (documents run through a model) and printed with wall times; the scores
of both per-attack paths are checked against the shared ones.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/bench_membership.py [--docs 200]
        [--shape lab|pythia-70m]

Model weights do not change the cost, so the models are randomly initialized, with a BPE tokenizer
fitted on the documents. ``--shape lab`` (default): GPT-2s of the lab target's size (2 layers ×
128, vocabulary 1,024, 256-token context). ``--shape pythia-70m``: GPT-NeoX models of Pythia-70m's
shape (6 layers × 512, 8 heads, vocabulary 50,304), the size of a real small audit target, where
the LM head and the vocabulary-wide softmax dominate a pass. ``--model PATH``: a real model (an
HF directory or a ``.gguf`` file, e.g. the SmolLM2-135M of ``scripts/get_real_model.py``) as the
target and, for the reference ratio, as its own reference (no second real model ships offline).

    python benchmarks/bench_membership.py --model .cache/real-models/smollm2-135m/hf --docs 100
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
    ap.add_argument("--shape", choices=["lab", "pythia-70m"], default="lab")
    ap.add_argument("--model", help="a real model (HF directory or .gguf file)")
    args = ap.parse_args()

    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, GPTNeoXConfig, GPTNeoXForCausalLM

    from leakaudit.attacks.membership.llm import (LossAttack, LowercaseAttack, MinKAttack,
                                                  MinKPlusPlusAttack, ReferenceAttack, ZlibAttack)
    from leakaudit.lab.corpus import LabCorpusConfig, generate_lab_corpus
    from leakaudit.signals.membership_lm import compute_lm_signals
    from leakaudit.targets.hf import HFCausalLM
    from leakaudit.training.lm import train_tokenizer

    corpus = generate_lab_corpus(LabCorpusConfig(n_docs=max(args.docs, 200), n_heldout=10, seed=0))
    texts = [d["text"] for d in corpus.train][: args.docs]
    tok = train_tokenizer(texts, vocab_size=1024)
    tmp = Path(tempfile.mkdtemp())
    models = {}
    if args.model:
        from leakaudit.targets import load_target

        models["target"] = models["reference"] = load_target(args.model, name="target")
    for name, emb in (() if args.model else (("target", 128), ("reference", 96))):
        torch.manual_seed(0)
        if args.shape == "lab":
            m = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=256, n_embd=emb,
                                           n_layer=2, n_head=4, bos_token_id=tok.bos_token_id,
                                           eos_token_id=tok.eos_token_id))
        else:  # Pythia-70m: the tokenizer uses the first ids of a 50,304-row embedding
            m = GPTNeoXForCausalLM(GPTNeoXConfig(
                vocab_size=50304, hidden_size=512, num_hidden_layers=6, num_attention_heads=8,
                intermediate_size=2048, max_position_embeddings=2048, rotary_pct=0.25,
                use_parallel_residual=True, tie_word_embeddings=False,
                bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id))
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

    # reference pattern: each attack, each document alone, full log-softmax
    t0 = time.perf_counter()
    ref_scores, ref_passes = reference_pattern(attacks, texts, target, ref)
    t_ref = time.perf_counter() - t0
    for a, x, y in zip(attacks, shared_scores, ref_scores):
        np.testing.assert_allclose(x, y, rtol=1e-3, atol=1e-3, err_msg=a.label)

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
    print(f"model shape: {args.model or args.shape}, vocabulary {target.vocab_size}")
    print(f"documents: {n}, attacks: {len(attacks)} ({', '.join(a.label for a in attacks)})")
    print(f"shared signals : {shared_passes} document passes = {shared_passes / n:.1f} per document, "
          f"{t_shared:.2f}s")
    print(f"per-attack     : {naive_passes} document passes = {naive_passes / n:.1f} per document, "
          f"{t_naive:.2f}s")
    print(f"per-attack, reference pattern (batch 1, full log-softmax): {ref_passes} document "
          f"passes = {ref_passes / n:.1f} per document, {t_ref:.2f}s")
    print(f"cached rerun   : {sum(sig2.forward_passes.values())} document passes, {t_cached:.2f}s")
    print(f"speed-up vs per-attack batched: {t_naive / t_shared:.1f}x wall, "
          f"{naive_passes / shared_passes:.1f}x passes (same scores)")
    print(f"speed-up vs per-attack reference pattern: {t_ref / t_shared:.1f}x wall, "
          f"{ref_passes / shared_passes:.1f}x passes (same scores to 1e-3)")


def reference_pattern(attacks, texts, target, ref):
    """Every attack recomputes what it needs, one document at a time, as the official Min-K%
    and Min-K%++ scripts do: the tokenizer's default encoding (truncated to the model's context like leakaudit),
    one forward pass, full-vocabulary log-softmax, gather. Returns (scores per attack, passes).
    (The official scripts tokenize with the tokenizer's default, as leakaudit now does.)"""
    import zlib

    import numpy as np
    import torch
    import torch.nn.functional as F

    def token_stats(lm, text, moments=False):
        ids = lm.tokenizer(text)["input_ids"]  # the tokenizer's default, as the official code
        ids = torch.tensor(ids[: lm.max_length]).unsqueeze(0)
        with torch.inference_mode():
            logits = lm.model(ids).logits[0, :-1].float()
            logp = F.log_softmax(logits, dim=-1)
            tok = logp.gather(-1, ids[0, 1:].unsqueeze(-1)).squeeze(-1)
            if not moments:
                return tok.numpy().astype(np.float64), None, None
            p = logp.exp()
            mu = (p * logp).sum(-1)
            var = (p * logp.square()).sum(-1) - mu.square()
            return tok.numpy().astype(np.float64), mu.numpy(), var.numpy()

    def min_k(lp, k):
        return np.sort(lp)[: max(1, int(len(lp) * k))].mean()  # the official k_length

    passes = 0
    out = []
    for a in attacks:
        scores = []
        for text in texts:
            if a.name == "min_k_pp":
                lp, mu, var = token_stats(target, text, moments=True)
                passes += 1
                z = (lp - mu) / np.sqrt(np.maximum(var, 1e-12))
                scores.append(min_k(z, a.k))
                continue
            lp, _, _ = token_stats(target, text)
            passes += 1
            if a.name == "loss":
                scores.append(lp.mean())
            elif a.name == "zlib":
                scores.append(lp.mean() / len(zlib.compress(text.encode("utf-8"))))
            elif a.name == "lowercase":
                passes += 1
                low = token_stats(target, text.lower())[0].mean()  # log PPL ratio (Carlini 2021)
                scores.append(max(-low, 0.0) / max(-lp.mean(), 1e-6))
            elif a.name == "reference":
                passes += 1
                scores.append(lp.mean() - token_stats(ref, text)[0].mean())
            elif a.name == "min_k":
                scores.append(min_k(lp, a.k))
            else:
                raise ValueError(f"no reference pattern for {a.name}")
        out.append(np.array(scores))
    return out, passes


if __name__ == "__main__":
    main()
