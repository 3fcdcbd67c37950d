import numpy as np
import pytest
import torch

from leakaudit.errors import InputError
from leakaudit.targets.base import SamplingConfig
from leakaudit.targets.hf import HFCausalLM, decaying_temperature_processor

from .conftest import TEXTS


def _full_logprobs(lm, text):
    ids = lm.document_ids([text])[0]  # the tokenizer's default; nothing inserted
    with torch.no_grad():
        logits = lm.model(torch.tensor([ids])).logits[0, :-1].double()
    lp = torch.log_softmax(logits, -1)
    tgt = torch.tensor(ids[1:])
    return lp.gather(1, tgt[:, None])[:, 0].numpy(), lp.numpy(), tgt.numpy()


def test_scores_match_unbatched_full_softmax(tiny_lm):
    texts = TEXTS[:6]
    scores = tiny_lm.score(texts, batch_size=4, vocab_stats=True)
    for t, s in zip(texts, scores):
        ref, lp, tgt = _full_logprobs(tiny_lm, t)
        np.testing.assert_allclose(s.logprobs, ref, atol=1e-5)
        np.testing.assert_array_equal(s.is_argmax, lp.argmax(-1) == tgt)
        p = np.exp(lp)
        mu = (p * lp).sum(-1)
        var = (p * lp * lp).sum(-1) - mu ** 2
        np.testing.assert_allclose(s.vocab_mean, mu, atol=1e-4)
        np.testing.assert_allclose(s.vocab_var, var, atol=1e-3)


@pytest.mark.parametrize("batch_size", [1, 3, 7])
def test_scores_do_not_depend_on_batching_or_padding(tiny_lm, batch_size):
    texts = TEXTS[:12]
    ref = tiny_lm.score(texts, batch_size=len(texts))
    got = tiny_lm.score(texts, batch_size=batch_size)
    for a, b in zip(ref, got):
        np.testing.assert_array_equal(a.token_ids, b.token_ids)
        np.testing.assert_allclose(a.logprobs, b.logprobs, atol=1e-5)


def test_chunked_head_bounds_memory_and_matches(tiny_model_dir):
    small = HFCausalLM.load(tiny_model_dir)
    small.chunk_bytes = small.vocab_size * 16 * 3  # 3 positions per chunk
    big = HFCausalLM.load(tiny_model_dir)
    for a, b in zip(small.score(TEXTS[:4]), big.score(TEXTS[:4])):
        np.testing.assert_allclose(a.logprobs, b.logprobs, atol=1e-6)


def test_empty_text_scores_nothing(tiny_lm):
    (s,) = tiny_lm.score([""])
    assert len(s) == 0


def test_long_text_is_truncated_and_flagged(tiny_lm):
    (s,) = tiny_lm.score(["word " * 400])
    assert s.truncated and len(s) == tiny_lm.max_length - 1


def test_decaying_temperature_changes_the_distribution():
    proc = decaying_temperature_processor(10.0, 1.0, 20, prompt_length=1)
    assert proc.temperature(0) == 10.0 and proc.temperature(10) == 5.5 and proc.temperature(20) == 1.0
    assert proc.temperature(100) == 1.0
    scores = torch.tensor([[4.0, 2.0, 0.0, -1.0]])
    first = proc(torch.zeros(1, 1, dtype=torch.long), scores)  # step 0: T = 10
    late = proc(torch.zeros(1, 25, dtype=torch.long), scores)  # step 24: T = 1
    torch.testing.assert_close(first, scores / 10)
    torch.testing.assert_close(late, scores)
    ent = lambda x: float(-(torch.softmax(x, -1) * torch.log_softmax(x, -1)).sum())
    assert ent(first) > ent(late) + 0.5


def test_decaying_temperature_is_applied_inside_generate(tiny_lm):
    """The processor must reach generate(): compare the processed scores generate reports."""
    from transformers import GenerationConfig, LogitsProcessorList

    ids = torch.tensor([[tiny_lm.bos_id]])
    cfg = GenerationConfig(do_sample=True, max_new_tokens=3, top_k=0, eos_token_id=None,
                           pad_token_id=0, output_scores=True, output_logits=True,
                           return_dict_in_generate=True)
    proc = LogitsProcessorList([decaying_temperature_processor(10.0, 1.0, 20, prompt_length=1)])
    out = tiny_lm.model.generate(input_ids=ids, generation_config=cfg, logits_processor=proc)
    torch.testing.assert_close(out.scores[0], out.logits[0] / 10.0)
    torch.testing.assert_close(out.scores[1], out.logits[1] / 9.55)


def test_generation_is_seeded_batched_and_full_length(tiny_lm):
    sc = SamplingConfig(max_new_tokens=20, top_k=40)
    prompts = [[tiny_lm.bos_id]] * 6 + [tiny_lm.tokenize(["Patient John"])[0]] * 3
    a = tiny_lm.generate_ids(prompts, sc, seed=3, batch_size=4)
    b = tiny_lm.generate_ids(prompts, sc, seed=3, batch_size=4)
    c = tiny_lm.generate_ids(prompts, sc, seed=4, batch_size=4)
    assert [g.new_ids for g in a] == [g.new_ids for g in b]
    assert [g.new_ids for g in a] != [g.new_ids for g in c]
    assert all(len(g.new_ids) == 20 for g in a)  # EOS does not stop a sample
    assert a[7].prompt_ids == prompts[7]


def test_top_k_restricts_support(tiny_lm):
    """With top_k=1 sampling is greedy: the sample equals the argmax path."""
    sc = SamplingConfig(max_new_tokens=8, top_k=1)
    g = tiny_lm.generate_ids([[tiny_lm.bos_id]], sc, seed=0)[0]
    (s,) = tiny_lm.score_ids([g.prompt_ids + g.new_ids], last=8)
    assert len(s) == 8 and s.is_argmax.all()


def test_missing_model_dir_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="model directory not found"):
        HFCausalLM.load(tmp_path / "nope" / "model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no config.json"):
        HFCausalLM.load(tmp_path / "empty")


def test_tokenizer_model_mismatch_is_a_clear_error(tiny_model_dir, tmp_path):
    import shutil

    from transformers import GPT2Config, GPT2LMHeadModel

    d = tmp_path / "bad"
    shutil.copytree(tiny_model_dir, d)
    GPT2LMHeadModel(GPT2Config(vocab_size=50, n_positions=32, n_embd=16, n_layer=1, n_head=2)).save_pretrained(d)
    with pytest.raises(Exception, match="mismatch"):
        HFCausalLM.load(d)


def test_fingerprint_changes_with_weights(tiny_model_dir):
    a = HFCausalLM.load(tiny_model_dir)
    b = HFCausalLM.load(tiny_model_dir)
    assert a.fingerprint() == b.fingerprint()
    with torch.no_grad():
        b.model.lm_head.weight[0, 0] += 1
    b._fingerprint = None
    assert a.fingerprint() != b.fingerprint()


def test_fingerprint_does_not_depend_on_where_the_model_lies(tiny_model_dir, tmp_path):
    import shutil

    shutil.copytree(tiny_model_dir, tmp_path / "elsewhere")
    assert HFCausalLM.load(tiny_model_dir).fingerprint() == HFCausalLM.load(tmp_path / "elsewhere").fingerprint()


def test_sampling_does_not_stop_at_eos():
    """A 3-token model emits EOS often; samples must run on past it to the full length (as in the
    paper), not stop and pad (generate() does that when the model's config names an EOS)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    class Tok:
        pad_token_id = bos_token_id = eos_token_id = 0

        def __len__(self):
            return 3

        def decode(self, ids, skip_special_tokens=True):
            return "".join("abc"[i] for i in ids if not (skip_special_tokens and i == 0))

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=3, n_positions=64,
                                       bos_token_id=0, eos_token_id=0))
    lm = HFCausalLM(model, Tok(), name="eos-heavy")
    gens = lm.generate_ids([[0]] * 8, SamplingConfig(max_new_tokens=40, top_k=None), seed=0, batch_size=8)
    assert all(len(g.new_ids) == 40 for g in gens)
    # some sample has an EOS followed later by a non-EOS token
    assert any(0 in g.new_ids and any(t != 0 for t in g.new_ids[g.new_ids.index(0):]) for g in gens)
    assert model.generation_config.eos_token_id == 0  # restored


def test_gguf_file_loads_and_scores_like_the_original(tiny_model_dir, tmp_path):
    """`--model file.gguf` goes through transformers' GGUF loader and gives the same numbers."""
    pytest.importorskip("gguf")
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    from .gguf_writer import write_gpt2_gguf

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    torch.manual_seed(0)
    # transformers reads GGUF context_length into n_ctx, not n_positions: use GPT-2's 1024.
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=1024, n_embd=32, n_layer=2,
                                       n_head=2, bos_token_id=0, eos_token_id=0))
    (tmp_path / "hf").mkdir()
    model.save_pretrained(tmp_path / "hf")
    tok.save_pretrained(tmp_path / "hf")
    gg = write_gpt2_gguf(model, tok, tmp_path / "tiny.gguf")
    a = HFCausalLM.load(tmp_path / "hf")
    b = HFCausalLM.load(gg)
    assert b.name == "tiny.gguf"
    texts = TEXTS[:4]
    assert a.tokenize(texts) == b.tokenize(texts)
    for x, y in zip(a.score(texts), b.score(texts)):
        np.testing.assert_allclose(x.logprobs, y.logprobs, atol=1e-5)
    with pytest.raises(InputError, match="GGUF file not found"):
        HFCausalLM.load(tmp_path / "missing.gguf")


def test_top_logprobs_of_generated_tokens_any_k_up_to_the_vocabulary(tiny_lm):
    """An in-process model declares top_logprobs = its vocabulary size and serves it: each
    generated position's k most likely tokens with their log-probs, equal to a plain forward
    pass over the prompt and the tokens generated so far."""
    from leakaudit.errors import CapabilityError
    from leakaudit.targets.base import RestrictedLM

    V = tiny_lm.vocab_size
    assert tiny_lm.capabilities.top_logprobs == V and tiny_lm.capabilities.to_dict()["top_logprobs"] == V
    prompt = tiny_lm.document_ids([TEXTS[0]])[0][:6]
    for sampling in (SamplingConfig(max_new_tokens=5, greedy=True),
                     SamplingConfig(max_new_tokens=5, top_k=40)):
        (g,) = tiny_lm.generate_ids([prompt], sampling, seed=3, top_logprobs=3)
        (plain,) = tiny_lm.generate_ids([prompt], sampling, seed=3)
        assert g.new_ids == plain.new_ids and plain.top_logprobs is None  # same draws
        assert len(g.top_logprobs) == 5 and all(len(d) == 3 for d in g.top_logprobs)
        for t, top in enumerate(g.top_logprobs):
            with torch.no_grad():
                lp = torch.log_softmax(tiny_lm.model(torch.tensor([prompt + g.new_ids[:t]])).logits[0, -1].double(), -1)
            vals, ids = lp.topk(3)
            assert list(top) == ids.tolist()
            np.testing.assert_allclose(list(top.values()), vals.numpy(), atol=1e-5)
            if sampling.greedy:
                assert g.new_ids[t] == ids[0].item()
    (full,) = tiny_lm.generate_ids([prompt], SamplingConfig(max_new_tokens=2, greedy=True), seed=0,
                                   top_logprobs=V)  # the whole distribution
    assert abs(sum(np.exp(list(full.top_logprobs[0].values()))) - 1) < 1e-4
    with pytest.raises(InputError, match="top_logprobs must be between 0 and the vocabulary size"):
        tiny_lm.generate_ids([prompt], SamplingConfig(max_new_tokens=2, greedy=True), seed=0,
                             top_logprobs=V + 1)
    api_like = RestrictedLM(tiny_lm, without=["top_logprobs"])
    assert api_like.capabilities.top_logprobs == 0
    with pytest.raises(CapabilityError, match="top_logprobs"):
        api_like.generate_ids([prompt], SamplingConfig(max_new_tokens=2, greedy=True), seed=0,
                              top_logprobs=1)
    (ok,) = RestrictedLM(tiny_lm, without=["vocab_stats"]).generate_ids(
        [prompt], SamplingConfig(max_new_tokens=2, greedy=True), seed=0, top_logprobs=2)
    assert len(ok.top_logprobs) == 2
