"""Memorization of training sequences: greedy-discoverable, approximate, fractional, probabilistic.

The auditor's question is "of the training data, how much is memorized, and what drives it?"
(Carlini et al. 2022). For training sequences of ``k + ℓ`` tokens, the model is given the
``k``-token prefix and judged on the ``ℓ``-token suffix:

- **exact (greedy-discoverable)**: greedy decoding reproduces the suffix. Computed by teacher
  forcing in one batched forward pass (every suffix token is the argmax given the true context,
  see :func:`leakaudit.metrics.memorization.greedy_discoverable`); cross-checked on a subset by
  real greedy generation (``greedy_check``), and optionally re-checked at batch size 1.
- **approximate**: token edit distance of the *generated* greedy continuation ≤ 10% of ℓ
  (Gemini 2.5 report); needs the slow path, so it is reported for the cross-checked subset.
- **fractional** (Pythia): the fraction of suffix positions that are argmax, teacher-forced.
- **(n, p)-extraction** (Hayes et al. 2024): p_z, the probability that one sample under the
  chosen scheme (temperature, top-k renormalized) equals the suffix, from the same pass; the
  probability of extraction within n queries and the n needed for probability p.
- **k-eidetic**: the number of training documents that contain the sequence (corpus index).

Sequences are windows of the tokenized corpus; their duplicate count is the number of occurrences
of the window's text in the corpus. With ``stratify=True`` the sample is spread evenly over
duplicate-count buckets (powers of two), as the 2022 paper does, so that rare high-count
sequences are measured at all.
"""

from __future__ import annotations

import math
import random
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from leakaudit.errors import CapabilityError, InputError
from leakaudit.metrics import memorization as mm
from leakaudit.metrics.stats import rate
from leakaudit.progress import null_progress
from leakaudit.targets.base import LanguageModel, SamplingConfig, skip_record

DOC_URI = "https://arxiv.org/abs/2202.07646"
THREAT_MODEL = "white-box scores (teacher-forced log-probabilities) + the training corpus"

#: Prefix/suffix presets: the 2022 paper's 50/50 and Pythia's 32/32.
PRESETS: dict[str, tuple[tuple[int, ...], int]] = {
    "carlini2022": ((50,), 50),
    "pythia": ((32,), 32),
}


@dataclass(frozen=True)
class MemorizationConfig:
    """What to measure. Every field is stored as given; nothing is defaulted inside functions.

    prefix_lengths   k values (several in one run: the context-length question)
    suffix_length    ℓ
    n_sequences      how many windows to measure (None: all candidate windows)
    stride           distance in tokens between candidate windows of one document (None: ℓ)
    stratify         spread the sample evenly over duplicate-count buckets
    sampling         the scheme of p_z (temperature, top-k); greedy is not a sampling scheme
    extraction_n     report P(extracted within n queries) for each n
    extraction_p     report the n needed to extract with probability p
    greedy_check     how many sequences to cross-check with real greedy generation (-1: all)
    recheck_batch1   re-score every exact positive alone (batch size 1) and count flips
    approx_fraction  approximate memorization threshold, a fraction of ℓ
    """

    prefix_lengths: tuple[int, ...] = (50,)
    suffix_length: int = 50
    n_sequences: int | None = 1000
    stride: int | None = None
    stratify: bool = True
    sampling: SamplingConfig = field(default_factory=lambda: SamplingConfig(top_k=40,
                                                                             temperature=1.0))
    extraction_n: tuple[int, ...] = (1, 100, 10_000)
    extraction_p: float = 0.5
    greedy_check: int = 500
    recheck_batch1: bool = False
    approx_fraction: float = 0.10
    batch_size: int = 32
    seed: int = 0

    def validate(self) -> None:
        if not self.prefix_lengths or any(k < 1 for k in self.prefix_lengths):
            raise InputError(f"prefix lengths must be positive integers, got {self.prefix_lengths}")
        if self.suffix_length < 1:
            raise InputError(f"suffix length must be positive, got {self.suffix_length}")
        if self.n_sequences is not None and self.n_sequences < 1:
            raise InputError(f"n_sequences must be positive, got {self.n_sequences}")
        if self.stride is not None and self.stride < 1:
            raise InputError(f"stride must be positive, got {self.stride}")
        if isinstance(self.greedy_check, bool) or not isinstance(self.greedy_check, int) or \
                self.greedy_check < -1:
            raise InputError(f"--greedy-check must be -1 (every window), 0 (none) or a positive "
                             f"number of windows, got {self.greedy_check!r}")
        if self.sampling.greedy:
            raise InputError("p_z needs a sampling scheme (temperature, top-k), not greedy")
        if not 0.0 < self.extraction_p < 1.0:
            raise InputError(f"extraction_p must lie in (0, 1), got {self.extraction_p}")
        if not 0.0 <= self.approx_fraction < 1.0:
            raise InputError(f"approx_fraction must lie in [0, 1), got {self.approx_fraction}")

    @property
    def window(self) -> int:
        return max(self.prefix_lengths) + self.suffix_length

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["prefix_lengths"] = list(self.prefix_lengths)
        d["extraction_n"] = list(self.extraction_n)
        return d


@dataclass
class Sequences:
    """Training windows of ``window`` tokens: the last ℓ are the suffix."""

    ids: list[list[int]]
    doc_ids: list[str]
    offsets: list[int]  # token offset of the window in its document
    texts: list[str]  # the window's text, cut from the document by token offsets
    suffix_texts: list[str]
    dup_counts: list[int]  # occurrences of the window's text in the corpus
    doc_counts: list[int]  # distinct documents containing it (k-eidetic)
    n_docs: int
    n_docs_skipped: int  # documents shorter than the window
    n_candidates: int


#: Characters of one document tokenized at a time while windows are cut: peak memory grows with
#: this and with the windows measured, never with the length of a document.
CHUNK_CHARS = 1 << 16
_PROBE_CHARS = 200
_WS = re.compile(r"\s")


def _joins_cleanly(model: LanguageModel, text: str, cut: int) -> bool:
    """Whether tokenizing the text on either side of ``cut`` separately gives the same tokens as
    tokenizing across it (checked on the ``_PROBE_CHARS`` characters each side)."""
    left, right = text[max(0, cut - _PROBE_CHARS): cut], text[cut: cut + _PROBE_CHARS]
    joint, a, b = model.tokenize([left + right, left, right])
    return joint == a + b


def _safe_cut(model: LanguageModel, text: str, pos: int, limit: int) -> int | None:
    """A position at or after ``pos`` (before ``limit``) where the document can be tokenized in
    two pieces without changing any token: first before whitespace, then anywhere."""
    tries = 0
    for m in _WS.finditer(text, pos, limit):
        if tries >= 32:
            break
        tries += 1
        if m.start() > 0 and _joins_cleanly(model, text, m.start()):
            return m.start()
    for cut in range(pos, min(limit, pos + 32)):
        if _joins_cleanly(model, text, cut):
            return cut
    return None


def iter_document_tokens(model: LanguageModel, text: str, *, chunk_chars: int = CHUNK_CHARS):
    """The document's tokenization (:meth:`LanguageModel.document_ids`) in consecutive pieces:
    ``(ids, char_start, char_end)`` int64 arrays; start tokens span no text. A long document is
    cut at positions where cutting changes no token (checked), so the pieces concatenate to the
    tokenization of the whole; memory is bounded by ``chunk_chars``."""
    start = list(model.start_ids)
    if start:
        z = np.zeros(len(start), np.int64)
        yield np.asarray(start, np.int64), z, z.copy()
    pos, n = 0, len(text)
    while pos < n:
        end = n
        if n - pos > chunk_chars + chunk_chars // 2:
            end = _safe_cut(model, text, pos + chunk_chars, min(n, pos + 2 * chunk_chars)) or n
        piece = text[pos:end]
        ids, offs = model.encode_with_offsets(piece)
        o = np.asarray(offs, np.int64).reshape(-1, 2) + pos
        yield np.asarray(ids, np.int64), o[:, 0].copy(), o[:, 1].copy()
        pos = end


def _scan_windows(model: LanguageModel, texts: Sequence[str], W: int, stride: int,
                  want: dict[int, set[int]] | None):
    """Stream every document once, yielding ``("window", d, o, ids, starts, c1)`` for each candidate
    window (token offset ``o`` a multiple of ``stride``; only those in ``want[d]`` when given)
    and ``("end", d, n_tokens)`` after each document. Holds at most one piece plus W tokens."""
    for d, text in enumerate(texts):
        wd = None if want is None else want.get(d, set())
        base, n_tok = 0, 0
        ids = cs = ce = np.zeros(0, np.int64)
        for pid, ps, pe in iter_document_tokens(model, text):
            ids, cs, ce = (np.concatenate([ids, pid]), np.concatenate([cs, ps]),
                           np.concatenate([ce, pe]))
            n_tok += len(pid)
            o = -(-base // stride) * stride  # first candidate offset not before base
            while o + W <= base + len(ids):
                if wd is None or o in wd:
                    r = o - base
                    yield "window", d, o, ids[r: r + W], cs[r: r + W].copy(), int(ce[r + W - 1])
                o += stride
            keep = min(o, base + len(ids)) - base  # drop tokens no later window needs
            ids, cs, ce, base = ids[keep:], cs[keep:], ce[keep:], base + keep
        yield "end", d, n_tok


def select_sequences(model: LanguageModel, texts: list[str], doc_ids: list[str], index, *,
                     config: MemorizationConfig, log=print) -> Sequences:
    """Cut candidate windows from the training documents and pick the sample to measure.

    Windows are cut from each document's own tokenization (:meth:`LanguageModel.document_ids`:
    the tokenizer's start tokens, then the text) and nothing is inserted: a window's first k
    tokens are its whole context. ``index`` is a :class:`~leakaudit.corpus.index.CorpusIndex`
    over the same documents (it gives duplicate and document counts). Documents shorter than
    ``max(k) + ℓ`` tokens are skipped and counted.

    The corpus is streamed (:func:`iter_document_tokens`) twice — once to count (and, when
    stratifying, bucket) the candidates, once to cut the chosen windows — so memory grows with
    the windows measured, not with the length of a document.
    """
    config.validate()
    W, ell = config.window, config.suffix_length
    stride = config.stride or ell
    n = config.n_sequences
    per_doc: list[int] = []  # candidate windows per document
    skipped = 0
    by_bucket: dict[str, list[tuple[int, int]]] = defaultdict(list)
    stratify = config.stratify and n is not None
    for ev in _scan_windows(model, texts, W, stride, None):
        if ev[0] == "end":
            _, d, n_tok = ev
            per_doc.append(0 if n_tok < W else (n_tok - W) // stride + 1)
            skipped += n_tok < W
        elif stratify:
            _, d, o, _ids, starts, c1 = ev
            text = texts[d][int(starts[0]):c1]
            by_bucket[mm.duplicate_bucket(max(1, index.count(text)))].append((d, o))
    total = sum(per_doc)
    if skipped:
        log(f"memorization: skipped {skipped} of {len(texts)} documents shorter than "
            f"{W} tokens (k={max(config.prefix_lengths)} + ℓ={ell})")
    if not total:
        raise InputError(f"no document has {W} tokens (k={max(config.prefix_lengths)} + ℓ={ell}); "
                         "use a shorter prefix or suffix")
    rng = random.Random(config.seed)
    if n is None or n >= total:
        chosen = None  # every candidate
    elif not config.stratify:
        starts = np.cumsum([0] + per_doc)
        chosen = []
        for i in rng.sample(range(total), n):  # the same draw as sampling the candidate list
            d = int(np.searchsorted(starts, i, side="right") - 1)
            chosen.append((d, int(i - starts[d]) * stride))
    else:
        # bucket by duplicate count, then take buckets round-robin
        for v in by_bucket.values():
            rng.shuffle(v)
        order = [b for b in (mm.duplicate_bucket(lo) for lo, _ in mm.DUPLICATE_BUCKETS)
                 if b in by_bucket]
        chosen, pos = [], dict.fromkeys(order, 0)
        while len(chosen) < n:
            progressed = False
            for b in order:
                if pos[b] < len(by_bucket[b]) and len(chosen) < n:
                    chosen.append(by_bucket[b][pos[b]])
                    pos[b] += 1
                    progressed = True
            if not progressed:
                break
    by_bucket.clear()
    want = None
    if chosen is not None:
        want = defaultdict(set)
        for d, o in chosen:
            want[d].add(o)
    seq = Sequences([], [], [], [], [], [], [], n_docs=len(texts), n_docs_skipped=skipped,
                    n_candidates=total)
    for ev in _scan_windows(model, texts, W, stride, want):  # sorted by (document, offset)
        if ev[0] != "window":
            continue
        _, d, o, ids, starts, c1 = ev
        text = texts[d][int(starts[0]):c1]
        seq.ids.append([int(t) for t in ids])
        seq.doc_ids.append(doc_ids[d])
        seq.offsets.append(o)
        seq.texts.append(text)
        seq.suffix_texts.append(texts[d][int(starts[W - ell]):c1])
        seq.dup_counts.append(max(1, index.count(text)))
        seq.doc_counts.append(max(1, index.doc_count(text)))
    return seq


@dataclass
class MemorizationResult:
    """Per-sequence rows (``records``) and their aggregates (``rates``), ready for the report."""

    config: MemorizationConfig
    records: list[dict[str, Any]]  # one per (model, k, sequence)
    rates: list[dict[str, Any]]  # exact-memorization rates by model, k and duplicate bucket
    checks: list[dict[str, Any]]  # greedy cross-check and batch-1 re-check, per (model, k)
    models: dict[str, dict[str, Any]]
    sequences: dict[str, Any]
    #: what was not measured because a model lacks a capability (one record each, naming it)
    skipped: list[dict[str, Any]] = field(default_factory=list)

    def report_records(self) -> list[tuple[str, dict[str, Any]]]:
        tags = ["owasp:LLM02:2025", "atlas:AML.T0057"]
        out: list[tuple[str, dict[str, Any]]] = [("memorization", {
            "kind": "setup", "attack": "memorization", "doc_uri": DOC_URI,
            "threat_model": THREAT_MODEL, "config": self.config.to_dict(), "models": self.models,
            "sequences": self.sequences, "tags": tags})]
        out += [("memorization", {"kind": "rate", "attack": "memorization", **r}) for r in self.rates]
        out += [("memorization", {"kind": "check", "attack": "memorization", **c})
                for c in self.checks]
        out += [("memorization", {**sk, "kind": "skipped", "part": sk["attack"],
                                  "attack": "memorization"}) for sk in self.skipped]
        out += [("memorization", {"kind": "sequence", "attack": "memorization", "tags": tags, **r})
                for r in self.records]
        return out


def _n_params(model: LanguageModel) -> int | None:
    inner = getattr(model, "model", None)
    return int(sum(p.numel() for p in inner.parameters())) if inner is not None else None


def measure_memorization(models: dict[str, LanguageModel], seqs: Sequences, *,
                         config: MemorizationConfig, show_pii: bool = False,
                         progress=null_progress, log=print, executor=None,
                         executor_device: str = "auto") -> MemorizationResult:
    """Measure every model on the same sequences for every prefix length in ``config``.
    ``executor`` (:mod:`leakaudit.exec`): the teacher-forced passes run as its tasks, in the
    same batches as in this process (:func:`leakaudit.exec.extraction.run_score_ids`), so the
    records are the same; the greedy cross-check runs here."""
    check_idx = check_models(models, seqs, config=config)
    specs = None
    if executor is not None:
        specs = executor.extraction.model_specs(models, device=executor_device)
    parts = [measure_model(name, m, seqs, config=config, check_idx=check_idx, show_pii=show_pii,
                           progress=progress, log=log, executor=executor, executor_specs=specs)
             for name, m in models.items()]
    return assemble(parts, seqs, config=config)


def check_models(models: dict[str, LanguageModel], seqs: Sequences, *,
                 config: MemorizationConfig) -> list[int]:
    """Check that the models can be measured together on ``seqs`` (one tokenizer, contexts
    that fit, at least one model with the core capabilities); return the indices of the
    sequences cross-checked by real greedy decoding."""
    config.validate()
    if not models:
        raise InputError("no model to measure")
    W = config.window
    names = list(models)
    probe = seqs.texts[:8]
    first = models[names[0]].tokenize(probe)
    for name in names[1:]:
        if models[name].tokenize(probe) != first:
            raise InputError(f"models {names[0]!r} and {name!r} tokenize the corpus differently; "
                             "memorization is compared on the same token windows, so they must "
                             "share a tokenizer")
    for name, m in models.items():
        ctx = getattr(m, "max_length", None)
        if ctx is not None and W > ctx:
            raise InputError(f"model {name!r} has a context of {ctx} tokens; k + ℓ = {W} "
                             "does not fit")
    core = {nm: models[nm].capabilities.missing("prompt_logprobs", "argmax") for nm in names}
    if all(core.values()):
        raise CapabilityError("memorization needs prompt_logprobs and argmax; "
                              + "; ".join(f"{nm} lacks {', '.join(v)}" for nm, v in core.items()))
    n_check = len(seqs.ids) if config.greedy_check < 0 else min(config.greedy_check, len(seqs.ids))
    return sorted(random.Random(config.seed + 1).sample(range(len(seqs.ids)), n_check))


def measure_model(name: str, m: LanguageModel, seqs: Sequences, *, config: MemorizationConfig,
                  check_idx: list[int], show_pii: bool = False, progress=null_progress,
                  log=print, executor=None, executor_specs=None) -> dict[str, Any]:
    """One model's part of :func:`measure_memorization` (a resumable stage of its own):
    ``{"name", "records", "checks", "info", "skipped"}``, JSON-ready."""
    from leakaudit.corpus.pii import mask_text

    ell = config.suffix_length
    kmax = max(config.prefix_lengths)
    records: list[dict[str, Any]] = []
    checks: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    caps = m.capabilities
    if caps.missing("prompt_logprobs", "argmax"):
        skipped.append({**skip_record("memorization", ("prompt_logprobs", "argmax"), caps,
                                      target=name), "model": name})
        log(f"memorization: skipped {name}: {skipped[-1]['reason']}")
        return {"name": name, "records": [], "checks": [], "info": None, "skipped": skipped}
    with_pz = not caps.missing("sampling_logprobs")
    if not with_pz:
        skipped.append({**skip_record("(n,p)-extraction", ("sampling_logprobs",), caps,
                                      target=name), "model": name})
    can_check = not caps.missing("generation")
    if not can_check and check_idx:
        skipped.append({**skip_record("greedy_check", ("generation",), caps, target=name),
                        "model": name})
    info = {"n_params": _n_params(m), "fingerprint": m.fingerprint(),
            "token_convention": m.token_convention()}
    for k in sorted(config.prefix_lengths):
        windows = [ids[kmax - k:] for ids in seqs.ids]
        with progress(f"memorization {name} k={k}", len(windows)) as adv:
            if executor is not None:  # same batches, on the executor's workers
                scores = executor.extraction.run_score_ids(
                    executor, None, executor_specs, name, m, windows,
                    batch_size=config.batch_size, shard_texts=4 * config.batch_size, threads=None,
                    sampling=config.sampling if with_pz else None, last=ell,
                    label=f"mem-{name}-k{k}", progress=adv)
            else:
                scores = m.score_ids(windows, batch_size=config.batch_size,
                                     sampling=config.sampling if with_pz else None, last=ell,
                                     progress=adv)
        rows = []
        for i, sc in enumerate(scores):
            am = sc.is_argmax[-ell:]
            log_pz = (mm.sequence_logprob(sc.sampling_logprobs[-ell:]) if with_pz
                      else float("nan"))
            exact = mm.greedy_discoverable(am)
            row = {
                "model": name, "k": k, "ell": ell, "seq": i, "doc_id": seqs.doc_ids[i],
                "offset": seqs.offsets[i], "dup_count": seqs.dup_counts[i],
                "doc_count": seqs.doc_counts[i],
                "bucket": mm.duplicate_bucket(seqs.dup_counts[i]),
                "exact": exact, "fraction": mm.fractional_match(am),
                "suffix_logprob": float(np.sum(sc.logprobs[-ell:], dtype=np.float64)),
                "log_pz": log_pz,
            }
            if with_pz:
                row.update({
                    "p_extract": {str(n): mm.extraction_probability(log_pz, n)
                                  for n in config.extraction_n},
                    "n_for_p": mm.queries_needed(log_pz, config.extraction_p),
                    "log10_n_for_p": mm.log_queries_needed(log_pz, config.extraction_p)
                    / math.log(10)})
            else:
                row.update({"log_pz": None, "p_extract": None, "n_for_p": None,
                            "log10_n_for_p": None})
            if exact:
                row["suffix_text"] = (seqs.suffix_texts[i] if show_pii
                                      else mask_text(seqs.suffix_texts[i]))
            rows.append(row)
        # slow path: real greedy decoding on the cross-check subset
        check: dict[str, Any] = {"model": name, "k": k,
                                 "n_checked": len(check_idx) if can_check else 0}
        if check_idx and can_check:
            prompts = [windows[i][:k] for i in check_idx]  # the prefix is the whole context
            with progress(f"greedy check {name} k={k}", len(prompts)) as adv:
                gens = m.generate_ids(prompts, SamplingConfig(max_new_tokens=ell, greedy=True),
                                      seed=config.seed, batch_size=config.batch_size,
                                      progress=adv)
            disagree = []
            n_approx = 0
            for i, g in zip(check_idx, gens):
                suffix = windows[i][k:]
                gen_exact = list(g.new_ids) == list(suffix)
                dist = mm.token_edit_distance(g.new_ids, suffix)
                approx = dist <= config.approx_fraction * ell
                n_approx += approx
                rows[i].update(greedy_exact=gen_exact, edit_distance=dist, approximate=approx)
                if gen_exact != rows[i]["exact"]:
                    first_diff = next((t for t, (a, b) in enumerate(zip(g.new_ids, suffix))
                                       if a != b), None)
                    disagree.append({"seq": i, "doc_id": seqs.doc_ids[i],
                                     "offset": seqs.offsets[i],
                                     "teacher_forced": rows[i]["exact"],
                                     "generated": gen_exact, "first_divergence": first_diff})
            n_agree = len(check_idx) - len(disagree)
            check.update(agreement=rate(n_agree, len(check_idx)).to_dict(),
                         disagreements=disagree,
                         approximate=rate(n_approx, len(check_idx)).to_dict(),
                         exact_generated=rate(sum(r.get("greedy_exact", False)
                                                  for r in (rows[i] for i in check_idx)),
                                              len(check_idx)).to_dict())
            if disagree:
                log(f"memorization: {name} k={k}: teacher forcing and greedy decoding disagree "
                    f"on {len(disagree)} of {len(check_idx)} sequences (listed in the report)")
        if config.recheck_batch1:
            pos = [i for i, r in enumerate(rows) if r["exact"]]
            flips = []
            for i in pos:
                (sc1,) = m.score_ids([windows[i]], batch_size=1, last=ell)
                if not mm.greedy_discoverable(sc1.is_argmax[-ell:]):
                    flips.append(i)
                    rows[i]["exact_batch1"] = False
            check["batch1"] = {"n_rechecked": len(pos), "n_flipped": len(flips),
                               "flipped": flips}
        checks.append(check)
        records.extend(rows)
    return {"name": name, "records": records, "checks": checks, "info": info, "skipped": skipped}


def assemble(parts: list[dict[str, Any]], seqs: Sequences, *,
             config: MemorizationConfig) -> MemorizationResult:
    """The :class:`MemorizationResult` of every model's :func:`measure_model` part, in order."""
    records = [r for p in parts for r in p["records"]]
    checks = [c for p in parts for c in p["checks"]]
    skipped = [sk for p in parts for sk in p["skipped"]]
    model_info = {p["name"]: p["info"] for p in parts if p["info"] is not None}
    W = config.window
    rates = aggregate(records, config)
    seq_info = {"n": len(seqs.ids), "n_docs": seqs.n_docs, "n_docs_skipped": seqs.n_docs_skipped,
                "n_candidates": seqs.n_candidates, "window": W, "stratified": config.stratify,
                "dup_buckets": {b: sum(1 for c in seqs.dup_counts if mm.duplicate_bucket(c) == b)
                                for b in sorted({mm.duplicate_bucket(c) for c in seqs.dup_counts},
                                                key=_bucket_lo)}}
    return MemorizationResult(config=config, records=records, rates=rates, checks=checks,
                              models=model_info, sequences=seq_info, skipped=skipped)


def _bucket_lo(label: str) -> int:
    return int(label.split("-")[0].rstrip("+"))


def aggregate(records: list[dict[str, Any]], config: MemorizationConfig) -> list[dict[str, Any]]:
    """Exact-memorization rates with Clopper–Pearson intervals: per (model, k) overall and per
    duplicate bucket; mean fractional score and median log p_z alongside."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        groups[(r["model"], r["k"], "all")].append(r)
        groups[(r["model"], r["k"], r["bucket"])].append(r)
    out = []
    for (model, k, bucket), rows in groups.items():
        n_exact = sum(r["exact"] for r in rows)
        with_pz = [r for r in rows if r.get("p_extract") is not None]
        lp = np.array([r["log_pz"] for r in with_pz], dtype=np.float64)
        p_ext = ({str(n): float(np.mean([r["p_extract"][str(n)] for r in with_pz]))
                  for n in config.extraction_n} if with_pz else None)
        memorized = [r for r in rows if r["exact"]]
        out.append({
            "model": model, "k": k, "ell": config.suffix_length, "bucket": bucket,
            "bucket_lo": 0 if bucket == "all" else _bucket_lo(bucket),
            "exact": rate(n_exact, len(rows)).to_dict(),
            "mean_fraction": float(np.mean([r["fraction"] for r in rows])),
            "median_log_pz": float(np.median(lp)) if len(lp) else None,
            "mean_p_extract": p_ext,
            "k_eidetic": _eidetic(memorized),
        })
    out.sort(key=lambda r: (r["model"], r["k"], r["bucket_lo"]))
    return out


def _eidetic(memorized: list[dict[str, Any]]) -> dict[str, int]:
    """How many memorized sequences are k-eidetic for k = 1, 2, 4, 8, …: contained in at most
    k training documents (Carlini et al. 2021, Definition 2)."""
    out: dict[str, int] = {}
    for kk in (1, 2, 4, 8, 16, 32, 64):
        out[str(kk)] = sum(1 for r in memorized if r["doc_count"] <= kk)
    return out
