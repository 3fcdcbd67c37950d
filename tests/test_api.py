"""The Python API: the same findings as the command, nothing written without ``out``, the
command's defaults, typed results with ``to_frame()``, and errors as exceptions."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest
from typer.testing import CliRunner

import leakaudit as la
from leakaudit.errors import InputError
from tests.membership_fixtures import random_docs, train_leaky_lms


@pytest.fixture(scope="module")
def leaky(tmp_path_factory):
    d = tmp_path_factory.mktemp("api_leaky")
    _, _, members, nonmembers = train_leaky_lms(d, n=24)
    for name, docs in (("members", members), ("nonmembers", nonmembers)):
        (d / f"{name}.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in docs))
    return d


def _less_run(rows):
    """Findings as dicts, less what differs between two runs of the same audit (timings)."""
    def strip(x):
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if not k.endswith("_s")}
        if isinstance(x, list):
            return [strip(v) for v in x]
        return x
    return [strip(r) for r in rows]


def test_membership_equals_the_command_and_writes_nothing(leaky, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = set(os.listdir(tmp_path))
    r = la.membership(str(leaky / "target"), leaky / "members.jsonl", leaky / "nonmembers.jsonl",
                      references=[str(leaky / "reference")])
    assert set(os.listdir(tmp_path)) == before  # nothing written without out=
    assert r.out is None and r.files == {}
    ev = {f.data["method"]: f for f in r.of("membership") if "method" in f.data}
    assert {"loss", "zlib", "min_k", "min_k_pp", "reference"} <= set(ev)
    assert ev["loss"].metric.name == "auc" and ev["loss"].metric.value > 0.7
    assert r.summary and r.run["command"] == "leakaudit.api"

    from leakaudit.cli import app

    out = tmp_path / "cli"
    res = CliRunner().invoke(app, _membership_argv(leaky, out))
    assert res.exit_code == 0, res.output
    cli_rows = [json.loads(x) for x in (out / "report.jsonl").read_text().splitlines()]
    cli_findings = [x for x in cli_rows if x["entry_type"] not in ("run", "summary")]
    assert _less_run(r.to_dicts()) == _less_run(cli_findings)


def _membership_argv(leaky, out):
    return ["membership", "llm", "--model", str(leaky / "target"), "--members",
            str(leaky / "members.jsonl"), "--nonmembers", str(leaky / "nonmembers.jsonl"),
            "--reference", str(leaky / "reference"), "--out", str(out)]


def test_out_writes_the_commands_files_and_to_frame(leaky, tmp_path):
    pd = pytest.importorskip("pandas")
    r = la.membership(str(leaky / "target"), leaky / "members.jsonl", leaky / "nonmembers.jsonl",
                      out=tmp_path / "o", formats=["jsonl", "sarif"])
    assert {"jsonl", "sarif"} <= set(r.files)
    assert (tmp_path / "o" / "report.jsonl").is_file() and (tmp_path / "o" / "summary.json").is_file()
    assert not (tmp_path / "o" / "report.html").exists()  # only the formats asked for
    df = r.to_frame()
    assert isinstance(df, pd.DataFrame) and len(df) == len(r)
    loss = df[(df.entry_type == "membership") & (df.method == "loss")]
    assert len(loss) == 1 and 0.0 <= float(loss.value.iloc[0]) <= 1.0
    assert float(loss.ci_low.iloc[0]) <= float(loss.value.iloc[0]) <= float(loss.ci_high.iloc[0])


def test_defaults_are_the_commands():
    """Every option the API and the command share has one default: the request dataclass's."""
    from typer.main import get_command

    from leakaudit.audits.extraction import ExtractionRequest
    from leakaudit.audits.memorization import MemorizationRequest
    from leakaudit.cli import app

    names = {"samples": "n_samples", "index": "index_backend", "sampler": "samplers",
             "reference": "references", "no_stratify": None, "prefix": None, "model": None,
             "format": None, "fail_on": None, "out": None, "corpus": None}
    cmds = get_command(app).commands
    checked = 0
    for cmd, req in (("extract", ExtractionRequest), ("memorization", MemorizationRequest)):
        defaults = la.request_defaults(req)
        for p in cmds[cmd].params:
            field = names.get(p.name, p.name)
            if field is None or field not in defaults:
                continue
            cli = p.default if not isinstance(p.default, list) else tuple(p.default)
            if cli is None and defaults[field] == ():
                continue
            assert cli == defaults[field], (cmd, p.name, cli, defaults[field])
            checked += 1
    assert checked >= 20


def test_bad_options_raise_one_line_errors(leaky):
    with pytest.raises(InputError, match=r"'nonmember' \(did you mean 'nonmembers'\?\)"):
        la.membership(str(leaky / "target"), leaky / "members.jsonl", leaky / "nonmembers.jsonl",
                      nonmember="x")
    with pytest.raises(InputError, match="unknown --format 'pdf'"):
        la.membership(str(leaky / "target"), leaky / "members.jsonl", leaky / "nonmembers.jsonl",
                      formats=["pdf"])
    with pytest.raises(InputError):
        la.membership(str(leaky / "target"), leaky / "missing.jsonl", leaky / "nonmembers.jsonl")


def test_negative_control_same_distribution_is_chance(leaky, tmp_path):
    """Two sets of documents the model never saw: no attack separates them."""
    for name, seed in (("a", 11), ("b", 12)):
        (tmp_path / f"{name}.jsonl").write_text(
            "".join(json.dumps({"text": t}) + "\n" for t in random_docs(24, seed)))
    r = la.membership(str(leaky / "target"), tmp_path / "a.jsonl", tmp_path / "b.jsonl")
    for f in r.of("membership"):
        if f.metric is not None and f.metric.name == "auc" and f.metric.ci_low is not None:
            assert f.metric.ci_low < 0.5 < f.metric.ci_high, f.data.get("method")


def test_report_is_a_dataclass_with_rows():
    rep = la.AuditReport(run={}, findings=[], summary={})
    assert rep.rows() == [] and len(rep) == 0 and dataclasses.is_dataclass(rep)


# ---------------------------------------------------------------------------- compare, dp_audit

def _cli_findings(out):
    rows = [json.loads(x) for x in (out / "report.jsonl").read_text().splitlines()]
    return [x for x in rows if x["entry_type"] not in ("run", "summary")]


def test_compare_and_dp_audit_defaults_are_the_commands():
    """compare and dp_audit have no request dataclass: the API's keyword defaults are the
    commands' option defaults, option by option."""
    import inspect

    from typer.main import get_command

    from leakaudit.cli import app

    cmds = get_command(app).commands
    checked = 0
    for cmd, fn in ((cmds["compare"], la.compare), (cmds["dp-audit"], la.dp_audit)):
        sig = inspect.signature(fn).parameters
        for p in cmd.params:
            if p.name in ("model", "corpus", "heldout", "out", "ctx"):
                continue
            assert p.name in sig, (cmd.name, p.name)
            assert sig[p.name].default == p.default, (cmd.name, p.name, sig[p.name].default, p.default)
            checked += 1
    assert checked >= 20


@pytest.fixture(scope="module")
def dp_npz(tmp_path_factory):
    import numpy as np

    from leakaudit.lab.dp_audit import lab_data

    d = lab_data(300, seed=0)
    path = tmp_path_factory.mktemp("api_dp") / "d.npz"
    np.savez(path, x=d.x, y=d.y)
    return d, path


def test_dp_audit_equals_the_command_and_writes_nothing(dp_npz, tmp_path, monkeypatch):
    from leakaudit.cli import app

    data, npz = dp_npz
    monkeypatch.chdir(tmp_path)
    before = set(os.listdir(tmp_path))
    r = la.dp_audit(train="tests.dp_hooks:train_knn", data=npz, canaries=300)
    assert set(os.listdir(tmp_path)) == before and r.out is None and r.files == {}
    assert isinstance(r, la.DPAuditReport) and r.result.refuted and r.result.models_trained == 1
    (f,) = r.findings
    assert f.entry_type == "dp_audit" and f.severity == "critical"
    assert f.metric.value == r.result.epsilon_lb > 1
    assert f.doc_uri.endswith("/concepts/dp-auditing/")

    out = tmp_path / "cli"
    res = CliRunner().invoke(app, ["dp-audit", "--train", "tests.dp_hooks:train_knn", "--data",
                                   str(npz), "--canaries", "300", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert _less_run(r.to_dicts()) == _less_run(_cli_findings(out))

    # a callable and the data in memory: the same bound; with out=, the command's files
    from tests import dp_hooks

    kept = la.dp_audit(train=dp_hooks.train_knn, data=data, canaries=300, out=tmp_path / "o")
    assert kept.result.epsilon_lb == r.result.epsilon_lb and kept.out == tmp_path / "o"
    assert kept.files["jsonl"].is_file() and any((tmp_path / "o" / ".leakaudit" / "store").iterdir())
    again = la.dp_audit(train=dp_hooks.train_knn, data=data, canaries=300, out=tmp_path / "o")
    assert (again.result.models_trained, again.result.models_reused) == (0, 1)


def test_dp_audit_negative_control_and_bad_input(dp_npz, tmp_path):
    """A pipeline that ignores its data refutes nothing; bad options raise one-line errors
    before any training, and nothing is written."""
    pd = pytest.importorskip("pandas")
    r = la.dp_audit(train="tests.dp_hooks:train_ignores_data", data=dp_npz[1], canaries=300)
    assert not r.result.refuted and r.result.epsilon_lb < 0.5
    df = r.to_frame()
    assert isinstance(df, pd.DataFrame) and list(df.entry_type) == ["dp_audit"]
    assert df.severity.iloc[0] != "critical" and float(df.value.iloc[0]) == r.result.epsilon_lb
    for kw, msg in (({"mode": "bogus"}, "mode must be one of"),
                    ({"world": "image"}, "must be classifier or lm"),
                    ({"train": "tests.dp_hooks:train_knn"}, "needs --data"),
                    ({"train": "nosuch_mod_q:f", "data": dp_npz[1]}, "cannot import")):
        with pytest.raises(InputError, match=msg):
            la.dp_audit(out=tmp_path / "bad", **kw)
    assert not (tmp_path / "bad").exists()


@pytest.fixture(scope="module")
def compare_inputs(tiny_model_dir, tmp_path_factory):
    from tests.conftest import TEXTS

    d = tmp_path_factory.mktemp("api_compare")
    # documents longer than one memorization window (64 tokens) and shorter than the tiny
    # model's 128 positions
    base = [TEXTS[i] for i in (0, 1, 2, 5)]
    docs = [" ".join(base[i:] + base[:i]) for i in range(len(base))]
    (d / "train.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in docs))
    (d / "heldout.jsonl").write_text(
        "".join(json.dumps({"text": t}) + "\n" for t in random_docs(6, 3)))
    return d


def test_compare_equals_the_command_and_writes_nothing(tiny_model_dir, compare_inputs, tmp_path,
                                                       monkeypatch):
    from leakaudit.cli import app

    d = compare_inputs
    monkeypatch.chdir(tmp_path)
    before = set(os.listdir(tmp_path))
    models = {"undefended": str(tiny_model_dir), "copy": str(tiny_model_dir)}
    r = la.compare(models, d / "train.jsonl", d / "heldout.jsonl", samples=2, windows=4)
    assert set(os.listdir(tmp_path)) == before and r.out is None and r.files == {}
    assert isinstance(r, la.CompareReport) and r.baseline == "undefended"
    assert list(r.variants) == ["undefended", "copy"]
    rows = r.of("defense_comparison")
    assert [f.data["variant"] for f in rows] == ["undefended", "copy"]
    # the same weights: the same numbers, whatever the name
    assert rows[0].metric == rows[1].metric
    assert r.variants["copy"]["memorization"]["all"]["n"] == 4
    df = r.to_frame()
    assert set(df.entry_type) >= {"defense_comparison"} and len(df) == len(r)
    assert all(u.startswith("https://") for u in df.doc_uri)

    out = tmp_path / "cli"
    res = CliRunner().invoke(app, ["compare", "--model", f"undefended={tiny_model_dir}", "--model",
                                   f"copy={tiny_model_dir}", "--corpus", str(d / "train.jsonl"),
                                   "--heldout", str(d / "heldout.jsonl"), "--samples", "2",
                                   "--windows", "4", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert (out / "report.html").is_file() and not (out / "cache").exists()
    assert _less_run(r.to_dicts()) == _less_run(_cli_findings(out))


def test_compare_bad_input_raises_before_work(tiny_model_dir, compare_inputs, tmp_path):
    d = compare_inputs
    for models, msg in ((["x"], "NAME=DIR"), (["a=1", "a=2"], "distinct"), ({}, "at least one")):
        with pytest.raises(InputError, match=msg):
            la.compare(models, d / "train.jsonl", d / "heldout.jsonl", out=tmp_path / "bad")
    with pytest.raises(InputError):
        la.compare({"a": str(tmp_path / "no-such-model")}, d / "train.jsonl", d / "heldout.jsonl",
                   out=tmp_path / "bad")
    with pytest.raises(InputError, match="unknown --format"):
        la.compare({"a": str(tiny_model_dir)}, d / "train.jsonl", d / "heldout.jsonl", formats=["pdf"])
    assert not (tmp_path / "bad").exists()


def test_dp_audit_white_box_equals_the_command(tmp_path, monkeypatch):
    """A numpy DP-SGD pipeline outside leakaudit: honest, nothing caught; its unclipped twin
    (same claim) caught; the command writes the same finding; defaults are the command's."""
    import inspect

    import numpy as np
    from typer.main import get_command

    from leakaudit.cli import app
    from tests import dp_hooks

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 600)
    x = (rng.normal(0, 1, (600, 999)) * 0.1 + (2 * y - 1)[:, None] * 0.02).astype(np.float32)
    npz = tmp_path / "d.npz"
    np.savez(npz, x=x, y=y)
    monkeypatch.chdir(tmp_path)
    before = set(os.listdir(tmp_path))
    honest = la.dp_audit_white_box(train=dp_hooks.train_numpy_dpsgd, data=npz, clip=1.0, canaries=1000)
    broken = la.dp_audit_white_box(train="tests.dp_hooks:train_numpy_dpsgd_unclipped", data=npz,
                                   clip=1.0, canaries=1000)
    assert set(os.listdir(tmp_path)) == before
    assert honest.result.caught == [] and {"one_run", "step_gdp"} <= set(broken.result.caught)
    (f,) = broken.findings
    assert f.entry_type == "dp_audit" and f.data["mode"] == "white-box"
    assert f.metric.value > honest.findings[0].metric.value

    out = tmp_path / "cli"
    res = CliRunner().invoke(app, ["dp-audit", "white-box", "--train",
                                   "tests.dp_hooks:train_numpy_dpsgd_unclipped", "--data", str(npz),
                                   "--clip", "1.0", "--canaries", "1000", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert _less_run(broken.to_dicts()) == _less_run(_cli_findings(out))

    wb = get_command(app).commands["dp-audit"].commands["white-box"]
    sig = inspect.signature(la.dp_audit_white_box).parameters
    for p in wb.params:
        if p.name != "out":
            assert sig[p.name].default == p.default, p.name
    with pytest.raises(InputError, match="needs --data"):
        la.dp_audit_white_box(train=dp_hooks.train_numpy_dpsgd, out=tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
