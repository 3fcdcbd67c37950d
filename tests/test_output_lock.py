"""One run at a time per output folder, and an ownership record for every command's outputs.

- two real processes running ``extract`` (seeds 0 and 1) into one ``--out``: the second one exits
  2 naming the holder (pid, start time, command line) and the first one's report is intact;
- ``memorization`` and ``membership scores`` into one ``--out`` at once: the same;
- a lock left by a crashed run (a record with a dead pid, no ``flock`` held) is taken over, with a
  log line naming it; a lock held by a live process that is not leakaudit blocks all the same;
- ``endpoint audit --out DIR`` refuses a ``report.jsonl`` / ``summary.json`` it did not write and
  leaves them byte-identical.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from leakaudit.cli import app
from leakaudit.errors import InputError
from leakaudit.runs import lock as run_lock

from .test_trust_outputs import _scores_file, snapshot

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _cli(*args) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "leakaudit.cli", *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for_holder(out: Path, proc: subprocess.Popen, timeout: float = 120.0) -> dict:
    """The lock record of ``proc`` once it holds ``out``'s lock."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            rec = json.loads(run_lock.lock_path(out).read_text())
            if rec.get("pid") == proc.pid:
                return rec
        except (OSError, ValueError):
            pass
        if proc.poll() is not None:
            raise AssertionError(f"exited before taking the lock: {proc.communicate()[0]}")
        time.sleep(0.05)
    raise AssertionError("never took the lock")


@pytest.fixture()
def corpus(tmp_path):
    p = tmp_path / "corpus.jsonl"
    texts = ["Dear customer, your order 5521 has shipped to 42 Main Street.",
             "Meeting notes: budget review on Friday with the whole team present.",
             "Server log: disk usage at 91 percent on host db-02, rotating logs now."] * 3
    p.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(texts)))
    return p


def test_two_extract_runs_into_one_folder(tiny_model_dir, corpus, tmp_path):
    out = tmp_path / "out"
    ext = ["extract", "--model", tiny_model_dir, "--corpus", corpus, "--out", out, "--samples", 24,
           "--select", 4, "--new-tokens", 24, "--batch-size", 2]
    first = _cli(*ext, "--seed", 0)
    rec = _wait_for_holder(out, first)
    assert "extract" in rec["command"] and "--seed 0" in rec["command"] and rec["started"]
    second = _cli(*ext, "--seed", 1)
    out2 = second.communicate(timeout=300)[0]
    out1 = first.communicate(timeout=300)[0]
    assert first.returncode == 0, out1
    assert second.returncode == 2, out2
    lines = [x for x in out2.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), out2
    assert f"in use by another leakaudit run (pid {first.pid}, started {rec['started']}: " \
           f"leakaudit extract" in lines[0]
    run = json.loads((out / "report.jsonl").read_text().splitlines()[0])
    assert run["entry_type"] == "run" and run["seed"] == 0  # the first run's results, intact
    assert run_lock.lock_path(out).read_text() == ""  # released: the next run goes ahead


def test_memorization_and_membership_scores_at_once(tiny_model_dir, corpus, tmp_path):
    out = tmp_path / "out"
    mem = _cli("memorization", "--model", tiny_model_dir, "--corpus", corpus, "--out", out,
               "--prefix", 2, "--suffix", 2, "--sequences", 4)
    _wait_for_holder(out, mem)
    r = CliRunner().invoke(app, ["membership", "scores", str(_scores_file(tmp_path)), "--out",
                                 str(out)])
    assert r.exit_code == 2, r.output
    assert f"in use by another leakaudit run (pid {mem.pid}" in r.output
    assert "leakaudit memorization" in r.output
    log = mem.communicate(timeout=300)[0]
    assert mem.returncode == 0, log
    run = json.loads((out / "report.jsonl").read_text().splitlines()[0])
    assert run["command"].startswith("leakaudit memorization")  # not replaced by membership


def test_a_stale_lock_is_taken_over(tmp_path):
    out = tmp_path / "out"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / ".leakaudit").mkdir(parents=True)
    stale = {"pid": dead.pid, "command": "leakaudit extract --seed 7", "started": "2026-01-02T03:04:05+00:00"}
    run_lock.lock_path(out).write_text(json.dumps(stale))
    r = CliRunner().invoke(app, ["membership", "scores", str(_scores_file(tmp_path)), "--out",
                                 str(out)])
    assert r.exit_code == 0, r.output
    assert (f"took over the lock of {out} from a run that ended without releasing it (pid "
            f"{dead.pid}, started 2026-01-02T03:04:05+00:00: leakaudit extract --seed 7; that "
            "process no longer runs)") in r.output
    assert (out / "report.jsonl").is_file()
    assert run_lock.lock_path(out).read_text() == ""


def test_a_held_lock_blocks_and_reentry_does_not(tmp_path):
    out = tmp_path / "out"
    code = ("import fcntl, os, sys, time; os.makedirs(sys.argv[1] + '/.leakaudit', exist_ok=True);"
            "f = open(sys.argv[1] + '/.leakaudit/lock', 'w'); fcntl.flock(f, fcntl.LOCK_EX);"
            "f.write('garbage'); f.flush(); print('held', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(InputError, match="in use by another leakaudit run \\(an unknown "
                                             "process\\)"):
            run_lock.acquire(out)
    finally:
        holder.kill()
        holder.wait()
    with run_lock.output_lock(out):  # free once its holder is gone; re-entrant in one process
        with run_lock.output_lock(out):
            assert run_lock.held(out)
        assert run_lock.held(out)
    assert not run_lock.held(out)


def test_a_lock_that_created_the_folder_removes_it(tmp_path):
    out = tmp_path / "new"
    with run_lock.output_lock(out):
        assert run_lock.lock_path(out).is_file()
    assert not out.exists()  # nothing else was written: nothing is left behind


# ------------------------------------------------------------------- the endpoint audit's outputs

llama = pytest.importorskip("llama_cpp.server", reason="needs llama-cpp-python[server]")


def test_endpoint_audit_keeps_the_users_report(server, tiny_model_dir, tmp_path, key_env):  # noqa: F811  (the imported fixtures)
    out = tmp_path / "mine"
    out.mkdir()
    (out / "report.jsonl").write_text('{"my": "own report"}\n')
    (out / "summary.json").write_text('{"my": "summary"}\n')
    before = snapshot(out)
    corpus = tmp_path / "train.jsonl"
    corpus.write_text(json.dumps({"id": "d0", "text": "Dear customer, your order shipped."}) + "\n")
    argv = ["endpoint", "audit", f"openai-completions:{server.url}", "--api-key-env", key_env,
            "--tokenizer", str(tiny_model_dir), "--corpus", str(corpus), "--out", str(out),
            "--attack", "divergence", "--retries", "0"]
    r = CliRunner().invoke(app, argv)
    assert r.exit_code == 2, r.output
    assert r.output.startswith("error: ") and len(r.output.strip().splitlines()) == 1
    assert "report.jsonl: exists and was not written by leakaudit" in r.output
    assert snapshot(out) == before and sorted(p.name for p in out.iterdir()) == \
        ["report.jsonl", "summary.json"]
    # into a fresh folder it writes and records its outputs, so a rerun may replace them
    fresh = tmp_path / "fresh"
    r = CliRunner().invoke(app, argv[:-6] + ["--out", str(fresh)] + argv[-4:])
    assert r.exit_code == 0, r.output
    from leakaudit.runs.staged import owned_files

    assert {"report.jsonl", "summary.json", "requests.sqlite"} <= owned_files(fresh)
    r = CliRunner().invoke(app, argv[:-6] + ["--out", str(fresh)] + argv[-4:])
    assert r.exit_code == 0, r.output


from .test_endpoint_api import ggufs, key_env, server  # noqa: F401  (the real llama.cpp server)
