"""GPU path choices that are checkable without a GPU: device pick, batch size, bf16 tolerance."""

from __future__ import annotations

import numpy as np
import pytest

from leakaudit.targets.gpu import (BF16_TOLERANCE_NATS, CPU_BATCH_SIZE, bf16_within_tolerance,
                                   choose_batch_size, select_device)
from leakaudit.targets.base import TokenScores
from tests.conftest import TEXTS


def test_select_device():
    free = {0: 1 << 30, 1: 5 << 30, 2: 3 << 30}
    assert select_device("auto", mem_get_info=lambda i: (free[i], 8 << 30), device_count=3) == "cuda:1"
    assert select_device("auto", mem_get_info=lambda i: (0, 0), device_count=0) == "cpu"
    assert select_device("cuda:2") == "cuda:2" and select_device("cpu") == "cpu"
    import torch

    if not torch.cuda.is_available():
        assert select_device("auto") == "cpu"


def test_choose_batch_size_by_hand():
    kw = dict(seq_len=512, vocab_size=50257, n_layer=12, d_model=768, n_params=124_000_000)
    assert choose_batch_size(device="cpu", free_bytes=None, **kw) == CPU_BATCH_SIZE
    # per sequence: 2*512*50257*4 + 12*512*768*4*16 = 507,842,560 bytes
    # 80 GiB: (0.8 * 85,899,345,920 - 496,000,000) // 507,842,560 = 134 -> 128
    assert choose_batch_size(device="cuda:0", free_bytes=80 * 2**30, **kw) == 128
    # 8 GiB: (6,871,947,674 - 496,000,000) // 507,842,560 = 12 -> 8
    assert choose_batch_size(device="cuda", free_bytes=8 * 2**30, **kw) == 8
    assert choose_batch_size(device="cuda", free_bytes=600 * 2**20, **kw) == 1
    assert choose_batch_size(device="cuda", free_bytes=10**15, max_batch=64, **kw) == 64


def _ts(means):
    return [TokenScores(token_ids=np.zeros(3, np.int64), logprobs=np.full(3, m, np.float32),
                        is_argmax=np.zeros(3, bool)) for m in means]


def test_bf16_tolerance_numbers():
    r = bf16_within_tolerance(_ts([-1.0, -2.0, -3.0]), _ts([-1.01, -2.03, -2.98]))
    assert r["ok"] and r["max_abs_diff_nats"] == pytest.approx(0.03, abs=1e-6) and r["spearman"] == 1.0
    bad = bf16_within_tolerance(_ts([-1.0, -2.0, -3.0]), _ts([-1.0, -2.0, -2.9]))
    assert not bad["ok"] and bad["max_abs_diff_nats"] == pytest.approx(0.1, abs=1e-6)
    swapped = bf16_within_tolerance(_ts([-1.0, -1.01, -3.0]), _ts([-1.01, -1.0, -3.0]))
    assert not swapped["ok"] and swapped["spearman"] == pytest.approx(0.5)


def test_bf16_on_cpu_against_float32(tiny_model_dir):
    from leakaudit.targets import load_target

    texts = sorted(set(TEXTS))
    f32 = load_target(str(tiny_model_dir), dtype="float32").score(texts, batch_size=4)
    b16 = load_target(str(tiny_model_dir), dtype="bfloat16").score(texts, batch_size=4)
    r = bf16_within_tolerance(f32, b16)
    print(r)
    assert 0 < r["max_abs_diff_nats"]  # bf16 really is different arithmetic
    assert r["max_abs_diff_nats"] <= BF16_TOLERANCE_NATS and r["ok"]
