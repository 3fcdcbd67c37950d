"""Property-based tests (Hypothesis) of the parsers that read what a user or a server hands in:
the corpus loader, the membership scores file, the report reader (and the ``--fail-on``
quantities computed from what it read) and the ``--fail-on`` expression parser.

The property is the same for each: any input gives a result or a :class:`LeakauditError` (one
line, the CLI's ``error:``), never another exception. Inputs are both raw bytes and structured
JSON whose fields have every JSON type, so the type checks are reached, not only the decoder.
"""

from __future__ import annotations

import json
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leakaudit.errors import LeakauditError

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# JSON values of every type, nested a little
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20))
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)


def _dump(v) -> str:
    return json.dumps(v, allow_nan=True)


@contextmanager
def _written(name: str, data: bytes):
    """A file ``name`` holding ``data`` in a fresh temporary folder, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="leakaudit-prop-") as d:
        p = Path(d) / name
        p.write_bytes(data)
        yield p


def _result_or_input_error(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except LeakauditError as e:
        assert str(e).strip(), "an error needs a message"
        return None


# ----------------------------------------------------------------------------- corpus loader

corpus_names = st.sampled_from(["c.jsonl", "c.json", "c.txt", "c.parquet", "c"])
field_values = st.one_of(json_values, st.text(max_size=40))


@st.composite
def jsonl_records(draw):
    rows = draw(st.lists(st.one_of(
        st.fixed_dictionaries({"text": field_values}, optional={"id": field_values,
                                                                "meta": json_values}),
        json_values), max_size=6))
    return "\n".join(_dump(r) for r in rows).encode("utf-8")


@SETTINGS
@given(name=corpus_names, data=st.one_of(st.binary(max_size=300), jsonl_records()))
def test_corpus_loader_gives_documents_or_an_input_error(name, data):
    from leakaudit.corpus.load import load_corpus

    with _written(name, data) as p:
        docs = _result_or_input_error(load_corpus, p)
    if docs is not None:
        assert all(isinstance(d.text, str) and isinstance(d.id, str) for d in docs)


@SETTINGS
@given(array=st.lists(field_values, max_size=5), field=st.sampled_from(["text", "body", ""]))
def test_corpus_loader_json_array(array, field):
    from leakaudit.corpus.load import load_corpus

    with _written("c.json", _dump(array).encode()) as p:
        _result_or_input_error(load_corpus, p, text_field=field or "text")


# ----------------------------------------------------------------------------- scores file


@st.composite
def score_rows(draw):
    row = st.fixed_dictionaries({}, optional={
        "member": field_values, "score": field_values, "label": field_values,
        "probs": st.one_of(json_values, st.lists(st.floats(), max_size=4)), "id": field_values,
        "loss": field_values})
    rows = draw(st.lists(st.one_of(row, json_values), max_size=8))
    return "\n".join(_dump(r) for r in rows).encode("utf-8")


@st.composite
def csv_text(draw):
    header = draw(st.sampled_from(["member,score", "member,score,id", "id,member,label,probs",
                                   "score", ""]))
    cells = st.text(alphabet="01.-e,naif \"", max_size=12)
    return (header + "\n" + "\n".join(draw(st.lists(cells, max_size=6)))).encode()


@SETTINGS
@given(name=st.sampled_from(["s.jsonl", "s.csv", "s.json", "s.txt"]),
       data=st.one_of(st.binary(max_size=300), score_rows(), csv_text()))
def test_scores_file_gives_outputs_or_an_input_error(name, data):
    from leakaudit.targets.scores_file import load_outputs

    with _written(name, data) as p:
        _result_or_input_error(load_outputs, p)


# ----------------------------------------------------------------------------- report reader

ENTRY_TYPES = ["run", "summary", "sample", "eval", "canary", "exposure", "memorization",
               "membership", "inversion", "pii", "finding", "skipped"]


@st.composite
def report_lines(draw):
    recs = [{"entry_type": "run", "command": "x", "models": {}, "config": {}}] \
        if draw(st.booleans()) else []
    for _ in range(draw(st.integers(0, 6))):
        rec = draw(st.dictionaries(st.sampled_from(
            ["auc", "tpr_at_fpr", "verified", "precision", "extracted", "kind", "bucket", "exact",
             "exposure_extrapolated", "exposure_rank", "epsilon_lb", "baseline", "top1",
             "severity", "family", "metric", "counts", "schema_version"]), json_values, max_size=6))
        rec["entry_type"] = draw(st.one_of(st.sampled_from(ENTRY_TYPES), json_values))
        recs.append(rec)
    lines = [_dump(r) for r in recs]
    if draw(st.booleans()):
        lines.append(draw(st.text(max_size=30)))
    return "\n".join(lines).encode("utf-8", "surrogatepass")


@SETTINGS
@given(data=st.one_of(report_lines(), st.binary(max_size=200)),
       expr=st.sampled_from(["extraction.verified > 0", "membership.auc >= 0.5",
                             "membership.tpr@0.01 > 0", "findings.high >= 1",
                             "exposure.max > 10 or canaries.extracted > 0",
                             "memorization.exact > 0 and inversion.top1 > 0.5",
                             "membership.epsilon_lb > 1", "extraction.precision > 0.1"]))
def test_report_reader_and_fail_on_give_a_result_or_an_input_error(data, expr):
    from leakaudit.report.reader import load_report
    from leakaudit.report.thresholds import check

    with _written("report.jsonl", data) as p:
        records = _result_or_input_error(load_report, p.parent)
    if records is not None:
        (v,) = check(records, [expr])
        assert v.crossed in (True, False, None)
        assert all(x is None or isinstance(x, float) for x in v.values.values())


# ----------------------------------------------------------------------------- --fail-on parser

fail_on_tokens = st.sampled_from(["(", ")", "and", "or", "not", ">", ">=", "<", "==", "!=", "=>",
                                  "0", "1e-3", "5%", "-2", "extraction.verified", "membership.auc",
                                  "membership.tpr@0.01", "findings.high", "nosuch.family", "x",
                                  "__import__", "'", "\"", ",", "NaN", "inf"])


@SETTINGS
@given(text=st.one_of(st.text(max_size=60),
                      st.lists(fail_on_tokens, max_size=14).map(" ".join),
                      st.integers(0, 3000).map(lambda n: "(" * n + "extraction.verified > 0" + ")" * n)))
def test_fail_on_parser_gives_a_tree_or_an_input_error(text):
    from leakaudit.report.thresholds import parse

    _result_or_input_error(parse, text)


# ----------------------------------------------------------------------------- server replies

logprob_objects = st.fixed_dictionaries({}, optional={
    "tokens": json_values, "token_logprobs": st.one_of(json_values, st.lists(scalars, max_size=4)),
    "top_logprobs": json_values, "text_offset": json_values, "content": json_values})


@SETTINGS
@given(reply=st.one_of(json_values, st.fixed_dictionaries({}, optional={
    "choices": st.one_of(json_values, st.lists(st.one_of(json_values, st.fixed_dictionaries(
        {}, optional={"text": field_values, "logprobs": st.one_of(json_values, logprob_objects),
                      "prompt_logprobs": json_values})), max_size=3)),
    "usage": st.one_of(json_values, st.dictionaries(
        st.sampled_from(["prompt_tokens", "completion_tokens", "total_tokens"]), scalars))})))
def test_reply_check_accepts_only_what_can_be_read(reply):
    """A reply that passes :func:`check_reply` can be read the way the backends read it."""
    from leakaudit.targets.api_replies import MalformedReply, check_reply

    try:
        check_reply(reply)
    except MalformedReply:
        return
    c0 = reply["choices"][0]
    assert isinstance(c0, dict)
    usage = reply.get("usage") or {}
    assert all(isinstance(usage.get(k) or 0, int) for k in ("prompt_tokens", "completion_tokens"))
    lp = c0.get("logprobs") or {}
    if "content" not in lp or lp.get("content") is None:
        lengths = {len(lp[k]) for k in ("tokens", "token_logprobs", "top_logprobs", "text_offset")
                   if lp.get(k) is not None}
        assert len(lengths) <= 1
        assert all(v is None or v <= 1e-6 for v in lp.get("token_logprobs") or [])
