"""White-box DP-SGD audits: the statistics on synthetic observations (numbers checkable by hand),
the Dirac canaries' bookkeeping, honest vs broken DP-SGD end to end, and stored models keyed by
the hook's source."""

import math

import numpy as np
import pytest
from scipy import stats

from leakaudit.attacks.dp_audit.whitebox import DiracCanaries, whitebox_audit
from leakaudit.errors import InputError
from leakaudit.metrics.dp_audit import (
    gdp_delta,
    gdp_epsilon,
    gdp_mu_lower_bound,
    poisson_sampling_p_value,
    step_gdp_audit,
    whitebox_llr_scores,
)
from leakaudit.training.classifier import MLPSpec, TrainConfig
from leakaudit.training.dp_steps import StepTrainer, rdp_epsilon, schedule

# ------------------------------------------------------------------ statistics, by hand

def test_llr_scores_by_hand():
    # q = 0.1, σ = 2: one step at x = 2.5 gives log(0.9 + 0.1·e^{(2.5 − 0.5)/4}) = log(0.9 + 0.1·e^0.5)
    s = whitebox_llr_scores(np.array([[2.5, 0.5], [0.5, 0.5]]), noise_multiplier=2.0, sample_rate=0.1)
    assert s[0] == pytest.approx(math.log(0.9 + 0.1 * math.exp(0.5)) + math.log(0.9 + 0.1), abs=1e-12)
    assert s[1] == pytest.approx(2 * math.log(1.0), abs=1e-12)
    with pytest.raises(ValueError, match="non-finite"):
        whitebox_llr_scores(np.array([[np.nan]]), noise_multiplier=1.0, sample_rate=0.5)


def test_gdp_conversions_by_hand():
    # μ = 1, δ = 1e-5: ε = 4.377 solves Φ(−ε + ½) − e^ε Φ(−ε − ½) = 1e-5
    e = gdp_epsilon(1.0, 1e-5)
    assert round(e, 3) == 4.377 and gdp_delta(e, 1.0) == pytest.approx(1e-5, rel=1e-6)
    assert gdp_epsilon(0.0, 1e-5) == 0.0
    # 100/100 flagged vs 0/100: CP one-sided 0.025 bounds 1 − 0.025^(1/100) = 0.036217 on both rates
    b = 1 - 0.025 ** (1 / 100)
    assert gdp_mu_lower_bound(100, 100, 0, 100, alpha=0.05) == pytest.approx(2 * stats.norm.ppf(1 - b), abs=1e-9)
    assert round(gdp_mu_lower_bound(100, 100, 0, 100, alpha=0.05), 4) == 3.5928


def test_step_gdp_audit_recovers_mu_and_its_negative_control():
    rng = np.random.default_rng(1)
    res = step_gdp_audit(rng.normal(2.0, 1, 20000), rng.normal(0, 1, 20000), alpha=0.05)
    assert 1.6 < res.mu < 2.0 < res.max_mu             # a lower bound, close with 10k samples a side
    null = step_gdp_audit(rng.normal(0, 1, 20000), rng.normal(0, 1, 20000), alpha=0.05)
    assert null.mu < 0.05
    perfect = step_gdp_audit(np.ones(200), np.zeros(200), alpha=0.05)     # 40 + 40 select, 160 + 160 certify
    assert perfect.n_in == perfect.n_out == 160
    assert perfect.mu == perfect.max_mu == pytest.approx(gdp_mu_lower_bound(160, 160, 0, 160, alpha=0.05))


def test_poisson_sampling_test():
    rng = np.random.default_rng(0)
    honest = [poisson_sampling_p_value(rng.binomial(40, 0.1, 300), steps=40, sample_rate=0.1) for _ in range(400)]
    assert 0.02 < np.mean(np.array(honest) < 0.05) < 0.08          # calibrated: rejects ~5% of honest runs
    assert poisson_sampling_p_value(np.full(300, 4), steps=40, sample_rate=0.1) < 1e-10      # shuffling
    assert poisson_sampling_p_value(rng.binomial(40, 0.2, 300), steps=40, sample_rate=0.1) < 1e-10  # rate


# ------------------------------------------------------------------ canaries' bookkeeping

def test_dirac_canaries_rows_and_observations():
    c = DiracCanaries(6, clip=2.0, seed=3, norm_factor=10.0)
    c.start(20)
    assert c.n_rows == c.included.sum() and len(set(c.coords)) == 6
    rows = c.rows(np.arange(c.n_rows))
    i0 = c.in_ids[0]
    assert rows.shape == (c.n_rows, 20) and rows[0, c.coords[i0]] == c.signs[i0] * 20.0
    assert np.count_nonzero(rows) == c.n_rows                     # one coordinate each
    update = np.zeros(20)
    update[c.coords] = 3.0 * c.signs                              # 3·C/2 along every canary
    sampled = np.zeros(c.n_rows, dtype=bool)
    sampled[0] = True
    c.observe(0, update, sampled)
    assert np.allclose(c.observations, 1.5) and c.sampled[0].tolist() == [i == i0 for i in range(6)]
    with pytest.raises(InputError, match="in order"):
        c.observe(5, update, sampled)
    with pytest.raises(InputError, match="parameters"):
        DiracCanaries(30, clip=1.0, seed=0).start(10)


class GaussianSteps:
    """A DP-SGD step simulated exactly (no model): each in-canary Poisson-sampled at q, clipped to
    C unless ``clip`` is off, noise σ_actual·C; claims σ. Fast enough for many seeds."""

    max_grad_norm = 1.0

    def __init__(self, *, sigma, actual_sigma, q=0.2, steps=30, clip=True, seed=0):
        self.sigma, self.actual, self.q, self.steps, self.clip, self.seed = sigma, actual_sigma, q, steps, clip, seed

    def __call__(self, hook):
        rng = np.random.default_rng(self.seed + 100)
        hook.start(hook.m + 5)
        for t in range(self.steps):
            sampled = rng.random(hook.n_rows) < self.q
            g = hook.rows(np.flatnonzero(sampled)).sum(0)
            if self.clip:
                g = g / hook.norm_factor
            hook.observe(t, g + rng.normal(0, self.actual, len(g)), sampled)
        return {"epsilon": rdp_epsilon(self.sigma, self.q, self.steps, 1e-5), "delta": 1e-5,
                "noise_multiplier": self.sigma, "max_grad_norm": 1.0, "sample_rate": self.q, "steps": self.steps}


@pytest.mark.parametrize("seed", range(3))
def test_whitebox_audit_exact_gaussian_steps(seed):
    # σ = 2.5, q = 0.2, 30 steps: the RDP accountant claims ε = 2.22 at δ = 1e-5
    honest = whitebox_audit(GaussianSteps(sigma=2.5, actual_sigma=2.5, seed=seed), m=1000, seed=seed)
    eps = honest.claim["epsilon"]
    assert round(eps, 2) == 2.22
    assert honest.caught == [] and honest.one_run["epsilon"] <= eps and honest.step_gdp["epsilon"] <= eps
    assert honest.step_gdp["epsilon"] >= 0.5 * eps                     # tight: μ̂ near 1/σ
    assert honest.step_gdp["max_certifiable"] > 5 * eps
    weak = whitebox_audit(GaussianSteps(sigma=2.5, actual_sigma=0.25, seed=seed), m=1000, seed=seed)
    assert {"one_run", "step_gdp"} <= set(weak.caught) and weak.step_gdp["sigma_hat"] < 0.5
    unclipped = whitebox_audit(GaussianSteps(sigma=2.5, actual_sigma=2.5, clip=False, seed=seed), m=1000, seed=seed)
    assert {"one_run", "step_gdp"} <= set(unclipped.caught)
    assert set(honest.to_dict()["threat_model"]) == {"one_run", "step_gdp", "sampling"}
    assert "proves nothing" in honest.verdict() and not honest.to_dict()["refuted"]
    assert "claim refuted by one-run ε̂, per-step ε̂" in unclipped.verdict()
    lines = unclipped.summary_lines()
    assert len(lines) == 5 and "max certifiable" in lines[1] and "known sampling" in lines[2]


def test_whitebox_audit_rejects_bad_trainers():
    def no_clip_norm(hook):
        return {}

    with pytest.raises(InputError, match="clipping norm"):
        whitebox_audit(no_clip_norm, m=10, seed=0)

    def silent(hook):
        hook.start(20)
        return {"epsilon": 1.0}

    silent.max_grad_norm = 1.0
    with pytest.raises(InputError, match="lacks delta"):
        whitebox_audit(silent, m=10, seed=0)


# ------------------------------------------------------------------ DP-SGD end to end

def _blobs(n, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    return (rng.normal(0, 1, (n, 8)) + (2 * y - 1)[:, None] * 0.5).astype(np.float32), y


def _trainer(variant, seed=0, epsilon=2.0):
    x, y = _blobs(300, seed)
    return StepTrainer(x, y, MLPSpec(8, 2, (40,)), TrainConfig(epochs=4, lr=0.5, batch_size=60, seed=seed),
                       max_grad_norm=1.0, delta=1e-5, variant=variant, epsilon=epsilon)


def test_honest_dp_sgd_is_not_caught_and_its_step_audit_is_tight():
    import torch

    t = _trainer("dp")
    res = whitebox_audit(t, m=400, seed=0)
    q, _, steps = schedule(300 + _n_in(400, 0), 60, 4)      # the in-canaries are rows too
    assert res.claim["sample_rate"] == pytest.approx(q) and res.steps == res.claim["steps"] == steps
    assert res.claim["epsilon"] == pytest.approx(2.0, abs=0.02)
    assert res.caught == [] and res.one_run["epsilon"] <= 2.0 and res.step_gdp["epsilon"] <= 2.0
    assert res.step_gdp["epsilon"] >= 0.5 * 2.0
    assert t.model_(torch.zeros(1, 8)).shape == (1, 2)


def _n_in(m, seed):
    return int(DiracCanaries(m, clip=1.0, seed=seed).n_rows)


@pytest.mark.parametrize("variant", ["sigma_div10", "no_noise", "no_clip", "clip_after_noise",
                                     "noise_once_per_epoch"])
def test_broken_dp_sgd_is_caught(variant):
    res = whitebox_audit(_trainer(variant), m=400, seed=0)
    assert res.step_gdp["epsilon"] > res.claim["epsilon"] and "step_gdp" in res.caught


def test_misreported_sampling_is_caught_by_the_sampling_test():
    res = whitebox_audit(_trainer("shuffle"), m=400, seed=0)
    assert res.sampling["refuted"] and res.sampling["var_count"] == 0.0
    assert res.caught == ["sampling"]


def test_unknown_variant():
    with pytest.raises(InputError, match="unknown DP-SGD variant"):
        _trainer("bogus")(None)


def test_a_user_opacus_pipeline_through_the_tap():
    """A pipeline built on Opacus' make_private (leakaudit's classifier trainer, as a user's would
    be) serves the audit by handing its DPOptimizer to tap_dp_optimizer."""
    from leakaudit.training.dp_classifier import DPConfig, train_classifier_dp
    from leakaudit.training.dp_steps import tap_dp_optimizer

    x, y = _blobs(300, 1)

    def train(hook):
        dp = DPConfig(noise_multiplier=1.5, max_grad_norm=1.0, delta=1e-5)
        _, rec = train_classifier_dp(x, y, MLPSpec(8, 2, (120,)), TrainConfig(epochs=4, lr=0.5, batch_size=60, seed=1),
                                     dp, on_optimizer=lambda opt, q: tap_dp_optimizer(opt, hook, sample_rate=q, seed=1))
        return {**rec, "steps": rec["accounted_steps"]}

    train.max_grad_norm = 1.0
    res = whitebox_audit(train, m=1200, seed=1)
    assert res.claim["sample_rate"] == pytest.approx(0.2) and res.steps == 20 == res.claim["steps"]
    assert res.caught == [] and res.step_gdp["epsilon"] <= res.claim["epsilon"]
    assert res.step_gdp["sigma_hat"] >= 1.5 and res.step_gdp["epsilon"] >= 0.5 * res.claim["epsilon"]


def test_a_pipeline_written_outside_leakaudit_through_the_hook_protocol():
    """tests/dp_hooks.py:train_numpy_dpsgd does its own sampling, clipping and noise (numpy) and
    serves the audit through the hook protocol; its unclipped twin makes the same claim."""
    from leakaudit.attacks.dp_audit.whitebox import hook_trainer
    from tests import dp_hooks

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 600)
    x = rng.normal(0, 1, (600, 999)) * 0.1 + (2 * y - 1)[:, None] * 0.02
    honest = whitebox_audit(hook_trainer(dp_hooks.train_numpy_dpsgd, x, y, seed=0, max_grad_norm=1.0), m=1000, seed=0)
    eps = honest.claim["epsilon"]
    assert honest.caught == [] and honest.step_gdp["epsilon"] <= eps and honest.step_gdp["epsilon"] >= 0.5 * eps
    broken = whitebox_audit(hook_trainer(dp_hooks.train_numpy_dpsgd_unclipped, x, y, seed=0, max_grad_norm=1.0),
                            m=1000, seed=0)
    assert broken.claim["epsilon"] == eps and {"one_run", "step_gdp"} <= set(broken.caught)
    with pytest.raises(InputError, match="must return"):
        whitebox_audit(hook_trainer(lambda x, y, *, seed, whitebox: "no claim", x, y, seed=0, max_grad_norm=1.0),
                       m=10, seed=0)


@pytest.mark.slow   # ~15 s alone, ~50 s on a shared 2-core machine
def test_lm_pipeline_through_the_opacus_tap():
    """The LM DP-SGD trainer (Opacus, flat clipping) audited through a tap on its DPOptimizer:
    honest is not caught, noise switched off (the σ still claimed) is."""
    from leakaudit.training.dp_lm import DPHooks, DPLMConfig
    from leakaudit.training.dp_steps import LMStepTrainer
    from leakaudit.training.lm import LMSpec, train_tokenizer

    texts = [f"Record {i}: patient {i * 7919 % 1000} visited clinic {i % 5} on Monday." for i in range(60)]
    tok = train_tokenizer(texts, vocab_size=300)
    spec = LMSpec(n_layer=1, n_embd=32, n_head=2, n_ctx=32, epochs=2, lr=3e-3, batch_size=10)
    dp = DPLMConfig(target_epsilon=2.0, clipping="flat", delta=1e-5)
    honest = whitebox_audit(LMStepTrainer(texts, tok, spec, dp, seed=0), m=1000, seed=0)
    assert honest.steps == honest.claim["steps"] == round(2 / honest.claim["sample_rate"])
    assert honest.caught == [] and honest.step_gdp["epsilon"] <= 2.0
    broken = whitebox_audit(LMStepTrainer(texts, tok, spec, dp, seed=0,
                                          hooks=DPHooks(noise_multiplier_used=lambda s: 0.0)), m=1000, seed=0)
    assert "step_gdp" in broken.caught and broken.step_gdp["epsilon"] > 10 * 2.0
    with pytest.raises(InputError, match="flat"):
        LMStepTrainer(texts, tok, spec, DPLMConfig(target_epsilon=2.0), seed=0)


# ------------------------------------------------------------------ stale results never served

HOOK = '''import numpy as np


def train(x, y, *, seed):
    import torch

    torch.manual_seed(1234)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(int(np.prod(np.shape(x)[1:])), 10))
    return model.eval(), {{"epsilon": {eps}, "delta": 1e-5}}
'''


def test_editing_the_hook_retrains(tmp_path, monkeypatch):
    from leakaudit.audits.dp_audit import DPAuditConfig, audit_dp_classifier, load_hook
    from leakaudit.lab.dp_audit import lab_data

    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    (tmp_path / "src").mkdir()
    hook_file = tmp_path / "src" / "j30_edited_hook.py"
    data = lab_data(200, seed=0)
    cfg = DPAuditConfig(mode="one-run", n_canaries=100, n_models=2, confidence=0.95, delta=None,
                        canary_kind="crafted", seed=0)
    store = tmp_path / "out"

    def run(eps):
        hook_file.write_text(HOOK.format(eps=eps))
        return audit_dp_classifier(load_hook("j30_edited_hook:train"), data, cfg, store_dir=store)

    first = run(0.5)
    assert (first.models_trained, first.claimed_epsilon) == (1, 0.5)
    same = run(0.5)                                   # negative control: unchanged hook, reused
    assert (same.models_trained, same.models_reused) == (0, 1)
    fixed = run(0.25)                                 # the hook edited: retrained, its new claim
    assert (fixed.models_trained, fixed.models_reused, fixed.claimed_epsilon) == (1, 0, 0.25)
    assert first.trainer.startswith("j30_edited_hook:train@") and fixed.trainer != first.trainer


def test_cli_white_box_subcommand_refutes_a_broken_lab_pipeline(tmp_path):
    """`leakaudit dp-audit white-box` on the lab's σ/10 pipeline: the claim is refuted, the
    record is a dp_audit finding with the white-box threat model; options before the subcommand
    are refused, not ignored."""
    import json

    from typer.testing import CliRunner

    from leakaudit.cli import app

    out = tmp_path / "wb"
    r = CliRunner().invoke(app, ["dp-audit", "white-box", "--lab-variant", "sigma_div10",
                                 "--epsilon", "2", "--canaries", "1000", "--out", str(out)])
    assert r.exit_code == 0, r.output
    rec = [json.loads(x) for x in (out / "report.jsonl").read_text().splitlines()][1]
    assert rec["entry_type"] == "dp_audit" and rec["mode"] == "white-box"
    assert rec["refuted"] is True and rec["severity"] == "critical"
    assert rec["metric"]["value"] > rec["claimed_epsilon"] == pytest.approx(2.0, rel=0.05)
    assert "one-run" in json.dumps(rec["threat_model"]) or rec["threat_model"]
    bad = CliRunner().invoke(app, ["dp-audit", "--seed", "1", "white-box"])
    assert bad.exit_code == 2 and "--seed before 'white-box'" in bad.output
    bad = CliRunner().invoke(app, ["dp-audit", "white-box", "--lab-variant", "typo",
                                   "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "--lab-variant must be one of" in bad.output
    assert not (tmp_path / "x").exists()
