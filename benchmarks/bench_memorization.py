"""Greedy-discoverable memorization three ways, on the same windows, side by side in one run.

- **generate(), Pythia's pattern**: what Pythia's ``predictable-memorization/eval_memorization.py``
  does — the model loaded with ``use_cache=False``, one batched ``model.generate`` with greedy
  decoding (``max_length = min_length = k + ℓ``) from each k-token prefix, then the ℓ new tokens
  compared with the true suffix. Without a KV cache every new token re-runs the whole sequence.
- **generate() with a KV cache**: the same, with the cache on (leakaudit's own slow cross-check,
  ``HFCausalLM.generate_ids``, works this way). Printed so the comparison is not only against
  the weaker pattern.
- **teacher forcing, leakaudit's path**: ``HFCausalLM.score_ids`` exactly as
  ``measure_memorization`` calls it (one batched forward pass over prefix + suffix that also
  yields, for the ℓ suffix positions, the log-probabilities, the argmax flags and the top-k
  sampling log-probabilities for p_z);
  memorized iff the true token is the argmax at every suffix position.

All three run on the same model (the lab target's size by default: 2 layers × 128, vocabulary 1024,
randomly initialized and saved as an ordinary HF folder — cost does not depend on the weights), on
the same random windows, with the same batch size; the answers are compared window by window.
Methods alternate within each round so drift on a noisy machine hits all of them. Prints rates
(sequences/s), the ratios and the agreement.

With ``--model PATH`` (an HF directory or a ``.gguf`` file, e.g. the SmolLM2-135M that
``scripts/get_real_model.py`` saves) the same comparison runs on that real model instead.

    python benchmarks/bench_memorization.py [--sequences 256] [--k 32] [--ell 32] [--batch 64]
    python benchmarks/bench_memorization.py --model .cache/real-models/smollm2-135m/hf --batch 16
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


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
    ap.add_argument("--model", help="a real model (HF directory or .gguf file) instead of the "
                                    "random lab-sized one")
    args = ap.parse_args()

    import numpy as np
    import torch
    from tokenizers import Tokenizer, models
    from transformers import GenerationConfig, GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    from leakaudit.attacks.memorization.measure import MemorizationConfig
    from leakaudit.metrics.memorization import greedy_discoverable
    from leakaudit.targets.hf import HFCausalLM

    k, ell = args.k, args.ell
    torch.manual_seed(0)
    if args.model:
        from leakaudit.targets import load_target

        lm = load_target(args.model, name="bench")
        model, vocab_n, first = lm.model, lm.vocab_size, lm.bos_id
        model.generation_config = GenerationConfig()  # the methods set every option themselves
        shape = f"{args.model} ({sum(p.numel() for p in model.parameters()) / 1e6:.0f}M params)"
    else:
        model = GPT2LMHeadModel(GPT2Config(n_layer=args.layers, n_embd=args.width, n_head=4,
                                           vocab_size=args.vocab, n_positions=256, bos_token_id=0,
                                           eos_token_id=0)).eval()
        tmp = Path(tempfile.mkdtemp())
        model.save_pretrained(tmp / "m")
        vocab = {f"t{i}": i for i in range(args.vocab)}
        PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="t1")),
                                bos_token="t0", eos_token="t0").save_pretrained(tmp / "m")
        lm = HFCausalLM.load(tmp / "m", name="bench")
        vocab_n, first = args.vocab, 0
        shape = f"model {args.layers}×{args.width}, vocab {args.vocab}"
    sampling = MemorizationConfig().sampling  # what measure_memorization scores p_z under

    rng = np.random.default_rng(0)
    # one context token + prefix + suffix: every method sees the same 1 + k context tokens
    W = 1 + k + ell
    windows = torch.from_numpy(rng.integers(1, vocab_n, size=(args.sequences, W)))
    windows[:, 0] = first
    # make a quarter of the windows "memorized" for this model: their suffix is its own greedy
    # continuation, so every method has positives to find
    with torch.inference_mode():
        q = args.sequences // 4
        out = model.generate(windows[:q, :1 + k], attention_mask=torch.ones_like(windows[:q, :1 + k]),
                             generation_config=GenerationConfig(do_sample=False, max_new_tokens=ell,
                                                                min_new_tokens=ell, pad_token_id=first,
                                                                eos_token_id=None))
        windows[:q] = out[:, :W]

    def by_generate(use_cache: bool) -> list[bool]:
        res = []
        cfg = GenerationConfig(do_sample=False, max_length=W, min_length=W, pad_token_id=first,
                               eos_token_id=None, use_cache=use_cache)
        with torch.inference_mode():
            for s in range(0, args.sequences, args.batch):
                w = windows[s:s + args.batch]
                g = model.generate(w[:, :1 + k], attention_mask=torch.ones_like(w[:, :1 + k]),
                                   generation_config=cfg)
                res.extend(bool(x) for x in (g[:, 1 + k:] == w[:, 1 + k:]).all(dim=1))
        return res

    ids = [w.tolist() for w in windows]  # score_ids inserts nothing: the window is the context

    def by_teacher_forcing() -> list[bool]:
        scores = lm.score_ids(ids, batch_size=args.batch, sampling=sampling, last=ell)
        return [greedy_discoverable(s.is_argmax[-ell:]) for s in scores]

    methods = {"generate(), Pythia's pattern (no KV cache)": lambda: by_generate(False),
               "generate() with KV cache": lambda: by_generate(True),
               "teacher forcing (leakaudit score_ids)": by_teacher_forcing}
    times = dict.fromkeys(methods, 0.0)
    answers: dict[str, list[bool]] = {}
    for _ in range(args.repeats):
        for name, fn in methods.items():
            t0 = time.perf_counter()
            answers[name] = fn()
            times[name] += time.perf_counter() - t0
    n = args.sequences * args.repeats
    print(f"windows: {args.sequences} × {args.repeats} rounds, k={k}, ℓ={ell}, batch {args.batch}, "
          f"{shape}, threads {torch.get_num_threads()}")
    tf = "teacher forcing (leakaudit score_ids)"
    for name in methods:
        print(f"{name:44s} {n / times[name]:9.1f} sequences/s   memorized "
              f"{sum(answers[name])}/{len(answers[name])}")
    for name in methods:
        if name != tf:
            agree = np.mean([x == y for x, y in zip(answers[name], answers[tf])])
            print(f"ratio teacher forcing / {name}: {times[name] / times[tf]:.1f}x   "
                  f"agreement {agree:.1%}")


if __name__ == "__main__":
    main()
