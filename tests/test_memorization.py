"""Memorization measurement and canary exposure: numbers checkable by hand, the teacher-forcing
shortcut against real greedy decoding, and controls."""

import math
import random
import re

import numpy as np
import pytest

from leakaudit.attacks.canaries.exposure import canary_exposure, exposure_by_repeats
from leakaudit.attacks.canaries.insert import CanarySpec, insert_canaries
from leakaudit.attacks.canaries.spaces import pattern_space, space_of
from leakaudit.attacks.memorization import MemorizationConfig, measure_memorization, select_sequences
from leakaudit.corpus.index import CorpusIndex
from leakaudit.errors import InputError
from leakaudit.metrics import memorization as mm
from leakaudit.metrics.exposure import exposure_by_extrapolation, exposure_by_rank
from leakaudit.targets.base import SamplingConfig

# ----------------------------------------------------------------------------- pure metrics


def test_exposure_golden_values_from_tf_privacy():
    refs = np.arange(1, 17)  # TF Privacy exposures_test: 16 references with perplexities 1..16
    assert exposure_by_rank(0.0, refs) == pytest.approx(4.0)
    assert exposure_by_rank(3.5, refs) == pytest.approx(2.0)  # rank = 4
    assert exposure_by_rank(20.0, refs) == pytest.approx(-0.08746, abs=1e-5)  # rank 17 of 16


def test_extrapolated_exposure_tracks_the_gaussian_tail():
    rng = np.random.default_rng(1)
    refs = rng.normal(100.0, 10.0, size=20000)
    e, _ = exposure_by_extrapolation(80.0, refs)  # 2 sigma below: -log2(Phi(-2)) = 5.458
    assert e == pytest.approx(-math.log2(0.02275), abs=0.25)
    # a canary in the middle of the references has exposure ~1 bit either way
    assert exposure_by_extrapolation(100.0, refs)[0] == pytest.approx(1.0, abs=0.15)
    assert exposure_by_rank(100.0, refs) == pytest.approx(1.0, abs=0.05)


def test_n_p_extraction_formulas_by_hand():
    # p_z = 0.01: P(extracted within 100) = 1 - 0.99^100 = 0.63397
    assert mm.extraction_probability(math.log(0.01), 100) == pytest.approx(1 - 0.99 ** 100)
    # n for p = 0.5 at p_z = 0.01: ceil(log 0.5 / log 0.99) = ceil(68.97) = 69
    assert mm.queries_needed(math.log(0.01), 0.5) == 69
    assert mm.queries_needed(float("-inf"), 0.5) == math.inf
    assert mm.token_edit_distance([1, 2, 3], [1, 2, 3]) == 0
    assert mm.approximately_memorized(list(range(20)), list(range(18)) + [0, 0], max_fraction=0.1)
    assert not mm.approximately_memorized(list(range(20)), list(range(17)) + [0, 0, 0],
                                          max_fraction=0.1)


# ----------------------------------------------------------------------------- target additions


def test_sampling_logprobs_match_the_full_distribution(tiny_lm):
    import torch

    ids = tiny_lm.tokenize(["Patient John Doe, DOB 1970-01-01, presented with a mild cough."])
    scheme = SamplingConfig(temperature=0.7, top_k=5)
    (sc,) = tiny_lm.score_ids(ids, sampling=scheme)
    full = ids[0]  # nothing inserted: the first token is context only
    with torch.no_grad():
        logits = tiny_lm.model(torch.tensor([full])).logits[0, :-1].double() / 0.7
    kth = torch.topk(logits, 5, dim=-1).values[:, -1:]
    z = logits.masked_fill(logits < kth, float("-inf"))
    want = torch.log_softmax(z, -1).gather(1, torch.tensor(ids[0][1:])[:, None])[:, 0].numpy()
    finite = np.isfinite(want)
    assert np.array_equal(finite, np.isfinite(sc.sampling_logprobs))
    np.testing.assert_allclose(sc.sampling_logprobs[finite], want[finite], atol=1e-4)
    # the plain log-probs are unchanged by asking for the sampling ones
    (plain,) = tiny_lm.score_ids(ids)
    np.testing.assert_array_equal(plain.logprobs, sc.logprobs)
    # last=n: the same numbers for the last n tokens only (the head runs on those positions)
    (tail,) = tiny_lm.score_ids(ids, sampling=scheme, last=5)
    np.testing.assert_array_equal(tail.token_ids, sc.token_ids[-5:])
    np.testing.assert_allclose(tail.logprobs, sc.logprobs[-5:], atol=1e-5)
    np.testing.assert_array_equal(tail.is_argmax, sc.is_argmax[-5:])
    np.testing.assert_allclose(tail.sampling_logprobs, sc.sampling_logprobs[-5:], atol=1e-5)
    with pytest.raises(InputError, match="last"):
        tiny_lm.score_ids(ids, last=0)
    with pytest.raises(InputError, match="top-k only"):
        tiny_lm.score_ids(ids, sampling=SamplingConfig(top_p=0.9))


def test_sampling_logprob_keeps_ties_at_the_kth_logit_like_the_warper():
    """Hand-made logits with ties at the k-th value: transformers' TopKLogitsWarper keeps every
    logit >= the k-th largest, so the tied ones stay in the normalizer."""
    import torch

    from leakaudit.targets.hf import _sampling_logprob

    logits = torch.tensor([[3.0, 1.0, 1.0, 1.0, -2.0],   # k=2: kth = 1.0, three tied → 4 kept
                           [0.5, 2.0, -1.0, 4.0, 0.0]])
    targets = torch.tensor([2, 2])
    got = _sampling_logprob(logits, targets, SamplingConfig(top_k=2, temperature=1.0))
    # row 0: log(e^1 / (e^3 + 3 e^1)); row 1: target -1.0 is outside the top 2 → -inf
    assert got[0].item() == pytest.approx(1 - math.log(math.exp(3) + 3 * math.exp(1)), abs=1e-6)
    assert got[1].item() == float("-inf")
    # no top-k: the tempered full softmax
    got = _sampling_logprob(logits, targets, SamplingConfig(top_k=None, temperature=2.0))
    want = torch.log_softmax(logits / 2.0, -1)[:, 2]
    torch.testing.assert_close(got, want)


def test_greedy_generation_is_the_teacher_forced_argmax(tiny_lm):
    prompts = [[tiny_lm.bos_id] + p for p in tiny_lm.tokenize(["The quick brown", "Order 5521 ship"])]
    gens = tiny_lm.generate_ids(prompts, SamplingConfig(max_new_tokens=12, greedy=True), seed=0)
    for p, g in zip(prompts, gens):
        (sc,) = tiny_lm.score_ids([p + g.new_ids], last=12)
        assert sc.is_argmax.all()


# ----------------------------------------------------------------------------- memorization


@pytest.fixture(scope="module")
def memorizing_lm(tmp_path_factory):
    """A tiny GPT-2 fine-tuned (one document per block) to memorize 12 documents; 12 others of the
    same form never seen."""
    from leakaudit.targets.hf import HFCausalLM
    from leakaudit.training.lm import LMSpec, train_causal_lm, train_tokenizer

    rng = random.Random(0)
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi pi rho".split()

    def doc():
        return " ".join(rng.choice(words) for _ in range(60)) + "."

    train, unseen = [doc() for _ in range(12)], [doc() for _ in range(12)]
    d = tmp_path_factory.mktemp("memorizing")
    tok = train_tokenizer(train + unseen, vocab_size=300)
    spec = LMSpec(n_layer=2, n_embd=64, n_head=2, n_ctx=128, epochs=80, lr=1e-2, batch_size=4,
                  packing="document")
    train_causal_lm(train, tok, spec, seed=0, out_dir=d)
    return HFCausalLM.load(d, name="memorizer"), train, unseen


def test_memorized_training_windows_are_found_and_unseen_ones_are_not(memorizing_lm):
    lm, train, unseen = memorizing_lm
    # windows at the start of each document, where fine-tuning put them (packing="document")
    cfg = MemorizationConfig(prefix_lengths=(4, 16), suffix_length=16, n_sequences=None,
                             greedy_check=-1, recheck_batch1=True, stride=10_000)
    index = CorpusIndex.build(train)
    seqs = select_sequences(lm, train, [f"d{i}" for i in range(len(train))], index, config=cfg)
    res = measure_memorization({"m": lm}, seqs, config=cfg)
    overall = {r["k"]: r for r in res.rates if r["bucket"] == "all"}
    assert overall[16]["exact"]["value"] > 0.8  # trained 80 epochs on 12 documents
    assert overall[16]["exact"]["value"] >= overall[4]["exact"]["value"]
    for c in res.checks:  # the teacher-forcing shortcut agrees with real greedy decoding
        assert c["agreement"]["value"] >= 0.99, c["disagreements"]
        assert c["batch1"]["n_flipped"] == 0
    # negative control: the same model on documents it never saw
    uindex = CorpusIndex.build(unseen)
    useqs = select_sequences(lm, unseen, [f"u{i}" for i in range(len(unseen))], uindex, config=cfg)
    ures = measure_memorization({"m": lm}, useqs, config=cfg)
    u16 = next(r for r in ures.rates if r["bucket"] == "all" and r["k"] == 16)
    assert u16["exact"]["value"] < 0.05
    assert u16["median_log_pz"] < overall[16]["median_log_pz"] - 10


def test_short_documents_are_skipped_and_counted(memorizing_lm):
    lm, train, _ = memorizing_lm
    texts = train[:3] + ["alpha beta", "gamma"]
    logs = []
    cfg = MemorizationConfig(prefix_lengths=(8,), suffix_length=8, n_sequences=None, greedy_check=0)
    seqs = select_sequences(lm, texts, list("abcde"), CorpusIndex.build(texts), config=cfg,
                            log=logs.append)
    assert seqs.n_docs_skipped == 2 and "skipped 2 of 5" in logs[0]
    with pytest.raises(InputError, match="no document has"):
        select_sequences(lm, ["alpha beta"], ["x"], CorpusIndex.build(["alpha beta"]), config=cfg)


def test_models_with_different_tokenizers_are_refused(memorizing_lm, tiny_lm):
    lm, train, _ = memorizing_lm
    cfg = MemorizationConfig(prefix_lengths=(8,), suffix_length=8, n_sequences=4, greedy_check=0)
    seqs = select_sequences(lm, train, [str(i) for i in range(len(train))], CorpusIndex.build(train),
                            config=cfg)
    with pytest.raises(InputError, match="tokenize the corpus differently"):
        measure_memorization({"a": lm, "b": tiny_lm}, seqs, config=cfg)


# ----------------------------------------------------------------------------- canaries


def test_insert_canaries_counts_and_determinism():
    docs = [{"id": f"d{i}", "text": f"Document number {i}. It has two sentences."} for i in range(40)]
    specs = [CanarySpec("My pin code is {secret}.", "dddd-dddd"),
             CanarySpec("The SSN is {secret} today.", "ssn")]
    new, recs = insert_canaries(docs, specs, [1, 4, 16], seed=3)
    assert len(recs) == 6
    for r in recs:
        holders = [d["id"] for d in new if r["sentence"] in d["text"]]
        assert sorted(holders) == sorted(r["doc_ids"]) and len(holders) == r["repeats"]
        assert re.fullmatch(r["secret_regex"], r["secret"])
        assert not any(r["secret"] in d["text"] for d in docs)
    assert insert_canaries(docs, specs, [1, 4, 16], seed=3) == (new, recs)
    assert space_of(recs[0]).log2_size == pytest.approx(8 * math.log2(10))
    with pytest.raises(InputError, match="exactly one"):
        insert_canaries(docs, [CanarySpec("no placeholder", "dddd")], [1], seed=0)
    with pytest.raises(InputError, match="1..40"):
        insert_canaries(docs, specs, [41], seed=0)
    with pytest.raises(InputError, match="no random position"):
        insert_canaries(docs, [CanarySpec("x {secret}", "---")], [1], seed=0)


def test_pattern_space_samples_match_its_regex():
    sp = pattern_space(r"sk_\x-xxxh")
    rng = random.Random(0)
    for _ in range(50):
        s = sp.sample(rng)
        assert s.startswith("sk_x-") and re.fullmatch(sp.regex, s)
    assert sp.log2_size == pytest.approx(3 * math.log2(62) + 4)


def test_exposure_of_a_memorized_canary_is_high_and_of_an_unseen_one_low(memorizing_lm):
    lm, train, _ = memorizing_lm
    # the memorizer saw these exact documents; their last word plays the secret, drawn from a
    # pattern space of lowercase letters: a seen secret ranks first, a fresh one does not
    canary = {"id": "c", "kind": "pattern", "secret_space": "aaaaa", "repeats": 1,
              "template": train[0][:-8] + "{secret}", "secret": train[0][-8:-3]}
    fake = {**canary, "id": "fake", "secret": "qzxvw"}
    recs = canary_exposure(lm, [canary, fake], n_references=200, seed=0, batch_size=32)
    assert recs[0]["secret"] != canary["secret"]  # masked by default
    by_id = {r["canary_id"]: r for r in recs}
    assert by_id["c"]["exposure_rank"] > by_id["fake"]["exposure_rank"]
    assert by_id["fake"]["exposure_rank"] < 4
    assert [r["repeats"] for r in exposure_by_repeats(recs)] == [1]
