"""Build and query rates of the on-disk corpus index, optionally under a hard memory limit.

Generates a seeded synthetic corpus (random words from a 4,000-word vocabulary plus planted
120-word passages copied into several documents, so that real 50-token verbatim windows exist),
streams it into :class:`~leakaudit.corpus.index_disk.DiskCorpusIndex` without ever holding it in
memory, and prints:

- corpus generation time, alone: the corpus is generated first into a temporary text file (one
  document per line), and the build reads that file, so the build rate is the index's own
  (reading the file included, generating the corpus not); the rate with generation added is
  printed too (what earlier versions of this benchmark reported);
- build rate (MB of corpus text per second, wall clock, suffix sorting included);
- window look-ups per second: ``count_many`` over ``--lookups`` DISTINCT 50-word windows (half
  cut from the corpus, one per document while there is room, half random), the "does this
  50-token window occur verbatim" question, batched: the distinct rate; then the same windows
  each ``--repeats`` times in one call (``count_many`` looks each distinct span up once): the
  total rate;
- ``window_match_many`` over 512-word "generations" (texts per second);
- peak RSS and the private-memory allowance, next to the index's size on disk.

``--limit-mb N`` caps the process's private memory (``RLIMIT_DATA``: heap and anonymous maps,
not the read-only file maps of the index) at N MB above a baseline measured after a warm-up (a
tiny index built and queried once: imports, the compiled search, numpy's first buffers), so a
corpus several times larger than N is indexed and queried within it; the private memory used
above the baseline at each stage is printed (and written with ``--answers``). ``--answers FILE`` writes
the answers to a fixed set of check queries (JSON), which the test compares with the in-memory
index.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/bench_index.py --mb 200 --shard-mb 64 \\
        --lookups 100000 --repeats 2      # 100k distinct windows, then each twice
    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/bench_index.py --mb 48 --shard-mb 2 \\
        --limit-mb 32 --dir /tmp/idx          # the larger-than-memory check
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

_WORD = re.compile(r"\S+")


def vm_data_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmData:"):
            return int(line.split()[1])
    return 0


def warm_up() -> None:
    """Build and query a tiny index once: imports (pydivsufsort, the compiled search), numpy's
    and the allocator's first-use buffers happen here, before the baseline is measured."""
    import gc

    from leakaudit.corpus.index_disk import DiskCorpusIndex

    with tempfile.TemporaryDirectory() as t:
        texts = [" ".join(f"w{i % 7}{j}" for j in range(60)) for i in range(20)]
        idx = DiskCorpusIndex.build(texts, Path(t) / "w", None, shard_bytes=2048)
        q = texts[3].split(" ")
        idx.count_many([" ".join(q[:50]), "nope " * 50])
        idx.window_match_many(texts[:4], [offsets(x) for x in texts[:4]], 50)
        answers(idx, ["w1", "zz"], texts[:2])
        del idx
    gc.collect()


def corpus_stream(n_bytes: int, seed: int = 0, sample_windows: list | None = None,
                  n_windows: int = 0, window: int = 50, per_doc: int = 1):
    """Yield ``(doc_id, text)`` until ``n_bytes`` of text; deterministic in ``seed``.

    If ``sample_windows`` is a list, up to ``n_windows`` 50-word windows cut from the documents
    are appended to it (``per_doc`` per document, while there is room)."""
    rng = np.random.default_rng(seed)
    wrng = np.random.default_rng(seed + 1_000_003)  # window sampling never shifts the corpus
    letters = np.array(list("abcdefghijklmnopqrstuvwxyzéü"))
    vocab = np.array(["".join(rng.choice(letters, size=int(rng.integers(2, 9))))
                      for _ in range(4000)])
    passages = [" ".join(vocab[rng.integers(0, len(vocab), 120)]) for _ in range(40)]
    total, i = 0, 0
    while total < n_bytes:
        words = vocab[rng.integers(0, len(vocab), int(rng.integers(100, 900)))]
        text = " ".join(words)
        if rng.random() < 0.3:  # plant a repeated passage
            cut = int(rng.integers(0, len(text)))
            cut = text.rfind(" ", 0, cut) + 1
            text = text[:cut] + passages[int(rng.integers(0, len(passages)))] + " " + text[cut:]
        if sample_windows is not None and len(sample_windows) < n_windows:
            ws = text.split(" ")
            for _ in range(per_doc if len(ws) > window else 0):
                if len(sample_windows) < n_windows:
                    s = int(wrng.integers(0, len(ws) - window))
                    sample_windows.append(" ".join(ws[s : s + window]))
        total += len(text.encode())
        yield f"doc-{i}", text
        i += 1


def check_queries(seed: int = 1, n: int = 60) -> tuple[list[str], list[str]]:
    """Spans (count/doc_count/locate) and texts (longest_match/window_match) to compare."""
    docs = [t for _, t in corpus_stream(300_000, seed=0)]
    rng = np.random.default_rng(seed)
    spans, texts = [], []
    for _ in range(n):
        t = docs[int(rng.integers(0, len(docs)))]
        a = int(rng.integers(0, max(1, len(t) - 400)))
        spans.append(t[a : a + int(rng.integers(1, 300))] or "a")
        ws = t.split(" ")
        s = int(rng.integers(0, max(1, len(ws) - 80)))
        noise = " ".join(rng.choice(list("xyzqk"), size=20))
        texts.append(noise + " " + " ".join(ws[s : s + int(rng.integers(20, 90))]) + " " + noise)
    spans += ["a", "zz", "qqqq", "é", " "]
    return spans, texts


def offsets(text: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in _WORD.finditer(text)]


def answers(index, spans, texts) -> dict:
    out = {"count": [], "doc_count": [], "locate": [], "longest": [], "window": []}
    for s in spans:
        out["count"].append(index.count(s))
        out["doc_count"].append(index.doc_count(s))
        out["locate"].append(index.locate(s, 5))
    for t in texts:
        m = index.longest_match(t, 3)
        out["longest"].append([m.text, m.char_start, m.char_end, m.n_bytes, m.count, m.doc_count,
                               [list(x) for x in m.locations]])
        for w in (10, 50):
            r = index.window_match(t, offsets(t), w)
            out["window"].append([r.n_tokens, r.longest_run_tokens, r.has_window,
                                  list(r.first_window) if r.first_window else None])
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=200.0, help="corpus size (MB of UTF-8 text)")
    ap.add_argument("--shard-mb", type=float, default=64.0)
    ap.add_argument("--sort-workers", type=int, default=None,
                    help="shards suffix-sorted at once (default: the index's, 2 on 2+ CPUs)")
    ap.add_argument("--limit-mb", type=float, default=0.0,
                    help="private-memory allowance above the interpreter baseline (0: none)")
    ap.add_argument("--lookups", type=int, default=100_000,
                    help="distinct 50-word windows to look up (half from the corpus)")
    ap.add_argument("--repeats", type=int, default=2,
                    help="the total-rate run looks each distinct window up this many times")
    ap.add_argument("--generations", type=int, default=2_000)
    ap.add_argument("--dir", type=Path, default=None, help="index directory (default: a temp dir)")
    ap.add_argument("--answers", type=Path, default=None)
    args = ap.parse_args()

    from leakaudit.corpus.index_disk import DiskCorpusIndex

    warm_up()  # imports and first-use allocations belong to the baseline, not the allowance
    base = vm_data_kb() * 1024
    peak_above = [0.0]

    def checkpoint() -> None:
        now = (vm_data_kb() * 1024 - base) / 2**20
        peak_above[0] = max(peak_above[0], now)
        print(f"  private memory above baseline: {now:.1f} MB")

    if args.limit_mb:
        lim = int(base + args.limit_mb * 2**20)
        resource.setrlimit(resource.RLIMIT_DATA, (lim, lim))
        print(f"RLIMIT_DATA {lim / 2**20:.0f} MB = baseline {base / 2**20:.0f} MB + "
              f"{args.limit_mb:.0f} MB allowance")
    tmp = None
    d = args.dir
    if d is None:
        tmp = tempfile.TemporaryDirectory()
        d = Path(tmp.name) / "idx"

    n_target = int(args.mb * 2**20)
    windows: list[str] = []
    # the corpus, generated first into a text file (one document per line; generated documents
    # never contain a newline), so that the build is timed apart from the generation
    gen_dir = tempfile.TemporaryDirectory()
    corpus_file = Path(gen_dir.name) / "corpus.txt"
    t0 = time.perf_counter()
    with open(corpus_file, "w", encoding="utf-8") as f:
        for _, text in corpus_stream(n_target, 0, windows, n_windows=(args.lookups + 1) // 2):
            assert "\n" not in text
            f.write(text)
            f.write("\n")
    gen_s = time.perf_counter() - t0
    checkpoint()

    def read_corpus():
        with open(corpus_file, encoding="utf-8") as f:
            for line in f:
                yield line[:-1]

    t0 = time.perf_counter()
    idx = DiskCorpusIndex.build(read_corpus(), d, None, shard_bytes=int(args.shard_mb * 2**20),
                                sort_workers=args.sort_workers)
    build_s = time.perf_counter() - t0
    gen_dir.cleanup()
    checkpoint()
    mb = idx.n_bytes / 2**20
    print(f"corpus generation: {mb:.1f} MB in {gen_s:.1f} s (not part of the build rate)")
    print(f"build: {mb:.1f} MB of text, {len(idx)} docs, {idx.n_shards} shards in {build_s:.1f} s "
          f"-> {mb / build_s:.2f} MB/s (reading the generated corpus file included); "
          f"with the generation: {gen_s + build_s:.1f} s -> {mb / (gen_s + build_s):.2f} MB/s; "
          f"index on disk {idx.disk_bytes / 2**20:.0f} MB")

    rng = np.random.default_rng(7)
    vocab_words = " ".join(windows[:200]).split(" ")
    misses = [" ".join(rng.choice(vocab_words, size=50)) for _ in range(len(windows))]
    # distinct windows only (planted passages make some cut windows equal)
    distinct = list(dict.fromkeys(windows + misses))[: args.lookups]
    idx.count_many(distinct[:1000])  # warm the page cache a little
    t0 = time.perf_counter()
    counts = idx.count_many(distinct)
    dt = time.perf_counter() - t0
    checkpoint()
    print(f"window look-ups, DISTINCT windows: {len(distinct):,} in {dt:.2f} s -> "
          f"{len(distinct) / dt:,.0f}/s ({int((counts > 0).sum()):,} found, "
          f"{int((counts == 0).sum()):,} absent)")
    queries = [q for q in distinct for _ in range(args.repeats)]
    np.random.default_rng(8).shuffle(queries)
    t0 = time.perf_counter()
    counts_r = idx.count_many(queries)
    dt_r = time.perf_counter() - t0
    checkpoint()
    assert counts_r.sum() == args.repeats * counts.sum()
    print(f"window look-ups, TOTAL with repeats (each distinct window {args.repeats}x, shuffled, "
          f"one call; count_many searches each distinct window once): {len(queries):,} in "
          f"{dt_r:.2f} s -> {len(queries) / dt_r:,.0f}/s")

    gens = []
    for k in range(args.generations):
        w = windows[k % len(windows)].split(" ")
        filler = list(rng.choice(vocab_words, size=512 - len(w)))
        cut = int(rng.integers(0, len(filler)))
        gens.append(" ".join(filler[:cut] + w + filler[cut:]))
    offs = [offsets(g) for g in gens]
    t0 = time.perf_counter()
    res = idx.window_match_many(gens, offs, 50)
    dt = time.perf_counter() - t0
    checkpoint()
    print(f"window_match_many: {len(gens)} 512-token texts in {dt:.2f} s -> {len(gens) / dt:,.1f}"
          f" texts/s ({sum(r.has_window for r in res)} with a 50-token window)")

    if args.answers:
        spans, texts_ = check_queries()
        ans = answers(idx, spans, texts_)
        checkpoint()
        args.answers.write_text(json.dumps({"answers": ans, "vm_data_peak_above_mb": peak_above[0],
                                            "baseline_mb": base / 2**20,
                                            "n_bytes": idx.n_bytes, "n_docs": len(idx),
                                            "disk_bytes": idx.disk_bytes,
                                            "build_mb_s": mb / build_s}))
    checkpoint()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"private memory (VmData) above the warmed-up baseline at checkpoints: at most "
          f"{peak_above[0]:.1f} MB")
    print(f"peak RSS {peak:.0f} MB (file-backed index pages included); "
          f"index/corpus on disk {idx.disk_bytes / 2**20:.0f} MB")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
