"""Two processes on one run store (the lab's helper lane, or one command started twice): every
stage is computed once, under its lock; the second comer waits and reads the first's result.
Two ``RunStore`` objects on one folder hold separate ``flock`` descriptions, as two processes do."""

from __future__ import annotations

import json
import os
import threading
import time

from leakaudit.exec.base import LocalExecutor, StageStore
from leakaudit.runs.store import RunStore


def test_claim_is_exclusive_between_stores_and_reentrant_within_one(tmp_path):
    a, b = RunStore(tmp_path), RunStore(tmp_path)
    assert a.claim("s", "k1") and a.claim("s", "k1")  # re-entrant in one process
    assert not b.claim("s", "k1")  # held elsewhere
    assert b.claim("s", "k2")  # another stage is free
    a.release("s", "k1")
    assert b.claim("s", "k1")


def test_the_second_comer_waits_and_reuses_and_a_helper_of_the_same_run_counts_as_computed(tmp_path):
    a = RunStore(tmp_path, run_id="run-1")
    helper = RunStore(tmp_path, run_id="run-1")
    other_run = RunStore(tmp_path, run_id="run-2")
    started, builds = threading.Event(), []

    def slow_json():
        started.set()
        time.sleep(0.3)
        builds.append(1)
        return [1, 2]

    t = threading.Thread(target=lambda: a.json("stage", "key", slow_json))
    t.start()
    started.wait(5)
    assert helper.json("stage", "key", lambda: builds.append("twice") or [9]) == [1, 2]
    t.join()
    assert builds == [1]
    assert a.computed == ["stage"] and helper.reused == ["stage"]  # one process: reused
    assert other_run.json("stage", "key", lambda: [9]) == [1, 2] and other_run.reused == ["stage"]
    mark_file = a.path("stage", "key") / "stage.json"
    mark = json.loads(mark_file.read_text())
    assert mark["run"] == "run-1" and mark["pid"] == os.getpid()
    # a stage that another process of the same run (the helper lane) finished counts as
    # computed by this run; another run's, as reused
    mark_file.write_text(json.dumps({**mark, "pid": mark["pid"] + 1}))
    lab = RunStore(tmp_path, run_id="run-1")
    assert lab.json("stage", "key", lambda: [9]) == [1, 2]
    assert lab.computed == ["stage"] and lab.reused == []


class _Counting(LocalExecutor):
    """The in-process executor with a stand-in task (each shard takes a moment)."""

    def __init__(self, log):
        super().__init__()
        self.log = log

    def _run(self, task, specs, items):
        for i, shard in items:
            time.sleep(0.05)
            self.log.append(shard["x"])
            yield i, {"y": shard["x"] * 2}


def test_two_lanes_share_the_shards_of_one_map_each_computed_once(tmp_path):
    shards = [{"x": i} for i in range(12)]
    keys = [f"{i:064x}" for i in range(12)]
    names = {k: f"shard-{i}" for i, k in enumerate(keys)}
    logs, results = [[], []], [None, None]

    def lane(j):
        store = StageStore(RunStore(tmp_path, run_id="r"), names)
        results[j] = _Counting(logs[j]).map("t", {}, shards, store, keys=keys)

    threads = [threading.Thread(target=lane, args=(j,)) for j in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results[0] == results[1] == [{"y": 2 * i} for i in range(12)]
    assert sorted(logs[0] + logs[1]) == list(range(12))  # every shard computed exactly once
    assert logs[0] and logs[1]  # and both lanes computed some


def test_a_shard_whose_holder_gave_up_is_computed_by_the_waiter(tmp_path):
    """The holder released the lock without a result (its process died): the waiter computes."""
    keys = [f"{i:064x}" for i in range(2)]
    names = {k: f"shard-{i}" for i, k in enumerate(keys)}
    holder = RunStore(tmp_path)
    assert holder.claim(names[keys[1]], keys[1])
    threading.Timer(0.3, lambda: holder.release(names[keys[1]], keys[1])).start()
    log = []
    out = _Counting(log).map("t", {}, [{"x": 0}, {"x": 1}], StageStore(RunStore(tmp_path), names),
                             keys=keys)
    assert out == [{"y": 0}, {"y": 2}] and log == [0, 1]
