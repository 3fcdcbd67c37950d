"""leakaudit compare: the battery over a user's own models (an undefended model and a copy
trained on a deduplicated corpus)."""

import json

import pytest


@pytest.mark.slow
def test_compare_two_models(tmp_path):
    from typer.testing import CliRunner

    from leakaudit.cli import app
    from leakaudit.defenses.dedup import deduplicate
    from leakaudit.lab.corpus import LabCorpusConfig, generate_lab_corpus
    from leakaudit.training.lm import LMSpec, train_causal_lm, train_tokenizer

    corpus = generate_lab_corpus(LabCorpusConfig(n_docs=40, n_heldout=40, canary_repeats=(1, 8),
                                                 boilerplate_repeats=(4, 16)))
    texts = [d["text"] for d in corpus.train]
    for name, docs in (("train", corpus.train), ("heldout", corpus.heldout)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    tok = train_tokenizer(texts, vocab_size=300)
    spec = LMSpec(n_layer=1, n_embd=32, n_head=2, n_ctx=128, epochs=4, lr=3e-3, batch_size=8)
    train_causal_lm(texts, tok, spec, seed=0, out_dir=tmp_path / "undefended")
    dd = deduplicate(texts, tokenizer=tok)
    assert dd.stats["n_repeated_spans"] > 0
    train_causal_lm([t for t, k in zip(dd.texts, dd.kept) if k], tok, spec, seed=0, out_dir=tmp_path / "dedup")
    out = tmp_path / "cmp"
    r = CliRunner().invoke(app, ["compare", "--model", f"undefended={tmp_path / 'undefended'}",
                                 "--model", f"dedup={tmp_path / 'dedup'}", "--corpus", str(tmp_path / "train.jsonl"),
                                 "--heldout", str(tmp_path / "heldout.jsonl"), "--out", str(out),
                                 "--samples", "5", "--windows", "30"])
    assert r.exit_code == 0, r.output
    rows = [json.loads(x) for x in (out / "report.jsonl").read_text().splitlines()]
    rows = {x["variant"]: x for x in rows if x["entry_type"] == "defense_comparison"}
    assert list(rows) == ["undefended", "dedup"]
    for row in rows.values():
        assert row["utility"]["heldout_ppl"]["value"] > 1 and row["exposure"] is None
        assert row["memorization"]["all"]["n"] == 30
    assert "defense-table" in (out / "report.html").read_text()
    bad = CliRunner().invoke(app, ["compare", "--model", "x", "--corpus", str(tmp_path / "train.jsonl"),
                                   "--heldout", str(tmp_path / "heldout.jsonl")])
    assert bad.exit_code == 2 and "NAME=DIR" in bad.output
