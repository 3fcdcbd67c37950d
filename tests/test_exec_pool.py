"""An endpoint audit's requests spread over a pool of OpenAI-compatible servers (real HTTP on
loopback), with the request ledger still counting each request once."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler

import pytest

from leakaudit.errors import InputError
from leakaudit.targets.pool import EndpointPool
from leakaudit.targets.api_client import ApiClient, ClientConfig

from .llama_server import _LoopbackServer


class _Server(_LoopbackServer):
    """A tiny OpenAI-compatible /completions server: the answer is a function of the prompt
    only (the same on every replica); ``fail_first`` answers 503 to its first requests."""

    def __init__(self, fail_first: int = 0):
        self.hits = 0
        self.fail_first = fail_first
        srv = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with lock:
                    srv.hits += 1
                    fail = srv.hits <= srv.fail_first
                if fail:
                    self.send_response(503)
                    self.end_headers()
                    return
                prompt = body["prompt"]
                out = json.dumps({"choices": [{"text": prompt[::-1], "index": 0}],
                                  "usage": {"prompt_tokens": len(prompt.split()),
                                            "completion_tokens": 1}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        lock = threading.Lock()
        self._serve(H)


@pytest.fixture
def servers():
    made = []

    def make(**kw):
        s = _Server(**kw)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


CFG = ClientConfig(concurrency=4, timeout_s=5, max_retries=4, backoff_s=0.01, max_wait_s=0.05)


def _payloads(n):
    return [{"prompt": f"document {i} says hello", "max_tokens": 1} for i in range(n)]


def test_requests_spread_over_the_pool_and_are_counted_once(servers, tmp_path):
    a, b = servers(), servers()
    pool = EndpointPool([a.url, b.url])
    client = ApiClient(a.url, config=CFG, ledger=tmp_path / "ledger.sqlite", log=lambda m: None,
                       pool=pool)
    res = client.post_many("/completions", _payloads(40))
    # every answer belongs to its own request, whichever server gave it
    assert [r["choices"][0]["text"] for r in res] == [p["prompt"][::-1] for p in _payloads(40)]
    assert a.hits > 5 and b.hits > 5 and a.hits + b.hits == 40  # spread, each sent once
    st = pool.stats()
    assert st[a.url]["ok"] == a.hits and st[b.url]["ok"] == b.hits
    assert client.stats.to_dict()["requests"] == client.stats.succeeded == 40
    assert client.stats.attempts == 40
    rows = client.ledger.rows()
    assert len(rows) == 40 and {r["status"] for r in rows} == {"ok"}
    client.close()
    # a rerun answers everything from the ledger: nothing reaches either server
    again = ApiClient(a.url, config=CFG, ledger=tmp_path / "ledger.sqlite", log=lambda m: None,
                      pool=EndpointPool([a.url, b.url]))
    assert again.post_many("/completions", _payloads(40)) == res
    assert again.stats.cached == 40 and a.hits + b.hits == 40
    again.close()
    # negative control: without a pool every request goes to the one base URL
    c, d = servers(), servers()
    solo = ApiClient(c.url, config=CFG, ledger=None, log=lambda m: None)
    solo.post_many("/completions", _payloads(10))
    assert (c.hits, d.hits) == (10, 0)
    solo.close()


def test_a_failing_server_is_routed_around(servers, tmp_path):
    a, flaky = servers(), servers(fail_first=10**9)  # answers 503 to everything
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    dead = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"  # bound, not listening: refused
    sock.close()
    pool = EndpointPool([a.url, flaky.url, dead], cooldown_s=60, max_strikes=1)
    client = ApiClient(a.url, config=CFG, ledger=tmp_path / "l.sqlite", log=lambda m: None,
                       pool=pool)
    res = client.post_many("/completions", _payloads(30))
    assert all(r["choices"][0]["text"] == p["prompt"][::-1] for r, p in zip(res, _payloads(30)))
    st = pool.stats()
    assert a.hits == 30 == st[a.url]["ok"]  # the healthy server answered everything
    assert st[flaky.url]["ok"] == 0 and st[dead]["ok"] == 0
    # each bad server fails at most the attempts in flight when it was first struck (4 threads)
    assert 1 <= st[flaky.url]["transient_failures"] + st[dead]["transient_failures"] <= 8
    assert client.stats.succeeded == 30 and client.stats.failed == 0
    assert client.stats.attempts == 30 + st[flaky.url]["attempts"] + st[dead]["attempts"]
    assert len(client.ledger.rows()) == 30
    client.close()


def test_pool_checks_its_urls():
    with pytest.raises(InputError, match="at least one"):
        EndpointPool([])
    with pytest.raises(InputError, match="http"):
        EndpointPool(["ftp://x"])
    with pytest.raises(InputError, match="twice"):
        EndpointPool(["http://a/v1", "http://a/v1/"])


def test_load_endpoint_with_replicas_spreads_and_summarises_per_server(servers, tmp_path):
    """``load_endpoint(..., replicas=[...])`` (what ``endpoint audit --replica`` passes) puts
    the spec's server and the replicas in one pool; without replicas there is no pool."""
    from leakaudit.targets.openai_api import load_endpoint

    a, b = servers(), servers()
    lm = load_endpoint(f"openai-completions:{a.url}", replicas=[b.url], model="m", probe=False,
                       ledger=tmp_path / "l.sqlite", config=CFG, log=lambda m: None)
    res = lm._post(_payloads(30))
    assert [r["choices"][0]["text"] for r in res] == [p["prompt"][::-1] for p in _payloads(30)]
    assert a.hits + b.hits == 30 and min(a.hits, b.hits) >= 5
    summ = lm.request_summary()
    assert summ["servers"] == {a.url: {"attempts": a.hits, "ok": a.hits, "transient_failures": 0},
                               b.url: {"attempts": b.hits, "ok": b.hits, "transient_failures": 0}}
    assert summ["sent"] == 30 and lm.client.base_url == a.url  # requests keyed by the spec's URL
    lm.close()
    solo = load_endpoint(f"openai-completions:{a.url}", model="m", probe=False, config=CFG,
                         log=lambda m: None)
    assert solo.client.pool is None and "servers" not in solo.request_summary()
    solo.close()
    with pytest.raises(InputError, match="twice"):
        load_endpoint(f"openai-completions:{a.url}", replicas=[a.url + "/"], model="m",
                      probe=False)
