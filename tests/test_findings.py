"""The findings schema: typed records, the open registry, the published JSON Schema, one writer,
old reports (schema version 1) still render, unknown versions are refused clearly."""

import json
import shutil
from pathlib import Path

import pytest

from leakaudit import findings as F
from leakaudit.report.records import load_report
from leakaudit.report.writer import FindingsWriter, write_report

DATA = Path(__file__).parent / "data"

RUN = {"command": "leakaudit test", "seed": 7, "config": {"show_pii": False},
       "models": {"target": {"path": "m", "fingerprint": "abc123"},
                  "small": {"path": "s", "fingerprint": "def456"}}}

# One record of every built-in finding type, as its producer writes it (plain dicts).
LEGACY_PAIRS = [
    ("sample", {"sample_id": 0, "sampler": "top_k", "text": "x", "verified": True,
                "pii_kinds": ["EMAIL"], "match_docs": ["d1"],
                "tags": ["owasp:LLM02:2025", "atlas:AML.T0057"]}),
    ("sample", {"sample_id": 1, "sampler": "top_k", "text": "y", "verified": False, "pii_kinds": []}),
    ("eval", {"attack": "extraction", "sampler": "top_k", "ranking": "zlib", "n_selected": 4,
              "n_memorized": 1, "precision": 0.25, "ci_low": 0.0063, "ci_high": 0.806}),
    ("canary", {"canary_id": "c1", "kind": "ssn", "repeats": 32, "extracted": True}),
    ("pii", {"scope": "verified samples", "counts": {"EMAIL": 1}, "n_samples_with_pii": 1}),
    ("memorization", {"kind": "rate", "attack": "memorization", "model": "small", "k": 32,
                      "bucket": "all", "exact": {"k": 30, "n": 200, "value": 0.15, "ci_low": 0.10,
                                                 "ci_high": 0.21, "ci_level": 0.95}}),
    ("memorization", {"kind": "setup", "attack": "memorization", "config": {"suffix_length": 32},
                      "models": {}}),
    ("exposure", {"attack": "canary_exposure", "model": "target", "kind": "canary",
                  "canary_kind": "ssn", "repeats": 16, "exposure_rank": 9.9,
                  "exposure_extrapolated": 24.5, "n_references": 1000}),
    ("membership", {"attack": "membership", "world": "llm", "method": "min_k", "label": "min_k(k=0.2)",
                    "params": {"k": 0.2}, "subset": "all", "auc": 0.9, "auc_ci": [0.85, 0.95],
                    "tpr_at_fpr": [{"fpr": 0.01, "resolvable": True, "tpr": 0.3, "ci_low": 0.2,
                                    "ci_high": 0.4, "n_pos": 100, "ci_level": 0.95}]}),
    ("membership_record", {"attack": "membership", "method": "min_k", "rank": 1, "record_id": "d3",
                           "is_member": True, "score": 3.2, "subset": "all"}),
    ("inversion", {"attack": "mi_face", "target": "mlp", "defense": "none", "seed": 3,
                   "top1": {"k": 9, "n": 10, "value": 0.9, "ci_low": 0.55, "ci_high": 0.997},
                   "chance_top1": 0.1, "params": {"lr": 0.1}}),
    ("inversion_record", {"attack": "nes", "target": "mlp", "defense": "label_only", "class": 3,
                          "seed": 0, "target_confidence": 0.7}),
    ("attribute_inference", {"attack": "fredrikson2014", "target": "mlp", "mode": "label",
                             "accuracy": {"k": 90, "n": 100, "value": 0.9, "ci_low": 0.82, "ci_high": 0.95},
                             "baseline": {"name": "marginal", "value": 0.6, "ci_low": 0.5, "ci_high": 0.7}}),
]


def test_shipped_schema_is_the_built_one():
    shipped = json.loads(F.schema_path().read_text(encoding="utf-8"))
    assert shipped == json.loads(json.dumps(F.json_schema())), \
        "regenerate with: python -m leakaudit.findings"


def test_finding_round_trip_and_envelope():
    f = F.Finding("eval", "extraction", "zlib", F.TargetRef("target", "abc"), "medium",
                  ["owasp:LLM02:2025"], F.Metric("precision", 0.25, 0.01, 0.8, 0.95, 4, "fraction"),
                  config={"sampler": "top_k"}, seed=1, data={"ranking": "zlib"})
    d = f.to_dict()
    assert d["schema_version"] == F.SCHEMA_VERSION and d["target"] == {"name": "target", "fingerprint": "abc"}
    assert d["ranking"] == "zlib" and d["metric"]["value"] == 0.25
    assert F.Finding.from_dict(d) == f
    with pytest.raises(ValueError, match="envelope"):
        F.Finding("eval", "extraction", "zlib", F.TargetRef("t"), data={"severity": "x"})
    with pytest.raises(ValueError, match="severity"):
        F.Finding("eval", "extraction", "zlib", F.TargetRef("t"), severity="huge")


def test_every_builtin_type_gets_an_envelope_that_validates(tmp_path):
    v = F.validator()
    write_report(tmp_path, run_record=RUN, records=LEGACY_PAIRS, summary={"attack": "x"}, formats=())
    rows = [json.loads(x) for x in (tmp_path / "report.jsonl").read_text().splitlines()]
    assert [r["entry_type"] for r in rows] == ["run"] + [t for t, _ in LEGACY_PAIRS] + ["summary"]
    for r in rows:
        errors = [e.message for e in v.iter_errors(r)]
        assert not errors, (r["entry_type"], errors)
    by = {(r["entry_type"], r.get("kind"), r.get("sample_id")): r for r in rows}
    s0 = by[("sample", None, 0)]
    assert (s0["family"], s0["attack"], s0["severity"]) == ("extraction", "extraction", "critical")
    assert s0["target"] == {"name": "target", "fingerprint": "abc123"} and s0["seed"] == 7
    assert by[("sample", None, 1)]["severity"] == "info"
    mem = by[("memorization", "rate", None)]
    assert mem["target"] == {"name": "small", "fingerprint": "def456"}
    assert mem["metric"]["value"] == 0.15 and mem["severity"] == "high"
    exp = by[("exposure", "canary", None)]
    assert exp["severity"] == "critical" and exp["metric"]["unit"] == "bits"
    m = by[("membership", None, None)]
    assert (m["attack"], m["metric"]["name"], m["severity"]) == ("min_k", "tpr@0.01", "high")
    assert m["tags"] == ["owasp:LLM02:2025", "atlas:AML.T0024.000"]
    inv = by[("inversion", None, None)]
    assert inv["target"]["name"] == "mlp" and inv["defense"] is None and inv["severity"] == "high"
    assert inv["seed"] == 3 and inv["tags"][-1] == "atlas:AML.T0024.001"
    assert by[("inversion_record", None, None)]["defense"] == "label_only"
    # hits.jsonl holds the verified sample only; files are private
    hits = [json.loads(x) for x in (tmp_path / "hits.jsonl").read_text().splitlines()]
    assert [h["sample_id"] for h in hits] == [0]
    assert (tmp_path / "report.jsonl").stat().st_mode & 0o077 == 0


def test_negative_control_invalid_records_fail_validation():
    v = F.validator()
    good = F.to_record("eval", dict(LEGACY_PAIRS[2][1]), F.RunContext.from_run(RUN)).to_dict()
    assert not list(v.iter_errors(good))
    for broken in ({**good, "severity": "severe"}, {k: x for k, x in good.items() if k != "target"},
                   {**good, "schema_version": 1}, {k: x for k, x in good.items() if k != "ranking"},
                   {**good, "target": {"name": "t"}}):
        assert list(v.iter_errors(broken))


def test_open_registry_new_entry_type(tmp_path):
    et = F.register_entry_type(F.EntryType(
        "test_dp_audit", "finding", "dp_audit", "test only",
        payload={"epsilon_lb": {"type": "number"}}, required=("epsilon_lb",)))
    try:
        f = F.Finding("test_dp_audit", "dp_audit", "jagielski2020", F.TargetRef("dp", "f1"), "low",
                      ["owasp:LLM02:2025"], F.Metric("epsilon_lb", 4.54), data={"epsilon_lb": 4.54})
        with FindingsWriter(tmp_path / "r.jsonl") as w:
            w.write("run", RUN)
            w.write(f)
        row = json.loads((tmp_path / "r.jsonl").read_text().splitlines()[1])
        assert not list(F.validator().iter_errors(row))
        assert list(F.validator().iter_errors({**row, "epsilon_lb": "x"}))
        with pytest.raises(ValueError, match="adapter"):  # a plain dict needs an adapter
            F.to_record("test_dp_audit", {"epsilon_lb": 1.0}, F.RunContext())
    finally:
        F.ENTRY_TYPES._items.pop(et.name)
    with pytest.raises(ValueError, match="register_entry_type"):
        F.to_record("test_dp_audit", {}, F.RunContext())


def test_old_report_still_renders(tmp_path):
    from typer.testing import CliRunner

    from leakaudit.cli import app

    d = tmp_path / "old"
    shutil.copytree(DATA / "report_v1", d)
    assert "schema_version" not in (d / "report.jsonl").read_text()
    r = CliRunner().invoke(app, ["report", str(d)])
    assert r.exit_code == 0, r.output
    html = (d / "report.html").read_text()
    assert "perplexity" in html and "Patient" in html
    rep = load_report(d)  # migrated on load: every record validates against the current schema
    v = F.validator()
    for t, recs in rep.items():
        for rec in recs:
            assert not list(v.iter_errors(rec)), (t, rec)
    assert rep["sample"][0]["severity"] == "critical" and rep["eval"][0]["attack"] == "perplexity"


def test_unknown_schema_version_is_refused_clearly(tmp_path):
    from typer.testing import CliRunner

    from leakaudit.cli import app

    d = tmp_path / "future"
    d.mkdir()
    (d / "report.jsonl").write_text(json.dumps({"entry_type": "run", "schema_version": 99,
                                                "command": "x"}) + "\n")
    r = CliRunner().invoke(app, ["report", str(d)])
    assert r.exit_code == 2
    assert "schema version 99 is not supported" in r.output
