"""``leakaudit finetune`` (issue 28): full, LoRA and head-only fine-tuning of a model the user
has, non-private or DP-SGD at an explicit privacy unit; outputs load as targets with their base
known; ε in the record equals Opacus' accountant recomputed from it."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from leakaudit.cli import app

pytest.importorskip("peft")

DOCS = [{"text": f"Patient {i} DOB 19{50 + i}-01-0{i % 9 + 1} has code {i * 37}.", "person": f"p{i % 4}"}
        for i in range(12)]


@pytest.fixture(autouse=True)
def _restore_sigterm():
    handler = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, handler)


@pytest.fixture()
def corpus(tmp_path):
    p = tmp_path / "train.jsonl"
    p.write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    return p


def _run(*args):
    return CliRunner().invoke(app, ["finetune", *map(str, args)])


def _mean_nll(target, texts):
    return float(np.mean([-s.logprobs.mean() for s in target.score_ids(target.document_ids(texts))]))


def test_lora_finetune_writes_an_adapter_on_its_base(tiny_model_dir, corpus, tmp_path):
    from leakaudit.targets import load_target
    from leakaudit.targets.peft import PeftCausalLM, base_spec

    out = tmp_path / "lora"
    res = _run("--model", tiny_model_dir, "--corpus", corpus, "--out", out, "--method", "lora",
               "--epochs", 10, "--lr", 1e-2, "--batch-size", 4)
    assert res.exit_code == 0, res.output
    rec = json.loads((out / "finetune.json").read_text())
    assert rec["output"] == "adapter" and rec["method"] == "lora" and rec["dp"] is None
    assert rec["n_documents"] == 12 and rec["steps"] == 10 * 3  # 12 one-block docs / 4 per step
    t = load_target(out)
    assert isinstance(t, PeftCausalLM) and base_spec(t) == str(Path(tiny_model_dir).resolve())
    base = load_target(tiny_model_dir)
    assert rec["base_fingerprint"] == base.fingerprint()
    # LoRA trains only the adapter: r·(in + out) per adapted c_attn (32 → 96), 2 layers
    assert rec["trainable_parameters"] == 2 * 8 * (32 + 96)
    texts = [d["text"] for d in DOCS]
    assert _mean_nll(t, texts) < _mean_nll(base, texts) - 0.1  # it learned the documents


def test_head_and_full_write_models_whose_base_is_known(tiny_model_dir, corpus, tmp_path):
    import torch
    from safetensors.torch import load_file

    from leakaudit.targets import load_target
    from leakaudit.targets.peft import base_spec, default_reference

    for method in ("head", "full"):
        out = tmp_path / method
        res = _run("--model", tiny_model_dir, "--corpus", corpus, "--out", out, "--method", method,
                   "--epochs", 2, "--lr", 1e-2)
        assert res.exit_code == 0, res.output
        t = load_target(out)
        assert base_spec(t) == str(Path(tiny_model_dir).resolve())
        assert default_reference(t).fingerprint() == load_target(tiny_model_dir).fingerprint()
    base = load_file(str(Path(tiny_model_dir) / "model.safetensors"))
    head = load_file(str(tmp_path / "head" / "model.safetensors"))
    full = load_file(str(tmp_path / "full" / "model.safetensors"))
    # head-only: every weight but the (untied) output projection is the base's
    assert not torch.equal(head["lm_head.weight"], base["transformer.wte.weight"])
    assert all(torch.equal(head[k], base[k]) for k in base)
    # full: the transformer blocks moved too (negative control of the head-only check)
    assert not torch.equal(full["transformer.h.0.attn.c_attn.weight"],
                           base["transformer.h.0.attn.c_attn.weight"])


def _opacus_epsilon(dp: dict) -> float:
    """ε from a fresh Opacus accountant stepped once per training step."""
    from opacus.accountants import PRVAccountant, RDPAccountant

    acc = {"rdp": RDPAccountant, "prv": PRVAccountant}[dp["accountant"]]()
    for _ in range(dp["steps"]):
        acc.step(noise_multiplier=dp["noise_multiplier"], sample_rate=dp["sample_rate"])
    return float(acc.get_epsilon(delta=dp["delta"]))


@pytest.mark.parametrize("extra,unit,n_units", [
    ([], "document", 12),
    (["--record-key", "person"], "record", 4),  # p0..p3: three documents each
    (["--privacy-unit", "block"], "block", 12),  # each document fits one block
])
def test_dp_finetune_records_epsilon_delta_unit(tiny_model_dir, corpus, tmp_path, extra, unit,
                                                n_units):
    out = tmp_path / unit
    res = _run("--model", tiny_model_dir, "--corpus", corpus, "--out", out, "--method", "lora",
               "--epsilon", 8, "--batch-size", 2, "--epochs", 1, *extra)
    assert res.exit_code == 0, res.output
    dp = json.loads((out / "finetune.json").read_text())["dp"]
    assert dp["privacy_unit"] == unit and dp["n_units"] == n_units
    assert dp["sample_rate"] == pytest.approx(2 / n_units)
    assert dp["steps"] == round(n_units / 2)  # one expected pass over the units
    assert dp["delta"] == pytest.approx(1 / (10 * n_units))
    assert dp["epsilon"] == pytest.approx(_opacus_epsilon(dp), rel=1e-9)
    assert 7.9 <= dp["epsilon"] <= 8.0  # calibrated to the target (Opacus' tolerance 0.01)
    assert f"per {unit}" in res.output and "δ" in res.output


def test_record_unit_spans_blocks_and_documents(tiny_model_dir):
    """A person's documents, each longer than a block, are one unit of all their blocks."""
    from transformers import AutoTokenizer

    from leakaudit.training.finetune import privacy_units

    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    long = "The quick brown fox jumps over the lazy dog. " * 4
    n_tok = len(tok(long)["input_ids"])
    texts, keys = [long, long, "Hello"], ["a", "a", "b"]
    n_ctx = 16
    per_doc = -(-(n_tok + 2) // n_ctx)  # start + tokens + EOS, cut into n_ctx blocks
    assert per_doc >= 2
    by_doc = privacy_units(texts, tok, n_ctx, "document")
    by_rec = privacy_units(texts, tok, n_ctx, "record", keys)
    by_blk = privacy_units(texts, tok, n_ctx, "block")
    assert [len(u) for u in by_doc] == [per_doc, per_doc, 1]
    assert [len(u) for u in by_rec] == [2 * per_doc, 1]
    assert len(by_blk) == 2 * per_doc + 1 and all(len(u) == 1 for u in by_blk)


def test_dp_noise_off_is_not_private_noise_on_slows_learning(tiny_model_dir, corpus, tmp_path):
    """Negative control of the DP path: a huge σ leaves the model near its base, a small σ with
    a large clipping norm learns like plain training."""
    from leakaudit.targets import load_target

    texts = [d["text"] for d in DOCS]
    base = _mean_nll(load_target(tiny_model_dir), texts)
    got = {}
    for label, sigma in (("loud", 1000.0), ("quiet", 1e-6)):
        out = tmp_path / label
        res = _run("--model", tiny_model_dir, "--corpus", corpus, "--out", out, "--method", "lora",
                   "--noise-multiplier", sigma, "--max-grad-norm", 100, "--batch-size", 12,
                   "--epochs", 30, "--lr", 1e-2)
        assert res.exit_code == 0, res.output
        got[label] = _mean_nll(load_target(out), texts)
    assert got["quiet"] < base - 0.1
    assert got["quiet"] < got["loud"]


@pytest.mark.parametrize("args,msg", [
    (["--method", "bogus"], "--method must be one of"),
    (["--privacy-unit", "record", "--epsilon", "8"], "needs --record-key"),
    (["--record-key", "person"], "apply to DP-SGD"),
    (["--record-key", "person", "--epsilon", "8", "--privacy-unit", "block"], "needs --privacy-unit record"),
    (["--epsilon", "8", "--noise-multiplier", "1"], "exactly one of"),
    (["--epsilon", "-1"], "--epsilon must be > 0"),
    (["--epsilon", "8", "--privacy-unit", "person"], "--privacy-unit must be one of"),
    (["--epsilon", "8", "--accountant", "gdp"], "--accountant must be one of"),
    (["--epochs", "0"], "--epochs must be > 0"),
])
def test_bad_options_one_error_line(tiny_model_dir, corpus, tmp_path, args, msg):
    res = _run("--model", tiny_model_dir, "--corpus", corpus, "--out", tmp_path / "o", *args)
    assert res.exit_code == 2
    assert res.output.startswith("error:") and msg in res.output
    assert len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_bad_inputs_one_error_line(tiny_model_dir, corpus, tmp_path):
    cases = []
    cases.append((["--model", tmp_path / "nope", "--corpus", corpus], "not found"))
    cases.append((["--model", tiny_model_dir, "--corpus", tmp_path / "nope.jsonl"], "no such file"))
    nokey = tmp_path / "nokey.jsonl"
    nokey.write_text(json.dumps(DOCS[0]) + "\n" + json.dumps({"text": "x y z"}) + "\n")
    cases.append((["--model", tiny_model_dir, "--corpus", nokey, "--epsilon", "8",
                   "--record-key", "person"], "nokey.jsonl:2: --record-key: this record has no field 'person'"))
    few = tmp_path / "few.jsonl"
    few.write_text(json.dumps(DOCS[0]) + "\n")
    cases.append((["--model", tiny_model_dir, "--corpus", few, "--epsilon", "8", "--delta", "2"],
                  "--delta must be in (0, 1)"))
    cases.append((["--model", tiny_model_dir, "--corpus", corpus, "--epsilon", "8", "--delta", "0.5"],
                  "δ must be in (0, 1/n) = (0, 0.0833) for n = 12 privacy units (document)"))
    (tmp_path / "afile").write_text("x")
    cases.append((["--model", tiny_model_dir, "--corpus", corpus, "--out", tmp_path / "afile"],
                  "is a file"))
    for args, msg in cases:
        if "--out" not in args:
            args = [*args, "--out", tmp_path / "o"]
        res = _run(*args)
        assert res.exit_code == 2, (args, res.output)
        assert res.output.startswith("error:") and msg in " ".join(res.output.split()), res.output
    # an adapter is not a base to fine-tune from (fine-tune its base, or merge it first)
    ok = _run("--model", tiny_model_dir, "--corpus", corpus, "--out", tmp_path / "ad", "--epochs", 1)
    assert ok.exit_code == 0, ok.output
    res = _run("--model", tmp_path / "ad", "--corpus", corpus, "--out", tmp_path / "o2")
    assert res.exit_code == 2 and "not a peft: target" in res.output


def test_clipping_is_per_unit_over_all_its_blocks(tiny_model_dir):
    """The clipped sum of DP-SGD at a privacy unit, checked against plain autograd: a record
    unit of two documents is clipped once, as a whole (mean token loss over both documents);
    clipping each document separately (the document unit) gives a different, larger sum."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from leakaudit.training.finetune import clipped_unit_sum, privacy_units
    from leakaudit.training.lm import pad_batch

    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    params = [model.lm_head.weight]  # tied to wte; one tensor keeps the check readable
    texts = [DOCS[0]["text"], DOCS[1]["text"]]
    rec = privacy_units(texts, tok, 64, "record", ["a", "a"])
    doc = privacy_units(texts, tok, 64, "document")
    assert len(rec) == 1 and len(rec[0]) == 2 and len(doc) == 2

    def grad(blocks):
        inp, att, labels = pad_batch(blocks, tok.pad_token_id)
        model.zero_grad()
        model(input_ids=inp, attention_mask=att, labels=labels).loss.backward()
        return params[0].grad.clone()

    C = 0.1
    g = grad(rec[0])
    want = g * min(1.0, C / (g.norm().item() + 1e-6))
    (got,), norms, _ = clipped_unit_sum(model, params, rec, tok.pad_token_id, C)
    assert norms[0] == pytest.approx(g.norm().item(), rel=1e-5) and norms[0] > C  # clipped
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
    assert got.norm().item() == pytest.approx(C, rel=1e-4)  # one unit: at most C
    (per_doc,), _, _ = clipped_unit_sum(model, params, doc, tok.pad_token_id, C)
    assert per_doc.norm().item() > C * 1.2  # two documents, two budgets (negative control)
