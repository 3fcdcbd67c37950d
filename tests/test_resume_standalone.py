"""The run store in the standalone commands: ``memorization``, ``canaries exposure`` and ``invert``.

Each command run twice into the same ``--out`` reuses its finished stages the second time (the
log says so) and writes the same records (less timings). A simulated interruption (one finished
stage lost, the partial folder of a killed process left behind) recomputes just that stage and
still ends with the records of the uninterrupted run."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from leakaudit.cli import app

from .conftest import TEXTS
from .test_resume_slow import strip_timings


def records(out: Path) -> list[dict]:
    return [strip_timings(json.loads(x)) for x in (out / "report.jsonl").read_text().splitlines()]


def stages(out: Path) -> dict[str, Path]:
    root = out / ".leakaudit" / "store"
    return {json.loads((p / "stage.json").read_text())["name"]: p for p in root.iterdir()
            if (p / "stage.json").is_file()}


def invoke(args):
    r = CliRunner().invoke(app, [str(a) for a in args])
    assert r.exit_code == 0, r.output
    return r.output


def interrupt(out: Path, name: str) -> None:
    """What a kill -9 during stage ``name`` leaves: no finished stage, a partial folder of a dead
    process."""
    p = stages(out)[name]
    shutil.rmtree(p)
    dead = subprocess.Popen(["true"])
    dead.wait()
    partial = p.parent / f".{p.name}.{dead.pid}.partial"
    partial.mkdir()
    (partial / "result.json").write_text('{"half": ')


def test_memorization_reuses_finished_stages(tiny_model_dir, tmp_path):
    corpus = tmp_path / "train.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n"
                              for i, t in enumerate(TEXTS)))
    out = tmp_path / "mem"
    args = ["memorization", "--model", tiny_model_dir, "--model", tiny_model_dir, "--corpus", corpus,
            "--out", out, "--prefix", "2,4", "--suffix", "4", "--sequences", "12",
            "--greedy-check", "4"]
    invoke(args)
    first = records(out)
    name = Path(tiny_model_dir).name
    assert set(stages(out)) == {"memorization-windows", f"memorization-{name}",
                                f"memorization-{name}-1"}
    log = invoke(args)
    for st in stages(out):
        assert f"run store: reused finished stage {st}" in log
    assert records(out) == first
    interrupt(out, f"memorization-{name}-1")
    log = invoke(args)
    assert "removed the unfinished stage of an interrupted run" in log
    assert f"reused finished stage memorization-{name}\n" in log
    assert f"reused finished stage memorization-{name}-1" not in log  # recomputed
    assert records(out) == first
    assert sum(1 for r in first if r.get("kind") == "sequence") == 2 * 2 * 12
    # another option is another key: nothing stale is served
    log = invoke([*args[:-1], "5"])
    assert "reused finished stage memorization-windows" in log
    assert f"reused finished stage memorization-{name}" not in log


def test_canary_exposure_reuses_finished_canaries(tiny_model_dir, tmp_path):
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"canaries": [
        {"id": f"c{i}", "template": t, "secret": s, "secret_space": "dddd", "repeats": r}
        for i, (t, s, r) in enumerate([("my pin is {secret}", "1234", 1),
                                       ("the door code is {secret}", "9876", 4)])]}))
    out = tmp_path / "exp"
    args = ["canaries", "exposure", "--model", tiny_model_dir, "--manifest", manifest,
            "--references", "20", "--out", out]
    invoke(args)
    first = records(out)
    name = Path(tiny_model_dir).name
    assert set(stages(out)) == {f"exposure-{name}-0", f"exposure-{name}-1"}
    log = invoke(args)
    assert "reused finished stage exposure-" in log and "reused 2 finished stages" in log
    assert records(out) == first
    interrupt(out, f"exposure-{name}-1")
    log = invoke(args)
    assert "reused 1 finished stages; computed 1" in log
    assert records(out) == first
    assert [r["canary_id"] for r in first if r.get("kind") == "canary"] == ["c0", "c1"]


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    from leakaudit.lab.digits import load_digits_data, split_digits
    from leakaudit.training.classifier import MLPSpec, TrainConfig, save_classifier, train_classifier

    parts = split_digits(load_digits_data(), {"target": 0.5, "public": 0.5}, seed=0)
    tr, pub = parts["target"], parts["public"]
    spec = MLPSpec(64, 10, ())
    module = train_classifier(tr.x, tr.y, spec, TrainConfig(epochs=20, lr=1e-2, seed=0))
    d = tmp_path_factory.mktemp("clf_resume")
    save_classifier(module, spec, d / "model", extra={"image_shape": [8, 8]})
    np.savez(d / "public.npz", x=pub.x, y=pub.y)
    return d


def test_invert_reuses_reconstructions_and_judging(classifier, tmp_path):
    """(The interrupted-stage path is the store's, exercised above for two other commands.)"""
    out = tmp_path / "inv"
    args = ["invert", classifier / "model", "--classes", "0,1,2", "--reference-data",
            classifier / "public.npz", "--out", out]
    invoke(args)
    first = records(out)
    assert set(stages(out)) == {"inversion-seed0", "inversion-evaluate"}
    log = invoke(args)
    assert "reused finished stage inversion-seed0" in log
    assert "reused finished stage inversion-evaluate" in log
    assert records(out) == first
    ev = next(r for r in first if r["entry_type"] == "inversion")
    assert ev["top1"]["n"] == 3
