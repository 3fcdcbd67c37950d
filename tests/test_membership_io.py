"""Scores files (CSV/JSONL/.npy, errors with file:line), the ``membership`` CLI, and the HTML
membership sections (tables, "not resolvable", log-log ROC, masked exposed records)."""

from __future__ import annotations

import json
import signal

import numpy as np
import pytest
from typer.testing import CliRunner

from leakaudit.cli import app
from leakaudit.errors import InputError
from leakaudit.targets.scores_file import load_outputs


@pytest.fixture(autouse=True)
def _restore_sigterm():
    handler = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, handler)


def test_load_csv_jsonl_npy(tmp_path):
    (tmp_path / "a.csv").write_text("id,member,label,p0,p1\nx,1,0,0.9,0.1\ny,0,1,0.6,0.4\n")
    o = load_outputs(tmp_path / "a.csv")
    assert o.ids == ["x", "y"] and o.member.tolist() == [1, 0] and o.probs.shape == (2, 2)
    (tmp_path / "b.jsonl").write_text('{"id": "a", "member": 1, "label": 1, "logits": [0, 0]}\n'
                                      '{"id": "b", "member": 0, "label": 0, "logits": [1, 0]}\n')
    o = load_outputs(tmp_path / "b.jsonl")
    assert o.probs[0].tolist() == [0.5, 0.5]
    np.save(tmp_path / "c.npy", np.array([[1, 0.3], [0, 0.1]]))
    assert load_outputs(tmp_path / "c.npy").score.tolist() == [0.3, 0.1]


@pytest.mark.parametrize("name,text,where,msg", [
    ("bad.jsonl", '{"member": 1, "score": 1}\n{"member": 0, "score": "x"}\n', ":2:", "not a number"),
    ("bad.jsonl", '{"member": 1, "score": 1}\nnot json\n', ":2:", "malformed JSON"),
    ("bad.csv", "member,label,p0,p1\n1,0,0.9,0.1\n0,1,0.9,0.9\n", ":3:", "sum to 1"),
    ("bad.csv", "member,score\n1,0.5\n0,inf\n", ":3:", "not finite"),
    ("bad.csv", "member,label,p0,p1\n1,5,0.9,0.1\n", ":2:", "outside"),
])
def test_bad_rows_name_file_and_line(tmp_path, name, text, where, msg):
    (tmp_path / name).write_text(text)
    with pytest.raises(InputError, match=msg) as e:
        load_outputs(tmp_path / name)
    assert f"{name}{where}" in str(e.value)


def test_cli_membership_scores_end_to_end(tmp_path):
    rng = np.random.default_rng(0)
    member = np.r_[np.ones(300), np.zeros(1200)]
    rows = [{"id": f"r{i}", "member": int(m), "score": float(rng.normal() + 2 * m)}
            for i, m in enumerate(member)]
    f = tmp_path / "scores.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["membership", "scores", str(f), "--out", str(out)])
    assert res.exit_code == 0, res.output
    recs = [json.loads(line) for line in (out / "report.jsonl").read_text().splitlines()]
    ev = [r for r in recs if r["entry_type"] == "membership"][0]
    assert ev["tags"] == ["owasp:LLM02:2025", "atlas:AML.T0024.000"] and ev["auc"] > 0.85
    by_fpr = {t["fpr"]: t for t in ev["tpr_at_fpr"]}
    assert by_fpr[0.001]["resolvable"] and not by_fpr[0.0001]["resolvable"]  # 1,200 non-members
    html = (out / "report.html").read_text()
    assert "Membership inference" in html and "not resolvable" in html and "data:image/png" in html
    assert "Most exposed records" in html


def test_cli_membership_reports_tpr_at_the_fprs_asked(tmp_path):
    """--fpr sets the FPRs of every result (sorted, duplicates removed) and the run record says
    which; without it, the default four (the negative control)."""
    rng = np.random.default_rng(1)
    member = rng.random(400) < 0.5
    rows = [{"id": f"r{i}", "member": int(m), "score": float(rng.normal() + m)}
            for i, m in enumerate(member)]
    f = tmp_path / "scores.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))

    def run(out, *extra):
        res = CliRunner().invoke(app, ["membership", "scores", str(f), "--out", str(out), *extra])
        assert res.exit_code == 0, res.output
        recs = [json.loads(line) for line in (out / "report.jsonl").read_text().splitlines()]
        ev = next(r for r in recs if r["entry_type"] == "membership")
        return res.output, recs[0], ev

    output, rr, ev = run(tmp_path / "a", "--fpr", "0.01", "--fpr", "0.05", "--fpr", "0.01")
    assert [t["fpr"] for t in ev["tpr_at_fpr"]] == [0.05, 0.01] and rr["config"]["fprs"] == [0.05, 0.01]
    at5 = ev["tpr_at_fpr"][0]
    assert at5["resolvable"] and at5["fp"] <= 0.05 * at5["n_neg"] and at5["ci_low"] <= at5["tpr"] <= at5["ci_high"]
    assert "TPR@0.05FPR" in output and "TPR@0.1FPR" not in output
    _, rr, ev = run(tmp_path / "b")
    assert [t["fpr"] for t in ev["tpr_at_fpr"]] == [0.1, 0.01, 0.001, 0.0001]
    assert rr["config"]["fprs"] == [0.1, 0.01, 0.001, 0.0001]


def test_cli_membership_errors(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"member": 1, "score": 0.3}\n{"member": 2, "score": 1}\n')
    res = CliRunner().invoke(app, ["membership", "scores", str(bad), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "bad.jsonl:2: member must be 0 or 1" in res.output
    assert not (tmp_path / "o").exists()  # nothing half-written
    res = CliRunner().invoke(app, ["membership", "--out", str(tmp_path / "o")])  # no world chosen
    assert res.exit_code == 2 and "No such option: --out" in res.output


def test_html_escapes_and_masks_llm_records(tmp_path):
    from leakaudit.attacks.membership.evaluate import EvalConfig, evaluate_scores, exposed_records
    from leakaudit.report.writer import write_report
    from leakaudit.corpus.pii import mask_text
    from leakaudit.report.html import render_html

    texts = [f"<script>alert({i})</script> call 555-201-{7000 + i}" for i in range(200)]
    y = np.r_[np.ones(100), np.zeros(100)]
    ev = evaluate_scores(np.arange(200.0)[::-1], y, world="llm", method="loss", label="loss",
                         params={}, threat_model="t", doc_uri="https://arxiv.org/abs/1709.01604",
                         subset="all", config=EvalConfig(n_boot=20, top_n=3))
    pairs = [("membership", ev.record())] + [
        ("membership_record", r) for r in exposed_records(
            ev, ids=[str(i) for i in range(200)], texts=[mask_text(t) for t in texts], top_n=3)]
    write_report(tmp_path, run_record={"command": "test", "config": {}}, records=pairs,
                 summary={"attack": "membership"}, formats=())
    html = render_html(tmp_path).read_text()
    assert "<script>alert" not in html and "&lt;script&gt;" in html
    assert "555-201-7000" not in html  # PII masked


def test_cli_membership_user_classifier(tmp_path):
    """A user's classifier folder + .npz: LOSS and offline LiRA/RMIA with reference models
    trained on the population; the overfit target's members are found above chance."""
    from leakaudit.lab.digits import load_digits_data, split_digits
    from leakaudit.training.classifier import MLPSpec, TrainConfig, save_classifier, train_classifier

    d = load_digits_data()
    p = split_digits(d, {"m": 0.2, "n": 0.2, "pop": 0.6}, seed=0)
    spec = MLPSpec(input_dim=64, n_classes=10, hidden=(64,))
    model = train_classifier(p["m"].x, p["m"].y, spec, TrainConfig(epochs=60, seed=0))
    save_classifier(model, spec, tmp_path / "clf")
    np.savez(tmp_path / "data.npz", x_members=p["m"].x, y_members=p["m"].y,
             x_nonmembers=p["n"].x, y_nonmembers=p["n"].y, x_population=p["pop"].x,
             y_population=p["pop"].y)
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["membership", "classifier", str(tmp_path / "clf"), "--data",
                                   str(tmp_path / "data.npz"), "--shadows", "4", "--epochs", "60",
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    recs = [json.loads(line) for line in (out / "report.jsonl").read_text().splitlines()]
    evs = {r["label"]: r for r in recs if r["entry_type"] == "membership"}
    assert {"clf_loss", "lira-offline-fixed-var", "rmia(a=0.3, gamma=1.0, online=False)"} <= set(evs)
    assert evs["lira-offline-fixed-var"]["auc"] > 0.55
    assert (out / "shadows" / "keep.npy").is_file()
    res = CliRunner().invoke(app, ["membership", "classifier", str(tmp_path / "clf"), "--out",
                                   str(tmp_path / "o2")])
    assert res.exit_code == 2 and "--data" in res.output
