"""Tests for the lab's synthetic corpus: determinism and the ground truth the manifest claims."""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from leakaudit.lab.corpus import (
    BOILERPLATE_IDS,
    CANARY_KINDS,
    GENERATOR_VERSION,
    GENRES,
    MAX_WORDS,
    MIN_WORDS,
    LabCorpus,
    LabCorpusConfig,
    canary_reference_secrets,
    generate_lab_corpus,
    secret_space,
)
from leakaudit.lab.corpus import _CANARY_TEMPLATES, _insert_sentence  # noqa: PLC2701

FILES = ["heldout.jsonl", "manifest.json", "train.jsonl"]


@pytest.fixture(scope="module")
def corpus() -> LabCorpus:
    return generate_lab_corpus(LabCorpusConfig.quick())


def _digest(c: LabCorpus) -> str:
    payload = json.dumps([c.train, c.heldout, c.manifest], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def test_same_seed_is_identical_and_other_seed_differs(corpus: LabCorpus, tmp_path: Path) -> None:
    again = generate_lab_corpus(LabCorpusConfig.quick())
    assert again.train == corpus.train
    assert again.heldout == corpus.heldout
    assert again.manifest == corpus.manifest
    corpus.write(tmp_path / "a")
    again.write(tmp_path / "b")
    for name in ("train.jsonl", "heldout.jsonl", "manifest.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()

    other = generate_lab_corpus(LabCorpusConfig.quick(seed=1))
    assert other.train != corpus.train
    assert other.heldout != corpus.heldout
    assert [c["secret"] for c in other.canaries] != [c["secret"] for c in corpus.canaries]


def test_deterministic_across_processes(corpus: LabCorpus) -> None:
    """Hash randomization (set/dict-of-str ordering) must not leak into the output."""
    code = (
        "import hashlib, json\n"
        "from leakaudit.lab.corpus import LabCorpusConfig, generate_lab_corpus\n"
        "c = generate_lab_corpus(LabCorpusConfig.quick())\n"
        "print(hashlib.sha256(json.dumps([c.train, c.heldout, c.manifest], sort_keys=True)"
        ".encode()).hexdigest())\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == _digest(corpus)


def test_ids_sizes_and_manifest_header(corpus: LabCorpus) -> None:
    m = corpus.manifest
    cfg = LabCorpusConfig.quick()
    assert [d["id"] for d in corpus.train] == [f"doc-{i}" for i in range(cfg.n_docs)]
    assert [d["id"] for d in corpus.heldout] == [f"heldout-{i}" for i in range(cfg.n_heldout)]
    assert m["n_train"] == cfg.n_docs and m["n_heldout"] == cfg.n_heldout
    assert m["seed"] == cfg.seed
    assert m["config"]["canary_repeats"] == list(cfg.canary_repeats)
    assert m["config"]["n_docs"] == cfg.n_docs
    assert m["generator_version"] == GENERATOR_VERSION
    assert len(m["canaries"]) == len(cfg.canary_kinds) * len(cfg.canary_repeats)
    n_blocks = len(cfg.boilerplate_repeats)
    assert [b["id"] for b in m["boilerplate"]] == list(BOILERPLATE_IDS[:n_blocks])
    assert set(m["doc_genres"]) == {d["id"] for d in corpus.train + corpus.heldout}
    # The manifest is JSON-serializable as is.
    json.dumps(m)


def test_genre_mix(corpus: LabCorpus) -> None:
    counts = corpus.manifest["genre_counts"]
    for split, n in (("train", 600), ("heldout", 150)):
        assert set(counts[split]) == set(GENRES)
        assert sum(counts[split].values()) == n
        assert all(v > 0 for v in counts[split].values())
        # Roughly even, with the low-entropy log genre near 15%.
        assert 0.17 <= counts[split]["log"] / n <= 0.27
        for g in ("email", "ticket", "clinical"):
            assert 0.22 <= counts[split][g] / n <= 0.36
    genres = corpus.manifest["doc_genres"]
    assert [genres[d["id"]] for d in corpus.train].count("log") == counts["train"]["log"]


def test_canaries_occur_exactly_repeats_times(corpus: LabCorpus) -> None:
    heldout_text = "\n".join(d["text"] for d in corpus.heldout)
    for c in corpus.canaries:
        holders = [d["id"] for d in corpus.train if c["sentence"] in d["text"]]
        assert holders == c["doc_ids"], c["id"]
        assert len(set(holders)) == c["repeats"]
        assert all(d["text"].count(c["sentence"]) == 1 for d in corpus.train if d["id"] in holders)
        assert c["sentence"] not in heldout_text
        # The secret itself appears nowhere except inside the canary sentence.
        assert sum(d["text"].count(c["secret"]) for d in corpus.train) == c["repeats"]
        assert c["secret"] not in heldout_text


def test_canary_records(corpus: LabCorpus) -> None:
    secrets = [c["secret"] for c in corpus.canaries]
    assert len(set(secrets)) == len(secrets)
    assert len({c["sentence"] for c in corpus.canaries}) == len(secrets)
    assert len({c["id"] for c in corpus.canaries}) == len(secrets)
    cfg = LabCorpusConfig.quick()
    assert sorted((c["kind"], c["repeats"]) for c in corpus.canaries) == sorted(
        (k, r) for k in cfg.canary_kinds for r in cfg.canary_repeats
    )
    for c in corpus.canaries:
        assert c["template"].count("{secret}") == 1
        assert c["template"].format(secret=c["secret"]) == c["sentence"]
        assert c["sentence"].startswith(c["prefix"]) and c["prefix"]
        assert re.fullmatch(c["secret_regex"], c["secret"])
        space = secret_space(c["kind"])
        assert c["secret_space"] == space.shape
        assert c["secret_space_log2"] == pytest.approx(space.log2_size)
        assert c["secret_space_log2"] > 20
    # Within a kind, each canary of the default six gets its own wording.
    for kind in cfg.canary_kinds:
        templates = [c["template"] for c in corpus.canaries if c["kind"] == kind]
        assert len(set(templates)) == len(templates)


def test_boilerplate_occurs_exactly_repeats_times(corpus: LabCorpus) -> None:
    heldout_text = "\n".join(d["text"] for d in corpus.heldout)
    expected = list(LabCorpusConfig.quick().boilerplate_repeats)
    assert [b["repeats"] for b in corpus.boilerplate] == expected
    for b in corpus.boilerplate:
        holders = [d["id"] for d in corpus.train if b["text"] in d["text"]]
        assert holders == b["doc_ids"], b["id"]
        assert len(set(holders)) == b["repeats"]
        assert b["text"] not in heldout_text
        # Long enough that a memorized copy is a >= 50-token verbatim match.
        assert 60 <= len(b["text"].split()) <= 120
        assert b["n_words"] == len(b["text"].split())


def test_document_lengths(corpus: LabCorpus) -> None:
    for d in corpus.heldout:
        assert MIN_WORDS <= len(d["text"].split()) <= MAX_WORDS, d["id"]
    inserted = [c["sentence"] for c in corpus.canaries] + [b["text"] for b in corpus.boilerplate]
    for d in corpus.train:
        text = d["text"]
        for s in inserted:
            text = text.replace(s, "")
        n = len(text.split()) - text.count("P.S.")
        assert MIN_WORDS <= n <= MAX_WORDS, d["id"]
    for d in corpus.train + corpus.heldout:
        assert d["text"] == d["text"].strip()
        assert all(ord(ch) < 256 for ch in d["text"])


def test_reference_secrets(corpus: LabCorpus) -> None:
    for c in corpus.canaries:
        refs = canary_reference_secrets(c, 1000, random.Random(7))
        assert len(refs) == 1000 and len(set(refs)) == 1000
        assert c["secret"] not in refs
        assert all(re.fullmatch(c["secret_regex"], s) for s in refs)
        assert refs == canary_reference_secrets(c, 1000, 7)
    with pytest.raises(ValueError):
        canary_reference_secrets({"kind": "nope", "secret": "x"}, 3, 0)


@pytest.mark.parametrize("kind", CANARY_KINDS)
def test_secret_spaces(kind: str) -> None:
    space = secret_space(kind)
    rng = random.Random(0)
    samples = [space.sample(rng) for _ in range(500)]
    assert all(re.fullmatch(space.regex, s) for s in samples)
    assert len(set(samples)) > 490
    if kind == "credit_card":  # Luhn-valid
        for s in samples:
            digits = [int(ch) for ch in s.replace(" ", "")][::-1]
            total = sum(
                d if i % 2 == 0 else (2 * d - 9 if d > 4 else 2 * d) for i, d in enumerate(digits)
            )
            assert total % 10 == 0


def test_canary_templates_have_no_inner_sentence_boundary() -> None:
    """Another canary inserted "after a sentence" must never land inside a canary sentence."""
    for templates in _CANARY_TEMPLATES.values():
        assert len(templates) >= 6
        for t in templates:
            assert not re.search(r"\w[.!?]\s", t), t
            assert t.endswith(".")


def test_insert_sentence_keeps_sentence_whole() -> None:
    text = "Dr. Smith saw the patient. The plan is rest.\nFollow up in 2 weeks."
    rng = random.Random(3)
    for _ in range(50):
        out = _insert_sentence(text, "CANARY SENTENCE here.", rng)
        assert out.count("CANARY SENTENCE here.") == 1
        assert "Dr. CANARY" not in out
        for prefix in ("\n\nP.S. ", "\n\n", " "):
            out = out.replace(prefix + "CANARY SENTENCE here.", "")
        assert out == text


def test_write_and_read_roundtrip(corpus: LabCorpus, tmp_path: Path) -> None:
    out = corpus.write(tmp_path / "lab")
    assert sorted(p.name for p in out.iterdir()) == FILES
    for name, docs in (("train.jsonl", corpus.train), ("heldout.jsonl", corpus.heldout)):
        lines = (out / name).read_text(encoding="utf-8").splitlines()
        assert len(lines) == len(docs)
        parsed = [json.loads(line) for line in lines]
        assert all(set(p) == {"id", "text"} for p in parsed)
        assert parsed == docs
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["canaries"] == corpus.canaries
    back = LabCorpus.read(out)
    assert back.train == corpus.train and back.heldout == corpus.heldout
    assert back.manifest == corpus.manifest
    # Overwriting in place works and leaves no temporary files behind.
    corpus.write(out)
    assert sorted(p.name for p in out.iterdir()) == FILES


def test_config_validation() -> None:
    base = LabCorpusConfig.quick()
    with pytest.raises(ValueError):
        generate_lab_corpus(replace(base, canary_kinds=("ssn", "bitcoin")))
    with pytest.raises(ValueError):
        generate_lab_corpus(replace(base, n_docs=10, canary_repeats=(32,)))
    with pytest.raises(ValueError):
        generate_lab_corpus(replace(base, boilerplate_repeats=(1,) * (len(BOILERPLATE_IDS) + 1)))


def test_small_custom_config() -> None:
    cfg = LabCorpusConfig(
        n_docs=40,
        n_heldout=0,
        canary_repeats=(3,),
        canary_kinds=("credit_card",),
        boilerplate_repeats=(5,),
        seed=9,
    )
    c = generate_lab_corpus(cfg)
    assert len(c.train) == 40 and c.heldout == []
    (canary,) = c.canaries
    assert sum(canary["sentence"] in d["text"] for d in c.train) == 3
    (block,) = c.boilerplate
    assert sum(block["text"] in d["text"] for d in c.train) == 5


def test_reference_split_is_disjoint_and_leaves_other_splits_alone(corpus: LabCorpus,
                                                                     tmp_path: Path) -> None:
    with_ref = generate_lab_corpus(replace(LabCorpusConfig.quick(), n_reference=60))
    # drawn last: training and held-out documents and the insertions are unchanged
    assert with_ref.train == corpus.train and with_ref.heldout == corpus.heldout
    assert with_ref.canaries == corpus.canaries and with_ref.boilerplate == corpus.boilerplate
    assert [d["id"] for d in with_ref.reference] == [f"reference-{i}" for i in range(60)]
    assert with_ref.manifest["n_reference"] == 60
    assert sum(with_ref.manifest["genre_counts"]["reference"].values()) == 60
    ref_texts = {d["text"] for d in with_ref.reference}
    assert len(ref_texts) == 60
    assert not ref_texts & {d["text"] for d in corpus.train + corpus.heldout}
    # no canary secret and no boilerplate in the reference split
    joined = "\n".join(ref_texts)
    assert not any(c["secret"] in joined for c in with_ref.canaries)
    assert not any(b["text"] in joined for b in with_ref.boilerplate)
    # written and read back
    with_ref.write(tmp_path / "c")
    back = LabCorpus.read(tmp_path / "c")
    assert back.reference == with_ref.reference
    assert LabCorpus.read(_written(corpus, tmp_path / "d")).reference == []
    with pytest.raises(ValueError, match="n_reference"):
        generate_lab_corpus(replace(LabCorpusConfig.quick(), n_reference=-1))


def _written(c: LabCorpus, path: Path) -> Path:
    c.write(path)
    return path


def test_recurring_subjects_occur_in_exactly_their_documents(corpus: LabCorpus) -> None:
    """Each recurring customer is the customer (or sender) of exactly ``repeats`` training
    documents, with one e-mail and one phone, and appears nowhere else; every other subject
    occurs once."""
    from leakaudit.attacks.probes.pii import lab_subjects

    assert corpus.manifest["recurring_subjects"] == []  # none unless asked for
    corpus = generate_lab_corpus(replace(LabCorpusConfig.quick(), subject_repeats=(8, 16)))
    rs = corpus.manifest["recurring_subjects"]
    assert [r["repeats"] for r in rs] == [8, 8, 8, 8, 16, 16, 16, 16]  # (8, 16) x 4 fit in 600
    subs = {s.attributes["name"]: s for s in lab_subjects(corpus.train)}
    texts = {d["id"]: d["text"] for d in corpus.train}
    for r in rs:
        s = subs[r["name"]]
        assert sorted(s.doc_ids) == sorted(r["doc_ids"]) and len(r["doc_ids"]) == r["repeats"]
        assert s.attributes["email"] == r["email"] and s.attributes["phone"] == r["phone"]
        assert sorted(i for i, t in texts.items() if r["name"] in t) == sorted(r["doc_ids"])
        assert not any(r["name"] in d["text"] for d in corpus.heldout)
    named = {r["name"] for r in rs}
    # any other name in two documents is a namesake the generator drew twice (Faker), not a
    # recurring customer: rare
    assert sum(len(s.doc_ids) > 1 for n, s in subs.items() if n not in named) <= 3


def test_recurring_subjects_change_only_their_host_documents() -> None:
    """The recurring customers come from their own random stream: the documents, canaries and
    boilerplate are those of a corpus without them, except the r - 1 documents per customer
    that were given the customer; the levels are cut to the tickets and e-mails there are."""
    base = dict(n_docs=150, n_heldout=40, boilerplate_repeats=(2, 8, 16, 32), seed=4)
    a = generate_lab_corpus(LabCorpusConfig(**base, subject_repeats=(8, 16)))
    b = generate_lab_corpus(LabCorpusConfig(**base))
    assert b.manifest["recurring_subjects"] == []
    assert a.heldout == b.heldout and a.canaries == b.canaries
    assert a.boilerplate == b.boilerplate
    changed = {x["id"] for x, y in zip(a.train, b.train) if x != y}
    rs = a.manifest["recurring_subjects"]
    in_subjects = {i for r in rs for i in r["doc_ids"]}
    assert changed <= in_subjects
    assert len(changed) == sum(r["repeats"] - 1 for r in rs)
    reps = [r["repeats"] for r in rs]
    assert reps[:4] == [8, 8, 8, 8] and len(reps) < 8  # 150 documents: fewer at 16
    with pytest.raises(ValueError, match="subject repeat"):
        LabCorpusConfig(subject_repeats=(0,)).validate()


def test_code_genre_and_short_documents() -> None:
    """The fine-tuning lab's corpus: only patient records and source code with credentials, in
    equal parts, every generated document cut to ``max_words`` words at a line end; the code's
    API keys are PII that the detector finds and the manifest records; canaries land in both."""
    from leakaudit.corpus.pii import find_pii
    from leakaudit.lab.corpus import ALL_GENRES

    assert "code" in ALL_GENRES and "code" not in GENRES  # the default corpus has no code
    c = generate_lab_corpus(LabCorpusConfig(
        n_docs=30, n_heldout=10, genres=("clinical", "code"), max_words=40,
        canary_kinds=("api_key", "ssn"), canary_repeats=(1, 4), boilerplate_repeats=()))
    m = c.manifest
    assert m["genre_counts"]["train"] == {"clinical": 15, "code": 15}
    assert m["genre_counts"]["heldout"] == {"clinical": 5, "code": 5}
    assert m["word_bounds"] == [40, 40]
    for d in c.heldout:  # held-out documents are never modified after the cut
        assert len(d["text"].split()) <= 40
    code = [d for d in c.train + c.heldout if m["doc_genres"][d["id"]] == "code"]
    keys = set(m["pii_values"]["api_key"])
    for d in code:
        assert d["text"].startswith("# ") and "API_KEY = " in d["text"]
        found = {f.value for f in find_pii(d["text"]) if f.kind == "api_key"}
        assert found & keys, d["text"]
    clinical = [d for d in c.heldout if m["doc_genres"][d["id"]] == "clinical"]
    assert all("\nPatient: " in d["text"] for d in clinical)
    hosts = {m["doc_genres"][i] for can in m["canaries"] for i in can["doc_ids"]}
    assert hosts <= {"clinical", "code"}
    with pytest.raises(ValueError, match="genres"):
        LabCorpusConfig(genres=("clinical", "poetry")).validate()
    with pytest.raises(ValueError, match="max_words"):
        LabCorpusConfig(max_words=2).validate()


def test_default_corpus_has_no_api_key_values_and_full_length_documents(corpus: LabCorpus) -> None:
    """The new options leave the default corpus as it was: four genres, no code, no cut."""
    m = corpus.manifest
    assert set(m["genre_counts"]["train"]) == set(GENRES)
    assert "api_key" not in m["pii_values"]
    assert m["word_bounds"] == [MIN_WORDS, MAX_WORDS]
