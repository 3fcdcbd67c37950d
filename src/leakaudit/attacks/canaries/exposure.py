"""Canary exposure of a language model (Carlini et al. 2019, "The Secret Sharer").

For each inserted canary ``template.format(secret=s)``, ``n_references`` secrets are drawn from
the same space (never the inserted one) and every candidate sentence is scored in batched
teacher-forced passes. Log-perplexity is ``-Σ log2 p(token)`` over the sentence's tokens (in
bits; the shared template tokens add the same context to every candidate, so the ranking is that
of the secret given the template). Exposure is reported by rank and by skew-normal extrapolation
(:mod:`leakaudit.metrics.exposure`), and summarized per repetition count.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from leakaudit.attacks.canaries.spaces import canary_reference_secrets, space_of
from leakaudit.corpus.pii import mask_text
from leakaudit.errors import InputError
from leakaudit.metrics.exposure import exposure_by_extrapolation, exposure_by_rank
from leakaudit.progress import null_progress
from leakaudit.targets.base import LanguageModel

DOC_URI = "https://arxiv.org/abs/1802.08232"
THREAT_MODEL = "scores (teacher-forced log-probabilities) of chosen texts + the canary manifest"
TAGS = ["owasp:LLM02:2025", "atlas:AML.T0057"]
LN2 = math.log(2.0)


def canary_exposure(model: LanguageModel, canaries: Sequence[Mapping[str, Any]], *,
                    n_references: int, seed: int, batch_size: int, show_pii: bool = False,
                    progress=null_progress, store=None) -> list[dict[str, Any]]:
    """One record per canary: log-perplexities, rank, exposure by rank and by extrapolation.

    ``store``: a :class:`~leakaudit.runs.store.RunStore`; each canary (its candidates scored
    in one batched pass) is then a stage keyed by the model's fingerprint, the canary and the
    options, so a rerun after a crash reuses the canaries already measured. Without one, every
    candidate of every canary is scored in one batched pass."""
    if n_references < 10:
        raise InputError(f"exposure needs at least 10 reference candidates (≥ 1,000 recommended), "
                         f"got {n_references}")
    for c in canaries:
        for key in ("secret", "template", "repeats"):
            if key not in c:
                raise InputError(f"canary {c.get('id')!r} in the manifest has no {key!r} field")
        space_of(c)  # raises for an unknown space

    def candidates(i: int, c: Mapping[str, Any]) -> list[str]:
        refs = canary_reference_secrets(c, n_references, random.Random(seed * 1_000_003 + i))
        return ([str(c["template"]).format(secret=c["secret"])]
                + [str(c["template"]).format(secret=s) for s in refs])

    def log_ppl(scores) -> np.ndarray:
        return np.array([-float(np.sum(s.logprobs, dtype=np.float64)) / LN2 for s in scores])

    n_texts = len(canaries) * (n_references + 1)
    with progress(f"exposure ({len(canaries)} canaries)", n_texts) as adv:
        if store is None:
            texts: list[str] = []
            spans: list[tuple[int, int]] = []
            for i, c in enumerate(canaries):
                start = len(texts)
                texts.extend(candidates(i, c))
                spans.append((start, len(texts)))
            ppl = log_ppl(model.score(texts, batch_size=batch_size, progress=adv))
            return [_exposure_record(c, float(ppl[a]), ppl[a + 1:b], show_pii)
                    for c, (a, b) in zip(canaries, spans)]
        from leakaudit.runs.store import stage_key

        fp = model.fingerprint()
        out = []
        for i, c in enumerate(canaries):
            def measure(i=i, c=c):
                p = log_ppl(model.score(candidates(i, c), batch_size=batch_size, progress=adv))
                return _exposure_record(c, float(p[0]), p[1:], show_pii)

            key = stage_key("exposure-canary", fp, dict(c), i, n_references, seed, batch_size,
                            show_pii)
            out.append(store.json(f"exposure-{getattr(model, 'name', 'model')}-{i}", key, measure,
                                  describe={"canary_id": c.get("id"), "model_fingerprint": fp}))
        return out


def _exposure_record(c: Mapping[str, Any], canary_ppl: float, ref: np.ndarray,
                     show_pii: bool) -> dict[str, Any]:
    e_ext, fit = exposure_by_extrapolation(canary_ppl, ref)
    # No canary can be more exposed than its secret space is large (log2 |space| bits);
    # a skew-normal tail read beyond that is an artefact of the fit.
    space_bits = float(space_of(c).log2_size)
    capped = e_ext > space_bits
    secret = str(c["secret"])
    return {
        "attack": "canary_exposure", "canary_id": c.get("id"), "kind": c.get("kind"),
        "repeats": int(c["repeats"]), "secret": secret if show_pii else _mask_secret(secret),
        "log_perplexity_bits": canary_ppl,
        "reference_log_perplexity_bits": {"min": float(ref.min()),
                                          "median": float(np.median(ref)),
                                          "max": float(ref.max())},
        "n_references": int(ref.size), "rank": 1 + int(np.sum(ref < canary_ppl)),
        "exposure_rank": exposure_by_rank(canary_ppl, ref),
        "exposure_max_by_rank": math.log2(ref.size),
        "exposure_extrapolated": min(e_ext, space_bits), "extrapolation_capped": capped,
        "skewnorm_fit": fit, "secret_space_log2": space_bits,
        "doc_uri": DOC_URI, "tags": TAGS,
    }


def _mask_secret(secret: str) -> str:
    """A canary secret is sensitive by definition: PII-mask it, and if no PII rule matches
    (a custom pattern), keep only its first two characters."""
    masked = mask_text(secret)
    return masked if masked != secret else secret[:2] + "•" * max(0, len(secret) - 2)


def exposure_by_repeats(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Mean exposure (rank and extrapolated) per repetition count, ascending."""
    groups: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
    for r in records:
        groups[int(r["repeats"])].append(r)
    return [{"repeats": k, "n_canaries": len(v),
             "mean_exposure_rank": float(np.mean([r["exposure_rank"] for r in v])),
             "mean_exposure_extrapolated": float(np.mean([r["exposure_extrapolated"] for r in v])),
             "n_rank_1": sum(1 for r in v if r["rank"] == 1)}
            for k, v in sorted(groups.items())]
