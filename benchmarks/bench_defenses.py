"""Cost of the training-side defenses, side by side in one run, with printed ratios:

1. **MinHash signatures per second**: rensa (Rust) vs datasketch (numpy) on the same documents'
   word 5-gram sets, at 128 permutations (a common production setting) and at Lee et al.'s 9,000;
   goal ≥ 50k documents/s for the chosen library at 128 permutations. Signatures of both libraries
   are checked to estimate the same Jaccard (mean absolute difference printed).
2. **Suffix-array ExactSubstr dedup MB/s** (:func:`leakaudit.defenses.dedup.exact_substring_spans`:
   suffix array + LCP + removal ranges over the tokenized corpus; tokenization timed separately);
   goal ≥ 8 MB/s of text.
3. **DP-SGD step vs non-private step** on the lab target (GPT-2, 2 layers × 128, vocabulary 1,024,
   256-token blocks, batch 8): plain AdamW step vs Opacus ghost clipping vs per-example (flat)
   clipping; goal ≤ 3× with ghost clipping.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/bench_defenses.py [--docs 20000]
        [--mb 16] [--steps 30]

``--tiny`` runs every part at toy sizes (a smoke test of the script, not a measurement).
"""

from __future__ import annotations

import argparse
import random
import time


def _docs(n: int, words: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    vocab = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
             for _ in range(20000)]
    return [" ".join(rng.choice(vocab) for _ in range(words)) for _ in range(n)]


def bench_minhash(n_docs: int, words: int) -> None:
    from datasketch import MinHash
    from rensa import RMinHash

    from leakaudit.defenses.dedup import word_ngrams

    docs = _docs(n_docs, words)
    grams = [word_ngrams(d, 5) for d in docs]
    print(f"\n== MinHash: {n_docs} documents of {words} words (word 5-grams)")
    for num_perm in (128, 9000):
        n = n_docs if num_perm == 128 else max(10, n_docs // 20)
        t0 = time.perf_counter()
        rs = RMinHash.from_token_sets(grams[:n], num_perm, 0)
        t_r = time.perf_counter() - t0
        nd = max(10, n // 10)  # datasketch is slower: a tenth of the documents
        t0 = time.perf_counter()
        ds = []
        for g in grams[:nd]:
            m = MinHash(num_perm=num_perm, seed=0)
            m.update_batch([s.encode() for s in g])
            ds.append(m)
        t_d = time.perf_counter() - t0
        # both estimate the same Jaccard: compare on pairs sharing half their grams
        rate_r, rate_d = n / t_r, nd / t_d
        print(f"num_perm={num_perm:5d}  rensa {rate_r:12,.0f} docs/s   datasketch {rate_d:10,.0f} docs/s   "
              f"ratio {rate_r / rate_d:6.1f}x   (goal ≥ 50,000 docs/s at 128: "
              f"{'met' if num_perm != 128 or rate_r >= 50000 else 'NOT met'})")
    a = grams[0]
    b = a[: len(a) // 2] + grams[1][len(a) // 2:]
    true = len(set(a) & set(b)) / len(set(a) | set(b))
    ra, rb = RMinHash.from_token_sets([a, b], 9000, 0)
    da, db = (MinHash(num_perm=9000, seed=0) for _ in range(2))
    da.update_batch([s.encode() for s in a])
    db.update_batch([s.encode() for s in b])
    print(f"Jaccard check (9000 perms): exact {true:.3f}, rensa {ra.jaccard(rb):.3f}, datasketch {da.jaccard(db):.3f}")


def bench_suffix_array(mb: float) -> None:
    from leakaudit.defenses.dedup import exact_substring_spans, tokenize

    words = 150
    n = max(5, int(mb * 1e6 / (words * 6.5)))
    docs = _docs(n, words, seed=1)
    rng = random.Random(2)
    for i in range(0, n, 10):  # plant repeats: 10% of documents get a 60-word copy
        j = rng.randrange(n)
        w = docs[j].split()
        docs[i] = docs[i] + " " + " ".join(w[:60])
    size = sum(len(d.encode()) for d in docs) / 1e6
    print(f"\n== ExactSubstr: {n} documents, {size:.1f} MB")
    t0 = time.perf_counter()
    toks = [t for t, _ in tokenize(docs, offsets=False)]
    t_tok = time.perf_counter() - t0
    t0 = time.perf_counter()
    spans, hist = exact_substring_spans(toks, 50)
    t_sa = time.perf_counter() - t0
    n_spans = sum(len(s) for s in spans)
    print(f"tokenize (words) {size / t_tok:6.1f} MB/s; suffix array + LCP + removal {size / t_sa:6.1f} MB/s; "
          f"end to end {size / (t_tok + t_sa):6.1f} MB/s (goal ≥ 8: {'met' if size / (t_tok + t_sa) >= 8 else 'NOT met'}); "
          f"{n_spans} repeated spans found")


def bench_dp_step(steps: int, n_layer: int, n_embd: int, vocab: int, n_ctx: int, batch: int) -> None:
    import warnings

    import torch
    from opacus import PrivacyEngine
    from transformers import GPT2Config, GPT2LMHeadModel

    from leakaudit.training.dp_lm import conv1d_to_linear, untie_output_embeddings

    warnings.filterwarnings("ignore")
    print(f"\n== DP-SGD step: GPT-2 {n_layer} layers × {n_embd}, vocabulary {vocab}, {n_ctx}-token blocks, "
          f"batch {batch}, {steps} steps (threads: {torch.get_num_threads()})")

    def model():
        torch.manual_seed(0)
        m = GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_positions=n_ctx, n_embd=n_embd, n_layer=n_layer,
                                       n_head=4, resid_pdrop=0, embd_pdrop=0, attn_pdrop=0))
        return m

    x = torch.randint(0, vocab, (batch, n_ctx))
    mask = torch.ones_like(x)
    pos = torch.arange(n_ctx).unsqueeze(0).repeat(batch, 1)
    times = {}
    m = model()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    for i in range(steps + 2):
        if i == 2:
            t0 = time.perf_counter()
        loss = m(input_ids=x, attention_mask=mask, labels=x).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    times["non-private"] = (time.perf_counter() - t0) / steps
    for mode in ("ghost", "flat"):
        m = model()
        untie_output_embeddings(m)
        conv1d_to_linear(m)
        dl = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, mask), batch_size=batch)
        made = PrivacyEngine(secure_mode=False).make_private(
            module=m, optimizer=torch.optim.AdamW(m.parameters(), lr=1e-3), data_loader=dl,
            criterion=torch.nn.CrossEntropyLoss(), noise_multiplier=1.0, max_grad_norm=1.0,
            poisson_sampling=False, grad_sample_mode="ghost" if mode == "ghost" else "hooks")
        gm, dpopt = made[0], made[1]
        crit = made[2] if mode == "ghost" else None
        for i in range(steps + 2):
            if i == 2:
                t0 = time.perf_counter()
            dpopt.zero_grad()
            logits = gm(input_ids=x, attention_mask=mask, position_ids=pos).logits[:, :-1]
            tgt = x[:, 1:]
            if crit is not None:
                loss = crit(logits.reshape(-1, vocab), tgt.reshape(-1), shape=logits.shape)
            else:
                loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), tgt.reshape(-1))
            loss.backward()
            dpopt.step()
        times[f"DP-SGD ({mode} clipping)"] = (time.perf_counter() - t0) / steps
    base = times["non-private"]
    for k, v in times.items():
        extra = "" if k == "non-private" else (f"   goal ≤ 3×: {'met' if v / base <= 3 else 'NOT met'}"
                                              if "ghost" in k else "")
        print(f"{k:26s} {1000 * v:8.1f} ms/step   {v / base:5.2f}×{extra}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=20000, help="MinHash documents (rensa; datasketch gets a tenth)")
    ap.add_argument("--words", type=int, default=200)
    ap.add_argument("--mb", type=float, default=16, help="ExactSubstr corpus size in MB")
    ap.add_argument("--steps", type=int, default=30, help="timed DP-SGD steps per variant")
    ap.add_argument("--tiny", action="store_true", help="toy sizes: check the script runs")
    a = ap.parse_args()
    if a.tiny:
        bench_minhash(200, 50)
        bench_suffix_array(0.2)
        bench_dp_step(2, 1, 32, 256, 64, 4)
        return
    bench_minhash(a.docs, a.words)
    bench_suffix_array(a.mb)
    bench_dp_step(a.steps, 2, 128, 1024, 256, 8)


if __name__ == "__main__":
    main()
