"""The after-training lab erases a real data subject: one of the lab corpus's recurring customers,
named in at least 8 training documents (fast: a generated corpus, no training)."""

from __future__ import annotations

import pytest

from leakaudit.lab.after_training import MIN_SUBJECT_DOCS, pick_subject
from leakaudit.lab.corpus import LabCorpusConfig, generate_lab_corpus


@pytest.fixture(scope="module")
def corpus():
    from leakaudit.lab.run import LabConfig

    q = LabConfig.quick()  # the quick lab's corpus: two customers in 8 documents each
    return generate_lab_corpus(LabCorpusConfig(
        n_docs=q.n_docs, n_heldout=q.n_heldout, n_reference=q.n_reference,
        canary_repeats=q.canary_repeats, boilerplate_repeats=q.boilerplate_repeats,
        subject_repeats=q.subject_repeats, subjects_per_repeat=q.subjects_per_repeat, seed=0))


def test_the_forget_set_is_one_recurring_subjects_documents(corpus):
    man = corpus.manifest
    subjects = {s["id"]: s for s in man["recurring_subjects"]}
    assert len(subjects) == 2 and all(s["repeats"] == 8 for s in subjects.values())
    subj = pick_subject(man, corpus.train, n_shards=2, max_repeats=8)
    assert subj["kind"] == "recurring" and MIN_SUBJECT_DOCS == 8
    s = subjects[subj["subject"]["id"]]
    # the corpus search by name and e-mail finds exactly the manifest's documents of the subject
    assert subj["forget_ids"] == sorted(s["doc_ids"]) and len(subj["forget_ids"]) == 8
    # the subject with the fewest shards touched is chosen
    from leakaudit.defenses.unlearning import shard_of

    touched = {k: len({shard_of(i, 2) for i in v["doc_ids"]}) for k, v in subjects.items()}
    assert touched[s["id"]] == min(touched.values())
    # the subject's own identifiers become the erasure's secrets, one prompt per document
    from types import SimpleNamespace

    from leakaudit.audits.erasure import subject_secrets

    docs = [SimpleNamespace(id=d["id"], text=d["text"]) for d in corpus.train]
    sec = subject_secrets(man, docs, set(subj["forget_ids"]))
    assert len(sec) == 8 and {x["secret"] for x in sec} <= {s["phone"], s["email"]}
    assert all(x["prefix"] and x["secret"] not in x["prefix"] for x in sec)
    # negative control: another subject's documents are not "all forgotten"
    assert subject_secrets(man, docs, set(subj["forget_ids"][:-1])) == []


def test_a_lab_without_a_recurring_subject_falls_back_to_a_canary_owner(corpus):
    man = {**corpus.manifest, "recurring_subjects": []}
    subj = pick_subject(man, corpus.train, n_shards=2, max_repeats=8)
    assert subj["kind"] == "canary" and subj["canary"]["repeats"] <= 8
    # a subject with fewer documents than MIN_SUBJECT_DOCS is never picked
    few = pick_subject(corpus.manifest, corpus.train, n_shards=2, max_repeats=8, min_docs=9)
    assert few["kind"] == "canary"
