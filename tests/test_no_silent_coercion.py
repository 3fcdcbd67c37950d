"""Doubtful inputs are warnings recorded in the report; library warnings that change results are
shown (one line each), not silenced."""

from __future__ import annotations

import json
import shutil

from typer.testing import CliRunner

from leakaudit.cli import app


def test_ids_in_both_classes_are_a_recorded_warning(tmp_path):
    rows = [{"id": f"r{i}", "member": i % 2, "score": float(i % 2) + 0.1 * i} for i in range(20)]
    rows.append({"id": "r1", "member": 0, "score": 0.0})  # r1 is a member above
    f = tmp_path / "s.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["membership", "scores", str(f), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "warning: 1 id(s) appear as both member and non-member" in res.output
    summary = [json.loads(x) for x in (out / "report.jsonl").read_text().splitlines()][-1]
    assert any("both member and non-member" in w for w in summary["warnings"])


def test_overlapping_texts_and_truncation_are_recorded(tiny_lm):
    from leakaudit.attacks.membership.audit_llm import audit_llm_membership

    long = "word " * 400  # longer than the tiny model's 128-token context
    members = ["alpha beta gamma delta", "one two three four", long, "red green blue"]
    nonmembers = ["alpha beta gamma delta", "five six seven eight", "cyan magenta yellow", "x y z"]
    logged = []
    audit = audit_llm_membership(tiny_lm, {}, members, nonmembers, k=0.2, log=logged.append)
    assert any("1 text(s) are both members and non-members" in w for w in audit.warnings)
    assert any("longer than the model's context" in w for w in audit.warnings)
    assert any(m.startswith("warning: 1 text(s)") for m in logged)


def test_newly_initialised_weights_are_shown(tiny_model_dir, tmp_path):
    """A checkpoint missing a weight loads with a random one: transformers says so, and so do we."""
    from safetensors.torch import load_file, save_file

    d = tmp_path / "model"
    shutil.copytree(tiny_model_dir, d)
    state = load_file(str(d / "model.safetensors"))
    state.pop(next(k for k in state if k.endswith("ln_f.weight")))
    save_file(state, str(d / "model.safetensors"), metadata={"format": "pt"})
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"text": "The quick brown fox jumps over the lazy dog. " * 3}) + "\n"
                              for _ in range(3)))
    res = CliRunner().invoke(app, ["memorization", "--model", str(d), "--corpus", str(corpus),
                                   "--out", str(tmp_path / "o"), "--prefix", "2", "--suffix", "2",
                                   "--sequences", "2", "--greedy-check", "0"])
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.output.splitlines() if ln.startswith("warning: transformers:")]
    assert any("ln_f.weight" in ln for ln in lines), res.output
