"""Scoring throughput: leakaudit's batched path vs the reference pattern of the official code.

The official Carlini et al. extraction code scores each sample with three separate, unbatched
forward passes (target, reference, target on the lowercased text), each computing the full
logits and a cross-entropy loss. leakaudit runs one batched pass per model and text variant and
applies the LM head over chunks of positions, never holding batch × sequence × vocabulary floats.

Both paths score the same token sequences with the same GPT-2-small-sized models (randomly
initialized: the cost does not depend on the weights; nothing can be downloaded here) in one run,
and the script prints both rates, their ratio, the achieved model FLOP rate as a fraction of the
fp32 matmul rate measured in the same run, and each path's peak memory (in a fresh subprocess).

With ``--model PATH`` (an HF directory or a ``.gguf`` file, e.g. the SmolLM2-135M that
``scripts/get_real_model.py`` saves) both paths score with that real model as target and as its
own reference (no second real model ships offline); token ids are drawn from its vocabulary.

    python benchmarks/bench_scoring.py [--samples 24] [--tokens 256] [--batch 8]
    python benchmarks/bench_scoring.py --model .cache/real-models/smollm2-135m/hf --batch 4
    python benchmarks/bench_scoring.py --device cuda --samples 256 --batch 32      # a GPU
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


MODEL: str | None = None  #: --model: a real model instead of the random GPT-2 pair
DEVICE = "cpu"  #: --device


def sync() -> None:
    if DEVICE.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def build_models(seed: int = 0):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    if MODEL:
        from leakaudit.targets import load_target

        lm = load_target(MODEL, name="target", device=DEVICE)
        return lm.model, lm.model
    target = GPT2LMHeadModel(GPT2Config(n_layer=12, n_embd=768, n_head=12, vocab_size=50257,
                                        n_positions=1024)).eval().to(DEVICE)
    ref = GPT2LMHeadModel(GPT2Config(n_layer=6, n_embd=768, n_head=12, vocab_size=50257,
                                     n_positions=1024)).eval().to(DEVICE)
    return target, ref


def forward_flops(model, n_tokens: int, seq_len: int) -> float:
    """2·(non-embedding parameters) + LM head (2·d·V) + attention (2·2·L·T·d, causal ~half counted
    as full, as is conventional) per token."""
    cfg = model.config
    d = getattr(cfg, "n_embd", None) or cfg.hidden_size
    layers = getattr(cfg, "n_layer", None) or cfg.num_hidden_layers
    emb = model.get_input_embeddings().weight
    params = sum(p.numel() for n, p in model.named_parameters()
                 if p is not emb and "wpe" not in n and "lm_head" not in n)
    per_token = 2 * params + 2 * d * cfg.vocab_size + 4 * layers * seq_len * d
    return per_token * n_tokens


def matmul_rate(seconds: float = 3.0) -> float:
    import torch

    a = torch.randn(2048, 2048, device=DEVICE)
    b = torch.randn(2048, 2048, device=DEVICE)
    torch.mm(a, b)
    sync()
    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        torch.mm(a, b)
        n += 1
    sync()
    return n * 2 * 2048 ** 3 / (time.perf_counter() - t0)


def make_inputs(n: int, tokens: int, seed: int = 1, vocab: int = 50257):
    import numpy as np

    rng = np.random.default_rng(seed)
    orig = rng.integers(1, vocab, size=(n, tokens)).tolist()
    lower = rng.integers(1, vocab, size=(n, tokens)).tolist()  # stand-in for the lowercased text
    return orig, lower


def reference_path(target, ref, orig, lower):
    """The official code's calculatePerplexity, three times per sample."""
    import torch

    def ppl(model, ids):
        x = torch.tensor([ids], device=DEVICE)
        with torch.no_grad():
            loss = model(x, labels=x).loss
        return torch.exp(loss).item()

    out = []
    for o, lw in zip(orig, lower):
        out.append((ppl(target, o), ppl(ref, o), ppl(target, lw)))
    return out


def batched_path(target, ref, orig, lower, batch, chunk_mb=256):
    from leakaudit.targets.hf import HFCausalLM

    class _Tok:  # token ids are given directly; only pad/bos/len are read
        pad_token_id = bos_token_id = eos_token_id = target.config.vocab_size - 1

        def __len__(self):
            return target.config.vocab_size

    t = HFCausalLM(target, _Tok(), name="target", chunk_bytes=chunk_mb * 2**20)
    r = HFCausalLM(ref, _Tok(), name="ref", chunk_bytes=chunk_mb * 2**20)
    a = t.score_ids(orig, batch_size=batch)
    b = r.score_ids(orig, batch_size=batch)
    c = t.score_ids(lower, batch_size=batch)
    return a, b, c


def naive_batched_path(target, ref, orig, lower, batch):
    """What a straightforward batched scorer does: full logits and log_softmax per batch."""
    import torch

    def score(model, seqs):
        out = []
        for i in range(0, len(seqs), batch):
            x = torch.tensor(seqs[i: i + batch], device=DEVICE)
            with torch.inference_mode():
                lp = torch.log_softmax(model(x).logits[:, :-1].float(), -1)
                out.append(lp.gather(2, x[:, 1:, None])[..., 0])
        return out

    return score(target, orig), score(ref, orig), score(target, lower)


def run_one(path: str, samples: int, tokens: int, batch: int, chunk_mb: int = 256) -> dict:
    import torch

    torch.manual_seed(0)
    target, ref = build_models()
    orig, lower = make_inputs(samples, tokens, vocab=target.config.vocab_size)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # warm-up on one sample so first-call overheads do not count
    if path == "reference":
        reference_path(target, ref, orig[:1], lower[:1])
        sync()
        t0 = time.perf_counter()
        reference_path(target, ref, orig, lower)
    elif path == "naive":
        t0 = time.perf_counter()
        naive_batched_path(target, ref, orig, lower, batch)
    else:
        batched_path(target, ref, orig[:1], lower[:1], batch, chunk_mb)
        sync()
        t0 = time.perf_counter()
        batched_path(target, ref, orig, lower, batch, chunk_mb)
    sync()
    dt = time.perf_counter() - t0
    flops = (2 * forward_flops(target, samples * tokens, tokens)
             + forward_flops(ref, samples * tokens, tokens))
    return {"path": path, "seconds": dt, "samples_per_s": samples / dt, "flops_per_s": flops / dt,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "rss_before_mb": rss0 / 1024, "vocab": target.config.vocab_size}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=24)
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--memory", action="store_true", help="also print peak memory at batch 1/8/32")
    ap.add_argument("--chunk-mb", type=int, default=256, help="LM-head chunk budget (MiB)")
    ap.add_argument("--model", help="a real model (HF directory or .gguf file)")
    ap.add_argument("--device", default="cpu", help="cpu, or cuda (a GPU; peak memory is then the host's)")
    ap.add_argument("--one", choices=["reference", "batched", "naive"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    global MODEL, DEVICE
    MODEL, DEVICE = args.model, args.device
    if args.one:
        print(json.dumps(run_one(args.one, args.samples, args.tokens, args.batch, args.chunk_mb)))
        return
    import torch

    print(f"torch {torch.__version__}, {args.device}, {torch.get_num_threads()} threads; "
          f"{args.samples} samples × {args.tokens} tokens; "
          + (f"{args.model} as target and reference" if args.model
             else "GPT-2 small target + 6-layer reference"))
    mm = matmul_rate()

    def one(path, batch, samples=args.samples):
        out = subprocess.run([sys.executable, __file__, "--one", path, "--samples", str(samples),
                              "--tokens", str(args.tokens), "--batch", str(batch),
                              "--chunk-mb", str(args.chunk_mb), "--device", args.device]
                             + (["--model", args.model] if args.model else []),
                             check=True, capture_output=True, text=True).stdout
        return json.loads(out.strip().splitlines()[-1])

    res = {}
    for _ in range(args.rounds):  # interleaved rounds, best of each: these machines are noisy
        for path in ("reference", "batched"):
            r = one(path, args.batch)
            if path not in res or r["samples_per_s"] > res[path]["samples_per_s"]:
                res[path] = r
    mm = max(mm, matmul_rate())
    print(f"fp32 matmul rate (2048², best of two windows): {mm / 1e9:.1f} GFLOP/s")
    for path in ("reference", "batched"):
        r = res[path]
        print(f"{path:>9}: {r['samples_per_s']:.3f} samples/s, {r['flops_per_s'] / 1e9:.1f} GFLOP/s "
              f"= {r['flops_per_s'] / mm:.0%} of the matmul rate"
              + (f" (batch {args.batch}, LM-head chunks of {args.chunk_mb} MiB)" if path == "batched" else ""))
    print(f"ratio batched / reference: {res['batched']['samples_per_s'] / res['reference']['samples_per_s']:.2f}x")
    if args.memory:
        print("peak RSS above the loaded models (MB), scoring `batch` samples in one batch:")
        print(f"{'batch':>6} {'leakaudit':>10} {'full-logits batch':>18} {'B·T·V·4 bytes':>14}")
        for b in (1, 8, 32):
            a = one("batched", b, samples=b)
            n = one("naive", b, samples=b)
            print(f"{b:>6} {a['peak_rss_mb'] - a['rss_before_mb']:>10.0f} "
                  f"{n['peak_rss_mb'] - n['rss_before_mb']:>18.0f} {b * args.tokens * (a.get('vocab') or 50257) * 4 / 2**20:>14.0f}")

if __name__ == "__main__":
    main()
