"""Sampling throughput: leakaudit's batched, KV-cached sampling vs batch-1 ``generate``.

Both sample the same number of 256-token continuations from BOS with top-k = 40, with the same
model (by default the lab target's size: 2 layers × 128, vocabulary 1024, randomly initialized: the
cost does not depend on the weights; --layers/--width/--vocab for others), side by side in one
run, interleaved. Prints both rates and their ratio.

    python benchmarks/bench_sampling.py [--samples 100] [--batch 100] [--tokens 240]
    python benchmarks/bench_sampling.py --device cuda --samples 1000 --batch 500   # a GPU
"""

from __future__ import annotations

import argparse
import time


def build(vocab: int, n_layer: int, n_embd: int, n_ctx: int):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(n_layer=n_layer, n_embd=n_embd, n_head=4, vocab_size=vocab,
                                      n_positions=n_ctx, bos_token_id=0, eos_token_id=0)).eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--tokens", type=int, default=240)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--vocab", type=int, default=1024)
    ap.add_argument("--device", default="cpu", help="cpu, or cuda (a GPU)")
    args = ap.parse_args()

    import torch
    from transformers import GenerationConfig

    from leakaudit.targets.base import SamplingConfig
    from leakaudit.targets.hf import HFCausalLM

    model = build(args.vocab, args.layers, args.width, args.tokens + 8).to(args.device)

    def sync():
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    class _Tok:
        pad_token_id = bos_token_id = eos_token_id = 0

        def __len__(self):
            return args.vocab

        def decode(self, ids, skip_special_tokens=True):
            return " ".join(map(str, ids))

    lm = HFCausalLM(model, _Tok(), name="bench")
    sc = SamplingConfig(max_new_tokens=args.tokens, top_k=40)
    gcfg = GenerationConfig(do_sample=True, top_k=40, max_new_tokens=args.tokens, min_new_tokens=0,
                            eos_token_id=None, pad_token_id=0, use_cache=True)

    def batched(n):
        out = lm.generate_ids([[0]] * n, sc, seed=0, batch_size=args.batch)
        sync()
        assert all(len(g.new_ids) == args.tokens for g in out)

    def batch1(n):
        torch.manual_seed(0)
        model.generation_config.eos_token_id = None  # full-length samples, as the batched path
        for _ in range(n):
            with torch.inference_mode():
                o = model.generate(input_ids=torch.zeros(1, 1, dtype=torch.long, device=args.device),
                                   generation_config=gcfg)
            sync()
            assert o.shape[1] == args.tokens + 1

    batched(2)
    batch1(1)  # warm-up
    n1 = max(4, args.samples // 8)  # batch-1 is slow: time fewer samples, compare rates
    rates = {"batched": [], "batch-1": []}
    for _ in range(2):
        t0 = time.perf_counter()
        batched(args.samples)
        rates["batched"].append(args.samples / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        batch1(n1)
        rates["batch-1"].append(n1 / (time.perf_counter() - t0))
    b, s = max(rates["batched"]), max(rates["batch-1"])
    print(f"torch {torch.__version__}, {args.device}, {torch.get_num_threads()} threads; {args.layers} layers × "
          f"{args.width}, vocab {args.vocab}; {args.tokens} new tokens, top-k 40")
    print(f"batched (batch {args.batch}, KV cache): {b:.2f} samples/s ({b * args.tokens:.0f} tokens/s)")
    print(f"batch-1 generate():           {s:.2f} samples/s ({s * args.tokens:.0f} tokens/s)")
    print(f"ratio: {b / s:.1f}x")


if __name__ == "__main__":
    main()
