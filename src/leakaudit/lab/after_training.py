"""Lab experiments for defenses applied after training: the MemFree output filter against its
bypasses, and the erasure of one data subject (unlearning and its verification).

The data subject is one of the lab corpus's recurring customers (``recurring_subjects`` in the
manifest): a person named, with their e-mail and phone, in at least 8 training tickets and
e-mails, as a frequent customer or a chronic patient is in a real corpus. Their forget set is
every training document that names them, found by searching the corpus for their name and
e-mail, as an operator answering a GDPR request would. (A lab without such a subject falls back
to the owner of a canary secret copied into several documents.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from leakaudit.defenses.unlearning import shard_of


#: the fewest training documents of the data subject whose erasure the lab verifies: with fewer,
#: the forget-vs-never-seen AUC's bootstrap has almost nothing to resample on the forget side
MIN_SUBJECT_DOCS = 8


def pick_subject(manifest: Mapping[str, Any], train: Sequence[Mapping[str, str]], *,
                 n_shards: int, max_repeats: int, min_docs: int = MIN_SUBJECT_DOCS
                 ) -> dict[str, Any]:
    """The data subject to erase: the recurring subject (``manifest["recurring_subjects"]``)
    with at least ``min_docs`` training documents whose documents touch the fewest of
    ``n_shards`` SISA shards (then: the fewest documents, the first id). Its forget set is every
    training document that contains the subject's name or e-mail. Returns ``{"subject",
    "forget_ids", "kind": "recurring"}``; a lab without such a subject: the canary owner of
    :func:`pick_canary_owner` (``kind "canary"``)."""
    best = None
    for subj in manifest.get("recurring_subjects") or []:
        keys = [subj[k] for k in ("name", "email") if subj.get(k)]
        docs = sorted(d["id"] for d in train if any(k in d["text"] for k in keys))
        if len(docs) < min_docs:
            continue
        rank = (len({shard_of(i, n_shards) for i in docs}), len(docs), subj["id"])
        if best is None or rank < best[0]:
            best = (rank, subj, docs)
    if best is None:
        return {**pick_canary_owner(manifest["canaries"], train, n_shards=n_shards,
                                    max_repeats=max_repeats), "kind": "canary"}
    _, subj, docs = best
    return {"subject": {k: subj[k] for k in ("id", "repeats")}, "forget_ids": docs,
            "kind": "recurring"}


def pick_canary_owner(canaries: Sequence[Mapping[str, Any]], train: Sequence[Mapping[str, str]],
                      *, n_shards: int, max_repeats: int) -> dict[str, Any]:
    """The canary (data subject) with the most repeats, at most ``max_repeats``, whose documents
    all sit in one SISA shard (so its deletion retrains one shard; the lab reports how many
    shards a deletion touches in general). Its forget set is every training document containing
    the secret."""
    best = None
    for c in canaries:
        if c["repeats"] > max_repeats:
            continue
        docs = [d["id"] for d in train if c["secret"] in d["text"]]
        if len({shard_of(i, n_shards) for i in docs}) == 1 and \
                (best is None or c["repeats"] > best[0]["repeats"]):
            best = (c, docs)
    if best is None:
        raise ValueError(f"no canary with <= {max_repeats} repeats lies in one of {n_shards} shards")
    c, docs = best
    return {"canary": c, "forget_ids": sorted(docs)}


def lab_output_filter(target_dir: Path, corpus, out: Path, *, n: int, fp_rate: float, config,
                      command: str = "leakaudit lab after-training", log=print) -> dict:
    """Run the output-filter evaluation on a lab target and its corpus (report in ``out``)."""
    from leakaudit.audits.output_filter import run_output_filter
    from leakaudit.targets import load_target

    model = load_target(target_dir, name="target")
    return run_output_filter(model=model, docs=corpus.train, canaries=corpus.canaries, n=n,
                             fp_rate=fp_rate, config=config, out=out,
                             repeated=[b["text"] for b in corpus.boilerplate],
                             run_extra={"models": {"target": {"path": str(target_dir)}},
                                        "corpus": {"n_docs": len(corpus.train)}},
                             command=command, log=log)



UNLEARN_METHODS = ("ga", "gd", "npo", "oracle", "sisa")


def run_after_training_lab(lab: str | Path, *, log=print, **kwargs) -> dict:
    """:func:`_after_training` holding the lab folder's lock (one run at a time into a lab)."""
    from leakaudit.runs.lock import output_lock
    from leakaudit.runs.staged import check_output_location

    check_output_location(lab)
    with output_lock(lab, log=log):
        return _after_training(lab, log=log, **kwargs)


def _after_training(lab: str | Path, *, seed: int = 0, n: int = 8, fp_rate: float = 1e-4,
                           filter_docs: int = 30, steps: int = 15, lr: float = 5e-4,
                           shards: int = 2, max_repeats: int = 8, n_retain: int = 40,
                           exposure_references: int = 50, finetune_docs: int = 30,
                           command: str = "leakaudit lab after-training", log=print) -> dict:
    """The defenses that act after training, on a finished lab (``leakaudit lab --out LAB``):

    1. the MemFree output filter over the training corpus's ``n``-grams on the lab target, with
       its bypasses (``LAB/output-filter``);
    2. the erasure of one data subject (picked by :func:`pick_subject`): GA, GD
       and NPO next to the retrained oracle and SISA (``LAB/erasure/unlearn``), verified with
       membership, extraction, exposure, utility, cost and relapse under quantization and a
       short fine-tune (``LAB/erasure/report``).

    A rerun reuses a finished unlearning step whose forget set, methods and settings are
    unchanged (``unlearn.json``), and redoes the rest."""
    import json

    from leakaudit.corpus.load import load_corpus
    from leakaudit.audits.erasure import VerifyConfig, run_verify
    from leakaudit.audits.output_filter import BypassConfig
    from leakaudit.audits.unlearn import run_unlearn
    from leakaudit.defenses.unlearning import training_spec
    from leakaudit.errors import InputError
    from leakaudit.lab.corpus import LabCorpus
    from leakaudit.runs.staged import check_output_location

    lab = Path(lab)
    need = ("corpus/train.jsonl", "corpus/heldout.jsonl", "corpus/manifest.json",
            "models/target/config.json", "models/target/leakaudit_training.json",
            "models/reference/config.json")
    missing = [r for r in need if not (lab / r).is_file()]
    if missing:
        raise InputError(f"not a finished lab (missing {missing[0]}): run `leakaudit lab --out "
                         f"{lab}` first", path=str(lab))
    for sub in ("output-filter", "erasure/report"):  # staged folders of their own
        check_output_location(lab / sub, produces=("report.jsonl", "report.html", "summary.json"))
    unl = lab / "erasure" / "unlearn"
    meta_path = unl / "unlearn.json"
    marker = unl / ".leakaudit-after-training"  # written first: a killed run's folder is ours
    if unl.is_dir() and any(unl.iterdir()) and not marker.is_file() and not (
            meta_path.is_file() and "lab_settings" in meta_path.read_text()):
        raise InputError("exists and was not written by leakaudit lab after-training; move it "
                         "away or choose another lab folder", path=str(unl))
    corpus = LabCorpus.read(lab / "corpus")
    target = lab / "models" / "target"

    log(f"output filter: MemFree over the training {n}-grams, with its bypasses")
    of = lab_output_filter(target, corpus, lab / "output-filter", n=n, fp_rate=fp_rate,
                           config=BypassConfig(n_docs=filter_docs, prefix_tokens=32,
                                               suffix_tokens=32, seed=seed), command=command, log=log)

    subj = pick_subject(corpus.manifest, corpus.train, n_shards=shards, max_repeats=max_repeats)
    if subj["kind"] == "recurring":
        log(f"erasure: data subject {subj['subject']['id']}, named in "
            f"{len(subj['forget_ids'])} training documents")
    else:
        log(f"erasure: no recurring data subject with >= {MIN_SUBJECT_DOCS} documents in this "
            f"lab; the owner of one {subj['canary']['kind']} canary, "
            f"{len(subj['forget_ids'])} training documents (too few for a CI over both sides)")
    settings = {"forget_ids": subj["forget_ids"], "methods": list(UNLEARN_METHODS),
                "steps": steps, "lr": lr, "shards": shards, "seed": seed}
    prev = json.loads(meta_path.read_text()) if meta_path.is_file() else None
    if prev is not None and prev.get("lab_settings") == settings:
        log(f"run store: reused finished stage unlearn ({unl})")
    else:
        from leakaudit.runs.atomic import atomic_write_text

        unl.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write_text(marker, "written by leakaudit lab after-training\n")
        spec = training_spec(target)
        docs = load_corpus(lab / "corpus" / "train.jsonl")
        res = run_unlearn(model=target, docs=docs, forget_ids=subj["forget_ids"],
                          methods=list(UNLEARN_METHODS), out=unl, steps=steps, lr=lr,
                          batch_size=8, beta=0.1, retain_weight=1.0, shards=shards,
                          train_spec=spec, seed=seed, log=log)
        res.update(corpus=str(lab / "corpus" / "train.jsonl"), text_field="text",
                   command=command, lab_settings=settings)
        meta_path.write_text(json.dumps(res, indent=1, default=str))
    summary = run_verify(unl, heldout=lab / "corpus" / "heldout.jsonl",
                         reference=lab / "models" / "reference",
                         manifest=lab / "corpus" / "manifest.json", relapse=["ga", "gd", "npo"],
                         out=lab / "erasure" / "report",
                         cfg=VerifyConfig(n_retain=n_retain, exposure_references=exposure_references,
                                          finetune_docs=finetune_docs, seed=seed),
                         command=command, log=log)
    return {"output_filter": of, "subject": subj, "erasure": summary}
