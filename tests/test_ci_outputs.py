"""Outputs CI acts on: --fail-on expressions (parser, evaluation, exit codes), SARIF 2.1.0 validated
against the OASIS schema, JUnit XML parsed with junitparser."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from leakaudit.errors import InputError
from leakaudit.report import thresholds as T
from leakaudit.report.records import load_report
from leakaudit.report.writer import write_report
from tests.test_findings import LEGACY_PAIRS, RUN

DATA = Path(__file__).parent / "data"


def sarif_validator():
    import jsonschema

    schema = json.loads((DATA / "sarif-schema-2.1.0.json").read_text(encoding="utf-8"))
    return jsonschema.Draft4Validator(schema)


@pytest.fixture()
def report(tmp_path):
    pairs = [(t, dict(r)) for t, r in LEGACY_PAIRS]
    pairs[0][1]["match_locations"] = [{"doc_id": "d1", "file": "corpus/train.jsonl", "line": 12}]
    write_report(tmp_path, run_record=RUN, records=pairs, summary={"attack": "x"},
                 formats=("jsonl", "sarif", "junit"), fail_on=["extraction.verified > 0"])
    return tmp_path


# ------------------------------------------------------------------ thresholds

def test_quantities_by_hand(report):
    q = T.quantities(load_report(report))
    assert q["extraction.verified"] == 1  # one of the two samples is verified
    assert q["canaries.extracted"] == 1
    assert q["exposure.max"] == 24.5 and q["exposure.rank_max"] == 9.9
    assert q["memorization.exact"] == 0.15
    assert q["membership.tpr@0.01"] == 0.3 and q["membership.auc"] == 0.9
    assert q["inversion.top1"] == 0.9
    assert q["findings.critical"] == 3  # verified sample with PII, extracted canary, 24.5-bit canary


@pytest.mark.parametrize("expr, crossed", [
    ("extraction.verified > 0", True),
    ("extraction.verified > 100000", False),
    ("membership.tpr@0.01 > 0.05", True),
    ("membership.tpr@0.01 > 30%", False),  # 0.3 is not > 0.30
    ("exposure.max > 20", True),
    ("canaries.extracted > 0 and exposure.max > 30", False),
    ("canaries.extracted > 0 and not (exposure.max > 30)", True),
    ("memorization.exact >= 0.2 or inversion.top1 >= 0.9", True),
    ("findings.critical >= 4", False),
    ("membership.auc > 0.5 and membership.epsilon_lb > 1", None),  # ε not measured here
    ("inversion.top1 > 0.5", True),  # generic FAMILY.METRIC would also give 0.9
    ("exposure.exposure_extrapolated > 24", True),  # generic family.metric
])
def test_fail_on_expressions(report, expr, crossed):
    (v,) = T.check(load_report(report), [expr])
    assert v.crossed is crossed, v


@pytest.mark.parametrize("bad", [
    "", "extraction.verified", "extraction.verified >", "> 0", "extraction.verified > x",
    "__import__('os').system('true') > 0", "extraction.verified > 0 or", "(extraction.verified > 0",
    "nosuch.family > 1", "extraction.verified => 1", "findings.severe > 0",
])
def test_fail_on_bad_input(bad):
    with pytest.raises(InputError):
        T.parse(bad)


def test_fail_on_nesting_is_limited():
    deep = "(" * 1000 + "extraction.verified > 0" + ")" * 1000
    with pytest.raises(InputError, match="nest more than 32 deep"):
        T.parse(deep)
    with pytest.raises(InputError, match="nest more than 32 deep"):
        T.parse("not " * 1000 + "extraction.verified > 0")
    ok = "(" * 32 + "extraction.verified > 0" + ")" * 32
    assert T.parse(ok) == T.parse("extraction.verified > 0")


def test_an_unmeasured_quantity_is_an_error_naming_what_was_measured(report):
    r = invoke(["report", report, "--format", "junit", "--fail-on", "membership.epsilon_lb > 1"])
    lines = [x for x in r.output.splitlines() if x.strip()]
    assert r.exit_code == 2, r.output
    assert len(lines) == 1 and lines[0].startswith("error: --fail-on 'membership.epsilon_lb > 1': "
                                                   "this run did not measure membership.epsilon_lb;"
                                                   " it measured "), lines
    assert "extraction.verified" in lines[0] and "membership.auc" in lines[0]
    r = invoke(["report", report, "--fail-on", "(" * 1000 + "extraction.verified > 0" + ")" * 1000])
    assert r.exit_code == 2 and r.output.startswith("error: ") and "nest more" in r.output
    assert len(r.output.strip().splitlines()) == 1


def test_exit_codes():
    assert T.exit_code([T.Verdict("a", False)]) == 0
    # a quantity the run did not measure: exit 2, even beside a crossed one (the gate is broken)
    assert T.exit_code([T.Verdict("a", False), T.Verdict("b", None, {"membership.auc": None})]) == 2
    assert T.exit_code([T.Verdict("a", True), T.Verdict("b", None, {"membership.auc": None})]) == 2
    assert T.exit_code([T.Verdict("a", False), T.Verdict("b", True)]) == 1
    assert (T.EXIT_BAD_INPUT, T.EXIT_SIGINT, T.EXIT_SIGTERM) == (2, 128 + signal.SIGINT, 128 + signal.SIGTERM)


# ------------------------------------------------------------------ SARIF and JUnit

def test_sarif_validates_and_points_at_corpus_lines(report):
    log = json.loads((report / "report.sarif").read_text())
    errors = [e.message for e in sarif_validator().iter_errors(log)]
    assert not errors, errors[:3]
    run = log["runs"][0]
    rules = {r["id"]: r for r in run["tool"]["driver"]["rules"]}
    assert "extraction/extraction" in rules and "membership/min_k" in rules
    assert "atlas:AML.T0024.000" in rules["membership/min_k"]["properties"]["tags"]
    assert rules["extraction/extraction"]["help"]["text"]
    leak = next(r for r in run["results"] if r["properties"]["entry_type"] == "sample")
    assert leak["level"] == "error" and leak["ruleId"] == "extraction/extraction"
    loc = leak["locations"][0]["physicalLocation"]
    assert loc["artifactLocation"]["uri"] == "corpus/train.jsonl" and loc["region"]["startLine"] == 12
    assert "owasp:LLM02:2025" in leak["properties"]["tags"]
    # info findings (the unverified sample, single exposed records) are not results
    assert not any(r["properties"]["entry_type"] == "membership_record" for r in run["results"])
    assert {r["level"] for r in run["results"]} <= {"error", "warning", "note"}
    # negative control: a result without its rule id breaks the schema check
    broken = json.loads(json.dumps(log))
    del broken["runs"][0]["results"][0]["message"]
    assert list(sarif_validator().iter_errors(broken))


def test_junit_parses_with_junitparser(report):
    from junitparser import Failure, JUnitXml, Skipped

    xml = JUnitXml.fromfile(str(report / "junit.xml"))
    cases = {(s.name, c.name): c for s in xml for c in s}
    assert ("leakaudit.thresholds", "extraction.verified > 0") in cases
    thr = cases[("leakaudit.thresholds", "extraction.verified > 0")]
    assert any(isinstance(r, Failure) for r in thr.result)
    ext = cases[("leakaudit.extraction", "extraction on target")]
    assert any(isinstance(r, Failure) for r in ext.result)  # a verified leak is severity critical
    ok = cases[("leakaudit.memorization", "memorization on all")]  # setup row: info only
    assert not ok.result
    assert not any(isinstance(r, Skipped) for c in cases.values() for r in c.result)
    assert xml.tests == len(cases)


# ------------------------------------------------------------------ commands

def invoke(args):
    from leakaudit.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def test_report_command_fail_on_exit_codes(report):
    r = invoke(["report", report, "--format", "junit", "--fail-on", "extraction.verified > 0"])
    assert r.exit_code == 1 and "crossed" in r.output
    r = invoke(["report", report, "--fail-on", "extraction.verified > 100000", "--format", "sarif,junit"])
    assert r.exit_code == 0, r.output
    assert "passed" in r.output
    r = invoke(["report", report, "--format", "junit", "--fail-on", "extraction.verified >>> 0"])
    assert r.exit_code == 2 and "error:" in r.output
    r = invoke(["report", report, "--format", "pdf"])
    assert r.exit_code == 2 and "unknown --format" in r.output


def test_extract_with_formats_and_thresholds(tmp_path, tiny_model_dir):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is fastest on a busy machine; restored below
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(
        ["Dear customer, your order has shipped.", "Server log: disk usage at 91 percent."])))
    base = ["extract", "--model", tiny_model_dir, "--corpus", corpus, "--samples", "2",
            "--select", "1", "--new-tokens", "8", "--sampler", "top_k", "--format", "jsonl,sarif,junit"]
    try:
        r = invoke(base + ["--out", tmp_path / "pass", "--fail-on", "extraction.verified > 100000"])
        assert r.exit_code == 0, r.output
        for f in ("report.jsonl", "report.sarif", "junit.xml"):
            assert (tmp_path / "pass" / f).is_file(), f
        assert not (tmp_path / "pass" / "report.html").exists()  # html not asked for
        assert not list(sarif_validator().iter_errors(json.loads((tmp_path / "pass/report.sarif").read_text())))
        r = invoke(base + ["--out", tmp_path / "fail", "--fail-on", "extraction.verified >= 0"])
        assert r.exit_code == 1, r.output
        r = invoke(base + ["--out", tmp_path / "bad", "--fail-on", "extraction.verified >"])
        assert r.exit_code == 2 and not (tmp_path / "bad").exists()
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        torch.set_num_threads(threads)


def test_skipped_attack_is_a_skipped_junit_case_and_a_valid_finding(tmp_path):
    """A membership attack the target cannot serve (skip record from targets.base.skip_record)."""
    from junitparser import JUnitXml, Skipped

    from leakaudit.findings import validator

    skip = {"world": "llm", "attack": "min_k_pp", "label": "min_k_pp(k=0.2)", "skipped": True,
            "target": "target", "needs": ["vocab_stats"], "missing": ["vocab_stats"],
            "reason": "target does not provide vocab_stats (vocabulary moments)"}
    write_report(tmp_path, run_record=RUN, records=[("membership", skip)], summary=None,
                 formats=("junit", "sarif"))
    row = [json.loads(x) for x in (tmp_path / "report.jsonl").read_text().splitlines()][1]
    assert not list(validator().iter_errors(row))
    assert (row["attack"], row["severity"], row["metric"]["value"]) == ("min_k_pp", "info", None)
    (case,) = [c for s in JUnitXml.fromfile(str(tmp_path / "junit.xml")) for c in s]
    assert any(isinstance(r, Skipped) and "vocab_stats" in r.message for r in case.result)
    assert json.loads((tmp_path / "report.sarif").read_text())["runs"][0]["results"] == []


def _finding(et, family, attack, severity, metric, target="target", **kw):
    return {"entry_type": et, "family": family, "attack": attack, "severity": severity,
            "target": {"name": target, "fingerprint": f"fp-{target}"}, "defense": None,
            "tags": ["owasp:LLM02:2025"],
            "metric": {"name": metric[0], "value": metric[1], "ci_low": None, "ci_high": None},
            **kw}


def _lab_like_records():
    """A lab's findings in miniature: 2 verified samples (each selected by 3 rankings) and an
    unverified one, 1 extracted canary, canary exposures, membership, 6 ranking precisions and
    memorization buckets and windows of two models."""
    S = "sample"
    recs = [
        _finding(S, "extraction", "extraction", "critical", ("verified", 1.0), sample_id=7,
                 sampler="top_k", selected_by=["zlib#1", "perplexity#2", "min_k#1"],
                 longest_match_tokens=80, match_docs=["doc-1", "doc-2"], match_doc_count=2),
        _finding(S, "extraction", "extraction", "high", ("verified", 1.0), sample_id=9,
                 sampler="top_k", selected_by=["zlib#2", "perplexity#1", "min_k#3"],
                 longest_match_tokens=60, match_docs=["doc-1", "doc-2"], match_doc_count=2),
        _finding(S, "extraction", "extraction", "info", ("verified", 0.0), sample_id=3),
        _finding("canary", "extraction", "canary_extraction", "critical", ("extracted", 1.0),
                 canary_id="canary-005-ssn-r32", kind="ssn", repeats=32, n_samples_with_secret=5),
    ]
    for cid in ("canary-001-ssn-r8", "canary-002-ssn-r8"):  # same numbers, different canaries
        recs.append(_finding("exposure", "exposure", "canary_exposure", "critical",
                             ("exposure_extrapolated", 25.0), canary_id=cid, kind="canary",
                             repeats=8))
    for attack in ("loss", "min_k"):
        recs.append(_finding("membership", "membership", attack, "high", ("tpr@0.01", 0.26),
                             subset="lab documents (no insertions) vs held-out", world="llm"))
    for ranking in ("zlib", "perplexity", "min_k"):
        for sampler in ("top_k", "temperature"):
            recs.append(_finding("eval", "extraction", ranking, "medium", ("precision", 0.08),
                                 ranking=ranking, sampler=sampler))
    for model, n_rate, n_seq in (("target", 3, 5), ("small", 2, 1)):
        for i in range(n_rate):
            recs.append(_finding("memorization", "memorization", "memorization", "high",
                                 ("exact_rate", 0.1 * (i + 1)), target=model, kind="rate",
                                 k=8 * (i + 1), ell=32, bucket="all"))
        for i in range(n_seq):
            recs.append(_finding("memorization", "memorization", "memorization", "low",
                                 ("exact", 1.0), target=model, kind="sequence", k=8,
                                 doc_id=f"doc-{i}", offset=10 * i, bucket="2-3"))
    out: dict = {}
    for r in recs:
        out.setdefault(r["entry_type"], []).append(r)
    return out


def test_sarif_one_error_per_verified_leak_and_one_memorization_note_per_model():
    from leakaudit.report.sarif import sarif_log

    log = sarif_log(_lab_like_records())
    assert not list(sarif_validator().iter_errors(log))
    res = log["runs"][0]["results"]
    # 2 verified samples + 1 extracted canary: 3 errors, one per leak (before: 9, with the
    # canary exposures and membership results as errors too)
    errors = [r for r in res if r["level"] == "error"]
    assert len(errors) == 3
    assert {r["properties"]["entry_type"] for r in errors} == {"sample", "canary"}
    samples = [r for r in res if r["properties"]["entry_type"] == "sample"]
    assert [r["properties"]["rankings"] for r in samples] == [
        ["zlib#1", "perplexity#2", "min_k#1"], ["zlib#2", "perplexity#1", "min_k#3"]]
    # memorization: one note per model (before: 8 + 3 results), its buckets and windows inside
    mem = {r["properties"]["target"]["name"]: r for r in res
           if r["properties"]["entry_type"] == "memorization"}
    assert set(mem) == {"target", "small"} and {r["level"] for r in mem.values()} == {"note"}
    assert [len(mem[m]["properties"]["buckets"]) for m in ("target", "small")] == [3, 2]
    assert [len(mem[m]["properties"]["sequences"]) for m in ("target", "small")] == [5, 1]
    assert mem["target"]["message"]["text"].startswith("target: memorization, 5 training window")
    # the ranking precisions: one note per ranking and model, the samplers inside
    evals = [r for r in res if r["properties"]["entry_type"] == "eval"]
    assert len(evals) == 3 and all(len(r["properties"]["rankings"]) == 2 for r in evals)
    assert len(res) == 2 + 1 + 2 + 2 + 3 + 2
    # every message differs from every other in its first 80 characters, and leads with the leak
    heads = [r["message"]["text"][:80] for r in res]
    assert len(set(heads)) == len(heads), heads
    assert samples[0]["message"]["text"].startswith("Verified leak: sample 7 of target")
    expo = [r["message"]["text"] for r in res if r["properties"]["entry_type"] == "exposure"]
    assert sorted(expo)[0].startswith("target, canary-001-ssn-r8: exposure")


def test_sarif_distinct_heads_marks_only_colliding_messages():
    from leakaudit.report.sarif import _distinct_heads

    long = "x" * 90
    rs = [{"message": {"text": long + "a"}, "partialFingerprints": {"leakaudit/v1": "a" * 32}},
          {"message": {"text": long + "b"}, "partialFingerprints": {"leakaudit/v1": "b" * 32}},
          {"message": {"text": "short"}, "partialFingerprints": {"leakaudit/v1": "c" * 32}}]
    _distinct_heads(rs)
    assert [r["message"]["text"][:10] for r in rs] == ["[aaaaaaaa]", "[bbbbbbbb]", "short"]
