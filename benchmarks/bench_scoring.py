"""Scoring throughput: leakaudit's batched path vs the reference pattern of the official code.

The official Carlini et al. extraction code scores each sample with three separate, unbatched
forward passes (target, reference, target on the lowercased text), each computing the full
logits and a cross-entropy loss. leakaudit runs one batched pass per model and text variant and
applies the LM head over chunks of positions, never holding batch × sequence × vocabulary floats.

Both paths score the same token sequences with the same GPT-2-small-sized models (randomly
initialized: the cost does not depend on the weights; nothing can be downloaded here) in one run,
and the script prints both rates, their ratio, the achieved model FLOP rate as a fraction of the
fp32 matmul rate measured in the same run, and each path's peak memory (in a fresh subprocess).

    python benchmarks/bench_scoring.py [--samples 24] [--tokens 256] [--batch 8]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def build_models(seed: int = 0):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    target = GPT2LMHeadModel(GPT2Config(n_layer=12, n_embd=768, n_head=12, vocab_size=50257,
                                        n_positions=1024)).eval()
    ref = GPT2LMHeadModel(GPT2Config(n_layer=6, n_embd=768, n_head=12, vocab_size=50257,
                                     n_positions=1024)).eval()
    return target, ref


def forward_flops(model, n_tokens: int, seq_len: int) -> float:
    """2·(non-embedding parameters) + LM head (2·d·V) + attention (2·2·L·T·d, causal ~half counted
    as full, as is conventional) per token."""
    cfg = model.config
    params = sum(p.numel() for n, p in model.named_parameters() if "wte" not in n and "wpe" not in n)
    per_token = 2 * params + 2 * cfg.n_embd * cfg.vocab_size + 4 * cfg.n_layer * seq_len * cfg.n_embd
    return per_token * n_tokens


def matmul_rate(seconds: float = 3.0) -> float:
    import torch

    a = torch.randn(2048, 2048)
    b = torch.randn(2048, 2048)
    torch.mm(a, b)
    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        torch.mm(a, b)
        n += 1
    return n * 2 * 2048 ** 3 / (time.perf_counter() - t0)


def make_inputs(n: int, tokens: int, seed: int = 1):
    import numpy as np

    rng = np.random.default_rng(seed)
    orig = rng.integers(1, 50257, size=(n, tokens)).tolist()
    lower = rng.integers(1, 50257, size=(n, tokens)).tolist()  # stand-in for the lowercased text
    return orig, lower


def reference_path(target, ref, orig, lower):
    """The official code's calculatePerplexity, three times per sample."""
    import torch

    def ppl(model, ids):
        x = torch.tensor([ids])
        with torch.no_grad():
            loss = model(x, labels=x).loss
        return torch.exp(loss).item()

    out = []
    for o, lw in zip(orig, lower):
        out.append((ppl(target, o), ppl(ref, o), ppl(target, lw)))
    return out


def batched_path(target, ref, orig, lower, batch):
    from leakaudit.targets.hf import HFCausalLM

    class _Tok:  # token ids are given directly; only pad/bos/len are read
        pad_token_id = 50256
        bos_token_id = 50256
        eos_token_id = 50256

        def __len__(self):
            return 50257

    t = HFCausalLM(target, _Tok(), name="target")
    r = HFCausalLM(ref, _Tok(), name="ref")
    a = t.score_ids(orig, batch_size=batch)
    b = r.score_ids(orig, batch_size=batch)
    c = t.score_ids(lower, batch_size=batch)
    return a, b, c


def run_one(path: str, samples: int, tokens: int, batch: int) -> dict:
    import torch

    torch.manual_seed(0)
    target, ref = build_models()
    orig, lower = make_inputs(samples, tokens)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # warm-up on one sample so first-call overheads do not count
    if path == "reference":
        reference_path(target, ref, orig[:1], lower[:1])
        t0 = time.perf_counter()
        reference_path(target, ref, orig, lower)
    else:
        batched_path(target, ref, orig[:1], lower[:1], batch)
        t0 = time.perf_counter()
        batched_path(target, ref, orig, lower, batch)
    dt = time.perf_counter() - t0
    flops = (2 * forward_flops(target, samples * tokens, tokens)
             + forward_flops(ref, samples * tokens, tokens))
    return {"path": path, "seconds": dt, "samples_per_s": samples / dt, "flops_per_s": flops / dt,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "rss_before_mb": rss0 / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=24)
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--one", choices=["reference", "batched"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.samples, args.tokens, args.batch)))
        return
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"{args.samples} samples × {args.tokens} tokens; GPT-2 small target + 6-layer reference")
    mm = matmul_rate()
    res = {}
    for path in ("reference", "batched", "reference", "batched"):  # interleaved: noisy machines
        out = subprocess.run([sys.executable, __file__, "--one", path, "--samples", str(args.samples),
                              "--tokens", str(args.tokens), "--batch", str(args.batch)],
                             check=True, capture_output=True, text=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        best = res.get(path)
        if best is None or r["samples_per_s"] > best["samples_per_s"]:
            res[path] = r
    mm2 = matmul_rate()
    mm = max(mm, mm2)
    full_logits_mb = args.batch * args.tokens * 50257 * 4 / 2**20
    print(f"fp32 matmul rate (2048², best of two windows): {mm / 1e9:.1f} GFLOP/s")
    for path in ("reference", "batched"):
        r = res[path]
        print(f"{path:>9}: {r['samples_per_s']:.3f} samples/s, {r['flops_per_s'] / 1e9:.1f} GFLOP/s "
              f"= {r['flops_per_s'] / mm:.0%} of matmul rate, peak RSS {r['peak_rss_mb']:.0f} MB")
    print(f"ratio batched / reference: {res['batched']['samples_per_s'] / res['reference']['samples_per_s']:.2f}x")
    print(f"(full log-softmax of one batch would be {full_logits_mb:.0f} MB; batched peak RSS "
          f"{res['batched']['peak_rss_mb']:.0f} MB includes both models' weights)")


if __name__ == "__main__":
    main()
