"""Start and stop a real llama.cpp OpenAI-compatible server (llama-cpp-python's ``server`` extra)
on 127.0.0.1 for the endpoint tests, and a loopback proxy that injects faults in front of it."""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaServer:
    """``python -m llama_cpp.server`` on a free loopback port; a context manager."""

    def __init__(self, gguf: Path, *, n_ctx: int, alias: str = "lab-target",
                 api_key: str | None = None, log: Path | None = None, startup_s: float = 120.0):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.alias = alias
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host",
               "127.0.0.1", "--port", str(self.port), "--n_ctx", str(n_ctx), "--n_threads", "1",
               "--n_threads_batch", "1", "--model_alias", alias, "--logits_all", "True",
               "--verbose", "False", "--n_batch", str(n_ctx)]
        if api_key is not None:
            cmd += ["--api_key", api_key]
        self.log_path = log
        out = open(log, "wb") if log is not None else subprocess.DEVNULL
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        deadline = time.monotonic() + startup_s
        while time.monotonic() < deadline:  # bounded wait for the server to answer
            if self.proc.poll() is not None:
                tail = Path(log).read_text(errors="replace")[-2000:] if log else ""
                raise RuntimeError(f"llama.cpp server exited with {self.proc.returncode}: {tail}")
            try:
                if httpx.get(self.url + "/models", headers=headers, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("llama.cpp server did not start in time")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class _LoopbackServer:
    """A threading HTTP server on a free loopback port (``url`` ends in /v1), closed on exit."""

    def _serve(self, handler) -> None:
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _relay_handler(upstream: str):
    """The request-handler base the loopback proxies share: quiet, keep-alive, GETs relayed to
    ``upstream`` with the caller's Authorization header, JSON replies."""

    class Relay(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):  # quiet
            pass

        def _auth(self):
            return {k: v for k, v in self.headers.items() if k.lower() == "authorization"}

        def _reply(self, code, body, extra=None):
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            r = httpx.get(upstream + self.path.removeprefix("/v1"), headers=self._auth(),
                          timeout=30)
            self._reply(r.status_code, r.content)

        def relay_outside_v1(self) -> bool:
            """Relay a POST outside ``/v1`` (a tokenize route) to the upstream server's root,
            uncounted; False for a ``/v1`` request (the proxy's own business)."""
            if self.path.startswith("/v1/"):
                return False
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            r = httpx.post(upstream.removesuffix("/v1") + self.path, content=body,
                           headers={"Content-Type": "application/json", **self._auth()},
                           timeout=30)
            self._reply(r.status_code, r.content)
            return True

    return Relay


class FaultProxy(_LoopbackServer):
    """A threaded loopback HTTP proxy in front of ``upstream`` that injects faults.

    ``plan(body, attempt) -> fault or None`` decides per request (``body``: the parsed JSON
    request, ``attempt``: how many times this exact body was seen before, from 0). Faults: ``"429"`` (with
    ``Retry-After: 0``), ``"500"``, ``"502"``, ``"503"``, ``"timeout"`` (sleeps past the client's
    timeout, then answers nothing), ``"drop"`` (closes the connection without a response),
    ``"malformed"`` (HTTP 200 with truncated JSON). ``forwarded`` counts bodies sent upstream;
    ``rewrite(body) -> body`` changes what is forwarded (a server that ignores a field).
    """

    def __init__(self, upstream: str, plan, *, sleep_s: float = 2.0, delay_s: float = 0.0,
                 rewrite=None):
        import hashlib

        self.upstream = upstream.rstrip("/")
        self.plan = plan
        self.seen: dict[str, int] = {}
        self.forwarded: dict[str, int] = {}
        self.faults: dict[str, int] = {}
        self.lock = threading.Lock()
        proxy = self

        class Handler(_relay_handler(self.upstream)):
            def do_POST(self):
                if self.relay_outside_v1():
                    return
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                key = hashlib.sha256(body).hexdigest()
                with proxy.lock:
                    attempt = proxy.seen.get(key, 0)
                    proxy.seen[key] = attempt + 1
                fault = proxy.plan(json.loads(body), attempt)
                if fault is not None:
                    with proxy.lock:
                        proxy.faults[fault] = proxy.faults.get(fault, 0) + 1
                if fault in ("429", "500", "502", "503"):
                    extra = {"Retry-After": "0"} if fault == "429" else None
                    self._reply(int(fault), b'{"error": "injected"}', extra)
                    return
                if fault == "timeout":
                    time.sleep(sleep_s)
                    self.close_connection = True
                    return
                if fault == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if delay_s:
                    time.sleep(delay_s)
                if rewrite is not None:  # a server that drops or changes request fields
                    body = json.dumps(rewrite(json.loads(body))).encode()
                r = httpx.post(proxy.upstream + self.path.removeprefix("/v1"), content=body,
                               headers={"Content-Type": "application/json", **self._auth()},
                               timeout=60)
                with proxy.lock:
                    proxy.forwarded[key] = proxy.forwarded.get(key, 0) + 1
                content = r.content
                if fault == "malformed":
                    content = content[: max(1, len(content) // 2)]
                self._reply(r.status_code, content)

        self._serve(Handler)



class ChoicesProxy(_LoopbackServer):
    """A loopback proxy that serves ``n`` (several choices per request) in front of a server
    that does not (llama-cpp-python drops ``n``): a request with ``n = k`` is answered by ``k``
    upstream requests, choice ``j`` with ``seed + j``, assembled into one response with
    ``choices[j].index = j`` and summed ``usage``. ``received`` counts requests by their ``n``."""

    def __init__(self, upstream: str):
        self.upstream = upstream.rstrip("/")
        self.received: dict[int, int] = {}
        self.lock = threading.Lock()
        proxy = self

        class Handler(_relay_handler(self.upstream)):
            def do_POST(self):
                if self.relay_outside_v1():
                    return
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                n = int(body.pop("n", 1) or 1)
                with proxy.lock:
                    proxy.received[n] = proxy.received.get(n, 0) + 1
                parts = []
                for j in range(n):
                    b = dict(body)
                    if "seed" in b:
                        b["seed"] = int(b["seed"]) + j
                    r = httpx.post(proxy.upstream + self.path.removeprefix("/v1"), json=b,
                                   headers=self._auth(), timeout=60)
                    if r.status_code != 200:
                        self._reply(r.status_code, r.content)
                        return
                    parts.append(r.json())
                out = parts[0]
                out["choices"] = [{**p["choices"][0], "index": j} for j, p in enumerate(parts)]
                out["usage"] = {k: sum((p.get("usage") or {}).get(k, 0) for p in parts)
                                for k in ("prompt_tokens", "completion_tokens", "total_tokens")}
                self._reply(200, json.dumps(out).encode())

        self._serve(Handler)


class PromptLogprobsShim(_LoopbackServer):
    """vLLM's ``prompt_logprobs`` wire format over llama.cpp (vLLM needs CUDA; it cannot run
    here). A request carrying ``prompt_logprobs`` is sent upstream with ``echo`` and the full
    vocabulary of ``logprobs`` instead, and answered as vLLM's ``/v1/completions`` answers it:
    ``choices[0].prompt_logprobs`` holds one entry per prompt token, ``None`` for the start token,
    else ``{"<token id>": {"logprob", "rank", "decoded_token"}}`` for the prompt's own token
    (ids from ``tokenizer``, the served model's). llama.cpp's echo gives the first text token no
    log-prob, so its entry is ``None`` too (vLLM would score it). ``shift=1`` reports each
    position's log-prob one token late (a misaligned server). Other requests pass through."""

    def __init__(self, upstream: str, tokenizer, *, shift: int = 0):
        self.upstream = upstream.rstrip("/")
        self.shifted = 0
        proxy = self
        vocab = len(tokenizer)

        class Handler(_relay_handler(self.upstream)):
            def do_POST(self):
                if self.relay_outside_v1():
                    return
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                path = proxy.upstream + self.path.removeprefix("/v1")
                if body.pop("prompt_logprobs", None) is None:
                    r = httpx.post(path, json=body, headers=self._auth(), timeout=60)
                    self._reply(r.status_code, r.content)
                    return
                want_echo, want_lp = body.get("echo"), body.get("logprobs")
                r = httpx.post(path, json={**body, "echo": True, "logprobs": vocab},
                               headers=self._auth(), timeout=60)
                if r.status_code != 200:
                    self._reply(r.status_code, r.content)
                    return
                out = r.json()
                c = out["choices"][0]
                L = c["logprobs"]
                ids = tokenizer(body["prompt"], add_special_tokens=False)["input_ids"]
                entries = [None]  # the start token this server puts first
                for i, t in enumerate(ids):
                    v = L["token_logprobs"][i]
                    top = L["top_logprobs"][i] or {}
                    if v is None:
                        entries.append(None)
                        continue
                    rank = 1 + sum(x > v + 1e-6 for x in top.values())
                    entries.append({str(t): {"logprob": v, "rank": rank,
                                             "decoded_token": L["tokens"][i]}})
                if shift:  # each value one position late, under the right token ids
                    vals = [None] * shift + [None if e is None else next(iter(e.values()))
                                             for e in entries][:-shift]
                    entries = [None if (e is None or v is None) else
                               {next(iter(e)): v} for e, v in zip(entries, vals)]
                    proxy.shifted += 1
                c["prompt_logprobs"] = entries
                if not want_echo:
                    c["text"] = c["text"][len(body["prompt"]):]
                if not want_lp:
                    c["logprobs"] = None
                elif not want_echo:
                    c["logprobs"] = {k: v[len(ids):] for k, v in L.items()}
                self._reply(200, json.dumps(out).encode())

        self._serve(Handler)
