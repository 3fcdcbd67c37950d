"""``leakaudit dp-audit --world lm`` on leakaudit's own DP fine-tuning (issue 28): the entry point
:class:`leakaudit.lab.finetune.DPAuditFinetune` returns the fine-tuned model, its tokenizer and
the privacy record (ε, δ, unit, accountant); the audit states every ε with its δ and unit on the
console, in report.jsonl and in the HTML. Here on the tiny test GPT-2; the same audit on the real
SmolLM2 is the extended test at the end (run by hand: ``pytest -m extended``)."""

from __future__ import annotations

import json
import re
import signal

import pytest
from typer.testing import CliRunner

from leakaudit.cli import app

pytest.importorskip("peft")
pytest.importorskip("opacus")

TEXTS = [f"Order {i} from Lima shipped {i % 7 + 1} boxes on day {10 + i}." for i in range(10)]


@pytest.fixture(autouse=True)
def _restore_sigterm():
    handler = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, handler)


def _trainer(base, **kw):
    from leakaudit.lab.finetune import DPAuditFinetune

    return DPAuditFinetune(base=str(base), epochs=1.0, batch_size=4, n_ctx=32, **kw)


def test_entry_point_returns_model_tokenizer_and_privacy_record(tiny_model_dir):
    import torch

    from leakaudit.training.dp_lm import epsilon_from_record

    model, tok, info = _trainer(tiny_model_dir)(TEXTS, seed=3)
    assert type(model).__name__.startswith("Peft")  # LoRA on the base
    ids = torch.tensor([tok(TEXTS[0])["input_ids"]])
    assert model(input_ids=ids).logits.shape[:2] == ids.shape
    assert info["privacy_unit"] == "document" and info["delta"] == 1e-5 and info["accountant"] == "rdp"
    assert info["n_units"] == len(TEXTS) and info["sample_rate"] == pytest.approx(4 / len(TEXTS))
    # the claimed ε is the accountant's for what ran, at most the target
    assert info["epsilon"] == pytest.approx(epsilon_from_record(
        {"accountant": "rdp", "noise_multiplier": info["noise_multiplier"],
         "sample_rate": info["sample_rate"], "steps": info["steps"], "delta": 1e-5}))
    assert 7.0 < info["epsilon"] <= 8.0 + 1e-9
    assert info["noise_multiplier_used"] == info["noise_multiplier"] > 0
    # a fresh base every call: the same seed gives the same training
    _, _, again = _trainer(tiny_model_dir)(TEXTS, seed=3)
    assert again["final_loss"] == info["final_loss"]


def test_no_noise_variant_claims_the_same_epsilon_without_noise(tiny_model_dir):
    _, _, dp = _trainer(tiny_model_dir)(TEXTS, seed=0)
    _, _, broken = _trainer(tiny_model_dir, variant="no_noise")(TEXTS, seed=0)
    assert broken["epsilon"] == dp["epsilon"] and broken["noise_multiplier"] == dp["noise_multiplier"]
    assert broken["noise_multiplier_used"] == 0.0 and broken["final_loss"] != dp["final_loss"]
    _, _, plain = _trainer(tiny_model_dir, variant="none", epsilon=None)(TEXTS, seed=0)
    assert plain["epsilon"] is None and plain["privacy_unit"] is None
    with pytest.raises(ValueError):
        _trainer(tiny_model_dir, variant="none")  # a non-private variant claims no ε


def _audit(tiny_model_dir, tmp_path, monkeypatch, hook):
    monkeypatch.setenv("LEAKAUDIT_TEST_LM_DIR", str(tiny_model_dir))
    data = tmp_path / "texts.txt"
    data.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["dp-audit", "--world", "lm", "--train", hook, "--data", str(data),
                                 "--canaries", "20", "--out", str(out)])
    assert r.exit_code == 0, r.output
    recs = [json.loads(x) for x in (out / "report.jsonl").read_text().splitlines()]
    r2 = CliRunner().invoke(app, ["report", str(out)])
    assert r2.exit_code == 0, r2.output
    return " ".join(r.output.split()), recs[1], (out / "report.html").read_text(encoding="utf-8")


def test_audit_states_every_epsilon_with_delta_and_unit(tiny_model_dir, tmp_path, monkeypatch):
    out, rec, html = _audit(tiny_model_dir, tmp_path, monkeypatch, "tests.dp_hooks:lm_finetune_dp_tiny")
    claimed = rec["claimed_epsilon"]
    assert rec["privacy_unit"] == "document" and rec["claimed_delta"] == 1e-5
    assert rec["audit_unit"] == "document" and rec["delta"] == 1e-5
    assert rec["epsilon_lb"] <= claimed and not rec["refuted"]
    # console: the bound and the maximum certifiable at δ per document, the claim with its own
    assert re.search(r"ε̂ = \d+\.\d{3} max certifiable ε = \d+\.\d{3} \(at δ = 1e-05 per document", out), out
    assert f"claimed ε = {claimed:.3f} at δ = 1e-05 per document" in out, out
    # HTML: a section of its own, each ε with δ and the unit
    assert 'id="dp-audit-table"' in html
    assert f"ε̂ = {rec['epsilon_lb']:.3f} at δ = 1e-05 per document" in html
    assert f"ε = {rec['max_certifiable']:.3f} at δ = 1e-05 per document" in html
    assert f"ε = {claimed:.3f} at δ = 1e-05 per document" in html


def test_a_claim_without_a_unit_is_said_to_be_unstated(tiny_model_dir, tmp_path, monkeypatch):
    out, rec, html = _audit(tiny_model_dir, tmp_path, monkeypatch, "tests.dp_hooks:lm_ignores_data")
    assert rec["privacy_unit"] is None and rec["claimed_delta"] == 1e-5
    assert "claimed ε = 2.000 at δ = 1e-05 per unstated unit" in out, out
    assert "ε = 2.000 at δ = 1e-05 per unstated unit" in html


def test_summary_line_states_delta_and_units():
    from leakaudit.audits.dp_audit import DPAuditResult

    res = DPAuditResult(world="classifier", mode="one-run", trainer="t", claimed_epsilon=1.0,
                        delta=1e-5, confidence=0.95, epsilon_lb=0.5, max_certifiable=4.6, detail={},
                        models_trained=1, models_reused=0, wall_s=1.0, canary_kind="crafted",
                        n_canaries=1000, claimed_delta=1e-5, privacy_unit="example")
    line = res.summary_line()
    assert "ε̂ = 0.500   max certifiable ε = 4.600   (at δ = 1e-05 per example" in line
    assert "claimed ε = 1.000 at δ = 1e-05 per example" in line
    assert res.to_record()["audit_unit"] == "example"


def test_a_bound_below_the_claims_delta_neither_refutes_nor_passes_the_claim():
    """ε̂ at δ below the claim's δ cannot refute it: (ε, δ')-DP does not imply (ε, δ)-DP for
    δ < δ'. At the claim's δ or above it can (negative control: the same numbers refute)."""
    from leakaudit.audits.dp_audit import DPAuditResult

    kw = dict(world="lm", mode="one-run", trainer="t", claimed_epsilon=1.0, confidence=0.95,
              epsilon_lb=2.5, max_certifiable=4.6, detail={}, models_trained=1, models_reused=0,
              wall_s=1.0, canary_kind="secret", n_canaries=1000, claimed_delta=1e-3,
              privacy_unit="document")
    low = DPAuditResult(delta=1e-5, **kw)
    assert not low.comparable and not low.refuted
    assert low.verdict().startswith("not comparable with the claim: the bound is at δ = 1e-05")
    assert "--delta 0.001" in low.verdict() and low.to_record()["refuted"] is False
    for d in (1e-3, 1e-2):
        at = DPAuditResult(delta=d, **kw)
        assert at.comparable and at.refuted and at.verdict().startswith("claim refuted")


@pytest.mark.extended
def test_real_smollm2_dp_finetune_audit_one_seed(tmp_path):
    """One seed of the audit in docs/results/dp-audit.md ("DP fine-tuning of SmolLM2"): LoRA on
    the shipped SmolLM2-135M GGUF, DP-SGD per document at ε = 8, δ = 1e-5, 20 documents + 200
    canaries. ε̂ ≤ ε, stated with δ and the unit; about 5 minutes on one CPU thread."""
    from leakaudit.errors import LeakauditError
    from leakaudit.lab.dp_audit import lab_lm_texts
    from leakaudit.lab.finetune import shipped_smollm2

    try:
        shipped_smollm2()
    except LeakauditError as e:
        pytest.skip(str(e))
    data = tmp_path / "docs.txt"
    data.write_text("\n".join(lab_lm_texts(20, seed=0)) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["dp-audit", "--world", "lm", "--train",
                                 "leakaudit.lab.finetune:dp_audit_smollm2", "--data", str(data),
                                 "--canaries", "200", "--seed", "0", "--out", str(out)])
    assert r.exit_code == 0, r.output
    print(r.output)
    rec = [json.loads(x) for x in (out / "report.jsonl").read_text().splitlines()][1]
    assert rec["privacy_unit"] == "document" and rec["claimed_delta"] == 1e-5
    assert rec["training"]["n_units"] == 20 + rec["detail"]["n_in"]
    assert rec["epsilon_lb"] <= rec["claimed_epsilon"] <= 8.0 + 1e-9 and not rec["refuted"]
    assert rec["max_certifiable"] == pytest.approx(3.355, abs=0.01)  # m = 200, δ = 1e-5
    out_text = " ".join(r.output.split())
    assert f"claimed ε = {rec['claimed_epsilon']:.3f} at δ = 1e-05 per document" in out_text
