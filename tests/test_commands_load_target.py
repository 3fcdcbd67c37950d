"""Every command loads its models through ``load_target``: a typo in a path answers in one line
(exit 2) before torch is imported, and a GGUF file is accepted wherever an HF directory is."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from leakaudit.cli import app

from .conftest import TEXTS

_SCRIPT = """
import sys
from leakaudit.cli import app
try:
    app(sys.argv[1:], prog_name="leakaudit")
except SystemExit as e:
    code = e.code
print("EXIT", code, "torch" in sys.modules, "transformers" in sys.modules, file=sys.stderr)
"""


@pytest.fixture(scope="module")
def user_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cmd_specs")
    (d / "train.jsonl").write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n"
                                           for i, t in enumerate(TEXTS)))
    return d


COMMANDS = {
    "compare": ["compare", "--model", "a=./no-such-dir", "--corpus", "train.jsonl",
                "--heldout", "train.jsonl", "--out", "o"],
    "unlearn": ["unlearn", "--model", "./no-such-dir", "--corpus", "train.jsonl",
                "--forget-match", "John", "--out", "o"],
    "output-filter": ["output-filter", "--model", "./no-such-dir", "--corpus", "train.jsonl",
                      "--out", "o"],
    "verify-erasure": ["verify-erasure", ".", "--heldout", "train.jsonl", "--reference",
                       "./no-such-dir", "--out", "o"],
}


@pytest.mark.parametrize("cmd", ["compare", "unlearn", "output-filter", "verify-erasure"])
def test_a_missing_model_path_is_one_line_without_torch(cmd, user_files):
    """Offline, with the network unreachable: the path is named at once, nothing is written."""
    import leakaudit

    src = str(Path(leakaudit.__file__).resolve().parents[1])  # this checkout's package
    env = {**os.environ, "HF_HUB_OFFLINE": "0", "HTTPS_PROXY": "http://127.0.0.1:9",
           "HTTP_PROXY": "http://127.0.0.1:9", "PYTHONPATH": src}
    r = subprocess.run([sys.executable, "-c", _SCRIPT, *COMMANDS[cmd]], capture_output=True,
                       text=True, cwd=user_files, env=env, timeout=120)
    lines = [ln for ln in (r.stdout + r.stderr).splitlines() if ln.strip()]
    assert lines[-1] == "EXIT 2 False False", lines
    assert lines[:-1] == ["error: ./no-such-dir: model directory not found"], lines
    assert not (user_files / "o").exists()


@pytest.fixture(scope="module")
def gguf_model(tiny_model_dir, tmp_path_factory):
    """A tiny GPT-2 as a float32 GGUF file (written by the package's own exporter)."""
    pytest.importorskip("gguf")
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    from leakaudit.targets.gguf_export import write_gpt2_gguf

    d = tmp_path_factory.mktemp("gguf_cmd")
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    torch.manual_seed(0)
    # transformers reads GGUF context_length into n_ctx, not n_positions: use GPT-2's 1024.
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=1024, n_embd=32, n_layer=2,
                                       n_head=2, bos_token_id=0, eos_token_id=0))
    return write_gpt2_gguf(model, tok, d / "tiny.gguf")


def test_output_filter_and_unlearn_accept_a_gguf_file(gguf_model, user_files, tmp_path):
    gg = gguf_model
    runner = CliRunner()
    out = tmp_path / "of"
    r = runner.invoke(app, [str(a) for a in [
        "output-filter", "--model", gg, "--corpus", user_files / "train.jsonl", "--n", 4,
        "--docs", 3, "--prefix", 4, "--suffix", 4, "--styles", "plain", "--out", out]])
    assert r.exit_code == 0, r.output
    recs = [json.loads(x) for x in (out / "report.jsonl").read_text().splitlines()]
    rates = [x for x in recs if x["entry_type"] == "output_filter" and x.get("kind") == "rate"]
    assert {x["variant"] for x in rates} == {"unfiltered", "memfree"}
    assert all(x["k"] == 0 for x in rates if x["variant"] == "memfree"
               and x["measure"] == "filter_ngram")
    # unlearning edits the dequantized weights (gradients); the result is an HF directory
    un = tmp_path / "unl"
    r = runner.invoke(app, [str(a) for a in [
        "unlearn", "--model", gg, "--corpus", user_files / "train.jsonl", "--forget-match",
        "John Doe", "--methods", "ga", "--steps", 2, "--out", un]])
    assert r.exit_code == 0, r.output
    from leakaudit.targets import load_target

    before, after = load_target(gg), load_target(un / "ga")
    assert before.tokenize(TEXTS[:3]) == after.tokenize(TEXTS[:3])
    forget = [t for t in TEXTS if "John Doe" in t][:1]
    lp0 = float(np.mean(before.score(forget)[0].logprobs))
    lp1 = float(np.mean(after.score(forget)[0].logprobs))
    assert lp1 < lp0 - 0.01, (lp0, lp1)  # gradient ascent lowered the forgotten text's log-prob


def test_a_target_without_a_needed_capability_is_refused_in_one_line(tiny_lm, tmp_path):
    """Unlearning needs gradients; the output filter needs logits processors: a target
    without them is refused up front, naming the capability."""
    from leakaudit.audits.unlearn import run_unlearn
    from leakaudit.errors import InputError
    from leakaudit.targets import require_capabilities
    from leakaudit.targets.base import RestrictedLM

    api = RestrictedLM(tiny_lm, without=["gradients", "logits_processors"])
    with pytest.raises(InputError, match=r"^srv: unlearning needs gradients \(white-box gradients\)"):
        run_unlearn(model="srv", target=api, docs=[], forget_ids=[], methods=["ga"],
                    out=tmp_path / "u", steps=1, lr=1e-4, batch_size=1, beta=0.1,
                    retain_weight=1.0, shards=1, train_spec=(None, 0), seed=0)
    with pytest.raises(InputError, match="the output filter needs logits_processors"):
        require_capabilities(api, "logits_processors", "generation", who="the output filter",
                             spec="srv")
    require_capabilities(tiny_lm, "gradients", "logits_processors", who="x")  # all there


def test_a_sisa_folder_is_a_registered_backend(tiny_model_dir, tmp_path):
    import shutil

    from leakaudit.defenses.unlearning import EnsembleLM
    from leakaudit.errors import InputError
    from leakaudit.targets import check_spec, load_target, parse_spec

    d = tmp_path / "sisa"
    for k in range(2):
        shutil.copytree(tiny_model_dir, d / f"shard-{k}")
    (d / "sisa.json").write_text(json.dumps({"n_shards": 2}))
    assert parse_spec(str(d)) == ("sisa", str(d))
    ens = load_target(d, name="ens")
    assert isinstance(ens, EnsembleLM) and len(ens.members) == 2 and ens.name == "ens"
    single = load_target(tiny_model_dir)
    np.testing.assert_allclose(ens.score(TEXTS[:2])[0].logprobs, single.score(TEXTS[:2])[0].logprobs,
                               atol=1e-5)  # identical members: the mixture is the member
    with pytest.raises(InputError, match="no sisa.json"):
        check_spec(f"sisa:{tmp_path}")


def test_dp_train_model_goes_through_the_factory(user_files, tmp_path):
    r = CliRunner().invoke(app, ["defend", "dp-train", str(user_files / "train.jsonl"), "--model",
                                 "./no-such-dir", "--epsilon", "4", "--out", str(tmp_path / "x")])
    assert r.exit_code == 2, r.output
    assert r.output.strip() == "error: ./no-such-dir: model directory not found"
    assert not (tmp_path / "x").exists()
