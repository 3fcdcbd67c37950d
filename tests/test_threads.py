"""Threads that fit the machine (``leakaudit.targets.threads``), results independent of the thread
count, and a quiet console.

The end-to-end check runs the tiny lab (every stage of the lab at toy sizes) at ``--threads 1``,
then reruns it into the same folder at ``--threads 2``: every stage is reused (the stage keys do
not contain the thread count) and the report records are the same. The first run's console is
checked for third-party noise and for training progress bars without a total.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from leakaudit.errors import InputError
from leakaudit.targets import threads as th


# ----------------------------------------------------------------------------- the CPU budget

def test_cgroup_v2_quota_is_read_and_max_is_unlimited(tmp_path):
    (tmp_path / "cpu.max").write_text("250000 100000\n")
    assert th.cgroup_quota(tmp_path) == 2.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert th.cgroup_quota(tmp_path) is None


def test_cgroup_v1_quota_and_no_cgroup(tmp_path):
    v1 = tmp_path / "cpu"
    v1.mkdir()
    (v1 / "cpu.cfs_quota_us").write_text("50000\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    assert th.cgroup_quota(tmp_path) == 0.5
    (v1 / "cpu.cfs_quota_us").write_text("-1\n")  # v1's "unlimited"
    assert th.cgroup_quota(tmp_path) is None
    assert th.cgroup_quota(tmp_path / "missing") is None


def test_budget_is_affinity_capped_by_quota_rounded_up():
    assert th.cpu_budget(affinity=16, quota=2.5) == 3
    assert th.cpu_budget(affinity=2, quota=8.0) == 2
    assert th.cpu_budget(affinity=4, quota=None) == 4
    assert th.cpu_budget(affinity=4, quota=0.1) == 1
    # the real machine: never more than the CPUs this process may run on
    assert 1 <= th.cpu_budget() <= len(os.sched_getaffinity(0))


def test_default_backs_off_by_the_load():
    # 2 CPUs beside one busy loop (load 1.0): one thread; idle: both; a loaded 8-CPU machine
    # with 5.4 runnable: the 3 CPUs left
    assert th.default_threads(budget=2, load=1.0, machine_cpus=2) == 1
    assert th.default_threads(budget=2, load=0.05, machine_cpus=2) == 2
    assert th.default_threads(budget=8, load=5.4, machine_cpus=8) == 3
    assert th.default_threads(budget=2, load=7.0, machine_cpus=2) == 1  # never 0
    # a cgroup of 4 CPUs on an idle 64-CPU host: the budget caps
    assert th.default_threads(budget=4, load=0.0, machine_cpus=64) == 4
    # no load average (not Linux): the budget
    assert th.default_threads(budget=3, load=None, machine_cpus=3) == 3


@pytest.fixture
def fresh_threads(monkeypatch):
    """configure_threads with no earlier choice; the process's thread settings restored."""
    import torch

    before = torch.get_num_threads()
    monkeypatch.setattr(th, "_chosen", None)
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        monkeypatch.delenv(key, raising=False)
    yield torch
    torch.set_num_threads(before)


def test_explicit_count_beats_the_environment_which_beats_the_default(fresh_threads, monkeypatch):
    torch = fresh_threads
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert th.configure_threads(2) == 2
    assert torch.get_num_threads() == 2 and os.environ["OMP_NUM_THREADS"] == "2"
    assert th.configure_threads() == 2  # a later default keeps the explicit choice
    monkeypatch.setattr(th, "_chosen", None)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert th.configure_threads() == 1 and torch.get_num_threads() == 1
    monkeypatch.setattr(th, "_chosen", None)
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr(th, "cpu_budget", lambda: 2)
    monkeypatch.setattr(th, "default_threads", lambda: 1)
    assert th.configure_threads() == 2 and th.configured() == 2  # the default: the budget
    monkeypatch.setattr(th, "_chosen", None)
    assert th.configure_threads(0) == 1 and th.configured() == 1  # 0: what the load leaves free


@pytest.mark.parametrize("preset", [None, "ACTIVE"])
def test_openmp_waits_passively_unless_the_user_chose(preset):
    """``import leakaudit`` sets OMP_WAIT_POLICY=PASSIVE before torch loads (spinning OpenMP
    threads thrash beside other CPU-bound work); a value the user set is kept, and torch imported
    after leakaudit runs under it (libgomp reads it when it loads)."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if preset:
        env["OMP_WAIT_POLICY"] = preset
    code = ("import os, leakaudit, torch; print(os.environ['OMP_WAIT_POLICY'], "
            "torch.get_num_threads() >= 1)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-1000:]
    assert r.stdout.split() == [preset or "PASSIVE", "True"]


@pytest.mark.parametrize("bad", [-3, 1.5, "2", True])
def test_a_bad_count_is_an_input_error(fresh_threads, bad):
    with pytest.raises(InputError, match="threads must be a whole number >= 0"):
        th.configure_threads(bad)


def test_api_takes_threads_and_rejects_a_bad_count(fresh_threads, tmp_path):
    import leakaudit.api as api

    scores = tmp_path / "scores.jsonl"
    scores.write_text("".join(json.dumps({"score": s, "member": m}) + "\n"
                              for s, m in [(0.9, 1), (0.8, 1), (0.7, 0), (0.1, 0)]))
    with pytest.raises(InputError, match="threads must be"):
        api.membership_scores(scores, threads=-1)
    assert th.configured() is None  # nothing chosen on bad input
    api.membership_scores(scores, threads=1)
    assert th.configured() == 1


def test_cli_threads_negative_is_one_error_line_and_zero_is_the_load_rule():
    r = subprocess.run([sys.executable, "-c", "from leakaudit.cli import main; main()",
                        "--threads", "-1", "list"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "--threads" in r.stderr
    r = subprocess.run([sys.executable, "-c", "from leakaudit.cli import main; main()",
                        "--threads", "0", "list", "formats"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr


# ----------------------------------------------------------------------------- determinism

def test_blind_baseline_does_not_depend_on_blas_threads():
    """The blind baseline's scores are computed with one BLAS thread whatever the caller's pool:
    the same bits under a 1-thread and a 2-thread limit (negative control: different data give
    different scores)."""
    from threadpoolctl import threadpool_limits

    from leakaudit.attacks.membership.blind import BlindBaselineConfig, blind_baseline_features

    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 30))
    y = rng.integers(0, 3, size=120)
    labels = np.r_[np.ones(60), np.zeros(60)].astype(int)
    x[:60] += 0.3
    cfg = BlindBaselineConfig()
    runs = []
    for n in (1, 2):
        with threadpool_limits(limits=n):
            runs.append(blind_baseline_features(x, y, labels, n_classes=3, config=cfg))
    assert runs[0].tobytes() == runs[1].tobytes()
    other = blind_baseline_features(x[::-1].copy(), y, labels, n_classes=3, config=cfg)
    assert other.tobytes() != runs[0].tobytes()


TIMING = {"started", "command", "timings_s", "threads", "wall_s"}


def _strip(x):
    if isinstance(x, dict):
        return {k: _strip(v) for k, v in x.items() if k not in TIMING and not k.endswith("_s")}
    if isinstance(x, list):
        return [_strip(v) for v in x]
    return x


def _records(out):
    return [_strip(json.loads(line)) for line in (out / "report.jsonl").read_text().splitlines()
            if line.strip() and json.loads(line).get("entry_type") != "run"]


#: third-party lines a user cannot act on (issue 27)
NOISE = ("loss_type=None", "requires_grad=True to a scalar", "Loading weights",
         "generation flags are not valid", "strongly recommend passing in an `attention_mask`")


def _lab(out, threads):
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "COLUMNS": "200"}
    env.pop("OMP_NUM_THREADS", None)  # --threads decides
    return subprocess.run([sys.executable, "-c", "from leakaudit.cli import main; main()",
                           "--threads", str(threads), "lab", "--tiny", "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=1800)


@pytest.fixture(scope="module")
def one_lane_lab(tmp_path_factory):
    """The tiny lab at ``--threads 1``, run once for both tests below: its folder, the finished
    process, and its records and run record as first written (the resume test reruns into the
    folder)."""
    out = tmp_path_factory.mktemp("one-lane") / "lab"
    proc = _lab(out, 1)
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = json.loads((out / "report.jsonl").read_text().splitlines()[0])
    return out, proc, _records(out), run


def test_tiny_lab_resumes_at_another_thread_count_with_the_same_records_and_a_quiet_console(
        one_lane_lab):
    out, first, records, run = one_lane_lab
    noise = [line for line in first.stderr.splitlines() if any(n in line for n in NOISE)]
    assert noise == []
    bars = [line for line in first.stderr.splitlines() if line.startswith("training ")]
    assert bars and not any("/?" in line for line in bars), bars
    assert run["threads"] == 1 and run["training"]["target"]["threads"] == 1

    second = _lab(out, 2)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "computed 0" in second.stderr  # every stage reused, training included
    assert _records(out) == records
    run2 = json.loads((out / "report.jsonl").read_text().splitlines()[0])
    assert run2["threads"] == 2 and run2["training"]["target"]["threads"] == 1  # as trained


def test_tiny_lab_with_its_helper_lane_gives_the_one_lane_records(one_lane_lab, tmp_path):
    """At 2 threads the lab runs two lanes of one thread (leakaudit.lab.lanes): the stages are
    shared between the processes through the run store's locks, each computed once, and the
    records equal a one-lane run's at 1 thread; the helper's output stays in its log file."""
    two = tmp_path / "two"
    r = _lab(two, 2)
    assert r.returncode == 0, r.stderr[-2000:]
    assert _records(two) == one_lane_lab[2]
    run = json.loads((two / "report.jsonl").read_text().splitlines()[0])
    assert run["threads"] == 2 and run["lanes"] == [1, 1]
    assert "reused" not in r.stderr  # the helper's stages count as computed by this run
    store = two / ".leakaudit" / "store"
    marks = [json.loads(p.read_text()) for p in store.glob("*/stage.json")]
    assert len({m["run"] for m in marks}) == 1  # one run id: both lanes
    assert len({m["pid"] for m in marks}) == 2  # both lanes computed stages
    assert len(marks) == len({m["name"] for m in marks})  # none twice
    assert not list(store.glob(".lane.*.partial"))  # the helper's scratch folder is gone
    # tqdm's multiprocessing lock in a helper that ends with os._exit once made Python's
    # resource tracker warn of "leaked semaphore objects" at the end of every two-lane lab
    assert "resource_tracker" not in r.stderr, r.stderr[-2000:]
