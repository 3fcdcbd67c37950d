"""Membership inference as an audit: an LLM on member / non-member documents, a classifier with
reference (shadow) models, or precomputed scores. TPR at low FPR with CIs, a model-free baseline
next to LLM results."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from leakaudit.audits.base import AuditEnv, AuditResult, base_run_record
from leakaudit.errors import InputError, LeakauditError
from leakaudit.metrics.roc import DEFAULT_FPRS


@dataclass(frozen=True)
class MembershipRequest:
    model: str | None = None
    members: Path | None = None
    nonmembers: Path | None = None
    references: tuple[str, ...] = ()
    k: float = 0.2
    #: the false-positive rates at which every result reports its TPR (with its interval)
    fprs: tuple[float, ...] = DEFAULT_FPRS
    #: LLM membership attacks by registry name (``leakaudit list attacks``); empty: the defaults
    attacks: tuple[str, ...] = ()
    scores: Path | None = None
    #: a classifier spec (``leakaudit.targets.classifier_formats``: a leakaudit folder, ``hf:``,
    #: ``onnx:``, ``skops:``, an http(s) URL) or a loaded Classifier (Python API)
    classifier: Any = None
    data: Path | None = None
    #: label-only attacks: queries per record (each attack's hard cap); 0 = do not run them
    budget: int = 100
    #: for an HTTP classifier: classes, the shape of one input ("64", "1x8x8") and what it answers
    n_classes: int | None = None
    input_shape: str | None = None
    answers: str = "probabilities"
    timeout: float = 30.0
    classifier_batch_size: int = 256  #: inputs per call to the classifier (batch_size is the LM's)
    epochs: int = 100
    rmia_a: float = 0.3
    shadows: int = 16
    text_field: str = "text"
    seed: int = 0
    batch_size: int = 16
    device: str = "cpu"
    show_pii: bool = False
    allow_download: bool = False
    #: an executor (``auto``/ADDRESS: Ray, or ``local``) for a classifier's reference models
    #: or an LLM's teacher-forced passes
    cluster: str | None = None


@dataclass
class Prepared:
    mode: str  #: "llm", "classifier" or "scores"
    data: dict[str, Any] = field(default_factory=dict)


#: the fewest members and non-members a membership evaluation takes (a ROC needs two of each)
MIN_PER_SIDE = 2


def check_sides(members, members_path, nonmembers, nonmembers_path) -> None:
    """At least :data:`MIN_PER_SIDE` member and non-member documents, or an :class:`InputError`
    naming the file that has too few."""
    for docs, side, path in ((members, "member", members_path),
                             (nonmembers, "non-member", nonmembers_path)):
        if len(docs) < MIN_PER_SIDE:
            raise InputError(f"{len(docs)} {side}{'' if len(docs) == 1 else 's'}; membership "
                             f"inference needs at least {MIN_PER_SIDE} members and "
                             f"{MIN_PER_SIDE} non-members", path=str(path))


def check_fprs(fprs) -> tuple[float, ...]:
    """The FPRs of ``--fpr``: each in (0, 1), at least one; sorted high to low, duplicates
    removed. An :class:`InputError` otherwise."""
    fprs = tuple(fprs)
    if not fprs:
        raise InputError("--fpr: give at least one false-positive rate")
    for f in fprs:
        if not (isinstance(f, (int, float)) and 0.0 < f < 1.0):
            raise InputError(f"--fpr must be in (0, 1) (a false-positive rate), got {f}")
    return tuple(sorted({float(f) for f in fprs}, reverse=True))


def eval_config(req: MembershipRequest):
    from leakaudit.attacks.membership.evaluate import EvalConfig

    return EvalConfig(fprs=check_fprs(req.fprs))


def prepare(req: MembershipRequest) -> Prepared:
    from leakaudit.targets.checks import check_device

    check_device(req.device)
    check_fprs(req.fprs)
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
    from leakaudit.attacks.membership.audit_llm import check_llm_attack_names

    check_llm_attack_names(req.attacks)
    mdocs = load_corpus(req.members, text_field=req.text_field)
    ndocs = load_corpus(req.nonmembers, text_field=req.text_field)
    check_sides(mdocs, req.members, ndocs, req.nonmembers)
    target = load_target(req.model, name="target", device=req.device, allow_download=req.allow_download)
    refs = load_references(req.references, device=req.device, allow_download=req.allow_download)
    refs, ref_source = default_references(target, refs, device=req.device,
                                          allow_download=req.allow_download)
    if "reference" in req.attacks and not refs:  # an adapter's base is the default reference
        raise InputError("the reference attack needs --reference MODEL (the target has no known "
                         "base model to use as its reference)")
    return Prepared("llm", {"target": target, "refs": refs, "mdocs": mdocs, "ndocs": ndocs,
                            "reference_source": ref_source})


def run(p: Prepared, req: MembershipRequest, env: AuditEnv) -> AuditResult:
    rr = base_run_record(env.command, req.seed, {"show_pii": req.show_pii,
                                                 "fprs": list(check_fprs(req.fprs))})
    return {"llm": _run_llm, "classifier": _run_classifier, "scores": _run_scores}[p.mode](p, req, env, rr)


def _run_llm(p: Prepared, req: MembershipRequest, env: AuditEnv, rr: dict) -> AuditResult:
    from leakaudit.attacks.membership.audit_llm import audit_llm_membership, select_llm_attacks
    from leakaudit.attacks.membership.evaluate import summarize
    from leakaudit.targets import describe_target

    target, refs, mdocs, ndocs = p.data["target"], p.data["refs"], p.data["mdocs"], p.data["ndocs"]
    rr["models"] = {"target": {"path": req.model, **describe_target(target, req.model)},
                    **{n: {"path": str(v.source), **describe_target(v)} for n, v in refs.items()}}
    rr["config"].update({"k": req.k, "members": str(req.members), "nonmembers": str(req.nonmembers)})
    if req.attacks:
        rr["config"]["attacks"] = list(req.attacks)
    rr["reference_source"] = p.data.get("reference_source")
    executor = None
    if req.cluster:
        from leakaudit.exec import get_executor

        executor = get_executor(req.cluster)
        rr["executor"] = executor.name
    try:
        audit = audit_llm_membership(
            target, refs, [d.text for d in mdocs], [d.text for d in ndocs], k=req.k,
            attacks=select_llm_attacks(req.attacks, list(refs), k=req.k),
            member_ids=[d.id for d in mdocs], nonmember_ids=[d.id for d in ndocs],
            batch_size=req.batch_size, show_pii=req.show_pii, progress=env.progress, log=env.log,
            cache_dir=env.store().cache_dir, executor=executor, eval_config=eval_config(req),
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

    data = req.data
    if data is None:
        raise LeakauditError("a classifier needs --data FILE.npz")
    if not data.is_file():
        raise InputError("no such file", path=str(data))
    if req.budget < 0:
        raise InputError(f"--budget must be >= 0 (label-only queries per record), got {req.budget}")
    target = load_classifier_for(req)
    try:
        with np.load(data, allow_pickle=False) as z:
            arrs = {k: z[k] for k in z.files}
    except (ValueError, OSError, EOFError) as e:
        raise InputError(f"not a plain numeric .npz ({e or 'empty file'})", path=str(data)) from None
    need = ["x_members", "y_members", "x_nonmembers", "y_nonmembers"]
    missing = [k for k in need if k not in arrs]
    if missing:
        raise InputError(f"missing arrays: {', '.join(missing)}", path=str(data))
    check_xy_arrays(arrs, data, text=not target.capabilities.float_inputs)
    for name in ("x_members", "x_nonmembers"):
        if arrs[name].ndim < 1 or len(arrs[name]) < MIN_PER_SIDE:
            n = 0 if arrs[name].ndim < 1 else len(arrs[name])
            raise InputError(f"{name} holds {n} records; membership inference needs at least "
                             f"{MIN_PER_SIDE} members and {MIN_PER_SIDE} non-members",
                             path=str(data))
    n_classes = target.n_classes
    for name in ("y_members", "y_nonmembers", "y_population"):
        if name in arrs and len(arrs[name]) and arrs[name].max() >= n_classes:
            raise InputError(f"{name} holds label {int(arrs[name].max())}; the classifier has "
                             f"{n_classes} classes (0..{n_classes - 1})", path=str(data))
        if name in arrs:
            arrs[name] = arrs[name].astype(np.int64)
    if target.capabilities.float_inputs:
        width = int(np.prod(target.input_shape))
        for name in ("x_members", "x_nonmembers", "x_population"):
            if name not in arrs:
                continue
            a = arrs[name]
            if a.reshape(len(a), -1).shape[1] != width:
                raise InputError(f"{name} rows have {a.reshape(len(a), -1).shape[1]} values; the "
                                 f"classifier takes {width} ({'x'.join(map(str, target.input_shape))})",
                                 path=str(data))
            arrs[name] = a.reshape((len(a), *target.input_shape))
    return {"arrs": arrs, "spec": reference_spec(target), "target": target}


def load_classifier_for(req: MembershipRequest):
    """The classifier a request names: a Classifier object as is, else a spec loaded by
    :func:`leakaudit.targets.classifier_formats.load_classifier_target`."""
    from leakaudit.targets.classifier import Classifier
    from leakaudit.targets.classifier_formats import ClassifierOptions, load_classifier_target

    if isinstance(req.classifier, Classifier):
        return req.classifier
    shape = None
    if req.input_shape is not None:
        from leakaudit.audits.inversion import parse_shape

        shape = parse_shape(req.input_shape, "--input-shape")
    return load_classifier_target(str(req.classifier), options=ClassifierOptions(
        n_classes=req.n_classes, input_shape=shape, batch_size=req.classifier_batch_size,
        timeout_s=req.timeout, device=req.device, answers=req.answers))


def reference_spec(target):
    """The reference (shadow) models' architecture: the target's own for a leakaudit folder,
    else an MLP (256 hidden units) on the flattened input; None for a text classifier."""
    import numpy as np

    from leakaudit.training.classifier import MLPSpec

    if getattr(target, "mlp_spec", None) is not None:
        return target.mlp_spec
    if not target.capabilities.float_inputs:
        return None
    return MLPSpec(input_dim=int(np.prod(target.input_shape)), n_classes=target.n_classes,
                   hidden=(256,))


def check_xy_arrays(arrs: dict, path: Path, *, text: bool = False) -> None:
    """x_* arrays: finite numbers (``text``: strings); y_*: integer labels (never rounded);
    matching lengths."""
    import numpy as np

    for name in sorted(arrs):
        a = arrs[name]
        if name.startswith("x_") and text:
            if a.dtype.kind != "U" or a.ndim != 1:
                raise InputError(f"{name} must be a 1-D array of texts for a text classifier, got "
                                 f"dtype {a.dtype} shape {a.shape}", path=str(path))
        elif name.startswith("x_"):
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

    from leakaudit.attacks.membership.audit_clf import LabelOnlySettings, audit_classifier_membership
    from leakaudit.attacks.membership.evaluate import exposed_records, summarize
    from leakaudit.attacks.membership.shadow import TorchMLPTrainer
    from leakaudit.runs.files import link_tree
    from leakaudit.runs.store import stage_key
    from leakaudit.training.classifier import TrainConfig

    arrs, spec, target = p.data["arrs"], p.data["spec"], p.data["target"]
    has_pop = "x_population" in arrs and "y_population" in arrs
    n_shadow = req.shadows if has_pop else 0
    cfg = eval_config(req)
    if spec is None:  # a text classifier: no MLP reference models
        n_shadow = 0
    image = (getattr(target, "meta", None) or {}).get("image_shape")  # a leakaudit folder's
    label_only = LabelOnlySettings(budget=req.budget, seed=req.seed,
                                   image_shape=tuple(image) if image else None) if req.budget else None
    rr["config"].update({"classifier": str(getattr(target, "source", None) or req.classifier),
                         "data": str(req.data), "shadows": n_shadow, "epochs": req.epochs,
                         "rmia_a": req.rmia_a, "label_only_budget": req.budget,
                         "reference_architecture": spec.to_dict() if spec is not None else None})
    rr["models"] = {"target": {"spec": str(getattr(target, "source", None) or req.classifier),
                               "fingerprint": target.fingerprint(),
                               "capabilities": target.capabilities.to_dict()}}
    trainer = TorchMLPTrainer(spec, TrainConfig(epochs=req.epochs, seed=req.seed)) if n_shadow else None
    # shadow models resume from the run store (each is saved when done)
    shadow_dir = env.store().workspace("shadows", stage_key(
        "shadows", hashlib.sha256(req.data.read_bytes()).hexdigest(), trainer.describe(), n_shadow,
        req.seed)) if trainer is not None else None
    executor = None
    if req.cluster and n_shadow:
        from leakaudit.exec import get_executor

        executor = get_executor(req.cluster)
        rr["executor"] = executor.name
    try:
        audit = audit_classifier_membership(
            target, arrs["x_members"], arrs["y_members"], arrs["x_nonmembers"], arrs["y_nonmembers"],
            x_population=arrs.get("x_population"), y_population=arrs.get("y_population"),
            trainer=trainer, n_shadow=n_shadow, shadow_dir=shadow_dir, rmia_a=req.rmia_a,
            seed=req.seed, eval_config=cfg, label_only=label_only, progress=env.progress,
            log=env.log, executor=executor)
    finally:
        if executor is not None:
            executor.close()
    evals = audit.evaluations
    if not has_pop:
        env.log("warning: no x_population/y_population in --data: LOSS only; reference-model "
                "attacks (LiRA, RMIA) are typically far stronger at low FPR")
    ids = [f"member-{i}" for i in range(len(arrs["y_members"]))] + \
          [f"nonmember-{i}" for i in range(len(arrs["y_nonmembers"]))]
    pairs = [("membership", e.record()) for e in evals]
    pairs += [("membership", {"world": "classifier", **sk}) for sk in audit.skipped]
    for e in evals:
        pairs += [("membership_record", r) for r in exposed_records(e, ids=ids, texts=None, top_n=cfg.top_n)]
    summary = {**summarize(evals, world="classifier"), "skipped": audit.skipped,
               "label_only_queries": audit.queries}

    def link_shadows(stage: Path) -> None:
        if has_pop and shadow_dir is not None:
            link_tree(shadow_dir, stage / "shadows")
            for tmp in (stage / "shadows").rglob("*.tmp.npy"):
                tmp.unlink()

    return AuditResult(rr, pairs, summary, after_write=link_shadows)


def _run_scores(p: Prepared, req: MembershipRequest, env: AuditEnv, rr: dict) -> AuditResult:
    import numpy as np

    from leakaudit.attacks.membership.classifier import ClassifierLossAttack, ClassifierSignals
    from leakaudit.attacks.membership.evaluate import evaluate_scores, exposed_records, summarize

    po, path = p.data["outputs"], req.scores
    cfg = eval_config(req)
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
