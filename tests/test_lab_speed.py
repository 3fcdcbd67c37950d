"""The lab's faster paths compute what the slower ones did: argmax bits without torch's scalar
argmax loop (the same bits, ties and NaN included), and GPT-2's tanh-GELU as one fused kernel
(the same function as ``gelu_new`` to float rounding)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")


def test_argmax_hits_equals_argmax_including_ties_and_nan():
    from leakaudit.targets.hf import argmax_hits

    g = torch.Generator().manual_seed(0)
    logp = torch.log_softmax(torch.randn(500, 64, generator=g) * 3, -1)
    tgt = torch.randint(0, 64, (500,), generator=g)
    tgt[:100] = logp[:100].argmax(-1)  # 100 certain hits
    logp[100:110, :] = 0.0  # rows of ties: argmax is index 0
    tgt[100:105] = 0  # a hit (the first of the tied maxima)
    tgt[105:110] = 7  # tied with the maximum but not the first: not a hit
    logp[110, 3] = float("nan")  # argmax takes the NaN's index
    tgt[110] = 3
    want = logp.argmax(-1) == tgt
    got = argmax_hits(logp, tgt)
    assert torch.equal(got, want)
    assert int(want[:100].sum()) == 100 and int(want[100:105].sum()) == 5
    assert int(want[105:110].sum()) == 0 and bool(want[110])
    # negative control: a wrong target list gives other bits
    assert not torch.equal(argmax_hits(logp, (tgt + 1) % 64), want)


def test_fused_tanh_gelu_is_gpt2s_gelu():
    from transformers.activations import ACT2FN

    x = torch.linspace(-8, 8, 10001)
    new, fused = ACT2FN["gelu_new"](x), ACT2FN["gelu_pytorch_tanh"](x)
    assert torch.allclose(new, fused, atol=1e-6, rtol=0)
    at = ACT2FN["gelu_pytorch_tanh"](torch.tensor([0.0, 1.0, 8.0]))
    # gelu(0) = 0; gelu(1) = 0.5 (1 + tanh(sqrt(2/pi) 1.044715)) = 0.841192; gelu(8) = 8
    assert at.tolist() == pytest.approx([0.0, 0.841192, 8.0], abs=1e-6)
    assert not torch.allclose(new, ACT2FN["gelu"](x) * 1.01, atol=1e-6)  # control


def test_the_trainer_builds_fused_gelu_models(tmp_path):
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    from leakaudit.training.lm import LMSpec, train_causal_lm

    texts = ["the cat sat on the mat. " * 4, "a dog ran in the park. " * 4] * 4
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=300, min_frequency=1,
                            special_tokens=["<|endoftext|>"], show_progress=False)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<|endoftext|>",
                                  eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    seen = []
    m = train_causal_lm(texts, tok, LMSpec(n_layer=1, n_embd=16, n_head=2, n_ctx=32, epochs=1,
                                           batch_size=4), seed=0,
                        progress=lambda s, t, loss: seen.append((s, t, type(loss))))
    assert m.config.activation_function == "gelu_pytorch_tanh"
    assert seen and seen[-1][0] == seen[-1][1] and seen[0][2] is float  # steps of a known total


def test_buffered_kv_cache_samples_exactly_what_the_default_cache_samples(tmp_path):
    """Sampling with the growing-buffer KV cache (no torch.cat of the whole cache per token) draws
    the very same tokens as transformers' default cache, for the same seed; negative control:
    another seed draws others."""
    from transformers import GPT2Config, GPT2LMHeadModel

    import leakaudit.targets.hf as hf
    from leakaudit.targets.base import SamplingConfig

    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(["the cat sat on the mat", "a dog ran"] * 8, vocab_size=300,
                            min_frequency=1, special_tokens=["<|endoftext|>"], show_progress=False)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<|endoftext|>",
                                  eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    cfg = GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=32, n_layer=2, n_head=2,
                     bos_token_id=0, eos_token_id=0, pad_token_id=0)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(cfg).eval()
    cache = hf.buffered_cache(model)
    if cache is None:
        pytest.skip("transformers without per-layer caches: the default cache is used")
    assert {type(layer).__name__ for layer in cache.layers} == {"BufferedKVLayer"}

    lm = hf.HFCausalLM(model, tok, name="tiny")
    prompts = [[3, 5, 7], [2, 4, 6], [9, 8]] * 4
    sc = SamplingConfig(top_k=20, max_new_tokens=40)
    buffered = [g.new_ids for g in lm.generate_ids(prompts, sc, seed=1, batch_size=8)]
    plain_kwargs, hf._cache_kwargs = hf._cache_kwargs, lambda m: {}
    try:
        plain = [g.new_ids for g in lm.generate_ids(prompts, sc, seed=1, batch_size=8)]
    finally:
        hf._cache_kwargs = plain_kwargs
    assert buffered == plain and all(len(g) == 40 for g in plain)
    other = [g.new_ids for g in lm.generate_ids(prompts, sc, seed=2, batch_size=8)]
    assert other != plain
