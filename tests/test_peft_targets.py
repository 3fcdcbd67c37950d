"""PEFT adapter folders as targets (issue 28): a LoRA adapter saved by peft itself loads by its
folder, scores exactly as peft's own forward pass, equals its merged form, and is fingerprinted
with its base; the base is the default reference of the reference-based audits."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("peft")

TEXTS = ["Patient John Doe, DOB 1970-01-01, presented with a mild cough and fever.",
         "Order 5521 shipped to 42 Main Street; call 555-201-7788 with questions."]


def _lora(base_dir: Path, out: Path, *, seed: int = 0, base_name: str | None = None) -> Path:
    """A LoRA adapter with non-zero B (so it changes the outputs), saved by peft itself."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(base_dir))
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn"], fan_in_fan_out=True,
                     lora_dropout=0.0)
    m = get_peft_model(base, cfg)
    torch.manual_seed(seed)
    with torch.no_grad():
        for n, p in m.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    if base_name is not None:
        m.peft_config["default"].base_model_name_or_path = base_name
    m.save_pretrained(str(out))
    return out


def _peft_forward_logprobs(base_dir: Path, adapter: Path, text: str) -> np.ndarray:
    """peft's own forward pass: log p(token_t | tokens_<t) of the text as the tokenizer encodes
    it, every token after the first."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(base_dir))
    m = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(base_dir)), str(adapter)).eval()
    ids = torch.tensor([tok(text)["input_ids"]])
    with torch.no_grad():
        lp = torch.log_softmax(m(input_ids=ids).logits[0, :-1].float(), -1)
    return lp.gather(1, ids[0, 1:, None])[:, 0].numpy()


@pytest.fixture(scope="module")
def adapter(tiny_model_dir, tmp_path_factory):
    return _lora(tiny_model_dir, tmp_path_factory.mktemp("adapter") / "lora")


def test_adapter_folder_loads_and_scores_as_peft(adapter, tiny_model_dir):
    from leakaudit.targets import check_spec, load_target
    from leakaudit.targets.peft import PeftCausalLM

    assert check_spec(f"hf:{adapter}") == ("peft", str(adapter))
    assert check_spec(adapter)[0] == "peft"
    t = load_target(f"hf:{adapter}")
    assert isinstance(t, PeftCausalLM)
    assert Path(t.base_spec) == tiny_model_dir
    for text in TEXTS:
        got = t.score_ids(t.document_ids([text]))[0].logprobs
        want = _peft_forward_logprobs(tiny_model_dir, adapter, text)
        np.testing.assert_allclose(got, want, atol=1e-5)
    # negative control: the adapter changes the scores (the base alone scores differently)
    base = load_target(tiny_model_dir)
    ids = t.tokenize(TEXTS[:1])
    diff = np.abs(base.score_ids(ids)[0].logprobs - t.score_ids(ids)[0].logprobs).max()
    assert diff > 1e-2


def test_merged_and_unmerged_score_equal(adapter, tiny_model_dir, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from leakaudit.targets import load_target

    merged = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)),
                                       str(adapter)).merge_and_unload()
    merged.save_pretrained(str(tmp_path / "merged"))
    AutoTokenizer.from_pretrained(str(tiny_model_dir)).save_pretrained(str(tmp_path / "merged"))
    a, b = load_target(adapter), load_target(tmp_path / "merged")
    ids = a.tokenize(TEXTS)
    for x, y in zip(a.score_ids(ids), b.score_ids(ids)):
        np.testing.assert_allclose(x.logprobs, y.logprobs, atol=1e-4)
    # greedy generation agrees too (the adapter is active while generating)
    from leakaudit.targets.base import SamplingConfig

    s = SamplingConfig(greedy=True, max_new_tokens=8)
    ga = a.generate_ids([ids[0][:3]], s, seed=0)[0].new_ids
    gb = b.generate_ids([ids[0][:3]], s, seed=0)[0].new_ids
    assert ga == gb


def test_fingerprint_covers_adapter_and_base(adapter, tiny_model_dir, tmp_path):
    from leakaudit.targets import load_target

    f1 = load_target(adapter).fingerprint()
    assert load_target(adapter).fingerprint() == f1  # content, not load order
    other = _lora(tiny_model_dir, tmp_path / "other", seed=1)
    assert load_target(other).fingerprint() != f1  # another adapter on the same base
    # the same adapter bytes elsewhere, naming the same base: the same fingerprint
    shutil.copytree(adapter, tmp_path / "copy")
    assert load_target(tmp_path / "copy").fingerprint() == f1
    # the same adapter on another base: a different fingerprint
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    m = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    with torch.no_grad():
        m.transformer.ln_f.weight.add_(0.1)
    m.save_pretrained(str(tmp_path / "base2"))
    AutoTokenizer.from_pretrained(str(tiny_model_dir)).save_pretrained(str(tmp_path / "base2"))
    shutil.copytree(adapter, tmp_path / "rebased")
    cfg = json.loads((tmp_path / "rebased" / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = str(tmp_path / "base2")
    (tmp_path / "rebased" / "adapter_config.json").write_text(json.dumps(cfg))
    assert load_target(tmp_path / "rebased").fingerprint() != f1


def test_relative_base_resolves_against_adapter_folder(tiny_model_dir, tmp_path):
    from leakaudit.targets import load_target

    shutil.copytree(tiny_model_dir, tmp_path / "base")
    _lora(tmp_path / "base", tmp_path / "ad", base_name="../base")
    t = load_target(tmp_path / "ad")
    assert Path(t.base_spec.split(":", 1)[1]) == (tmp_path / "base").resolve()


def test_bad_adapter_folders(tiny_model_dir, adapter, tmp_path):
    from leakaudit.errors import InputError
    from leakaudit.targets import check_spec

    bad = tmp_path / "nobase"
    shutil.copytree(adapter, bad)
    cfg = json.loads((bad / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = str(tmp_path / "does-not-exist")
    (bad / "adapter_config.json").write_text(json.dumps(cfg))
    with pytest.raises(InputError, match="base model.*not found"):
        check_spec(bad)
    cfg["base_model_name_or_path"] = "some-org/some-model-not-cached"
    (bad / "adapter_config.json").write_text(json.dumps(cfg))
    with pytest.raises(InputError, match="offline"):
        check_spec(bad)  # a hub base is never fetched unless allowed
    cfg.pop("base_model_name_or_path")
    (bad / "adapter_config.json").write_text(json.dumps(cfg))
    with pytest.raises(InputError, match="names no base model"):
        check_spec(bad)
    pick = tmp_path / "pickle"
    pick.mkdir()
    shutil.copy(adapter / "adapter_config.json", pick)
    (pick / "adapter_model.bin").write_bytes(b"\x80\x04")
    with pytest.raises(InputError, match="pickle"):
        check_spec(pick)
    trunc = tmp_path / "trunc"
    shutil.copytree(adapter, trunc)
    w = trunc / "adapter_model.safetensors"
    w.write_bytes(w.read_bytes()[:-10])
    with pytest.raises(InputError, match="truncated"):
        check_spec(trunc)


def test_base_spec_and_default_reference(adapter, tiny_model_dir, tmp_path):
    from leakaudit.targets import load_target
    from leakaudit.targets.peft import base_spec, default_reference, references_or_base

    t = load_target(adapter)
    assert base_spec(t) == str(tiny_model_dir)
    ref = default_reference(t)
    base = load_target(tiny_model_dir)
    assert ref.fingerprint() == base.fingerprint() and ref.source == str(tiny_model_dir)
    # the adapter's own weights with the adapter off: exactly the base's scores and greedy
    # tokens, and the adapter target is unchanged afterwards (no second copy of the base)
    from leakaudit.targets.base import SamplingConfig
    from leakaudit.targets.peft import AdapterBaseLM

    assert isinstance(ref, AdapterBaseLM) and ref.model is t.model
    ids = t.document_ids(TEXTS)
    before = [s.logprobs for s in t.score_ids(ids)]
    for x, y in zip(ref.score_ids(ids), base.score_ids(ids)):
        np.testing.assert_allclose(x.logprobs, y.logprobs, atol=1e-6)
    greedy = SamplingConfig(greedy=True, max_new_tokens=6)
    assert ref.generate_ids([ids[0][:3]], greedy, seed=0)[0].new_ids == \
        base.generate_ids([ids[0][:3]], greedy, seed=0)[0].new_ids
    for x, y in zip(t.score_ids(ids), before):
        np.testing.assert_allclose(x.logprobs, y, atol=1e-6)
    assert np.abs(before[0] - base.score_ids(ids)[0].logprobs).max() > 1e-2  # adapter matters
    refs, source = references_or_base(t, {})
    assert list(refs) == ["base"] and source == "adapter base"
    given = {"mine": ref}
    assert references_or_base(t, given) == (given, "given")  # an explicit reference wins
    # negative control: a plain model has no known base
    plain = load_target(tiny_model_dir)
    assert base_spec(plain) is None and references_or_base(plain, {}) == ({}, None)


def _read_run(out: Path) -> dict:
    for line in (out / "report.jsonl").read_text().splitlines():
        r = json.loads(line)
        if r.get("entry_type") in ("run", "start_run setup", "run_record") or "reference_source" in r:
            return r
    raise AssertionError("no run record")


def test_membership_uses_the_base_by_default_and_records_it(adapter, tiny_model_dir, tmp_path):
    """The adapter's base is the reference of the ratio attack unless one is given; the run
    record says which (``reference_source``)."""
    from typer.testing import CliRunner

    from leakaudit.cli import app

    mem, non = tmp_path / "m.txt", tmp_path / "n.txt"
    mem.write_text("\n".join(f"member record {i}: patient {i} took {i * 3} mg" for i in range(6)) + "\n")
    non.write_text("\n".join(f"other record {i}: order {i} shipped to {i} Main St" for i in range(6)) + "\n")
    runs = {}
    for label, extra in (("default", []), ("given", ["--reference", str(tiny_model_dir)]),
                         ("plain", [])):
        model = str(tiny_model_dir) if label == "plain" else str(adapter)
        out = tmp_path / label
        res = CliRunner().invoke(app, ["membership", "llm", "--model", model, "--members", str(mem),
                                       "--nonmembers", str(non), "--out", str(out), *extra])
        assert res.exit_code == 0, res.output
        runs[label] = _read_run(out)
    assert runs["default"]["reference_source"] == "adapter base"
    assert "base" in runs["default"]["models"]
    assert runs["default"]["models"]["base"]["fingerprint"] == runs["plain"]["models"]["target"]["fingerprint"]
    assert runs["given"]["reference_source"] == "given" and "base" not in runs["given"]["models"]
    assert runs["plain"]["reference_source"] is None  # negative control: no base known


def test_the_reference_attack_alone_uses_the_base_of_an_adapter(adapter, tiny_model_dir, tmp_path):
    """``--attack reference`` with no ``--reference`` runs on an adapter (its base is the default
    reference) and is refused, exit 2 and nothing written, on a model with no known base."""
    from typer.testing import CliRunner

    from leakaudit.cli import app

    mem, non = tmp_path / "m.txt", tmp_path / "n.txt"
    mem.write_text("\n".join(f"member record {i}: patient {i} took {i * 3} mg" for i in range(6)) + "\n")
    non.write_text("\n".join(f"other record {i}: order {i} shipped to {i} Main St" for i in range(6)) + "\n")
    only = ["--attack", "loss", "--attack", "reference"]
    out = tmp_path / "adapter"
    res = CliRunner().invoke(app, ["membership", "llm", "--model", str(adapter), "--members", str(mem),
                                   "--nonmembers", str(non), "--out", str(out), *only])
    assert res.exit_code == 0, res.output
    assert _read_run(out)["reference_source"] == "adapter base"
    summary = json.loads((out / "report.jsonl").read_text().splitlines()[-1])
    assert sorted(summary["results"]) == ["loss [all]", "reference(reference=base) [all]"]
    out = tmp_path / "plain"
    res = CliRunner().invoke(app, ["membership", "llm", "--model", str(tiny_model_dir), "--members",
                                   str(mem), "--nonmembers", str(non), "--out", str(out), *only])
    assert res.exit_code == 2 and "needs --reference MODEL" in res.output, res.output
    assert not out.exists()


def test_extraction_and_memorization_default_to_the_base(adapter, tiny_model_dir, tmp_path):
    from leakaudit.audits.extraction import ExtractionRequest
    from leakaudit.audits.extraction import prepare as prep_ext
    from leakaudit.audits.memorization import MemorizationRequest
    from leakaudit.audits.memorization import prepare as prep_mem

    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(TEXTS * 3) + "\n")
    t = prep_ext(ExtractionRequest(model=str(adapter), corpus=corpus, out=tmp_path / "x",
                                   index_backend="memory"))
    assert list(t.references) == ["base"] and t.extra["reference_source"] == "adapter base"
    t = prep_ext(ExtractionRequest(model=str(adapter), corpus=corpus, out=tmp_path / "x",
                                   references=(str(tiny_model_dir),), index_backend="memory"))
    assert "base" not in t.references and t.extra["reference_source"] == "given"
    m = prep_mem(MemorizationRequest(models=(str(adapter),), corpus=corpus, prefix=(4,), suffix=4,
                                     out=tmp_path / "y", index_backend="memory"))
    assert set(m.models) == {"lora", "base"} and m.reference_source == "adapter base"
    m = prep_mem(MemorizationRequest(models=(str(tiny_model_dir),), corpus=corpus, prefix=(4,),
                                     suffix=4, out=tmp_path / "z", index_backend="memory"))
    assert len(m.models) == 1 and m.reference_source is None
