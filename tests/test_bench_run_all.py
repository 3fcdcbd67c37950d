"""benchmarks/run_all.py: the ratios read from each benchmark's printed lines, and the
regression check against a baseline (no benchmark is run here)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def run_all():
    spec = importlib.util.spec_from_file_location("run_all", ROOT / "benchmarks" / "run_all.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["run_all"] = mod  # dataclasses look their module up
    try:
        spec.loader.exec_module(mod)
        yield mod
    finally:
        sys.modules.pop("run_all", None)


def _bench(run_all, name):
    return next(b for b in run_all.BENCHES if b.name == name)


def test_every_benchmark_script_is_listed(run_all):
    scripts = {p.name for p in (ROOT / "benchmarks").glob("bench_*.py")}
    assert scripts == {b.script for b in run_all.BENCHES}
    for b in run_all.BENCHES:  # every small flag is one the script defines
        text = (ROOT / "benchmarks" / b.script).read_text()
        for flag in (a for a in b.small if a.startswith("--")):
            assert f'"{flag}"' in text, (b.script, flag)


@pytest.mark.parametrize("name,text,expected", [
    ("scoring", "ratio batched / reference: 12.50x", {"scoring_batched_vs_reference": 12.5}),
    ("sampling", "ratio: 8.0x", {"sampling_batched_vs_batch1": 8.0}),
    ("membership", "speed-up vs per-attack batched: 2.5x wall, 3.0x passes (same scores)\n"
                   "speed-up vs per-attack reference pattern: 4.0x wall, 9.0x passes",
     {"membership_shared_vs_per_attack": 2.5, "membership_shared_vs_reference": 4.0}),
    ("output_filter", "      lab: unfiltered 0.100 ms/token, memfree 0.125 ms/token, overhead +25.0% "
                      "(misses the 10% goal)", {"output_filter_speed_vs_unfiltered_lab": 0.8}),
    ("defenses", "num_perm=  128  rensa       60,000 docs/s   datasketch      1,200 docs/s   "
                 "ratio   50.0x   (goal)\nDP-SGD (ghost clipping)       30.0 ms/step    2.00×",
     {"minhash_rensa_vs_datasketch_128": 50.0, "dp_step_plain_vs_ghost": 0.5}),
    ("finetune", "LoRA non-private on SmolLM2: 1200.0 ms/step  (median of 14)\n"
                 "LoRA DP-SGD (per-unit clipping) on SmolLM2: 3000.0 ms/step  2.50× (goal ≤ 2×: NOT met)",
     {"finetune_lora_plain_vs_dp_per_unit": 0.4}),
    ("endpoint", "concurrency 1: 10.0 docs/s = 0.90 x engine (11.1), 0.95 x raw HTTP (10.5); x",
     {"endpoint_scoring_vs_engine_c1": 0.9, "endpoint_scoring_vs_raw_http_c1": 0.95}),
])
def test_ratios_are_read_as_speedups(run_all, name, text, expected):
    assert run_all.read_ratios(_bench(run_all, name), text) == expected
    assert run_all.read_ratios(_bench(run_all, name), "nothing printed") == {}  # control


def _write(path, ratios, status="ok"):
    path.write_text(json.dumps({"benchmarks": {"scoring": {"status": status, "ratios": ratios}}}))
    return path


def test_compare_flags_a_fall_of_more_than_20_percent_and_exits_1(run_all, tmp_path, capsys):
    base = _write(tmp_path / "base.json", {"r": 10.0})
    ok = _write(tmp_path / "ok.json", {"r": 8.1})  # -19%: within the tolerance
    bad = _write(tmp_path / "bad.json", {"r": 7.9})  # -21%
    assert run_all.main(["--from", str(ok), "--compare", str(base)]) == 0
    assert run_all.main(["--from", str(bad), "--compare", str(base)]) == 1
    assert "REGRESSION scoring: r fell 21% (10 -> 7.9)" in capsys.readouterr().out
    broken = _write(tmp_path / "broken.json", {}, status="exit 1")
    assert run_all.main(["--from", str(broken), "--compare", str(base)]) == 1
    assert run_all.main(["--from", str(bad), "--compare", str(base), "--tolerance", "0.25"]) == 0


def test_the_committed_baseline_is_complete(run_all):
    base = json.loads((ROOT / "benchmarks" / "baseline.json").read_text())
    assert base["small"] is True and base["note"]
    assert set(base["benchmarks"]) == {b.name for b in run_all.BENCHES}
    for b in run_all.BENCHES:
        if b.ratios:
            assert base["benchmarks"][b.name]["ratios"], b.name


def test_unknown_benchmark_is_an_error(run_all, capsys):
    assert run_all.main(["--only", "scorin", "--out", "x.json"]) == 2
    assert "error: unknown benchmark(s) scorin" in capsys.readouterr().err
