"""The natural-code member / non-member split of the extended real-model test
(``tests/code_corpus.py``): chunks within their bounds, no text twice, a seeded split."""

from __future__ import annotations

import json

from tests.code_corpus import (
    MAX_CHARS,
    MIN_CHARS,
    MIN_INK,
    file_chunks,
    split,
    write_split,
)


def test_file_chunks_are_whole_lines_within_bounds():
    text = "\n".join(f"x_{i} = compute({i}, scale={i * 7})  # line {i}" for i in range(60))
    chunks = file_chunks(text)
    assert chunks and all(MIN_CHARS <= len(c) + 1 <= MAX_CHARS for c in chunks)
    lines = set(text.splitlines())
    assert all(set(c.splitlines()) <= lines for c in chunks)  # whole lines, never cut
    # negative controls: blank text, a line longer than a chunk, and non-ASCII give nothing
    assert file_chunks("\n" * 50) == []
    assert file_chunks("y" * (MAX_CHARS + 5)) == []
    assert file_chunks("\n".join("é" * 40 for _ in range(10))) == []
    assert file_chunks("\n".join(" " * 30 + "x" for _ in range(20))) == []  # under MIN_INK ink
    assert MIN_INK > 20


def test_split_is_seeded_and_disjoint(tmp_path):
    m, n = split(50, 50, seed=0)
    assert len(m) == len(n) == 50
    texts = [d["text"] for d in m + n]
    assert len(set(texts)) == 100 and len({d["id"] for d in m + n}) == 100
    assert (m, n) == split(50, 50, seed=0)
    assert split(50, 50, seed=1) != (m, n)  # another seed, another split
    pm, pn = write_split(tmp_path, 50, 50, seed=0)
    assert [json.loads(x) for x in pm.read_text().splitlines()] == m
    assert [json.loads(x) for x in pn.read_text().splitlines()] == n
