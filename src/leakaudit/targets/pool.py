"""A pool of OpenAI-compatible servers behind one endpoint audit.

Several servers that serve the same model (vLLM/SGLang/llama.cpp replicas, e.g. one per GPU node
of a Ray cluster) are one *logical* endpoint: :class:`EndpointPool` hands each HTTP attempt of an
:class:`~leakaudit.targets.api_client.ApiClient` to the server with the fewest requests in
flight (round-robin among equals), and after a transient failure (refused connection, timeout,
HTTP 429/5xx) the retry goes to another server, while a server keeps failing it is skipped for a
cool-down. The request ledger is untouched by this: a request is keyed by the pool's identity
(the client's ``base_url``, not the server that answered), so it is stored, counted and billed
once, and a rerun answers it from the ledger whichever server answered it the first time.

    client = ApiClient("http://a:8000/v1", pool=EndpointPool(["http://a:8000/v1", "http://b:8000/v1"]))

``stats()`` gives per server: attempts, successes, transient failures.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

from leakaudit.errors import InputError


class EndpointPool:
    """Least-in-flight selection over ``base_urls``, with failover and a cool-down."""

    def __init__(self, base_urls: Sequence[str], *, cooldown_s: float = 5.0, max_strikes: int = 3):
        urls = [u.rstrip("/") for u in base_urls]
        if not urls:
            raise InputError("an endpoint pool needs at least one server URL")
        for u in urls:
            if not u.startswith(("http://", "https://")):
                raise InputError(f"endpoint URL must start with http:// or https://, got {u!r}")
        if len(set(urls)) != len(urls):
            raise InputError("the endpoint pool lists a server twice")
        self.urls = urls
        self.cooldown_s = cooldown_s
        self.max_strikes = max_strikes
        self._lock = threading.Lock()
        self._in_flight = dict.fromkeys(urls, 0)
        self._strikes = dict.fromkeys(urls, 0)
        self._down_until = dict.fromkeys(urls, 0.0)
        self._stats = {u: {"attempts": 0, "ok": 0, "transient_failures": 0} for u in urls}
        self._turn = 0

    def acquire(self, avoid: str | None = None) -> str:
        """The server for the next attempt (``avoid``: the one that just failed it)."""
        with self._lock:
            now = time.monotonic()
            up = [u for u in self.urls if self._down_until[u] <= now] or list(self.urls)
            if avoid is not None and len(up) > 1:
                up = [u for u in up if u != avoid] or up
            low = min(self._in_flight[u] for u in up)
            cands = [u for u in up if self._in_flight[u] == low]
            u = cands[self._turn % len(cands)]
            self._turn += 1
            self._in_flight[u] += 1
            self._stats[u]["attempts"] += 1
            return u

    def release(self, url: str, *, ok: bool, transient: bool = False) -> None:
        """Report an attempt's outcome: a transient failure strikes the server; ``max_strikes``
        in a row take it out for ``cooldown_s``."""
        with self._lock:
            self._in_flight[url] -= 1
            if ok:
                self._stats[url]["ok"] += 1
                self._strikes[url] = 0
            elif transient:
                self._stats[url]["transient_failures"] += 1
                self._strikes[url] += 1
                if self._strikes[url] >= self.max_strikes:
                    self._down_until[url] = time.monotonic() + self.cooldown_s
                    self._strikes[url] = 0

    def stats(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {u: dict(s) for u, s in self._stats.items()}
