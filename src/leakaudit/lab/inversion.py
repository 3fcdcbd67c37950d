"""The model-inversion part of the lab: digits classifiers inverted white-box and black-box, the
same attacks against defended outputs and a DP-SGD target, and attribute inference on synthetic
medical records.

Data roles (disjoint, seeded, stratified splits of scikit-learn's digits):

- ``target``: the private training data of the target classifiers; its class means are what a
  reconstruction is compared with;
- ``eval``: trains the independent evaluation classifier that judges reconstructions;
- ``public``: the attacker's class-agnostic auxiliary data; the attacks start at its mean image
  (it carries no class information) and the targets' test accuracy is measured on it.

:func:`run_inversion_lab` returns ``(entry_type, record)`` pairs (``inversion``,
``inversion_record``, ``attribute_inference``) for the report writer.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from leakaudit.attacks.inversion.mi_face import MIFaceParams
from leakaudit.attacks.inversion.nes import NESParams
from leakaudit.training.dp_classifier import DPConfig
from leakaudit.progress import null_progress
from leakaudit.training.classifier import MLPSpec, TrainConfig

IMAGE_SHAPE = (8, 8)


@dataclass(frozen=True)
class TabularParams:
    n_records: int = 3000  # split in thirds: target training, held out, public (for the marginal)
    hidden: tuple[int, ...] = (32,)
    tau: float = 0.05


@dataclass(frozen=True)
class InversionLabConfig:
    """Everything the inversion lab does, with its seeds; recorded in every report record."""

    seed: int = 0
    split: tuple[tuple[str, float], ...] = (("target", 0.4), ("eval", 0.4), ("public", 0.2))
    target_spec_hidden: tuple[int, ...] = ()  # softmax regression, as in Fredrikson et al. 2015
    target_train: TrainConfig = field(
        default_factory=lambda: TrainConfig(epochs=100, lr=1e-2, batch_size=64, seed=0))
    mlp_hidden: tuple[int, ...] = (64,)
    mlp_train: TrainConfig = field(
        default_factory=lambda: TrainConfig(epochs=60, lr=1e-3, batch_size=64, seed=0))
    evaluator_hidden: tuple[int, ...] = (128,)
    evaluator_train: TrainConfig = field(
        default_factory=lambda: TrainConfig(epochs=60, lr=1e-3, batch_size=64, seed=1))
    dp: DPConfig = field(
        default_factory=lambda: DPConfig(noise_multiplier=4.0, max_grad_norm=1.0, delta=1e-5))
    dp_train: TrainConfig = field(
        default_factory=lambda: TrainConfig(epochs=30, lr=0.5, batch_size=64, seed=0))
    mi_face: MIFaceParams = field(default_factory=MIFaceParams)
    nes: NESParams = field(default_factory=NESParams)
    nes_seeds: tuple[int, ...] = (0, 1, 2)
    budgets: tuple[int, ...] = (63, 126, 252, 504, 1008)  # the black-box budget sweep
    rounding_decimals: int = 1
    top_k: int = 5
    tabular: TabularParams = field(default_factory=TabularParams)

    @classmethod
    def quick(cls, seed: int = 0) -> InversionLabConfig:
        return cls(seed=seed, nes_seeds=(0,), budgets=(126, 504),
                   tabular=TabularParams(n_records=1500))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _torch_target(module):
    from leakaudit.targets.classifier import TorchClassifier

    return TorchClassifier(module, n_classes=10, input_shape=(64,))


def _accuracy(clf, x, y) -> float:
    return float((clf.predict(x) == y).mean())


def run_inversion_lab(config: InversionLabConfig, *, progress=null_progress, log=print) -> list[tuple[str, dict]]:
    """Train the digits targets and the evaluator, invert them, judge the reconstructions, run
    attribute inference on synthetic medical records; return the report records."""
    import torch

    from leakaudit.attacks.inversion import InversionResult, MIFace, NESInversion
    from leakaudit.attacks.inversion.evaluate import evaluate_inversion
    from leakaudit.training.dp_classifier import train_classifier_dp
    from leakaudit.lab.digits import load_digits_data, split_digits
    from leakaudit.targets.classifier import LabelOnlyOutputs, RoundedOutputs
    from leakaudit.training.classifier import build_mlp, train_classifier

    t_start = time.time()
    seed = config.seed
    parts = split_digits(load_digits_data(), dict(config.split), seed=seed)
    tr, ev, pub = parts["target"], parts["eval"], parts["public"]
    class_means = np.stack([tr.x[tr.y == c].mean(0) for c in range(10)])
    start = pub.x.mean(0)
    start_desc = f"mean image of the public split ({len(pub)} images, class-agnostic)"

    def shifted(tc: TrainConfig) -> TrainConfig:  # the lab seed shifts every training seed
        return TrainConfig(epochs=tc.epochs, lr=tc.lr, batch_size=tc.batch_size,
                           weight_decay=tc.weight_decay, seed=tc.seed + 1000 * seed)

    log("inversion lab: training digits targets and the evaluation classifier")
    evaluator = _torch_target(train_classifier(ev.x, ev.y, MLPSpec(64, 10, config.evaluator_hidden),
                                               shifted(config.evaluator_train)))
    targets: dict[str, dict[str, Any]] = {}
    lin_spec = MLPSpec(64, 10, config.target_spec_hidden)
    targets["softmax_regression"] = {"clf": _torch_target(train_classifier(tr.x, tr.y, lin_spec,
                                                                          shifted(config.target_train))),
                                     "description": f"softmax regression {lin_spec.to_dict()}"}
    mlp_spec = MLPSpec(64, 10, config.mlp_hidden)
    targets["mlp"] = {"clf": _torch_target(train_classifier(tr.x, tr.y, mlp_spec, shifted(config.mlp_train))),
                      "description": f"MLP {mlp_spec.to_dict()}"}
    dp_module, dp_record = train_classifier_dp(tr.x, tr.y, lin_spec, shifted(config.dp_train), config.dp)
    targets["dp_softmax_regression"] = {
        "clf": _torch_target(dp_module), "dp": dp_record,
        "description": f"softmax regression trained with DP-SGD (ε = {dp_record['epsilon']:.2f}, "
                       f"δ = {config.dp.delta:g}, σ = {config.dp.noise_multiplier}, C = {config.dp.max_grad_norm})"}
    torch.manual_seed(seed)
    targets["untrained"] = {"clf": _torch_target(build_mlp(lin_spec).eval()),
                            "description": "negative control: softmax regression at its random initialization (never saw data)"}
    for t in targets.values():
        t["test_accuracy"] = _accuracy(t["clf"], pub.x, pub.y)
    evaluator_acc = _accuracy(evaluator, pub.x, pub.y)

    mf = MIFace(**asdict(config.mi_face), clip=(0.0, 1.0), image_shape=IMAGE_SHAPE)
    common = {"seed": seed, "start": start_desc, "split_seed": seed, "image_shape": list(IMAGE_SHAPE),
              "evaluator": f"MLP {config.evaluator_hidden} trained on the eval split ({len(ev)} images, disjoint)",
              "evaluator_accuracy": evaluator_acc, "class_means": class_means.round(4).tolist(),
              "n_target_train": len(tr)}
    records: list[tuple[str, dict]] = []

    def emit(results, *, target_name: str, defense: str, budget: int | None, seeds, per_class: bool,
             sweep: bool = False, start_override: str | None = None) -> dict:
        t = targets[target_name]
        ctx = {**common, "target": target_name, "target_description": t["description"],
               "target_accuracy": t["test_accuracy"], "defense": defense, "budget_per_class": budget,
               "seeds": list(seeds), "sweep": sweep, "control": target_name == "untrained",
               "variant": "zero start" if start_override else None}
        if start_override:
            ctx["start"] = start_override
        if defense == "label_only":
            ctx["note"] = ("label-only outputs: the confidence signal is flat except at decision "
                           "boundaries; what the attack reaches mostly reflects its start and prior")
        if "dp" in t:
            ctx["dp"] = t["dp"]
        ev_rec, rows = evaluate_inversion(results, evaluator=evaluator, class_means=class_means,
                                          top_k=config.top_k, context=ctx)
        records.append(("inversion", ev_rec))
        if per_class:
            for r in rows:
                r.pop("class_means", None)
                r.pop("seeds", None)
                records.append(("inversion_record", r))
        return ev_rec

    classes = list(range(10))
    summary: dict[str, Any] = {}
    # Control: the starting point itself, for every class (what the attack gets for free).
    p_start = targets["softmax_regression"]["clf"].predict_proba(np.repeat(start[None], 10, 0))
    start_only = InversionResult(attack="start_only", classes=classes, x=np.repeat(start[None], 10, 0),
                                 confidence=p_start[np.arange(10), classes], cost=1 - p_start[np.arange(10), classes],
                                 steps=np.zeros(10, dtype=np.int64), queries=np.zeros(10, dtype=np.int64),
                                 stop_reason=["no_attack"] * 10, params={})
    emit([start_only], target_name="softmax_regression", defense="none", budget=0, seeds=[seed],
         per_class=False)
    with progress("inversion: white-box", 5) as adv:
        for name in ("softmax_regression", "mlp", "dp_softmax_regression", "untrained"):
            res = mf.invert(targets[name]["clf"], classes, start=start)
            e = emit([res], target_name=name, defense="dp_sgd" if name.startswith("dp_") else "none",
                     budget=None, seeds=[seed], per_class=True)
            summary[f"mi_face/{name}"] = e["top1"]["value"]
            adv(1)
        # the same attack from a blank (all-zero) image: no auxiliary data at all
        res = mf.invert(targets["softmax_regression"]["clf"], classes, start=np.zeros(64))
        emit([res], target_name="softmax_regression", defense="none", budget=None, seeds=[seed],
             per_class=True, start_override="all-zero image (no auxiliary data)")
        adv(1)

    def nes(budget: int) -> NESInversion:
        p = asdict(config.nes)
        p["budget"] = budget
        return NESInversion(**p, clip=(0.0, 1.0), image_shape=IMAGE_SHAPE)

    views = {
        "none": lambda c: c,
        f"rounded_{config.rounding_decimals}": lambda c: RoundedOutputs(c, decimals=config.rounding_decimals),
        "label_only": LabelOnlyOutputs,
    }
    budgets = sorted(set(config.budgets) | {config.nes.budget})  # the main budget is always run
    jobs = [(tname, d, b) for tname in ("softmax_regression", "dp_softmax_regression")
            for d in views for b in budgets]
    with progress("inversion: black-box", len(jobs)) as adv:
        for tname, dname, budget in jobs:
            if tname.startswith("dp_") and dname != "none":
                adv(1)
                continue
            view = views[dname](targets[tname]["clf"])
            view.queries = 0
            results = [nes(budget).invert(view, classes, start=start, seed=s) for s in config.nes_seeds]
            if view.queries != sum(int(r.queries.sum()) for r in results):  # every query is counted
                raise RuntimeError(f"query accounting mismatch: target counted {view.queries}")
            main = budget == config.nes.budget
            defense = "dp_sgd" if tname.startswith("dp_") else dname
            e = emit(results, target_name=tname, defense=defense, budget=budget,
                     seeds=config.nes_seeds, per_class=main, sweep=not main)
            if main:
                summary[f"nes/{tname}/{dname}"] = e["top1"]["value"]
            adv(1)

    records.extend(("attribute_inference", r) for r in run_attribute_lab(config, log=log))
    log(f"inversion lab: done in {time.time() - t_start:.0f} s; evaluator top-1 of reconstructions: "
        + ", ".join(f"{k} {v:.0%}" for k, v in summary.items()))
    return records


def run_attribute_lab(config: InversionLabConfig, *, log=print) -> list[dict]:
    """Fredrikson-2014 attribute inference of ``smoker`` on synthetic medical records, against the
    marginal baseline, on the target's training records (members) and on held-out records, plus a
    negative control: a model trained with the sensitive column blanked."""
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from leakaudit.attacks.inversion.attribute import MarginalBaseline, ModelInversionAttribute
    from leakaudit.lab.tabular import FEATURES, LABEL, SENSITIVE, generate_medical_records
    from leakaudit.metrics.stats import rate
    from leakaudit.taxonomy import TAXONOMY
    from leakaudit.targets.classifier import SklearnClassifier

    tp = config.tabular
    data = generate_medical_records(tp.n_records, seed=config.seed)
    third = tp.n_records // 3
    members, heldout, public = (data.subset(range(third)), data.subset(range(third, 2 * third)),
                                data.subset(range(2 * third, 3 * third)))
    col = FEATURES.index(SENSITIVE)
    values = [0.0, 1.0]
    p1 = float(public.sensitive.mean())
    prior = [1 - p1, p1]
    baseline = MarginalBaseline(values=values, prior=prior)
    out: list[dict] = []
    for model_name, blank in (("mlp", False), ("mlp_without_sensitive", True)):
        xtr = members.x.copy()
        if blank:
            xtr[:, col] = 0.0
        est = make_pipeline(StandardScaler(), MLPClassifier(tp.hidden, max_iter=2000, random_state=config.seed))
        est.fit(xtr, members.y)
        target = SklearnClassifier(est)
        acc = float((target.predict(heldout.x) == heldout.y).mean())
        for mode in ("label", "confidences"):
            attack = ModelInversionAttribute(column=col, values=values, prior=prior, mode=mode, tau=tp.tau)
            for part_name, part in (("members", members), ("heldout", heldout)):
                observed = part.y if mode == "label" else target.predict_proba(part.x)
                known = part.x.copy()
                known[:, col] = np.nan  # the attack never reads it
                target.queries = 0
                pred, post = attack.infer(target, known, observed)
                truth = part.sensitive
                base_pred, _ = baseline.infer(len(part))
                k_att = int((pred == truth).sum())
                k_base = int((base_pred == truth).sum())
                pos = truth == 1
                out.append({
                    "attack": attack.name, "threat_model": attack.threat_model, "doc_uri": attack.doc_uri,
                    "tags": TAXONOMY["inversion"], "target": model_name, "mode": mode, "records": part_name,
                    "control": blank, "sensitive_attribute": SENSITIVE, "label": LABEL,
                    "features": list(FEATURES), "values": values, "prior": prior,
                    "prior_source": f"public records ({len(public)})", "n": len(part),
                    "accuracy": rate(k_att, len(part)).to_dict(),
                    "baseline": {"name": baseline.name, **rate(k_base, len(part)).to_dict()},
                    "advantage": (k_att - k_base) / len(part),
                    "tpr_sensitive": rate(int((pred[pos] == 1).sum()), int(pos.sum())).to_dict(),
                    "mean_posterior_true": float(post[np.arange(len(part)), truth].mean()),
                    "queries": int(target.queries), "target_accuracy": acc, "seed": config.seed,
                    "n_records": tp.n_records, "params": attack.params(),
                })
    best = next(r for r in out if r["target"] == "mlp" and r["mode"] == "label" and r["records"] == "members")
    log(f"attribute inference ({SENSITIVE}): {best['accuracy']['value']:.1%} vs marginal baseline "
        f"{best['baseline']['value']:.1%} on training records (label mode)")
    return out
