"""Canary exposure (Carlini et al. 2019, The Secret Sharer) as an audit."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leakaudit.audits.base import AuditEnv, AuditResult, base_run_record
from leakaudit.errors import InputError, read_json_object
from leakaudit.progress import null_progress


@dataclass(frozen=True)
class ExposureRequest:
    model: str
    manifest: Path
    references: int = 1000
    seed: int = 0
    batch_size: int = 64
    device: str = "cpu"
    show_pii: bool = False
    allow_download: bool = False


@dataclass
class ExposureTargets:
    target: Any
    canaries: list[dict[str, Any]]


def read_manifest(path: Path) -> list[dict[str, Any]]:
    data = read_json_object(path)
    canaries = data.get("canaries")
    if not canaries or not isinstance(canaries, list):
        raise InputError("the manifest has no canaries", path=str(path))
    from leakaudit.attacks.canaries.spaces import space_of

    for c in canaries:
        if not isinstance(c, dict):
            raise InputError("every canary must be a JSON object", path=str(path))
        for key in ("secret", "template", "repeats"):
            if key not in c:
                raise InputError(f"canary {c.get('id')!r} has no {key!r} field", path=str(path))
        try:
            space_of(c)
        except ValueError as e:
            raise InputError(str(e), path=str(path)) from None
    return canaries


def prepare(req: ExposureRequest) -> ExposureTargets:
    from leakaudit.targets import default_name, load_target
    from leakaudit.targets.checks import check_device

    check_device(req.device)
    canaries = read_manifest(req.manifest)
    target = load_target(req.model, name=default_name(req.model), device=req.device,
                         allow_download=req.allow_download)
    return ExposureTargets(target, canaries)


def run(t: ExposureTargets, req: ExposureRequest, env: AuditEnv) -> AuditResult:
    store = env.store()  # each canary is a stage: a rerun after a crash reuses the finished ones
    pairs, by_rep = exposure_records(t.target, t.canaries, n_references=req.references, seed=req.seed,
                                     batch_size=req.batch_size, show_pii=req.show_pii,
                                     progress=env.progress, store=store)
    if store.reused:
        env.log(f"run store: reused {len(store.reused)} finished stages; computed {len(store.computed)}")
    rr = base_run_record(env.command, req.seed, {"references": req.references, "show_pii": req.show_pii})
    rr["models"] = {t.target.name: {"path": req.model, "fingerprint": t.target.fingerprint()}}
    rr["manifest"] = str(req.manifest)
    return AuditResult(rr, pairs, {"attack": "canary_exposure", "by_repeats": by_rep})


def exposure_records(model, canaries, *, n_references: int, seed: int, batch_size: int,
                     show_pii: bool = False, progress=null_progress,
                     store=None) -> tuple[list[tuple[str, dict]], list[dict]]:
    """Canary exposure records (one per canary, then one per repetition count) for report.jsonl
    (``store``: a run store, one stage per canary)."""
    from leakaudit.attacks.canaries.exposure import canary_exposure, exposure_by_repeats

    recs = canary_exposure(model, canaries, n_references=n_references, seed=seed,
                           batch_size=batch_size, show_pii=show_pii, progress=progress,
                           store=store)
    by_rep = exposure_by_repeats(recs)
    name = getattr(model, "name", "model")
    # "kind" is the record kind; the canary's own kind (ssn, pattern, …) becomes "canary_kind"
    pairs = [("exposure", {"model": name, **{k: v for k, v in r.items() if k != "kind"},
                           "kind": "canary", "canary_kind": r.get("kind")}) for r in recs]
    pairs += [("exposure", {"kind": "by_repeats", "attack": "canary_exposure", "model": name, **r})
              for r in by_rep]
    return pairs, by_rep
