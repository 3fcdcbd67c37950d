"""Ray path overhead against the in-process path on the same sharded work, one machine.

The same shards (LLM membership passes: target + lowercase + reference scoring of N texts, and
extraction: sampling + scoring + ranking + verification) run through
:class:`~leakaudit.exec.LocalExecutor` and :class:`~leakaudit.exec.ray_exec.RayExecutor` with
``--workers`` Ray worker processes (1 CPU each, torch 1 thread each). Printed: wall time of each,
the overhead ``ray / (local / workers) - 1`` against ideal scaling and ``ray_1worker / local - 1``
(the per-shard cost of Ray itself; goal ≤ 15 %), and that the findings are identical.

With a GPU present (``--gpu``) it also times batched GPU scoring against the reference per-sample
pattern (batch size 1, full log-softmax), and generation samples/s.

Models: randomly initialised GPT-2s of the lab target's shape (``--shape lab``: 2 layers x 128,
vocab 1,024, context 256) or GPT-2 small's (``--shape gpt2``: 12 x 768, vocab 50,257), with a BPE
tokenizer fitted on the texts: weights do not change the cost.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/bench_ray.py --texts 512 --workers 2
    PYTHONPATH=src python benchmarks/bench_ray.py --shape gpt2 --texts 2048 --workers 1 --gpu
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def make_model(d: Path, texts: list[str], shape: str) -> Path:
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    vocab, layers, emb, heads, ctx = {"lab": (1024, 2, 128, 4, 256),
                                      "gpt2": (50257, 12, 768, 12, 1024)}[shape]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=min(vocab, 4096), min_frequency=1,
                            special_tokens=["<|endoftext|>"], show_progress=False)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<|endoftext|>",
                                  eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=max(vocab, len(tok)), n_positions=ctx, n_embd=emb, n_layer=layers,
                     n_head=heads, bos_token_id=0, eos_token_id=0)
    GPT2LMHeadModel(cfg).save_pretrained(d)
    tok.save_pretrained(d)
    return d


def texts_for(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(3000)] + ["the", "a", "of", "and", "patient", "code"]
    return [" ".join(rng.choice(words, size=int(rng.integers(40, 120)))) for _ in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--texts", type=int, default=512)
    ap.add_argument("--samples", type=int, default=64, help="extraction generations per sampler")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--shard-size", type=int, default=32)
    ap.add_argument("--shape", choices=["lab", "gpt2"], default="lab")
    ap.add_argument("--gpu", action="store_true")
    args = ap.parse_args()

    import ray
    import torch
    from ray.cluster_utils import Cluster

    from leakaudit.attacks.extraction.pipeline import ExtractionConfig
    from leakaudit.corpus.index_disk import DiskCorpusIndex
    from leakaudit.exec import LocalExecutor
    from leakaudit.exec.audits import sharded_extraction, sharded_membership
    from leakaudit.exec.ray_exec import RayExecutor

    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp())
    texts = texts_for(args.texts)
    model = make_model(tmp / "m", texts, args.shape)
    DiskCorpusIndex.build(texts, tmp / "idx")
    half = len(texts) // 2
    ecfg = ExtractionConfig(samplers=("top_k",), n_samples=args.samples, max_new_tokens=32,
                            select=8, generate_batch_size=16, score_batch_size=16, match_tokens=8)

    def work(ex):
        t0 = time.perf_counter()
        mia = sharded_membership(model, texts[:half], texts[half:], executor=ex,
                                 references={"ref": model}, shard_size=args.shard_size,
                                 batch_size=16)
        t1 = time.perf_counter()
        ext = sharded_extraction(model, executor=ex, config=ecfg, index_dir=tmp / "idx",
                                 shard_size=16)
        t2 = time.perf_counter()
        return {"membership": mia["auc"], "extraction": ext}, (t1 - t0, t2 - t1)

    work(LocalExecutor())  # warm: imports, model load, page cache
    ref, (lm, le) = work(LocalExecutor())
    print(f"in-process: membership {lm:.2f} s, extraction {le:.2f} s ({args.texts} texts, "
          f"{args.samples} samples)")
    res = {}
    for n in sorted({1, args.workers}):
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
        for _ in range(n):
            cluster.add_node(num_cpus=1)
        ex = RayExecutor(address=cluster.address)
        work(ex)  # warm: each worker loads the model once
        out, (rm, re_) = work(ex)
        ex.close()
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()
        same = json.dumps(out, sort_keys=True) == json.dumps(ref, sort_keys=True)
        res[n] = (rm, re_)
        print(f"ray, {n} worker(s): membership {rm:.2f} s, extraction {re_:.2f} s; "
              f"findings identical to in-process: {same}")
    r1m, r1e = res[1]
    print(f"ray overhead, 1 worker vs in-process: membership {r1m / lm - 1:+.1%}, "
          f"extraction {r1e / le - 1:+.1%} (goal <= +15%)")
    if args.workers > 1:
        rm, re_ = res[args.workers]
        print(f"ray, {args.workers} workers vs ideal scaling of in-process: membership "
              f"{rm / (lm / args.workers) - 1:+.1%}, extraction {re_ / (le / args.workers) - 1:+.1%}"
              f" (on a machine with >= {args.workers} free cores)")

    if args.gpu:
        if not torch.cuda.is_available():
            print("--gpu: no CUDA device here; skipped")
            return
        from leakaudit.targets import load_target
        from leakaudit.targets.gpu import choose_batch_size

        m = load_target(str(model), device="cuda")
        cfg = m.model.config
        free, _ = torch.cuda.mem_get_info()
        bs = choose_batch_size(device="cuda", free_bytes=free, seq_len=256,
                               vocab_size=cfg.vocab_size, n_layer=cfg.n_layer, d_model=cfg.n_embd,
                               n_params=sum(p.numel() for p in m.model.parameters()))
        m.score(texts[:64], batch_size=bs)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        m.score(texts, batch_size=bs)
        torch.cuda.synchronize()
        tb = time.perf_counter() - t0
        # reference per-sample pattern: one text at a time, full log_softmax, then a gather
        tok = m.tokenizer
        t0 = time.perf_counter()
        with torch.inference_mode():
            for t in texts:
                ids = torch.tensor([[m.bos_id] + tok(t)["input_ids"]], device="cuda")
                lp = torch.log_softmax(m.model(ids).logits[0, :-1].float(), -1)
                lp.gather(-1, ids[0, 1:, None])
        torch.cuda.synchronize()
        tp = time.perf_counter() - t0
        print(f"GPU scoring: batched (batch {bs}) {len(texts) / tb:,.0f} texts/s vs per-sample "
              f"{len(texts) / tp:,.0f} texts/s -> {tp / tb:.1f}x (goal >= 10x)")
        from leakaudit.targets.base import SamplingConfig

        t0 = time.perf_counter()
        g = m.generate_ids([[m.bos_id]] * 256, SamplingConfig(top_k=40, max_new_tokens=256),
                           seed=0, batch_size=bs)
        torch.cuda.synchronize()
        print(f"GPU generation: {len(g) / (time.perf_counter() - t0):.1f} samples/s "
              f"(256 new tokens, batch {bs})")


if __name__ == "__main__":
    main()
