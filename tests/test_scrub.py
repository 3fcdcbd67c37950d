"""PII scrubbing (defenses/scrub.py): counts per kind, residual measured by re-detection, the
three modes, non-PII text untouched."""

import pytest

from leakaudit.corpus.pii import find_pii, luhn_valid
from leakaudit.defenses.scrub import ScrubConfig, residual_secrets, scrub_texts
from leakaudit.errors import InputError

TEXTS = [
    "Contact jane.roe@example.org or call (415) 555-0134 about order 88812.",
    "SSN 123-45-6789 on file; card 4111 1111 1111 1111 charged; server 10.0.0.12.",
    "Use key sk_live_4eC39HqLyjWDarjtT1zdp7dc for billing. Jane will call back Tuesday.",
    "Nothing personal here, just a status update about the quarterly report.",
]


def test_redact_counts_and_residual():
    res = scrub_texts(TEXTS, ScrubConfig(mode="redact"))
    assert res.counts == {"api_key": 1, "email": 1, "credit_card": 1, "ssn": 1, "phone": 1, "ipv4": 1}
    assert sum(res.residual.values()) == 0
    assert res.texts[0] == "Contact [EMAIL] or call [PHONE] about order 88812."
    assert res.texts[3] == TEXTS[3]  # non-PII untouched
    assert res.n_docs_changed == 3
    assert "Jane will call back Tuesday." in res.texts[2]


def test_mask_and_pseudonymize_are_consistent_and_not_real():
    res = scrub_texts(TEXTS, ScrubConfig(mode="mask"))
    assert "•" in res.texts[1] and "123-45-6789" not in res.texts[1]
    texts = TEXTS + ["Again: jane.roe@example.org, 123-45-6789."]
    res = scrub_texts(texts, ScrubConfig(mode="pseudonymize", seed=3))
    assert "jane.roe@example.org" not in "".join(res.texts)
    e0 = [f.value for f in find_pii(res.texts[0]) if f.kind == "email"]
    e4 = [f.value for f in find_pii(res.texts[4]) if f.kind == "email"]
    assert e0 == e4 and e0[0].endswith("@example.com")  # same value, same pseudonym
    ssn = res.texts[4].split(", ")[1].rstrip(".")
    assert ssn.startswith("9") and not find_pii(ssn)  # area 9xx: never issued, not detected
    import re

    cards = re.findall(r"999999\d+", res.texts[1])  # no issuer: the detector does not fire
    assert len(cards) == 1 and len(cards[0]) == 16 and luhn_valid(cards[0])
    assert not [f for f in find_pii(res.texts[1]) if f.kind == "credit_card"]
    # pseudonyms are detected again but counted apart from residual PII
    assert sum(res.residual.values()) == 0 and res.pseudonyms["email"] == 2
    assert scrub_texts(texts, ScrubConfig(mode="pseudonymize", seed=3)).texts == res.texts


def test_kinds_filter_leaves_other_kinds_as_residual_negative_control():
    res = scrub_texts(TEXTS, ScrubConfig(kinds=("email",)))
    assert res.counts == {"email": 1}
    assert "(415) 555-0134" in res.texts[0]
    # nothing scrubbed: everything is residual
    none = scrub_texts(TEXTS, ScrubConfig(kinds=("ssn",)))
    assert none.residual == {"ssn": 0} and none.counts == {"ssn": 1}


def test_residual_secrets_against_ground_truth():
    res = scrub_texts(TEXTS, ScrubConfig())
    truth = [("ssn", "123-45-6789"), ("email", "jane.roe@example.org"), ("other", "88812")]
    assert residual_secrets(TEXTS, truth) == {k: {"total": 1, "present": 1} for k in ("ssn", "email", "other")}
    got = residual_secrets(res.texts, truth)
    assert got["ssn"]["present"] == 0 and got["email"]["present"] == 0 and got["other"]["present"] == 1


def test_bad_mode():
    with pytest.raises(InputError, match="scrub mode"):
        scrub_texts(TEXTS, ScrubConfig(mode="shred"))
    with pytest.raises(InputError, match="unknown PII kind"):
        scrub_texts(TEXTS, ScrubConfig(kinds=("dna",)))
