"""Greedy-discoverable memorization two ways, on the same windows, side by side in one run.

- **generate()** (the pattern of Pythia's ``eval_memorization`` script): ``model.generate`` with
  greedy decoding from each k-token prefix, batched, then compare the ℓ new tokens with the true
  suffix.
- **teacher forcing** (leakaudit): one batched forward pass over prefix + suffix; memorized iff
  the true token is the argmax at every suffix position.

Both run on the same model (the lab target's size by default: 2 layers × 128, vocabulary 1024,
randomly initialized — cost does not depend on the weights) and the same random windows; the two
answers are compared window by window. Prints both rates (sequences/s), the ratio and the
agreement.

    python benchmarks/bench_memorization.py [--sequences 256] [--k 32] [--ell 32] [--batch 64]
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sequences", type=int, default=256)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--ell", type=int, default=32)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--vocab", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=2, help="alternating rounds of each method")
    args = ap.parse_args()

    import numpy as np
    import torch
    from transformers import GenerationConfig, GPT2Config, GPT2LMHeadModel

    from leakaudit.metrics.memorization import greedy_discoverable

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=args.layers, n_embd=args.width, n_head=4,
                                       vocab_size=args.vocab, n_positions=256, bos_token_id=0,
                                       eos_token_id=0)).eval()
    rng = np.random.default_rng(0)
    W = args.k + args.ell
    windows = torch.from_numpy(rng.integers(1, args.vocab, size=(args.sequences, W)))
    # make a quarter of the windows "memorized" for this model: their suffix is its own greedy
    # continuation, so both methods have positives to find
    with torch.inference_mode():
        q = args.sequences // 4
        out = model.generate(windows[:q, :args.k], attention_mask=torch.ones_like(windows[:q, :args.k]),
                             generation_config=GenerationConfig(do_sample=False, max_new_tokens=args.ell,
                                                                min_new_tokens=args.ell, pad_token_id=0,
                                                                eos_token_id=None))
        windows[:q] = out[:, :W]

    def by_generate() -> list[bool]:
        res = []
        cfg = GenerationConfig(do_sample=False, max_new_tokens=args.ell, min_new_tokens=args.ell,
                               pad_token_id=0, eos_token_id=None, use_cache=True)
        with torch.inference_mode():
            for s in range(0, args.sequences, args.batch):
                w = windows[s:s + args.batch]
                g = model.generate(w[:, :args.k], attention_mask=torch.ones_like(w[:, :args.k]),
                                   generation_config=cfg)
                res.extend(bool(x) for x in (g[:, args.k:] == w[:, args.k:]).all(dim=1))
        return res

    def by_teacher_forcing() -> list[bool]:
        res = []
        with torch.inference_mode():
            for s in range(0, args.sequences, args.batch):
                w = windows[s:s + args.batch]
                logits = model(w).logits[:, args.k - 1:W - 1]
                am = (logits.argmax(-1) == w[:, args.k:]).numpy()
                res.extend(greedy_discoverable(row) for row in am)
        return res

    t_gen = t_tf = 0.0
    for _ in range(args.repeats):  # interleaved, so drift on a noisy machine hits both
        t0 = time.perf_counter()
        a = by_generate()
        t_gen += time.perf_counter() - t0
        t0 = time.perf_counter()
        b = by_teacher_forcing()
        t_tf += time.perf_counter() - t0
    n = args.sequences * args.repeats
    agree = sum(x == y for x, y in zip(a, b)) / len(a)
    print(f"windows: {args.sequences} × {args.repeats} rounds, k={args.k}, ℓ={args.ell}, batch {args.batch}, "
          f"model {args.layers}×{args.width}, vocab {args.vocab}, threads {torch.get_num_threads()}")
    print(f"generate() greedy:   {n / t_gen:8.1f} sequences/s   memorized {sum(a)}/{len(a)}")
    print(f"teacher forcing:     {n / t_tf:8.1f} sequences/s   memorized {sum(b)}/{len(b)}")
    print(f"ratio: {t_gen / t_tf:.1f}x   agreement: {agree:.1%}")


if __name__ == "__main__":
    main()
