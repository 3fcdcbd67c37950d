"""Targets behind an OpenAI-compatible HTTP API: ``openai-completions:URL`` and ``openai-chat:URL``.

A red team often has nothing but an endpoint (vLLM, llama.cpp, TGI or SGLang servers, hosted
providers). These backends audit it with whatever it exposes, and find out what that is by asking
(:meth:`OpenAICompletionsLM.probe`), never by assuming:

- ``prompt_logprobs``: vLLM's own ``prompt_logprobs`` request field (a log-prob keyed by token id
  for every prompt token, the first text token's too when the model adds BOS, with its rank), or
  else ``echo`` + ``logprobs`` on ``/completions`` (legacy OpenAI completions, vLLM, llama.cpp;
  log-probs keyed by token text). Chat endpoints never do.
- ``top_logprobs_max``: the largest ``logprobs`` k the server honours (OpenAI 5, vLLM 20, llama.cpp
  any), found by asking for decreasing k.
- ``n``, ``seed`` (same seed → same sample, another seed → another), ``top_k`` and ``top_p``
  (checked by their effect: ``top_k=1`` at temperature 1 must reproduce the greedy answer).
- token-level methods need a **local tokenizer** that matches the served model (``tokenizer=``);
  without one only text-level attacks run.

**Alignment.** A server's prompt log-probs must describe the tokens they are reported with. The
probe finds out once per server (recorded in ``probe_answers``) and every later number is read
by position or by token id, never by matching token strings (llama-cpp-python keys top log-probs
by token *string*; distinct tokens share strings, and some tokens echo as ""):

- token ids: the probe text's ids from the server's own tokenize route (llama-cpp-python's
  ``POST /extras/tokenize``) must equal the local tokenizer's (plus the start token the server
  adds); per text, the server's ``usage.prompt_tokens`` must equal the local count;
- values: the echoed log-prob of the probe's last token (by position) must equal the value the
  server reports when it *generates* that token after the rest of the probe. Where it does not
  (a llama.cpp server whose model adds no BOS reports each echoed value one row late, i.e. the
  log-prob of token i given tokens 1..i, which no realignment can recover), the server's
  generation path scores the text instead, since the log-probs it returns with generated tokens
  are the model's own:

  - ``prompt_logprobs_via == "grammar"``: one request per text. Its first token is the prompt,
    and the rest is generated at temperature 0 under a GBNF grammar that spells it (llama.cpp's
    ``grammar`` field), with the text's own tokens biased by ``logit_bias`` (longer tokens
    more, so the tokenizer's own split wins where a shorter token of the text would also fit
    the grammar). The values are read by position. Each generated token's string must be the
    local token's, so a generation that took another split of the text is noticed, and the
    rest of that span goes to the forced route. A byte of a multi-byte character cannot be
    told by its string, so it stays in a span only where no other token of the text could
    stand at its place.
  - ``"forced"``: one request per token. The prefix before it is the prompt, one generated token
    is forced by ``logit_bias`` on its id, and its log-prob is read by position. A byte of a
    character is never forced alone: llama-cpp-python would keep generating until the
    character is whole, that is until its context is full.

  Both are checked on the probe. Forcing the greedy token must reproduce the greedy value. The
  grammar route's values must then equal the forced route's, token by token (median
  difference ≤ 0.05 nats: llama.cpp's quantized numbers move by hundredths with evaluation
  order, while a misread row moves them by nats). A server that does not honour ``grammar``
  gets the forced route.

Cost per text: one request (echo, vLLM's ``prompt_logprobs`` or the grammar route, one top
log-prob per token), or one per scored token on the forced route. A whole-vocabulary request is
never made. With a BOS-adding llama.cpp
server the first text token has no log-prob (its echo nulls it and an empty prompt returns
none), so it is left out (``capabilities.first_token_logprob`` says so); a text cut at the
server's context is the only thing marked ``TokenScores.truncated``.

All HTTP goes through :class:`~leakaudit.targets.api_client.ApiClient`: cached, counted, retried,
budgeted; the API key never reaches a log or a file.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from leakaudit.errors import CapabilityError, InputError, LeakauditError
from leakaudit.targets.api_client import ApiClient, ApiFailure, ClientConfig, read_api_key
from leakaudit.targets.base import (Capabilities, Generation, LanguageModel, Progress,
                                    SamplingConfig, TokenScores, tokenizer_start_ids)

SCHEMES = ("openai-completions", "openai-chat")

#: Text whose scoring the alignment check compares against generation.
PROBE_TEXT = "The quick brown fox jumps over the lazy dog. The quick brown fox jumps over"

#: Tolerance (nats) when comparing two of the server's own log-probs of the same event.
ALIGN_TOL = 1e-3

#: ``logit_bias`` that forces one token id to be generated (logits are O(10); +100 wins).
FORCE_BIAS = 100.0

#: The grammar route is taken when its values of the probe's tokens differ from the forced
#: route's by at most this much (median over the tokens, nats): llama.cpp's quantized numbers
#: move by hundredths with evaluation order (measured on SmolLM2's Q4_1: 0.016 on one token
#: between a prefix evaluated at once and token by token), a misread row by nats.
GRAMMAR_TOL = 0.05

#: On the grammar route, each of a text's tokens gets ``FORCE_BIAS`` plus this much per byte of
#: its piece: where the grammar lets another split of the text fit (SmolLM2 took " " + "bash"
#: for the tokenizer's " b" + "ash" without it), the longer token, i.e. the tokenizer's own, wins.
GRAMMAR_BIAS_PER_BYTE = 30.0


@dataclass(frozen=True)
class ApiCapabilities(Capabilities):
    """:class:`Capabilities` plus what an HTTP endpoint was found to support."""

    kind: str = "completions"  #: "completions" or "chat"
    generated_logprobs: bool = False  #: log-probs of generated tokens
    top_logprobs_max: int = 0  #: largest top-log-probs k honoured (0: none)
    n: bool = False  #: several choices per request
    seed: bool = False  #: ``seed`` makes sampling reproducible
    temperature: bool = False
    top_k: bool = False
    top_p: bool = False
    tokenizer: bool = False  #: a matching local tokenizer was given
    first_token_logprob: bool = False  #: the first prompt token gets a log-prob
    aligned: str = "unknown"  #: "ok", "misaligned" (scoring refused), "untested"
    #: how prompt log-probs are asked for: "echo" (``echo`` + ``logprobs``, read by position),
    #: "prompt_logprobs" (vLLM's own field: log-probs keyed by token id), "grammar" (one
    #: request per text: the text after its first token generated under a grammar that spells
    #: it, its tokens' log-probs read by position), "forced" (one request per token: the token
    #: forced by ``logit_bias`` on its id), "" (not at all)
    prompt_logprobs_via: str = ""
    tokenize_route: bool = False  #: the server tokenizes text for us (``/extras/tokenize``)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class EndpointSpec:
    """A parsed ``openai-completions:URL`` / ``openai-chat:URL`` spec."""

    kind: str
    base_url: str

    @classmethod
    def parse(cls, spec: str) -> "EndpointSpec":
        scheme, sep, url = spec.partition(":")
        if not sep or scheme not in SCHEMES:
            raise InputError(f"not an endpoint spec: {spec!r} (expected "
                             f"{' or '.join(s + ':URL' for s in SCHEMES)})")
        if not url.startswith(("http://", "https://")):
            raise InputError(f"endpoint URL must start with http:// or https://, got {url!r}")
        return cls(kind=scheme.removeprefix("openai-"), base_url=url.rstrip("/"))


def replica_pool(base_url: str, replicas: Sequence[str]):
    """The :class:`~leakaudit.targets.pool.EndpointPool` of ``base_url`` and ``replicas``
    (None without replicas); bad or repeated URLs are an :class:`InputError`."""
    if not replicas:
        return None
    from leakaudit.targets.pool import EndpointPool

    return EndpointPool([base_url, *replicas])


def _context_of(path: str | None) -> int | None:
    """The context length a model folder's ``config.json`` declares (``n_positions``,
    ``max_position_embeddings``), when the tokenizer was given as the served model's folder."""
    if path is None or not (Path(path) / "config.json").is_file():
        return None
    try:
        cfg = json.loads((Path(path) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    v = cfg.get("max_position_embeddings") or cfg.get("n_positions")
    return int(v) if isinstance(v, int) and v > 0 else None


def _load_tokenizer(path: str | None):
    """The local tokenizer: a transformers folder, or the served GGUF file itself (its
    tokenizer, start-token setting included, as transformers reads it from the file)."""
    if path is None:
        return None
    from transformers import AutoTokenizer

    p = Path(path)
    try:
        if p.is_file() and p.suffix.lower() == ".gguf":
            return AutoTokenizer.from_pretrained(str(p.parent), gguf_file=p.name,
                                                 local_files_only=True)
        return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError, KeyError) as e:
        raise InputError(f"could not load the tokenizer: {str(e).splitlines()[0]}",
                         path=str(path)) from None


class _Endpoint:
    """What both backends share: the client, the model id, the probe record."""

    kind = "completions"

    def __init__(self, client: ApiClient, *, model: str | None, tokenizer=None,
                 name: str | None = None, log: Callable[[str], None] = print):
        self.client = client
        self.log = log
        if model is None:
            data = client.get("/models").get("data") or []
            ids = [m.get("id") for m in data if isinstance(m, dict)]
            if len(ids) != 1:
                raise InputError(f"the server serves {len(ids)} models ({', '.join(map(str, ids))});"
                                 " name one with --model")
            model = ids[0]
        self.model_id = str(model)
        self.tokenizer = tokenizer
        self.name = name or self.model_id
        self.probe_answers: dict[str, Any] = {}
        self.warnings: list[str] = []
        #: never ask for more top log-probs than this (a hosted API's limit, or cost); None: any
        self.max_logprobs: int | None = None

    @classmethod
    def from_spec(cls, spec: str, *, model: str | None = None, api_key_env: str | None = None,
                  api_key_file: str | None = None, tokenizer: str | None = None,
                  config: ClientConfig = ClientConfig(), ledger: str | Path | None = None,
                  name: str | None = None, probe: bool = True, max_logprobs: int | None = None,
                  context: int | None = None, replicas: Sequence[str] = (), log=print):
        """Build the backend a spec names (``openai-completions:`` → :class:`OpenAICompletionsLM`,
        ``openai-chat:`` → :class:`OpenAIChatModel`) and probe its capabilities.

        ``replicas``: more servers of the same model (base URLs ending in /v1). Requests then
        go to the server with the fewest in flight and fail over (:class:`~leakaudit.exec.
        endpoint_pool.EndpointPool`); they stay keyed by the spec's URL, so the ledger stores
        and counts each once whichever server answered."""
        es = EndpointSpec.parse(spec)
        klass = OpenAICompletionsLM if es.kind == "completions" else OpenAIChatModel
        pool = replica_pool(es.base_url, replicas)
        key = read_api_key(env=api_key_env, file=api_key_file)
        client = ApiClient(es.base_url, api_key=key, config=config, ledger=ledger, log=log,
                           pool=pool)
        obj = klass(client, model=model, tokenizer=_load_tokenizer(tokenizer), name=name, log=log)
        obj.max_logprobs = max_logprobs
        ctx = context if context is not None else _context_of(tokenizer)
        if ctx is not None:
            obj.max_length = int(ctx)
        if probe:
            obj.probe()
        return obj

    # ------------------------------------------------------------------ tokens
    def _need_tokenizer(self):
        if self.tokenizer is None:
            raise CapabilityError("token-level access needs a local tokenizer matching the "
                                  "served model (--tokenizer)")
        return self.tokenizer

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        if not texts:
            return []
        enc = self._need_tokenizer()(list(texts), add_special_tokens=False)
        return [list(x) for x in enc["input_ids"]]

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        enc = self._need_tokenizer()(text, add_special_tokens=False, return_offsets_mapping=True)
        return [tuple(o) for o in enc["offset_mapping"]]

    def decode(self, ids: Sequence[int]) -> str:
        return self._need_tokenizer().decode(list(ids), skip_special_tokens=True)

    def server_tokenize(self, text: str) -> list[int] | None:
        """The server's own token ids of ``text`` (its start token included) from its tokenize
        route (llama-cpp-python's ``POST /extras/tokenize``); None when it has none."""
        r = self.client.post_plain("/extras/tokenize", {"input": text}, root=True)
        toks = (r or {}).get("tokens")
        return [int(t) for t in toks] if isinstance(toks, list) else None

    # -- plumbing
    def _post(self, payloads: Sequence[dict[str, Any]], progress: Progress | None = None):
        path = "/completions" if self.kind == "completions" else "/chat/completions"
        return self.client.post_many(path, [{"model": self.model_id, **p} for p in payloads],
                                     progress=progress)

    def _one(self, payload: dict[str, Any]) -> dict[str, Any] | None:
        (r,) = self._post([payload])
        return None if isinstance(r, ApiFailure) else r

    def fingerprint(self) -> str:
        """The model id plus the probe answers (a remote model's weights are not visible)."""
        h = hashlib.sha256(json.dumps({"model": self.model_id, "url": self.client.base_url,
                                       "probe": self.probe_answers}, sort_keys=True,
                                      default=str).encode())
        return h.hexdigest()[:16]

    def request_summary(self) -> dict[str, Any]:
        out = self.client.stats.to_dict()
        if self.client.pool is not None:  # per server: attempts, successes, transient failures
            out["servers"] = self.client.pool.stats()
        return out

    def request_records(self) -> list[tuple[str, dict[str, Any]]]:
        """One ``api_request`` record per request (status, attempts, latency, tokens; no text)."""
        return [("api_request", dict(r)) for r in self.client.stats.records]

    def close(self) -> None:
        self.client.close()


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte → printable-character map that byte-level BPE vocabularies are written in
    (Radford et al. 2019, ``encoder.py``)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def _echo_logprobs(resp: dict[str, Any]) -> dict[str, Any]:
    return ((resp.get("choices") or [{}])[0].get("logprobs")) or {}


def _prompt_count(resp: dict[str, Any] | None) -> int | None:
    """The server's own count of the prompt's tokens (``usage.prompt_tokens``; its start token
    included), None when it does not say."""
    v = ((resp or {}).get("usage") or {}).get("prompt_tokens")
    return int(v) if isinstance(v, int) else None


def _first_difference(a: Sequence[int], b: Sequence[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def tokenization_error(text: str, *, local: Sequence[int], server_count: int | None,
                       server_ids: Sequence[int] | None, start: int) -> LeakauditError:
    """The error for a text the server tokenizes unlike the local tokenizer, with the true counts
    of both sides (``start``: the start tokens the server adds) and, when the server's own ids
    are known, the first token where they differ."""
    n = len(local)
    head = f"text starting {text[:30]!r}"
    if server_ids is not None:
        ids = list(server_ids)[start:]
        i = _first_difference(ids, local)
        where = (f"; first difference at token {i}: server id "
                 f"{ids[i] if i < len(ids) else 'none'}, local id "
                 f"{local[i] if i < n else 'none'}") if ids != list(local) else \
            " (the ids agree: the server's completion route counts differently)"
        return LeakauditError(
            f"the server tokenizes a {head} into {len(ids)} tokens (+{start} start), the local "
            f"tokenizer into {n}{where}: the tokenizer does not match the served model")
    return LeakauditError(
        f"the server counts {server_count} prompt tokens for a {head} where the local tokenizer "
        f"has {n} (+{start} start token{'s' if start != 1 else ''}): the tokenizer does not match "
        "the served model")


def _top_max(d: Any) -> float | None:
    """The largest value of one position's top log-probs (read by value, never by key)."""
    return max(d.values()) if isinstance(d, dict) and d else None


def _positional(resp: dict[str, Any], positions: Sequence[int]) -> tuple[list[float | None],
                                                                        list[bool]]:
    """The log-probs a ``logprobs`` answer reports at ``positions`` (of ``token_logprobs``, by
    position: token strings are never read) and whether each is the largest of its position's
    top log-probs (the argmax)."""
    L = _echo_logprobs(resp)
    tlp, top = L.get("token_logprobs") or [], L.get("top_logprobs") or []
    vals, am = [], []
    for i in positions:
        v = tlp[i] if i < len(tlp) else None
        best = _top_max(top[i]) if i < len(top) else None
        vals.append(None if v is None else float(v))
        am.append(v is not None and best is not None and v >= best - 1e-6)
    return vals, am


def _prompt_logprobs(resp: dict[str, Any] | None) -> list[Any] | None:
    """vLLM's ``prompt_logprobs``: one entry per prompt token (``None`` for the first), each
    ``{token id: {"logprob", "rank", "decoded_token"}}`` with the prompt's own token among them.
    Completions put it in the choice, chat completions at the top level."""
    if not resp:
        return None
    v = (resp.get("choices") or [{}])[0].get("prompt_logprobs")
    if v is None:
        v = resp.get("prompt_logprobs")
    return v if isinstance(v, list) else None


def _plp_entry(entry: Any, token_id: int) -> tuple[float, bool] | None:
    """(log-prob, is the top-ranked token) of ``token_id`` in one ``prompt_logprobs`` entry."""
    if not isinstance(entry, dict):
        return None
    v = entry.get(str(token_id), entry.get(token_id))
    if v is None:
        return None
    if isinstance(v, dict):
        return float(v["logprob"]), v.get("rank") == 1
    return float(v), False  # a bare number: no rank to tell the argmax by


def _token_scores(x: list[int], lp: np.ndarray, am: np.ndarray, was_cut: bool, *,
                  last: int | None, sampling) -> TokenScores:
    """A text's :class:`TokenScores` from the log-probs the server gave its tokens (NaN: none).
    Token convention (targets/base.py): a score covers tokens 2..n of the sequence; tokens the
    server gave no log-prob (the first text token behind a BOS-adding llama.cpp echo, a prefix
    that does not survive re-tokenization on the forced route) are left out, counted by the
    caller. ``truncated`` means one thing only: the text was cut at the server's context."""
    keep = np.zeros(len(x), dtype=bool)
    keep[1:] = ~np.isnan(lp[1:])
    if last is not None:
        keep[: max(0, len(x) - last)] = False
    idx = np.flatnonzero(keep)
    lp, am = lp[idx], am[idx]
    return TokenScores(token_ids=np.asarray(x, dtype=np.int64)[idx], logprobs=lp,
                       is_argmax=am, truncated=bool(was_cut),
                       sampling_logprobs=lp.copy() if sampling is not None else None)


def _choice_text(resp: dict[str, Any]) -> str:
    c = resp["choices"][0]
    if "message" in c:
        return c["message"].get("content") or ""
    return c.get("text") or ""


def gbnf_literal(text: str) -> str:
    r"""``text`` as one string literal of llama.cpp's GBNF grammar format: quotes, backslashes and
    control characters escaped, every other character (UTF-8 included) as it is.

    >>> print(gbnf_literal('say "hi"\n naïve \\ \x07'))
    "say \"hi\"\n naïve \\ \x07"
    """
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch in _GBNF_ESCAPES:
            out.append(_GBNF_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


_GBNF_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


class OpenAICompletionsLM(_Endpoint, LanguageModel):
    """A causal LM behind ``/v1/completions``. Implements :class:`LanguageModel` as far as the
    server allows; see the module docstring."""

    kind = "completions"

    def __init__(self, client: ApiClient, *, model: str | None, tokenizer=None,
                 name: str | None = None, log=print):
        super().__init__(client, model=model, tokenizer=tokenizer, name=name, log=log)
        self.capabilities = ApiCapabilities(
            prompt_logprobs=False, vocab_stats=False, argmax=False, generation=True,
            seeded_generation=False, kind="completions", tokenizer=tokenizer is not None,
            aligned="untested")
        self._adds_bos: bool | None = None
        #: most choices asked for in one request when the server honours ``n`` (several samples
        #: of the same prompt share one request)
        self.max_n = 16
        self._neutral: dict[str, Any] = {}
        #: the server's context in tokens (None: unknown; texts are sent whole); ``context=``
        #: or the tokenizer folder's model config sets it
        self.max_length = int(getattr(tokenizer, "model_max_length", 0) or 0) or None
        if self.max_length is not None and self.max_length > 10**6:
            self.max_length = None

    # ------------------------------------------------------------------ probing
    def probe(self) -> ApiCapabilities:
        """Ask the server what it supports (a handful of requests, cached in the ledger)."""
        ans: dict[str, Any] = {}
        gen = self._one({"prompt": PROBE_TEXT, "max_tokens": 4, "temperature": 0})
        if gen is None:
            raise LeakauditError(f"the endpoint {self.client.base_url} did not answer a "
                                 "completion request (see the warnings above)")
        ans["greedy"] = _choice_text(gen)
        # top log-probs: the largest k honoured, up to 20 (requests that fail are answered with
        # k = 0); a whole-vocabulary request is never made: nothing here reads one
        kmax = 0
        for k in (20, 5, 1):
            if self.max_logprobs is not None and k > self.max_logprobs:
                continue
            r = self._one({"prompt": PROBE_TEXT, "max_tokens": 1, "temperature": 0, "logprobs": k})
            top = _echo_logprobs(r or {}).get("top_logprobs") or [None]
            # honoured if about k entries came back (tokens that decode to the same text, such
            # as byte pieces of one UTF-8 character, share one key, so a full answer is < k)
            if top[0] and len(top[0]) >= max(1, k // 2):
                kmax = k if len(top[0]) >= k // 2 else len(top[0])
                break
        ans["top_logprobs_max"] = kmax
        # vLLM's prompt_logprobs first (keyed by token id: no text matching, and the first
        # text token is scored when the model adds BOS); a server that does not know the field
        # ignores it (or refuses the request), and echo is asked next
        vp = self._one({"prompt": PROBE_TEXT, "max_tokens": 1, "temperature": 0,
                        "prompt_logprobs": 1})
        n_vllm = sum(isinstance(e, dict) and bool(e) for e in _prompt_logprobs(vp) or [])
        ans["prompt_logprobs_scored"] = n_vllm
        echo = self._one({"prompt": PROBE_TEXT, "max_tokens": 1, "temperature": 0, "logprobs": 1,
                          "echo": True})
        elp = (echo or {}).get("choices", [{}])[0].get("logprobs") if echo else None
        n_scored = sum(v is not None for v in (elp or {}).get("token_logprobs") or [])
        via = "prompt_logprobs" if n_vllm >= 2 else "echo" if n_scored >= 2 else ""
        prompt_lp = bool(via)
        ans["echo_scored"] = n_scored
        ans["prompt_logprobs_via"] = via
        # does the server put a start token before a prompt? Its own token ids when it has a
        # tokenize route, else its prompt token count against the local tokenizer's
        server_ids = self.server_tokenize(PROBE_TEXT)
        ans["tokenize_route"] = server_ids is not None
        if self.tokenizer is not None:
            local = self.tokenize([PROBE_TEXT])[0]
            used = _prompt_count(vp if via == "prompt_logprobs" else echo)
            if server_ids is not None:
                start = len(server_ids) - len(local)
                if start not in (0, 1) or server_ids[start:] != local:
                    raise tokenization_error(PROBE_TEXT, local=local, server_count=used,
                                             server_ids=server_ids, start=max(0, start))
                self._adds_bos = start == 1
            elif used is not None:
                self._adds_bos = used == len(local) + 1
        ans["adds_bos"] = self._adds_bos
        rn = self._one({"prompt": PROBE_TEXT, "max_tokens": 4, "temperature": 1.0, "n": 2,
                        "seed": 1})
        n_ok = bool(rn and len(rn["choices"]) == 2)
        # servers with their own sampling defaults (llama.cpp: repeat_penalty 1.1, min_p 0.05,
        # top_k 40, top_p 0.95, applied even at temperature 0) must be set to plain sampling
        neutral = {"repeat_penalty": 1.0, "min_p": 0.0, "top_k": 0, "top_p": 1.0}
        rnt = self._one({"prompt": PROBE_TEXT, "max_tokens": 4, "temperature": 0, **neutral})
        self._neutral = neutral if rnt is not None else {}
        ans["neutral_sampling"] = sorted(self._neutral)
        samples = {}
        for s in (1, 1, 2, 3):
            # "user" (a standard field) tells two same-seed requests apart in the ledger
            r = self._one({"prompt": PROBE_TEXT, "max_tokens": 8, "temperature": 1.0, "seed": s,
                           "user": f"leakaudit-seed-probe-{len(samples.get(s, []))}",
                           **self._neutral})
            samples.setdefault(s, []).append(None if r is None else _choice_text(r))
        same = samples[1][0] is not None and samples[1][0] == samples[1][1]
        differ = len({samples[s][0] for s in (1, 2, 3)}) > 1
        seeded = same and differ
        temperature_ok = differ  # temperature 1 gives varied samples, temperature 0 the greedy one
        tk = self._one({"prompt": PROBE_TEXT, "max_tokens": 8, "temperature": 1.0, "seed": 5,
                        **self._neutral, "top_k": 1})
        tp = self._one({"prompt": PROBE_TEXT, "max_tokens": 8, "temperature": 1.0, "seed": 5,
                        **self._neutral, "top_p": 1e-9})
        g8 = self._one({"prompt": PROBE_TEXT, "max_tokens": 8, "temperature": 0, **self._neutral})
        g8t = _choice_text(g8) if g8 else None
        top_k_ok = bool(tk and g8t is not None and _choice_text(tk) == g8t and differ)
        top_p_ok = bool(tp and g8t is not None and _choice_text(tp) == g8t and differ)
        ans.update(n=n_ok, seed=seeded, top_k=top_k_ok, top_p=top_p_ok, greedy8=g8t)
        caps = dict(prompt_logprobs=prompt_lp,
                    argmax=via == "prompt_logprobs" or (prompt_lp and kmax >= 1),
                    generated_logprobs=kmax >= 1, top_logprobs_max=kmax, top_logprobs=kmax,
                    n=n_ok, seed=seeded,
                    temperature=temperature_ok, top_k=top_k_ok, top_p=top_p_ok,
                    seeded_generation=seeded)
        self.capabilities = ApiCapabilities(
            vocab_stats=False, generation=True, kind="completions",
            tokenizer=self.tokenizer is not None, aligned="untested", prompt_logprobs_via=via,
            tokenize_route=server_ids is not None, **caps)
        if via == "prompt_logprobs" and self.tokenizer is not None:
            self._check_alignment_ids(ans)
        elif prompt_lp and self.tokenizer is not None:
            self._check_alignment(ans)
        elif prompt_lp:
            self.warnings.append("no local tokenizer given: token-level attacks (memorization, "
                                 "membership, exposure) are skipped; give --tokenizer matching "
                                 "the served model")
        self.probe_answers = ans
        for w in self.warnings:
            self.log(f"warning: {w}")
        return self.capabilities

    def _check_alignment(self, ans: dict[str, Any]) -> None:
        """Which route reads prompt log-probs right on this server: the echoed value of the probe's
        last token (by position) against the generation path's value of that token; where they
        differ, the forced route (that token forced by its id), checked against the same value."""
        want, head_ids, probe_text, ids = self._alignment_probe()
        replace_caps: dict[str, Any] = {"aligned": "untested"}
        echo = None
        if want is not None:
            echo = self._one({"prompt": probe_text, "max_tokens": 1, "temperature": 0,
                              "logprobs": 1, "echo": True})
        if echo is not None:
            self._check_count(probe_text, ids, echo)
            (got,), _ = _positional(echo, [len(ids) - 1])
            forced = None
            if got is None or abs(got - want) > ALIGN_TOL:
                forced = self._forced_check(head_ids, ids[-1], want)
            ans["align"] = {"generated": want, "echo_last": got, "forced": forced}
            if got is not None and abs(got - want) <= ALIGN_TOL:
                replace_caps["aligned"] = "ok"
            elif forced is not None and abs(forced - want) <= ALIGN_TOL:
                grammar = self._grammar_check(ids)
                ans["align"]["grammar"] = grammar
                if grammar is not None and grammar["median_abs_diff"] <= GRAMMAR_TOL:
                    via, how = "grammar", (
                        "each text is scored by one request that generates it under a grammar "
                        "spelling it (its tokens' log-probs read by position; a token the "
                        "generation does not follow is scored by its own forced request)")
                else:
                    via, how = "forced", ("each token is scored by its own request, the token "
                                          "forced by its id")
                replace_caps.update(aligned="ok", prompt_logprobs_via=via)
                self.warnings.append(
                    "the server's echoed log-probs do not describe the tokens they are reported "
                    f"with (echo {got} vs generation {want:.4f} for the probe's last token; a "
                    "llama.cpp server whose model adds no BOS reports log p(token i | tokens "
                    f"1..i)): {how}")
            else:
                replace_caps.update(aligned="misaligned", prompt_logprobs=False, argmax=False)
                self.warnings.append(
                    "the server's echoed log-probs do not line up with the tokens they score "
                    f"(echo {got} vs generation {want:.4f} for the probe's last token) and a "
                    "forced token is not scored alike either: prompt log-prob attacks are refused")
        ans["prompt_logprobs_via"] = replace_caps.get("prompt_logprobs_via",
                                                      self.capabilities.prompt_logprobs_via)
        self._first_token_note(replace_caps)
        self.capabilities = ApiCapabilities(**{**self.capabilities.to_dict(), **replace_caps})

    def _forced_check(self, head_ids: list[int], greedy: int, want: float) -> float | None:
        """The value the forced route gives the greedy token after ``head_ids`` (it must equal
        the generation path's ``want``), or None when the server does not honour ``logit_bias``
        by token id: forcing another token must then generate something else, scored lower."""
        # an ordinary word's first token (a special one may end generation: no log-prob back)
        other = next(x[0] for x in self.tokenize([" the", " and"]) if x and x[0] != greedy)
        got = self._post_forced([(head_ids, greedy), (head_ids, other)])
        if any(isinstance(r, ApiFailure) for r in got):
            return None
        (v,), _ = _positional(got[0], [0])
        (w,), _ = _positional(got[1], [0])
        honoured = w is not None and w < want - ALIGN_TOL and \
            _choice_text(got[1]) != _choice_text(got[0])
        return v if honoured else None

    def _grammar_check(self, ids: list[int]) -> dict[str, float] | None:
        """How the grammar route's values of the probe's tokens compare with the forced route's
        (checked already) token by token: their median and largest absolute difference, or None
        when the server does not follow the route (no ``grammar`` field, or a generation that
        strays from the text). A route that read another row (as the misaligned echo does) is
        nats off at most tokens; evaluation order alone moves llama.cpp's quantized numbers by
        hundredths (a prefix evaluated as one batch or token by token)."""
        spans = self._grammar_plan(ids, 1)
        if spans != [(1, len(ids))]:
            return None
        plan = spans[0]
        got = self._post([self._grammar_payload(ids, *plan)])[0]
        if isinstance(got, ApiFailure) or got is None:
            return None
        vals, _ = self._read_grammar(ids, *plan, got)
        if len(vals) != len(ids) - plan[0] or any(v is None for v in vals):
            return None
        forced = self._post_forced([(ids[:j], ids[j]) for j in range(plan[0], len(ids))])
        if any(isinstance(r, ApiFailure) for r in forced):
            return None
        ref = [_positional(r, [0])[0][0] for r in forced]
        if any(v is None for v in ref):
            return None
        d = np.abs(np.asarray(vals, dtype=float) - np.asarray(ref, dtype=float))
        return {"median_abs_diff": float(np.median(d)), "max_abs_diff": float(d.max()),
                "tokens": int(d.size)}

    def _first_token_note(self, replace_caps: dict[str, Any], first: bool = False) -> None:
        """Record whether the first text token gets a log-prob: never on a BOS-adding server's
        echo (llama.cpp nulls it), always on the forced route (it is context only there)."""
        via = replace_caps.get("prompt_logprobs_via", self.capabilities.prompt_logprobs_via)
        replace_caps["first_token_logprob"] = first or not self._adds_bos
        if self._adds_bos and not first and via == "echo" and \
                replace_caps.get("aligned") == "ok":
            self.warnings.append("the server adds a start token but gives the first text token "
                                 "no log-prob: that token of every text is left out (its other "
                                 "tokens are scored)")

    def _alignment_probe(self):
        """The known answer both alignment checks compare with: the server's own log-prob of its
        greedy next token after the probe text without its last token (``head``), read by
        position from the generation path. Returns (that value or None, head's ids, probe text
        ``head`` + that token, its ids); the value is None when the greedy token does not
        tokenize as one token after ``head`` (the check is then not made)."""
        ids = self.tokenize([PROBE_TEXT])[0]
        head_ids = ids[:-1]
        head = self.decode(head_ids)
        gen = self._one({"prompt": head, "max_tokens": 1, "temperature": 0, "logprobs": 1,
                         **self._neutral})
        if gen is None:
            return None, head_ids, PROBE_TEXT, ids
        (want,), _ = _positional(gen, [0])
        t = self.tokenize([head + _choice_text(gen)])[0]
        if want is None or len(t) != len(ids) or t[:-1] != head_ids:
            self.warnings.append("alignment not checked: the server's greedy token after the "
                                 "probe does not tokenize as one token")
            return None, head_ids, PROBE_TEXT, ids
        return want, head_ids, head + _choice_text(gen), t

    def _check_alignment_ids(self, ans: dict[str, Any]) -> None:
        """The alignment check for vLLM's ``prompt_logprobs``: the log-prob reported for the probe's
        last token (keyed by its id) against the generation path's after the rest of the probe;
        the server's token ids must be the local tokenizer's."""
        want, _, probe_text, ids = self._alignment_probe()
        got = self._one({"prompt": probe_text, "max_tokens": 1, "temperature": 0,
                         "prompt_logprobs": 1})
        plist = _prompt_logprobs(got)
        aligned, first = "untested", False
        if plist is not None:
            off = len(plist) - len(ids)
            if off not in (0, 1) or any(
                    plist[off + i] and _plp_entry(plist[off + i], t) is None
                    for i, t in enumerate(ids)):
                raise LeakauditError(
                    f"the server's prompt log-probs cover {len(plist)} tokens that are not the "
                    f"local tokenizer's {len(ids)} (+ a start token): the tokenizer does not "
                    "match the served model")
            first = _plp_entry(plist[off], ids[0]) is not None
            self._adds_bos = off == 1
            ans["adds_bos"] = self._adds_bos
            last = _plp_entry(plist[-1], ids[-1])
            ans["align"] = {"generated": want, "prompt_logprob_last": last and last[0]}
            if last is None or want is None:
                self.warnings.append("alignment not checked: the probe's last token has no "
                                     "prompt log-prob or no generated value")
            elif abs(last[0] - want) <= ALIGN_TOL:
                aligned = "ok"
            else:
                aligned = "misaligned"
                self.warnings.append(
                    "the server's prompt log-probs do not line up with the tokens they score "
                    f"({last[0]:.4f} vs generation {want:.4f} for the probe's last token): "
                    "prompt log-prob attacks are refused")
        caps = {"aligned": aligned}
        if aligned == "misaligned":
            caps.update(prompt_logprobs=False, argmax=False)
        self._first_token_note(caps, first=first)
        self.capabilities = ApiCapabilities(**{**self.capabilities.to_dict(), **caps})

    def _check_count(self, text: str, local: list[int], resp: dict[str, Any]) -> None:
        """Raise unless the server counted ``text``'s prompt tokens as the local tokenizer does
        (plus the start token it adds); the error names both sides' counts, and the first
        differing id when the server has a tokenize route. Token strings are not compared: some
        tokens echo as "" (a byte of a UTF-8 character) and distinct tokens share strings."""
        start = int(bool(self._adds_bos))
        used = _prompt_count(resp)
        if used is None or used == len(local) + start:
            return
        raise tokenization_error(text, local=local, server_count=used,
                                 server_ids=self.server_tokenize(text), start=start)

    @property
    def start_ids(self) -> list[int]:
        """The local tokenizer's default start tokens: a document is the same token sequence as
        in-process (the token convention), whatever the server adds itself."""
        if not hasattr(self, "_start_ids"):
            self._start_ids = tokenizer_start_ids(self.tokenizer) if self.tokenizer is not None else []
        return list(self._start_ids)

    @property
    def bos_id(self) -> int:
        t = self._need_tokenizer()
        for c in (t.bos_token_id, t.eos_token_id, t.pad_token_id):
            if c is not None:
                return int(c)
        return 0

    # ------------------------------------------------------------------ scoring
    def score_ids(self, ids, *, batch_size: int = 16, vocab_stats: bool = False,
                  sampling: SamplingConfig | None = None, last: int | None = None,
                  progress: Progress | None = None) -> list[TokenScores]:
        """Teacher-forced scores from ``echo`` + ``logprobs``; one request per sequence.

        ``sampling`` is served only for plain sampling (temperature 1, no top-k/top-p), where the
        sampling log-prob equals the model's log-prob; ``vocab_stats`` never (the API does not
        return full-vocabulary moments). A request that failed after every retry raises (the
        attack cannot score a document it has no answer for) after every other request finished.
        """
        caps = self.capabilities
        caps.require("prompt_logprobs", who="teacher-forced scoring over the API")
        self._need_tokenizer()
        if vocab_stats:
            raise CapabilityError("the API returns no full-vocabulary statistics (Min-K%++)")
        if sampling is not None and (sampling.top_k or sampling.top_p is not None or
                                     sampling.temperature != 1.0 or sampling.decay is not None):
            raise CapabilityError("sampling log-probs over the API are served for temperature 1 "
                                  "without top-k/top-p only")
        seqs = [[int(v) for v in x] for x in ids]
        cut = [False] * len(seqs)
        if self.max_length is not None:
            # the server's context holds its start token, the text and the one token the request
            # generates; a longer text is cut (``truncated``) where its text re-tokenizes alike
            cap = self.max_length - 1 - int(bool(self._adds_bos))
            for i, x in enumerate(seqs):
                if len(x) > cap:
                    y = x[:cap]
                    for _ in range(16):
                        if not y or self.tokenize([self.decode(y)])[0] == y:
                            break
                        y = y[:-1]
                    seqs[i], cut[i] = y, True
        texts = [self.decode(x) for x in seqs]
        if caps.prompt_logprobs_via == "prompt_logprobs":
            return self._score_prompt_logprobs(seqs, texts, cut, last=last, sampling=sampling,
                                               progress=progress)
        if caps.prompt_logprobs_via == "forced":
            return self._score_forced(seqs, cut, last=last, sampling=sampling, progress=progress)
        if caps.prompt_logprobs_via == "grammar":
            return self._score_grammar(seqs, cut, last=last, sampling=sampling, progress=progress)
        resps = self._post_texts(seqs, texts, {"logprobs": 1, "echo": True}, progress)
        self._raise_failed(resps)
        out = []
        for x, text, r, was_cut in zip(seqs, texts, resps, cut):
            lp, am = self._parse_echo(x, text, r)
            out.append(_token_scores(x, lp, am, was_cut, last=last, sampling=sampling))
        self._note_unscored(seqs, out, last)
        return out

    def _core(self, ids: list[int]) -> tuple[int, list[int]]:
        """(offset, ids the prompt text stands for): a leading start token the server adds
        itself is not part of the text sent."""
        o = int(bool(ids) and bool(self._adds_bos) and ids[0] == self.bos_id)
        return o, ids[o:]

    def _prompts_of(self, prefixes: Sequence[Sequence[int]]) -> list[str | None]:
        """For each token prefix, the prompt text the server tokenizes into exactly those ids,
        or None when there is none (a prefix whose text re-tokenizes otherwise, e.g. cut inside
        a merge). A start token the server adds itself is left out of the text; the local
        tokenizer's start token where the server adds none is sent as its own text (llama.cpp
        reads special tokens in a prompt), so a document is the same sequence as in-process."""
        cores = [self._core(list(x))[1] for x in prefixes]
        lead = [bool(c) and c[0] == self.bos_id and self._adds_bos is False
                and c[0] in getattr(self._need_tokenizer(), "all_special_ids", []) for c in cores]
        rest = [c[1:] if b else c for c, b in zip(cores, lead)]
        again = self.tokenize([self.decode(r) for r in rest]) if rest else []
        out: list[str | None] = []
        for c, b, r, a in zip(cores, lead, rest, again):
            ok = bool(c) and r == a
            out.append(None if not ok else self._wire_prompt(c, self.decode(r)) if b
                       else self.decode(r))
        return out

    def _note_unscored(self, seqs, out: list[TokenScores], last: int | None) -> None:
        """Log how many tokens the server gave no log-prob (beyond each text's first token,
        which the token convention leaves out)."""
        want = sum(max(0, min(len(x) - 1, last if last is not None else len(x))) for x in seqs)
        got = sum(len(s) for s in out)
        if got < want:
            self.log(f"warning: {want - got} of {want} tokens got no log-prob from the server and "
                     "are left out of the scores (see the capability warnings)")

    def _post_forced(self, pairs: Sequence[tuple[list[int], int]],
                     progress: Progress | None = None,
                     prompts: Sequence[str | None] | None = None) -> list[Any]:
        """One request per (prefix ids, token id): the prefix as text (``prompts``, when the
        caller has them from :meth:`_prompts_of`), one generated token forced by ``logit_bias``
        on the token's id (the log-prob the server reports for it is the model's, read by
        position: biases act on sampling, not on reported log-probs)."""
        if prompts is None:
            prompts = self._prompts_of([p for p, _ in pairs])
        payloads = [{"prompt": w if w is not None else self.decode(self._core(p)[1]),
                     "max_tokens": 1, "temperature": 0, "logprobs": 1,
                     "logit_bias": {str(int(t)): FORCE_BIAS}, **self._neutral}
                    for (p, t), w in zip(pairs, prompts)]
        return self._post(payloads, progress=progress)

    @staticmethod
    def _text_progress(owners: Sequence[int], n: int, progress: Progress | None):
        """Progress counted in texts over a run of requests: ``owners`` names the text of each
        request, in order; a text is done with its last request. Returns (the tick to give the
        requests, a finish that counts what is left: texts that needed no request)."""
        if progress is None:
            return None, lambda: None
        bounds = np.cumsum(np.bincount(list(owners), minlength=n))
        done, texts_done = [0], [0]

        def tick(k: int) -> None:
            done[0] += k
            while texts_done[0] < n and bounds[texts_done[0]] <= done[0]:
                texts_done[0] += 1
                progress(1)

        def finish() -> None:
            if texts_done[0] < n:
                progress(n - texts_done[0])
                texts_done[0] = n

        return tick, finish

    def _forced_jobs(self, seqs, spans) -> list[tuple[int, int, str]]:
        """(text, position, prompt) of each token to score by its own forced request, from
        ``spans`` ((text, first, end) position ranges), less the positions whose prefix does not
        re-tokenize to its own ids (it cannot be sent as a prompt: e.g. "\\n" "\\n" before
        "##" merges into "\\n\\n"; such a token is left out and counted)."""
        # a byte of a longer character is never forced: llama-cpp-python keeps generating until
        # a character is whole, and a forced byte never makes one (it fills the context: HTTP
        # 500 "llama_decode returned 1")
        byte = [[b is not None and not self._whole(b) for b in self._token_bytes(x)]
                for x in seqs] if spans else []
        jobs = [(s, j) for s, a, b in spans for j in range(a, b) if not byte[s][j]]
        prompts = self._prompts_of([seqs[s][:j] for s, j in jobs])
        return [(s, j, w) for (s, j), w in zip(jobs, prompts) if w is not None]

    def _forced_fill(self, seqs, jobs, lps, ams, tick=None) -> None:
        """Send the forced requests of ``jobs`` and write each token's log-prob (by position)."""
        resps = self._post_forced([(seqs[s][:j], seqs[s][j]) for s, j, _ in jobs], progress=tick,
                                  prompts=[w for _, _, w in jobs])
        self._raise_failed(resps)
        for (s, j, w), r in zip(jobs, resps):
            self._check_count(w, self._core(seqs[s][:j])[1], r)
            (v,), (a,) = _positional(r, [0])
            if v is not None:
                lps[s][j], ams[s][j] = v, a

    def _score_forced(self, seqs, cut, *, last, sampling, progress):
        """Scores from one forced-token request per scored token (the route for a server whose
        echo is misaligned and that has no grammar route)."""
        spans = [(s, 1 if last is None else max(1, len(x) - last), len(x))
                 for s, x in enumerate(seqs)]
        jobs = self._forced_jobs(seqs, spans)
        tick, finish = self._text_progress([s for s, _, _ in jobs], len(seqs), progress)
        lps = [np.full(len(x), np.nan, dtype=np.float32) for x in seqs]
        ams = [np.zeros(len(x), dtype=bool) for x in seqs]
        self._forced_fill(seqs, jobs, lps, ams, tick)
        out = [_token_scores(x, lp, am, c, last=last, sampling=sampling)
               for x, lp, am, c in zip(seqs, lps, ams, cut)]
        finish()
        self._note_unscored(seqs, out, last)
        return out

    # -- the grammar route: one request per text on a server whose echo is misaligned
    def _token_bytes(self, ids: Sequence[int]) -> list[bytes | None]:
        """Each token's bytes (None for a special token, whose text is not what it stands for)."""
        t = self._need_tokenizer()
        if not hasattr(self, "_piece_cache"):
            self._piece_cache: dict[int, bytes | None] = {}
            self._byte_of = {c: b for b, c in _bytes_to_unicode().items()}
            self._special = set(getattr(t, "all_special_ids", []) or [])
        out = []
        for i in ids:
            i = int(i)
            if i not in self._piece_cache:
                self._piece_cache[i] = self._piece(t, i)
            out.append(self._piece_cache[i])
        return out

    def _piece(self, t, i: int) -> bytes | None:
        if i in self._special:
            return None
        tok = t.convert_ids_to_tokens(i)
        if not isinstance(tok, str) or not tok:
            return None
        if all(c in self._byte_of for c in tok):  # byte-level BPE (GPT-2, Llama 3, SmolLM2)
            return bytes(self._byte_of[c] for c in tok)
        if tok.startswith("<0x") and tok.endswith(">") and len(tok) == 6:  # SentencePiece byte
            return bytes([int(tok[3:5], 16)])
        return tok.replace("\u2581", " ").encode("utf-8")  # SentencePiece: "▁" is the space

    def _token_strings(self, ids: Sequence[int]) -> list[str | None]:
        """Each token's text as llama.cpp reports it in ``logprobs.tokens`` (its bytes decoded on
        their own, an incomplete character dropped), None for a special token."""
        return [None if b is None else b.decode("utf-8", errors="ignore")
                for b in self._token_bytes(ids)]

    @staticmethod
    def _whole(b: bytes | None) -> bool:
        """A token that is a complete, non-empty string on its own."""
        if not b:
            return False
        try:
            b.decode("utf-8")
        except UnicodeDecodeError:
            return False
        return True

    def _grammar_plan(self, ids: list[int], lo: int) -> list[tuple[int, int]]:
        """Spans (p, q): positions p..q-1 of ``ids`` (all >= ``lo``, the first to score), each
        scored by one grammar request whose prompt is ``ids[:p]`` (its text re-tokenizes to its
        own ids) and whose text ends on a whole character. A token that is a byte of a longer
        character reads as "" or a piece of it, so the generation's split there cannot be
        checked by its string: such a token stays in a span only when no other token of the
        text could stand at its place (the text's tokens are the only ones biased, and none
        other is a prefix of what is left), else it ends the span, and the next begins after
        it. Special tokens end a span as well."""
        o = len(ids) - len(self._core(ids)[1])
        raw = self._token_bytes(ids)
        n = len(ids)
        pieces = {b for b in raw if b}

        def open_at(k: int) -> bool:  # a token the generation is sure to take at its place
            if raw[k] is None:
                return False
            if self._whole(raw[k]):
                return True
            end = next((i for i in range(k, n) if raw[i] is None), n)
            rest = b"".join(raw[k:end])
            return not any(b != raw[k] and rest.startswith(b) for b in pieces)

        spans, j = [], max(lo, o + 1)
        while j < n:
            if not open_at(j):
                j += 1
                continue
            q = j
            while q < n and open_at(q):
                q += 1
            p = next((a for a in range(j, q) if self._prompts_of([ids[:a]])[0] is not None), q)
            while q > p and not self._whole(b"".join(raw[p:q])):
                q -= 1  # end on a whole character (a grammar spells characters)
            if q - p >= 2:  # one token is one request either way: the forced route takes it
                spans.append((p, q))
            j = max(q, j + 1)
        return spans

    def _grammar_payload(self, ids: list[int], p: int, q: int) -> dict[str, Any]:
        """The grammar request of span (p, q): prompt ``ids[:p]``, the span's text spelled by the
        grammar (whole characters: :meth:`_grammar_plan`), the span's tokens biased."""
        (prompt,) = self._prompts_of([ids[:p]])
        pieces = self._token_bytes(ids[p:q])
        body = b"".join(pieces).decode("utf-8")
        bias = {str(int(t)): FORCE_BIAS + GRAMMAR_BIAS_PER_BYTE * len(b)
                for t, b in zip(ids[p:q], pieces)}
        return {"prompt": prompt, "max_tokens": q - p, "temperature": 0, "logprobs": 1,
                "grammar": "root ::= " + gbnf_literal(body), "logit_bias": bias, **self._neutral}

    def _read_grammar(self, ids: list[int], p: int, q: int, resp: dict[str, Any]):
        """(log-probs, is_argmax) of ``ids[p:p+m]`` from a grammar request, read by position,
        for the longest run m of generated tokens that are the text's own: one token string per
        position, equal to the local token's, and a value. A generation that took another path
        (another split of the same text) stops the run there."""
        o, core = self._core(ids)
        self._check_count(self._prompts_of([ids[:p]])[0] or "", core[: p - o], resp)
        L = _echo_logprobs(resp)
        got, tlp = L.get("tokens") or [], L.get("token_logprobs") or []
        want = self._token_strings(ids[p:q])
        m = 0
        while m < len(want) and m < len(got) and m < len(tlp) and got[m] == want[m] and \
                tlp[m] is not None:
            m += 1
        return _positional(resp, range(m))

    def _score_grammar(self, seqs, cut, *, last, sampling, progress):
        """Scores from one grammar request per text (the route for a llama.cpp server whose echo
        is misaligned): the text's first token as the prompt, the rest generated at temperature 0
        under a grammar that spells it, each of its tokens biased (longer ones more), and the
        log-probs the server reports with the generated tokens read by position. The server's
        log-probs are the model's own (neither the grammar nor the bias touches them). A token
        the generation does not follow, and every token after it in its span, is scored by its
        own forced request; so is a token with no string of its own (:meth:`_grammar_plan`)."""
        lps = [np.full(len(x), np.nan, dtype=np.float32) for x in seqs]
        ams = [np.zeros(len(x), dtype=bool) for x in seqs]
        los = [1 if last is None else max(1, len(x) - last) for x in seqs]
        jobs = [(s, p, q) for s, x in enumerate(seqs) for p, q in self._grammar_plan(x, los[s])]
        tick, finish = self._text_progress([s for s, _, _ in jobs], len(seqs), progress)
        resps = self._post([self._grammar_payload(seqs[s], p, q) for s, p, q in jobs],
                           progress=tick)
        self._raise_failed(resps)
        covered = [np.zeros(len(x), dtype=bool) for x in seqs]
        for (s, p, q), r in zip(jobs, resps):
            vals, am = self._read_grammar(seqs[s], p, q, r)
            for k, (v, a) in enumerate(zip(vals, am)):
                lps[s][p + k], ams[s][p + k] = v, a
                covered[s][p + k] = True
        spans = []
        for s, x in enumerate(seqs):
            rest = np.flatnonzero(~covered[s][los[s]:]) + los[s]
            spans += [(s, int(j), int(j) + 1) for j in rest]
        self._forced_fill(seqs, self._forced_jobs(seqs, spans), lps, ams)
        finish()
        out = [_token_scores(x, lp, am, c, last=last, sampling=sampling)
               for x, lp, am, c in zip(seqs, lps, ams, cut)]
        self._note_unscored(seqs, out, last)
        return out

    def _post_texts(self, seqs, texts, fields: dict[str, Any], progress) -> list[Any]:
        """One scoring request per non-empty text (``fields`` say how to ask for its prompt
        log-probs); None for an empty one. An empty text has no token to score and is not sent:
        llama-cpp-python answers an echoed empty prompt whose one generated token is the end
        token with HTTP 500 (its echo strips the start token, then indexes an empty list)."""
        send = [i for i, t in enumerate(texts) if t]
        got = self._post([{"prompt": texts[i], "max_tokens": 1, "temperature": 0, **fields}
                          for i in send], progress=progress)
        resps: list[Any] = [None] * len(seqs)
        for i, r in zip(send, got):
            resps[i] = r
        return resps

    @staticmethod
    def _raise_failed(resps: list[Any]) -> None:
        """Raise (after every request finished) when a scoring request failed after every retry:
        the attack cannot score a text it has no answer for."""
        failed = sum(isinstance(r, ApiFailure) for r in resps)
        if failed:
            sent = sum(r is not None for r in resps)
            raise LeakauditError(f"{failed} of {sent} scoring requests failed after every retry "
                                 "(listed in the request records); rerun to retry them (the "
                                 "others are cached)")

    def _score_prompt_logprobs(self, seqs, texts, cut, *, last, sampling, progress):
        """Scores from vLLM's ``prompt_logprobs``: one request per non-empty text, the log-prob
        of each token looked up by its id (a token the server did not put there is a tokenizer
        mismatch), the argmax from its rank."""
        resps = self._post_texts(seqs, texts, {"prompt_logprobs": 1}, progress)
        self._raise_failed(resps)
        out = []
        for x, text, r, was_cut in zip(seqs, texts, resps, cut):
            n = len(x)
            lp = np.full(n, np.nan, dtype=np.float32)
            am = np.zeros(n, dtype=bool)
            if n:
                plist = _prompt_logprobs(r) or []
                off = len(plist) - n
                if off not in (0, 1):
                    raise LeakauditError(
                        f"the server tokenized a text into {len(plist) - int(bool(self._adds_bos))}"
                        f" tokens where the local tokenizer has {n} (text starting {text[:30]!r}):"
                        " the tokenizer does not match the served model, or the text does not "
                        "survive decoding")
                for i, t in enumerate(x):
                    e = plist[off + i]
                    v = _plp_entry(e, t)
                    if v is None and e:
                        raise LeakauditError(
                            f"the server's prompt log-probs at token {i} do not include the "
                            f"local tokenizer's token {t} (text starting {text[:30]!r}): the "
                            "tokenizer does not match the served model")
                    if v is not None:
                        lp[i], am[i] = v
            out.append(_token_scores(x, lp, am, was_cut, last=last, sampling=sampling))
        return out

    def _parse_echo(self, ids: list[int], text: str, resp: dict[str, Any] | None):
        """(log-probs, is_argmax) of ``ids`` from an echo of ``text``, read by position: entry i
        of ``token_logprobs`` describes text token i (what follows the text is generated). The
        server must have counted the text's tokens as the local tokenizer does
        (:meth:`_check_count`); token strings are never read. NaN where the server gives none."""
        n = len(ids)
        lp = np.full(n, np.nan, dtype=np.float32)
        am = np.zeros(n, dtype=bool)
        o, core = self._core(ids)
        if not core or resp is None:
            return lp, am
        self._check_count(text, core, resp)
        L = _echo_logprobs(resp)
        if len(L.get("token_logprobs") or []) < len(core):
            raise LeakauditError(
                f"the server echoed {len(L.get('token_logprobs') or [])} log-probs for a text of "
                f"{len(core)} tokens (text starting {text[:30]!r}); the echo is incomplete")
        vals, arg = _positional(resp, range(len(core)))
        for i, (v, a) in enumerate(zip(vals, arg)):
            if v is not None:
                lp[o + i], am[o + i] = v, a
        return lp, am

    # ------------------------------------------------------------------ sampling
    def generate_ids(self, prompts, sampling: SamplingConfig, *, seed: int, batch_size: int = 32,
                     progress: Progress | None = None) -> list[Generation]:
        """One completion per prompt. Greedy is ``temperature 0``. Sampling is seeded: request
        ``j`` carries ``seed * 1_000_003 + j`` (a server that ignores seeds still gets distinct
        requests, so none is answered from another's ledger entry).

        Where the server honours ``n``, runs of the same prompt (extraction's samples from the
        start token) share one request of up to :attr:`max_n` choices. A prompt that starts with
        the tokenizer's start token is sent with that token's text when the server adds none
        itself (llama.cpp parses special tokens in a prompt), so sampling "from BOS" conditions
        on BOS as in-process. With generated log-probs, ``meta["logprobs"]`` and
        ``meta["is_argmax"]`` hold the model's log-prob of each new token (given the prompt and
        the tokens before it) and whether it was the greedy choice. A failed request yields
        Generations with no new tokens and ``meta["failed"]`` (counted in the request summary).
        A server stops at EOS, so a sample may be shorter than ``max_new_tokens``;
        ``meta["truncated"]`` says the server's context capped it (it stopped for length)."""
        caps = self.capabilities
        if sampling.decay is not None:
            raise CapabilityError("a decaying temperature needs a logits processor; the API has "
                                  "none")
        if not sampling.greedy:
            if sampling.top_k and not caps.top_k:
                raise CapabilityError(f"top-k sampling (k={sampling.top_k}) is not honoured by "
                                      "this server")
            if sampling.top_p is not None and not caps.top_p:
                raise CapabilityError("top-p sampling is not honoured by this server")
        prompts = [[int(v) for v in p] for p in prompts]
        texts = [self.decode(p) for p in prompts]
        groups: list[list[int]] = []  # prompt indices answered by one request
        per = self.max_n if (caps.n and not sampling.greedy) else 1
        for i, p in enumerate(prompts):
            if groups and len(groups[-1]) < per and prompts[groups[-1][0]] == p:
                groups[-1].append(i)
            else:
                groups.append([i])
        payloads = []
        for g in groups:
            i = g[0]
            p: dict[str, Any] = {"prompt": self._wire_prompt(prompts[i], texts[i]),
                                 "max_tokens": int(sampling.max_new_tokens), **self._neutral}
            if caps.generated_logprobs:
                p["logprobs"] = 1  # the generated tokens' ids and log-probs
            if sampling.greedy:
                p["temperature"] = 0
            else:
                p["temperature"] = float(sampling.temperature)
                if sampling.top_k:
                    p["top_k"] = int(sampling.top_k)
                if sampling.top_p is not None:
                    p["top_p"] = float(sampling.top_p)
                p["seed"] = int(seed) * 1_000_003 + i
            if len(g) > 1:
                p["n"] = len(g)
            payloads.append(p)

        counted = [0]

        def tick(k: int) -> None:  # progress counts samples (a request may carry several)
            step = min(k * per, len(prompts) - counted[0])
            counted[0] += step
            progress(step)

        resps = self._post(payloads, progress=tick if progress is not None else None)
        out: list[Generation | None] = [None] * len(prompts)
        for g, r in zip(groups, resps):
            choices = [] if isinstance(r, ApiFailure) else sorted(
                r.get("choices") or [], key=lambda c: c.get("index", 0))
            for slot, i in enumerate(g):
                p, t = prompts[i], texts[i]
                if isinstance(r, ApiFailure) or slot >= len(choices):
                    err = r.error if isinstance(r, ApiFailure) else \
                        f"the server returned {len(choices)} choices for n={len(g)}"
                    out[i] = Generation(prompt_ids=p, new_ids=[], text=t, prompt_text=t,
                                        meta={"failed": True, "error": err})
                    continue
                c = choices[slot]
                comp = c.get("text") or ""
                new, lps, am = self._generated(c, comp)
                if new is None:  # no token strings to map: re-tokenize the text
                    full = self.tokenize([t + comp])[0]
                    core = p[1:] if p and p[0] == self.bos_id else p  # decode dropped BOS
                    new = full[len(core):] if full[: len(core)] == core else \
                        self.tokenize([comp])[0]
                # capped by the context only when the server stopped for length short of
                # max_new_tokens (an end token, "stop", is the model's own choice)
                meta = {"finish_reason": c.get("finish_reason"),
                        "truncated": c.get("finish_reason") == "length"
                        and len(new) < sampling.max_new_tokens}
                if lps is not None:  # ids_exact: new_ids are the scored tokens themselves
                    meta.update(logprobs=lps, is_argmax=am, ids_exact=len(lps) == len(new))
                out[i] = Generation(prompt_ids=p, new_ids=new, text=t + comp, prompt_text=t,
                                    meta=meta)
        return out  # type: ignore[return-value]

    def _wire_prompt(self, ids: list[int], text: str) -> str:
        """The prompt text to send: ``text`` (decoded without special tokens), with the start
        token's own text in front when ``ids`` begins with it and the server adds none."""
        if ids and ids[0] == self.bos_id and self._adds_bos is False:
            return self.tokenizer.decode([ids[0]], skip_special_tokens=False) + text
        return text

    def _generated(self, choice: dict[str, Any], comp: str):
        """(ids, log-probs, is_argmax) of a choice's generated tokens from its ``logprobs``;
        (None, None, None) when its token strings do not map to ids."""
        ids = self._generated_ids({"choices": [choice]}, comp)
        lp = choice.get("logprobs") or {}
        tlp, top = lp.get("token_logprobs") or [], lp.get("top_logprobs") or []
        if not tlp or any(v is None for v in tlp) or (ids is not None and len(tlp) != len(ids)):
            return ids, None, None
        # the log-probs stand even where a token string does not map back to one id (a byte of
        # a UTF-8 character shows as ""): ranking reads the log-probs, not the ids
        am = [bool(d) and v >= max(d.values()) - 1e-6 for v, d in
              zip(tlp, top + [None] * (len(tlp) - len(top)))]
        return ids, [float(v) for v in tlp], am

    def _generated_ids(self, resp: dict[str, Any], comp: str) -> list[int] | None:
        """Ids of the generated tokens from their strings in ``logprobs.tokens``: re-tokenizing
        the text would merge a non-canonical token sequence (which a model may well generate).
        Works for byte-level BPE vocabularies (GPT-2 style); None when a string does not map."""
        lp = resp["choices"][0].get("logprobs") or {}
        toks = lp.get("tokens")
        if not toks or "".join(toks) != comp:
            return None
        if not hasattr(self, "_byte_encoder"):
            self._byte_encoder = _bytes_to_unicode()
            self._vocab = self.tokenizer.get_vocab()
        out = []
        for t in toks:
            i = self._vocab.get("".join(self._byte_encoder[b] for b in t.encode("utf-8")))
            if i is None:
                return None
            out.append(int(i))
        return out

    def complete(self, prompts: Sequence[str], *, max_tokens: int, temperature: float = 0.0,
                 seed: int = 0, progress: Progress | None = None) -> list[str | None]:
        """Text completions (no tokenizer needed); None where a request failed."""
        payloads = [{"prompt": p, "max_tokens": int(max_tokens), "temperature": float(temperature),
                     **self._neutral, **({"seed": int(seed) * 1_000_003 + i} if temperature > 0 else {})}
                    for i, p in enumerate(prompts)]
        return [None if isinstance(r, ApiFailure) else _choice_text(r)
                for r in self._post(payloads, progress=progress)]


class OpenAIChatModel(_Endpoint):
    """A model behind ``/v1/chat/completions``: text in, text out, generated log-probs at most.

    There are no prompt log-probs on chat endpoints, so only text-level attacks (divergence, PII
    probes, extraction by sampling ranked locally) run against it.
    """

    kind = "chat"

    def __init__(self, client: ApiClient, *, model: str | None, tokenizer=None,
                 name: str | None = None, log=print):
        super().__init__(client, model=model, tokenizer=tokenizer, name=name, log=log)
        self._neutral: dict[str, Any] = {}
        self.capabilities = ApiCapabilities(
            prompt_logprobs=False, vocab_stats=False, argmax=False, generation=True,
            seeded_generation=False, kind="chat", tokenizer=tokenizer is not None,
            aligned="untested")

    def probe(self) -> ApiCapabilities:
        msg = [{"role": "user", "content": PROBE_TEXT}]
        r = self._one({"messages": msg, "max_tokens": 4, "temperature": 0})
        if r is None:
            raise LeakauditError(f"the endpoint {self.client.base_url} did not answer a chat "
                                 "request (see the warnings above)")
        ans: dict[str, Any] = {"greedy": _choice_text(r)}
        kmax = 0
        for k in (20, 5, 1):
            rr = self._one({"messages": msg, "max_tokens": 1, "temperature": 0, "logprobs": True,
                            "top_logprobs": k})
            content = (((rr or {}).get("choices") or [{}])[0].get("logprobs") or {}).get("content")
            if content and content[0].get("top_logprobs"):
                kmax = min(k, len(content[0]["top_logprobs"]))
                break
        neutral = {"repeat_penalty": 1.0, "min_p": 0.0, "top_k": 0, "top_p": 1.0}
        self._neutral = neutral if self._one({"messages": msg, "max_tokens": 4, "temperature": 0,
                                              **neutral}) is not None else {}
        s = [self._one({"messages": msg, "max_tokens": 8, "temperature": 1.0, "seed": sd,
                        "user": f"leakaudit-seed-probe-{j}", **self._neutral})
             for sd, j in ((1, 0), (1, 1), (2, 0), (3, 0))]
        txt = [None if x is None else _choice_text(x) for x in s]
        seeded = txt[0] is not None and txt[0] == txt[1] and len({txt[0], txt[2], txt[3]}) > 1
        rn = self._one({"messages": msg, "max_tokens": 4, "temperature": 1.0, "n": 2, "seed": 1})
        ans.update(top_logprobs_max=kmax, seed=seeded)
        self.capabilities = ApiCapabilities(
            prompt_logprobs=False, vocab_stats=False, argmax=False, generation=True,
            seeded_generation=seeded, kind="chat", generated_logprobs=kmax >= 1,
            top_logprobs_max=kmax, top_logprobs=kmax, n=bool(rn and len(rn["choices"]) == 2), seed=seeded,
            temperature=len(set(txt)) > 1, tokenizer=self.tokenizer is not None,
            aligned="untested")
        self.probe_answers = ans
        return self.capabilities

    def chat(self, messages: Sequence[Sequence[dict[str, str]]], *, max_tokens: int,
             temperature: float = 1.0, seed: int = 0, progress: Progress | None = None,
             extra: dict[str, Any] | None = None) -> list[str | None]:
        """One reply per conversation; None where the request failed (counted and reported)."""
        payloads = [{"messages": list(m), "max_tokens": int(max_tokens),
                     "temperature": float(temperature), "seed": int(seed) * 1_000_003 + i,
                     **self._neutral, **(extra or {})} for i, m in enumerate(messages)]
        return [None if isinstance(r, ApiFailure) else _choice_text(r)
                for r in self._post(payloads, progress=progress)]


def load_endpoint(spec: str, **kw):
    """``openai-completions:URL`` or ``openai-chat:URL`` → a probed backend (see ``from_spec``)."""
    return _Endpoint.from_spec.__func__(_Endpoint, spec, **kw)  # type: ignore[attr-defined]


def _factory_loader(kind: str):
    """A loader for :func:`leakaudit.targets.load_target`: ``rest`` is the URL, optionally with
    ``#model=NAME&tokenizer=DIR&api_key_env=VAR&api_key_file=PATH&ledger=FILE`` (the key itself
    never goes into a spec)."""
    from urllib.parse import parse_qs

    allowed = {"model", "tokenizer", "api_key_env", "api_key_file", "ledger", "context"}

    def load(rest: str, *, name=None, device="cpu", dtype="float32", allow_download=False):
        url, _, frag = rest.partition("#")
        opts = {k: v[-1] for k, v in parse_qs(frag).items()}
        bad = sorted(set(opts) - allowed)
        if bad:
            raise InputError(f"unknown endpoint option {bad[0]!r} in the spec (known: "
                             f"{', '.join(sorted(allowed))})")
        if "context" in opts:
            try:
                opts["context"] = int(opts["context"])
            except ValueError:
                raise InputError(f"context must be a number of tokens, got {opts['context']!r}") \
                    from None
        return load_endpoint(f"openai-{kind}:{url}", name=name, **opts)

    return load


load_openai_completions = _factory_loader("completions")
load_openai_chat = _factory_loader("chat")
