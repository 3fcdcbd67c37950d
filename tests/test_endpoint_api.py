"""OpenAI-compatible endpoint backends against a real llama.cpp server on 127.0.0.1.

The tiny GPT-2 test model is written as a float32 GGUF and served by llama-cpp-python's server
(``python -m llama_cpp.server``); the same weights run in-process through transformers. Checked:
probed capabilities, the alignment check (and its refusal/realignment on a server that reports
log-probs one position late), scores and greedy tokens equal to in-process, the request ledger
(a rerun sends nothing), budgets, the API key never written anywhere, and a fault-injecting
proxy (429 + Retry-After, 5xx, timeouts, dropped connections, malformed JSON).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("llama_cpp.server", reason="needs llama-cpp-python[server] (scripts/setup.sh --test)")

from leakaudit.targets.api_client import BudgetExhausted, ClientConfig  # noqa: E402
from leakaudit.targets.base import SamplingConfig  # noqa: E402
from leakaudit.targets.openai_api import load_endpoint  # noqa: E402

from .conftest import TEXTS  # noqa: E402
from .llama_server import FaultProxy, LlamaServer, PromptLogprobsShim  # noqa: E402

KEY = "sk-test-9f8e7d6c5b4a39281706"  # a fake key: the test checks it is never written anywhere
UNIQUE = sorted(set(TEXTS))


@pytest.fixture(scope="module")
def ggufs(tiny_model_dir, tmp_path_factory):
    from transformers import AutoTokenizer, GPT2LMHeadModel

    from leakaudit.targets.gguf_export import PLAIN_CHAT_TEMPLATE, write_gpt2_gguf

    d = tmp_path_factory.mktemp("gguf")
    model = GPT2LMHeadModel.from_pretrained(tiny_model_dir)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    good = write_gpt2_gguf(model, tok, d / "tiny.gguf", add_bos=True,
                           chat_template=PLAIN_CHAT_TEMPLATE)
    nobos = write_gpt2_gguf(model, tok, d / "tiny-nobos.gguf", add_bos=False)
    return good, nobos


@pytest.fixture(scope="module")
def server(ggufs, tmp_path_factory):
    log = tmp_path_factory.mktemp("server") / "server.log"
    with LlamaServer(ggufs[0], n_ctx=128, api_key=KEY, log=log) as s:
        yield s


@pytest.fixture()
def key_env(monkeypatch):
    monkeypatch.setenv("LEAKAUDIT_TEST_KEY", KEY)
    return "LEAKAUDIT_TEST_KEY"


def _lm(server, tiny_model_dir, ledger, key_env, logs=None, **cfg):
    return load_endpoint(f"openai-completions:{server.url}", api_key_env=key_env,
                         tokenizer=str(tiny_model_dir), ledger=ledger,
                         config=ClientConfig(**{"concurrency": 2, "timeout_s": 30, **cfg}),
                         log=(logs.append if logs is not None else print))


def test_probe_scores_and_greedy_match_in_process(server, tiny_model_dir, tiny_lm, tmp_path,
                                                  key_env):
    logs: list[str] = []
    lm = _lm(server, tiny_model_dir, tmp_path / "ledger.sqlite", key_env, logs)
    caps = lm.capabilities
    assert caps.prompt_logprobs and caps.argmax and caps.aligned == "ok"
    # llama-cpp-python's echo gives the first prompt token no log-prob, and an empty prompt
    # returns no distribution: the first token is left out (every other one is scored); the
    # probe never asks for more than 20 top log-probs, and the server's tokenize route was used
    assert not caps.first_token_logprob and caps.top_logprobs_max == 20 and caps.tokenize_route
    assert caps.prompt_logprobs_via == "echo" and lm.probe_answers["adds_bos"]
    assert caps.seed and caps.top_k and caps.top_p and caps.temperature
    ids = tiny_lm.tokenize(UNIQUE)
    s0 = lm.request_summary()
    api = lm.score_ids(ids)
    s1 = lm.request_summary()
    # one echo request per text, one top log-prob per token: at most 20 kB per 100 tokens
    n_tok = sum(len(x) for x in ids)
    assert s1["sent"] - s0["sent"] == len(ids)
    per_100 = 100 * (s1["bytes_received"] - s0["bytes_received"]) / n_tok
    print(f"echo: {per_100:.0f} bytes per 100 tokens")
    assert per_100 <= 20_000
    # this server adds BOS: compare with the in-process scores of BOS + text (which cover every
    # text token); llama.cpp's echo gives the first one no log-prob, so the API covers tokens 2..n
    local = tiny_lm.score_ids([[tiny_lm.bos_id] + x for x in ids])
    for x, a, b in zip(ids, api, local):
        # not "truncated": that means cut at the context, and these texts fit in it
        assert not a.truncated and a.token_ids.tolist() == x[1:] == b.token_ids[1:].tolist()
        np.testing.assert_allclose(a.logprobs, b.logprobs[1:], atol=2e-3)
        assert (a.is_argmax == b.is_argmax[1:]).mean() >= 0.95  # float-noise ties may differ
    # greedy continuations: the same tokens as in-process greedy decoding
    prompts = [[tiny_lm.bos_id] + x[:4] for x in ids]
    g_api = lm.generate_ids(prompts, SamplingConfig(max_new_tokens=12, greedy=True), seed=0)
    g_loc = tiny_lm.generate_ids(prompts, SamplingConfig(max_new_tokens=12, greedy=True), seed=0)
    same = [a.new_ids == b.new_ids[: len(a.new_ids)] for a, b in zip(g_api, g_loc)]
    assert all(same)
    # accounting: requests == cached + succeeded + failed; a second run sends nothing
    s1 = lm.request_summary()
    assert s1["requests"] == s1["cached"] + s1["succeeded"] + s1["failed"] and s1["failed"] == 0
    assert s1["tokens_billed"] > 0
    lm.close()
    lm2 = _lm(server, tiny_model_dir, tmp_path / "ledger.sqlite", key_env)
    again = lm2.score_ids(ids)
    assert [x.logprobs.tolist() for x in again] == [x.logprobs.tolist() for x in api]
    s2 = lm2.request_summary()
    assert s2["sent"] == 0 and s2["cached"] == s2["requests"] > 0
    # the key is in no log line and not in the ledger
    lm2.close()
    assert not any(KEY in line for line in logs)
    assert KEY.encode() not in (tmp_path / "ledger.sqlite").read_bytes()
    assert (tmp_path / "ledger.sqlite").stat().st_mode & 0o077 == 0
    assert KEY not in repr(lm2.client)


def test_empty_sequences_are_scored_without_a_request(server, tiny_model_dir, tiny_lm, tmp_path,
                                                      key_env):
    # an extraction sample can be empty (the end token drawn first); llama-cpp-python answers an
    # echoed empty prompt whose generated token is the end token with HTTP 500, so an empty text
    # is never sent: it gets an empty score, like in-process
    lm = _lm(server, tiny_model_dir, tmp_path / "ledger.sqlite", key_env)
    before = lm.request_summary()["requests"]
    ids = tiny_lm.tokenize(UNIQUE[:1])
    out = lm.score_ids([[], ids[0], []])
    assert lm.request_summary()["requests"] - before == 1
    assert [len(x.token_ids) for x in out] == [0, len(ids[0]) - 1, 0]
    assert not out[0].truncated and not out[2].truncated and len(out[0].logprobs) == 0
    lm.close()


def test_vllm_prompt_logprobs_are_used_and_checked(server, tiny_model_dir, tiny_lm, tmp_path,
                                                   key_env):
    # vLLM's prompt_logprobs (keyed by token id, with the rank) in vLLM's wire format over the real
    # server: preferred to echo, the same scores as echo and as in-process
    with PromptLogprobsShim(server.url, tiny_lm.tokenizer) as shim:
        lm = load_endpoint(f"openai-completions:{shim.url}", api_key_env=key_env,
                           tokenizer=str(tiny_model_dir), ledger=tmp_path / "v.sqlite",
                           config=ClientConfig(concurrency=2, timeout_s=30), log=lambda m: None)
        caps = lm.capabilities
        assert caps.prompt_logprobs_via == "prompt_logprobs" and caps.aligned == "ok"
        assert caps.argmax and not caps.first_token_logprob and lm.probe_answers["adds_bos"]
        ids = tiny_lm.tokenize(UNIQUE)
        api = lm.score_ids(ids + [[]])
        lm.close()
    echo = _lm(server, tiny_model_dir, tmp_path / "e.sqlite", key_env)
    assert echo.capabilities.prompt_logprobs_via == "echo"
    via_echo = echo.score_ids(ids)
    echo.close()
    local = tiny_lm.score_ids([[tiny_lm.bos_id] + x for x in ids])
    assert len(api[-1].token_ids) == 0 and not api[-1].truncated  # the empty text: no request
    for x, a, e, b in zip(ids, api, via_echo, local):
        assert not a.truncated and a.token_ids.tolist() == x[1:] == e.token_ids.tolist()
        np.testing.assert_array_equal(a.logprobs, e.logprobs)
        np.testing.assert_allclose(a.logprobs, b.logprobs[1:], atol=2e-3)
        assert (a.is_argmax == b.is_argmax[1:]).mean() >= 0.95
    # negative control: log-probs one position late are caught, and scoring is refused
    with PromptLogprobsShim(server.url, tiny_lm.tokenizer, shift=1) as bad:
        lm = load_endpoint(f"openai-completions:{bad.url}", api_key_env=key_env,
                           tokenizer=str(tiny_model_dir), ledger=tmp_path / "b.sqlite",
                           config=ClientConfig(concurrency=2, timeout_s=30), log=lambda m: None)
        assert bad.shifted > 0
        assert lm.capabilities.aligned == "misaligned" and not lm.capabilities.prompt_logprobs
        with pytest.raises(Exception, match="prompt_logprobs"):
            lm.score_ids(ids[:1])
        lm.close()


@pytest.mark.slow
def test_misaligned_server_is_caught(ggufs, tiny_model_dir, tiny_lm, tmp_path):
    """Without BOS, llama.cpp's echo reports log p(token i | tokens 1..i), which nothing can
    realign: the alignment check notices and scores each text by one request that generates it
    under a grammar spelling it (its tokens biased, longer ones more, so the generation takes the
    tokenizer's own split), which equals a plain in-process evaluation of the same tokens without
    BOS, and never a whole-vocabulary request. A server that ignores ``grammar`` gets one forced
    request per token (same values); one that ignores ``logit_bias`` is refused."""
    import torch

    with LlamaServer(ggufs[1], n_ctx=128, log=tmp_path / "s.log") as srv:
        logs: list[str] = []
        lm = load_endpoint(f"openai-completions:{srv.url}", tokenizer=str(tiny_model_dir),
                           ledger=tmp_path / "l.sqlite", log=logs.append, max_logprobs=5)
        caps = lm.capabilities
        assert caps.aligned == "ok" and caps.prompt_logprobs_via == "grammar"
        assert caps.first_token_logprob and not lm.probe_answers["adds_bos"]
        assert any("under a grammar spelling it" in w for w in logs)
        ids = tiny_lm.tokenize(UNIQUE[:3])
        before = lm.request_summary()["requests"]
        api = lm.score_ids(ids)
        print("requests", lm.request_summary()["requests"] - before, "for", len(ids), "texts")
        assert lm.request_summary()["requests"] - before == len(ids)  # one per text
        local = tiny_lm.score_ids(ids)  # GPT-2's convention: no start token, tokens 2..n scored
        for x, a, b in zip(ids, api, local):
            with torch.no_grad():
                logits = tiny_lm.model(torch.tensor([x])).logits[0]
            ref = torch.log_softmax(logits, -1)[torch.arange(len(x) - 1), torch.tensor(x[1:])]
            assert a.token_ids.tolist() == b.token_ids.tolist() == x[1:] and not a.truncated
            np.testing.assert_allclose(a.logprobs, ref.numpy(), atol=2e-3)
            np.testing.assert_allclose(a.logprobs, b.logprobs, atol=2e-3)
            assert (a.is_argmax == b.is_argmax).mean() >= 0.95
        # a character spelled in several byte tokens: such a token stays in a grammar span where
        # no other token of the text could stand at its place, else the span ends before it (its
        # string cannot tell the split) and it is never forced alone (llama-cpp-python would
        # generate until the context is full); every value is the in-process one
        (x,) = tiny_lm.tokenize(["Tea \u2615 and caf\u00e9 \u2615 for the na\u00efve \U0001f98a fox."])
        spans = lm._grammar_plan(x, 1)
        assert spans and spans[0][0] == 1
        before = lm.request_summary()["requests"]
        (f,) = lm.score_ids([x])
        assert lm.request_summary()["requests"] - before < len(x) // 2
        with torch.no_grad():
            rows = torch.log_softmax(tiny_lm.model(torch.tensor([x])).logits[0], -1)
        pos, j = [], 1
        for t in f.token_ids.tolist():  # the scored tokens are a subsequence of x[1:]
            while x[j] != t:
                j += 1
            pos.append(j)
            j += 1
        assert len(pos) >= (len(x) - 1) * 3 // 4
        np.testing.assert_allclose(f.logprobs, [float(rows[j - 1, x[j]]) for j in pos], atol=2e-3)
        # a document that starts with the local start token, on a server that adds none (a
        # Llama-style tokenizer in front of a GGUF without add_bos): the start token is sent as
        # its own text, which llama.cpp reads as that token, so the scores are in-process's of
        # [start] + text (its first text token scored too); before, nothing was scored
        bos = tiny_lm.bos_id
        y = [bos] + ids[0]
        (g,) = lm.score_ids([y])
        with torch.no_grad():
            rows = torch.log_softmax(tiny_lm.model(torch.tensor([y])).logits[0], -1)
        assert g.token_ids.tolist() == ids[0]
        np.testing.assert_allclose(g.logprobs, rows[:-1].gather(1, torch.tensor(y[1:])[:, None])
                                   [:, 0].numpy(), atol=2e-3)
        # a memorization window (last=k): one request, its prompt the text before the window
        i = max(range(len(ids)), key=lambda j: len(ids[j]))
        assert len(ids[i]) > 5
        before = lm.request_summary()["requests"]
        (w,) = lm.score_ids([ids[i]], last=4)
        assert lm.request_summary()["requests"] - before == 1 and len(w) == 4
        np.testing.assert_allclose(w.logprobs, api[i].logprobs[-4:], atol=2e-3)
        lm.close()
        # a server that ignores ``grammar`` (a proxy drops it): the probe sees the generation
        # stray and takes the forced route, n - 1 requests per text, the same values
        logs.clear()
        no_grammar = lambda body: {k: v for k, v in body.items() if k != "grammar"}  # noqa: E731
        with FaultProxy(srv.url, lambda b, a: None, rewrite=no_grammar) as proxy:
            lm = load_endpoint(f"openai-completions:{proxy.url}", tokenizer=str(tiny_model_dir),
                               ledger=tmp_path / "g.sqlite", log=logs.append)
            assert lm.capabilities.prompt_logprobs_via == "forced"
            assert lm.probe_answers["align"]["grammar"] is None
            before = lm.request_summary()["requests"]
            forced = lm.score_ids(ids)
            assert lm.request_summary()["requests"] - before == sum(len(x) - 1 for x in ids)
            for a, f in zip(api, forced):
                np.testing.assert_allclose(a.logprobs, f.logprobs, atol=2e-3)
            lm.close()
        # negative control: logit_bias dropped on the way, so a forced token is not generated
        logs.clear()
        strip = lambda body: {k: v for k, v in body.items() if k != "logit_bias"}  # noqa: E731
        with FaultProxy(srv.url, lambda b, a: None, rewrite=strip) as proxy:
            lm = load_endpoint(f"openai-completions:{proxy.url}", tokenizer=str(tiny_model_dir),
                               ledger=tmp_path / "p.sqlite", log=logs.append)
            assert lm.capabilities.aligned == "misaligned" and not lm.capabilities.prompt_logprobs
            assert any("refused" in w for w in logs)
            from leakaudit.errors import CapabilityError

            with pytest.raises(CapabilityError):
                lm.score_ids(ids)
            lm.close()


def test_budget_stops_cleanly_and_resume_sends_the_rest(server, tiny_model_dir, tiny_lm,
                                                          tmp_path, key_env):
    ledger = tmp_path / "ledger.sqlite"
    lm = _lm(server, tiny_model_dir, ledger, key_env)
    probe_sent = lm.request_summary()["sent"]
    lm.close()
    ids = tiny_lm.tokenize(UNIQUE)
    lm = _lm(server, tiny_model_dir, ledger, key_env, max_requests=3, concurrency=1)
    with pytest.raises(BudgetExhausted, match="request budget reached"):
        lm.score_ids(ids)
    s = lm.request_summary()
    assert s["sent"] == 3 and s["not_sent"] == len(ids) - 3
    lm.close()
    lm = _lm(server, tiny_model_dir, ledger, key_env)
    lm.score_ids(ids)
    s = lm.request_summary()
    assert s["sent"] == len(ids) - 3  # only what the first run did not send
    assert probe_sent > 0
    lm.close()


def test_fault_injection_every_request_accounted_for(server, tiny_model_dir, tiny_lm, tmp_path,
                                                     key_env):
    """Faults on first attempts are retried away, except a request whose answer did not come in
    time (the server may still be working on it: it is reported and left to a rerun); a few
    requests fail every attempt and are reported, never dropped; what succeeded equals the
    fault-free run."""
    faults = ["429", "500", "502", "503", "timeout", "drop", "malformed"]

    calls: dict[str, int] = {}

    def plan(body, attempt):  # only the scoring requests below (" #i" in the prompt) see faults
        prompt = body.get("prompt", "")
        calls[prompt] = calls.get(prompt, 0) + 1
        if " #" not in prompt:
            return None
        i = int(prompt.rsplit("#", 1)[1])
        if i % 12 == 5:
            return "503"  # every attempt: fails after the retries, must be reported
        if attempt == 0 and i % 3 != 0:
            return faults[i % len(faults)]
        return None

    texts = [f"{t} #{i}" for i, t in enumerate(UNIQUE * 4)]
    ids = tiny_lm.tokenize(texts)
    clean = _lm(server, tiny_model_dir, tmp_path / "clean.sqlite", key_env)
    want = clean.score_ids(ids)
    clean.close()
    with FaultProxy(server.url, plan, sleep_s=6.0) as proxy:
        logs: list[str] = []
        lm = load_endpoint(f"openai-completions:{proxy.url}", api_key_env=key_env,
                           tokenizer=str(tiny_model_dir), ledger=tmp_path / "faulty.sqlite",
                           config=ClientConfig(concurrency=4, timeout_s=5.0, max_retries=2,
                                               backoff_s=0.01, max_wait_s=0.05),
                           log=logs.append)
        payloads = [{"prompt": lm.decode(x), "max_tokens": 1, "temperature": 0, "logprobs": 1,
                     "echo": True} for x in ids]
        res = lm._post(payloads)
        s = lm.request_summary()
        assert s["requests"] == s["cached"] + s["succeeded"] + s["failed"]
        assert s["retried"] > 0 and s["attempts"] > s["sent"]
        from leakaudit.targets.api_client import ApiFailure

        failed = [r for r in res if isinstance(r, ApiFailure)]
        # 503 on every attempt: #5 and #17; no answer in time on the first attempt that reached
        # the proxy (i % 7 == 4, i % 3 != 0: #4, #11, #25): not retried, the proxy saw it once
        bad = {i: r.error for i, r in enumerate(res) if isinstance(r, ApiFailure)}
        assert len(bad) == s["failed"] and {5, 17} <= set(bad) <= {4, 5, 11, 17, 25}, bad
        assert all(("503" in e) == (i in (5, 17)) for i, e in bad.items())
        late = [i for i, e in bad.items() if "no answer in 5 s" in e]
        assert len(late) >= 2
        assert all(calls[payloads[i]["prompt"]] == 1 for i in late), calls
        rec = [r for _, r in lm.request_records()]
        assert sum(r["status"] == "failed" for r in rec) == s["failed"]
        # what succeeded equals the fault-free run
        for x, w, r in zip(ids, want, res):
            if not isinstance(r, ApiFailure):
                lp, _ = lm._parse_echo(x, lm.decode(x), r)
                np.testing.assert_allclose(lp[1:], w.logprobs, atol=1e-6)  # [0]: no log-prob
        assert set(proxy.faults) >= {"429", "500", "502", "503", "timeout", "drop", "malformed"}
        # scoring refuses to hand an attack partial results, and says how to continue
        with pytest.raises(Exception, match="rerun to retry"):
            lm.score_ids(ids)
        assert not any(KEY in line for line in logs)
        lm.close()


def test_chat_endpoint_probe_and_divergence_runs(server, tiny_model_dir, tmp_path, key_env):
    from leakaudit.attacks.probes.divergence import (DivergenceConfig, chat_prompts,
                                                     divergence_attack)
    from leakaudit.corpus.index import CorpusIndex

    chat = load_endpoint(f"openai-chat:{server.url}", api_key_env=key_env,
                         ledger=tmp_path / "chat.sqlite", tokenizer=str(tiny_model_dir))
    assert chat.capabilities.kind == "chat" and not chat.capabilities.prompt_logprobs
    index = CorpusIndex.build(UNIQUE)
    cfg = DivergenceConfig(words=("poem", "fox"), samples_per_word=3, max_tokens=40,
                           min_match_tokens=8)
    tok_offsets = lambda t: [tuple(o) for o in chat.tokenizer(  # noqa: E731
        t, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]]
    res = divergence_attack(chat_prompts(chat, max_tokens=40, temperature=1.0, seed=0), index,
                            config=cfg, token_offsets=tok_offsets)
    s = res.summary
    assert s["n_queries"] == 6 and s["n_answered"] == 6
    # a random-weight model memorized nothing: no 8-token run from the corpus (negative control)
    assert s["memorized"]["k"] == 0 and s["per_1000"]["ci_high"] > 0
    json.dumps(res.records())
    chat.close()


def test_load_target_factory_builds_endpoints(server, tiny_model_dir, tmp_path, key_env):
    from leakaudit.errors import InputError
    from leakaudit.targets import load_target

    lm = load_target(f"openai-completions:{server.url}#tokenizer={tiny_model_dir}"
                     f"&api_key_env={key_env}&ledger={tmp_path / 'l.sqlite'}", name="srv")
    assert lm.name == "srv" and lm.capabilities.prompt_logprobs and lm.capabilities.top_logprobs
    lm.close()
    with pytest.raises(InputError, match="unknown endpoint option 'key'"):
        load_target(f"openai-chat:{server.url}#key=sk-x")


def test_wrong_key_is_a_clean_failure(server, tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("WRONG_KEY", "sk-wrong-000")
    logs: list[str] = []
    with pytest.raises(Exception, match="did not answer"):
        load_endpoint(f"openai-completions:{server.url}", api_key_env="WRONG_KEY", model="x",
                      tokenizer=str(tiny_model_dir), ledger=tmp_path / "l.sqlite",
                      log=logs.append)
    assert any("401" in line or "403" in line for line in logs)
    assert not any("sk-wrong-000" in line for line in logs)


def test_request_key_ignores_the_api_key():
    from leakaudit.targets.api_client import request_key

    a = request_key("http://127.0.0.1:1/v1", "/completions", {"prompt": "x", "model": "m"})
    b = request_key("http://127.0.0.1:1/v1/", "/completions", {"model": "m", "prompt": "x"})
    assert a == b and len(a) == 64


_CHILD = """
import sys
from leakaudit.targets.api_client import ClientConfig
from leakaudit.targets.openai_api import load_endpoint
url, tok, ledger, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
lm = load_endpoint("openai-completions:" + url, api_key_env="LEAKAUDIT_TEST_KEY", tokenizer=tok,
                   ledger=ledger, config=ClientConfig(concurrency=1), log=lambda m: None)
texts = [f"resume document {i}: the quick brown fox" for i in range(n)]
lm.score_ids(lm.tokenize(texts))
"""


@pytest.mark.slow
def test_killed_run_resumes_sending_each_request_once(server, tiny_model_dir, tmp_path, key_env):
    """A run killed midway (SIGKILL) and resumed sends each request once; only a request in
    flight at the moment of the kill can have reached the server twice."""
    import os
    import sqlite3
    import subprocess
    import sys
    import time
    from pathlib import Path

    n = 30
    ledger = tmp_path / "ledger.sqlite"
    with FaultProxy(server.url, lambda b, a: None, delay_s=0.05) as proxy:
        src = str(Path(__file__).resolve().parents[1] / "src")
        env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
        child = subprocess.Popen([sys.executable, "-c", _CHILD, proxy.url, str(tiny_model_dir),
                                  str(ledger), str(n)], env=env)
        done = 0
        for _ in range(600):  # bounded: up to 60 s
            time.sleep(0.1)
            if child.poll() is not None:
                break
            if ledger.exists():
                try:
                    with sqlite3.connect(ledger) as db:
                        done = db.execute("SELECT COUNT(*) FROM requests WHERE status='ok'"
                                          ).fetchone()[0]
                except sqlite3.Error:
                    continue
                if done >= 20:  # the probes (~15) and a few documents
                    break
        child.kill()
        child.wait()
        with sqlite3.connect(ledger) as db:
            done = db.execute("SELECT COUNT(*) FROM requests WHERE status='ok'").fetchone()[0]
        before = dict(proxy.forwarded)
        lm = load_endpoint(f"openai-completions:{proxy.url}", api_key_env=key_env,
                           tokenizer=str(tiny_model_dir), ledger=ledger, log=lambda m: None)
        texts = [f"resume document {i}: the quick brown fox" for i in range(n)]
        lm.score_ids(lm.tokenize(texts))
        s = lm.request_summary()
        lm.close()
        total_unique = s["requests"]
        assert s["sent"] == total_unique - done  # the resumed run sent only what was missing
        twice = [k for k, v in proxy.forwarded.items() if v > 1]
        assert len(twice) <= 1  # at most the one request in flight when the child was killed
        assert len(proxy.forwarded) == total_unique and sum(before.values()) >= done


@pytest.mark.slow
def test_cli_endpoint_audit_budget_resume_and_no_key_anywhere(server, tiny_model_dir, tmp_path,
                                                              key_env):
    from typer.testing import CliRunner

    from leakaudit.cli import app

    corpus = tmp_path / "train.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n"
                              for i, t in enumerate(UNIQUE)))
    out = tmp_path / "out"
    argv = ["endpoint", "audit", f"openai-completions:{server.url}", "--api-key-env", key_env,
            "--tokenizer", str(tiny_model_dir), "--corpus", str(corpus), "--out", str(out),
            "--attack", "divergence", "--attack", "membership", "--concurrency", "2",
            "--retries", "1"]
    r1 = CliRunner().invoke(app, argv + ["--max-requests", "25"])
    assert r1.exit_code == 3, r1.output  # the budget stopped it cleanly
    assert "request budget reached" in r1.output
    r2 = CliRunner().invoke(app, argv)
    assert r2.exit_code == 0, r2.output
    assert "membership: skipped (needs data nonmembers)" in r2.output
    summary = json.loads((out / "summary.json").read_text())
    req = summary["requests"]
    assert req["cached"] >= 25 - 1  # the first run's requests are not sent again
    # replies that would overrun the tiny server's 128-token context fail there ("llama_decode
    # returned 1", HTTP 500): retried, then reported, never dropped
    assert req["requests"] == req["cached"] + req["succeeded"] + req["failed"]
    rows = [json.loads(x) for x in (out / "report.jsonl").read_text().splitlines()]
    assert sum(1 for x in rows if x["entry_type"] == "api_request" and x["status"] == "failed") \
        == req["failed"]
    assert summary["attacks"]["divergence"]["n_queries"] == 40
    for f in out.rglob("*"):
        if f.is_file():
            assert KEY.encode() not in f.read_bytes(), f
    assert KEY not in r1.output and KEY not in r2.output
    r3 = CliRunner().invoke(app, ["endpoint", "audit", "openai-chat:ftp://x", "--out", str(out)])
    assert r3.exit_code == 2 and "error:" in r3.output
    r4 = CliRunner().invoke(app, ["lab", "endpoint", server.url, "--out", str(tmp_path / "nolab")])
    assert r4.exit_code == 2 and "not a finished lab folder" in r4.output


def test_extraction_over_the_api_request_accounting(server, tiny_model_dir, tiny_lm, tmp_path,
                                                    key_env):
    """Carlini 2021 sampling through the endpoint, by the in-process pipeline: every sample is
    one request (this server honours no ``n``); ranking with the generated tokens' log-probs
    costs nothing more, with echo one request per distinct text and one per distinct lowercased
    text; a rerun sends 0. The generated log-probs are the in-process scores of the same tokens."""
    from leakaudit.attacks.extraction.pipeline import ExtractionConfig, run_extraction
    from leakaudit.corpus.index import CorpusIndex

    lm = _lm(server, tiny_model_dir, tmp_path / "ledger.sqlite", key_env)
    assert not lm.capabilities.n and lm.capabilities.generated_logprobs
    index = CorpusIndex.build(UNIQUE)
    base = lm.request_summary()["requests"]
    cfg = ExtractionConfig(samplers=("top_k",), n_samples=6, max_new_tokens=10, select=3,
                           match_tokens=8, target_scores="generated")
    res = run_extraction(lm, index=index, config=cfg)
    s = lm.request_summary()
    assert s["requests"] - base == 6 and s["failed"] == 0  # 6 samples x 1 request
    assert res.summary["target_scores"] == "generated"
    assert "lowercase" not in res.summary["rankings"]
    assert [r["attack"] for r in res.summary["skipped"]] == ["ranking:lowercase"]
    gens = [r for r in res.samples]
    assert len(gens) == 6 and len({g["text"] for g in gens}) > 1  # seeded, distinct requests
    assert all(len(r["scores"]) == 4 for r in gens)  # perplexity, zlib, window, min_k
    # generated log-probs are the model's: equal to in-process scores of the same tokens
    prompts = [[tiny_lm.bos_id] + x[:4] for x in tiny_lm.tokenize(UNIQUE)]
    greedy = SamplingConfig(max_new_tokens=10, greedy=True)
    for g, h in zip(lm.generate_ids(prompts, greedy, seed=0),
                    tiny_lm.generate_ids(prompts, greedy, seed=0)):
        (loc,) = tiny_lm.score_ids([h.prompt_ids + h.new_ids], last=len(h.new_ids))
        n = len(g.meta["logprobs"])
        assert n >= 8, g.meta  # a token of a cut UTF-8 character may be merged or dropped
        np.testing.assert_allclose(g.meta["logprobs"], loc.logprobs[:n], atol=2e-3)
        assert all(g.meta["is_argmax"])  # greedy tokens are the argmax
    # echo ranking (the in-process numbers): one more request per distinct text and lowercased
    # text (the server adds BOS, so each text is one aligned echo request)
    before, sent_before = lm.request_summary()["requests"], lm.request_summary()["sent"]
    res2 = run_extraction(lm, index=index, config=ExtractionConfig(
        samplers=("top_k",), n_samples=6, max_new_tokens=10, select=3, match_tokens=8))
    texts = [r["text"] for r in res2.samples]
    assert texts == [r["text"] for r in res.samples]  # generation came from the ledger
    s2 = lm.request_summary()
    assert s2["requests"] - before == 6 + len(set(texts)) + len(set(t.lower() for t in texts))
    # sent: a lowercased text equal to a text already scored is answered from the ledger
    assert s2["sent"] - sent_before == len(set(texts) | {t.lower() for t in texts})
    assert res2.summary["target_scores"] == "echo" and "lowercase" in res2.summary["rankings"]
    # a random-weight model recites nothing: 0 verified (negative control)
    assert res2.summary["n_verified_samples"] == 0
    lm.close()
    lm2 = _lm(server, tiny_model_dir, tmp_path / "ledger.sqlite", key_env)
    run_extraction(lm2, index=index, config=cfg)
    assert lm2.request_summary()["sent"] == 0
    lm2.close()


def test_extraction_samples_share_requests_where_the_server_honours_n(server, tiny_model_dir,
                                                                       tmp_path, key_env):
    """Behind a proxy that serves ``n`` (each choice a real llama.cpp sample with its own seed),
    the probe finds ``n`` and 10 samples from the start token take ceil(10 / 4) = 3 requests
    (n = 4, 4, 2); every sample has its own tokens and generated log-probs."""
    from leakaudit.attacks.extraction.pipeline import ExtractionConfig, run_extraction
    from leakaudit.corpus.index import CorpusIndex

    from .llama_server import ChoicesProxy

    with ChoicesProxy(server.url) as proxy:
        lm = load_endpoint(f"openai-completions:{proxy.url}", tokenizer=str(tiny_model_dir),
                           api_key_env=key_env, ledger=tmp_path / "n.sqlite", log=lambda m: None)
        assert lm.capabilities.n and lm.capabilities.seed
        lm.max_n = 4
        base = lm.request_summary()["requests"]
        proxy.received.clear()
        res = run_extraction(lm, index=CorpusIndex.build(UNIQUE), config=ExtractionConfig(
            samplers=("top_k",), n_samples=10, max_new_tokens=8, select=3, match_tokens=8,
            target_scores="generated"))
        assert lm.request_summary()["requests"] - base == 3
        assert proxy.received == {4: 2, 2: 1}
        texts = [s["text"] for s in res.samples]
        assert len(texts) == 10 and len(set(texts)) >= 8  # distinct seeds, distinct samples
        # log-probs came with every sample (one that stopped at once has none: it ranks last)
        assert all(len(s["scores"]) == 4 and (s["log_ppl"] is not None or s["n_new_tokens"] == 0)
                   for s in res.samples)
        assert sum(s["log_ppl"] is not None for s in res.samples) >= 8
        lm.close()


@pytest.mark.slow
def test_cli_endpoint_audit_spreads_requests_over_replica_servers(server, tiny_model_dir, tmp_path,
                                                                   key_env):
    """``endpoint audit SPEC --replica URL``: two loopback servers of the same model (proxies in
    front of one llama.cpp server, each counting what it forwards) share the requests; each
    request is stored once in the ledger, and a rerun sends nothing (its answers come from the
    ledger, whichever server gave them)."""
    import sqlite3

    from typer.testing import CliRunner

    from leakaudit.cli import app

    corpus = tmp_path / "train.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n"
                              for i, t in enumerate(UNIQUE)))
    out = tmp_path / "out"
    with FaultProxy(server.url, lambda body, attempt: None) as a, \
            FaultProxy(server.url, lambda body, attempt: None) as b:
        argv = ["endpoint", "audit", f"openai-completions:{a.url}", "--replica", b.url,
                "--api-key-env", key_env, "--tokenizer", str(tiny_model_dir), "--corpus",
                str(corpus), "--out", str(out), "--attack", "divergence", "--concurrency", "4",
                "--retries", "1"]
        r1 = CliRunner().invoke(app, argv)
        assert r1.exit_code == 0, r1.output
        summary = json.loads((out / "summary.json").read_text())
        req = summary["requests"]
        fa, fb = dict(a.forwarded), dict(b.forwarded)
        n_a, n_b = sum(fa.values()), sum(fb.values())
        print("forwarded", n_a, n_b, "requests", req)
        assert req["sent"] >= 40 and req["cached"] == 0
        # spread: the least-in-flight choice gives each server a fair share
        assert min(n_a, n_b) >= 0.3 * (n_a + n_b)
        # every request reached a server; a body seen twice is a retry of a failed attempt
        assert len(set(fa) | set(fb)) == req["sent"]
        assert n_a + n_b == req["sent"] + req["retried"]
        servers = req["servers"]
        assert set(servers) == {a.url, b.url}
        assert sum(s["ok"] for s in servers.values()) == req["succeeded"]
        with sqlite3.connect(out / "requests.sqlite") as db:
            assert db.execute("SELECT COUNT(*) FROM requests").fetchone()[0] == req["requests"]
        run = json.loads((out / "report.jsonl").read_text().splitlines()[0])
        assert run["servers"] == [a.url, b.url] and run["endpoint"] == a.url
        # rerun: answered from the ledger; only the failed requests (if any) are sent again
        r2 = CliRunner().invoke(app, argv)
        assert r2.exit_code == 0, r2.output
        req2 = json.loads((out / "summary.json").read_text())["requests"]
        assert req2["cached"] == req["succeeded"] and req2["sent"] == req["failed"]
        assert sum(a.forwarded.values()) + sum(b.forwarded.values()) - n_a - n_b \
            == req2["sent"] + req2["retried"]
        # a bad or repeated replica URL is refused before any work
        for bad, msg in ((["--replica", "ftp://x"], "http://"), (["--replica", a.url], "twice")):
            r3 = CliRunner().invoke(app, ["endpoint", "audit", f"openai-completions:{a.url}",
                                          *bad, "--out", str(tmp_path / "bad")])
            assert r3.exit_code == 2 and "error:" in r3.output and msg in r3.output, r3.output
        assert not (tmp_path / "bad").exists()


def test_tokenizer_can_be_the_served_gguf_file(ggufs, server, tiny_model_dir, tmp_path, key_env):
    """``--tokenizer FILE.gguf``: the served file's own tokenizer (transformers reads it, with the
    file's start-token setting), the same ids as the model folder's; the probe's id check passes
    on it and the scores equal those with the folder. A file that is not a GGUF: one line."""
    from leakaudit.errors import InputError
    from leakaudit.targets.base import tokenizer_start_ids
    from leakaudit.targets.openai_api import _load_tokenizer

    folder = _load_tokenizer(str(tiny_model_dir))
    good, nobos = (_load_tokenizer(str(g)) for g in ggufs)
    for text in UNIQUE[:5]:
        want = folder(text, add_special_tokens=False)["input_ids"]
        assert good(text, add_special_tokens=False)["input_ids"] == want
        assert nobos(text, add_special_tokens=False)["input_ids"] == want
    assert tokenizer_start_ids(nobos) == []  # the file's own add_bos setting
    assert tokenizer_start_ids(good) == [good.bos_token_id]

    via_file = load_endpoint(f"openai-completions:{server.url}", api_key_env=key_env,
                             tokenizer=str(ggufs[0]), ledger=tmp_path / "a.sqlite",
                             log=lambda m: None)
    via_dir = _lm(server, tiny_model_dir, tmp_path / "b.sqlite", key_env, [])
    assert via_file.capabilities.aligned == "ok" == via_dir.capabilities.aligned
    ids = [folder(t, add_special_tokens=False)["input_ids"] for t in UNIQUE[:4]]
    a, b = via_file.score_ids(ids), via_dir.score_ids(ids)
    for x, y in zip(a, b):
        assert x.token_ids.tolist() == y.token_ids.tolist()
        assert np.array_equal(x.logprobs, y.logprobs)
    via_file.close()
    via_dir.close()

    bad = tmp_path / "not-a-model.gguf"
    bad.write_bytes(b"this is not a GGUF file\n")
    with pytest.raises(InputError) as e:
        _load_tokenizer(str(bad))
    assert str(bad) in str(e.value) and "\n" not in str(e.value)
