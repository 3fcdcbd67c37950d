"""``audit_llm_membership``: every LLM membership attack on one set of members and non-members,
from 2 + R forward passes per document, with the model-free baseline next to every result."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from leakaudit.attacks.membership.base import MembershipAttack
from leakaudit.attacks.membership.blind import DOC_URI as BLIND_URI
from leakaudit.attacks.membership.blind import BlindBaselineConfig, blind_baseline_scores
from leakaudit.attacks.membership.evaluate import (EvalConfig, MembershipEvaluation,
                                                   evaluate_scores, exposed_records)
from leakaudit.attacks.membership.llm import (LossAttack, LowercaseAttack, MinKAttack,
                                              MinKPlusPlusAttack, ReferenceAttack, ZlibAttack)
from leakaudit.progress import null_progress
from leakaudit.signals.membership_lm import LMSignals, compute_lm_signals

#: How close (in AUC) the blind baseline may come to an attack before the result is flagged.
BLIND_MARGIN = 0.05


def default_llm_attacks(references: Sequence[str], *, k: float) -> list[MembershipAttack]:
    """LOSS, zlib, lowercase, one reference ratio per reference model, Min-K% and Min-K%++ at ``k``."""
    return [LossAttack(), ZlibAttack(), LowercaseAttack(),
            *[ReferenceAttack(reference=r) for r in references],
            MinKAttack(k=k), MinKPlusPlusAttack(k=k)]


def select_llm_attacks(names: Sequence[str], references: Sequence[str], *,
                       k: float) -> list[MembershipAttack]:
    """The LLM membership attacks ``names`` names (all the defaults when empty): a default
    attack as :func:`default_llm_attacks` builds it, any other registered one (a plugin's) built
    with no arguments. Unknown names raise :class:`leakaudit.registry.UnknownName`."""
    from leakaudit.attacks.membership.base import MEMBERSHIP_ATTACKS

    defaults = default_llm_attacks(references, k=k)
    if not names:
        return defaults
    check_llm_attack_names(names)
    chosen = [a for a in defaults if a.name in names]
    have = {a.name for a in defaults}
    return chosen + [MEMBERSHIP_ATTACKS.get(n)() for n in names if n not in have]


def check_llm_attack_names(names: Sequence[str]) -> None:
    """Every name is a registered LLM membership attack (cheap: reads the registry only)."""
    from leakaudit.registry import entry

    for n in names:
        entry("attacks", n, family="membership", world="llm")


@dataclass
class LLMMembershipAudit:
    evaluations: list[MembershipEvaluation]
    baseline: dict[str, MembershipEvaluation]  #: per subset
    exposed: list[dict[str, Any]]
    signals: LMSignals = field(repr=False)
    cost: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    #: attacks not run because a model lacks a capability they need (one record each, with it)
    skipped: list[dict[str, Any]] = field(default_factory=list)

    def records(self) -> list[tuple[str, dict[str, Any]]]:
        """``(entry_type, record)`` pairs for a report: one ``membership`` per evaluation (the
        baselines included, ``method == "blind_baseline"``), one ``membership`` record with
        ``skipped: true`` per skipped attack, then the ``membership_record`` rows."""
        out = [("membership", {**b.record(), "baseline": True}) for b in self.baseline.values()]
        out += [("membership", {**e.record(), "cost": self.cost}) for e in self.evaluations]
        out += [("membership", {"world": "llm", **s}) for s in self.skipped]
        out += [("membership_record", r) for r in self.exposed]
        return out

    def get(self, method: str, subset: str | None = None) -> MembershipEvaluation:
        """The evaluation of ``method`` (name or label) on ``subset`` (default: all members)."""
        subset = subset or self.evaluations[0].subset
        for e in self.evaluations:
            if (e.method == method or e.label == method) and e.subset == subset:
                return e
        raise KeyError(f"no evaluation of {method!r} on {subset!r}")


def audit_llm_membership(
    target,
    references: dict,
    members: Sequence[str],
    nonmembers: Sequence[str],
    *,
    k: float = 0.2,
    attacks: Sequence[MembershipAttack] | None = None,
    member_groups: dict[str, Sequence[int]] | None = None,
    member_ids: Sequence[str] | None = None,
    nonmember_ids: Sequence[str] | None = None,
    eval_config: EvalConfig = EvalConfig(),
    blind: BlindBaselineConfig = BlindBaselineConfig(),
    cache_dir: str | Path | None = None,
    batch_size: int = 16,
    show_pii: bool = False,
    subset_name: str = "all",
    blind_groups: Sequence[str] | None = None,
    progress=null_progress,
    log=print,
    executor=None,
    executor_device: str = "auto",
) -> LLMMembershipAudit:
    """Run the LLM membership attacks on ``members`` (label 1) vs ``nonmembers`` (label 0).

    ``references``: name → reference LM (one ``reference`` attack each). ``member_groups``:
    extra evaluations of a subset of members (indices into ``members``) against all non-members,
    e.g. ``{"canaries x>=16": [...]}``; ``blind_groups``: one group label per text (members
    then non-members) for the blind baseline's grouped cross-validation; ``subset_name`` names the evaluation of all members. ``attacks`` defaults to :func:`default_llm_attacks` at ``k``.
    The blind baseline is evaluated on each subset, and a warning is attached to every attack
    whose AUC the baseline comes within ``BLIND_MARGIN`` of. Texts in the exposed-record table are
    PII-masked unless ``show_pii``. ``executor`` (:mod:`leakaudit.exec`): the teacher-forced
    passes run as its tasks in the same batches (workers load the models on ``executor_device``),
    so the results equal the in-process run's.
    """
    from leakaudit.corpus.pii import mask_text

    members, nonmembers = list(members), list(nonmembers)
    texts = members + nonmembers
    labels = np.r_[np.ones(len(members), np.int64), np.zeros(len(nonmembers), np.int64)]
    ids = ([str(x) for x in member_ids] if member_ids is not None
           else [f"member-{i}" for i in range(len(members))])
    ids += ([str(x) for x in nonmember_ids] if nonmember_ids is not None
            else [f"nonmember-{i}" for i in range(len(nonmembers))])
    attacks = list(attacks) if attacks is not None else default_llm_attacks(list(references), k=k)
    attacks, skipped = _servable(attacks, target, references)
    for sk in skipped:
        log(f"membership: skipped {sk['label']}: {sk['reason']}")
    if not attacks:
        from leakaudit.errors import CapabilityError

        raise CapabilityError("no membership attack can run on this target: "
                              + "; ".join(f"{s['label']}: {s['reason']}" for s in skipped))
    need_lower = any("lowercase" in a.needs for a in attacks)

    specs = None
    if executor is not None:
        specs = executor.extraction.model_specs(
            {"target": target, **{f"reference:{n}": m for n, m in references.items()}},
            device=executor_device)
    t0 = time.perf_counter()
    sig = compute_lm_signals(target, texts, references=references, lowercase=need_lower,
                             vocab_stats=any("vocab_stats" in a.needs for a in attacks),
                             cache_dir=cache_dir, batch_size=batch_size, progress=progress,
                             executor=executor, executor_specs=specs)
    t_signals = time.perf_counter() - t0
    subsets: dict[str, np.ndarray] = {subset_name: np.ones(len(texts), bool)}
    for name, idx in (member_groups or {}).items():
        keep = np.zeros(len(texts), bool)
        keep[np.asarray(list(idx), dtype=np.int64)] = True
        keep[len(members):] = True
        subsets[name] = keep

    t1 = time.perf_counter()
    baseline: dict[str, MembershipEvaluation] = {}
    bparams = {"ngram_range": list(blind.ngram_range), "C": blind.C, "n_splits": blind.n_splits,
               "seed": blind.seed, "grouped_cv": blind_groups is not None}
    for name, keep in subsets.items():
        sub_texts = [t for t, m in zip(texts, keep) if m]
        sub_groups = ([g for g, m in zip(blind_groups, keep) if m] if blind_groups is not None
                      else None)
        bs = blind_baseline_scores(sub_texts, labels[keep], config=blind, groups=sub_groups)
        baseline[name] = evaluate_scores(
            bs, labels[keep], world="llm", method="blind_baseline", label="blind_baseline",
            params=bparams, threat_model="no model: bag-of-n-grams logistic regression on the texts",
            doc_uri=BLIND_URI, subset=name, config=eval_config)
    t_blind = time.perf_counter() - t1

    warnings: list[str] = []
    overlap = set(members) & set(nonmembers)
    if overlap:
        msg = (f"{len(overlap)} text(s) are both members and non-members ({subset_name}): the "
               "labels contradict each other there, and no attack can separate them")
        warnings.append(msg)
        log(f"warning: {msg}")
    n_trunc = sum(1 for t in sig.target if getattr(t, "truncated", False))
    if n_trunc:
        msg = (f"{n_trunc} of {len(texts)} documents ({subset_name}) are longer than the model's "
               "context and were scored on their first tokens only")
        warnings.append(msg)
        log(f"warning: {msg}")
    evals: list[MembershipEvaluation] = []
    exposed: list[dict[str, Any]] = []
    masked = texts if show_pii else [mask_text(t) for t in texts]
    t2 = time.perf_counter()
    for atk in attacks:
        scores = atk.score(sig)
        for name, keep in subsets.items():
            ev = evaluate_scores(scores[keep], labels[keep], world="llm", method=atk.name,
                                 label=atk.label, params=atk.params(),
                                 threat_model=atk.threat_model, doc_uri=atk.doc_uri, subset=name,
                                 config=eval_config)
            b = baseline[name].metrics
            ev.extra["blind_baseline"] = {"auc": b.auc, "auc_ci": list(b.auc_ci),
                                          "tpr_at_fpr": [r.to_dict() for r in b.tpr_at]}
            if b.auc >= ev.metrics.auc - BLIND_MARGIN:
                msg = (f"{atk.label} on {name}: the model-free baseline reaches AUC {b.auc:.3f} "
                       f"vs the attack's {ev.metrics.auc:.3f}; members and non-members may differ "
                       f"in distribution, so this result need not show memorization")
                ev.warnings.append(msg)
                warnings.append(msg)
            evals.append(ev)
            sub_ids = [i for i, m in zip(ids, keep) if m]
            sub_texts = [t for t, m in zip(masked, keep) if m]
            exposed += exposed_records(ev, ids=sub_ids, texts=sub_texts, top_n=eval_config.top_n)
    for name, b in baseline.items():
        lo, hi = b.metrics.auc_ci
        if lo > 0.5:
            msg = (f"the model-free baseline separates members from non-members on {name} "
                   f"(AUC {b.metrics.auc:.3f}, CI [{lo:.3f}, {hi:.3f}]): the two sets differ in "
                   f"distribution (Das et al. 2024)")
            warnings.append(msg)
    for w in warnings:
        log(f"warning: {w}")
    n_docs = len(texts)
    # The record states what the audit costs: the documents each shared pass scores, whoever
    # computed them. How many the signal cache answered in *this* process (sig.forward_passes)
    # is an observation of the run, like a timing: it goes to the log, not into the record, so
    # a run resumed after a crash (its passes cached by the killed process) reports the same
    # records as an uninterrupted one.
    pass_docs = {name: len(texts) for name in sig.forward_passes}
    n_cached = sum(pass_docs.values()) - sum(sig.forward_passes.values())
    if n_cached:
        log(f"membership ({subset_name}): {n_cached} of {sum(pass_docs.values())} document "
            "passes answered by the signal cache")
    cost = {"n_documents": n_docs, "forward_passes": pass_docs,
            "passes_per_document": sum(pass_docs.values()) / max(1, n_docs),
            "signals_s": round(t_signals, 3), "blind_baseline_s": round(t_blind, 3),
            "attacks_s": round(time.perf_counter() - t2, 3), "n_attacks": len(attacks)}
    return LLMMembershipAudit(evaluations=evals, baseline=baseline, exposed=exposed, signals=sig,
                              cost=cost, warnings=warnings, skipped=skipped)


def _servable(attacks: Sequence[MembershipAttack], target, references: dict
              ) -> tuple[list[MembershipAttack], list[dict[str, Any]]]:
    """Split ``attacks`` into those the target (and, for a reference attack, its reference model)
    can serve and skip records, each naming the capability missing. One missing capability never
    stops the audit."""
    from leakaudit.targets.base import skip_record

    run, skipped = [], []
    for atk in attacks:
        needs = tuple(atk.capabilities)
        models = [("target", target)]
        ref = getattr(atk, "reference", None)
        if ref is not None and ref in references:
            models.append((f"reference model {ref!r}", references[ref]))
        rec = None
        for who, m in models:
            caps = getattr(m, "capabilities", None)
            if caps is not None and needs and caps.missing(*needs):
                rec = skip_record(atk.name, needs, caps, target=who)
                break
        if rec is None:
            run.append(atk)
        else:
            skipped.append({**rec, "label": atk.label, "method": atk.name,
                            "doc_uri": atk.doc_uri, "threat_model": atk.threat_model})
    return run, skipped
