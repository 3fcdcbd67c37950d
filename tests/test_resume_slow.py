"""Crash and resume: ``leakaudit lab`` and ``leakaudit extract`` killed with SIGKILL at several
random moments, then rerun with the same command, end with the records of an uninterrupted run
(less timings), and the rerun's log shows the finished stages reused.

The lab runs at ``--tiny`` sizes (every stage of the quick lab, smaller); each kill happens at a
seeded random delay after a seeded random number of stages has finished, so the kills land in
different stages (corpus, training, memorization, exposure, membership, inversion, sampling
shards, verification) and every rerun makes progress. Because a kill lands inside a given stage
only by chance, the lab check then also recomputes every analysis stage with the signal cache
already filled (the state a kill late in a stage leaves) and compares again. The same check on
``lab --quick`` (the issue's wording) is ``extended``: it takes several times longer.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

TIMING_KEYS = {"started", "command", "timings_s"}


def strip_timings(x):
    if isinstance(x, dict):
        return {k: strip_timings(v) for k, v in x.items()
                if k not in TIMING_KEYS and not k.endswith("_s")}
    if isinstance(x, list):
        return [strip_timings(v) for v in x]
    return x


def report_records(out: Path) -> list[dict]:
    return [strip_timings(json.loads(line)) for line in
            (out / "report.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]


def _cmd(args):
    return [sys.executable, "-c", "from leakaudit.cli import main; main()", *map(str, args)]


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def _finished_stages(out: Path) -> int:
    store = out / ".leakaudit" / "store"
    if not store.is_dir():
        return 0
    return sum(1 for p in store.iterdir() if (p / "stage.json").is_file())


def kill_and_rerun(args, out: Path, *, n_kills: int, n_stages: int, seed: int) -> str:
    """Run ``args`` ``n_kills`` times, each killed (SIGKILL) at a random moment, then once to the
    end; return the last run's output."""
    rng = random.Random(seed)
    thresholds = sorted(rng.sample(range(0, n_stages), n_kills))
    kills = 0
    for th in thresholds:
        proc = subprocess.Popen(_cmd(args), env=ENV, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 3600  # a guard against a hang only
            while _finished_stages(out) < th and proc.poll() is None:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            time.sleep(rng.uniform(0.0, 1.5))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert kills >= min(n_kills, 5) - 1, f"only {kills} runs were still running when killed"
    res = subprocess.run(_cmd(args), env=ENV, capture_output=True, text=True, timeout=3600)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout + res.stderr


def assert_no_raw_pii(out: Path, console: str) -> None:
    """No person name, date of birth, street address, e-mail or phone number that the lab's
    generator drew (the manifest's ground truth), nor any canary secret, appears raw in any
    report file or console line. (corpus/ and models/ are the lab's training data itself.)"""
    manifest = json.loads((out / "corpus" / "manifest.json").read_text(encoding="utf-8"))
    values = {k: v for k, v in manifest["pii_values"].items()}
    values["secret"] = [c["secret"] for c in manifest["canaries"]]
    train = (out / "corpus" / "train.jsonl").read_text(encoding="utf-8")
    texts = {"console": console}
    for name in ("report.jsonl", "report.html", "summary.json", "hits.jsonl"):
        texts[name] = (out / name).read_text(encoding="utf-8")
    n_checked = 0
    for kind, vals in values.items():
        for v in vals:
            if v not in train and kind != "secret":
                continue  # drawn but never written
            n_checked += 1
            for name, text in texts.items():
                assert v not in text, f"raw {kind} {v!r} in {name}"
    assert n_checked > 50
    recs = [json.loads(x) for x in texts["report.jsonl"].splitlines()]
    pii = next(r for r in recs if r["entry_type"] == "pii")
    assert {"person", "dob", "street_address", "email", "phone", "ssn"} <= set(pii["masked_kinds"])


#: The kills' seed (``LEAKAUDIT_KILL_SEED=7 pytest ...`` tries other moments; 1 in CI).
KILL_SEED = int(os.environ.get("LEAKAUDIT_KILL_SEED", "1"))

#: Stages whose results the warm-cache check recomputes (everything after training).
_ANALYSIS_STAGES = ("memorization-", "exposure-", "pii-probes-", "membership-", "inversion-",
                    "samples-", "verify-")


def _lab_kill_check(tmp_path: Path, size: str, *, seed: int, min_stages: int) -> None:
    ref, out = tmp_path / "uninterrupted", tmp_path / "killed"
    res = subprocess.run(_cmd(["lab", size, "--out", ref]), env=ENV, capture_output=True,
                         text=True, timeout=3600)
    assert res.returncode == 0, res.stdout + res.stderr
    assert_no_raw_pii(ref, res.stdout + res.stderr)
    modes = {oct(os.lstat(p).st_mode & 0o777) for p in [ref, *ref.rglob("*")]}
    assert modes == {"0o600", "0o700"}, modes  # every output of the lab is private
    n_stages = _finished_stages(ref)
    assert n_stages >= min_stages
    log = kill_and_rerun(["lab", size, "--out", out], out, n_kills=5, n_stages=n_stages,
                         seed=seed)
    assert "run store: reused finished stage" in log
    assert report_records(out) == report_records(ref)
    assert not list(out.glob(".leakaudit-partial-*"))
    assert not list((out / ".leakaudit" / "store").glob(".*.partial"))
    # the outputs themselves equal too (models byte for byte; the corpus)
    for rel in ("models/target/model.safetensors", "models/small/model.safetensors",
                "corpus/train.jsonl", "corpus/manifest.json"):
        assert (out / rel).read_bytes() == (ref / rel).read_bytes(), rel
    # A kill lands in a given stage only by chance; the state a killed stage leaves behind is
    # its signal-cache files. So, deterministically: every analysis stage recomputed with the
    # cache already full (as after a kill late in each of them) gives the same records. (This
    # caught membership records that counted the passes the cache answered: "0 forward passes"
    # after a kill in membership, the failure this test once showed at record 145.)
    store = out / ".leakaudit" / "store"
    assert any((store / "cache").iterdir())
    for p in store.iterdir():
        if p.name.startswith(_ANALYSIS_STAGES):
            shutil.rmtree(p)
    res = subprocess.run(_cmd(["lab", size, "--out", out]), env=ENV, capture_output=True,
                         text=True, timeout=3600)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "answered by the signal cache" in res.stdout + res.stderr
    assert report_records(out) == report_records(ref)


def test_lab_killed_five_times_resumes_to_the_uninterrupted_records(tmp_path):
    # --tiny: corpus, tokenizer, 3 models, memorization, 3 exposures, membership, inversion,
    # 9 sampling shards, verification (21 stages)
    _lab_kill_check(tmp_path, "--tiny", seed=KILL_SEED, min_stages=15)


@pytest.mark.extended
def test_quick_lab_killed_five_times_resumes_to_the_uninterrupted_records(tmp_path):
    """The issue's wording: ``leakaudit lab --quick`` (the quick lab's sizes, several minutes a
    run on 2 cores) killed five times, then rerun."""
    _lab_kill_check(tmp_path, "--quick", seed=KILL_SEED, min_stages=15)


def test_extract_killed_five_times_resumes_to_the_uninterrupted_records(tiny_model_dir, tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(
        ["Dear customer, your order has shipped.", "Meeting notes: budget review on Friday.",
         "Patient John Doe, DOB 1970-01-01, presented with a mild cough and fever."])))
    args = ["extract", "--model", tiny_model_dir, "--corpus", corpus, "--samples", "40",
            "--new-tokens", "40", "--batch-size", "4", "--select", "5", "--shard-samples", "8",
            "--reference", tiny_model_dir]
    ref, out = tmp_path / "uninterrupted", tmp_path / "killed"
    res = subprocess.run(_cmd([*args, "--out", ref]), env=ENV, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    n_stages = _finished_stages(ref)
    assert n_stages >= 11  # 5 shards per sampler, verification
    log = kill_and_rerun([*args, "--out", out], out, n_kills=5, n_stages=n_stages + 1, seed=2)
    assert report_records(out) == report_records(ref)
    assert not list(out.glob(".leakaudit-partial-*"))
    del log
