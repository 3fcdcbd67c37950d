"""leakaudit's numbers are the field's numbers: scores, windows and samples under the model's own
token convention (nothing inserted), generation that no shipped generation config can change,
and the target factory (offline, did-you-mean, content fingerprints, bf16)."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from leakaudit.errors import InputError, LeakauditError
from leakaudit.targets import load_target, register_backend
from leakaudit.targets.base import SamplingConfig

from .conftest import TEXTS

LONG = [" ".join(TEXTS[i: i + 3]) for i in range(0, 6)]  # documents of ~40-70 tokens


@pytest.fixture(scope="module")
def bos_model_dir(tiny_model_dir, tmp_path_factory):
    """The tiny model with a tokenizer that adds a BOS token (a Llama-style post-processor)."""
    from tokenizers.processors import TemplateProcessing
    from transformers import AutoTokenizer

    d = tmp_path_factory.mktemp("bos_model")
    shutil.copytree(tiny_model_dir, d, dirs_exist_ok=True)
    tok = AutoTokenizer.from_pretrained(d)
    tok.backend_tokenizer.post_processor = TemplateProcessing(
        single="<|endoftext|> $A", special_tokens=[("<|endoftext|>", 0)])
    tok.save_pretrained(d)
    return d


@pytest.fixture(scope="module", params=["no_bos", "bos"])
def lm_and_tok(request, tiny_model_dir, bos_model_dir):
    from transformers import AutoTokenizer

    d = tiny_model_dir if request.param == "no_bos" else bos_model_dir
    return load_target(d), AutoTokenizer.from_pretrained(d), request.param


def _plain(model, ids):
    """A plain transformers evaluation: model(ids), no token added; log p and argmax of ids[1:]."""
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0, :-1].float()
    lp = torch.log_softmax(logits, -1)
    tgt = torch.tensor(ids[1:])
    return lp.gather(1, tgt[:, None])[:, 0].numpy(), (logits.argmax(-1) == tgt).numpy()


def test_start_tokens_are_the_tokenizers_own(lm_and_tok):
    lm, tok, kind = lm_and_tok
    assert lm.start_ids == ([0] if kind == "bos" else [])
    for t in TEXTS[:6]:
        assert lm.document_ids([t])[0] == tok(t)["input_ids"]  # the tokenizer's default
    conv = lm.token_convention()
    assert conv["start_ids"] == lm.start_ids
    assert ("context only" in conv["first_token"]) == (kind == "no_bos")


def test_document_scores_equal_a_plain_model_call(lm_and_tok):
    lm, tok, kind = lm_and_tok
    scores = lm.score(LONG, batch_size=4)
    for t, s in zip(LONG, scores):
        ids = tok(t)["input_ids"]
        lp, am = _plain(lm.model, ids)
        np.testing.assert_allclose(s.logprobs, lp, atol=1e-5)
        np.testing.assert_array_equal(s.is_argmax, am)
        n_text = len(tok(t, add_special_tokens=False)["input_ids"])
        # first-token rule: every text token is scored iff the tokenizer starts documents itself
        assert len(s) == (n_text if kind == "bos" else n_text - 1)


def test_memorization_windows_equal_a_plain_evaluation_and_greedy_decoding(lm_and_tok):
    """For every window measured: fraction and mean suffix NLL equal model(window) (no token
    added), and the greedy-exact bit equals real greedy decoding from the k-token prefix."""
    from leakaudit.attacks.memorization import MemorizationConfig
    from leakaudit.attacks.memorization.measure import measure_memorization, select_sequences
    from leakaudit.corpus.index import CorpusIndex

    lm, tok, kind = lm_and_tok
    k, ell = 6, 4
    cfg = MemorizationConfig(prefix_lengths=(k,), suffix_length=ell, n_sequences=None, stride=3,
                             stratify=False, greedy_check=-1, batch_size=5)
    index = CorpusIndex.build(LONG, [str(i) for i in range(len(LONG))])
    seqs = select_sequences(lm, LONG, [str(i) for i in range(len(LONG))], index, config=cfg,
                            log=lambda *_: None)
    res = measure_memorization({"m": lm}, seqs, config=cfg, log=lambda *_: None)
    assert res.models["m"]["token_convention"]["start_ids"] == lm.start_ids
    assert len(res.records) == len(seqs.ids) > 20
    n_start_windows = 0
    for r in res.records:
        doc = tok(LONG[int(r["doc_id"])])["input_ids"]  # the document's own tokenization
        window = doc[r["offset"]: r["offset"] + k + ell]
        n_start_windows += r["offset"] == 0
        lp, am = _plain(lm.model, window)
        assert r["fraction"] == pytest.approx(float(am[-ell:].mean()), abs=1e-4)
        assert -r["suffix_logprob"] / ell == pytest.approx(float(-lp[-ell:].mean()), abs=1e-4)
        ids = torch.tensor([window[:k]])
        for _ in range(ell):  # real greedy decoding, one token at a time
            with torch.no_grad():
                nxt = lm.model(ids).logits[0, -1].argmax()
            ids = torch.cat([ids, nxt.view(1, 1)], 1)
        assert r["greedy_exact"] == (ids[0, k:].tolist() == window[k:])
        assert r["exact"] == bool(am[-ell:].all())
    assert n_start_windows == len(LONG)  # a document-start window keeps its own start tokens


def test_greedy_check_inserts_nothing_before_the_prefix(tiny_lm):
    """Greedy generation continues exactly the prompt given (no BOS in front)."""
    prompt = tiny_lm.tokenize(["Order 5521 shipped to 42 Main"])[0]
    (g,) = tiny_lm.generate_ids([prompt], SamplingConfig(max_new_tokens=5, greedy=True), seed=0)
    ids = torch.tensor([prompt])
    for _ in range(5):
        with torch.no_grad():
            ids = torch.cat([ids, tiny_lm.model(ids).logits[0, -1].argmax().view(1, 1)], 1)
    assert g.new_ids == ids[0, len(prompt):].tolist()


HOSTILE = {"repetition_penalty": 5.0, "no_repeat_ngram_size": 2, "top_p": 0.3, "top_k": 3,
           "temperature": 0.2, "min_length": 40, "do_sample": True, "eos_token_id": 0,
           "bad_words_ids": [[5], [7]], "bos_token_id": 0}


@pytest.fixture(scope="module")
def hostile_dir(tiny_model_dir, tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile")
    shutil.copytree(tiny_model_dir, d, dirs_exist_ok=True)
    (d / "generation_config.json").write_text(json.dumps(HOSTILE))
    return d


def test_a_shipped_generation_config_changes_neither_samples_nor_the_greedy_check(
        tiny_model_dir, hostile_dir):
    clean, hostile = load_target(tiny_model_dir), load_target(hostile_dir)
    assert hostile.model.generation_config.repetition_penalty == 5.0
    # negative control: a plain generate() call does follow the shipped file
    inp = torch.tensor([clean.tokenize(["The quick brown"])[0]])
    with torch.no_grad():
        a = clean.model.generate(inp, do_sample=False, max_new_tokens=20, eos_token_id=None,
                                 pad_token_id=0)
        b = hostile.model.generate(inp, do_sample=False, max_new_tokens=20, pad_token_id=0)
    assert a.tolist() != b.tolist()
    prompts = [[clean.bos_id]] * 3 + clean.tokenize(["Patient John", "Ticket #1234 |"])
    for sc in (SamplingConfig(max_new_tokens=24, top_k=40),
               SamplingConfig(max_new_tokens=24, top_k=None, decay=(10.0, 1.0, 20)),
               SamplingConfig(max_new_tokens=24, greedy=True)):
        x = clean.generate_ids(prompts, sc, seed=7, batch_size=2)
        y = hostile.generate_ids(prompts, sc, seed=7, batch_size=2)
        assert [g.new_ids for g in x] == [g.new_ids for g in y]
        assert all(len(g.new_ids) == 24 for g in y)
    assert hostile.model.generation_config.repetition_penalty == 5.0  # restored


def test_generation_config_sets_every_sampler_field_explicitly():
    from transformers import GenerationConfig

    from leakaudit.targets.hf import explicit_generation_config

    cfg = explicit_generation_config(SamplingConfig(top_k=40), max_new_tokens=8, pad_token_id=0,
                                     bos_token_id=0)
    assert cfg.repetition_penalty == 1.0 and cfg.no_repeat_ngram_size == 0
    assert cfg.top_p == 1.0 and cfg.top_k == 40 and cfg.min_length == 0 and cfg.eos_token_id is None
    assert isinstance(cfg, GenerationConfig)


# ----------------------------------------------------------------------------- the factory


def test_load_target_schemes_and_did_you_mean(tiny_model_dir):
    a = load_target(tiny_model_dir)
    b = load_target(f"hf:{tiny_model_dir}")
    assert a.fingerprint() == b.fingerprint()
    with pytest.raises(InputError, match=r"unknown target scheme 'hff:'.*Did you mean: hf:"):
        load_target("hff:some/model")
    with pytest.raises(InputError, match="gguf: target must be a .gguf file"):
        load_target(f"gguf:{tiny_model_dir}")


def test_a_local_looking_path_is_never_a_hub_request(tmp_path):
    """The check runs before torch/transformers are imported and names the path."""
    code = ("import sys; from leakaudit.targets import check_spec\n"
            "from leakaudit.errors import InputError\n"
            "for spec in ['./no-such-dir', 'some/deep/path', 'x.gguf', 'gpt2-no-such-model']:\n"
            "    try: check_spec(spec)\n"
            "    except InputError as e: print(e)\n"
            "print('torch' in sys.modules, 'transformers' in sys.modules)\n")
    import os
    from pathlib import Path

    import leakaudit

    src = str(Path(leakaudit.__file__).resolve().parents[1])  # this checkout's package
    env = {**os.environ, "HF_HUB_OFFLINE": "0", "HTTPS_PROXY": "http://127.0.0.1:9",
           "HTTP_PROXY": "http://127.0.0.1:9", "PYTHONPATH": src}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=tmp_path, env=env, timeout=60).stdout.splitlines()
    assert out[0] == "./no-such-dir: model directory not found"
    assert out[1] == "some/deep/path: model directory not found"
    assert out[2] == "x.gguf: GGUF file not found"
    assert out[3].startswith("gpt2-no-such-model: ") and "--allow-download" in out[3]
    assert out[4] == "False False"


def test_a_missing_extra_names_the_pip_command():
    register_backend("needs-extra-test", "leakaudit.targets.hf:load_hf", help="test",
                     extra="gguf", needs=("no_such_module_for_leakaudit",))
    with pytest.raises(LeakauditError, match=r"pip install 'leakaudit\[gguf\]'"):
        load_target("needs-extra-test:whatever")


def test_fingerprint_hashes_the_tokenizer_too(tiny_model_dir, bos_model_dir):
    # same weights, different document convention: a different model for the signal cache
    assert load_target(tiny_model_dir).fingerprint() != load_target(bos_model_dir).fingerprint()


def test_a_bf16_model_directory_loads_fingerprints_and_is_audited(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from leakaudit.attacks.memorization import MemorizationConfig
    from leakaudit.attacks.memorization.measure import measure_memorization, select_sequences
    from leakaudit.corpus.index import CorpusIndex

    m = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.bfloat16)
    m.save_pretrained(tmp_path / "bf16")
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(tmp_path / "bf16")
    lm = load_target(tmp_path / "bf16", dtype="bfloat16")
    assert next(lm.model.parameters()).dtype == torch.bfloat16
    fp = lm.fingerprint()
    assert fp == load_target(tmp_path / "bf16", dtype="bfloat16").fingerprint()
    with torch.no_grad():
        lm.model.lm_head.weight[3, 3] += 0.5
    lm._fingerprint = None
    assert lm.fingerprint() != fp
    cfg = MemorizationConfig(prefix_lengths=(4,), suffix_length=4, n_sequences=8, stratify=False,
                             greedy_check=4, batch_size=4)
    ids = [str(i) for i in range(len(LONG))]
    seqs = select_sequences(lm, LONG, ids, CorpusIndex.build(LONG, ids), config=cfg,
                            log=lambda *_: None)
    res = measure_memorization({"bf16": lm}, seqs, config=cfg, log=lambda *_: None)
    assert len(res.records) == 8 and all(np.isfinite(r["suffix_logprob"]) for r in res.records)
    assert res.checks[0]["n_checked"] == 4


def test_the_lab_trains_with_the_packing_it_audits_with(tmp_path):
    """The lab tokenizer starts every document with <|endoftext|> by default; training packs
    exactly the documents the audits tokenize (document_ids), so mid-document windows and whole
    documents are scored in contexts the model was trained in."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from leakaudit.targets.hf import HFCausalLM
    from leakaudit.training.lm import document_blocks, pack_blocks, train_tokenizer

    tok = train_tokenizer(TEXTS, vocab_size=300, out_dir=tmp_path)
    eos = tok.eos_token_id
    lm = HFCausalLM(GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=16,
                                               n_layer=1, n_head=2)), tok, name="lab")
    assert lm.start_ids == [eos]
    docs = TEXTS[:5]
    stream = [t for d in lm.document_ids(docs) for t in d] + [eos]
    flat = [t for b in pack_blocks(docs, tok, 16) for t in b]
    assert flat == stream[: len(flat)] and len(flat) >= len(stream) - 1  # a 1-token tail drops
    assert document_blocks(docs[:1], tok, 1000) == [lm.document_ids(docs[:1])[0] + [eos]]


def test_a_one_member_sisa_ensemble_scores_like_its_member(tiny_lm, bos_model_dir):
    """Wrapped targets follow the same convention (nothing inserted, start tokens delegated)."""
    from leakaudit.defenses.unlearning import EnsembleLM

    for lm in (tiny_lm, load_target(bos_model_dir)):
        ens = EnsembleLM([lm], name="ens")
        assert ens.start_ids == lm.start_ids
        for a, b in zip(ens.score(LONG[:3], vocab_stats=True), lm.score(LONG[:3], vocab_stats=True)):
            np.testing.assert_array_equal(a.token_ids, b.token_ids)
            np.testing.assert_allclose(a.logprobs, b.logprobs, atol=1e-5)


def test_gguf_dequantizing_bar_is_off_while_a_gguf_loads_and_back_after():
    """transformers draws "Converting and de-quantizing GGUF tensors" with a plain tqdm that its
    own progress-bar switch does not reach; a GGUF target loads without it (the fine-tuning
    lab's log had one per load), and the module's tqdm is itself again afterwards."""
    import io

    pytest.importorskip("gguf")
    import transformers.modeling_gguf_pytorch_utils as g

    from leakaudit.targets.hf import no_loading_bars

    before = g.tqdm
    with no_loading_bars(gguf=True):
        assert g.tqdm(range(2), file=io.StringIO()).disable
    assert g.tqdm is before and not g.tqdm(range(2), file=io.StringIO()).disable
    with no_loading_bars():  # a directory's load leaves the module alone
        assert g.tqdm is before
