"""DP-SGD for causal LMs (training/dp_lm.py): ghost-clipping norms equal per-example gradient
norms, ε recomputes from the record, the hooks deviate as documented, bad input fails early."""

import math

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("opacus")

from leakaudit.errors import InputError  # noqa: E402
from leakaudit.training.dp_lm import (  # noqa: E402
    DPHooks,
    DPLMConfig,
    conv1d_to_linear,
    epsilon_from_record,
    noise_for_epsilon,
    train_causal_lm_dp,
    untie_output_embeddings,
)
from leakaudit.training.lm import LMSpec, train_tokenizer  # noqa: E402

TEXTS = [f"Record {i}: patient {i * 7919 % 1000} visited clinic {i % 5} on Monday and paid {i * 3} dollars."
         for i in range(48)]
SPEC = LMSpec(n_layer=1, n_embd=32, n_head=2, n_ctx=32, epochs=1, lr=3e-3, batch_size=8)


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(TEXTS, vocab_size=300)


@pytest.fixture(scope="module")
def honest(tok):
    return train_causal_lm_dp(TEXTS, tok, SPEC, DPLMConfig(target_epsilon=8.0), seed=0)


def test_ghost_norms_equal_per_example_gradient_norms(tok):
    """Opacus' ghost norms on the converted GPT-2 (Linear instead of Conv1D, untied head, batched
    position ids) equal the gradient norms of each example's own loss, computed one at a time."""
    import copy

    from opacus import PrivacyEngine
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=16, n_embd=32, n_layer=2,
                                       n_head=2, resid_pdrop=0, embd_pdrop=0, attn_pdrop=0))
    assert untie_output_embeddings(model)
    assert conv1d_to_linear(model) == 8  # c_attn, c_proj, c_fc, mlp.c_proj per block
    ref = copy.deepcopy(model)
    x = torch.randint(1, len(tok), (6, 12))
    mask = torch.ones_like(x)
    mask[0, 9:] = 0  # one padded row
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, mask), batch_size=6)
    gm, opt, crit, _ = PrivacyEngine(secure_mode=False).make_private(
        module=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), data_loader=loader,
        criterion=torch.nn.CrossEntropyLoss(ignore_index=-100), noise_multiplier=0.0,
        max_grad_norm=1e6, poisson_sampling=False, grad_sample_mode="ghost")
    pos = torch.arange(12).unsqueeze(0).repeat(6, 1)
    logits = gm(input_ids=x, attention_mask=mask, position_ids=pos).logits[:, :-1]
    tgt = x[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
    crit(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), shape=logits.shape).backward()
    ghost = gm.per_sample_gradient_norms.detach()
    expect = []
    for i in range(6):
        ref.zero_grad()
        lo = ref(input_ids=x[i:i + 1], attention_mask=mask[i:i + 1]).logits[:, :-1]
        torch.nn.functional.cross_entropy(lo.reshape(-1, lo.shape[-1]), tgt[i].reshape(-1),
                                          ignore_index=-100).backward()
        expect.append(torch.sqrt(sum((p.grad ** 2).sum() for p in ref.parameters())))
    torch.testing.assert_close(ghost, torch.stack(expect), rtol=1e-4, atol=1e-5)


def test_epsilon_recomputes_from_record(honest):
    from opacus.accountants import RDPAccountant

    model, rec = honest
    n = rec["n_blocks"]
    assert rec["delta"] < 1 / n
    assert rec["sample_rate"] == 1 / math.ceil(n / SPEC.batch_size)  # Opacus' DPDataLoader rule
    assert rec["steps"] == math.ceil(n / SPEC.batch_size)  # one epoch
    assert rec["epsilon"] == epsilon_from_record(rec)
    acc = RDPAccountant()
    for _ in range(rec["steps"]):  # the accountant stepped as Opacus' optimizer hook does
        acc.step(noise_multiplier=rec["noise_multiplier"], sample_rate=rec["sample_rate"])
    assert math.isclose(acc.get_epsilon(rec["delta"]), rec["epsilon"], rel_tol=1e-12)
    # σ was calibrated to the target: ε within get_noise_multiplier's 0.01 tolerance, not above
    assert 8.0 - 0.02 <= rec["epsilon"] <= 8.0
    assert rec["noise_multiplier"] == noise_for_epsilon(8.0, rec["delta"], rec["sample_rate"], rec["steps"])
    assert rec["hooks"] == [] and rec["clipping"] == "ghost" and rec["accountant"] == "rdp"
    # the saved architecture is plain GPT-2 again
    assert type(model.transformer.h[0].attn.c_attn).__name__ == "Conv1D"
    assert model.config.tie_word_embeddings is False


def test_prv_accountant_and_more_noise_less_epsilon():
    base = {"accountant": "prv", "sample_rate": 0.05, "steps": 200, "delta": 1e-5}
    e1 = epsilon_from_record({**base, "noise_multiplier": 1.0})
    e2 = epsilon_from_record({**base, "noise_multiplier": 2.0})
    r1 = epsilon_from_record({**base, "accountant": "rdp", "noise_multiplier": 1.0})
    assert 0 < e2 < e1 <= r1  # PRV is tighter than the RDP bound


def test_sigma_search_is_quiet_and_its_sigma_spends_the_target():
    """The σ search tries small σ that end at the last RDP order (Opacus warns of each); the
    fine-tuning lab's default ε = 8 (q = 8/120, 60 steps, δ = 1/1200) printed that warning to
    users although the σ it returns has its optimal order at 2.2, well inside the grid."""
    import warnings

    from opacus.accountants.analysis.rdp import compute_rdp, get_privacy_spent
    from opacus.accountants.rdp import RDPAccountant

    q, steps, delta = 8 / 120, 60, 1 / 1200
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sigma = noise_for_epsilon(8.0, delta, q, steps)
    assert not [w for w in caught if "Optimal order" in str(w.message)]
    orders = RDPAccountant.DEFAULT_ALPHAS
    eps, best = get_privacy_spent(orders=orders, delta=delta,
                                  rdp=compute_rdp(q=q, noise_multiplier=sigma, steps=steps,
                                                  orders=orders))
    assert 7.99 <= eps <= 8.0 and 2 < best < max(orders)
    assert epsilon_from_record({"accountant": "rdp", "noise_multiplier": sigma, "sample_rate": q,
                                "steps": steps, "delta": delta}) == pytest.approx(eps)


@pytest.mark.slow
def test_flat_clipping_equals_ghost_clipping(tok, honest):
    """Per-example gradients (classic Opacus hooks) and ghost clipping give the same clipped,
    noised updates: identical records and weights."""
    m_flat, rec = train_causal_lm_dp(TEXTS, tok, SPEC, DPLMConfig(target_epsilon=8.0, clipping="flat"), seed=0)
    m_ghost, rec_g = honest
    assert rec["epsilon"] == rec_g["epsilon"] and rec["noise_multiplier"] == rec_g["noise_multiplier"]
    assert math.isclose(rec["final_loss"], rec_g["final_loss"], rel_tol=1e-4)
    for (k, a), (_, b) in zip(m_flat.state_dict().items(), m_ghost.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5, msg=k)


def test_hooks_noise_off_and_misreported_sample_rate(tok, honest):
    _, rec_h = honest
    # noise off: same claimed σ and ε, but the model trained without noise (different weights)
    m_off, rec_off = train_causal_lm_dp(TEXTS, tok, SPEC, DPLMConfig(target_epsilon=8.0), seed=0,
                                        hooks=DPHooks(noise_multiplier_used=lambda s: 0.0))
    assert rec_off["epsilon"] == rec_h["epsilon"] and rec_off["noise_multiplier"] == rec_h["noise_multiplier"]
    assert rec_off["hooks"] == ["noise_multiplier_used"]
    assert rec_off["final_loss"] != rec_h["final_loss"]
    # sample rate reported 10x too small: σ is calibrated to it (too little noise for the truth)
    seen = []
    _, rec_q = train_causal_lm_dp(TEXTS, tok, SPEC, DPLMConfig(target_epsilon=8.0), seed=0,
                                  hooks=DPHooks(sample_rate_reported=lambda q: q / 10,
                                                on_step=lambda s, opt: seen.append(opt.noise_multiplier)))
    assert rec_q["sample_rate"] == pytest.approx(rec_h["sample_rate"] / 10)
    assert rec_q["noise_multiplier"] < rec_h["noise_multiplier"]
    assert rec_q["epsilon"] == epsilon_from_record(rec_q) <= 8.0
    true_eps = epsilon_from_record({**rec_q, "sample_rate": rec_h["sample_rate"]})
    assert true_eps > 8.0  # what the run really spent
    assert seen == [rec_q["noise_multiplier"]] * rec_q["steps"]


def test_bad_input_fails_before_training(tok):
    with pytest.raises(InputError, match="exactly one"):
        train_causal_lm_dp(TEXTS, tok, SPEC, DPLMConfig(), seed=0)
    with pytest.raises(InputError, match="delta"):
        train_causal_lm_dp(TEXTS, tok, SPEC, DPLMConfig(noise_multiplier=1.0, delta=0.5), seed=0)
    with pytest.raises(InputError, match="accountant"):
        train_causal_lm_dp(TEXTS, tok, SPEC, DPLMConfig(noise_multiplier=1.0, accountant="gdp"), seed=0)


def test_cli_dp_train(tmp_path):
    import json

    from typer.testing import CliRunner

    from leakaudit.cli import app

    src = tmp_path / "c.jsonl"
    src.write_text("".join(json.dumps({"id": str(i), "text": t}) + "\n" for i, t in enumerate(TEXTS)))
    out = tmp_path / "m"
    r = CliRunner().invoke(app, ["defend", "dp-train", str(src), "--out", str(out), "--epsilon", "4",
                                 "--n-layer", "1", "--n-embd", "16", "--n-head", "2", "--n-ctx", "32",
                                 "--epochs", "1", "--batch-size", "8", "--vocab-size", "300"])
    assert r.exit_code == 0, r.output
    rec = json.loads((out / "defense.json").read_text())
    assert rec["epsilon"] == epsilon_from_record(rec) <= 4.0
    assert f"ε = {rec['epsilon']:.3f}" in r.output
    assert (out / "model.safetensors").exists()
    bad = CliRunner().invoke(app, ["defend", "dp-train", str(src), "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "exactly one" in bad.output
