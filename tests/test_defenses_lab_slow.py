"""End to end on a small lab: the MemFree filter against its bypasses, and the erasure of one
data subject (GA / GD / NPO next to the oracle and SISA, verified with relapse probes)."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.extended

N = 8  # filter n-gram length


@pytest.fixture(scope="module")
def small_lab(tmp_path_factory):
    from leakaudit.lab.corpus import LabCorpusConfig, generate_lab_corpus
    from leakaudit.training.lm import LMSpec, train_causal_lm, train_tokenizer

    d = tmp_path_factory.mktemp("deflab")
    corpus = generate_lab_corpus(LabCorpusConfig(
        n_docs=80, n_heldout=60, n_reference=80, canary_repeats=(1, 2, 4, 8, 16),
        canary_kinds=("ssn", "phone", "api_key"), boilerplate_repeats=(8, 16, 32), seed=0))
    corpus.write(d / "corpus")
    train = [x["text"] for x in corpus.train]
    tok = train_tokenizer(train, vocab_size=1024)
    train_causal_lm(train, tok, LMSpec(n_layer=2, n_embd=128, n_head=4, n_ctx=256, epochs=10,
                                       lr=3e-3, batch_size=8), seed=0, out_dir=d / "target")
    train_causal_lm([x["text"] for x in corpus.reference], tok,
                    LMSpec(n_layer=2, n_embd=64, n_head=4, n_ctx=256, epochs=5, lr=3e-3,
                           batch_size=8), seed=1, out_dir=d / "reference")
    return d, corpus


def test_filter_blocks_verbatim_and_reports_what_still_leaks(small_lab, tmp_path):
    from leakaudit.audits.output_filter import BypassConfig, leak_table
    from leakaudit.lab.after_training import lab_output_filter

    d, corpus = small_lab
    cfg = BypassConfig(n_docs=30, prefix_tokens=32, suffix_tokens=32, seed=0)
    res = lab_output_filter(d / "target", corpus, tmp_path / "of", n=N, fp_rate=1e-4, config=cfg)
    for kind in ("memorization", "repeated", "secret"):
        t = leak_table(res, kind)
        for style in cfg.styles:
            # 0 verbatim: no N consecutive output tokens are a training token N-gram (checked
            # with a suffix array over the tokenized corpus, not with the Bloom filter)
            assert t[("memfree", style, "filter_ngram")]["k"] == 0, (kind, style)
            for m in ("exact", "near", "normalized", "text_window"):  # reported either way
                assert t[("memfree", style, m)]["n"] == t[("unfiltered", style, m)]["n"] > 0
        print(kind, {k: f"{v['k']}/{v['n']}" for k, v in t.items()})
    mem, rep = leak_table(res, "memorization"), leak_table(res, "repeated")
    # positive control: unfiltered, the model reproduces training n-grams of documents and of
    # repeated blocks (measured: 11/30 and 8/9); whole 32-token suffixes are rarer at this size
    # (0/30 and 0/9 here, 4/12 blocks on the 150-document lab), so they are reported, not asserted
    assert mem[("unfiltered", "plain", "filter_ngram")]["k"] >= 3
    assert rep[("unfiltered", "plain", "filter_ngram")]["k"] >= 3
    assert rep[("memfree", "plain", "exact")]["k"] == 0
    html = (tmp_path / "of" / "report.html").read_text()
    assert "Output filter and its bypasses" in html


def test_erasure_of_one_subject(small_lab, tmp_path):
    from typer.testing import CliRunner

    from leakaudit.cli import app
    from leakaudit.lab.after_training import pick_canary_owner

    d, corpus = small_lab
    subj = pick_canary_owner(corpus.canaries, corpus.train, n_shards=2, max_repeats=8)
    ids = tmp_path / "forget.txt"
    ids.write_text("\n".join(subj["forget_ids"]))
    runner = CliRunner()
    out = tmp_path / "unl"
    r = runner.invoke(app, [str(a) for a in [
        "unlearn", "--model", d / "target", "--corpus", d / "corpus" / "train.jsonl",
        "--forget-match", subj["canary"]["secret"], "--methods", "ga,gd,npo,oracle,sisa",
        "--steps", 15, "--lr", 5e-4, "--shards", 2, "--out", out]])
    assert r.exit_code == 0, r.output
    meta = json.loads((out / "unlearn.json").read_text())
    assert meta["forget_ids"] == subj["forget_ids"]
    assert meta["methods"]["sisa"]["retrained_shards"] and \
        len(meta["methods"]["sisa"]["retrained_shards"]) == 1
    rep = tmp_path / "rep"
    r = runner.invoke(app, [str(a) for a in [
        "verify-erasure", out, "--heldout", d / "corpus" / "heldout.jsonl",
        "--reference", d / "reference", "--manifest", d / "corpus" / "manifest.json",
        "--relapse", "ga,gd,npo", "--n-retain", 40, "--exposure-references", 50,
        "--finetune-docs", 30, "--out", rep]])
    assert r.exit_code == 0, r.output
    print(r.output)
    recs = {x["model"]: x for x in map(json.loads, (rep / "report.jsonl").read_text().splitlines())
            if x["entry_type"] == "erasure"}
    orc, orig, sisa = recs["oracle"], recs["original"], recs["sisa"]
    a = orc["membership"]["auc_forget_vs_unseen"]
    assert a["ci_low"] <= 0.5 <= a["ci_high"]  # the oracle: indistinguishable from never-seen
    f = orc["membership"]["forget_flagged"]
    assert f["ci_low"] <= 0.05 <= f["ci_high"]
    # positive control: the original still holds the subject's documents
    assert orig["membership"]["auc_forget_vs_unseen"]["ci_low"] > 0.5
    # SISA after deletion matches the full retrain within CI
    s = sisa["membership"]["auc_forget_vs_unseen"]
    assert s["ci_low"] <= a["ci_high"] and a["ci_low"] <= s["ci_high"]
    assert sisa["secret_extraction"]["k"] == orc["secret_extraction"]["k"] == 0
    for m in ("ga", "gd", "npo"):
        assert recs[m]["utility"]["ppl_retain"] > 0 and recs[m]["cost_vs_oracle"] is not None
        for v in ("int8", "int4", "finetune"):
            assert f"{m}+{v}" in recs
    html = (rep / "report.html").read_text()
    assert "Erasure (right to be forgotten)" in html
