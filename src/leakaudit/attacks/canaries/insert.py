"""Insert canaries into any corpus at chosen repetition counts (Carlini et al. 2019).

``insert_canaries`` draws one secret per (template, repetition count) from the template's
:class:`~leakaudit.attacks.canaries.spaces.SecretSpace`, checks that it occurs nowhere in the
corpus, and inserts the sentence into ``repeats`` distinct documents (at the end, as a P.S. line,
or after a random sentence). The lab inserts its canaries with the same :func:`insert_sentence`.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from leakaudit.attacks.canaries.spaces import SecretSpace, pattern_space, secret_space
from leakaudit.errors import InputError

_ABBREVIATIONS = frozenset(
    {"Dr", "Mr", "Mrs", "Ms", "Jr", "Sr", "St", "Apt", "No", "vs", "Inc", "Ltd", "Co", "etc"}
)
_SENTENCE_END = re.compile(r"(\w+)[.!?](?=[ \n]|$)")
_PS_PREFIX = "P.S. "


def insert_sentence(text: str, sentence: str, rng: random.Random) -> str:
    """Insert ``sentence`` at the end, as a P.S. line, or right after a random sentence."""
    mode = rng.randrange(3)
    if mode == 2:
        ends = [m.end() for m in _SENTENCE_END.finditer(text) if m.group(1) not in _ABBREVIATIONS]
        if ends:
            pos = rng.choice(ends)
            return f"{text[:pos]} {sentence}{text[pos:]}"
    if mode == 1:
        return f"{text}\n\n{_PS_PREFIX}{sentence}"
    return f"{text}\n\n{sentence}"


@dataclass(frozen=True)
class CanarySpec:
    """One canary template: ``template`` contains ``{secret}`` once; ``space`` is a named kind
    (``ssn``, ``api_key``, ``phone``, ``credit_card``) or a pattern such as ``ddd-dd-dddd``."""

    template: str
    space: str

    def secret_space(self) -> SecretSpace:
        try:
            return secret_space(self.space)
        except ValueError:
            return pattern_space(self.space)

    def validate(self) -> None:
        check_template(self.template)
        try:
            self.secret_space()
        except ValueError as e:
            raise InputError(str(e)) from None


def check_template(template: str) -> None:
    """A canary template holds the bare field ``{secret}`` exactly once and no other field:
    ``{secret.__class__}``, ``{secret[0]}``, ``{secret!r}``, ``{secret:>9}`` or ``{other}`` are
    refused (attribute access would put Python objects, or worse, into the corpus); literal
    braces are written ``{{`` and ``}}``."""
    import string

    try:
        fields = [(name, conv, spec) for _, name, spec, conv in string.Formatter().parse(template)
                  if name is not None]
    except ValueError as e:
        raise InputError(f"canary template {template!r} is not a format string with only "
                         f"{{secret}}: {e}") from None
    for name, conv, spec in fields:
        if name != "secret" or conv or spec:
            field = "{" + name + (f"!{conv}" if conv else "") + (f":{spec}" if spec else "") + "}"
            raise InputError(f"canary template {template!r}: only the field {{secret}} is "
                             f"allowed, not {field}")
    if len(fields) != 1:
        raise InputError(f"a canary template needs exactly one {{secret}}: {template!r}")


def insert_canaries(docs: Sequence[dict[str, Any]], specs: Sequence[CanarySpec],
                    repeats: Sequence[int], *, seed: int) -> tuple[list[dict[str, Any]],
                                                                   list[dict[str, Any]]]:
    """Insert one canary per (spec, repetition count); returns the new documents (same order and
    ids, other fields kept) and the manifest canary records.

    Each record has ``id, kind, secret, sentence, template, prefix, secret_space,
    secret_space_description, secret_regex, secret_space_log2, repeats, doc_ids`` — the same
    fields as the lab's manifest, so ``leakaudit canaries exposure`` reads either.
    """
    if not docs:
        raise InputError("the corpus is empty: there is nothing to insert canaries into")
    for spec in specs:
        spec.validate()
    for r in repeats:
        if r < 1 or r > len(docs):
            raise InputError(f"repetition count {r} must lie in 1..{len(docs)} (the number of "
                             "documents: each copy goes into a different document)")
    rng = random.Random(seed)
    texts = [str(d["text"]) for d in docs]
    haystack = "\n".join(texts)
    used: set[str] = set()
    records: list[dict[str, Any]] = []
    for spec in specs:
        space = spec.secret_space()
        for r in repeats:
            for _ in range(1000):
                secret = space.sample(rng)
                if secret not in used and secret not in haystack:
                    break
            else:
                raise InputError(f"could not draw a secret from {space.shape!r} that is not "
                                 "already in the corpus; use a larger space")
            used.add(secret)
            sentence = spec.template.format(secret=secret)
            chosen = sorted(rng.sample(range(len(texts)), r))
            for i in chosen:
                texts[i] = insert_sentence(texts[i], sentence, rng)
            records.append({
                "id": f"canary-{len(records):03d}-{space.kind}-r{r}", "kind": space.kind,
                "secret": secret, "sentence": sentence, "template": spec.template,
                "prefix": spec.template.split("{secret}")[0], "secret_space": space.shape,
                "secret_space_description": space.description, "secret_regex": space.regex,
                "secret_space_log2": space.log2_size, "repeats": int(r),
                "doc_ids": [str(docs[i].get("id", i)) for i in chosen],
            })
    new_docs = [{**d, "text": t} for d, t in zip(docs, texts)]
    return new_docs, records
