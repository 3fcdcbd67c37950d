"""The LM world of the DP audit: secret canaries scored on a real (tiny) GPT-2; a pipeline that
ignores its training data certifies nothing (negative control); reruns reuse the stored run."""

import numpy as np
import pytest

from leakaudit.attacks.dp_audit.lm import (
    SecretCanaries,
    reordered_secrets,
    secret_canaries,
    secret_logprobs,
    secret_scores,
)
from leakaudit.audits.dp_audit import DPAuditConfig, audit_dp_lm_one_run


@pytest.fixture(scope="module")
def lm(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval(), AutoTokenizer.from_pretrained(tiny_model_dir)


def test_secret_logprob_equals_plain_evaluation(lm):
    import torch

    model, tok = lm
    c = secret_canaries(3, seed=1)
    got = secret_logprobs(model, tok, c, batch_size=2)
    for i, text in enumerate(c.texts()):
        ids = torch.tensor([tok(text)["input_ids"]])
        k = len(tok(c.prompts[i])["input_ids"])
        with torch.no_grad():
            lp = torch.log_softmax(model(ids).logits.double(), -1)[0]
        want = sum(float(lp[t - 1, ids[0, t]]) for t in range(k, ids.shape[1] - 1))
        assert got[i] == pytest.approx(want, abs=1e-6)


def test_secret_score_is_logprob_minus_mean_of_reorderings(lm):
    model, tok = lm
    c = secret_canaries(4, seed=2, length=5)
    score, raw = secret_scores(model, tok, c, n_reference=3, seed=7)
    refs = reordered_secrets(c, 3, seed=7)
    assert all(sorted(r.split()) == sorted(s.split()) and r != s for s, rs in zip(c.secrets, refs) for r in rs)
    for i in range(4):
        alt = SecretCanaries(prompts=(c.prompts[i],) * 3, secrets=tuple(refs[i]))
        want = raw[i] - secret_logprobs(model, tok, alt).mean()
        assert score[i] == pytest.approx(want, abs=1e-9)
    assert np.array_equal(secret_scores(model, tok, c, n_reference=0)[0], raw)


def test_lm_pipeline_that_ignores_data_certifies_nothing(lm, tmp_path):
    model, tok = lm
    seen = []

    def train(texts, *, seed):
        seen.append(len(texts))
        return model, tok, {"epsilon": 2.0, "delta": 1e-5}

    cfg = DPAuditConfig(mode="one-run", n_canaries=200, n_models=2, confidence=0.95, delta=None,
                        canary_kind="crafted", seed=0)
    res = audit_dp_lm_one_run(train, ["Order 1 shipped.", "Order 2 shipped."], cfg, store_dir=tmp_path)
    assert res.world == "lm" and res.epsilon_lb < 0.5 and not res.refuted
    assert seen == [2 + res.detail["n_in"]] and 60 < res.detail["n_in"] < 140
    assert np.isfinite(res.max_certifiable) and res.max_certifiable > 2
    again = audit_dp_lm_one_run(train, ["Order 1 shipped.", "Order 2 shipped."], cfg, store_dir=tmp_path)
    assert again.models_reused == 1 and len(seen) == 1 and again.epsilon_lb == res.epsilon_lb


def test_cli_lm_user_hook_certifies_nothing_and_resumes(tiny_model_dir, tmp_path, monkeypatch):
    import json

    from typer.testing import CliRunner

    from leakaudit.cli import app

    monkeypatch.setenv("LEAKAUDIT_TEST_LM_DIR", str(tiny_model_dir))
    texts = tmp_path / "texts.txt"
    texts.write_text("Order 1 shipped.\n\nOrder 2 shipped.\n", encoding="utf-8")
    out = tmp_path / "out"
    args = ["dp-audit", "--world", "lm", "--train", "tests.dp_hooks:lm_ignores_data", "--data", str(texts),
            "--canaries", "100", "--out", str(out)]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "claimed ε = 2.000" in r.output and "proves nothing" in r.output
    rec = [json.loads(x) for x in (out / "report.jsonl").read_text().splitlines()][1]
    assert rec["world"] == "lm" and rec["epsilon_lb"] < 0.5 and rec["training"]["n_texts"] == 2 + rec["detail"]["n_in"]
    r2 = CliRunner().invoke(app, args)
    assert r2.exit_code == 0 and "0 model(s) trained, 1 reused" in r2.output
