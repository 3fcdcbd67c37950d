"""The shape of an OpenAI-compatible server's reply, checked before any number in it is used.

A server (or a proxy in front of it) may answer with JSON that parses but is not what the API
promises: ``choices`` empty, ``usage.completion_tokens`` a string, log-prob arrays of different
lengths, a log-prob that is not a number. :func:`check_reply` turns each into a
:class:`MalformedReply` naming the field, so the request is recorded as failed (and counted, and
retried on the next run) instead of raising ``IndexError`` deep inside an attack or, worse, being
scored. (A reply whose arrays are all one token short is caught where it is read: the echo check
compares its token count with the local tokenizer's.)
"""

from __future__ import annotations

import math
from typing import Any

from leakaudit.errors import LeakauditError

USAGE_FIELDS = ("prompt_tokens", "completion_tokens", "total_tokens")
#: the per-token arrays of a completions ``logprobs`` object, which must have one length
LOGPROB_ARRAYS = ("tokens", "token_logprobs", "top_logprobs", "text_offset")


class MalformedReply(LeakauditError):
    """A reply that parses as JSON but does not have the shape of the OpenAI API."""


def _is_count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _is_logprob(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and \
        (math.isfinite(v) or v == -math.inf) and v <= 1e-6


def check_usage(usage: Any) -> None:
    if usage is None:
        return
    if not isinstance(usage, dict):
        raise MalformedReply(f"usage must be an object, got {type(usage).__name__}")
    for k in USAGE_FIELDS:
        if usage.get(k) is not None and not _is_count(usage[k]):
            raise MalformedReply(f"usage.{k} must be a non-negative integer, got {usage[k]!r:.40}")


def _check_top(top: Any, where: str) -> None:
    if top is None:
        return
    if isinstance(top, dict):
        bad = [k for k, v in top.items() if not _is_logprob(v)]
        if bad:
            raise MalformedReply(f"{where}[{bad[0]!r:.20}] is not a log-prob: {top[bad[0]]!r:.40}")
    elif isinstance(top, list):  # chat: [{"token": ..., "logprob": ...}]
        for j, t in enumerate(top):
            if not isinstance(t, dict) or not _is_logprob(t.get("logprob")):
                raise MalformedReply(f"{where}[{j}] has no numeric logprob")
    else:
        raise MalformedReply(f"{where} must be an object or a list, got {type(top).__name__}")


def check_logprobs(lp: Any, where: str) -> None:
    """A ``logprobs`` object of a completions choice (arrays of one length, numbers that are
    log-probabilities) or of a chat choice (``content``: a list of ``{token, logprob}``)."""
    if lp is None:
        return
    if not isinstance(lp, dict):
        raise MalformedReply(f"{where} must be an object, got {type(lp).__name__}")
    if "content" in lp and lp["content"] is not None:  # chat completions
        if not isinstance(lp["content"], list):
            raise MalformedReply(f"{where}.content must be a list")
        for i, c in enumerate(lp["content"]):
            if not isinstance(c, dict) or not _is_logprob(c.get("logprob")):
                raise MalformedReply(f"{where}.content[{i}] has no numeric logprob")
            _check_top(c.get("top_logprobs"), f"{where}.content[{i}].top_logprobs")
        return
    lengths = {}
    for k in LOGPROB_ARRAYS:
        v = lp.get(k)
        if v is None:
            continue
        if not isinstance(v, list):
            raise MalformedReply(f"{where}.{k} must be a list, got {type(v).__name__}")
        lengths[k] = len(v)
    if len(set(lengths.values())) > 1:
        desc = ", ".join(f"{k} {n}" for k, n in lengths.items())
        raise MalformedReply(f"{where} arrays differ in length ({desc})")
    for i, v in enumerate(lp.get("token_logprobs") or []):
        if v is not None and not _is_logprob(v):
            raise MalformedReply(f"{where}.token_logprobs[{i}] is not a log-prob: {v!r:.40}")
    for i, t in enumerate(lp.get("top_logprobs") or []):
        _check_top(t, f"{where}.top_logprobs[{i}]")


def check_reply(body: Any) -> None:
    """Raise :class:`MalformedReply` unless ``body`` has the shape of a (chat) completions reply:
    a non-empty list of ``choices`` objects, integer ``usage`` counts, well-formed log-probs."""
    if not isinstance(body, dict):
        raise MalformedReply(f"the reply must be a JSON object, got {type(body).__name__}")
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices:
        raise MalformedReply("the reply has no choices" if not choices else
                             f"choices must be a list, got {type(choices).__name__}")
    check_usage(body.get("usage"))
    for i, c in enumerate(choices):
        if not isinstance(c, dict):
            raise MalformedReply(f"choices[{i}] must be an object, got {type(c).__name__}")
        check_logprobs(c.get("logprobs"), f"choices[{i}].logprobs")
        pl = c.get("prompt_logprobs")
        if pl is not None and not isinstance(pl, list):
            raise MalformedReply(f"choices[{i}].prompt_logprobs must be a list")

