"""Member and non-member documents of natural code, available offline: chunks of the Python
standard library's own source (the top-level ``*.py`` modules of the running interpreter's
``stdlib`` folder), the kind of text deployment C (a code model fine-tuned on a private codebase)
memorizes. Unlike the lab's templated documents, these vary widely in how predictable they are
(docstrings, imports, dense arithmetic, tables), which is what a reference model calibrates away;
SmolLM2 may or may not have seen them in pretraining, members and non-members alike.

Run ``python -m tests.code_corpus --out DIR --members 200 --nonmembers 200 --seed 0`` to write
``DIR/members.jsonl`` and ``DIR/nonmembers.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import random
import sysconfig
from pathlib import Path

#: a chunk is whole consecutive lines holding at least MIN_CHARS and at most MAX_CHARS characters
#: (about 48-64 SmolLM2 tokens of Python)
MIN_CHARS, MAX_CHARS = 200, 260
#: a chunk needs this many characters other than whitespace
MIN_INK = 140


def stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def file_chunks(text: str) -> list[str]:
    """Non-overlapping chunks of whole lines of one file, each MIN_CHARS..MAX_CHARS characters
    (a line that would push a chunk past MAX_CHARS ends it; a single longer line is dropped); ASCII
    only, with at least MIN_INK characters other than whitespace."""
    out: list[str] = []
    cur: list[str] = []
    size = 0
    for line in text.splitlines():
        line = line.rstrip()
        if len(line) + 1 > MAX_CHARS:  # one line longer than a chunk: start afresh after it
            cur, size = [], 0
            continue
        if size + len(line) + 1 > MAX_CHARS:
            cur, size = [], 0
        if not cur and not line.strip():  # no chunk starts with a blank line
            continue
        cur.append(line)
        size += len(line) + 1
        if size >= MIN_CHARS:
            chunk = "\n".join(cur)
            if chunk.isascii() and sum(not c.isspace() for c in chunk) >= MIN_INK:
                out.append(chunk)
            cur, size = [], 0
    return out


def stdlib_chunks(root: Path | None = None) -> list[dict]:
    """Every distinct chunk of every top-level ``*.py`` module under ``root`` (default: this
    interpreter's stdlib), in sorted file order, each ``{"id": "<module>.py:<n>", "text": ...}``.
    A chunk whose text occurs twice (license headers, boilerplate) is kept once."""
    root = stdlib_dir() if root is None else root
    seen: set[str] = set()
    docs: list[dict] = []
    for path in sorted(root.glob("*.py")):
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for i, chunk in enumerate(file_chunks(text)):
            if chunk in seen:
                continue
            seen.add(chunk)
            docs.append({"id": f"{path.name}:{i}", "text": chunk})
    return docs


def split(n_members: int, n_nonmembers: int, seed: int, root: Path | None = None
          ) -> tuple[list[dict], list[dict]]:
    """A random member / non-member split of ``n_members + n_nonmembers`` chunks drawn without
    replacement from :func:`stdlib_chunks` (``random.Random(seed)``); no text is on both sides."""
    docs = stdlib_chunks(root)
    if len(docs) < n_members + n_nonmembers:
        raise ValueError(f"{len(docs)} chunks, {n_members + n_nonmembers} asked for")
    picked = random.Random(seed).sample(docs, n_members + n_nonmembers)
    return picked[:n_members], picked[n_members:]


def write_split(out: Path, n_members: int, n_nonmembers: int, seed: int) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    members, nonmembers = split(n_members, n_nonmembers, seed)
    paths = []
    for name, docs in (("members", members), ("nonmembers", nonmembers)):
        p = out / f"{name}.jsonl"
        p.write_text("".join(json.dumps(d) + "\n" for d in docs))
        paths.append(p)
    return paths[0], paths[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--members", type=int, default=200)
    ap.add_argument("--nonmembers", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    for p in write_split(a.out, a.members, a.nonmembers, a.seed):
        print(p)


if __name__ == "__main__":
    main()
