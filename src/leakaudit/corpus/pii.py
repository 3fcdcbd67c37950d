"""PII detection and masking.

Structured kinds by anchored regexes (the secrets a model can recite character for character);
unstructured kinds — person names, dates of birth, street addresses — with datamade's CRF parsers
``probablepeople`` (names) and ``usaddress`` (US street addresses), which ship their trained
models inside the pip packages and so work offline. (Microsoft Presidio finds names and addresses
only through a spaCy NER model that must be downloaded from a model hub at install time, which
offline and air-gapped audit machines cannot reach; its pattern recognizers cover only the
structured kinds below.)

Detected kinds (:data:`PII_KINDS`):

- ``email``: ``local@domain.tld``.
- ``phone``: US numbers with separators: ``(555) 123-4567``, ``555-123-4567``, ``555.123.4567``,
  ``+1 555 123 4567``, ``1-800-555-1234``, and bare 10-digit runs (``5551234567``) with valid
  area and exchange codes unless a word such as ``order``, ``account``, ``invoice``, ``MRN`` or
  ``#`` right before makes them an identifier.
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
- ``dob``: a date (``03/14/1970``, ``1970-03-14``, ``March 14, 1970``, ``14 March 1970``) right
  after ``DOB``, ``date of birth``, ``birth date`` or ``born (on)``.
- ``street_address``: a run of tokens that ``usaddress`` tags as a house number, a street name and
  a street type (``4100 Harbor Point Road``, ``742 Evergreen Terrace Apt. 5``).
- ``person``: two or three capitalised words (optionally after ``Dr.``, ``Mr.``, …) that
  ``probablepeople`` parses as a person with a given name and a surname (``Maria Garcia``,
  ``Dr. Alice Wong``). Statistical: it misses names written in lower case or alone (``Maria``),
  and may mask a capitalised phrase that looks like a name; masking errs on the safe side.

Findings never overlap: where two candidates overlap the longer one wins (then the kind listed
first in :data:`PII_KINDS`). :func:`mask_text` is what reports use, so raw values appear nowhere
unless the user asks for them.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

__all__ = ["PII_KINDS", "PIIFinding", "find_pii", "mask_value", "mask_text", "pii_summary",
           "luhn_valid"]

#: The kinds :func:`find_pii` reports, in tie-breaking priority order.
PII_KINDS: tuple[str, ...] = ("api_key", "email", "credit_card", "ssn", "phone", "ipv4", "dob",
                               "street_address", "person")

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


_MONTH = (r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?"
          r"|Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)")
_DATE = (rf"(?:\d{{1,2}}[/.-]\d{{1,2}}[/.-]\d{{2,4}}|\d{{4}}-\d{{1,2}}-\d{{1,2}}"
         rf"|{_MONTH}\.? \d{{1,2}}(?:st|nd|rd|th)?,? \d{{4}}|\d{{1,2}} {_MONTH}\.? \d{{4}})")
_DOB = re.compile(rf"(?i:\b(?:DOB|D\.O\.B\.?|date of birth|birth ?date|born(?: on)?)\b)"
                  rf"\s*[:#=-]?\s*(?P<v>{_DATE})(?![\d/])")

_ADDRESS_LABELS = frozenset({
    "AddressNumberPrefix", "AddressNumber", "AddressNumberSuffix", "StreetNamePreModifier",
    "StreetNamePreDirectional", "StreetNamePreType", "StreetName", "StreetNamePostType",
    "StreetNamePostDirectional", "StreetNamePostModifier", "OccupancyType",
    "OccupancyIdentifier", "SubaddressType", "SubaddressIdentifier"})
_HOUSE_NUMBER = re.compile(r"\b\d{1,6}[A-Za-z]?[ \t]+[A-Z0-9]")


def _token_spans(line: str, tokens) -> list[tuple[int, int, str]]:
    out, pos = [], 0
    for tok, label in tokens:
        i = line.find(tok, pos)
        if i < 0:
            return out
        out.append((i, i + len(tok), label))
        pos = i + len(tok)
    return out


_NUMBER_TOKEN = re.compile(r"^\d{1,6}[A-Za-z]?$")
_STREET_WORD = re.compile(r"^(?:[A-Z][A-Za-z'’-]*\.?|\d+(?:st|nd|rd|th)|[NSEW]\.?)$")


def _address_in_run(line: str, run) -> tuple[int, int] | None:
    """The address inside a run of address-labelled tokens: a house number, capitalised street
    words up to the street type, then any unit ("Apt. 5", "Suite 210")."""
    types = [i for i, r in enumerate(run) if r[2] in ("StreetNamePostType", "StreetNamePreType")]
    if not types:
        return None
    j = types[0]
    clean = [line[a:b].rstrip(",.;:") for a, b, _ in run]
    start = None
    for i in range(j - 1, -1, -1):
        if _NUMBER_TOKEN.match(clean[i]):
            start = i
            break
        if not _STREET_WORD.match(clean[i]):
            return None
    if start is None or start == j - 0 or not any(r[2] == "StreetName" for r in run[start + 1: j + 1]) \
            and run[j][2] != "StreetNamePreType":
        return None
    end = j
    while end + 2 < len(run) + 1 and end + 1 < len(run) and run[end + 1][2] == "OccupancyType" \
            and end + 2 < len(run) and run[end + 2][2] == "OccupancyIdentifier":
        end += 2
    a, b = run[start][0], run[end][1]
    while b > a and line[b - 1] in ",.;:":
        b -= 1
    return a, b


def _street_addresses(text: str) -> list[tuple[int, int]]:
    """Spans of street addresses, tagged by ``usaddress`` line by line."""
    if not _HOUSE_NUMBER.search(text):
        return []
    found: list[tuple[int, int]] = []
    # sentence by sentence: the CRF tags an address in a short context far better
    bounds = [0, *(m.end() for m in re.finditer(
        r"[\n!?;|]|(?<!Apt)(?<!Ste)(?<!St)(?<!Dr)(?<!Mr)(?<!Ms)(?<!Mrs)(?<!No)\.(?=\s)", text)), len(text)]
    for offset, stop in zip(bounds, bounds[1:]):
        line = text[offset:stop]
        if _HOUSE_NUMBER.search(line):
            found += [(offset + a, offset + b) for a, b in _addresses_in_sentence(line)]
    return found


@functools.lru_cache(maxsize=1 << 16)
def _addresses_in_sentence(line: str) -> tuple[tuple[int, int], ...]:
    import usaddress

    try:
        spans = _token_spans(line, usaddress.parse(line))
    except Exception:  # noqa: BLE001 - the parser's own errors on odd input: no finding
        spans = []
    found = []
    run: list[tuple[int, int, str]] = []
    for sp in [*spans, (0, 0, "")]:
        if sp[2] in _ADDRESS_LABELS and not (sp[2] == "AddressNumber" and run):
            run.append(sp)
            continue
        span = _address_in_run(line, run)
        if span is not None:
            found.append(span)
        run = [sp] if sp[2] in _ADDRESS_LABELS else []
    return tuple(found)


_NAME_WORD = r"[A-Z][a-z]+(?:[-'’][A-Z]?[a-z]+)?"
_NAME_CAND = re.compile(rf"(?<![\w.])(?:(?:Dr|Mr|Mrs|Ms|Mx|Prof)\.?[ \t]+)?{_NAME_WORD}"
                        rf"(?:[ \t]+[A-Z]\.)?(?:[ \t]+{_NAME_WORD}){{1,2}}(?![\w])")
_NAME_PARTS = frozenset({"GivenName", "Surname", "MiddleName", "MiddleInitial", "FirstInitial",
                         "LastInitial", "Nickname"})


@functools.lru_cache(maxsize=1 << 16)
def _person_span(cand: str) -> tuple[int, int] | None:
    """The name inside a candidate phrase, if ``probablepeople`` parses it as a person with a
    given name and a surname (cached: names repeat across documents and samples)."""
    import probablepeople

    try:
        tagged, kind = probablepeople.tag(cand)
    except Exception:  # noqa: BLE001 - RepeatedLabelError and the like: not a clean name
        return None
    if kind != "Person" or "GivenName" not in tagged or "Surname" not in tagged:
        return None
    parts = [v for k, v in tagged.items() if k in _NAME_PARTS]
    starts = [cand.find(v) for v in parts]
    if min(starts) < 0:
        return None
    start = min(starts)
    end = max(st + len(v) for st, v in zip(starts, parts))
    while end > start and cand[end - 1] in ",.;:":
        end -= 1
    return start, end


def _persons(text: str) -> list[tuple[int, int]]:
    """Spans of person names: capitalised word runs that ``probablepeople`` parses as a person
    with a given name and a surname (the span covers the name parts only)."""
    found = []
    for m in _NAME_CAND.finditer(text):
        span = _person_span(m.group())
        if span is not None:
            found.append((m.start() + span[0], m.start() + span[1]))
    return found


#: a bare 10-digit North American number (area and exchange codes start with 2-9), not right
#: after a word that makes it an identifier (order, account, invoice, ticket, MRN, id, #)
_BARE_PHONE = re.compile(r"(?<![\w#-])(?:\+?1)?[2-9]\d{2}[2-9]\d{6}(?![\w-])")
_ID_WORD = re.compile(r"(?i:(?:order|acc(?:oun)?t|invoice|inv|ticket|case|mrn|id|no|number|ref|"
                      r"serial|sku|tracking)[ \t]*[:#.]?[ \t]*)$")


#: An e-mail address cut off by the end of the text (a sample or a window ends mid-address):
#: ``alice.smith@exa``, ``alice.smith@``, or a dotted / underscored local part such as
#: ``alice.smith`` or ``j_doe42`` as the text's last word. A complete address is matched by the
#: ``email`` detector; a dotted name inside the text (``alice.smith said``) is not an address.
_EMAIL_CUT = re.compile(
    r"(?<![\w.%+@-])(?:[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9.-]*"
    r"|[A-Za-z][A-Za-z0-9]*(?:[._+][A-Za-z0-9]+)+)(?=\s*\Z)")


def find_pii(text: str) -> list[PIIFinding]:
    """All PII findings in ``text``: non-overlapping, sorted by start (longer wins on overlap)."""
    cands: list[PIIFinding] = []
    for m in _EMAIL_CUT.finditer(text):
        cands.append(PIIFinding("email", m.start(), m.end(), m.group()))
    for m in _BARE_PHONE.finditer(text):
        if not _ID_WORD.search(text[max(0, m.start() - 20):m.start()]):
            cands.append(PIIFinding("phone", m.start(), m.end(), m.group()))
    for m in _DOB.finditer(text):
        cands.append(PIIFinding("dob", m.start("v"), m.end("v"), m.group("v")))
    for start, end in _street_addresses(text):
        cands.append(PIIFinding("street_address", start, end, text[start:end]))
    for start, end in _persons(text):
        cands.append(PIIFinding("person", start, end, text[start:end]))
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


_LABELS = {"person": "[name]", "dob": "[date of birth]", "street_address": "[street address]"}


def mask_value(kind: str, value: str) -> str:
    """A masked form of ``value`` that shows its kind and only a hint of its content.

    - email: first character of the user and of the domain, and the top-level domain:
      ``john.doe@example.com`` → ``j***@e***.com``; an address cut off by the end of the text
      keeps what it has: ``alice.smith@exa`` → ``a***@e***``, ``alice.smith`` → ``a***@…``;
    - phone, ssn, credit_card: every digit but the last two becomes ``•``, separators stay:
      ``(555) 123-4567`` → ``(•••) •••-••67``;
    - api_key: the first four characters and ``…``: ``sk_live_abc…`` → ``sk_l…``;
    - ipv4: the first octet, the other digits as ``•``:
      ``192.168.0.1`` → ``192.•••.•.•``;
    - person, dob, street_address: nothing of the value, only ``[name]``, ``[date of birth]``,
      ``[street address]``;
    - anything else: the first character and ``…``.
    """
    if kind == "email" and "@" in value:
        local, _, domain = value.rpartition("@")
        labels = domain.split(".")
        tld = labels[-1] if len(labels) > 1 else ""
        return f"{local[:1]}***@{domain[:1]}***" + (f".{tld}" if tld else "")
    if kind == "email":  # the local part of an address cut off by the end of the text
        return f"{value[:1]}***@…"
    if kind in ("phone", "ssn", "credit_card"):
        return _mask_digits(value, keep_last=2)
    if kind == "api_key":
        return value[:4] + "…"
    if kind in _LABELS:
        return _LABELS[kind]
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
