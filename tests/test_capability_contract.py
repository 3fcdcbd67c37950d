"""Contract: every audit runs against a target stripped of each optional capability in turn.

An audit runs what the target can serve and records the rest as skipped, naming the capability;
when a capability is the audit's core (nothing at all can be measured without it) the audit
refuses up front with a CapabilityError that names it. It never crashes half-way, and never
serves numbers the target did not provide."""

import pytest

from leakaudit.errors import CapabilityError
from leakaudit.targets.base import Capabilities, RestrictedLM

from .conftest import TEXTS

OPTIONAL = [n for n in Capabilities.DESCRIPTIONS if n != "gradients"]

#: capabilities without which an audit can measure nothing at all
CORE = {"membership": {"prompt_logprobs"}, "memorization": {"prompt_logprobs", "argmax"},
        "extraction": {"generation"}, "exposure": {"prompt_logprobs"}}
# extraction without prompt log-probs (an endpoint without echo) samples, ranks with whatever
# the references and zlib give, and verifies; the rankings needing the target's own log-probs
# are recorded as skipped


def _membership(lm):
    from leakaudit.attacks.membership.audit_llm import audit_llm_membership
    from leakaudit.attacks.membership.blind import BlindBaselineConfig
    from leakaudit.attacks.membership.evaluate import EvalConfig

    a = audit_llm_membership(lm, {"ref": lm}, TEXTS[:12], TEXTS[12:24], k=0.2,
                             eval_config=EvalConfig(n_boot=20),
                             blind=BlindBaselineConfig(n_splits=2), log=lambda *_: None)
    return [s["missing"] for s in a.skipped], [e.method for e in a.evaluations]


def _memorization(lm):
    from leakaudit.attacks.memorization import MemorizationConfig
    from leakaudit.attacks.memorization.measure import measure_memorization, select_sequences
    from leakaudit.corpus.index import CorpusIndex

    docs = [" ".join(TEXTS[i: i + 3]) for i in range(4)]
    ids = [str(i) for i in range(len(docs))]
    cfg = MemorizationConfig(prefix_lengths=(4,), suffix_length=4, n_sequences=6, stratify=False,
                             greedy_check=3, batch_size=4)
    seqs = select_sequences(lm, docs, ids, CorpusIndex.build(docs, ids), config=cfg,
                            log=lambda *_: None)
    res = measure_memorization({"m": lm}, seqs, config=cfg, log=lambda *_: None)
    return [s["missing"] for s in res.skipped], [r["seq"] for r in res.records]


def _extraction(lm, ref=None):
    from leakaudit.attacks.extraction.pipeline import ExtractionConfig, run_extraction

    cfg = ExtractionConfig(samplers=("top_k", "temperature"), n_samples=3, select=2,
                           max_new_tokens=6, generate_batch_size=3, score_batch_size=3)
    res = run_extraction(lm, references={"ref": ref if ref is not None else lm}, config=cfg)
    return [s["missing"] for s in res.summary["skipped"]], [e["sampler"] for e in res.evals]


def _exposure(lm):
    from leakaudit.attacks.canaries.exposure import canary_exposure

    c = {"id": "c0", "template": "my pin is {secret}", "secret": "1234", "secret_space": "dddd",
         "repeats": 1}
    return [], [r["canary_id"] for r in canary_exposure(lm, [c], n_references=10, seed=0,
                                                        batch_size=8)]


AUDITS = {"membership": _membership, "memorization": _memorization, "extraction": _extraction,
          "exposure": _exposure}


@pytest.mark.parametrize("audit", list(AUDITS))
@pytest.mark.parametrize("cap", OPTIONAL)
def test_audit_runs_without_each_capability(tiny_lm, audit, cap):
    lm = RestrictedLM(tiny_lm, without=[cap])
    assert not getattr(lm.capabilities, cap)  # False, or 0 top log-probs
    if cap in CORE[audit]:
        with pytest.raises(CapabilityError, match=cap):
            AUDITS[audit](lm)
        return
    # extraction's reference is a separate local model with every capability (as an endpoint
    # audit's is); the other audits use the restricted target as their own reference
    skipped, ran = _extraction(lm, tiny_lm) if audit == "extraction" else AUDITS[audit](lm)
    assert ran, f"{audit} ran nothing without {cap}"
    for missing in skipped:
        assert missing == [cap]  # only what was removed is ever reported missing


def test_skips_name_the_capability(tiny_lm):
    """Min-K%++ on a target without vocabulary statistics: skipped with the reason; LOSS, zlib,
    lowercase, reference and Min-K% all reported."""
    from leakaudit.attacks.membership.audit_llm import audit_llm_membership
    from leakaudit.attacks.membership.blind import BlindBaselineConfig
    from leakaudit.attacks.membership.evaluate import EvalConfig

    lm = RestrictedLM(tiny_lm, without=["vocab_stats"])
    a = audit_llm_membership(lm, {"ref": tiny_lm}, TEXTS[:12], TEXTS[12:24], k=0.2,
                             eval_config=EvalConfig(n_boot=20),
                             blind=BlindBaselineConfig(n_splits=2), log=lambda *_: None)
    assert {e.method for e in a.evaluations} == {"loss", "zlib", "lowercase", "reference", "min_k"}
    (sk,) = a.skipped
    assert sk["method"] == "min_k_pp" and sk["missing"] == ["vocab_stats"]
    assert "vocabulary" in sk["reason"]
    recs = [r for t, r in a.records() if t == "membership" and r.get("skipped")]
    assert recs and recs[0]["reason"] == sk["reason"]


def test_the_full_target_skips_nothing(tiny_lm):
    for audit in ("membership", "memorization", "extraction"):
        skipped, ran = AUDITS[audit](tiny_lm)
        assert skipped == [] and ran


def test_membership_cli_lists_min_k_pp_as_skipped_on_a_target_without_vocab_stats(
        tiny_model_dir, tmp_path):
    """Through the CLI and the target registry: a backend whose targets give no vocabulary
    statistics (as an OpenAI-compatible server) gets LOSS, zlib, lowercase, reference and Min-K%,
    and Min-K%++ listed as skipped with the reason."""
    import json

    from typer.testing import CliRunner

    from leakaudit.cli import app
    from leakaudit.targets import load_target, register_backend

    def loader(rest, **kw):
        return RestrictedLM(load_target(rest, **kw), without=["vocab_stats"])

    register_backend("nostats-test", loader, help="test: an HF model without vocab statistics")
    for name, docs in (("m.jsonl", TEXTS[:12]), ("n.jsonl", TEXTS[12:24])):
        (tmp_path / name).write_text("".join(json.dumps({"text": t}) + "\n" for t in docs))
    r = CliRunner().invoke(app, ["membership", "llm", "--model", f"nostats-test:{tiny_model_dir}",
                                 "--reference", str(tiny_model_dir), "--members",
                                 str(tmp_path / "m.jsonl"), "--nonmembers",
                                 str(tmp_path / "n.jsonl"), "--out", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    for m in ("loss", "zlib", "lowercase", "reference", "min_k(k=0.2)"):
        assert any(line.startswith(m) and "AUC" in line for line in r.output.splitlines()), m
    flat = " ".join(r.output.split())  # the console may wrap long lines
    assert "min_k_pp(k=0.2) skipped: target does not provide vocab_stats" in flat
    html = (tmp_path / "out" / "report.html").read_text()
    assert "Skipped attacks" in html and "vocab_stats" in html


def test_extraction_with_nothing_to_rank_with_reports_every_sampler_skipped(tiny_lm):
    """Neither the target nor its reference serves log-probs: nothing is ranked or verified, and
    each sampler is recorded as skipped for prompt_logprobs (not a silent empty result)."""
    lm = RestrictedLM(tiny_lm, without=["prompt_logprobs"])
    skipped, ran = _extraction(lm)
    assert ran == [] and skipped == [["prompt_logprobs"], ["prompt_logprobs"]]
