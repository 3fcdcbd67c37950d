"""The HTTP side of an OpenAI-compatible endpoint: secrets, retries, budgets and the request ledger.

Every request an audit makes goes through :class:`ApiClient.post_many`:

- it is keyed by a SHA-256 of the canonical JSON of (base URL, path, payload), never of the API
  key, and looked up in a SQLite **ledger** first: a request that already succeeded is answered
  from the ledger and never sent again, so a rerun, or a run resumed after a crash, re-sends only
  what had not finished (each finished request is committed the moment it completes);
- it runs on ``concurrency`` daemon threads over one ``httpx.Client``, with a timeout scaled to
  the request's size (:func:`request_timeout`); a SIGTERM ends the run at once (no request
  starts after it, those in flight are abandoned and sent again by a rerun);
- transient failures (HTTP 408/409/425/429/5xx, connect timeouts, dropped connections,
  malformed JSON) are retried by tenacity with exponential backoff and jitter, waiting what a
  ``Retry-After`` header asks for when it is given (capped at ``max_wait_s``); other 4xx fail at
  once, and so does a request whose answer did not come in time (the server may still be
  working on it: sending it again would queue the same work twice);
- a request that still fails is recorded as failed with its error and returned as an
  :class:`ApiFailure` in its place: it is never dropped, and the summary counts it;
- budgets (``max_requests`` sent over the network, ``max_tokens`` billed) stop the run cleanly:
  requests not yet started are not sent, everything finished is already in the ledger, and
  :class:`BudgetExhausted` tells the caller how far it got.

The API key is read from an environment variable or a file, kept in a private attribute, sent
only in the ``Authorization`` header, and scrubbed from every error message (:meth:`redact`).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sqlite3
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from leakaudit.errors import InputError, LeakauditError

#: HTTP statuses worth retrying: the server is busy, overloaded or briefly broken.
RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class BudgetExhausted(LeakauditError):
    """A request or token budget was reached; everything finished so far is in the ledger."""


class TransientError(Exception):
    """A failure worth retrying; ``retry_after`` (seconds) when the server asked for a delay."""

    def __init__(self, message: str, *, retry_after: float | None = None, status: int | None = None):
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status


class PermanentError(Exception):
    def __init__(self, message: str, *, status: int | None = None):
        super().__init__(message)
        self.status = status


@dataclass
class ApiFailure:
    """A request that failed after every retry: stands in its place in the results."""

    key: str
    error: str
    status: int | None
    attempts: int


@dataclass(frozen=True)
class ClientConfig:
    """How requests are sent. Every field is stored as given.

    concurrency   requests in flight at once
    timeout_s     timeout of a request of up to 1,000 tokens of work (prompt + 3 × max_tokens); a
                  larger request gets proportionally longer. A request whose answer did not
                  come in time is not retried in this run: the server may still be working on
                  it (a rerun sends it again); one that never reached the server is retried
    max_retries   retries after the first attempt of one request
    backoff_s     first backoff; doubles per retry (with up to 50% jitter), capped at max_wait_s
    max_wait_s    longest wait between attempts, ``Retry-After`` included
    max_requests  requests sent over the network in this run (cached answers are free); None: no cap
    max_tokens    tokens billed (prompt + completion, from ``usage``) in this run; None: no cap
    """

    concurrency: int = 4
    timeout_s: float = 60.0
    max_retries: int = 5
    backoff_s: float = 0.5
    max_wait_s: float = 30.0
    max_requests: int | None = None
    max_tokens: int | None = None

    def validate(self) -> None:
        if self.concurrency < 1:
            raise InputError(f"concurrency must be at least 1, got {self.concurrency}")
        if self.timeout_s <= 0:
            raise InputError(f"timeout must be positive, got {self.timeout_s}")
        if self.max_retries < 0:
            raise InputError(f"max_retries must be >= 0, got {self.max_retries}")
        for name in ("max_requests", "max_tokens"):
            v = getattr(self, name)
            if v is not None and v < 0:
                raise InputError(f"{name} must be >= 0, got {v}")


class Secret:
    """A string that does not print: ``repr``/``str`` show ``[REDACTED]``; ``.value`` is the key.
    So a key held in an object never reaches a log through ``repr(obj)`` or ``vars(obj)``."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    @property
    def value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "[REDACTED]"

    __str__ = __repr__


def read_api_key(*, env: str | None = None, file: str | os.PathLike | None = None) -> str | None:
    """The API key from the environment variable ``env`` or the first line of ``file``."""
    if env and file:
        raise InputError("give the API key through an environment variable or a file, not both")
    if env:
        key = os.environ.get(env)
        if not key:
            raise InputError(f"environment variable {env} is not set (it should hold the API key)")
        return key.strip()
    if file:
        p = Path(file)
        if not p.is_file():
            raise InputError("API key file not found", path=str(p))
        key = p.read_text(encoding="utf-8").strip().splitlines()
        if not key or not key[0].strip():
            raise InputError("API key file is empty", path=str(p))
        return key[0].strip()
    return None


def request_key(base_url: str, path: str, payload: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of the request (never of the key)."""
    blob = json.dumps({"url": base_url.rstrip("/"), "path": path, "payload": payload},
                      sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


#: The fields of a completions answer the audits read; nothing else is kept (ids, timestamps,
#: the model's path, offsets and fingerprints are dropped).
_CHOICE_FIELDS = ("index", "text", "finish_reason", "message", "logprobs", "prompt_logprobs")
_LOGPROB_FIELDS = ("tokens", "token_logprobs", "top_logprobs", "content")
_USAGE_FIELDS = ("prompt_tokens", "completion_tokens", "total_tokens")


def compact_response(body: dict[str, Any]) -> dict[str, Any]:
    """What the audits read of a completions answer: per choice its text or message content,
    finish reason, log-probs (token strings, log-probs, top log-probs where asked for; vLLM's
    ``prompt_logprobs``), and the usage counts."""
    out: dict[str, Any] = {}
    usage = body.get("usage")
    if isinstance(usage, dict):
        out["usage"] = {k: usage[k] for k in _USAGE_FIELDS if k in usage}
    if "prompt_logprobs" in body:
        out["prompt_logprobs"] = body["prompt_logprobs"]
    choices = []
    for c in body.get("choices") or []:
        if isinstance(c, dict):
            c = {k: c[k] for k in _CHOICE_FIELDS if k in c}
            if isinstance(c.get("message"), dict):
                c["message"] = {"content": c["message"].get("content")}
            if isinstance(c.get("logprobs"), dict):
                c["logprobs"] = {k: c["logprobs"][k] for k in _LOGPROB_FIELDS
                                 if k in c["logprobs"]}
        choices.append(c)
    out["choices"] = choices
    return out


class RequestLedger:
    """SQLite table of every request: key, status, response, attempts, latency, tokens, error.

    A row is committed as soon as its request finishes, so a killed run loses at most the
    requests in flight. The file is created private (0600). Answers are stored as
    :func:`compact_response` JSON, zlib-compressed (format 2, ``PRAGMA user_version``); a ledger
    of the previous format (whole answers as JSON text) is read as it is; one of a later format
    is refused.
    """

    FORMAT = 2

    SCHEMA = """CREATE TABLE IF NOT EXISTS requests (
        key TEXT PRIMARY KEY, path TEXT NOT NULL, status TEXT NOT NULL, http_status INTEGER,
        attempts INTEGER NOT NULL, latency_s REAL, prompt_tokens INTEGER,
        completion_tokens INTEGER, error TEXT, response TEXT, updated REAL NOT NULL)"""

    @classmethod
    def is_ledger(cls, path: str | os.PathLike) -> bool:
        """Whether ``path`` is a request ledger (a SQLite file whose ``requests`` table has this
        class's columns), read without changing it."""
        p = Path(path)
        try:
            with open(p, "rb") as fh:
                if fh.read(16) != b"SQLite format 3\x00":
                    return False
            db = sqlite3.connect(f"file:{p.resolve()}?mode=ro", uri=True)
            try:
                cols = [r[1] for r in db.execute("PRAGMA table_info(requests)")]
            finally:
                db.close()
        except (OSError, sqlite3.Error):
            return False
        return cols == ["key", "path", "status", "http_status", "attempts", "latency_s",
                        "prompt_tokens", "completion_tokens", "error", "response", "updated"]

    def __init__(self, path: str | os.PathLike | None):
        self.path = None if path is None else Path(path)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not self.path.exists():
                fd = os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600)
                os.close(fd)
        self._db = sqlite3.connect(":memory:" if self.path is None else str(self.path),
                                   check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL" if self.path is not None else "PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA synchronous=NORMAL")
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > self.FORMAT:
            self._db.close()
            raise InputError(f"the request ledger was written by a newer leakaudit (format "
                             f"{version}, this one reads up to {self.FORMAT}); give another "
                             "--out or --ledger", path=str(self.path))
        self._db.execute(self.SCHEMA)
        if version < self.FORMAT:  # new rows are compact; rows of format 1 are read as they are
            self._db.execute(f"PRAGMA user_version = {self.FORMAT}")
        self._lock = threading.Lock()

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored answer of a request that succeeded, ``{"rejected": error}`` for one the
        server refused (a 4xx other than 408/409/425/429: the same request is refused again),
        None for a request never answered (or that failed transiently: it is sent again)."""
        with self._lock:
            row = self._db.execute("SELECT status, response, error, http_status FROM requests "
                                   "WHERE key = ?", (key,)).fetchone()
        if row is None or row[0] not in ("ok", "rejected"):
            return None
        if row[0] == "rejected":
            return {"rejected": row[2], "http_status": row[3]}
        blob = row[1]
        return json.loads(zlib.decompress(blob) if isinstance(blob, bytes) else blob)

    def put(self, key: str, *, path: str, status: str, http_status: int | None, attempts: int,
            latency_s: float, prompt_tokens: int | None, completion_tokens: int | None,
            error: str | None, response: dict[str, Any] | None) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO requests VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (key, path, status, http_status, attempts, latency_s, prompt_tokens,
                 completion_tokens, error, None if response is None else zlib.compress(
                     json.dumps(compact_response(response), separators=(",", ":")).encode(), 6),
                 time.time()))

    def rows(self) -> list[dict[str, Any]]:
        with self._lock:
            cur = self._db.execute("SELECT key, path, status, http_status, attempts, latency_s, "
                                   "prompt_tokens, completion_tokens, error FROM requests "
                                   "ORDER BY updated")
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r)) for r in cur.fetchall()]

    def close(self) -> None:
        with self._lock:
            self._db.close()


@dataclass
class RequestStats:
    """What this client did in this run. ``requests == cached + succeeded + failed`` always."""

    requests: int = 0  #: logical requests asked for
    cached: int = 0  #: answered from the ledger, not sent
    succeeded: int = 0  #: sent and answered
    failed: int = 0  #: sent and failed after every retry (reported, never dropped)
    not_sent: int = 0  #: skipped because a budget was reached (not in ``requests``)
    attempts: int = 0  #: HTTP attempts, retries included
    retried: int = 0  #: requests that needed more than one attempt
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0  #: summed over successful requests
    bytes_received: int = 0  #: bytes of the successful answers as sent (before compaction)
    records: list[dict[str, Any]] = field(default_factory=list)  #: one per request

    @property
    def sent(self) -> int:
        return self.succeeded + self.failed

    def to_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "sent": self.sent, "cached": self.cached,
                "succeeded": self.succeeded, "failed": self.failed, "not_sent": self.not_sent,
                "attempts": self.attempts, "retried": self.retried,
                "tokens_billed": self.prompt_tokens + self.completion_tokens,
                "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "mean_latency_s": (self.latency_s / self.succeeded) if self.succeeded else None,
                "bytes_received": self.bytes_received}


def request_timeout(base_s: float, payload: dict[str, Any]) -> float:
    """Seconds to wait for one request: ``base_s`` per 1,000 tokens of work, at least ``base_s``.
    Work is the prompt (about 4 characters a token) plus 3 per token asked for per choice: a
    generated token takes a forward pass of its own, where a prompt's tokens share one
    (llama-cpp-python with log-probs: about 70 ms per generated token of SmolLM2-135M on one CPU
    thread, 9 ms per prompt token).

    >>> request_timeout(60, {"prompt": "x" * 16000, "max_tokens": 1000})
    420.0
    >>> request_timeout(60, {"prompt": "short", "max_tokens": 1})
    60.0
    """
    prompt = payload.get("prompt", payload.get("messages", ""))
    chars = len(prompt) if isinstance(prompt, str) else len(json.dumps(prompt))
    work = chars / 4 + 3 * int(payload.get("max_tokens") or 0) * int(payload.get("n") or 1)
    return float(base_s) * max(1.0, work / 1000)


def _retry_after(headers) -> float | None:
    v = headers.get("retry-after")
    if v is None:
        return None
    try:
        return max(0.0, float(v))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(v).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


class ApiClient:
    """Sends JSON POSTs to one OpenAI-compatible server; see the module docstring."""

    def __init__(self, base_url: str, *, api_key: str | None = None,
                 config: ClientConfig = ClientConfig(), ledger: str | os.PathLike | None = None,
                 log: Callable[[str], None] = print, pool=None):
        try:
            import httpx
        except ImportError as e:
            raise ImportError("endpoint targets need httpx and tenacity: "
                              "pip install 'leakaudit[api]'") from e

        config.validate()
        if not base_url.startswith(("http://", "https://")):
            raise InputError(f"endpoint URL must start with http:// or https://, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        #: several servers of the same model (:class:`leakaudit.targets.pool.EndpointPool`):
        #: each attempt goes to one of them; requests stay keyed by ``base_url``
        self.pool = pool
        self._failed_on = threading.local()
        self.config = config
        self.__key = Secret(api_key) if api_key else None
        self.ledger = RequestLedger(ledger)
        self.stats = RequestStats()
        self.log = log
        self._lock = threading.Lock()
        self._stop: str | None = None
        self._http = httpx.Client(
            timeout=httpx.Timeout(config.timeout_s),
            limits=httpx.Limits(max_connections=config.concurrency,
                                max_keepalive_connections=config.concurrency))

    def __repr__(self) -> str:  # never the key
        return f"ApiClient({self.base_url!r}, key={'set' if self.__key else 'none'})"

    def redact(self, text: str) -> str:
        """``text`` with the API key replaced (error bodies may echo request headers)."""
        if self.__key:
            text = text.replace(self.__key.value, "[REDACTED]")
        return text

    def close(self) -> None:
        self._http.close()
        self.ledger.close()

    # ------------------------------------------------------------------ one request
    def _headers(self) -> dict[str, str]:
        h = {"Content-Type": "application/json"}
        if self.__key:
            h["Authorization"] = f"Bearer {self.__key.value}"
        return h

    def get(self, path: str) -> dict[str, Any]:
        """An uncached GET (``/models``); counted as an attempt."""
        import httpx

        try:
            r = self._http.get(self.base_url + path, headers=self._headers())
            with self._lock:
                self.stats.attempts += 1
            r.raise_for_status()
            return r.json()
        except (httpx.HTTPError, ValueError) as e:
            raise LeakauditError(self.redact(f"GET {self.base_url}{path} failed: {e}")) from None

    def post_plain(self, path: str, payload: dict[str, Any], *, root: bool = False
                   ) -> dict[str, Any] | None:
        """An uncached POST outside the completions API (a server's tokenize route), counted as
        an attempt; ``root``: ``path`` is under the server's root, not under ``/v1``. None when
        the server has no such route or does not answer it (the caller then does without)."""
        import httpx

        base = self.base_url.removesuffix("/v1") if root else self.base_url
        with self._lock:
            self.stats.attempts += 1
        try:
            r = self._http.post(base + path, json=payload, headers=self._headers())
            return r.json() if r.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None

    def _attempt(self, path: str, payload: dict[str, Any]) -> tuple[dict[str, Any], int]:
        import httpx

        with self._lock:
            self.stats.attempts += 1
        if self.pool is not None:
            base = self.pool.acquire(avoid=getattr(self._failed_on, "url", None))
            try:
                out = self._attempt_at(base, path, payload, httpx)
            except TransientError:
                self._failed_on.url = base
                self.pool.release(base, ok=False, transient=True)
                raise
            except BaseException:
                self.pool.release(base, ok=False)
                raise
            self._failed_on.url = None
            self.pool.release(base, ok=True)
            return out
        return self._attempt_at(self.base_url, path, payload, httpx)

    def _attempt_at(self, base: str, path: str, payload: dict[str, Any], httpx):
        timeout = request_timeout(self.config.timeout_s, payload)
        try:
            r = self._http.post(base + path, json=payload, headers=self._headers(),
                                timeout=timeout)
        except (httpx.ConnectTimeout, httpx.PoolTimeout) as e:  # never reached the server
            raise TransientError(f"timeout: {type(e).__name__}") from None
        except httpx.TimeoutException as e:
            raise PermanentError(f"no answer in {timeout:.0f} s ({type(e).__name__}); not "
                                 "retried while the server may still be working on it (a "
                                 "rerun sends it again)") from None
        except httpx.TransportError as e:  # refused, reset, dropped mid-response
            raise TransientError(f"connection error: {type(e).__name__}: {e}") from None
        if r.status_code in RETRY_STATUSES:
            raise TransientError(f"HTTP {r.status_code}: {r.text[:200]}",
                                 retry_after=_retry_after(r.headers), status=r.status_code)
        if r.status_code >= 400:
            raise PermanentError(f"HTTP {r.status_code}: {r.text[:300]}", status=r.status_code)
        try:
            body = r.json()
        except ValueError:
            raise TransientError(f"malformed JSON in the response ({len(r.content)} bytes)",
                                 status=r.status_code) from None
        if not isinstance(body, dict) or "choices" not in body:
            raise TransientError("response has no 'choices'", status=r.status_code)
        from leakaudit.targets.api_replies import MalformedReply, check_reply

        try:  # a reply of the wrong shape fails here, counted, never scored
            check_reply(body)
        except MalformedReply as e:
            raise PermanentError(f"malformed reply: {e}", status=r.status_code) from None
        body["_bytes"] = len(r.content)  # counted, then dropped by compact_response
        return body, r.status_code

    def _wait(self, state) -> float:
        exc = state.outcome.exception()
        if isinstance(exc, TransientError) and exc.retry_after is not None:
            return min(self.config.max_wait_s, exc.retry_after)
        base = self.config.backoff_s * 2 ** (state.attempt_number - 1)
        return min(self.config.max_wait_s, base * (1 + 0.5 * random.random()))

    def _send(self, key: str, path: str, payload: dict[str, Any]) -> dict[str, Any] | ApiFailure:
        from tenacity import (RetryError, Retrying, retry_if_exception_type,
                              stop_after_attempt)

        attempts = 0
        t0 = time.perf_counter()
        http_status = None
        try:
            for att in Retrying(stop=stop_after_attempt(self.config.max_retries + 1),
                                wait=self._wait, retry=retry_if_exception_type(TransientError),
                                reraise=False):
                with att:
                    attempts = att.retry_state.attempt_number
                    body, http_status = self._attempt(path, payload)
        except RetryError as e:
            exc = e.last_attempt.exception()
            return self._fail(key, path, exc, attempts, time.perf_counter() - t0)
        except PermanentError as exc:
            return self._fail(key, path, exc, attempts, time.perf_counter() - t0)
        latency = time.perf_counter() - t0
        n_bytes = int(body.get("_bytes") or 0)
        body = compact_response(body)  # what a rerun gets from the ledger, the same now
        usage = body.get("usage") or {}
        pt, ct = usage.get("prompt_tokens"), usage.get("completion_tokens")
        self.ledger.put(key, path=path, status="ok", http_status=http_status, attempts=attempts,
                        latency_s=latency, prompt_tokens=pt, completion_tokens=ct, error=None,
                        response=body)
        with self._lock:
            s = self.stats
            s.succeeded += 1
            s.retried += attempts > 1
            s.prompt_tokens += int(pt or 0)
            s.completion_tokens += int(ct or 0)
            s.latency_s += latency
            s.bytes_received += n_bytes
            s.records.append({"key": key[:16], "path": path, "status": "ok",
                              "http_status": http_status, "attempts": attempts,
                              "latency_s": round(latency, 4), "prompt_tokens": pt,
                              "completion_tokens": ct})
            self._check_budget()
        return body

    def _fail(self, key, path, exc, attempts, latency) -> ApiFailure:
        msg = self.redact(str(exc))
        status = getattr(exc, "status", None)
        rejected = isinstance(exc, PermanentError) and status is not None and 400 <= status < 500 \
            and status not in (401, 403)  # a bad key is not the request's fault: retry next run
        self.ledger.put(key, path=path, status="rejected" if rejected else "failed",
                        http_status=status, attempts=attempts,
                        latency_s=latency, prompt_tokens=None, completion_tokens=None, error=msg,
                        response=None)
        with self._lock:
            self.stats.failed += 1
            self.stats.retried += attempts > 1
            self.stats.records.append({"key": key[:16], "path": path, "status": "failed",
                                       "http_status": status, "attempts": attempts,
                                       "latency_s": round(latency, 4), "error": msg})
            self._check_budget()
        self.log(f"warning: request {key[:12]} to {path} failed after {attempts} attempt(s): {msg}")
        return ApiFailure(key=key, error=msg, status=status, attempts=attempts)

    def _check_budget(self) -> None:  # under self._lock
        c, s = self.config, self.stats
        if c.max_requests is not None and s.sent >= c.max_requests:
            self._stop = f"request budget reached ({s.sent} of --max-requests {c.max_requests})"
        if c.max_tokens is not None and s.prompt_tokens + s.completion_tokens >= c.max_tokens:
            self._stop = (f"token budget reached ({s.prompt_tokens + s.completion_tokens} billed, "
                          f"--max-tokens {c.max_tokens})")

    # ------------------------------------------------------------------ many requests
    def _in_order(self, fn, items):
        """``fn`` over ``items`` on ``concurrency`` daemon threads; results yielded in input
        order. If the caller is interrupted (SIGTERM raises ``SystemExit`` in the main thread)
        no further request starts, and the process can exit at once: the requests in flight are
        abandoned unfinished (sent again by a rerun), everything finished is in the ledger."""
        import queue
        from concurrent.futures import Future

        futures = [Future() for _ in items]
        todo: queue.SimpleQueue = queue.SimpleQueue()
        for k in range(len(items)):
            todo.put(k)
        stop = threading.Event()

        def work() -> None:
            while not stop.is_set():
                try:
                    k = todo.get_nowait()
                except queue.Empty:
                    return
                try:
                    futures[k].set_result(fn(items[k]))
                except BaseException as e:  # noqa: BLE001  handed to the caller
                    futures[k].set_exception(e)

        for _ in range(min(self.config.concurrency, len(items))):
            threading.Thread(target=work, daemon=True).start()
        try:
            for f in futures:
                yield f.result()
        finally:
            stop.set()

    def post_many(self, path: str, payloads: Sequence[dict[str, Any]], *,
                  progress: Callable[[int], None] | None = None
                  ) -> list[dict[str, Any] | ApiFailure]:
        """POST every payload (cached ones are not sent); results in input order.

        Raises :class:`BudgetExhausted` after the in-flight requests finish when a budget is
        reached and some payloads were left unsent (those finished are in the ledger).
        """
        keys = [request_key(self.base_url, path, p) for p in payloads]
        out: list[Any] = [None] * len(payloads)
        todo: list[int] = []
        first_of: dict[str, int] = {}
        dup: list[tuple[int, int]] = []
        for i, k in enumerate(keys):
            if k in first_of:  # the same request twice in one batch: send it once
                dup.append((i, first_of[k]))
                continue
            first_of[k] = i
            hit = self.ledger.get(k)
            with self._lock:
                self.stats.requests += 1
            if hit is not None:
                if "rejected" in hit:  # refused before: the same request is refused again
                    out[i] = ApiFailure(key=k, error=hit["rejected"], status=hit["http_status"],
                                        attempts=0)
                else:
                    out[i] = hit
                with self._lock:
                    self.stats.cached += 1
                    self.stats.records.append({"key": k[:16], "path": path, "status": "cached"})
                if progress is not None:
                    progress(1)
            else:
                todo.append(i)

        def run(i: int):
            with self._lock:
                if self._stop is not None:
                    self.stats.not_sent += 1
                    self.stats.requests -= 1
                    return i, None
            res = self._send(keys[i], path, payloads[i])
            return i, res

        if todo:
            for i, res in self._in_order(run, todo):
                out[i] = res
                if progress is not None and res is not None:
                    progress(1)
        for i, j in dup:
            out[i] = out[j]
        if any(o is None for o in out):
            n = sum(o is None for o in out)
            raise BudgetExhausted(f"{self._stop}; {n} request(s) not sent. Everything finished "
                                  "is saved: rerun with a larger budget to continue")
        return out
