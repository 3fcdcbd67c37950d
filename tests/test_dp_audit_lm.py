"""The LM world of the DP audit: secret canaries scored on a real (tiny) GPT-2; a pipeline that
ignores its training data certifies nothing (negative control); reruns reuse the stored run."""

import numpy as np
import pytest

from leakaudit.attacks.dp_audit.lm import secret_canaries, secret_logprobs
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
