"""How an endpoint's prompt log-probs are read, without a server: an in-process emulation of the
completions API over the tiny GPT-2 model (``ModelServer``) answers the probe and the scoring
requests the way llama.cpp does, with every token string echoed as "" (llama.cpp echoes bytes of
a UTF-8 character so) and every top log-prob keyed by one shared string (llama-cpp-python keys
them by string, so distinct tokens collide). The scores must still equal the model's own, read
by position or by token id; an echo one row late must be caught; a server that counts a text's
tokens differently is named with both counts."""

from __future__ import annotations

import numpy as np
import pytest

from leakaudit.errors import CapabilityError, LeakauditError
from leakaudit.targets.openai_api import OpenAICompletionsLM

from .conftest import TEXTS

UNIQUE = sorted(set(TEXTS))


class _Stats:
    def to_dict(self):
        return {}

    records: tuple = ()


class ModelServer:
    """The completions API over an in-process causal LM. ``bos``: the server puts the start token
    first (else llama.cpp's no-BOS echo: each echoed value is log p(token i | tokens 1..i));
    ``honour_bias``: ``logit_bias`` forces the biased token; ``merge``: the server counts one
    prompt token fewer than the text has (a tokenizer that differs)."""

    base_url = "http://127.0.0.1:9/v1"

    def __init__(self, lm, *, bos: bool, honour_bias: bool = True, merge: bool = False):
        self.lm, self.bos, self.honour_bias, self.merge = lm, bos, honour_bias, merge
        self.sent: list[dict] = []
        self.stats = _Stats()
        self.pool = None

    def _ids(self, text: str) -> list[int]:
        ids = self.lm.tokenizer(text, add_special_tokens=False)["input_ids"]
        return ([self.lm.bos_id] if self.bos else []) + list(ids)

    def _rows(self, ids: list[int]) -> np.ndarray:
        import torch

        with torch.no_grad():
            return torch.log_softmax(self.lm.model(torch.tensor([ids])).logits[0], -1).numpy()

    def post_plain(self, path, payload, *, root=False):
        ids = self._ids(payload["input"])
        return {"tokens": ids[:-1] if self.merge else ids}

    def _answer(self, p: dict) -> dict:
        ids = self._ids(p["prompt"])
        rows = self._rows(ids)
        bias = {int(k): v for k, v in (p.get("logit_bias") or {}).items()}
        nxt = max(bias, key=bias.get) if bias and self.honour_bias else int(rows[-1].argmax())
        gen_v = float(rows[-1][nxt])
        top = lambda r: {"x": float(r.max())}  # one key for every token
        if p.get("echo"):
            text = ids[1:] if self.bos else ids
            # row i describes ids[i + 1]; llama.cpp's no-BOS echo pairs text token i with row i
            vals = [float(rows[i][t]) for i, t in enumerate(text)]
            tops = [top(rows[i]) for i in range(len(text))]
            vals[0], tops[0] = None, None  # the OpenAI convention: the first token has none
            L = {"tokens": [""] * (len(text) + 1), "token_logprobs": vals + [gen_v],
                 "top_logprobs": tops + [top(rows[-1])], "text_offset": [0] * (len(text) + 1)}
        else:
            L = {"tokens": [""], "token_logprobs": [gen_v], "top_logprobs": [top(rows[-1])],
                 "text_offset": [len(p["prompt"])]}
        return {"choices": [{"text": self.lm.decode([nxt]), "index": 0, "finish_reason": "length",
                             "logprobs": L if p.get("logprobs") is not None else None}],
                "usage": {"prompt_tokens": len(ids) - int(self.merge), "completion_tokens": 1}}

    def post_many(self, path, payloads, *, progress=None):
        self.sent += list(payloads)
        out = [self._answer(p) for p in payloads]
        if progress is not None:
            progress(len(out))
        return out

    def close(self):
        pass


def _endpoint(server, logs=None):
    lm = OpenAICompletionsLM(server, model="m", tokenizer=server.lm.tokenizer,
                             log=(logs.append if logs is not None else lambda m: None))
    lm.probe()
    return lm


def _in_process(lm, ids):
    """log p(ids[i] | ids[:i]) for i >= 1 and whether each is the argmax: ``model(ids)``."""
    import torch

    with torch.no_grad():
        rows = torch.log_softmax(lm.model(torch.tensor([ids])).logits[0], -1)
    tgt = torch.tensor(ids[1:])
    return rows[:-1].gather(1, tgt[:, None])[:, 0].numpy(), (rows[:-1].argmax(-1) == tgt).numpy()


def test_aligned_echo_is_read_by_position_whatever_the_strings(tiny_lm):
    srv = ModelServer(tiny_lm, bos=True)
    lm = _endpoint(srv)
    caps = lm.capabilities
    assert caps.aligned == "ok" and caps.prompt_logprobs_via == "echo" and caps.tokenize_route
    assert lm.probe_answers["adds_bos"] and not caps.first_token_logprob
    # the probe never asks for a whole vocabulary's top log-probs
    assert max(p.get("logprobs") or 0 for p in srv.sent) == 20
    ids = tiny_lm.tokenize(UNIQUE)
    n = len(srv.sent)
    got = lm.score_ids(ids)
    assert len(srv.sent) - n == len(ids)  # one request per text
    for x, s in zip(ids, got):
        want, am = _in_process(tiny_lm, [tiny_lm.bos_id] + x)
        # the server gives the first text token (after BOS) no log-prob: tokens 2..n
        assert s.token_ids.tolist() == x[1:] and not s.truncated
        np.testing.assert_allclose(s.logprobs, want[1:], atol=1e-5)
        assert s.is_argmax.tolist() == am[1:].tolist()
    # a document that starts with BOS: the server adds that BOS itself, so the text is the same
    (d,) = lm.score_ids([[tiny_lm.bos_id] + ids[0]])
    np.testing.assert_array_equal(d.logprobs, got[0].logprobs)


def test_echo_one_row_late_is_caught_and_each_token_forced_by_id(tiny_lm):
    logs: list[str] = []
    srv = ModelServer(tiny_lm, bos=False)
    lm = _endpoint(srv, logs)
    caps = lm.capabilities
    assert caps.aligned == "ok" and caps.prompt_logprobs_via == "forced"
    assert any("by its own request" in w for w in logs)
    ids = tiny_lm.tokenize(UNIQUE)
    n = len(srv.sent)
    ticks: list[int] = []
    got = lm.score_ids(ids + [ids[0][:1]], progress=ticks.append)[:-1]
    # progress counts texts, one-token texts (no request) included
    assert sum(ticks) == len(ids) + 1
    # n - 1 requests per text, each forcing one token id
    assert len(srv.sent) - n == sum(len(x) - 1 for x in ids)
    assert all(list(p["logit_bias"].values()) == [100.0] for p in srv.sent[n:])
    for x, s in zip(ids, got):
        want, am = _in_process(tiny_lm, x)  # no BOS: tokens 2..n given the ones before
        assert s.token_ids.tolist() == x[1:]
        np.testing.assert_allclose(s.logprobs, want, atol=1e-5)
        assert s.is_argmax.tolist() == am.tolist()


def test_misaligned_echo_without_a_way_to_force_tokens_is_refused(tiny_lm):
    logs: list[str] = []
    lm = _endpoint(ModelServer(tiny_lm, bos=False, honour_bias=False), logs)
    assert lm.capabilities.aligned == "misaligned" and not lm.capabilities.prompt_logprobs
    assert any("refused" in w for w in logs)
    with pytest.raises(CapabilityError):
        lm.score_ids(tiny_lm.tokenize(UNIQUE[:1]))


def test_a_tokenizer_mismatch_names_both_counts_and_the_first_differing_id(tiny_lm):
    srv = ModelServer(tiny_lm, bos=True)
    lm = _endpoint(srv)
    srv.merge = True  # from now on the server counts (and tokenizes) one token fewer
    text = UNIQUE[0]
    x = tiny_lm.tokenize([text])[0]
    with pytest.raises(LeakauditError) as e:
        lm.score_ids([x])
    msg = str(e.value)
    assert f"into {len(x) - 1} tokens (+1 start), the local tokenizer into {len(x)}" in msg
    assert f"first difference at token {len(x) - 1}: server id none, local id {x[-1]}" in msg
    # without a tokenize route: the server's own count against the local one
    srv.post_plain = lambda *a, **k: None
    with pytest.raises(LeakauditError, match=f"counts {len(x)} prompt tokens .* local tokenizer "
                                             f"has {len(x)} \\(\\+1 start token\\)"):
        lm.score_ids([x])


def test_byte_fragments_exact_on_the_echo_and_counted_where_a_prefix_cannot_be_sent(tiny_lm):
    """A character the byte-level vocabulary spells in several byte tokens: the echo (the whole
    text sent) scores every token exactly; the forced route cannot send a prefix that ends inside
    the character (its text is not those bytes), nor force a byte token alone, so those tokens are
    left out and counted."""
    text = "Tea ☕ and café ☕ for the naïve 🦊 fox."
    (x,) = tiny_lm.tokenize([text])
    frag = [j for j in range(1, len(x)) if tiny_lm.tokenize([tiny_lm.decode(x[:j])])[0] != x[:j]]
    assert frag  # some prefixes end inside a character
    want, _ = _in_process(tiny_lm, [tiny_lm.bos_id] + x)
    (s,) = _endpoint(ModelServer(tiny_lm, bos=True)).score_ids([x])
    np.testing.assert_allclose(s.logprobs, want[1:], atol=1e-5)
    logs: list[str] = []
    lm = _endpoint(ModelServer(tiny_lm, bos=False), logs)
    (f,) = lm.score_ids([x])
    # nor is a byte of a character forced on its own (llama-cpp-python would generate until the
    # character is whole, i.e. until its context is full)
    byte = [j for j in range(1, len(x)) if not lm._whole(lm._token_bytes([x[j]])[0])]
    assert byte
    keep = [j for j in range(1, len(x)) if j not in frag and j not in byte]
    want, _ = _in_process(tiny_lm, x)
    assert f.token_ids.tolist() == [x[j] for j in keep]
    np.testing.assert_allclose(f.logprobs, want[np.array(keep) - 1], atol=1e-5)
    assert f"{len(x) - 1 - len(keep)} of {len(x) - 1} tokens got no log-prob" in logs[-1]


def test_a_generation_is_capped_only_when_the_server_stopped_for_length(tiny_lm):
    """A reply shorter than max_new_tokens is "truncated" (the context capped it) only when the
    server says it stopped for length; an end token ("stop") is the model's own choice."""
    from leakaudit.targets.base import SamplingConfig

    srv = ModelServer(tiny_lm, bos=True)
    lm = _endpoint(srv)
    prompt = [tiny_lm.bos_id] + tiny_lm.tokenize(UNIQUE[:1])[0][:3]
    greedy = SamplingConfig(max_new_tokens=8, greedy=True)
    answer = srv._answer
    for reason, capped in (("length", True), ("stop", False)):
        srv._answer = lambda p, r=reason: {**answer(p), "choices": [
            {**answer(p)["choices"][0], "finish_reason": r}]}
        (g,) = lm.generate_ids([prompt], greedy, seed=len(reason))
        assert len(g.new_ids) == 1 < 8 and g.meta["truncated"] is capped, (reason, g.meta)
