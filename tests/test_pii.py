import pytest

from leakaudit.corpus.pii import PII_KINDS, find_pii, luhn_valid, mask_text, mask_value, pii_summary


def kinds_and_values(text):
    return [(f.kind, f.value) for f in find_pii(text)]


@pytest.mark.parametrize("text, kind, value", [
    ("Write to john.doe@example.com today.", "email", "john.doe@example.com"),
    ("Call (555) 123-4567 now.", "phone", "(555) 123-4567"),
    ("Call 555-123-4567 now.", "phone", "555-123-4567"),
    ("Call +1 555 123 4567 now.", "phone", "+1 555 123 4567"),
    ("Toll free 1-800-555-1234.", "phone", "1-800-555-1234"),
    ("Her SSN is 123-45-6789.", "ssn", "123-45-6789"),
    ("Card 4111 1111 1111 1111 on file.", "credit_card", "4111 1111 1111 1111"),
    ("Card 4111-1111-1111-1111 on file.", "credit_card", "4111-1111-1111-1111"),
    ("Card 5555555555554444 on file.", "credit_card", "5555555555554444"),
    ("Amex 3782 822463 10005 on file.", "credit_card", "3782 822463 10005"),
    ("Use sk_live_4eC39HqLyjWDarjtT1zdp7dc as the key.", "api_key", "sk_live_4eC39HqLyjWDarjtT1zdp7dc"),
    ("export OPENAI=sk-abcdefghijklmnopqrstuvwxyz123456", "api_key", "sk-abcdefghijklmnopqrstuvwxyz123456"),
    ("aws AKIAIOSFODNN7EXAMPLE here", "api_key", "AKIAIOSFODNN7EXAMPLE"),
    ("gh ghp_abcdefghijklmnopqrstuvwxyz0123456789 here", "api_key",
     "ghp_abcdefghijklmnopqrstuvwxyz0123456789"),
    ("api_key = 'a3f9c2e1b4d5f6a7b8c9d0e1f2a3b4c5' ok", "api_key", "a3f9c2e1b4d5f6a7b8c9d0e1f2a3b4c5"),
    ("The token is Zx81kQ0pLmN3vB7cX2wE9rT5yU4iO6aS1dF. Bye", "api_key",
     "Zx81kQ0pLmN3vB7cX2wE9rT5yU4iO6aS1dF"),
    ("Server at 192.168.0.1, port 22.", "ipv4", "192.168.0.1"),
])
def test_each_kind_found(text, kind, value):
    assert kinds_and_values(text) == [(kind, value)]
    f = find_pii(text)[0]
    assert text[f.start:f.end] == value


@pytest.mark.parametrize("text", [
    "Order 4111111111111112 shipped.",  # Luhn fails
    "Card 4111 1111 1111 1112 declined.",  # Luhn fails, grouped
    "Numbers 000-12-3456, 666-12-3456, 912-34-5678, 123-00-4567, 123-45-0000.",  # never-issued SSNs
    "Version 1.2.3.4.5 and 256.1.1.1 and 10.0.0.300",
    "Ticket #1234 and order 5521 on 2024-01-15.",
    "Plain key words: the key to the token of a secret.",
    "A long hex 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b without a keyword.",
    "account 12345678901234567890123 (too long for a card)",
])
def test_no_false_positives(text):
    assert find_pii(text) == []


def test_luhn():
    assert luhn_valid("4111111111111111")
    assert luhn_valid("79927398713")
    assert not luhn_valid("79927398710")
    assert not luhn_valid("4111x11111111111")


def test_sorted_non_overlapping_longer_wins():
    text = "a@b.io then 10.0.0.1 then 123-45-6789 and call 555-201-7788."
    found = find_pii(text)
    assert [f.kind for f in found] == ["email", "ipv4", "ssn", "phone"]
    assert all(a.end <= b.start for a, b in zip(found, found[1:]))
    # a key embedded after "token": the prefixed detector and the generic one overlap; one finding
    t2 = "token: sk_live_4eC39HqLyjWDarjtT1zdp7dcXYZ123456"
    assert [(f.kind, f.value) for f in find_pii(t2)] == [
        ("api_key", "sk_live_4eC39HqLyjWDarjtT1zdp7dcXYZ123456")]


def test_mask_value_hints():
    assert mask_value("email", "john.doe@example.com") == "j***@e***.com"
    assert mask_value("phone", "(555) 123-4567") == "(•••) •••-••67"
    assert mask_value("ssn", "123-45-6789") == "•••-••-••89"
    assert mask_value("credit_card", "4111 1111 1111 1111") == "•••• •••• •••• ••11"
    assert mask_value("api_key", "sk_live_4eC39HqLyjWDarjtT1zdp7dc") == "sk_l…"
    assert mask_value("ipv4", "192.168.0.1") == "192.•••.•.•"
    f = find_pii("mail me: jane@corp.org")[0]
    assert f.masked == "j***@c***.org"


def test_mask_text_hides_raw_values():
    values = ["john.doe@example.com", "(555) 123-4567", "123-45-6789", "4111 1111 1111 1111",
              "sk_live_4eC39HqLyjWDarjtT1zdp7dc", "AKIAIOSFODNN7EXAMPLE", "192.168.0.1"]
    text = ("Contact john.doe@example.com or (555) 123-4567; SSN 123-45-6789; card "
            "4111 1111 1111 1111; key sk_live_4eC39HqLyjWDarjtT1zdp7dc; AKIAIOSFODNN7EXAMPLE; "
            "host 192.168.0.1.")
    masked = mask_text(text)
    for v in values:
        assert v not in masked
    assert masked.startswith("Contact j***@e***.com or (•••) •••-••67; SSN •••-••-••89;")
    assert masked.endswith("host 192.•••.•.•.")
    assert find_pii(masked) == []  # masking is stable: nothing left to find
    assert mask_text("nothing here") == "nothing here"


def test_pii_summary():
    s = pii_summary(["a@b.io and c@d.io", "SSN 123-45-6789", "nothing"])
    assert list(s) == list(PII_KINDS)
    assert s["email"] == 2 and s["ssn"] == 1 and s["phone"] == 0 and sum(s.values()) == 3


def test_lab_canary_shapes_are_detected():
    """The lab's canary secret formats (see leakaudit.lab.corpus) are all recognised."""
    assert kinds_and_values("SSN 321-54-9876.") == [("ssn", "321-54-9876")]
    assert kinds_and_values("key sk_live_aB3dE5fG7hJ9kL1mN3pQ5rS7 ok") == [
        ("api_key", "sk_live_aB3dE5fG7hJ9kL1mN3pQ5rS7")]
    assert kinds_and_values("call (415) 867-5309 today") == [("phone", "(415) 867-5309")]
    assert kinds_and_values("card 4532 0151 1283 0366 ok") == [("credit_card", "4532 0151 1283 0366")]


# ----------------------------------------------------------------------------- names, DOB, addresses


def test_person_names_dates_of_birth_and_street_addresses_are_masked():
    text = ("Patient: John Smith | DOB: 03/04/1970 | MRN: 12345678\n"
            "Dear Maria Garcia,\nMy shipping address has changed to 742 Evergreen Terrace Apt. 5, "
            "Springfield, IL 62704. Provider: Dr. Alice Wong, MD. Born on March 3, 1971.")
    found = {(f.kind, f.value) for f in find_pii(text)}
    assert {("person", "John Smith"), ("person", "Maria Garcia"), ("person", "Alice Wong"),
            ("dob", "03/04/1970"), ("dob", "March 3, 1971"),
            ("street_address", "742 Evergreen Terrace Apt. 5")} <= found
    masked = mask_text(text)
    for raw in ("John", "Smith", "Maria", "Garcia", "Alice Wong", "03/04/1970", "1971",
                "742", "Evergreen"):
        assert raw not in masked, raw
    assert "Patient: [name] | DOB: [date of birth] | MRN: 12345678" in masked
    assert "Dr. [name], MD" in masked and "changed to [street address], Springfield" in masked


def test_no_false_positives_on_plain_sentences():
    for text in ("Meeting notes: budget review on Friday with the whole team present.",
                 "Server log: disk usage at 91 percent on host db-02.",
                 "We shipped 3 new boxes on Monday.",
                 "Date of visit: 09/29/2020 and order 4718859 was placed.",
                 "Order #5551234567 and account 2125551234 are closed."):
        assert find_pii(text) == [], (text, find_pii(text))


def test_bare_ten_digit_phone_numbers():
    assert [f.kind for f in find_pii("Phone: 3915123987 | Email: x@y.io")] == ["phone", "email"]
    assert mask_text("call me at 5329393347.") == "call me at ••••••••47."


def test_lab_corpus_pii_is_masked():
    """On a generated lab corpus (ground truth in the manifest), every drawn name, DOB, e-mail and
    phone number written into a training document disappears from its masked text; addresses
    too, but for usaddress's rare misses (at most 10%)."""
    from leakaudit.lab.corpus import LabCorpusConfig, generate_lab_corpus

    c = generate_lab_corpus(LabCorpusConfig(n_docs=30, n_heldout=0, seed=3, canary_repeats=(1,),
                                            boilerplate_repeats=(2,)))
    raw = "\n".join(d["text"] for d in c.train)
    masked = "\n".join(mask_text(d["text"]) for d in c.train)
    for kind, values in c.manifest["pii_values"].items():
        written = [v for v in values if v in raw]
        left = [v for v in written if v in masked]
        assert written, kind
        if kind == "street_address":
            assert len(left) <= 0.1 * len(written), (kind, left)
        else:
            assert not left, (kind, left)
