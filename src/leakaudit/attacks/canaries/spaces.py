"""Secret spaces of canaries (Carlini et al. 2019, "The Secret Sharer").

A canary is a sentence ``template.format(secret=s)`` with ``s`` drawn uniformly from a
:class:`SecretSpace`. Named spaces (``ssn``, ``api_key``, ``phone``, ``credit_card``) are used by
the lab; any other space is given as a *pattern*: one character class per position,

    ``d`` a digit 0-9 · ``a`` a lowercase letter · ``A`` an uppercase letter ·
    ``x`` a base62 character [0-9A-Za-z] · ``h`` a lowercase hex digit ·
    ``\\c`` the literal character c · anything else is literal.

so ``"ddd-dd-dddd"`` is 10^9 strings and ``"sk_\\x\\x"`` nothing random. The exposure of a canary
can be at most ``log2_size`` bits.
"""

from __future__ import annotations

import math
import random
import re
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

_BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase


@dataclass(frozen=True)
class SecretSpace:
    """The set a canary's secret is drawn from, uniformly.

    ``shape`` is a short human-readable pattern (``d`` = a digit), ``regex`` matches exactly the
    members of the space (use :func:`re.fullmatch`), and ``log2_size`` is log2 of its size — the
    largest exposure a canary from this space can have.
    """

    kind: str
    shape: str
    description: str
    regex: str
    log2_size: float
    sample: Callable[[random.Random], str]


def _sample_ssn(rng: random.Random) -> str:
    area = rng.randrange(1, 899)
    if area >= 666:  # skip 666, keeping the draw uniform over the 898 valid areas
        area += 1
    return f"{area:03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"


def _sample_api_key(rng: random.Random) -> str:
    return "sk_live_" + "".join(rng.choice(_BASE62) for _ in range(24))


def _sample_phone(rng: random.Random) -> str:
    return f"({rng.randint(200, 999)}) {rng.randint(200, 999)}-{rng.randint(0, 9999):04d}"


def _luhn_check_digit(digits: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:  # these positions are doubled once the check digit is appended
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def _sample_credit_card(rng: random.Random) -> str:
    body = "4" + "".join(rng.choice(string.digits) for _ in range(14))
    number = body + _luhn_check_digit(body)
    return " ".join(number[i : i + 4] for i in range(0, 16, 4))


_SECRET_SPACES: dict[str, SecretSpace] = {
    "ssn": SecretSpace(
        kind="ssn",
        shape="ddd-dd-dddd",
        description=(
            "US social security number: area 001-899 except 666, group 01-99, serial 0001-9999"
        ),
        regex=r"(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}",
        log2_size=math.log2(898 * 99 * 9999),
        sample=_sample_ssn,
    ),
    "api_key": SecretSpace(
        kind="api_key",
        shape="sk_live_" + "x" * 24,
        description="'sk_live_' followed by 24 base62 characters [0-9A-Za-z]",
        regex=r"sk_live_[0-9A-Za-z]{24}",
        log2_size=24 * math.log2(62),
        sample=_sample_api_key,
    ),
    "phone": SecretSpace(
        kind="phone",
        shape="(ddd) ddd-dddd",
        description="US phone number: area code 200-999, exchange 200-999, line 0000-9999",
        regex=r"\([2-9]\d{2}\) [2-9]\d{2}-\d{4}",
        log2_size=math.log2(800 * 800 * 10000),
        sample=_sample_phone,
    ),
    "credit_card": SecretSpace(
        kind="credit_card",
        shape="4ddd dddd dddd dddd",
        description=(
            "16-digit Visa-style card number starting with 4, Luhn-valid, in groups of four"
        ),
        regex=r"4\d{3} \d{4} \d{4} \d{4}",
        log2_size=14 * math.log2(10),
        sample=_sample_credit_card,
    ),
}

#: Canary kinds that :class:`LabCorpusConfig` accepts.
CANARY_KINDS: tuple[str, ...] = tuple(_SECRET_SPACES)


def secret_space(kind: str) -> SecretSpace:
    """The :class:`SecretSpace` for a canary kind; raises :class:`ValueError` for unknown kinds."""
    try:
        return _SECRET_SPACES[kind]
    except KeyError:
        known = ", ".join(CANARY_KINDS)
        raise ValueError(f"unknown canary kind {kind!r}; known: {known}") from None


_PATTERN_CLASSES: dict[str, str] = {
    "d": string.digits,
    "a": string.ascii_lowercase,
    "A": string.ascii_uppercase,
    "x": _BASE62,
    "h": "0123456789abcdef",
}
_CLASS_REGEX = {"d": "[0-9]", "a": "[a-z]", "A": "[A-Z]", "x": "[0-9A-Za-z]", "h": "[0-9a-f]"}


def pattern_space(pattern: str) -> SecretSpace:
    """A :class:`SecretSpace` from a pattern (see the module docstring).

    >>> s = pattern_space("ddd-dd")
    >>> round(2 ** s.log2_size), bool(re.fullmatch(s.regex, "123-45"))
    (100000, True)
    """
    parts: list[tuple[str, str | None]] = []  # (literal, None) or ("", class chars)
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            if i + 1 >= len(pattern):
                raise ValueError(f"pattern {pattern!r} ends with a lone backslash")
            parts.append((pattern[i + 1], None))
            i += 2
            continue
        parts.append(("", ch) if ch in _PATTERN_CLASSES else (ch, None))
        i += 1
    classes = [c for _, c in parts if c is not None]
    loose = sorted({ch for ch in re.sub(r"\\.", "", pattern) if ch.isalpha() and ch not in _PATTERN_CLASSES})
    if loose and re.fullmatch(r"[A-Za-z_-]+", pattern):  # a word: a mistyped space name
        import difflib

        near = difflib.get_close_matches(pattern, list(_SECRET_SPACES), n=1, cutoff=0.5)
        hint = f"did you mean {near[0]}? " if near else ""
        raise ValueError(f"unknown secret space {pattern!r}: {hint}a pattern uses d, a, A, x, h "
                         f"as random positions and escapes literal letters with \\ "
                         f"({', '.join(loose)} are neither)")
    # (elsewhere an unescaped letter that is not a class is a literal, e.g. "sk_\\x-xxxh")
    if not classes:
        raise ValueError(f"pattern {pattern!r} has no random position (use d, a, A, x or h)")
    log2 = sum(math.log2(len(_PATTERN_CLASSES[c])) for c in classes)
    regex = "".join(_CLASS_REGEX[c] if c is not None else re.escape(lit) for lit, c in parts)

    def sample(rng: random.Random) -> str:
        return "".join(rng.choice(_PATTERN_CLASSES[c]) if c is not None else lit
                       for lit, c in parts)

    return SecretSpace(kind="pattern", shape=pattern, description=f"pattern {pattern!r}",
                       regex=regex, log2_size=log2, sample=sample)


def space_of(canary: Mapping[str, Any]) -> SecretSpace:
    """The space of a manifest canary record: its named ``kind``, else its ``secret_space``
    pattern."""
    kind = str(canary.get("kind", ""))
    if kind in _SECRET_SPACES:
        return _SECRET_SPACES[kind]
    shape = canary.get("secret_space")
    if not shape:
        raise ValueError(f"canary {canary.get('id')!r} has neither a known kind nor a "
                         "secret_space pattern")
    return pattern_space(str(shape))


def canary_reference_secrets(
    canary: Mapping[str, Any], n: int, rng: random.Random | int
) -> list[str]:
    """Draw ``n`` distinct secrets from the canary's secret space, none equal to its real secret.

    These are the reference candidates of the exposure metric (Carlini et al. 2019): the model
    ranks the real canary sentence among ``canary["template"].format(secret=s)`` for each
    reference ``s``. ``canary`` is a manifest canary record (needs ``kind`` and ``secret``);
    ``rng`` is a :class:`random.Random` or a seed for one.
    """
    if n < 0:
        raise ValueError(f"n must be non-negative, got {n}")
    space = space_of(canary)
    if n >= 2 ** min(space.log2_size, 62) - 1:
        raise ValueError(f"cannot draw {n} distinct secrets from the {space.kind} space")
    gen = rng if isinstance(rng, random.Random) else random.Random(rng)
    taken = {str(canary["secret"])}
    out: list[str] = []
    while len(out) < n:
        s = space.sample(gen)
        if s not in taken:
            taken.add(s)
            out.append(s)
    return out
