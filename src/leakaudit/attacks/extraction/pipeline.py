"""Untargeted training-data extraction (Carlini et al. 2021), end to end.

generate (per sampler) → score (one batched pass per model and text variant) → rank (every
ranking) → fuzzy-dedup and select the top candidates of each (sampler, ranking) → verify against
the training corpus (a ≥ ``match_tokens``-token window occurring verbatim) → precision table in
the shape of the paper's Table 2, memorized samples with their corpus match, PII found in them.
"""

from __future__ import annotations

import time
from collections import Counter
from contextlib import nullcontext
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from leakaudit.attacks.extraction.dedup import select_deduplicated, trigrams
from leakaudit.attacks.extraction.rankings import RankingInputs, compute_rankings
from leakaudit.attacks.extraction.samplers import internet_prompts, sampler_spec
from leakaudit.corpus.pii import find_pii, mask_text
from leakaudit.errors import CapabilityError, LeakauditError
from leakaudit.metrics.stats import rate
from leakaudit.progress import null_progress
from leakaudit.taxonomy import TAXONOMY
from leakaudit.signals.lm import score_cached
from leakaudit.targets.base import Generation, LanguageModel, TokenScores

DOC_URI = "https://arxiv.org/abs/2012.07805"
THREAT_MODEL = "black-box: sampling and sequence log-probabilities; the corpus for verification"


@dataclass(frozen=True)
class ExtractionConfig:
    """Settings of one extraction run (defaults follow the paper where it gives them)."""

    samplers: tuple[str, ...] = ("top_k", "temperature", "internet")
    n_samples: int = 1000  #: generations per sampler
    max_new_tokens: int = 256
    top_k: int = 40
    select: int = 100  #: candidates per (sampler, ranking), after fuzzy dedup
    rankings: tuple[str, ...] | None = None  #: None: every ranking whose inputs exist
    window: int = 50  #: sliding-window size of the window ranking (tokens)
    min_k: float = 0.2
    match_tokens: int = 50  #: a verified sample contains this many tokens verbatim from the corpus
    prompt_tokens: tuple[int, int] = (5, 10)
    generate_batch_size: int = 32
    score_batch_size: int = 16
    verify_all: bool = True  #: verify every sample (gives a random-selection baseline), not only the selected
    #: generations per sampling shard: the unit of resume (a shard is a stage of the run store)
    #: and of seeding (shard j of sampler i draws from its own seed), so results do not depend on
    #: where a run was interrupted
    shard_samples: int = 256
    #: where the target's per-token log-probs that rank samples come from: ``echo`` (a
    #: teacher-forced pass over each sample: in-process, or prompt log-probs over an API),
    #: ``generated`` (the log-probs an API returns with the sampled tokens: no extra request;
    #: they cover the new tokens, each given the prompt and the tokens before it), ``none``
    #: (the target gives none: rank with each local reference model and zlib instead), or
    #: ``auto`` (the first of these the target can serve)
    target_scores: str = "auto"
    seed: int = 0
    show_pii: bool = False


@dataclass
class ExtractionResult:
    config: ExtractionConfig
    samples: list[dict[str, Any]]
    evals: list[dict[str, Any]]
    canaries: list[dict[str, Any]]
    pii: dict[str, Any]
    summary: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)


def _verify(text: str, model: LanguageModel, index, match_tokens: int) -> dict[str, Any]:
    offsets = model.token_offsets(text)
    wr = index.window_match(text, offsets, window=match_tokens)
    out: dict[str, Any] = {
        "verified": bool(wr.has_window),
        "n_tokens": int(wr.n_tokens),
        "longest_match_tokens": int(wr.longest_run_tokens),
    }
    if wr.has_window:
        m = index.longest_match(text)
        out.update({
            "match_char_span": [m.char_start, m.char_end],
            "match_count": int(m.count),
            "match_doc_count": int(m.doc_count),
            "match_docs": [d for d, _ in m.locations[:5]],
            "match_text": m.text,
        })
    return out


def index_key(index) -> str:
    """A hash of an exact-match index's content (its texts and document ids)."""
    import hashlib

    if hasattr(index, "content_key"):  # the on-disk index
        return index.content_key()
    h = hashlib.sha256(bytes(index._data))
    h.update("\x00".join(index._doc_ids).encode("utf-8"))
    return h.hexdigest()


def _shown_secret(secret: str, show_pii: bool) -> str:
    """The secret as reports show it: masked like PII, or cut to two characters when the PII
    detector does not recognise its shape."""
    if show_pii:
        return secret
    masked = mask_text(secret)
    return masked if masked != secret else secret[:2] + "…"


def run_extraction(
    target: LanguageModel,
    *,
    references: dict[str, LanguageModel] | None = None,
    index=None,
    prompt_texts: Sequence[str] | None = None,
    canaries: Sequence[dict[str, Any]] | None = None,
    config: ExtractionConfig = ExtractionConfig(),
    cache_dir=None,
    progress=null_progress,
    warn=lambda msg: None,
    store=None,
    executor=None,
    executor_device: str = "auto",
    executor_threads: int | None = None,
) -> ExtractionResult:
    """Run the pipeline. ``index`` is a :class:`~leakaudit.corpus.index.CorpusIndex` (without it
    nothing is verified and every hit is labelled unverified). ``canaries`` (lab manifests) are
    dicts with ``id``, ``kind``, ``secret``, ``repeats``. ``store``: a
    :class:`~leakaudit.runs.store.RunStore`; each sampling shard and the verification are stages
    of it (reused after a crash); without one everything is computed.

    ``executor`` (a :class:`~leakaudit.exec.Executor`, e.g. Ray): sampling shards, scoring
    batches and verification (on an on-disk index) run as its shard tasks, on
    ``executor_device`` with ``executor_threads`` torch threads per shard; everything else is
    this same code, and the results equal the single-process run's (see
    :mod:`leakaudit.exec.extraction`)."""
    from leakaudit.runs.store import NullStore, stage_key, texts_key

    store = store if store is not None else NullStore()
    references = references or {}
    cfg = config
    if cfg.shard_samples < 1:
        raise LeakauditError(f"shard_samples must be at least 1, got {cfg.shard_samples}")
    target.capabilities.require("generation", who="extraction")
    from leakaudit.targets.base import skip_record

    source = score_source(target.capabilities, cfg.target_scores, has_references=bool(references))

    cap_skipped: list[dict[str, Any]] = []
    samplers = []
    for name in cfg.samplers:  # the decaying temperature is a custom logits processor
        needs = ("logits_processors",) if name == "temperature" else ()
        if needs and target.capabilities.missing(*needs):
            cap_skipped.append({**skip_record(f"sampler:{name}", needs, target.capabilities,
                                          target="target")})
            continue
        samplers.append(name)
    for rname in list(references):
        caps = references[rname].capabilities
        if caps.missing("prompt_logprobs"):
            cap_skipped.append(skip_record(f"ranking:reference:{rname}", ("prompt_logprobs",), caps,
                                       target=f"reference model {rname!r}"))
            references = {k: v for k, v in references.items() if k != rname}
    if not target.capabilities.seeded_generation:
        warn("the target's sampling is not seeded: samples differ from run to run")
    for sk in cap_skipped:
        warn(f"skipped {sk['attack']}: {sk['reason']}")
    if not samplers:
        raise CapabilityError("no sampler can run on this target: "
                              + "; ".join(sk["reason"] for sk in cap_skipped))
    if tuple(samplers) != tuple(cfg.samplers):
        cfg = replace(cfg, samplers=tuple(samplers))
    if "internet" in cfg.samplers and not prompt_texts:
        raise LeakauditError("the internet sampler needs prompt texts (--prompts FILE)")
    if not references:
        warn("no reference model given: the reference-ratio ranking is skipped; precision is "
             "typically lower without it")
    if index is None:
        warn("no corpus given: candidates cannot be verified; every hit is unverified")
    timings: dict[str, float] = {}
    remote = None
    if executor is not None:
        remote = executor.extraction

        specs = remote.cluster_specs(target, references, index, device=executor_device)
        plan: list[dict[str, Any]] = []

    # 1. generate
    t0 = time.perf_counter()
    gens: list[Generation] = []
    sampler_of: list[str] = []
    for si, name in enumerate(cfg.samplers):
        spec = sampler_spec(name, max_new_tokens=cfg.max_new_tokens, top_k=cfg.top_k)
        if spec.needs_prompts:
            prompts = internet_prompts(target, prompt_texts, cfg.n_samples, seed=cfg.seed + 7919 * si,
                                       min_tokens=cfg.prompt_tokens[0], max_tokens=cfg.prompt_tokens[1])
        else:
            prompts = [[target.bos_id]] * cfg.n_samples
        out = []
        with (progress(f"sampling ({name})", cfg.n_samples) if remote is None
              else nullcontext(lambda k: None)) as adv:
            for sh, lo in enumerate(range(0, len(prompts), cfg.shard_samples)):
                part = prompts[lo: lo + cfg.shard_samples]
                seed = cfg.seed * 31 + si + 7_777_777 * sh  # shard 0: the unsharded seed
                key = stage_key("samples", target.fingerprint(), name, spec.sampling, part, seed,
                                cfg.generate_batch_size)

                def generate(_part=part, _seed=seed):
                    return [asdict(g) for g in target.generate_ids(
                        _part, spec.sampling, seed=_seed, batch_size=cfg.generate_batch_size,
                        progress=adv)]

                if remote is not None:  # the same shard, on the executor (below)
                    plan.append({"name": f"samples-{name}-{sh}", "key": key, "sampler": name,
                                 "payload": remote.sample_payload(name, part, seed, cfg,
                                                                  executor_threads)})
                    continue
                n_before = len(store.reused)
                shard = store.json(f"samples-{name}-{sh}", key, generate)
                if len(store.reused) > n_before:
                    adv(len(part))
                out.extend(Generation(**g) for g in shard)
        gens.extend(out)
        sampler_of.extend([name] * len(out))
    if remote is not None:
        with progress(f"sampling ({executor.name})", len(plan)) as adv:
            for p, shard in zip(plan, remote.run_samples(executor, store, specs, plan, progress=adv)):
                gens.extend(Generation(**g) for g in shard)
                sampler_of.extend([p["sampler"]] * len(shard))
    timings["generate_s"] = time.perf_counter() - t0
    texts = [g.text for g in gens]
    n = len(texts)
    empty = sum(1 for t in texts if not t.strip())
    if empty:
        warn(f"{empty} of {n} samples decoded to empty text; they are kept and rank last")

    # 2. score: one batched pass per model and text variant
    t0 = time.perf_counter()
    def score(which, model, xs, adv, label=None):
        if remote is not None:
            return remote.run_scores(executor, store, specs, which, model, xs,
                                     batch_size=cfg.score_batch_size, shard_texts=cfg.shard_samples,
                                     threads=executor_threads, label=label, progress=adv)
        return score_cached(model, xs, cache_dir=cache_dir, batch_size=cfg.score_batch_size,
                            progress=adv)

    tgt = None
    if source == "echo":
        with progress("scoring (target)", n) as adv:
            tgt = score("target", target, texts, adv)
    elif source == "generated":
        tgt = generated_scores(gens)
        n_missing = sum(1 for g in gens if "logprobs" not in g.meta)
        if n_missing:
            warn(f"{n_missing} of {n} samples came without generated log-probs; they rank last")
    lower = None
    if source != "echo" and (cfg.rankings is None or "lowercase" in cfg.rankings):
        if target.capabilities.missing("prompt_logprobs"):
            sk = skip_record("ranking:lowercase", ("prompt_logprobs",), target.capabilities,
                             target="target")
        else:
            sk = {"attack": "ranking:lowercase", "skipped": True, "target": "target",
                  "needs": [], "missing": [], "reason": "target_scores=generated: the ratio "
                  "would divide echoed by generated log-probs"}
        cap_skipped.append(sk)
        warn(f"skipped ranking:lowercase: {sk['reason']}")
    elif cfg.rankings is None or "lowercase" in cfg.rankings:
        with progress("scoring (lowercased)", n) as adv:
            lower = score("target", target, [t.lower() for t in texts], adv, "lowercased")
    refs = {}
    for rname, rmodel in references.items():
        with progress(f"scoring (ref {rname})", n) as adv:
            refs[rname] = score(rname, rmodel, texts, adv, f"ref-{rname}")
    timings["score_s"] = time.perf_counter() - t0
    if tgt is not None:
        names = cfg.rankings if cfg.rankings is None or lower is not None else \
            tuple(r for r in cfg.rankings if r != "lowercase")
        scores = compute_rankings(RankingInputs(texts, tgt, lower, refs), names=names,
                                  window=cfg.window, min_k=cfg.min_k)
    else:  # no target log-probs: each reference model stands in for the target
        scores = {}
        own = ("perplexity", "zlib", "min_k", "window")
        for rname, rs in refs.items():
            got = compute_rankings(RankingInputs(texts, rs), names=[
                r for r in (cfg.rankings or own) if r in own], window=cfg.window, min_k=cfg.min_k)
            scores.update({f"{k}@{rname}": v for k, v in got.items()})

    # 3. dedup + select per (sampler, ranking)
    t0 = time.perf_counter()
    tris = [trigrams(t) for t in texts]
    sampler_arr = np.array(sampler_of)
    selections: dict[tuple[str, str], list[int]] = {}
    dup_skipped: dict[tuple[str, str], int] = {}
    for s in cfg.samplers:
        elig = sampler_arr == s
        for r, sc in scores.items():
            sel, skipped = select_deduplicated(sc, tris, k=cfg.select, eligible=elig)
            selections[(s, r)] = sel
            dup_skipped[(s, r)] = skipped
    timings["select_s"] = time.perf_counter() - t0

    # 4. verify
    t0 = time.perf_counter()
    selected_any = sorted({i for v in selections.values() for i in v})
    to_verify = range(n) if (cfg.verify_all and index is not None) else (selected_any if index is not None else [])
    verification: dict[int, dict[str, Any]] = {}
    with progress("verifying vs corpus", len(to_verify)) as adv:
        def verify_all():
            res = {}
            for i in to_verify:
                res[str(i)] = _verify(texts[i], target, index, cfg.match_tokens)
                adv(1)
            return res

        if to_verify and remote is not None and specs["index"] is not None:
            verification = remote.run_verify(executor, store, specs, target, texts, to_verify,
                                             match_tokens=cfg.match_tokens,
                                             index_key=index_key(index),
                                             shard_texts=cfg.shard_samples,
                                             threads=executor_threads, progress=adv)
        elif to_verify:
            vkey = stage_key("verify", target.fingerprint(), texts_key(texts), list(to_verify),
                             index_key(index), cfg.match_tokens)
            verification = {int(i): v for i, v in store.json("verify", vkey, verify_all).items()}
    timings["verify_s"] = time.perf_counter() - t0

    # 5. records
    selected_by: dict[int, list[str]] = {}
    for (s, r), sel in selections.items():
        for rank, i in enumerate(sel):
            selected_by.setdefault(i, []).append(f"{r}#{rank + 1}")
    mask = (lambda t: t) if cfg.show_pii else mask_text
    samples = []
    for i, g in enumerate(gens):
        v = verification.get(i, {})
        pii = find_pii(texts[i])
        rec = {
            "sample_id": i,
            "sampler": sampler_of[i],
            "prompt": mask(g.prompt_text),
            "text": mask(texts[i]),
            "n_new_tokens": len(g.new_ids),
            "truncated": bool(g.meta.get("truncated", False)),
            "scores": {r: float(sc[i]) for r, sc in scores.items()},
            "log_ppl": float(-tgt[i].logprobs.mean()) if tgt is not None and len(tgt[i]) else None,
            "selected_by": selected_by.get(i, []),
            "verified": v.get("verified") if v else None,
            "pii_kinds": sorted({p.kind for p in pii}),
            "tags": TAXONOMY["extraction"],
        }
        if v:
            rec.update({k: val for k, val in v.items() if k != "verified"})
            if "match_text" in rec:
                rec["match_text"] = mask(rec["match_text"])
        samples.append(rec)

    evals = []
    base_rates = {}
    for s in cfg.samplers:
        idx = [i for i in range(n) if sampler_of[i] == s and i in verification]
        k = sum(verification[i]["verified"] for i in idx)
        base_rates[s] = rate(k, len(idx)) if idx and cfg.verify_all else None
    for (s, r), sel in selections.items():
        flags = [bool(verification.get(i, {}).get("verified", False)) for i in sel]
        rt = rate(sum(flags), len(sel))
        evals.append({
            "attack": "extraction", "sampler": s, "ranking": r, "n_selected": len(sel),
            "n_memorized": rt.k, "precision": rt.value, "ci_low": rt.low, "ci_high": rt.high,
            "duplicates_skipped": dup_skipped[(s, r)],
            "precision_at_k": (np.cumsum(flags) / np.arange(1, len(flags) + 1)).tolist() if flags else [],
            "verified": index is not None,
            "random_baseline": base_rates[s].to_dict() if base_rates.get(s) else None,
            "tags": TAXONOMY["extraction"], "doc_uri": DOC_URI,
        })

    # canaries: is the secret anywhere in the samples, and in a verified one?
    canary_recs = []
    for c in canaries or []:
        hits = [i for i, t in enumerate(texts) if c["secret"] in t]
        canary_recs.append({
            "canary_id": c["id"], "kind": c["kind"], "repeats": c["repeats"],
            "secret": _shown_secret(c["secret"], cfg.show_pii),
            "extracted": bool(hits), "n_samples_with_secret": len(hits),
            "samplers": sorted({sampler_of[i] for i in hits}),
            "in_verified_sample": any(verification.get(i, {}).get("verified", False) for i in hits),
            "in_selected_candidate": any(i in selected_by for i in hits),
            "sample_ids": hits[:20],
        })

    verified_ids = [i for i in range(n) if verification.get(i, {}).get("verified")]
    pii_counts: Counter = Counter()
    for i in verified_ids:
        for p in find_pii(texts[i]):
            pii_counts[p.kind] += 1
    from leakaudit.corpus.pii import PII_KINDS

    pii_rec = {"scope": "verified samples", "counts": dict(pii_counts),
               "masked_kinds": [] if cfg.show_pii else list(PII_KINDS),
               "n_samples_with_pii": sum(1 for i in verified_ids if samples[i]["pii_kinds"])}

    unique_selected_memorized = [i for i in selected_any if verification.get(i, {}).get("verified")]
    best = max(evals, key=lambda e: (e["precision"] or 0)) if evals else None
    summary = {
        "attack": "extraction",
        "n_samples": n,
        "n_samples_per_sampler": {s: int((sampler_arr == s).sum()) for s in cfg.samplers},
        "n_empty_samples": empty,
        "n_truncated_samples": sum(1 for g in gens if g.meta.get("truncated")),
        "n_candidates": len(selected_any),
        "n_verified_candidates": len(unique_selected_memorized),
        "n_verified_samples": len(verified_ids) if index is not None else None,
        "verified_fraction_of_all": (len(verified_ids) / n) if (index is not None and cfg.verify_all) else None,
        "best": {k: best[k] for k in ("sampler", "ranking", "precision", "ci_low", "ci_high")} if best else None,
        "rankings": list(scores),
        "target_scores": source,
        "n_canaries": len(canary_recs),
        "canaries_extracted": [c["canary_id"] for c in canary_recs if c["extracted"]],
        "pii_in_verified": dict(pii_counts),
        "verified": index is not None,
        "skipped": cap_skipped,
        "tags": TAXONOMY["extraction"],
    }
    return ExtractionResult(cfg, samples, evals, canary_recs, pii_rec, summary, timings)


SCORE_SOURCES = ("auto", "echo", "generated", "none")


def score_source(caps, want: str = "auto", *, has_references: bool = False) -> str:
    """Where the target's ranking log-probs come from (``ExtractionConfig.target_scores``):
    ``auto`` picks ``echo`` when the target scores given text (``prompt_logprobs``), else
    ``generated`` when it returns log-probs with its samples (``generated_logprobs``, an API
    capability), else ``none``, which needs a local reference model to rank with. An endpoint
    whose echo is misaligned scores a text through its generation path (``prompt_logprobs_via``
    ``"grammar"``: the sample generated once more, one forward pass per token; ``"forced"``: one
    request per token) and ranks with ``generated`` under ``auto`` when it can: they come free."""
    if want not in SCORE_SOURCES:
        raise LeakauditError(f"target_scores must be one of {', '.join(SCORE_SOURCES)}, got {want!r}")
    echo = bool(caps.prompt_logprobs)
    gen = bool(getattr(caps, "generated_logprobs", False))
    if want == "auto":
        costly = getattr(caps, "prompt_logprobs_via", "") in ("forced", "grammar")
        want = ("generated" if gen and (costly or not echo) else "echo" if echo else
                "generated" if gen else "none")
    if want == "echo" and not echo:
        raise CapabilityError("ranking with echoed log-probs needs prompt_logprobs, which this "
                              "target does not provide")
    if want == "generated" and not gen:
        raise CapabilityError("ranking with generated-token log-probs needs a target that "
                              "returns them (an API with logprobs)")
    if want == "none" and not has_references:
        raise CapabilityError("the target gives no log-probs to rank samples with: give a local "
                              "reference model (--reference) to rank with it and zlib")
    return want


def generated_scores(gens: Sequence[Generation]) -> list[TokenScores]:
    """The target's log-probs of its own sampled tokens (``Generation.meta["logprobs"]``, as an
    API returns them with each sample) as :class:`TokenScores` over the new tokens; a sample
    without them (a failed request) gets an empty score, which ranks last."""
    out = []
    for g in gens:
        lp = g.meta.get("logprobs")
        if not lp:
            out.append(TokenScores(np.zeros(0, np.int64), np.zeros(0, np.float32),
                                   np.zeros(0, bool)))
            continue
        am = g.meta.get("is_argmax") or [False] * len(lp)
        # ids are -1 where the API's token strings did not map back to ids (the log-probs,
        # which the rankings read, stand)
        ids = g.new_ids if len(g.new_ids) == len(lp) else [-1] * len(lp)
        out.append(TokenScores(np.asarray(ids, np.int64), np.asarray(lp, np.float32),
                               np.asarray(am, bool)))
    return out


def config_dict(cfg: ExtractionConfig) -> dict[str, Any]:
    return asdict(cfg)
