"""The classifier membership lab: an overfit MLP on the digits, audited with shadow models.

Carlini et al.'s evaluation protocol, at laptop scale:

1. The 1,797 digits are split into a *pool* (IN/OUT candidates) and a *population* that no model
   ever trains on (RMIA's z samples).
2. ``n_shadow`` MLPs are trained, each on a random half of the pool (a keep matrix where every
   pool record is IN for exactly half of the models), made to overfit (small training set, many
   epochs, no weight decay).
3. Leave-one-out: each of the first ``n_targets`` models plays the target in turn; the attacks
   use only the *other* models as shadow/reference models. Scores and IN/OUT labels are pooled over
   the targets (so ~``n_targets`` × 700 non-members: enough to resolve TPR at 0.1% FPR).
4. LOSS, Shokri, LiRA (online/offline × fixed/per-example variance) and RMIA (with 1, 2 and all
   reference models) are evaluated on the same pooled records.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from leakaudit.attacks.membership.classifier import (ClassifierLossAttack, ClassifierSignals,
                                                     LiRAAttack, RMIAAttack, ShokriAttack)
from leakaudit.attacks.membership.evaluate import EvalConfig, MembershipEvaluation, evaluate_scores
from leakaudit.progress import null_progress


@dataclass(frozen=True)
class ClassifierLabConfig:
    """Sizes of the classifier membership lab (defaults: ~1 s per model on one thread)."""

    n_shadow: int = 16
    n_targets: int = 2
    population_fraction: float = 0.15
    hidden: tuple[int, ...] = (256,)
    epochs: int = 150
    lr: float = 1e-3
    batch_size: int = 64
    rmia_a: float | None = None  #: None: tuned on a reference model (tune_rmia_a over rmia_a_grid)
    rmia_a_grid: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    rmia_gamma: float = 1.0
    shokri_max_iter: int = 100
    seed: int = 0
    eval: EvalConfig = field(default_factory=lambda: EvalConfig(n_boot=300))


@dataclass
class ClassifierMembershipAudit:
    evaluations: list[MembershipEvaluation]
    record_ids: list[str]  #: pooled record id ("t{target}:{digit id}") per score
    info: dict[str, Any] = field(default_factory=dict)

    def get(self, label: str) -> MembershipEvaluation:
        for e in self.evaluations:
            if e.label == label or e.method == label:
                return e
        raise KeyError(f"no evaluation {label!r}; have {[e.label for e in self.evaluations]}")

    def records(self, *, top_n: int = 20) -> list[tuple[str, dict[str, Any]]]:
        from leakaudit.attacks.membership.evaluate import exposed_records

        out = [("membership", {**e.record(), "lab": self.info}) for e in self.evaluations]
        for e in self.evaluations:
            out += [("membership_record", r)
                    for r in exposed_records(e, ids=self.record_ids, texts=None, top_n=top_n)]
        return out


def default_classifier_attacks(cfg: ClassifierLabConfig, n_refs: int) -> list[tuple[Any, int | None]]:
    """(attack, number of reference models it gets: None = all others)."""
    return [
        (ClassifierLossAttack(), 0),
        (ShokriAttack(max_iter=cfg.shokri_max_iter, seed=cfg.seed), None),
        (LiRAAttack(online=True, fixed_variance=True), None),
        (LiRAAttack(online=True, fixed_variance=False), None),
        (LiRAAttack(online=False, fixed_variance=True), None),
        (LiRAAttack(online=False, fixed_variance=False), None),
        (RMIAAttack(a=cfg.rmia_a, gamma=cfg.rmia_gamma, online=True), 1),
        (RMIAAttack(a=cfg.rmia_a, gamma=cfg.rmia_gamma, online=True), 2),
        (RMIAAttack(a=cfg.rmia_a, gamma=cfg.rmia_gamma, online=False), None),
    ]


def classifier_membership_experiment(shadow_dir: str | Path, cfg: ClassifierLabConfig, *,
                                     progress=null_progress, log=print) -> ClassifierMembershipAudit:
    """Train (or reuse) the lab's models in ``shadow_dir`` and evaluate every classifier attack."""
    from leakaudit.attacks.membership.shadow import ShadowModels, TorchMLPTrainer
    from leakaudit.lab.digits import N_CLASSES, load_digits_data, split_digits
    from leakaudit.training.classifier import MLPSpec, TrainConfig

    if cfg.n_shadow < 4 or not 1 <= cfg.n_targets <= cfg.n_shadow:
        raise ValueError(f"need n_shadow >= 4 (each record needs IN and OUT models among the "
                         f"others) and 1 <= n_targets <= n_shadow; got {cfg.n_shadow}, {cfg.n_targets}")
    data = load_digits_data()
    parts = split_digits(data, {"pool": 1 - cfg.population_fraction,
                                "population": cfg.population_fraction}, seed=cfg.seed)
    pool = np.isin(data.ids, parts["pool"].ids)
    pop_idx = np.flatnonzero(~pool)
    pool_idx = np.flatnonzero(pool)
    spec = MLPSpec(input_dim=64, n_classes=N_CLASSES, hidden=cfg.hidden)
    tcfg = TrainConfig(epochs=cfg.epochs, lr=cfg.lr, batch_size=cfg.batch_size, weight_decay=0.0,
                       seed=cfg.seed)
    shadows = ShadowModels(shadow_dir, n_models=cfg.n_shadow, seed=cfg.seed,
                           trainer=TorchMLPTrainer(spec, tcfg))
    t0 = time.perf_counter()
    outputs = shadows.train(data.x, data.y, eligible=pool, progress=progress)
    keep = shadows.keep_
    t_train = time.perf_counter() - t0
    log(f"shadow models: {cfg.n_shadow} ({shadows.trained_now_} trained now, "
        f"{cfg.n_shadow - shadows.trained_now_} reused) in {t_train:.1f}s")
    train_acc = [float((outputs[j][keep[j]].argmax(1) == data.y[keep[j]]).mean())
                 for j in range(cfg.n_shadow)]
    test_acc = [float((outputs[j][~keep[j] & pool].argmax(1) == data.y[~keep[j] & pool]).mean())
                for j in range(cfg.n_shadow)]

    rmia_a, a_scan = cfg.rmia_a, None
    if rmia_a is None:  # tune on the last model as a pseudo-target, never on a real target
        from leakaudit.attacks.membership.classifier import tune_rmia_a

        pseudo = cfg.n_shadow - 1
        refs = [j for j in range(cfg.n_shadow) if j >= cfg.n_targets and j != pseudo]
        if pseudo < cfg.n_targets or not refs:
            raise ValueError("tuning RMIA's a needs n_shadow >= n_targets + 2; or give rmia_a")
        sig = ClassifierSignals(
            y=data.y[pool_idx], target_probs=outputs[pseudo][pool_idx],
            ref_probs=outputs[refs][:, pool_idx], ref_keep=keep[refs][:, pool_idx],
            pop_y=data.y[pop_idx], pop_target_probs=outputs[pseudo][pop_idx],
            pop_ref_probs=outputs[refs][:, pop_idx])
        rmia_a, a_scan = tune_rmia_a(sig, keep[pseudo, pool_idx].astype(int), grid=cfg.rmia_a_grid,
                                     gamma=cfg.rmia_gamma)
        log(f"RMIA a = {rmia_a} (tuned on reference model {pseudo} as a pseudo-target)")
    from dataclasses import replace as _replace

    attacks = default_classifier_attacks(_replace(cfg, rmia_a=rmia_a), cfg.n_shadow - 1)
    pooled: dict[int, list[np.ndarray]] = {i: [] for i in range(len(attacks))}
    labels, ids = [], []
    t1 = time.perf_counter()
    for t in range(cfg.n_targets):
        others = [j for j in range(cfg.n_shadow) if j != t]
        labels.append(keep[t, pool_idx].astype(np.int64))
        ids += [f"t{t}:{int(data.ids[i])}" for i in pool_idx]
        for ai, (atk, n_refs) in enumerate(attacks):
            refs = others if n_refs is None else others[:n_refs]
            sig = ClassifierSignals(
                y=data.y[pool_idx], target_probs=outputs[t][pool_idx],
                ref_probs=outputs[refs][:, pool_idx] if refs else None,
                ref_keep=keep[refs][:, pool_idx] if refs else None,
                pop_y=data.y[pop_idx], pop_target_probs=outputs[t][pop_idx],
                pop_ref_probs=outputs[refs][:, pop_idx] if refs else None)
            pooled[ai].append(atk.score(sig))
    y_all = np.concatenate(labels)
    evals = []
    for ai, (atk, n_refs) in enumerate(attacks):
        n_used = cfg.n_shadow - 1 if n_refs is None else n_refs
        label = atk.label if atk.name != "rmia" else (
            f"rmia-{'online' if atk.online else 'offline'}-{n_used}ref")
        evals.append(evaluate_scores(
            np.concatenate(pooled[ai]), y_all, world="classifier", method=atk.name, label=label,
            params={**atk.params(), "n_reference_models": n_used}, threat_model=atk.threat_model,
            doc_uri=atk.doc_uri, subset=f"digits pool, {cfg.n_targets} leave-one-out targets",
            config=cfg.eval))
    info = {"n_shadow": cfg.n_shadow, "n_targets": cfg.n_targets, "n_pool": int(len(pool_idx)),
            "n_population": int(len(pop_idx)), "train_accuracy": float(np.mean(train_acc)),
            "test_accuracy": float(np.mean(test_acc)), "shadow_train_s": round(t_train, 2),
            "attack_s": round(time.perf_counter() - t1, 2), "shadow_dir": str(shadow_dir),
            "trained_now": shadows.trained_now_, "rmia_a": rmia_a,
            "rmia_a_scan": a_scan}
    log(f"models: train accuracy {info['train_accuracy']:.3f}, test accuracy "
        f"{info['test_accuracy']:.3f}")
    return ClassifierMembershipAudit(evaluations=evals, record_ids=ids, info=info)


def run_classifier_membership_lab(out_dir: str | Path, cfg: ClassifierLabConfig = ClassifierLabConfig(),
                                  *, progress=null_progress, log=print,
                                  command: str = "leakaudit membership lab",
                                  formats=("jsonl", "html")) -> dict[str, Any]:
    """Run :func:`classifier_membership_experiment` and write ``report.jsonl``, ``summary.json``,
    the shadow models (``shadows/``) and ``report.html`` into ``out_dir`` (staged: all or nothing).
    Shadow models already in ``out_dir/shadows`` with the same setup are reused."""
    from leakaudit.report.records import staged_output
    from leakaudit.report.writer import write_report
    from leakaudit.versions import versions

    out_dir = Path(out_dir)
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    from leakaudit.runs.files import link_tree
    from leakaudit.runs.store import RunStore, jsonable, stage_key

    existing = out_dir / "shadows"
    with staged_output(out_dir, produces=("report.jsonl", "summary.json", "report.html"),
                       log=log) as stage:
        # the shadow models resume from the run store (each is saved when done)
        store = RunStore.for_output(out_dir, log=log)
        shadow_dir = store.workspace("membership-lab-shadows", stage_key(
            "membership-lab", jsonable(asdict(cfg))))
        if existing.is_dir() and not (shadow_dir / "manifest.json").exists():
            link_tree(existing, shadow_dir)  # an earlier run's models, without a run store
        audit = classifier_membership_experiment(shadow_dir, cfg, progress=progress, log=log)
        audit.info["shadow_dir"] = "shadows"
        summary = {"attack": "membership", "world": "classifier",
                   "wall_s": round(time.perf_counter() - t0, 1),
                   "results": {e.label: {"auc": e.metrics.auc,
                                         **{f"tpr@{r.fpr:g}": r.tpr for r in e.metrics.tpr_at}}
                               for e in audit.evaluations}}
        write_report(stage, run_record={
            **versions(), "command": command, "started": started, "seed": cfg.seed,
            "config": {"membership_lab": jsonable(asdict(cfg))}},
            records=audit.records(top_n=cfg.eval.top_n), summary=summary, formats=formats)
        link_tree(shadow_dir, stage / "shadows")
        for tmp in (stage / "shadows").rglob("*.tmp.npy"):
            tmp.unlink()
    return summary
