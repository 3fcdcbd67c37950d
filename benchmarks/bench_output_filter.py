"""Per-token cost of the MemFree output filter on generation, against the same model unfiltered.

Prompts are training-document prefixes, the worst case for the filter: the model continues
memorized text, so most contexts start a training n-gram and candidates must be looked up.
Times greedy decoding and top-k=40 sampling; reports the median of ``--repeats`` runs per
setting and the overhead (goal: <= 10% of the unfiltered step time at the lab model's size).

    # the lab model's size (2 layers x 128, vocabulary 1,024, 300 documents, 22 epochs)
    OMP_NUM_THREADS=1 python benchmarks/bench_output_filter.py --size lab
    # a smoke run
    OMP_NUM_THREADS=1 python benchmarks/bench_output_filter.py --size tiny
    # your own model and corpus
    python benchmarks/bench_output_filter.py --model DIR --corpus train.jsonl
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

SIZES = {
    # n_docs, vocab, n_layer, n_embd, epochs, prompts, new tokens, repeats
    "tiny": (40, 512, 2, 64, 2.0, 8, 32, 2),
    "lab": (300, 1024, 2, 128, 22.0, 32, 128, 5),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=sorted(SIZES), default="lab")
    ap.add_argument("--model", type=Path, help="an HF model directory (skips training)")
    ap.add_argument("--corpus", type=Path, help="its training corpus (with --model)")
    ap.add_argument("--n", type=int, default=8, help="filter n-gram length")
    ap.add_argument("--fp-rate", type=float, default=1e-4)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args()

    from leakaudit.defenses.output_filter import MemFreeLM, NgramFilter
    from leakaudit.targets.base import SamplingConfig
    from leakaudit.targets.hf import HFCausalLM

    n_docs, vocab, n_layer, n_embd, epochs, n_prompts, new_tokens, repeats = SIZES[args.size]
    if args.model:
        from leakaudit.corpus.load import load_corpus

        if args.corpus is None:
            ap.error("--model needs --corpus")
        texts = [d.text for d in load_corpus(args.corpus)]
        model_dir = args.model
    else:
        from leakaudit.lab.corpus import LabCorpusConfig, generate_lab_corpus
        from leakaudit.training.lm import LMSpec, train_causal_lm, train_tokenizer

        corpus = generate_lab_corpus(LabCorpusConfig(
            n_docs=n_docs, n_heldout=0, canary_repeats=(1, 2, 4, 8),
            boilerplate_repeats=(2, 8), seed=0))
        texts = [d["text"] for d in corpus.train]
        model_dir = Path(tempfile.mkdtemp(prefix="bench_output_filter_"))
        tok = train_tokenizer(texts, vocab_size=vocab)
        t0 = time.perf_counter()
        train_causal_lm(texts, tok, LMSpec(n_layer=n_layer, n_embd=n_embd, n_head=4, n_ctx=256,
                                           epochs=epochs, lr=3e-3, batch_size=8),
                        seed=0, out_dir=model_dir)
        print(f"trained the {args.size} model in {time.perf_counter() - t0:.0f}s")
    model = HFCausalLM.load(model_dir)
    t0 = time.perf_counter()
    filt = NgramFilter.from_texts(texts, model, n=args.n, fp_rate=args.fp_rate)
    build_s = time.perf_counter() - t0
    fil = MemFreeLM(model, filt)
    ids = [x for x in model.tokenize(texts) if len(x) >= 16][:n_prompts]
    prompts = [x[:16] for x in ids]
    out = {"size": args.size, "n": args.n, "fp_rate": args.fp_rate, "filter": filt.describe(),
           "filter_build_s": build_s, "n_prompts": len(prompts), "new_tokens": new_tokens,
           "batch_size": args.batch_size, "settings": {}}
    for label, sampling in (("greedy", SamplingConfig(greedy=True, max_new_tokens=new_tokens)),
                            ("top_k=40", SamplingConfig(top_k=40, max_new_tokens=new_tokens))):
        times = {"unfiltered": [], "memfree": []}
        for m in (model, fil):  # warm-up: first-call allocations are not the filter's cost
            m.generate_ids(prompts[:2], sampling, seed=0, batch_size=args.batch_size)
        for r in range(repeats):
            for name, m in (("unfiltered", model), ("memfree", fil)):
                t0 = time.perf_counter()
                m.generate_ids(prompts, sampling, seed=r, batch_size=args.batch_size)
                times[name].append(time.perf_counter() - t0)
        tokens = len(prompts) * new_tokens
        per = {k: statistics.median(v) / tokens * 1e3 for k, v in times.items()}
        overhead = per["memfree"] / per["unfiltered"] - 1
        out["settings"][label] = {"ms_per_token": per, "overhead": overhead}
        print(f"{label:>9}: unfiltered {per['unfiltered']:.3f} ms/token, memfree "
              f"{per['memfree']:.3f} ms/token, overhead {overhead:+.1%} "
              f"({'meets' if overhead <= 0.10 else 'misses'} the 10% goal)")
    st = fil.stats_.to_dict()
    out["filter_stats"] = st
    print(f"filter: {out['filter']['approx_distinct_ngrams']:,} n-grams, built in {build_s:.2f}s; "
          f"{st['checked_rows']}/{st['steps']} steps looked up candidates, {st['blocked']} "
          f"tokens blocked, {st['lookups']} lookups")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
