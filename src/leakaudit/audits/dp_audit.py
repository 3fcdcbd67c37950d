"""Empirical DP audits of a training pipeline: insert canaries, train, score, bound ε from below.

The pipeline under audit is a **training entry point** (the user hook)::

    def train(x: numpy.ndarray, y: numpy.ndarray, *, seed: int):
        ...
        return model                       # a torch.nn.Module mapping x to logits, or an
                                           # estimator with predict_proba
        # or: return model, {"epsilon": 8.0, "delta": 1e-5, ...}   # the pipeline's own claim

It is called on the auditor's dataset with canaries added; everything else (noise, clipping,
sampling, accounting) is the pipeline's own — which is the point: the audit checks the
implementation, not the maths. On the command line the hook is ``--train module:function``.

Two audit designs, the auditors of :mod:`leakaudit.attacks.dp_audit.auditors` created by name
(``create_auditor``; statistics in :mod:`leakaudit.metrics.dp_audit`):

- ``one-run`` (Steinke, Nasr & Jagielski 2023): m canaries, each added with probability ½, one
  training; ε̂ from the number of right guesses on the most/least confident canaries.
- ``multi-run`` (Jagielski et al. 2020; Nasr et al. 2021): one canary, ``n_models`` trainings with
  it and ``n_models`` without; ε̂ from Clopper–Pearson bounds on the threshold test's FPR/FNR,
  the threshold chosen on a separate half of the runs.

Every trained model is a stage of the run store (:mod:`leakaudit.runs`; ``model.safetensors`` +
``run.json``, mode 0600), keyed by a hash of everything that determines the training (trainer,
data, canaries, inclusion, seed); a rerun reuses finished models, so a long multi-run audit
survives interruption (even ``kill -9``: a stage appears only when complete).
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from leakaudit import registry
from leakaudit.attacks.dp_audit.auditors import DPAuditor, create_auditor
from leakaudit.attacks.dp_audit.canaries import (
    CANARY_KINDS,
    ClassifierCanaries,
    clipbkd_canaries,
    crafted_canaries,
    mislabelled_canaries,
)
from leakaudit.errors import CapabilityError, InputError
from leakaudit.metrics.dp_audit import NOT_A_PROOF
#: what one canary is in each world: the unit an audit's ε̂ is per
AUDIT_UNITS = {"lm": "document", "classifier": "example"}
#: bump when what a stored model means changes (its key then changes and nothing stale is reused)
STORE_VERSION = 1


# --------------------------------------------------------------------------------------------
# configuration and results
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DPAuditConfig:
    """The run budget and the statistics, all explicit.

    ``mode``: the registered DP auditor, "one-run" or "multi-run". ``n_canaries``: m, the canaries of a one-run audit.
    ``n_models``: trainings *per side* of a multi-run audit (2·n_models in all). ``confidence``:
    1 − β (one-run) or 1 − α (multi-run). ``delta``: the δ at which ε is bounded; None takes the
    pipeline's claimed δ. ``canary_kind``: "crafted" or "mislabelled". ``select_fraction``: the
    share of multi-run runs that choose the threshold (the rest certify). ``seed``: canaries,
    coin flips and training seeds.
    """

    mode: str
    n_canaries: int
    n_models: int
    confidence: float
    delta: float | None
    canary_kind: str
    seed: int
    select_fraction: float = 0.5

    def validate(self) -> None:
        modes = registry.names("dp-auditors")
        if self.mode not in modes:
            raise InputError(f"mode must be one of {', '.join(modes)}; got {self.mode!r}")
        if self.canary_kind not in CANARY_KINDS:
            raise InputError(f"canary kind must be one of {', '.join(CANARY_KINDS)}; got {self.canary_kind!r}")
        if not 0 < self.confidence < 1:
            raise InputError(f"confidence must be in (0, 1); got {self.confidence}")
        if self.delta is not None and not 0 <= self.delta < 1:
            raise InputError(f"delta must be in [0, 1); got {self.delta}")
        if self.mode == "one-run" and self.n_canaries < 2:
            raise InputError(f"a one-run audit needs at least 2 canaries; got {self.n_canaries}")
        if self.mode == "multi-run" and self.n_models < 2:
            raise InputError(f"a multi-run audit needs at least 2 models per side; got {self.n_models}")
        if not 0 < self.select_fraction < 1:
            raise InputError(f"select_fraction must be in (0, 1); got {self.select_fraction}")

    def models_to_train(self) -> int:
        return len(make_auditor(self).trainings())


def make_auditor(config: DPAuditConfig) -> DPAuditor:
    """The auditor ``config.mode`` names, built from the config fields it declares."""
    fields = registry.load("dp-auditors", config.mode).config_fields
    return create_auditor(config.mode, **{f: getattr(config, f) for f in fields})


@dataclass
class DPAuditResult:
    """What one audit found. ``epsilon_lb`` is ε̂ (valid at ``confidence``), ``max_certifiable`` the
    most this audit could have certified, ``claimed_epsilon`` the pipeline's claim (None when it
    made none). ``refuted`` is True when ε̂ > claimed ε with the bound at the claim's δ or above
    (``comparable``): the claim is then false at this confidence.
    """

    world: str
    mode: str
    trainer: str
    claimed_epsilon: float | None
    delta: float
    confidence: float
    epsilon_lb: float
    max_certifiable: float
    detail: dict
    models_trained: int
    models_reused: int
    wall_s: float
    canary_kind: str
    n_canaries: int
    training: dict = field(default_factory=dict)
    #: the claim's own δ and privacy unit (from the pipeline's info; None when it states none)
    claimed_delta: float | None = None
    privacy_unit: str | None = None

    @property
    def audit_unit(self) -> str:
        """What one canary is, so what ε̂ is per: a document (LM world) or an example."""
        return AUDIT_UNITS.get(self.world, "example")

    def bound_statement(self) -> str:
        """ε̂ and the maximum certifiable ε with the δ they are at and the unit one canary is."""
        return (f"ε̂ = {self.epsilon_lb:.3f}   max certifiable ε = {self.max_certifiable:.3f}   "
                f"(at δ = {self.delta:g} per {self.audit_unit}: one canary = one "
                f"{self.audit_unit}; confidence {self.confidence:g})")

    def claim_statement(self) -> str:
        """The claimed ε with its δ and privacy unit, as the pipeline stated them (an unstated
        one is said to be unstated)."""
        if self.claimed_epsilon is None:
            return "claimed ε = none (the pipeline claims no ε)"
        d = "unstated δ" if self.claimed_delta is None else f"δ = {self.claimed_delta:g}"
        unit = self.privacy_unit or "unstated unit (treat the guarantee as unknown)"
        return f"claimed ε = {self.claimed_epsilon:.3f} at {d} per {unit}"

    @property
    def comparable(self) -> bool:
        """Whether ε̂ can be held against the claim: a bound at δ below the claim's δ cannot
        (an (ε, δ')-DP training need not be (ε, δ)-DP for δ < δ'); at the claim's δ or above
        it can ((ε, δ')-DP implies (ε, δ)-DP for every δ ≥ δ')."""
        return self.claimed_delta is None or self.delta >= self.claimed_delta

    @property
    def refuted(self) -> bool:
        return (self.claimed_epsilon is not None and self.comparable
                and self.epsilon_lb > self.claimed_epsilon)

    def verdict(self) -> str:
        if self.claimed_epsilon is None:
            return "no ε claimed: ε̂ is a lower bound on the ε this training provides"
        if not self.comparable:
            return (f"not comparable with the claim: the bound is at δ = {self.delta:g}, below the "
                    f"claim's δ = {self.claimed_delta:g}; rerun with --delta {self.claimed_delta:g} "
                    "or above")
        if self.refuted:
            return (f"claim refuted: the training is not ({self.claimed_epsilon:g}, {self.delta:g})-DP "
                    f"(confidence {self.confidence:g})")
        return "consistent with the claim — " + NOT_A_PROOF

    def summary_line(self) -> str:
        return (f"{self.mode} {self.world} [{self.trainer}]: {self.bound_statement()}; "
                f"{self.claim_statement()}; models trained {self.models_trained} "
                f"(+{self.models_reused} reused), {self.wall_s:.1f} s — {self.verdict()}")

    def to_record(self) -> dict:
        return {**asdict(self), "audit_unit": self.audit_unit, "refuted": self.refuted,
                "comparable": self.comparable,
                "verdict": self.verdict(), "note": NOT_A_PROOF}


# --------------------------------------------------------------------------------------------
# the user hook
# --------------------------------------------------------------------------------------------

@dataclass
class Trained:
    """A hook's answer, normalized: the model and the pipeline's own claim (may be empty)."""

    model: Any
    info: dict

    @property
    def claimed_epsilon(self) -> float | None:
        e = self.info.get("epsilon")
        return None if e is None else float(e)

    @property
    def claimed_delta(self) -> float | None:
        d = self.info.get("delta")
        return None if d is None else float(d)


def load_hook(spec: str) -> Callable:
    """Import ``module:function`` (the module may be a dotted path on ``sys.path``)."""
    if spec.count(":") != 1 or not all(spec.split(":")):
        raise InputError(f"training entry point must look like 'package.module:function'; got {spec!r}")
    mod_name, fn_name = spec.split(":")
    try:
        loaded = mod_name in sys.modules
        mod = importlib.import_module(mod_name)
        if loaded:  # the code run must be the file's current content, which keys the stored models
            mod = importlib.reload(mod)
    except ImportError as e:
        raise InputError(f"cannot import {mod_name!r} for the training entry point: {e}") from None
    fn = getattr(mod, fn_name, None)
    if not callable(fn):
        raise InputError(f"{mod_name!r} has no callable {fn_name!r}")
    return fn


def trainer_id(train_fn: Callable) -> str:
    """A stable name of a trainer, part of every stored model's key: ``train_fn.trainer_id`` when
    it has one (the lab's trainers carry their full configuration), else
    ``module:qualname@<hash of the module's source file>``, so a hook fixed between two runs into
    one folder is retrained, never served its old models."""
    tid = getattr(train_fn, "trainer_id", None)
    if tid:
        return str(tid)
    name = f"{getattr(train_fn, '__module__', '?')}:{getattr(train_fn, '__qualname__', repr(train_fn))}"
    return f"{name}@{source_hash(train_fn)}"


def source_hash(fn: Callable) -> str:
    """sha256 (16 hex) of the file that defines ``fn`` (its module's source), or of its own source
    when it has no file, or "nosource" for a callable without either (a builtin)."""
    mod = sys.modules.get(getattr(fn, "__module__", None) or "")
    path = getattr(mod, "__file__", None)
    try:
        data = Path(path).read_bytes() if path else inspect.getsource(fn).encode()
    except (OSError, TypeError):
        return "nosource"
    return hashlib.sha256(data).hexdigest()[:16]


def _call_hook(train_fn: Callable, x, y, *, seed: int) -> Trained:
    out = train_fn(x, y, seed=seed)
    if isinstance(out, tuple):
        if len(out) != 2 or not isinstance(out[1], dict):
            raise InputError(f"training entry point {trainer_id(train_fn)} must return a model or "
                             "(model, info dict)")
        return Trained(out[0], dict(out[1]))
    return Trained(out, {})


# --------------------------------------------------------------------------------------------
# model store (resume)
# --------------------------------------------------------------------------------------------

def _hash_arrays(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str((a.dtype, a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


#: the run-store stage name of one trained model
STAGE = "dp-audit-model"


class ModelStore:
    """Trained models as stages of the run store (:class:`leakaudit.runs.RunStore`): one folder
    per model, ``<root>/dp-audit-model-<key>/`` with ``run.json`` (+ ``model.safetensors``),
    written into a temporary folder that becomes the stage atomically (a killed run leaves no
    half-written model; the next run removes its leftovers). Files 0600, folders 0700."""

    def __init__(self, root: str | Path | None):
        from leakaudit.runs.store import RunStore

        self.store = None if root is None else RunStore(root)

    @staticmethod
    def key(parts: dict) -> str:
        return hashlib.sha256(json.dumps({"v": STORE_VERSION, **parts}, sort_keys=True).encode()).hexdigest()[:24]

    def load(self, key: str) -> dict | None:
        if self.store is None or not self.store.is_done(STAGE, key):
            return None
        self.store.reused.append(STAGE)
        return json.loads((self.store.path(STAGE, key) / "run.json").read_text(encoding="utf-8"))

    def save(self, key: str, record: dict, model: Any = None) -> None:
        if self.store is None:
            return

        def build(d: Path) -> None:
            rec = dict(record)
            if callable(getattr(model, "state_dict", None)):
                from safetensors.torch import save_file

                save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()},
                          str(d / "model.safetensors"))
                os.chmod(d / "model.safetensors", 0o600)
                rec["weights"] = "model.safetensors"
            (d / "run.json").write_text(json.dumps(rec, indent=1, default=_json_default), encoding="utf-8")
            os.chmod(d / "run.json", 0o600)

        self.store.directory(STAGE, key, build, describe={"trainer": record.get("trainer"),
                                                          "seed": record.get("seed")})


def _json_default(o):
    if hasattr(o, "tolist"):
        return o.tolist()
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


# --------------------------------------------------------------------------------------------
# classifier world
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ClassifierData:
    """The auditor's training set (canaries are added to it) and, for mislabelled canaries, a pool
    of records the pipeline is otherwise not trained on."""

    x: np.ndarray
    y: np.ndarray
    n_classes: int
    pool_x: np.ndarray | None = None
    pool_y: np.ndarray | None = None

    @property
    def input_dim(self) -> int:
        return int(np.prod(self.x.shape[1:]))

    def fingerprint(self) -> str:
        return _hash_arrays(np.asarray(self.x, np.float32), np.asarray(self.y, np.int64))


def make_canaries(data: ClassifierData, m: int, *, kind: str, seed: int) -> ClassifierCanaries:
    if kind == "crafted":
        return crafted_canaries(m, input_dim=data.input_dim, n_classes=data.n_classes, seed=seed)
    if kind == "clipbkd":
        if m > data.input_dim:
            raise InputError(f"clipbkd canaries lie on the data's {data.input_dim} principal directions; "
                             f"{m} requested (use them with --mode multi-run, or fewer canaries)")
        return clipbkd_canaries(data.x, m, n_classes=data.n_classes, seed=seed)
    if data.pool_x is None or data.pool_y is None:
        raise InputError("mislabelled canaries need a pool of records outside the training set")
    if m > len(data.pool_x):
        raise InputError(f"{m} mislabelled canaries need a pool of at least {m} records; have {len(data.pool_x)}")
    return mislabelled_canaries(data.pool_x, data.pool_y, m, n_classes=data.n_classes, seed=seed)


def _as_classifier(model, data: ClassifierData):
    """The classifier target of what the training entry point returned, through the factory that
    ``invert`` and ``membership classifier`` use: a Python object (a torch module, a fitted
    estimator, a ``predict_proba`` callable, a :class:`~leakaudit.targets.classifier.Classifier`)
    through :func:`~leakaudit.targets.classifier.classifier_from`, a spec (``hf:DIR``,
    ``onnx:FILE``, ``skops:FILE``, a leakaudit folder) through
    :func:`~leakaudit.targets.classifier_formats.load_classifier_target`. The target must take the
    data's inputs and answer its classes."""
    from leakaudit.targets.classifier import classifier_from
    from leakaudit.targets.classifier_formats import ClassifierOptions, load_classifier_target

    shape = tuple(int(d) for d in data.x.shape[1:])
    expected = ("expected a torch.nn.Module (logits), an estimator with predict_proba, a "
                "predict_proba function, a classifier target, or a classifier spec (hf:DIR, "
                "onnx:FILE, skops:FILE, a leakaudit folder)")
    try:
        if isinstance(model, (str, os.PathLike)):
            target = load_classifier_target(model, options=ClassifierOptions(
                n_classes=data.n_classes, input_shape=shape))
        else:
            target = classifier_from(model, n_classes=data.n_classes, input_shape=shape)
    except InputError as e:
        raise InputError(f"the training entry point returned a {type(model).__name__}; {expected} "
                         f"({e})") from None
    if target.n_classes != data.n_classes or \
            int(np.prod(target.input_shape)) != int(np.prod(shape)):
        raise InputError(f"the trained classifier takes inputs of shape {target.input_shape} and "
                         f"answers {target.n_classes} classes; the audit's data has inputs of shape "
                         f"{shape} and {data.n_classes} classes")
    return target


def _train_and_score(train_fn, data: ClassifierData, canaries: ClassifierCanaries, include: np.ndarray,
                     *, seed: int, store: ModelStore, stats: dict) -> tuple[np.ndarray, dict]:
    """Train on data + the included canaries (shuffled in, seeded) and score every canary; reuse a
    stored run with the same key."""
    from leakaudit.attacks.dp_audit.classifier import CANARY_SCORE_NEEDS, canary_scores
    from leakaudit.targets.classifier import classifier_skip

    key = store.key({"world": "classifier", "trainer": trainer_id(train_fn), "data": data.fingerprint(),
                     "canaries": canaries.fingerprint(), "include": _hash_arrays(include.astype(np.int8)),
                     "seed": seed})
    rec = store.load(key)
    if rec is not None:
        stats["reused"] += 1
        return np.asarray(rec["scores"], dtype=np.float64), rec.get("info", {})
    sel = np.flatnonzero(include)
    x = np.concatenate([np.asarray(data.x, np.float32).reshape(len(data.x), -1), canaries.x[sel]])
    y = np.concatenate([np.asarray(data.y, np.int64), canaries.y[sel]])
    order = np.random.default_rng(seed).permutation(len(y))
    x, y = x[order].reshape((len(y),) + tuple(data.x.shape[1:])), y[order]
    t0 = time.time()
    trained = _call_hook(train_fn, x, y, seed=seed)
    train_s = time.time() - t0
    target = _as_classifier(trained.model, data)
    skip = classifier_skip("dp_audit", CANARY_SCORE_NEEDS, target)
    if skip is not None:  # nothing is stored: the audit cannot score this pipeline's models
        raise CapabilityError(f"dp-audit skipped: its canary score (log-odds of the canary's label) "
                              f"needs {', '.join(skip['missing'])}; {skip['reason']}")
    scores = canary_scores(target, canaries)
    if not np.all(np.isfinite(scores)):
        raise InputError(f"the trained model gave {int((~np.isfinite(scores)).sum())} non-finite canary scores")
    stats["trained"] += 1
    info = {k: v for k, v in trained.info.items() if isinstance(v, (int, float, str, bool, type(None)))}
    store.save(key, {"trainer": trainer_id(train_fn), "seed": seed, "n_train": int(len(y)),
                     "n_canaries_included": int(len(sel)), "scores": scores.tolist(), "info": info,
                     "train_s": round(train_s, 3)}, trained.model)
    return scores, info


def _claim(info: dict, config: DPAuditConfig) -> tuple[float | None, float]:
    claimed = info.get("epsilon")
    delta = config.delta if config.delta is not None else info.get("delta")
    if delta is None:
        raise InputError("no δ given and the training entry point claims none: pass --delta")
    return (None if claimed is None else float(claimed)), float(delta)


def _claim_terms(info: dict) -> dict:
    """The claim's own δ and privacy unit from a pipeline's info (None when it states none)."""
    d, unit = info.get("delta"), info.get("privacy_unit")
    return {"claimed_delta": None if d is None else float(d),
            "privacy_unit": None if unit is None else str(unit)}


def audit_dp_classifier(train_fn: Callable, data: ClassifierData, config: DPAuditConfig, *,
                        store_dir: str | Path | None = None, progress=None) -> DPAuditResult:
    """Audit a classifier training pipeline (``train_fn``, the user hook) on ``data``.

    one-run: ``config.n_canaries`` canaries, each added with probability ½, one training.
    multi-run: canary 0 of the same set; ``config.n_models`` trainings with it, as many without.
    ``progress(done, total)`` is called after each model when given.
    """
    config.validate()
    t0 = time.time()
    store = ModelStore(store_dir)
    stats = {"trained": 0, "reused": 0}
    auditor = make_auditor(config)
    canaries = make_canaries(data, auditor.n_canaries, kind=config.canary_kind, seed=config.seed)
    plan = auditor.trainings()
    infos = []
    for j, t in enumerate(plan):
        scores, info = _train_and_score(train_fn, data, canaries, t.include, seed=t.seed,
                                        store=store, stats=stats)
        auditor.observe(scores, t.include)
        infos.append(info)
        if progress:
            progress(j + 1, len(plan))
    info = infos[0]
    claimed, delta = _claim(info, config)
    res = auditor.result(delta=delta)
    return DPAuditResult(world="classifier", mode=config.mode, trainer=trainer_id(train_fn),
                         claimed_epsilon=claimed, delta=delta, confidence=config.confidence,
                         epsilon_lb=float(res.epsilon), max_certifiable=float(res.max_certifiable),
                         detail=res.to_dict(), models_trained=stats["trained"],
                         models_reused=stats["reused"], wall_s=round(time.time() - t0, 2),
                         canary_kind=config.canary_kind, n_canaries=len(canaries), training=info,
                         **_claim_terms(info))


# --------------------------------------------------------------------------------------------
# LM world (one-run)
# --------------------------------------------------------------------------------------------

def audit_dp_lm_one_run(train_fn: Callable, base_texts: list[str], config: DPAuditConfig, *,
                        store_dir: str | Path | None = None, secret_length: int = 8,
                        n_reference: int = 4) -> DPAuditResult:
    """One-run audit of a causal-LM training pipeline with random-secret canaries.

    ``train_fn(texts, *, seed)`` (the LM hook) trains on ``base_texts`` plus the included canary
    sentences (one document each, shuffled in) and returns ``(model, tokenizer)`` or
    ``(model, tokenizer, info)``; ``model`` is a Hugging Face causal LM. Canaries: secrets of
    ``secret_length`` words of :data:`~leakaudit.attacks.dp_audit.lm.SECRET_WORDS`. Scores: each
    secret's log-probability given its prompt minus the mean over ``n_reference`` reorderings of
    its words (:func:`leakaudit.attacks.dp_audit.lm.secret_scores`).
    """
    from leakaudit.attacks.dp_audit.lm import secret_canaries, secret_scores

    config.validate()
    if config.mode != "one-run":
        raise InputError("the LM world supports --mode one-run only")
    t0 = time.time()
    store = ModelStore(store_dir)
    stats = {"trained": 0, "reused": 0}
    auditor = make_auditor(config)
    canaries = secret_canaries(auditor.n_canaries, seed=config.seed, length=secret_length)
    flips = auditor.trainings()[0].include
    key = store.key({"world": "lm", "trainer": trainer_id(train_fn),
                     "data": hashlib.sha256("\n".join(base_texts).encode()).hexdigest()[:16],
                     "canaries": canaries.fingerprint(), "include": _hash_arrays(flips.astype(np.int8)),
                     "seed": config.seed, "n_reference": n_reference})
    rec = store.load(key)
    if rec is not None:
        stats["reused"] += 1
        scores, info = np.asarray(rec["scores"], dtype=np.float64), rec.get("info", {})
    else:
        texts = list(base_texts) + [t for t, f in zip(canaries.texts(), flips) if f]
        order = np.random.default_rng(config.seed).permutation(len(texts))
        t1 = time.time()
        out = train_fn([texts[i] for i in order], seed=config.seed)
        if not isinstance(out, tuple) or len(out) not in (2, 3):
            raise InputError(f"LM training entry point {trainer_id(train_fn)} must return "
                             "(model, tokenizer) or (model, tokenizer, info)")
        model, tok = out[0], out[1]
        info = {k: v for k, v in (out[2] if len(out) == 3 else {}).items()
                if isinstance(v, (int, float, str, bool, type(None)))}
        train_s = time.time() - t1
        scores, raw = secret_scores(model, tok, canaries, n_reference=n_reference, seed=config.seed)
        if not np.all(np.isfinite(scores)):
            raise InputError(f"the trained LM gave {int((~np.isfinite(scores)).sum())} non-finite canary scores")
        stats["trained"] += 1
        store.save(key, {"trainer": trainer_id(train_fn), "seed": config.seed, "n_train": len(texts),
                         "n_canaries_included": int(flips.sum()), "scores": scores.tolist(),
                         "secret_logprobs": raw.tolist(), "info": info, "train_s": round(train_s, 3)})
    claimed, delta = _claim(info, config)
    auditor.observe(scores, flips)
    res = auditor.result(delta=delta)
    return DPAuditResult(world="lm", mode="one-run", trainer=trainer_id(train_fn), claimed_epsilon=claimed,
                         delta=delta, confidence=config.confidence, epsilon_lb=float(res.epsilon),
                         max_certifiable=float(res.max_certifiable), detail=res.to_dict(),
                         models_trained=stats["trained"], models_reused=stats["reused"],
                         wall_s=round(time.time() - t0, 2), canary_kind="secret", n_canaries=len(canaries),
                         training=info, **_claim_terms(info))
