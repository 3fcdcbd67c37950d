"""leakaudit triage: the seed article's five deployments ranked with reasons, regulatory flags,
audits (membership first), the control that helps most, measured results replacing assumptions."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from leakaudit.errors import InputError
from leakaudit.report.writer import write_report
from leakaudit.triage import assess, compare, load_example, load_profile
from leakaudit.triage.measured import load_results
from leakaudit.triage.model import dp_factor, memorization_pressure
from leakaudit.triage.profile import example_names, profile_from_dict, profile_schema, schema_path


@pytest.fixture(scope="module")
def ranked():
    return compare([assess(load_example(n)) for n in "ABCDE"])


def test_examples_ship():
    assert example_names() == ["A", "B", "C", "D", "E"]


def test_seed_exercise_ranking(ranked):
    order = [a.profile.name for a in ranked]
    pos = {n: i for i, n in enumerate(order)}
    assert pos["B"] < pos["E"] and pos["C"] < pos["E"], order
    assert pos["E"] < pos["D"] and pos["E"] < pos["A"], order
    for a in ranked:  # every rank comes with its reasons
        assert a.risks and all(r.reasons() for r in a.risks)


def test_scores_are_the_product_of_their_factors(ranked):
    for a in ranked:
        for r in a.risks:
            assert r.score == pytest.approx(math.prod(f.value for f in r.factors))
    b = next(a for a in ranked if a.profile.name == "B")
    # by hand: PHI 1.0 × M(50k / 110M) = 1/(1+sqrt(0.4545)) = 0.59730 × duplication 1.1 (assumed) × no DP 1 × scores 1 × internal 0.6
    assert b.risks[0].key == "membership"
    assert b.score == pytest.approx(1.0 * 0.59730 * 1.1 * 1.0 * 1.0 * 0.6, rel=1e-4)
    e = next(a for a in ranked if a.profile.name == "E")
    assert e.score == pytest.approx(b.score * dp_factor(5.0)) and dp_factor(5.0) == pytest.approx(1 / 3)


def test_regulatory_flags(ranked):
    flags = {a.profile.name: {f["regulation"] for f in a.flags} for a in ranked}
    for n in "BE":
        assert {"GDPR", "HIPAA", "GDPR Art. 17 (erasure)"} <= flags[n], flags[n]
    assert not {"GDPR", "HIPAA"} & flags["D"]
    assert "HIPAA" not in flags["C"] and "HIPAA" not in flags["A"]
    e = next(a for a in ranked if a.profile.name == "E")
    erasure = next(f for f in e.flags if f["regulation"] == "GDPR Art. 17 (erasure)")
    assert "not erasure" in erasure["why"]  # DP bounds influence, it does not erase


def test_audits_membership_first_and_controls(ranked):
    by = {a.profile.name: a for a in ranked}
    for n in "BCDE":
        assert by[n].audits[0]["audit"] == "membership inference"
        assert by[n].audits[0]["command"].startswith("leakaudit membership")
    assert any(au["command"].startswith("leakaudit canaries insert") for au in by["C"].audits)
    assert by["A"].audits[0]["audit"] == "none on your data"
    assert by["B"].control["control"] == "dp_sgd"
    assert by["C"].control["control"] == "scrub"  # keys: remove them; DP is weak on duplicated keys
    for a in ranked:
        if a.control:
            assert a.control["score_after"] < a.control["score_before"]


def test_negative_control_public_data_without_personal_data_is_low():
    d = load_example("D")
    assert assess(d).score < 0.05
    # the same deployment with PHI instead of public tweets ranks far higher
    data = json.loads(json.dumps(d.data))
    data["training"]["kinds"] = ["phi"]
    assert assess(profile_from_dict(data)).score > 5 * assess(d).score


def test_memorization_pressure_by_hand():
    assert memorization_pressure(1_000, 1_000_000) == 0.5  # rpp = 1e-3
    assert memorization_pressure(4_000, 1_000_000) == pytest.approx(1 / 3)  # sqrt(4) = 2


def test_profile_schema_and_loading(tmp_path):
    import jsonschema

    shipped = json.loads(schema_path().read_text())
    assert shipped == profile_schema()
    v = jsonschema.Draft202012Validator(shipped)
    for n in "ABCDE":
        assert not list(v.iter_errors(load_example(n).data))
    y = tmp_path / "p.yaml"
    y.write_text("name: Y\nmodel: {origin: own_training, kind: llm, parameters: 1000000}\n"
                 "training: {records: 1000, kinds: [pii]}\nexposure: {outputs: logprobs, audience: public}\n")
    p = load_profile(y)
    assert assess(p).risks[0].factors[1].value == 0.5
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "X"\n[model]\norigin = "cloud"\nkind = "llm"\n[exposure]\noutputs = "text"\naudience = "public"\n')
    with pytest.raises(InputError, match="model.origin"):
        load_profile(bad)
    broken = tmp_path / "broken.toml"
    broken.write_text("name = \n")
    with pytest.raises(InputError, match="invalid TOML"):
        load_profile(broken)


def _membership_report(path, tpr):
    rec = {"attack": "membership", "world": "classifier", "method": "lira", "label": "lira", "params": {},
           "subset": "all", "auc": 0.8, "auc_ci": [0.7, 0.9],
           "tpr_at_fpr": [{"fpr": 0.01, "resolvable": True, "tpr": tpr, "ci_low": 0.0, "ci_high": 1.0,
                           "n_pos": 1000}]}
    write_report(path, run_record={"command": "t", "seed": 0, "models": {}}, records=[("membership", rec)],
                 summary=None, formats=())
    return path


def test_measured_results_replace_assumptions(tmp_path):
    b = load_example("B")
    assumed = assess(b)
    hi = assess(b, load_results([_membership_report(tmp_path / "hi", 0.30)]))
    lo = assess(b, load_results([_membership_report(tmp_path / "lo", 0.01)]))
    mia_hi = next(r for r in hi.risks if r.key == "membership")
    assert mia_hi.measured and hi.measured_from == [str(tmp_path / "hi")]
    leak = next(f for f in mia_hi.factors if f.name == "leakage")
    assert leak.source == "measured" and leak.value == 1.0 and "TPR@1%FPR = 0.300" in leak.why
    assert "replaces the assumed" in leak.why
    mia_lo = next(r for r in lo.risks if r.key == "membership")
    assert mia_lo.score == 0.0  # TPR at chance: no measured membership leakage
    assert mia_hi.score > next(r for r in assumed.risks if r.key == "membership").score


def test_cli(tmp_path):
    from leakaudit.cli import app

    r = CliRunner().invoke(app, ["triage", "--example", "all", "--compare", "--html", str(tmp_path / "t.html"),
                                 "--json", str(tmp_path / "t.json")])
    assert r.exit_code == 0, r.output
    assert "Deployments ranked" in r.output
    data = json.loads((tmp_path / "t.json").read_text())
    assert [d["profile"] for d in data][:2] in (["C", "B"], ["B", "C"])
    html = (tmp_path / "t.html").read_text()
    assert "HIPAA" in html and "<script" not in html
    r = CliRunner().invoke(app, ["triage", "--example", "Z"])
    assert r.exit_code == 2 and "no example profile" in r.output
    r = CliRunner().invoke(app, ["triage", "--example", "A", "--example", "B", "--results", str(tmp_path)])
    assert r.exit_code == 2
