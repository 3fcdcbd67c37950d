"""Membership inference as an audit: an LLM on member / non-member documents, a classifier with
reference (shadow) models, or precomputed scores. TPR at low FPR with CIs, a model-free baseline
next to LLM results."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from leakaudit.audits.base import AuditEnv, AuditResult, base_run_record
from leakaudit.errors import InputError, LeakauditError


@dataclass(frozen=True)
class MembershipRequest:
    model: str | None = None
    members: Path | None = None
    nonmembers: Path | None = None
    references: tuple[str, ...] = ()
    k: float = 0.2
    scores: Path | None = None
    classifier: Path | None = None
    data: Path | None = None
    epochs: int = 100
    rmia_a: float = 0.3
    shadows: int = 16
    text_field: str = "text"
    seed: int = 0
    batch_size: int = 16
    device: str = "cpu"
    show_pii: bool = False
    allow_download: bool = False
    #: an executor (``auto``/ADDRESS: Ray, or ``local``) for --classifier's reference models
    #: or --model's teacher-forced passes
    cluster: str | None = None


@dataclass
class Prepared:
    mode: str  #: "llm", "classifier" or "scores"
    data: dict[str, Any] = field(default_factory=dict)


def prepare(req: MembershipRequest) -> Prepared:
    from leakaudit.targets.checks import check_device

    check_device(req.device)
    if req.cluster:
        from leakaudit.exec.factory import check_cluster, check_cluster_models

        check_cluster(req.cluster)
        if req.model is not None:
            check_cluster_models((req.model, *req.references))
    if not 0.0 < req.k <= 1.0:
        raise InputError(f"--k must be in (0, 1] (a fraction of the tokens), got {req.k}")
    if req.scores is not None:
        from leakaudit.targets.scores_file import load_outputs

        po = load_outputs(req.scores)
        n_mem = int(po.member.sum())
        if min(n_mem, len(po.member) - n_mem) < 2:
            raise InputError(f"needs at least 2 members and 2 non-members to measure anything (got "
                             f"{n_mem} members, {len(po.member) - n_mem} non-members)", path=str(req.scores))
        return Prepared("scores", {"outputs": po})
    if req.classifier is not None:
        return Prepared("classifier", _prepare_classifier(req))
    from leakaudit.corpus.load import load_corpus
    from leakaudit.targets import load_target

    from leakaudit.audits.extraction import default_references, load_references

    if req.members is None or req.nonmembers is None:
        raise LeakauditError("--model needs --members FILE and --nonmembers FILE")
    mdocs = load_corpus(req.members, text_field=req.text_field)
    ndocs = load_corpus(req.nonmembers, text_field=req.text_field)
    target = load_target(req.model, name="target", device=req.device, allow_download=req.allow_download)
    refs = load_references(req.references, device=req.device, allow_download=req.allow_download)
    refs, ref_source = default_references(target, refs, device=req.device,
                                          allow_download=req.allow_download)
    return Prepared("llm", {"target": target, "refs": refs, "mdocs": mdocs, "ndocs": ndocs,
                            "reference_source": ref_source})


def run(p: Prepared, req: MembershipRequest, env: AuditEnv) -> AuditResult:
    rr = base_run_record(env.command, req.seed, {"show_pii": req.show_pii})
    return {"llm": _run_llm, "classifier": _run_classifier, "scores": _run_scores}[p.mode](p, req, env, rr)


def _run_llm(p: Prepared, req: MembershipRequest, env: AuditEnv, rr: dict) -> AuditResult:
    from leakaudit.attacks.membership.audit_llm import audit_llm_membership
    from leakaudit.attacks.membership.evaluate import summarize
    from leakaudit.targets import describe_target

    target, refs, mdocs, ndocs = p.data["target"], p.data["refs"], p.data["mdocs"], p.data["ndocs"]
    rr["models"] = {"target": {"path": req.model, **describe_target(target, req.model)},
                    **{n: {"path": str(v.source), **describe_target(v)} for n, v in refs.items()}}
    rr["config"].update({"k": req.k, "members": str(req.members), "nonmembers": str(req.nonmembers)})
    rr["reference_source"] = p.data.get("reference_source")
    executor = None
    if req.cluster:
        from leakaudit.exec import get_executor

        executor = get_executor(req.cluster)
        rr["executor"] = executor.name
    try:
        audit = audit_llm_membership(
            target, refs, [d.text for d in mdocs], [d.text for d in ndocs], k=req.k,
            member_ids=[d.id for d in mdocs], nonmember_ids=[d.id for d in ndocs],
            batch_size=req.batch_size, show_pii=req.show_pii, progress=env.progress, log=env.log,
            cache_dir=env.store().cache_dir, executor=executor,
            executor_device="auto" if req.device == "cpu" else req.device)
    finally:
        if executor is not None:
            env.log(f"executor {executor.name}: {executor.stats['run']} shards run, "
                    f"{executor.stats['reused']} reused")
            executor.close()
    summary = {**summarize(audit.evaluations, world="llm"), "cost": audit.cost,
               "warnings": audit.warnings, "skipped": audit.skipped,
               "blind_baseline_auc": next(iter(audit.baseline.values())).metrics.auc}
    return AuditResult(rr, audit.records(), summary)


def _prepare_classifier(req: MembershipRequest) -> dict[str, Any]:
    import numpy as np

    from leakaudit.targets.classifier import TorchClassifier
    from leakaudit.training.classifier import load_classifier

    data = req.data
    if data is None:
        raise LeakauditError("--classifier needs --data FILE.npz")
    if not data.is_file():
        raise InputError("no such file", path=str(data))
    try:
        with np.load(data, allow_pickle=False) as z:
            arrs = {k: z[k] for k in z.files}
    except (ValueError, OSError) as e:
        raise InputError(f"not a plain numeric .npz ({e})", path=str(data)) from None
    need = ["x_members", "y_members", "x_nonmembers", "y_nonmembers"]
    missing = [k for k in need if k not in arrs]
    if missing:
        raise InputError(f"missing arrays: {', '.join(missing)}", path=str(data))
    check_xy_arrays(arrs, data)
    module, spec, _ = load_classifier(req.classifier)
    for name in ("y_members", "y_nonmembers", "y_population"):
        if name in arrs and len(arrs[name]) and arrs[name].max() >= spec.n_classes:
            raise InputError(f"{name} holds label {int(arrs[name].max())}; the classifier has "
                             f"{spec.n_classes} classes (0..{spec.n_classes - 1})", path=str(data))
        if name in arrs:
            arrs[name] = arrs[name].astype(np.int64)
    for name in ("x_members", "x_nonmembers", "x_population"):
        if name in arrs and arrs[name].reshape(len(arrs[name]), -1).shape[1] != spec.input_dim:
            raise InputError(f"{name} rows have {arrs[name].reshape(len(arrs[name]), -1).shape[1]} "
                             f"values; the classifier takes {spec.input_dim}", path=str(data))
    target = TorchClassifier(module, n_classes=spec.n_classes, input_shape=(spec.input_dim,))
    return {"arrs": arrs, "spec": spec, "target": target}


def check_xy_arrays(arrs: dict, path: Path) -> None:
    """x_* arrays: finite numbers; y_*: integer labels (never rounded); matching lengths."""
    import numpy as np

    for name in sorted(arrs):
        a = arrs[name]
        if name.startswith("x_"):
            if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
                raise InputError(f"{name} must hold numbers, got dtype {a.dtype}", path=str(path))
            bad = int(np.size(a) - np.isfinite(a).sum())
            if bad:
                raise InputError(f"{name} holds {bad} NaN or infinite values", path=str(path))
        elif name.startswith("y_"):
            if a.ndim != 1:
                raise InputError(f"{name} must be 1-D labels, got shape {a.shape}", path=str(path))
            if not np.issubdtype(a.dtype, np.integer):
                if not np.issubdtype(a.dtype, np.floating) or not np.all(np.isfinite(a)) \
                        or not np.all(a == np.round(a)):
                    raise InputError(f"{name} must hold integer class labels, got {a.dtype} values "
                                     "that are not whole numbers", path=str(path))
            if len(a) and a.min() < 0:
                raise InputError(f"{name} holds negative class labels", path=str(path))
            x = arrs.get("x_" + name[2:])
            if x is not None and len(x) != len(a):
                raise InputError(f"x_{name[2:]} has {len(x)} rows but {name} has {len(a)}",
                                 path=str(path))


def _run_classifier(p: Prepared, req: MembershipRequest, env: AuditEnv, rr: dict) -> AuditResult:
    import hashlib

    from leakaudit.attacks.membership.audit_clf import audit_classifier_membership
    from leakaudit.attacks.membership.evaluate import EvalConfig, exposed_records, summarize
    from leakaudit.attacks.membership.shadow import TorchMLPTrainer
    from leakaudit.runs.files import link_tree
    from leakaudit.runs.store import stage_key
    from leakaudit.training.classifier import TrainConfig

    arrs, spec, target = p.data["arrs"], p.data["spec"], p.data["target"]
    has_pop = "x_population" in arrs and "y_population" in arrs
    n_shadow = req.shadows if has_pop else 0
    cfg = EvalConfig()
    rr["config"].update({"classifier": str(req.classifier), "data": str(req.data), "shadows": n_shadow,
                         "epochs": req.epochs, "rmia_a": req.rmia_a})
    trainer = TorchMLPTrainer(spec, TrainConfig(epochs=req.epochs, seed=req.seed))
    # shadow models resume from the run store (each is saved when done)
    shadow_dir = env.store().workspace("shadows", stage_key(
        "shadows", hashlib.sha256(req.data.read_bytes()).hexdigest(), trainer.describe(), n_shadow, req.seed))
    executor = None
    if req.cluster and n_shadow:
        from leakaudit.exec import get_executor

        executor = get_executor(req.cluster)
        rr["executor"] = executor.name
    try:
        evals = audit_classifier_membership(
            target, arrs["x_members"], arrs["y_members"], arrs["x_nonmembers"], arrs["y_nonmembers"],
            x_population=arrs.get("x_population"), y_population=arrs.get("y_population"),
            trainer=trainer, n_shadow=n_shadow, shadow_dir=shadow_dir, rmia_a=req.rmia_a,
            seed=req.seed, eval_config=cfg, progress=env.progress, log=env.log, executor=executor)
    finally:
        if executor is not None:
            executor.close()
    if not has_pop:
        env.log("warning: no x_population/y_population in --data: LOSS only; reference-model "
                "attacks (LiRA, RMIA) are typically far stronger at low FPR")
    ids = [f"member-{i}" for i in range(len(arrs["y_members"]))] + \
          [f"nonmember-{i}" for i in range(len(arrs["y_nonmembers"]))]
    pairs = [("membership", e.record()) for e in evals]
    for e in evals:
        pairs += [("membership_record", r) for r in exposed_records(e, ids=ids, texts=None, top_n=cfg.top_n)]

    def link_shadows(stage: Path) -> None:
        if has_pop:
            link_tree(shadow_dir, stage / "shadows")
            for tmp in (stage / "shadows").rglob("*.tmp.npy"):
                tmp.unlink()

    return AuditResult(rr, pairs, summarize(evals, world="classifier"), after_write=link_shadows)


def _run_scores(p: Prepared, req: MembershipRequest, env: AuditEnv, rr: dict) -> AuditResult:
    import numpy as np

    from leakaudit.attacks.membership.classifier import ClassifierLossAttack, ClassifierSignals
    from leakaudit.attacks.membership.evaluate import (EvalConfig, evaluate_scores, exposed_records,
                                                       summarize)

    po, path = p.data["outputs"], req.scores
    cfg = EvalConfig()
    if po.score is not None:
        ev = evaluate_scores(po.score, po.member, world="precomputed", method="precomputed",
                             label="precomputed score", params={"file": str(path)},
                             threat_model="scores computed outside leakaudit",
                             doc_uri="https://arxiv.org/abs/2112.03570", subset=path.name, config=cfg)
    else:
        atk = ClassifierLossAttack()
        s = atk.score(ClassifierSignals(y=po.label, target_probs=po.probs))
        ev = evaluate_scores(s, po.member, world="classifier", method=atk.name, label=atk.label,
                             params={}, threat_model=atk.threat_model, doc_uri=atk.doc_uri,
                             subset=path.name, config=cfg)
    rr["config"].update({"scores": str(path)})
    summary = summarize([ev], world=ev.world)
    both = set(np.asarray(po.ids)[po.member == 1]) & set(np.asarray(po.ids)[po.member == 0])
    if both:
        msg = (f"{len(both)} id(s) appear as both member and non-member (e.g. {sorted(both)[0]!r}): "
               "the labels contradict each other there")
        env.log(f"warning: {msg}")
        summary.setdefault("warnings", []).append(msg)
    pairs = [("membership", ev.record())] + [("membership_record", r) for r in
                                            exposed_records(ev, ids=po.ids, texts=None, top_n=cfg.top_n)]
    return AuditResult(rr, pairs, summary)
