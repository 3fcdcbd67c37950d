"""The optimized MemFree processor (top-k candidate window, signature shortcut) blocks exactly
what a naive reference walk over the whole sorted vocabulary blocks, on random inputs."""

import inspect
import random

import pytest
import torch

from leakaudit.defenses.output_filter import FilterStats, NgramFilter, memfree_processor
from leakaudit.targets.base import SamplingConfig


def _reference(f: NgramFilter, sampling: SamplingConfig, input_ids, scores):
    """Naive MemFree step: every finite candidate in descending score order, until the sampler
    has its allowed ones (1 greedy, k top-k, all otherwise); a context that starts no training
    n-gram (not in the prefix filter) is left alone, as the filter defines."""
    out = scores.clone()
    b, v = scores.shape
    need = 1 if sampling.greedy else (min(sampling.top_k, v) if sampling.top_k and
                                      sampling.top_p is None else None)
    for r in range(b):
        pre = tuple(int(x) for x in input_ids[r, -(f.n - 1):])
        if len(pre) < f.n - 1 or pre not in f.prefixes_:
            continue
        row = scores[r].tolist()
        cand = sorted((t for t in range(v) if abs(row[t]) != float("inf")), key=lambda t: -row[t])
        blocked, allowed = [], 0
        for t in cand:
            if (*pre, t) in f:
                blocked.append(t)
            else:
                allowed += 1
                if need is not None and allowed >= need:
                    break
        if blocked and allowed > 0:
            out[r, blocked] = float("-inf")
    return out


@pytest.mark.parametrize("vocab", [48, 600])
@pytest.mark.parametrize("sampling", [SamplingConfig(greedy=True), SamplingConfig(top_k=5),
                                      SamplingConfig(top_k=40), SamplingConfig(top_p=0.9)],
                         ids=["greedy", "top5", "top40", "top_p"])
def test_processor_blocks_what_the_naive_walk_blocks(vocab, sampling):
    rng = random.Random(vocab)
    n = 4
    prefixes = [tuple(rng.randrange(vocab) for _ in range(n - 1)) for _ in range(6)]
    seqs = [[rng.randrange(vocab) for _ in range(30)] for _ in range(40)]
    # one prefix continued by 30 different tokens: rows whose best candidates are all blocked,
    # past the processor's first top-k window (its fallback to the whole vocabulary)
    seqs += [list(prefixes[0]) + [t] for t in range(30)]
    seqs += [list(p) + [rng.randrange(vocab)] for p in prefixes[1:]]
    f = NgramFilter.build(seqs, n=n, fp_rate=0.01)
    g = torch.Generator().manual_seed(vocab)
    total_blocked = 0
    for trial in range(12):
        b = 6
        ids = torch.randint(0, vocab, (b, 5 + trial % 3), generator=g)
        for r in range(b):  # most rows end in a training prefix
            if r % 3 != 2:
                ids[r, -(n - 1):] = torch.tensor(prefixes[(trial + r) % len(prefixes)])
        scores = torch.randn(b, vocab, generator=g)
        if trial % 2 == 0:
            favoured = list(range(30))  # the 30 blocked continuations of prefixes[0] score best
            scores[:, favoured] += 10.0
        if trial % 5 == 0:
            scores[0, : vocab // 3] = float("-inf")  # masked tokens are never candidates
        want = _reference(f, sampling, ids, scores)
        st = FilterStats()
        got = memfree_processor(f, sampling, st)(ids, scores.clone())
        assert torch.equal(got, want), (trial, sampling)
        total_blocked += st.blocked
        assert st.blocked == int((torch.isinf(want) & ~torch.isinf(scores)).sum())
    assert total_blocked > 12  # the inputs did exercise blocking, the fallback included


def test_processor_signature_is_cheap_and_right():
    f = NgramFilter.build([[1, 2, 3, 4]], n=3, fp_rate=1e-6)
    p = memfree_processor(f, SamplingConfig(greedy=True))
    # transformers inspects it each step: exactly (input_ids, scores), no extra kwargs
    assert list(inspect.signature(p.__call__).parameters) == ["input_ids", "scores"]
    s = torch.zeros(1, 6)
    s[0, 4] = 1.0  # after [1, 2, 3], token 4 completes (2, 3, 4): masked
    out = p(torch.tensor([[1, 2, 3]]), s)
    assert out[0, 4] == float("-inf") and torch.isfinite(out[0, :4]).all()
