"""Class inversion of a user's classifier (``leakaudit invert``) and the report it writes.

With labelled reference data (data the auditor holds that is *not* the target's training data,
e.g. a public set of the same domain), reconstructions are judged objectively: an evaluation
classifier is trained on it and the reference class means are the comparison points, and the
attack starts at the reference mean (class-agnostic). Without it, the report holds the
reconstructions and the target's own confidence only, marked unjudged.
"""

from __future__ import annotations

import zipfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from leakaudit.attacks.inversion.base import INVERSION_ATTACKS, InversionResult
from leakaudit.attacks.inversion.evaluate import evaluate_inversion
from leakaudit.attacks.inversion.mi_face import MIFaceParams
from leakaudit.attacks.inversion.nes import NESParams
from leakaudit.errors import InputError
from leakaudit.progress import null_progress
from leakaudit.taxonomy import TAXONOMY


def load_reference_data(path: str | Path, *, input_shape: tuple[int, ...], n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """``.npz`` with arrays ``x`` (n, *input_shape) and ``y`` (n,) int labels; no pickle."""
    path = Path(path)
    if not path.is_file():
        raise InputError("no such file", path=str(path))
    try:
        z = np.load(path, allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        raise InputError(f"not a readable .npz file: {e}", path=str(path)) from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise InputError("expected an .npz archive with arrays 'x' and 'y' (np.savez), got a single array",
                         path=str(path))
    with z:
        if "x" not in z.files or "y" not in z.files:
            raise InputError(f"needs arrays 'x' and 'y'; found {sorted(z.files)}", path=str(path))
        try:
            x, y = np.asarray(z["x"], dtype=np.float32), np.asarray(z["y"])
        except (ValueError, TypeError) as e:  # object arrays need pickle: refused
            raise InputError(f"arrays x/y are not plain numeric arrays: {e}", path=str(path)) from None
    x = x.reshape((len(x),) + tuple(input_shape)) if x.size == len(x) * int(np.prod(input_shape)) else x
    if x.shape[1:] != tuple(input_shape) or len(x) != len(y):
        raise InputError(f"x has shape {x.shape} and y {y.shape}; expected (n, {', '.join(map(str, input_shape))}) "
                         "and (n,)", path=str(path))
    if not np.all(np.isfinite(x)):
        raise InputError(f"x holds {int(x.size - np.isfinite(x).sum())} NaN or infinite values",
                         path=str(path))
    if len(y) == 0:
        raise InputError("no examples", path=str(path))
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= n_classes:
        raise InputError(f"y must hold integer labels 0..{n_classes - 1}", path=str(path))
    return x, y.astype(np.int64)


def make_attack(name: str, *, budget: int | None, clip: tuple[float, float],
                image_shape: tuple[int, int] | None, tv_weight: float | None):
    """An attack with the documented default settings (``MIFaceParams`` / ``NESParams``), the
    given budget, input domain and image shape."""
    cls = INVERSION_ATTACKS.get(name)
    params = asdict(MIFaceParams() if name == "mi_face" else NESParams())
    if name != "mi_face" and budget is not None:
        params["budget"] = budget
    if tv_weight is not None:
        params["tv_weight"] = tv_weight
    if image_shape is None:
        params["tv_weight"] = 0.0  # flat inputs of unknown layout: no smoothness prior
    return cls(**params, clip=clip, image_shape=image_shape)


def _array_key(a: np.ndarray) -> str:
    import hashlib

    a = np.ascontiguousarray(a)
    h = hashlib.sha256(f"{a.dtype.str}:{a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def _result_json(r: InversionResult) -> dict[str, Any]:
    arrays = {k: np.asarray(getattr(r, k)) for k in ("x", "confidence", "cost", "steps", "queries")}
    return {"attack": r.attack, "classes": [int(c) for c in r.classes], "stop_reason": list(r.stop_reason),
            "params": r.params, **{k: {"dtype": a.dtype.str, "shape": list(a.shape),
                                       "values": a.reshape(-1).tolist()} for k, a in arrays.items()}}


def _result_from_json(d: dict[str, Any]) -> InversionResult:
    arr = {k: np.asarray(d[k]["values"], dtype=np.dtype(d[k]["dtype"])).reshape(d[k]["shape"])
           for k in ("x", "confidence", "cost", "steps", "queries")}
    return InversionResult(attack=d["attack"], classes=list(d["classes"]),
                           stop_reason=list(d["stop_reason"]), params=d["params"], **arr)


def run_inversion_audit(target, *, attack, classes: list[int], seeds: list[int], start: np.ndarray,
                        start_description: str, reference: tuple[np.ndarray, np.ndarray] | None,
                        evaluator_epochs: int, context: dict[str, Any],
                        progress=null_progress, log=print, store=None) -> list[tuple[str, dict]]:
    """Invert ``classes`` of ``target`` once per seed and return report records.

    ``store``: a :class:`~leakaudit.runs.store.RunStore`. Each seed's reconstructions are then a
    stage keyed by the target's fingerprint (weights for a classifier folder; URL, classes and
    input shape for an endpoint), the attack and its parameters, the classes, the seed and the
    start; the judging (evaluation classifier trained on the reference data) a stage keyed by
    those and a hash of the reference data. A rerun reuses what finished: no query is paid twice.
    """
    from leakaudit.runs.store import NullStore, stage_key

    store = store if store is not None else NullStore()
    fp, start_key = target.fingerprint(), _array_key(np.asarray(start, dtype=np.float64))
    results: list[InversionResult] = []
    keys: list[str] = []
    for s in seeds:
        def invert(s=s):
            target.queries = 0
            return _result_json(attack.invert(target, classes, start=start, seed=s, progress=progress))

        key = stage_key("inversion-reconstruct", fp, type(attack).__name__, attack.params(),
                        [int(c) for c in classes], int(s), start_key)
        keys.append(key)
        results.append(_result_from_json(store.json(f"inversion-seed{s}", key, invert,
                                                    describe={"seed": s, "classes": list(classes)})))
    ref_key = None if reference is None else [_array_key(reference[0]), _array_key(reference[1])]
    ekey = stage_key("inversion-evaluate", keys, ref_key, evaluator_epochs, context,
                     start_description, list(seeds))
    return [tuple(p) for p in store.json("inversion-evaluate", ekey, lambda: _plain(_inversion_records(
        target, attack=attack, classes=classes, seeds=seeds, results=results,
        start_description=start_description, reference=reference,
        evaluator_epochs=evaluator_epochs, context=context, log=log)))]


def _plain(x):
    """``x`` with numpy scalars and arrays as plain Python values (for a JSON stage)."""
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, (np.ndarray, np.generic)):
        return x.tolist()
    return x


def _inversion_records(target, *, attack, classes, seeds, results: list[InversionResult],
                       start_description: str, reference, evaluator_epochs: int,
                       context: dict[str, Any], log=print) -> list[tuple[str, dict]]:
    """The report records of finished reconstructions (judged when there is reference data)."""
    ctx = {**context, "start": start_description, "seeds": list(seeds),
           "budget_per_class": getattr(attack, "budget", None), "defense": "none", "sweep": False,
           "control": False}
    if reference is not None:
        from leakaudit.targets.classifier import TorchClassifier
        from leakaudit.training.classifier import MLPSpec, TrainConfig, train_classifier

        x, y = reference
        d = int(np.prod(target.input_shape))
        log(f"training the evaluation classifier on {len(x)} reference examples")
        evaluator = TorchClassifier(
            train_classifier(x.reshape(len(x), d), y, MLPSpec(d, target.n_classes, (128,)),
                             TrainConfig(epochs=evaluator_epochs, lr=1e-3, seed=seeds[0])),
            n_classes=target.n_classes, input_shape=target.input_shape)
        means = np.stack([x[y == c].mean(0) if (y == c).any() else np.full(target.input_shape, np.nan)
                          for c in range(target.n_classes)])
        ctx.update(evaluator=f"MLP (128,) trained on the reference data ({len(x)} examples)",
                   class_means=means.reshape(target.n_classes, -1).round(4).tolist(),
                   class_means_source="reference data")
        ev, rows = evaluate_inversion(results, evaluator=evaluator, class_means=means.reshape(target.n_classes, -1)
                                      if len(target.input_shape) == 1 else means, top_k=min(5, target.n_classes),
                                      context=ctx)
        for r in rows:
            r.pop("class_means", None)
            r.pop("seeds", None)
        return [("inversion", ev)] + [("inversion_record", r) for r in rows]
    rows = []
    for i, res in enumerate(results):
        for j, c in enumerate(res.classes):
            rows.append({**{k: v for k, v in ctx.items() if k != "seeds"}, "attack": res.attack, "class": c,
                         "run": i, "seed": seeds[i], "reconstruction": np.asarray(res.x[j]).reshape(-1).round(4).tolist(),
                         "target_confidence": float(res.confidence[j]), "cost": float(res.cost[j]),
                         "steps": int(res.steps[j]), "queries": int(res.queries[j]),
                         "stop_reason": res.stop_reason[j], "judged": False})
    conf = np.concatenate([r.confidence for r in results])
    ev = {**ctx, "attack": results[0].attack, "threat_model": attack.threat_model, "doc_uri": attack.doc_uri,
          "tags": TAXONOMY["inversion"], "n_reconstructions": len(rows), "n_runs": len(results),
          "classes": list(classes), "judged": False,
          "note": "no reference data given: reconstructions are not judged by an evaluation classifier",
          "mean_target_confidence": float(conf.mean()),
          "queries_total": int(sum(int(r.queries.sum()) for r in results)),
          "queries_per_class_max": int(max(int(r.queries.max()) for r in results)), "params": attack.params()}
    return [("inversion", ev)] + [("inversion_record", r) for r in rows]


def inversion_summary(records: list[tuple[str, dict]]) -> dict[str, Any]:
    """The summary line of an inversion report: top-1 and mean target confidence per evaluation."""
    evals = [r for t, r in records if t == "inversion"]
    return {"attack": "inversion", "n_evaluations": len(evals),
            "top1": {f"{e['attack']}/{e.get('target')}/{e.get('defense')}": (e.get("top1") or {}).get("value")
                     for e in evals},
            "mean_target_confidence": {f"{e['attack']}/{e.get('target')}/{e.get('defense')}":
                                       e.get("mean_target_confidence") for e in evals},
            "tags": TAXONOMY["inversion"]}
