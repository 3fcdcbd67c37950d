"""Unlearning: the losses by hand, SISA bookkeeping, and unlearn / verify-erasure on a user's own
HF model and corpus (the tiny fixtures)."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from leakaudit.cli import app
from leakaudit.defenses.unlearning import (
    UnlearnConfig,
    fake_quantize_,
    npo_loss,
    shard_of,
    unlearning_loss,
)
from leakaudit.errors import InputError

runner = CliRunner()


def invoke(args):
    return runner.invoke(app, [str(a) for a in args])


def test_npo_loss_by_hand():
    # (2/β)·log(1 + (πθ/πref)^β): θ = ref gives (2/β)·ln 2; πθ = e^-10·πref with β = 1 gives
    # 2·ln(1 + e^-10) ≈ 9.08e-5; it is bounded below by 0 (unlike gradient ascent)
    lp = torch.tensor([-5.0, -15.0])
    ref = torch.tensor([-5.0, -5.0])
    out = npo_loss(lp, ref, 1.0)
    assert out[0].item() == pytest.approx(2 * 0.6931471805599453)
    assert out[1].item() == pytest.approx(2 * 4.5398899e-05, rel=1e-4)


def test_losses_on_a_model(tiny_lm):
    from leakaudit.training.lm import pad_batch

    m, tok = tiny_lm.model, tiny_lm.tokenizer
    f = pad_batch([[0, 5, 6, 7, 0]], 0)
    r = pad_batch([[0, 8, 9, 0]], 0)
    ce_f = m(input_ids=f[0], attention_mask=f[1], labels=f[2]).loss.item()
    ce_r = m(input_ids=r[0], attention_mask=r[1], labels=r[2]).loss.item()
    with torch.no_grad():
        ga = unlearning_loss("ga", m, None, f, None, beta=0.1, retain_weight=1.0).item()
        gd = unlearning_loss("gd", m, None, f, r, beta=0.1, retain_weight=0.5).item()
        npo = unlearning_loss("npo", m, m, f, None, beta=0.1, retain_weight=0.0).item()
    assert ga == pytest.approx(-ce_f)
    assert gd == pytest.approx(-ce_f + 0.5 * ce_r, rel=1e-5)
    assert npo == pytest.approx(20 * 0.6931471805599453, rel=1e-5)  # θ = ref
    with pytest.raises(InputError):
        UnlearnConfig(method="rmu", steps=1, lr=1e-4, batch_size=1).validate()


def test_quantization_levels():
    lin = torch.nn.Linear(16, 4)
    fake_quantize_(lin, 4)
    for row in lin.weight:
        s = row.abs().max() / 7
        levels = torch.round(row / s)
        assert torch.allclose(levels * s, row, atol=1e-6) and levels.abs().max() <= 7


def test_shards_are_stable():
    assert [shard_of(f"doc-{i}", 3) for i in range(6)] == [shard_of(f"doc-{i}", 3) for i in range(6)]
    assert len({shard_of(f"doc-{i}", 3) for i in range(30)}) == 3


@pytest.fixture(scope="module")
def user_corpus(tmp_path_factory):
    from tests.conftest import TEXTS

    d = tmp_path_factory.mktemp("user_corpus")
    train = [{"id": f"u{i}", "text": t} for i, t in enumerate(TEXTS)]
    (d / "train.jsonl").write_text("".join(json.dumps(x) + "\n" for x in train))
    held = [{"id": f"h{i}", "text": t} for i, t in enumerate(
        ["A brand new sentence about gardens.", "Another unseen line of text here.",
         "Completely different words appear.", "Seven apples on the table today.",
         "The train left at noon from the station.", "Nothing here was trained on."])]
    (d / "heldout.jsonl").write_text("".join(json.dumps(x) + "\n" for x in held))
    return d


@pytest.mark.slow
def test_unlearn_and_verify_on_a_users_model(tiny_model_dir, user_corpus, tmp_path):
    out = tmp_path / "unl"
    r = invoke(["unlearn", "--model", tiny_model_dir, "--corpus", user_corpus / "train.jsonl",
                "--forget-match", "John Doe", "--methods", "ga,npo,oracle,sisa", "--steps", 2,
                "--shards", 2, "--epochs", 0.3, "--out", out])
    assert r.exit_code == 0, r.output
    meta = json.loads((out / "unlearn.json").read_text())
    assert len(meta["forget_ids"]) == 5  # the "Patient John Doe" text, 5 copies
    sisa = meta["methods"]["sisa"]
    touched = {shard_of(i, 2) for i in meta["forget_ids"]}
    assert sorted(touched) == sisa["retrained_shards"]
    for k in range(2):  # an untouched shard is the very same file
        same = ((out / "sisa" / f"shard-{k}" / "model.safetensors").read_bytes()
                == (out / "sisa-before" / f"shard-{k}" / "model.safetensors").read_bytes())
        assert same == (k not in touched)
    rep = tmp_path / "rep"
    r = invoke(["verify-erasure", out, "--heldout", user_corpus / "heldout.jsonl",
                "--relapse", "ga", "--n-retain", 6, "--finetune-docs", 4, "--out", rep])
    assert r.exit_code == 0, r.output
    recs = [json.loads(x) for x in (rep / "report.jsonl").read_text().splitlines()]
    er = [x for x in recs if x["entry_type"] == "erasure"]
    assert {x["model"] for x in er} == {"original", "ga", "npo", "oracle", "sisa", "ga+int8",
                                        "ga+int4", "ga+finetune"}
    assert all(x["membership_score"] == "loss" for x in er)
    # judged against the oracle: its own record carries no comparison, every other one does
    assert [x["vs_oracle"] for x in er if x["model"] == "oracle"] == [None]
    assert all(x["vs_oracle"]["verdict"] in ("as the oracle", "retained", "over-forgotten")
               for x in er if x["model"] != "oracle")
    html = (rep / "report.html").read_text()
    assert "Erasure (right to be forgotten)" in html and "erasure-relapse-table" in html


def test_unlearn_bad_input(tiny_model_dir, user_corpus, tmp_path):
    r = invoke(["unlearn", "--model", tiny_model_dir, "--corpus", user_corpus / "train.jsonl",
                "--forget-match", "Nobody Here", "--out", tmp_path / "x"])
    assert r.exit_code == 2 and "forget set is empty" in r.output
    r = invoke(["unlearn", "--model", tiny_model_dir, "--corpus", user_corpus / "train.jsonl",
                "--forget-match", "John Doe", "--methods", "oracle", "--out", tmp_path / "x"])
    assert r.exit_code == 2 and "--epochs" in r.output
    r = invoke(["verify-erasure", tmp_path, "--heldout", user_corpus / "heldout.jsonl"])
    assert r.exit_code == 2 and "unlearn.json" in r.output


class _Scores:
    """A stand-in model whose mean log-prob of a text is given by a table: the verification's
    membership numbers can then be checked by hand."""

    def __init__(self, table):
        self.table = table

    def score(self, texts, batch_size):
        import numpy as np

        from leakaudit.targets.base import TokenScores

        return [TokenScores(token_ids=np.array([1]), logprobs=np.array([float(self.table[t])]),
                            is_argmax=np.array([False]))
                for t in texts]


def test_erasure_is_judged_against_the_retrained_oracle_not_against_half():
    import numpy as np

    from leakaudit.audits.erasure import VerifyConfig, verify_models
    from leakaudit.report.sections_erasure import ORACLE, _oracle_of, erasure_verdict

    forget = [f"f{i}" for i in range(8)]  # one data subject's 8 documents
    unseen = [f"u{i}" for i in range(10)]
    retain = [f"r{i}" for i in range(5)]
    base = {**{u: i for i, u in enumerate(unseen)}, **{r: 5 for r in retain}}
    # the oracle ranks its forget documents low: 1+2+3+4+5 of 8·10 pairs, AUC 0.1875 (like the
    # quick lab's retrain, 0.213): against 0.5 it would itself be "over-forgotten"
    oracle_f = [0.5, 1.5, 2.5, 3.5, 4.5, -1, -2, -3]
    tables = {"original": [20 + i for i in range(8)],  # AUC 1: still holds them
              "oracle": oracle_f,
              "npo": [x + 0.01 for x in oracle_f],  # the same ranks as the oracle
              "ga": [-10] * 8}  # AUC 0: far below the retrain
    models = {m: _Scores({**base, **dict(zip(forget, f))}) for m, f in tables.items()}
    recs = verify_models(models, forget=forget, retain=retain, unseen=unseen, reference=None,
                         oracle="oracle", cfg=VerifyConfig(n_boot=300, seed=0))
    by = {r["model"]: r for r in recs}
    assert by["oracle"]["membership"]["auc_forget_vs_unseen"]["value"] == pytest.approx(0.1875)
    assert by["oracle"]["membership"]["auc_forget_vs_unseen"]["ci_high"] < 0.5
    assert by["oracle"]["vs_oracle"] is None and by["oracle"]["is_oracle"]
    npo, ga, orig = by["npo"]["vs_oracle"], by["ga"]["vs_oracle"], by["original"]["vs_oracle"]
    assert (npo["auc_diff"], npo["ci_low"], npo["ci_high"]) == (0.0, 0.0, 0.0)
    assert ga["auc_diff"] == pytest.approx(-0.1875) and ga["ci_high"] < 0
    assert orig["auc_diff"] == pytest.approx(0.8125) and orig["ci_low"] > 0
    oracle = _oracle_of(recs)
    verdicts = {m: erasure_verdict(r, oracle) for m, r in by.items()}
    assert verdicts == {"original": "retained", "oracle": ORACLE, "npo": "as the oracle",
                        "ga": "over-forgotten"}


def test_erasure_verdict_of_older_records_and_without_an_oracle():
    from leakaudit.report.sections_erasure import ORACLE, erasure_verdict

    def rec(model, v, lo, hi, k=0):
        return {"model": model, "method": model, "relapse": None,
                "membership": {"auc_forget_vs_unseen": {"value": v, "ci_low": lo, "ci_high": hi}},
                "secret_extraction": {"k": k, "n": 1}}

    oracle = rec("oracle", 0.77, 0.70, 0.84)
    assert erasure_verdict(oracle, oracle) == ORACLE
    # no paired difference stored: the AUC CIs against the oracle's (the NPO at 0.660,
    # below 0.5's "retained" line but within reach of the oracle's 0.770)
    assert erasure_verdict(rec("npo", 0.66, 0.55, 0.75), oracle) == "as the oracle"
    assert erasure_verdict(rec("ga", 0.30, 0.20, 0.40), oracle) == "over-forgotten"
    assert erasure_verdict(rec("original", 0.95, 0.90, 0.99), oracle) == "retained"
    assert erasure_verdict(rec("npo", 0.66, 0.55, 0.75, k=1), oracle) == "retained"  # a secret
    assert erasure_verdict(rec("npo", 0.66, 0.55, 0.75), None) == "no oracle"
