"""Membership inference on a corpus whose insertions are known: the LLM lab's two audits.

A corpus with ground truth (the lab's :class:`~leakaudit.lab.corpus.LabCorpus`, or anything with
``train`` and ``heldout`` document lists and a ``manifest`` of inserted canaries and boilerplate)
gives non-members of the same generator: held-out documents for the training documents (with the
insertions removed, :func:`strip_insertions`), and same-template secrets for each canary. The lab
and the defenses battery (:mod:`leakaudit.audits.compare`) both run it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from leakaudit.attacks.membership.evaluate import EvalConfig
from leakaudit.progress import null_progress


@dataclass
class LLMLabMembership:
    """The two membership audits of the LLM lab (see :func:`llm_lab_membership`)."""

    documents: Any  # LLMMembershipAudit
    canaries: Any  # LLMMembershipAudit

    def records(self) -> list[tuple[str, dict[str, Any]]]:
        return self.documents.records() + self.canaries.records()

    def summary(self) -> dict[str, Any]:
        """Per audit and subset: the blind baseline's AUC and every attack's AUC and TPR at 1%
        FPR (None where 1% FPR is not resolvable), for the run's summary record."""
        out: dict[str, Any] = {}
        for name, audit in (("documents", self.documents), ("canaries", self.canaries)):
            subsets: dict[str, Any] = {}
            for e in audit.evaluations:
                t = e.metrics.tpr(0.01)
                subsets.setdefault(e.subset, {"attacks": {}})["attacks"][e.label] = {
                    "auc": e.metrics.auc, "tpr@0.01": t.tpr if t.resolvable else None}
            for sub, b in audit.baseline.items():
                subsets.setdefault(sub, {"attacks": {}})["blind_auc"] = b.metrics.auc
                subsets[sub]["blind_auc_ci"] = list(b.metrics.auc_ci)
            out[name] = subsets
        return out


def llm_lab_membership(target, references: dict, corpus, *, k: float, n_reference_secrets: int,
                       heavy_repeats: int, seed: int, eval_config: EvalConfig,
                       cache_dir=None, batch_size: int = 16, show_pii: bool = False,
                       progress=null_progress, log=print) -> LLMLabMembership:
    """Membership inference on the LLM lab, with non-members of the same generator.

    1. *documents*: every training document with its inserted canaries and boilerplate removed
       (:func:`strip_insertions`: what is left is the generator's output, which the model trained
       on) vs the held-out documents (same generator and genre schedule, never trained on).
       Insertions occur only in training documents, so keeping them would hand a model-free
       attacker a distribution difference; here the blind baseline must stay near chance.
    2. *canaries*: every canary sentence (members, grouped "canaries x>={heavy_repeats}") vs
       ``n_reference_secrets`` sentences per canary from the same template with secrets drawn
       from the same space (``canary_reference_secrets``), which no model ever saw. The blind
       baseline is cross-validated with each canary's sentences in one fold (grouped), so it
       cannot learn "this template's member is in another fold".

    Returns both audits; ``.records()`` gives the report pairs for
    ``write_extraction_report(..., extra_records=...)``.
    """
    import random

    from leakaudit.attacks.membership.audit_llm import audit_llm_membership
    from leakaudit.attacks.canaries.spaces import canary_reference_secrets

    manifest = corpus.manifest
    clean = strip_insertions(corpus.train, manifest)
    docs = audit_llm_membership(
        target, references, clean, [d["text"] for d in corpus.heldout], k=k,
        member_ids=[d["id"] for d in corpus.train], nonmember_ids=[d["id"] for d in corpus.heldout],
        eval_config=eval_config, cache_dir=cache_dir, batch_size=batch_size, show_pii=show_pii,
        progress=progress, log=log, subset_name="lab documents (no insertions) vs held-out")
    rng = random.Random(seed)
    canaries = list(manifest["canaries"])
    members = [c["sentence"] for c in canaries]
    heavy = [i for i, c in enumerate(canaries) if c["repeats"] >= heavy_repeats]
    non, non_ids = [], []
    for c in canaries:
        for j, s in enumerate(canary_reference_secrets(c, n_reference_secrets, rng)):
            non.append(c["template"].format(secret=s))
            non_ids.append(f"{c['id']}-ref{j}")
    can = audit_llm_membership(
        target, references, members, non, k=k,
        member_groups={f"canaries x>={heavy_repeats}": heavy} if heavy else None,
        member_ids=[f"{c['id']} (x{c['repeats']})" for c in canaries], nonmember_ids=non_ids,
        blind_groups=[c["id"] for c in canaries] + [i.rsplit("-ref", 1)[0] for i in non_ids],
        eval_config=eval_config, cache_dir=cache_dir, batch_size=batch_size, show_pii=show_pii,
        progress=progress, log=log, subset_name="canary sentences vs same-template secrets")
    return LLMLabMembership(documents=docs, canaries=can)


def strip_insertions(train_docs, manifest) -> list[str]:
    """Training documents with the lab's inserted canary sentences and boilerplate removed.

    Undoes ``lab.corpus``'s insertions exactly (a canary as " sentence", a "P.S." line or a
    paragraph; boilerplate as a leading or trailing paragraph) and checks that none is left.
    """
    from leakaudit.attacks.canaries.insert import _PS_PREFIX

    by_doc: dict[str, list[tuple[str, str]]] = {}
    for c in manifest["canaries"]:
        for d in c["doc_ids"]:
            by_doc.setdefault(d, []).append(("canary", c["sentence"]))
    for b in manifest.get("boilerplate", []):
        for d in b["doc_ids"]:
            by_doc.setdefault(d, []).append(("boilerplate", b["text"]))
    out = []
    for doc in train_docs:
        text = doc["text"]
        for kind, ins in by_doc.get(doc["id"], []):
            forms = ([f"\n\n{_PS_PREFIX}{ins}", f"\n\n{ins}", f" {ins}"] if kind == "canary"
                     else [f"{ins}\n\n", f"\n\n{ins}"])
            for f in forms:
                if f in text:
                    text = text.replace(f, "", 1)
                    break
            if ins in text:
                raise ValueError(f"could not remove an inserted {kind} from {doc['id']}")
        out.append(text)
    return out
