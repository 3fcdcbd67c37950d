"""Replies of the wrong shape from an OpenAI-compatible server: counted as failed requests, never
a traceback, never scored.

The reply checks are tried on hand-made replies (each malformed field named), then end to end:
a loopback proxy in front of a real llama.cpp server corrupts one field of every reply
(``usage.completion_tokens`` a string, ``token_logprobs`` one element short, ``choices`` empty)
and ``endpoint probe`` / ``endpoint audit`` must end with one ``error:`` line (exit 2) or a report
that counts the failed requests, never a traceback.
"""

from __future__ import annotations

import copy
import json

import pytest

from leakaudit.targets.api_replies import MalformedReply, check_reply

GOOD = {"choices": [{"index": 0, "text": " a b", "logprobs": {
    "tokens": [" a", " b"], "token_logprobs": [None, -1.5], "top_logprobs": [None, {" b": -1.5}],
    "text_offset": [0, 2]}}], "usage": {"prompt_tokens": 2, "completion_tokens": 0}}


def _bad(path, value):
    r = copy.deepcopy(GOOD)
    obj = r
    for k in path[:-1]:
        obj = obj[k]
    if value is KeyError:
        del obj[path[-1]]
    else:
        obj[path[-1]] = value
    return r


def test_a_good_reply_passes():
    check_reply(GOOD)
    check_reply({"choices": [{"message": {"content": "x"}, "logprobs": {"content": [
        {"token": "x", "logprob": -0.5, "top_logprobs": [{"token": "x", "logprob": -0.5}]}]}}]})
    check_reply(_bad(["usage"], KeyError))  # no usage at all is allowed (nothing billed known)


@pytest.mark.parametrize("reply,needle", [
    (_bad(["choices"], []), "no choices"),
    (_bad(["choices"], {"0": 1}), "choices must be a list"),
    (_bad(["choices", 0], "text"), "choices[0] must be an object"),
    (_bad(["usage", "completion_tokens"], "12"), "usage.completion_tokens must be a non-negative integer"),
    (_bad(["usage", "prompt_tokens"], -1), "usage.prompt_tokens"),
    (_bad(["usage", "prompt_tokens"], True), "usage.prompt_tokens"),
    (_bad(["usage"], [1]), "usage must be an object"),
    (_bad(["choices", 0, "logprobs", "token_logprobs"], [-1.5]), "arrays differ in length (tokens 2, token_logprobs 1"),
    (_bad(["choices", 0, "logprobs", "token_logprobs"], [None, "x"]), "token_logprobs[1] is not a log-prob"),
    (_bad(["choices", 0, "logprobs", "token_logprobs"], [None, 0.7]), "token_logprobs[1] is not a log-prob"),
    (_bad(["choices", 0, "logprobs", "top_logprobs"], [None, {" b": "x"}]), "top_logprobs[1]"),
    (_bad(["choices", 0, "logprobs", "tokens"], "ab"), "tokens must be a list"),
    ({"choices": [{"logprobs": {"content": [{"token": "x"}]}}]}, "content[0] has no numeric logprob"),
    ([1], "must be a JSON object"),
])
def test_malformed_replies_are_named(reply, needle):
    with pytest.raises(MalformedReply) as e:
        check_reply(reply)
    assert needle in str(e.value), str(e.value)


# ---------------------------------------------------------------- end to end, through a proxy

pytest.importorskip("llama_cpp.server", reason="needs llama-cpp-python[server]")

from .llama_server import _LoopbackServer, _relay_handler
from .test_endpoint_api import ggufs, key_env, server  # noqa: F401  (the real llama.cpp server)


class CorruptingProxy(_LoopbackServer):
    """Relays every request to ``upstream`` and replaces its reply by ``corrupt(reply)``."""

    def __init__(self, upstream: str, corrupt):
        import httpx

        upstream = upstream.rstrip("/")

        class Handler(_relay_handler(upstream)):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                r = httpx.post(upstream + self.path.removeprefix("/v1"), content=body,
                               headers={**self._auth(), "Content-Type": "application/json"},
                               timeout=60)
                out = r.content
                if r.status_code == 200:
                    out = json.dumps(corrupt(r.json())).encode()
                self._reply(r.status_code, out)

        self._serve(Handler)


def _usage_string(r):
    r.setdefault("usage", {})["completion_tokens"] = "many"
    return r


def _one_short(r):
    for c in r.get("choices") or []:
        lp = c.get("logprobs") or {}
        if lp.get("token_logprobs"):
            lp["token_logprobs"] = lp["token_logprobs"][:-1]
    return r


def _no_choices(r):
    r["choices"] = []
    return r


def _run(proxy, argv, tmp_path, tiny_model_dir, key_env):  # noqa: F811  (the imported fixtures)
    from typer.testing import CliRunner

    from leakaudit.cli import app

    corpus = tmp_path / "train.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in
                              enumerate(["Dear customer, your order has shipped today.",
                                         "Meeting notes: budget review on Friday."])))
    spec = f"openai-completions:{proxy.url}"
    extra = (["--ledger", str(tmp_path / "p.sqlite")] if argv == "probe" else
             ["--corpus", str(corpus), "--out", str(tmp_path / "out"), "--attack", "memorization",
              "--retries", "0"])
    r = CliRunner().invoke(app, ["endpoint", argv, spec, *extra, "--api-key-env", key_env,
                                 "--tokenizer", str(tiny_model_dir)])
    assert "Traceback" not in r.output and (r.exception is None or
                                           isinstance(r.exception, SystemExit)), (r.output, r.exception)
    return r


@pytest.mark.parametrize("corrupt", [_usage_string, _no_choices], ids=["usage-string", "choices-empty"])
@pytest.mark.parametrize("command", ["probe", "audit"])
def test_a_server_whose_every_reply_is_malformed(corrupt, command, server, tiny_model_dir,  # noqa: F811  (the imported fixtures)
                                                  tmp_path, key_env):  # noqa: F811  (the imported fixtures)
    with CorruptingProxy(server.url, corrupt) as proxy:
        r = _run(proxy, command, tmp_path, tiny_model_dir, key_env)
    lines = [x for x in r.output.splitlines() if x.startswith("error:")]
    assert r.exit_code == 2 and len(lines) == 1, (r.exit_code, r.output)
    assert "did not answer a completion request" in lines[0] and "malformed reply" in r.output
    assert not (tmp_path / "out" / "report.jsonl").exists()


def test_a_server_whose_log_probs_are_one_short(server, tiny_model_dir, tmp_path, key_env):  # noqa: F811  (the imported fixtures)
    """Replies with one log-prob fewer than tokens fail (counted); the endpoint is then known not
    to serve prompt log-probs, and the attacks that need them are skipped, not fed wrong numbers."""
    with CorruptingProxy(server.url, _one_short) as proxy:
        r = _run(proxy, "probe", tmp_path, tiny_model_dir, key_env)
        assert r.exit_code == 0, r.output
        caps = json.loads(r.output[r.output.index("{"):])
        assert caps["prompt_logprobs"] is False and caps["requests"]["failed"] >= 1
        assert "malformed reply: choices[0].logprobs arrays differ in length" in r.output
        r = _run(proxy, "audit", tmp_path, tiny_model_dir, key_env)
    assert r.exit_code == 0, r.output
    assert "memorization: skipped (needs capability prompt_logprobs" in r.output
