"""leakaudit memorization / canaries insert / canaries exposure end to end on a tiny model."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from leakaudit.cli import app
from tests.conftest import TEXTS

runner = CliRunner()


def invoke(args):
    return runner.invoke(app, [str(a) for a in args])


def _corpus(tmp_path):
    p = tmp_path / "train.jsonl"
    p.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(TEXTS)))
    return p


def test_memorization_cli_writes_a_report_and_counts_skipped(tiny_model_dir, tmp_path):
    corpus = _corpus(tmp_path)
    out = tmp_path / "mem"
    r = invoke(["memorization", "--model", tiny_model_dir, "--corpus", corpus, "--out", out,
                "--prefix", "2,4", "--suffix", "4", "--sequences", "20", "--greedy-check", "-1"])
    assert r.exit_code == 0, r.output
    assert "windows memorized exactly (k=4, ℓ=4)" in r.output
    recs = [json.loads(line) for line in (out / "report.jsonl").read_text().splitlines()]
    setup = next(x for x in recs if x.get("kind") == "setup")
    assert setup["sequences"]["n_docs_skipped"] == 5  # the 5 copies of "Hello" are too short
    checks = [x for x in recs if x.get("kind") == "check"]
    assert {c["k"] for c in checks} == {2, 4} and all(c["n_checked"] == 20 for c in checks)
    assert "memorization-table" in (out / "report.html").read_text()


def test_memorization_cli_errors(tiny_model_dir, tmp_path):
    corpus = _corpus(tmp_path)
    r = invoke(["memorization", "--model", tiny_model_dir, "--corpus", corpus, "--out",
                tmp_path / "x", "--prefix", "200", "--suffix", "50"])
    assert r.exit_code == 2 and "no document has 250 tokens" in r.output
    assert not (tmp_path / "x").exists()
    r = invoke(["memorization", "--model", tiny_model_dir, "--corpus", corpus, "--out",
                tmp_path / "x", "--preset", "gpt5"])
    assert r.exit_code == 2 and "unknown preset" in r.output


def test_canaries_insert_then_exposure(tiny_model_dir, tmp_path):
    corpus = _corpus(tmp_path)
    can = tmp_path / "can"
    r = invoke(["canaries", "insert", "--corpus", corpus, "--template", "My pin is {secret}.",
                "--space", "dddd", "--repeats", "1,4", "--out", can, "--seed", "1"])
    assert r.exit_code == 0, r.output
    manifest = json.loads((can / "manifest.json").read_text())
    docs = [json.loads(line) for line in (can / "corpus.jsonl").read_text().splitlines()]
    for c in manifest["canaries"]:
        assert sum(c["sentence"] in d["text"] for d in docs) == c["repeats"]
    out = tmp_path / "exp"
    r = invoke(["canaries", "exposure", "--model", tiny_model_dir, "--manifest", can / "manifest.json",
                "--references", "50", "--out", out])
    assert r.exit_code == 0, r.output
    recs = [json.loads(line) for line in (out / "report.jsonl").read_text().splitlines()]
    per = [x for x in recs if x.get("kind") == "canary"]
    assert len(per) == 2 and all(x["n_references"] == 50 for x in per)
    secrets = {c["secret"] for c in manifest["canaries"]}
    assert not any(s in (out / "report.html").read_text() for s in secrets)  # masked by default
    bad = tmp_path / "bad.json"
    bad.write_text('{"canaries": [\n')
    r = invoke(["canaries", "exposure", "--model", tiny_model_dir, "--manifest", bad, "--out",
                tmp_path / "y"])
    assert r.exit_code == 2 and f"{bad}:2" in r.output.replace("\n", "")
    r = invoke(["canaries", "insert", "--corpus", corpus, "--template", "no placeholder",
                "--space", "dddd", "--out", tmp_path / "z"])
    assert r.exit_code == 2 and "exactly one" in r.output and not (tmp_path / "z").exists()
