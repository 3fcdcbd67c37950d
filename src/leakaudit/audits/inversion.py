"""Model inversion of a classifier (Fredrikson et al. 2015: MI-Face white-box, NES black-box)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leakaudit.audits.base import AuditEnv, AuditResult, base_run_record
from leakaudit.errors import LeakauditError


@dataclass(frozen=True)
class InversionRequest:
    #: a classifier spec (leakaudit folder, ``hf:``, ``onnx:``, ``skops:``; see
    #: ``leakaudit.targets.classifier_formats``) or a loaded Classifier (Python API)
    model: Any = None
    endpoint: str | None = None  #: HTTP endpoint (black-box)
    answers: str = "probabilities"  #: what the endpoint answers ("labels": label-only)
    input_shape: str | None = None
    n_classes: int | None = None
    classes: str | None = None
    attack: str | None = None
    budget: int | None = None
    seed: int = 0
    reference_data: Path | None = None
    image_shape: str | None = None
    clip: str = "0,1"
    timeout: float = 30.0
    batch_size: int = 256


@dataclass
class InversionTargets:
    target: Any
    source: dict[str, Any]
    attack: Any
    attack_name: str
    classes: list[int]
    start: Any
    start_desc: str
    reference: Any
    image_shape: tuple[int, ...] | None
    skipped: list[dict[str, Any]]  #: attacks the target cannot serve, with the capability


#: the most values one classifier input may have (every attack holds many inputs in memory)
MAX_INPUT_ELEMENTS = 2048 * 2048 * 4


def parse_shape(text: str, option: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(v) for v in text.lower().replace("x", ",").split(",") if v.strip())
    except ValueError:
        dims = ()
    if not dims or any(d < 1 for d in dims):
        raise LeakauditError(f"{option} must look like 64 or 8x8, got {text!r}")
    if math.prod(dims) > MAX_INPUT_ELEMENTS:
        raise LeakauditError(f"{option} {text!r} has {math.prod(dims):,} values per input; at most "
                             f"{MAX_INPUT_ELEMENTS:,} (a 2048x2048x4 image) are supported")
    return dims


def _load_target(req: InversionRequest):
    from leakaudit.targets.classifier import Classifier
    from leakaudit.targets.classifier_formats import ClassifierOptions, load_classifier_target

    if (req.model is None) == (req.endpoint is None):
        raise LeakauditError("give either a classifier folder or --endpoint URL (not both)")
    if req.endpoint is not None and (req.input_shape is None or req.n_classes is None):
        raise LeakauditError("--endpoint needs --input-shape and --n-classes")
    shape = parse_shape(req.input_shape, "--input-shape") if req.input_shape is not None else None
    if isinstance(req.model, Classifier):
        target = req.model
    else:
        target = load_classifier_target(
            str(req.model if req.model is not None else req.endpoint),
            options=ClassifierOptions(n_classes=req.n_classes, input_shape=shape,
                                      batch_size=req.batch_size, timeout_s=req.timeout,
                                      answers=req.answers))
    kind = ("white-box" if target.capabilities.gradients else "black-box") + \
        (" endpoint" if req.endpoint is not None else " classifier")
    source = {"path": str(getattr(target, "source", None) or req.model), "fingerprint": target.fingerprint(),
              "kind": kind, "capabilities": target.capabilities.to_dict()}
    meta = getattr(target, "meta", None) or {}
    return target, source, tuple(target.input_shape), meta.get("image_shape")


def choose_attack(target, requested: str | None) -> tuple[str, list[dict[str, Any]]]:
    """The inversion attack to run and the skip records of those the target cannot serve.

    Without a request: MI-Face when the target gives gradients, else NES (MI-Face recorded as
    skipped, naming the capability). A requested attack the target cannot serve is refused."""
    from leakaudit.attacks.inversion.base import INVERSION_ATTACKS
    from leakaudit.errors import CapabilityError
    from leakaudit.targets.classifier import classifier_skip

    skipped = []
    for name in ([requested] if requested else ["mi_face", "nes"]):
        try:
            cls = INVERSION_ATTACKS.get(name)
        except KeyError as e:
            raise LeakauditError(e.args[0]) from None
        rec = classifier_skip(name, cls.capabilities, target)
        if rec is None:
            return name, skipped
        if requested:
            raise CapabilityError(f"--attack {name}: {rec['reason']}")
        skipped.append({**rec, "attack": "inversion", "method": name})
    raise CapabilityError("no inversion attack can run: " + "; ".join(s["reason"] for s in skipped))


def prepare(req: InversionRequest) -> InversionTargets:
    import numpy as np

    from leakaudit.attacks.inversion.audit import load_reference_data, make_attack

    target, source, shape, img = _load_target(req)
    attack, skipped = choose_attack(target, req.attack)
    if req.image_shape is not None:
        img = parse_shape(req.image_shape, "--image-shape")
    if img is None and len(shape) >= 2:
        img = shape[-2:]
    if img is not None and len(img) != 2:
        raise LeakauditError(f"--image-shape must have two dimensions, got {img}")
    try:
        lo_hi = tuple(float(v) for v in req.clip.split(","))
    except ValueError:
        raise LeakauditError(f"--clip must be lo,hi with lo < hi, got {req.clip!r}") from None
    if len(lo_hi) != 2 or not lo_hi[0] < lo_hi[1] or not all(np.isfinite(lo_hi)):
        raise LeakauditError(f"--clip must be lo,hi with lo < hi, got {req.clip!r}")
    n = target.n_classes
    try:
        cls = list(range(n)) if req.classes is None else [int(c) for c in req.classes.split(",") if c.strip()]
    except ValueError:
        raise LeakauditError(f"--classes must be comma-separated integers, got {req.classes!r}") from None
    if not cls or min(cls) < 0 or max(cls) >= n:
        raise LeakauditError(f"--classes must lie in 0..{n - 1}, got {req.classes!r}")
    if attack == "mi_face" and req.budget is not None:
        raise LeakauditError("--budget applies to the black-box attack (--attack nes)")
    try:
        atk = make_attack(attack, budget=req.budget, clip=lo_hi, image_shape=tuple(img) if img else None,
                          tv_weight=None)
    except KeyError as e:
        raise LeakauditError(e.args[0]) from None
    reference = None
    if req.reference_data is not None:
        reference = load_reference_data(req.reference_data, input_shape=shape, n_classes=n)
        start = reference[0].mean(0)
        start_desc = f"mean of the reference data ({len(reference[0])} examples, class-agnostic)"
    else:
        start = np.zeros(shape)
        start_desc = "all-zero input (no reference data)"
    return InversionTargets(target, source, atk, attack, cls, start, start_desc, reference,
                            tuple(img) if img else None, skipped)


def run(t: InversionTargets, req: InversionRequest, env: AuditEnv) -> AuditResult:
    from leakaudit.attacks.inversion.audit import inversion_summary, run_inversion_audit

    context = {"target": Path(str(t.source["path"])).name if req.model is not None else "endpoint",
               "seed": req.seed,
               "image_shape": list(t.image_shape) if t.image_shape else None,
               "target_description": t.source["kind"]}
    rr = base_run_record(env.command, req.seed, {
        "attack": t.attack_name, "params": t.attack.params(), "classes": t.classes,
        "budget_per_class": req.budget, "seed": req.seed, "start": t.start_desc,
        "reference_data": str(req.reference_data) if req.reference_data else None})
    rr["models"] = {"target": t.source}
    store = env.store()  # reconstructions and their judging are stages: a rerun reuses them
    records = run_inversion_audit(t.target, attack=t.attack, classes=t.classes, seeds=[req.seed],
                                  start=t.start, start_description=t.start_desc, reference=t.reference,
                                  evaluator_epochs=60, context=context, progress=env.progress, log=env.log,
                                  store=store)
    if store.reused:
        env.log(f"run store: reused {len(store.reused)} finished stages; computed {len(store.computed)}")
    for sk in t.skipped:
        env.log(f"inversion: skipped {sk['method']}: {sk['reason']}")
    rr["skipped"] = t.skipped
    return AuditResult(rr, records, {**inversion_summary(records), "skipped": t.skipped})
