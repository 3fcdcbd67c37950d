"""A classifier behind an HTTP endpoint that returns class probabilities (black-box).

Protocol: ``POST URL`` with ``Content-Type: application/json`` and body
``{"inputs": [[...], ...]}`` (each input flattened to a list of floats); the response body is
``{"probabilities": [[...], ...]}``, one row of ``n_classes`` floats per input; an endpoint that
answers labels only (``answers="labels"``) returns ``{"labels": [k, ...]}``, one integer class per
input, which the target turns into one-hot rows and declares label-only. Inputs are sent in
batches of ``batch_size``; every input sent is counted in ``queries`` (including those of a batch
that fails). Standard library only (urllib).
"""

from __future__ import annotations

import hashlib
import json
import socket
import urllib.error
import urllib.request

from dataclasses import replace

import numpy as np

from leakaudit.errors import InputError, LeakauditError
from leakaudit.targets.classifier import Classifier, ClassifierCapabilities


class EndpointError(LeakauditError):
    """The endpoint could not be reached, failed, or answered something that is not the protocol."""


class HTTPClassifier(Classifier):
    """Black-box classifier behind ``url`` (see the module docstring for the protocol)."""

    capabilities = ClassifierCapabilities(probabilities=True, logits=False, gradients=False)

    def __init__(self, url: str, *, n_classes: int, input_shape: tuple[int, ...], batch_size: int,
                 timeout_s: float, headers: dict[str, str] | None = None,
                 answers: str = "probabilities"):
        if not url.startswith(("http://", "https://")):
            raise InputError(f"endpoint must be an http:// or https:// URL, got {url!r}")
        if answers not in ("probabilities", "labels"):
            raise InputError(f"answers must be 'probabilities' or 'labels', got {answers!r}")
        if batch_size < 1 or not timeout_s > 0:
            raise InputError(f"need batch_size >= 1 and timeout_s > 0; got {batch_size}, {timeout_s}")
        super().__init__(n_classes=n_classes, input_shape=input_shape)
        self.url = url
        self.batch_size = int(batch_size)
        self.timeout_s = float(timeout_s)
        self.headers = dict(headers or {})
        self.requests = 0
        self.answers = answers
        self.capabilities = replace(type(self).capabilities, batch_size=self.batch_size,
                                    probabilities=answers == "probabilities")

    def _post(self, rows: np.ndarray) -> np.ndarray:
        body = json.dumps({"inputs": rows.reshape(len(rows), -1).astype(float).tolist()}).encode()
        req = urllib.request.Request(self.url, data=body, method="POST",
                                     headers={"Content-Type": "application/json",
                                              "Accept": "application/json", **self.headers})
        self.requests += 1
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            detail = e.read()[:200].decode("utf-8", "replace").replace("\n", " ")
            raise EndpointError(f"{self.url}: HTTP {e.code} {e.reason}: {detail}") from None
        except TimeoutError:
            raise EndpointError(f"{self.url}: no answer within {self.timeout_s:g} s") from None
        except urllib.error.URLError as e:
            if isinstance(e.reason, (socket.timeout, TimeoutError)):
                raise EndpointError(f"{self.url}: no answer within {self.timeout_s:g} s") from None
            raise EndpointError(f"{self.url}: cannot connect: {e.reason}") from None
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise EndpointError(f"{self.url}: response is not JSON ({e})") from None
        if self.answers == "labels":
            return self._one_hot(data, len(rows))
        probs = data.get("probabilities") if isinstance(data, dict) else None
        if probs is None:
            hint = (" (it answers 'labels': load it as label-only, answers='labels')"
                    if isinstance(data, dict) and "labels" in data else "")
            raise EndpointError(f"{self.url}: response has no 'probabilities' field{hint}")
        try:
            p = np.asarray(probs, dtype=np.float64)
        except (TypeError, ValueError):
            raise EndpointError(f"{self.url}: 'probabilities' is not a numeric matrix") from None
        if p.shape != (len(rows), self.n_classes):
            raise EndpointError(f"{self.url}: expected probabilities of shape {(len(rows), self.n_classes)}, "
                                f"got {p.shape}")
        if not np.all(np.isfinite(p)):
            raise EndpointError(f"{self.url}: probabilities contain NaN or infinity")
        return p

    def _one_hot(self, data, n: int) -> np.ndarray:
        labels = data.get("labels") if isinstance(data, dict) else None
        if labels is None:
            raise EndpointError(f"{self.url}: response has no 'labels' field")
        y = np.asarray(labels)
        if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer) or \
                (n and (y.min() < 0 or y.max() >= self.n_classes)):
            raise EndpointError(f"{self.url}: 'labels' must be {n} integers in 0..{self.n_classes - 1}")
        out = np.zeros((n, self.n_classes))
        out[np.arange(n), y] = 1.0
        return out

    def _predict_proba(self, x: np.ndarray) -> np.ndarray:
        return np.concatenate([self._post(x[i:i + self.batch_size])
                               for i in range(0, len(x), self.batch_size)])

    def fingerprint(self) -> str:
        kind = "" if self.answers == "probabilities" else ":labels"
        return hashlib.sha256(f"http:{self.url}{kind}:{super().fingerprint()}".encode()).hexdigest()
