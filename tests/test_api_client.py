"""The request ledger, API-key handling and budgets of the endpoint client (no server needed)."""

from __future__ import annotations

import pytest

from leakaudit.errors import InputError
from leakaudit.targets.api_client import (ApiClient, ClientConfig, RequestLedger, read_api_key,
                                          request_key)


def test_api_key_from_env_or_file(tmp_path, monkeypatch):
    monkeypatch.setenv("K1", " sk-abc \n")
    assert read_api_key(env="K1") == "sk-abc"
    f = tmp_path / "key"
    f.write_text("sk-file\nignored\n")
    assert read_api_key(file=f) == "sk-file"
    assert read_api_key() is None
    with pytest.raises(InputError, match="not set"):
        read_api_key(env="NOPE_NOT_SET")
    with pytest.raises(InputError, match="not both"):
        read_api_key(env="K1", file=f)
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(InputError, match="empty"):
        read_api_key(file=tmp_path / "empty")


def test_client_redacts_the_key_and_never_shows_it(tmp_path):
    c = ApiClient("http://127.0.0.1:9/v1", api_key="sk-secret-123", ledger=tmp_path / "l.sqlite")
    assert "sk-secret-123" not in repr(c) and "sk-secret-123" not in str(vars(c))
    assert c.redact("HTTP 401: bad key sk-secret-123") == "HTTP 401: bad key [REDACTED]"
    c.close()


def test_ledger_answers_only_successes_and_is_private(tmp_path):
    led = RequestLedger(tmp_path / "l.sqlite")
    k = request_key("http://h/v1", "/completions", {"prompt": "a"})
    led.put(k, path="/completions", status="failed", http_status=503, attempts=3, latency_s=1.0,
            prompt_tokens=None, completion_tokens=None, error="HTTP 503", response=None)
    assert led.get(k) is None  # a failure is re-sent on the next run
    led.put(k, path="/completions", status="ok", http_status=200, attempts=1, latency_s=0.1,
            prompt_tokens=3, completion_tokens=1, error=None, response={"choices": [1]})
    assert led.get(k) == {"choices": [1]}
    assert [r["status"] for r in led.rows()] == ["ok"]
    led.close()
    assert (tmp_path / "l.sqlite").stat().st_mode & 0o077 == 0


def test_unreachable_server_fails_every_request_and_reports_it(tmp_path):
    """Connection refused on every attempt: each request is returned as a failure in its place,
    counted, and recorded; requests == cached + succeeded + failed."""
    from leakaudit.targets.api_client import ApiFailure

    logs = []
    c = ApiClient("http://127.0.0.1:9/v1", ledger=tmp_path / "l.sqlite", log=logs.append,
                  config=ClientConfig(concurrency=2, timeout_s=1, max_retries=2, backoff_s=0.01,
                                      max_wait_s=0.02))
    res = c.post_many("/completions", [{"prompt": "a"}, {"prompt": "b"}, {"prompt": "a"}])
    assert all(isinstance(r, ApiFailure) and r.attempts == 3 for r in res)
    s = c.stats.to_dict()
    assert s["requests"] == 2 and s["failed"] == 2 and s["attempts"] == 6 and s["retried"] == 2
    assert len(logs) == 2 and "connection error" in logs[0]
    c.close()


def test_config_validation():
    with pytest.raises(InputError):
        ClientConfig(concurrency=0).validate()
    with pytest.raises(InputError):
        ClientConfig(max_requests=-1).validate()
    with pytest.raises(InputError, match="http"):
        ApiClient("ftp://x")


def _llama_reply(n: int) -> dict:
    """An echo answer as llama-cpp-python writes it (n prompt tokens, one top log-prob each)."""
    return {"id": "cmpl-256e7246-4403-4eb4-90cf-e7bd2ce7c975", "object": "text_completion",
            "created": 1796475459, "model": "/models/SmolLM2-135M-Instruct.Q4_1.gguf",
            "choices": [{"text": "x" * n, "index": 0, "finish_reason": "length", "logprobs": {
                "text_offset": list(range(n)), "tokens": [f" w{i % 50}" for i in range(n)],
                "token_logprobs": [None] + [-1.0 - i / 7 for i in range(1, n)],
                "top_logprobs": [None] + [{f" w{i % 50}": -0.5 - i / 9} for i in range(1, n)]}}],
            "usage": {"prompt_tokens": n, "completion_tokens": 1, "total_tokens": n + 1}}


def test_ledger_stores_only_what_the_audit_reads_compressed(tmp_path):
    import json
    import sqlite3

    from leakaudit.targets.api_client import compact_response

    body = _llama_reply(100)
    small = compact_response(body)
    assert set(small) == {"usage", "choices"} and "id" not in small and "model" not in small
    assert set(small["choices"][0]["logprobs"]) == {"tokens", "token_logprobs", "top_logprobs"}
    assert small["choices"][0]["logprobs"]["token_logprobs"] == \
        body["choices"][0]["logprobs"]["token_logprobs"]
    led = RequestLedger(tmp_path / "l.sqlite")
    led.put("k", path="/completions", status="ok", http_status=200, attempts=1, latency_s=0.1,
            prompt_tokens=100, completion_tokens=1, error=None, response=body)
    assert led.get("k") == small
    led.close()
    with sqlite3.connect(tmp_path / "l.sqlite") as db:
        (blob,) = db.execute("SELECT response FROM requests").fetchone()
        assert db.execute("PRAGMA user_version").fetchone()[0] == RequestLedger.FORMAT == 2
    # stored: compressed, well under the JSON of the fields kept (the bound is 2x that JSON)
    kept = len(json.dumps(small, separators=(",", ":")))
    print(f"reply {len(json.dumps(body))} bytes, fields kept {kept}, stored {len(blob)}")
    assert isinstance(blob, bytes) and len(blob) <= kept <= 2 * kept


def test_a_ledger_of_the_previous_format_is_read_and_a_newer_one_refused(tmp_path):
    import json
    import sqlite3

    old = tmp_path / "old.sqlite"
    with sqlite3.connect(old) as db:  # format 1: whole answers as JSON text, user_version 0
        db.execute(RequestLedger.SCHEMA)
        db.execute("INSERT INTO requests VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                   ("k1", "/completions", "ok", 200, 1, 0.1, 3, 1, None,
                    json.dumps(_llama_reply(3)), 0.0))
    led = RequestLedger(old)
    assert led.get("k1") == _llama_reply(3)  # read as it was written
    led.put("k2", path="/completions", status="ok", http_status=200, attempts=1, latency_s=0.1,
            prompt_tokens=3, completion_tokens=1, error=None, response=_llama_reply(3))
    assert "id" not in led.get("k2")
    led.close()
    with sqlite3.connect(old) as db:
        db.execute("PRAGMA user_version = 3")
    with pytest.raises(InputError, match="newer leakaudit \\(format 3, this one reads up to 2\\)"):
        RequestLedger(old)


_CHILD = """
import signal, sys
from leakaudit.targets.api_client import ApiClient, ClientConfig

def term(signum, frame):  # as the CLI does: SIGTERM raises SystemExit in the main thread
    raise SystemExit(143)

signal.signal(signal.SIGTERM, term)
c = ApiClient(sys.argv[1], ledger=sys.argv[2], log=lambda m: None,
              config=ClientConfig(concurrency=2, timeout_s=120))
c.post_many("/completions", [{"prompt": f"p{i}"} for i in range(40)])
"""


def test_sigterm_ends_a_run_at_once_and_keeps_what_finished(tmp_path):
    """Requests 0-3 are answered at once, the others take 60 s: SIGTERM while two of those are in
    flight ends the process within 5 s (exit 143), with the 4 finished answers in the ledger."""
    import http.server
    import json
    import os
    import signal
    import sqlite3
    import subprocess
    import sys
    import time
    from pathlib import Path

    from .llama_server import _LoopbackServer

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if int(body["prompt"][1:]) >= 4:
                time.sleep(60)
            out = json.dumps({"choices": [{"text": "x", "index": 0}]}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

    ledger = tmp_path / "l.sqlite"
    srv = _LoopbackServer()
    srv._serve(Handler)
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": src}
    child = subprocess.Popen([sys.executable, "-c", _CHILD, srv.url, str(ledger)], env=env)
    done = 0
    for _ in range(300):  # bounded: up to 30 s for the 4 quick answers
        time.sleep(0.1)
        try:
            with sqlite3.connect(ledger) as db:
                done = db.execute("SELECT COUNT(*) FROM requests WHERE status='ok'").fetchone()[0]
        except sqlite3.Error:
            continue
        if done >= 4:
            break
    assert done == 4 and child.poll() is None
    time.sleep(0.5)  # two slow requests are in flight now
    t0 = time.monotonic()
    child.send_signal(signal.SIGTERM)
    rc = child.wait(timeout=30)
    took = time.monotonic() - t0
    srv.server.server_close()
    print(f"exit {rc} {took:.2f} s after SIGTERM")
    assert rc == 143 and took < 5
    with sqlite3.connect(ledger) as db:
        assert db.execute("SELECT COUNT(*) FROM requests WHERE status='ok'").fetchone()[0] == 4
