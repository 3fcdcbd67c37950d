"""PII scrubbing of a training corpus: a corpus transform whose output the same audits run on
again (Lukas et al., S&P 2023, study scrubbing as a defense: it lowers PII leakage, does not remove
it, and costs utility — so the residual is measured here, never assumed).

Whatever :func:`leakaudit.corpus.pii.find_pii` detects (its kinds: :data:`PII_KINDS`; narrower
with ``kinds``) is replaced, in one of three modes:

- ``redact``: the kind in brackets, ``[EMAIL]``, ``[SSN]``, …;
- ``mask``: :func:`~leakaudit.corpus.pii.mask_value`'s masked form (``j***@e***.com``,
  ``•••-••-••34``): a hint of the value stays;
- ``pseudonymize``: a consistent fake of the same format (the same value always gets the same
  pseudonym in one run; the mapping is keyed by ``seed`` and never written out). Pseudonyms are
  chosen so they are not real: e-mails at ``example.com`` (RFC 2606), phone numbers 555-01xx
  (reserved for fiction), SSNs in area 9xx (never issued), IPv4 in 192.0.2.0/24 (TEST-NET-1),
  card numbers with the 999999 prefix (no issuer) and a valid Luhn digit, API keys ``sk-FAKE…``;
  other kinds (when the detector reports more) get ``[KIND-xxxxxx]``.

**Residual PII** is measured by running the detector again on the scrubbed text: a finding that
is one of the pseudonyms this run wrote is counted as ``pseudonyms``, every other one as
``residual`` (what scrubbing missed or what its replacement re-created). Against a ground truth
(the lab's canary manifest), :func:`residual_secrets` counts the known secrets still present
verbatim.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from leakaudit.corpus.pii import PII_KINDS, find_pii, luhn_valid, mask_value
from leakaudit.errors import InputError

MODES = ("redact", "mask", "pseudonymize")


@dataclass(frozen=True)
class ScrubConfig:
    mode: str = "redact"
    kinds: tuple[str, ...] | None = None  #: None: every kind the detector reports
    seed: int = 0  #: keys the pseudonym mapping

    def validate(self) -> None:
        if self.mode not in MODES:
            raise InputError(f"scrub mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.kinds is not None:
            bad = [k for k in self.kinds if k not in PII_KINDS]
            if bad:
                raise InputError(f"unknown PII kind {bad[0]!r}; known: {', '.join(PII_KINDS)}")


@dataclass
class ScrubResult:
    texts: list[str]
    counts: dict[str, int]  #: replaced findings per kind
    residual: dict[str, int]  #: findings in the scrubbed text that are not this run's pseudonyms
    pseudonyms: dict[str, int] = field(default_factory=dict)  #: findings that are pseudonyms
    n_docs_changed: int = 0
    config: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {"defense": "pii_scrub", "config": self.config, "n_docs": len(self.texts),
                "n_docs_changed": self.n_docs_changed, "replaced": self.counts,
                "residual": self.residual, "pseudonyms_detected": self.pseudonyms,
                "n_replaced": sum(self.counts.values()), "n_residual": sum(self.residual.values())}


class _Pseudonymizer:
    def __init__(self, seed: int):
        self.seed = seed
        self.map: dict[tuple[str, str], str] = {}

    def __call__(self, kind: str, value: str) -> str:
        key = (kind, value)
        if key not in self.map:
            h = hashlib.sha256(f"{self.seed}\x00{kind}\x00{value}".encode()).digest()
            self.map[key] = _fake(kind, value, random.Random(h))
        return self.map[key]

    @property
    def values(self) -> set[str]:
        return set(self.map.values())


def _fake(kind: str, value: str, rng: random.Random) -> str:
    d = lambda n: "".join(rng.choice("0123456789") for _ in range(n))  # noqa: E731
    if kind == "email":
        return f"user{d(6)}@example.com"
    if kind == "phone":
        # keep the separators of the original, digits 555-01xx (reserved for fiction)
        digits = iter("555" + d(1) + "01" + d(2) + d(2))
        n_digits = sum(c.isdigit() for c in value)
        out = re.sub(r"\d", lambda m: next(digits, "0"), value[-14:] if n_digits > 10 else value)
        return out
    if kind == "ssn":
        return f"9{d(2)}-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}"
    if kind == "credit_card":
        n = sum(c.isdigit() for c in value)
        body = "999999" + d(max(0, n - 7))
        check = next(c for c in "0123456789" if luhn_valid(body + c))
        return body + check
    if kind == "api_key":
        return "sk-FAKE" + "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789")
                                   for _ in range(max(8, len(value) - 7)))
    if kind == "ipv4":
        return f"192.0.2.{rng.randint(1, 254)}"
    return f"[{kind.upper()}-{d(6)}]"


def scrub_text(text: str, config: ScrubConfig, pseudo: _Pseudonymizer | None = None,
               counts: Counter | None = None) -> str:
    findings = [f for f in find_pii(text) if config.kinds is None or f.kind in config.kinds]
    if not findings:
        return text
    parts, pos = [], 0
    for f in findings:
        parts.append(text[pos:f.start])
        if config.mode == "redact":
            parts.append(f"[{f.kind.upper()}]")
        elif config.mode == "mask":
            parts.append(mask_value(f.kind, f.value))
        else:
            parts.append(pseudo(f.kind, f.value))
        if counts is not None:
            counts[f.kind] += 1
        pos = f.end
    parts.append(text[pos:])
    return "".join(parts)


def scrub_texts(texts: Sequence[str], config: ScrubConfig = ScrubConfig()) -> ScrubResult:
    """Scrub every text; count replacements per kind and measure the residual (see module)."""
    config.validate()
    pseudo = _Pseudonymizer(config.seed)
    counts: Counter[str] = Counter()
    out = [scrub_text(t, config, pseudo, counts) for t in texts]
    fakes = pseudo.values
    residual: Counter[str] = Counter()
    pseud: Counter[str] = Counter()
    for t in out:
        for f in find_pii(t):
            if config.kinds is not None and f.kind not in config.kinds:
                continue
            (pseud if f.value in fakes else residual)[f.kind] += 1
    kinds = config.kinds or PII_KINDS
    return ScrubResult(
        texts=out, counts={k: counts.get(k, 0) for k in kinds},
        residual={k: residual.get(k, 0) for k in kinds},
        pseudonyms={k: pseud.get(k, 0) for k in kinds},
        n_docs_changed=sum(a != b for a, b in zip(texts, out)),
        config={"mode": config.mode, "kinds": list(kinds), "detector": "leakaudit.corpus.pii.find_pii"})


def residual_secrets(texts: Iterable[str], secrets: Iterable[tuple[str, str]]) -> dict[str, dict[str, int]]:
    """Ground-truth residual: for ``(kind, secret)`` pairs (e.g. the lab's canaries), how many
    secrets of each kind still occur verbatim in ``texts``: ``{kind: {"total", "present"}}``."""
    blob = "\x00".join(texts)
    out: dict[str, dict[str, int]] = {}
    for kind, s in secrets:
        r = out.setdefault(kind, {"total": 0, "present": 0})
        r["total"] += 1
        r["present"] += int(s in blob)
    return out
