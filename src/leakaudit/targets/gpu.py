"""GPU choices for the HF backend: which device, how large a batch, and whether bf16 is safe.

- :func:`select_device`: ``auto`` → the visible CUDA device with the most free memory (on a Ray
  GPU worker, the one Ray assigned), else ``cpu``.
- :func:`choose_batch_size`: the largest power-of-two batch whose teacher-forced scoring pass fits
  in a fraction of the free device memory. For the models audited here the float32 logits and
  their log-softmax (``2 x seq_len x vocab x 4`` bytes per sequence) dominate the activations;
  the hidden states add ``n_layer x seq_len x d_model x 4 x 16`` bytes (attention, MLP, residual,
  with a margin). On the CPU the memory-light default of the CPU path is kept.
- :func:`bf16_within_tolerance`: bf16 weights change per-token log-probabilities; an audit may use
  them only when, on a probe set, every text's mean log-probability moves by at most
  :data:`BF16_TOLERANCE_NATS` and the order of the texts (what every ranking and membership score
  depends on) is kept to a Spearman correlation of at least :data:`BF16_MIN_SPEARMAN`.

No GPU was available where this was written: the CUDA branches are plain calls to
``torch.cuda.mem_get_info``/``device_count``; the decision logic is pure and tested on the CPU
(including a real bf16 model on the CPU against its float32 weights).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["select_device", "choose_batch_size", "bf16_within_tolerance", "BF16_TOLERANCE_NATS",
           "BF16_MIN_SPEARMAN", "CPU_BATCH_SIZE"]

#: max |Δ mean log p| per text (nats/token) for bf16 to be accepted
BF16_TOLERANCE_NATS = 0.05
#: min Spearman correlation of per-text mean log p between bf16 and float32
BF16_MIN_SPEARMAN = 0.99
CPU_BATCH_SIZE = 16  # the CPU path's default scoring batch


def select_device(requested: str = "auto", *, mem_get_info: Callable[[int], tuple[int, int]] | None = None,
                  device_count: int | None = None) -> str:
    """``auto``: ``cuda:N`` for the device with the most free memory, ``cpu`` without CUDA.
    Anything else is returned as given (``check_device`` validates it)."""
    if requested != "auto":
        return requested
    if device_count is None or mem_get_info is None:
        try:
            import torch

            if not torch.cuda.is_available():
                return "cpu"
            device_count = torch.cuda.device_count()
            mem_get_info = torch.cuda.mem_get_info
        except Exception:  # noqa: BLE001 - a torch without CUDA support
            return "cpu"
    if not device_count:
        return "cpu"
    free = [mem_get_info(i)[0] for i in range(device_count)]
    return f"cuda:{int(np.argmax(free))}"


def choose_batch_size(*, device: str, free_bytes: int | None, seq_len: int, vocab_size: int,
                      n_layer: int, d_model: int, n_params: int, dtype_bytes: int = 4,
                      fraction: float = 0.8, max_batch: int = 512) -> int:
    """Largest power of two ≤ ``max_batch`` whose scoring pass fits ``fraction`` of the free
    memory next to the weights; :data:`CPU_BATCH_SIZE` on the CPU; at least 1.

    >>> choose_batch_size(device="cpu", free_bytes=None, seq_len=512, vocab_size=50257,
    ...                   n_layer=12, d_model=768, n_params=124_000_000)
    16
    >>> # GPT-2 small, 512 tokens, 80 GB free: 2*512*50257*4 + 12*512*768*64 ≈ 508 MB per sequence
    >>> choose_batch_size(device="cuda:0", free_bytes=80 * 2**30, seq_len=512, vocab_size=50257,
    ...                   n_layer=12, d_model=768, n_params=124_000_000)
    128
    """
    if not device.startswith("cuda") or free_bytes is None:
        return CPU_BATCH_SIZE
    per_seq = 2 * seq_len * vocab_size * 4 + n_layer * seq_len * d_model * 4 * 16
    budget = fraction * free_bytes - n_params * dtype_bytes
    if budget <= per_seq:
        return 1
    b = int(budget // per_seq)
    b = 1 << (b.bit_length() - 1)
    return max(1, min(b, max_batch))


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra = np.argsort(np.argsort(a)).astype(np.float64)
    rb = np.argsort(np.argsort(b)).astype(np.float64)
    if ra.std() == 0 or rb.std() == 0:
        return 1.0
    return float(np.corrcoef(ra, rb)[0, 1])


def bf16_within_tolerance(reference_scores: Sequence, bf16_scores: Sequence, *,
                          tol_nats: float = BF16_TOLERANCE_NATS,
                          min_spearman: float = BF16_MIN_SPEARMAN) -> dict:
    """Compare per-text mean log-probabilities (``TokenScores``) of float32 and bf16 weights on a
    probe set; ``ok`` when both criteria hold. Returns the measured numbers."""
    if len(reference_scores) != len(bf16_scores) or not reference_scores:
        raise ValueError("need the same, non-empty probe set scored both ways")
    a = np.array([float(np.mean(s.logprobs, dtype=np.float64)) for s in reference_scores])
    b = np.array([float(np.mean(s.logprobs, dtype=np.float64)) for s in bf16_scores])
    max_diff = float(np.max(np.abs(a - b)))
    rho = _spearman(a, b)
    return {"ok": bool(max_diff <= tol_nats and rho >= min_spearman), "max_abs_diff_nats": max_diff,
            "spearman": rho, "tol_nats": tol_nats, "min_spearman": min_spearman, "n_texts": len(a)}
