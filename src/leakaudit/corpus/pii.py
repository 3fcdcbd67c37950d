"""Regex PII detection and masking: emails, US phone numbers, SSNs, card numbers, API keys, IPv4.

Why regexes and not Microsoft Presidio: Presidio's recognizers need a spaCy language model
(``en_core_web_lg`` and friends) downloaded from a model hub at install time, which offline and
air-gapped audit machines cannot reach, and its name/location recognizers are statistical and
slow. The kinds detected here are the structured ones that matter for training-data extraction
(the secrets a model can recite character for character), and each pattern is anchored so that it
does not fire inside longer numbers or words; card numbers are also Luhn-checked.

Detected kinds (:data:`PII_KINDS`):

- ``email``: ``local@domain.tld``.
- ``phone``: US numbers with separators: ``(555) 123-4567``, ``555-123-4567``, ``555.123.4567``,
  ``+1 555 123 4567``, ``1-800-555-1234``. Bare 10-digit runs are not matched (too many order
  numbers look like that).
- ``ssn``: ``ddd-dd-dddd`` with the SSA's never-issued values excluded (area 000, 666, 900–999;
  group 00; serial 0000).
- ``credit_card``: 13–19 digits, contiguous or in the usual groups (4-4-4-4, 4-4-4-4-3, 4-6-5)
  separated by spaces or dashes, starting with 2–6 (the issuer ranges of Visa, Mastercard,
  Amex, Discover, JCB, Diners) and passing the Luhn check.
- ``api_key``: well-known prefixes (OpenAI ``sk-``, Stripe ``sk_live_``/``sk_test_``/``pk_``/
  ``rk_``, AWS ``AKIA``/``ASIA`` + 16, GitHub ``ghp_``/``gho_``/``ghu_``/``ghs_``/``ghr_``,
  ``github_pat_``, Slack ``xox?-``, Google ``AIza``) and generic 32+ character tokens (with at
  least one digit) right after a word such as ``key``, ``token``, ``secret`` or ``api_key``.
- ``ipv4``: dotted quads with every octet in 0–255.

Findings never overlap: where two candidates overlap the longer one wins (then the kind listed
first in :data:`PII_KINDS`). :func:`mask_text` is what reports use, so raw values appear nowhere
unless the user asks for them.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

__all__ = ["PII_KINDS", "PIIFinding", "find_pii", "mask_value", "mask_text", "pii_summary",
           "luhn_valid"]

#: The kinds :func:`find_pii` reports, in tie-breaking priority order.
PII_KINDS: tuple[str, ...] = ("api_key", "email", "credit_card", "ssn", "phone", "ipv4")

_DOT = "•"


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check used by payment card numbers; ``digits`` holds only digits."""
    if not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card_ok(value: str) -> bool:
    digits = re.sub(r"[ -]", "", value)
    return 13 <= len(digits) <= 19 and len(set(digits)) > 1 and luhn_valid(digits)


@dataclass(frozen=True)
class _Detector:
    kind: str
    pattern: re.Pattern[str]
    group: str | int = 0
    check: Callable[[str], bool] | None = None


_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"

_DETECTORS: tuple[_Detector, ...] = (
    _Detector("email", re.compile(
        r"(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@"
        r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,}(?![\w-])"
    )),
    _Detector("phone", re.compile(
        r"(?<![\w+])"
        r"(?:\+?1[ .-]?)?"                      # country code
        r"(?:\([2-9]\d{2}\)[ ]?|[2-9]\d{2}[ .-])"  # area code: (555) or 555- / 555. / 555
        r"\d{3}[ .-]\d{4}"
        r"(?!\d|[.-]\d)"
    )),
    _Detector("ssn", re.compile(
        r"(?<![\w-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\w-])"
    )),
    _Detector("credit_card", re.compile(
        r"(?<![\d-])(?:"
        r"[2-6]\d{3}([ -])\d{4}\1\d{4}\1\d{4}(?:\1\d{3})?"  # 4-4-4-4 and 4-4-4-4-3
        r"|3\d{3}([ -])\d{6}\2\d{5}"                         # Amex 4-6-5
        r"|[2-6]\d{12,18}"                                    # contiguous
        r")(?![\d]|-\d)"
    ), check=_card_ok),
    _Detector("api_key", re.compile(
        r"(?<![A-Za-z0-9_-])(?:"
        r"sk-(?:proj-)?[A-Za-z0-9_-]{20,}"
        r"|(?:sk|pk|rk)_(?:live|test)_[0-9A-Za-z]{16,}"
        r"|(?:AKIA|ASIA)[0-9A-Z]{16}"
        r"|gh[pousr]_[A-Za-z0-9]{30,}"
        r"|github_pat_[A-Za-z0-9_]{30,}"
        r"|xox[abprs]-[A-Za-z0-9-]{10,}"
        r"|AIza[0-9A-Za-z_-]{35}"
        r")(?![A-Za-z0-9_])"
    )),
    _Detector("api_key", re.compile(
        r"(?i:(?<![a-z])(?:api[_ -]?key|access[_ -]?key|secret[_ -]?key|auth[_ -]?token"
        r"|key|token|secret)s?)"
        r"(?:\s+(?:is|was)\s+|\s*[:=]\s*|\s+)[\"'`]?"
        r"(?P<v>(?=[A-Za-z0-9_-]*\d)[A-Za-z0-9_-]{32,})(?![A-Za-z0-9_-])"
    ), group="v"),
    _Detector("ipv4", re.compile(
        rf"(?<![\d.]){_OCTET}(?:\.{_OCTET}){{3}}(?!\d|\.\d)"
    )),
)


@dataclass(frozen=True)
class PIIFinding:
    """One PII value found in a text: ``text[start:end] == value``."""

    kind: str
    start: int
    end: int
    value: str

    @property
    def masked(self) -> str:
        """The value as reports show it (see :func:`mask_value`)."""
        return mask_value(self.kind, self.value)


def find_pii(text: str) -> list[PIIFinding]:
    """All PII findings in ``text``: non-overlapping, sorted by start (longer wins on overlap)."""
    cands: list[PIIFinding] = []
    for det in _DETECTORS:
        for m in det.pattern.finditer(text):
            start, end = m.span(det.group)
            value = text[start:end]
            if det.check is not None and not det.check(value):
                continue
            cands.append(PIIFinding(det.kind, start, end, value))
    prio = {k: i for i, k in enumerate(PII_KINDS)}
    cands.sort(key=lambda f: (-(f.end - f.start), prio[f.kind], f.start))
    taken: list[PIIFinding] = []
    for f in cands:
        if all(f.end <= t.start or f.start >= t.end for t in taken):
            taken.append(f)
    taken.sort(key=lambda f: f.start)
    return taken


def _mask_digits(value: str, keep_last: int) -> str:
    n_digits = sum(c.isdigit() for c in value)
    out, seen = [], 0
    for c in value:
        if c.isdigit():
            seen += 1
            out.append(c if seen > n_digits - keep_last else _DOT)
        else:
            out.append(c)
    return "".join(out)


def mask_value(kind: str, value: str) -> str:
    """A masked form of ``value`` that shows its kind and only a hint of its content.

    - email: first character of the user and of the domain, and the top-level domain:
      ``john.doe@example.com`` → ``j***@e***.com``;
    - phone, ssn, credit_card: every digit but the last two becomes ``•``, separators stay:
      ``(555) 123-4567`` → ``(•••) •••-••67``;
    - api_key: the first four characters and ``…``: ``sk_live_abc…`` → ``sk_l…``;
    - ipv4: the first octet, the other digits as ``•``:
      ``192.168.0.1`` → ``192.•••.•.•``;
    - anything else: the first character and ``…``.
    """
    if kind == "email" and "@" in value:
        local, _, domain = value.rpartition("@")
        labels = domain.split(".")
        tld = labels[-1] if len(labels) > 1 else ""
        return f"{local[:1]}***@{domain[:1]}***" + (f".{tld}" if tld else "")
    if kind in ("phone", "ssn", "credit_card"):
        return _mask_digits(value, keep_last=2)
    if kind == "api_key":
        return value[:4] + "…"
    if kind == "ipv4":
        first, _, rest = value.partition(".")
        return first + "." + re.sub(r"\d", _DOT, rest) if rest else re.sub(r"\d", _DOT, value)
    return value[:1] + "…"


def mask_text(text: str) -> str:
    """``text`` with every :func:`find_pii` finding replaced by its masked form."""
    findings = find_pii(text)
    if not findings:
        return text
    parts, pos = [], 0
    for f in findings:
        parts.append(text[pos:f.start])
        parts.append(f.masked)
        pos = f.end
    parts.append(text[pos:])
    return "".join(parts)


def pii_summary(texts: Iterable[str]) -> dict[str, int]:
    """Number of findings of each kind over ``texts``; every kind of :data:`PII_KINDS` is a key."""
    counts: Counter[str] = Counter()
    for t in texts:
        counts.update(f.kind for f in find_pii(t))
    return {k: counts.get(k, 0) for k in PII_KINDS}
