"""The fuzzy deduplication of Carlini et al. 2021 (§6.1).

``tri(s)`` is the multiset of word-level trigrams of ``s`` (words split on whitespace and
punctuation); ``s1`` duplicates ``s2`` when ``|tri(s1) ∩ tri(s2)| >= |tri(s1)| / 2``
(multiset intersection). Selection walks a ranking from the top and skips any sample that
duplicates one already selected, so each ranking's candidates are distinct texts.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Sequence

import numpy as np

_WORD = re.compile(r"\w+")


def trigrams(text: str) -> Counter:
    """Multiset of word trigrams (words are runs of letters/digits/underscore)."""
    w = _WORD.findall(text)
    return Counter(zip(w, w[1:], w[2:]))


def is_duplicate(t1: Counter, t2: Counter) -> bool:
    """``|t1 ∩ t2| >= |t1| / 2`` with multiset intersection. A text with no trigram (fewer than
    three words) duplicates only another text with no trigram."""
    n1 = sum(t1.values())
    if n1 == 0:
        return sum(t2.values()) == 0
    inter = sum((t1 & t2).values())
    return 2 * inter >= n1


def select_deduplicated(
    scores: np.ndarray,
    tris: Sequence[Counter],
    *,
    k: int,
    eligible: np.ndarray | None = None,
) -> tuple[list[int], int]:
    """Indices of the top-``k`` samples by ``scores`` (descending, ties by index), skipping any
    that duplicates an already selected sample. Returns (selected, number skipped as duplicates).

    An inverted index over the selected samples' trigrams keeps each check proportional to the
    candidate's own trigrams rather than to the number selected.
    """
    order = np.lexsort((np.arange(len(scores)), -np.asarray(scores, dtype=np.float64)))
    selected: list[int] = []
    skipped = 0
    postings: dict[tuple, list[int]] = defaultdict(list)
    empty_selected = False
    for i in order:
        if len(selected) >= k:
            break
        if eligible is not None and not eligible[i]:
            continue
        t = tris[i]
        n1 = sum(t.values())
        dup = False
        if n1 == 0:
            dup = empty_selected
        else:
            cands = {j for g in t for j in postings.get(g, ())}
            dup = any(is_duplicate(t, tris[j]) for j in cands)
        if dup:
            skipped += 1
            continue
        selected.append(int(i))
        if n1 == 0:
            empty_selected = True
        for g in t:
            postings[g].append(int(i))
    return selected, skipped
