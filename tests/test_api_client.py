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
