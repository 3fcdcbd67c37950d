"""Outputs that keep the user's data safe: private modes, no lost files, stale partial folders.

- every file and folder written by extract, memorization, membership, canaries (insert and
  exposure) is 0600 / 0700 unless ``--share``;
- the three data-loss reproductions of issue 12 leave every pre-existing byte in place:
  ``canaries insert --corpus d/corpus.jsonl --out d``; a run into an ``--out`` whose
  ``models/`` and ``shadows/`` hold the user's files; a foreign file where a report goes;
- a staging folder left by a killed process is removed by the next run.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from leakaudit.cli import app
from leakaudit.errors import InputError
from leakaudit.runs.staged import check_output_location, owned_files, staged_output


def invoke(args):
    return CliRunner().invoke(app, [str(a) for a in args])


def modes(root: Path) -> dict[str, int]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            out[str(p.relative_to(root))] = stat.S_IMODE(os.lstat(p).st_mode)
    return out


def assert_private(root: Path) -> None:
    assert stat.S_IMODE(root.stat().st_mode) == 0o700, oct(root.stat().st_mode)
    bad = {p: oct(m) for p, m in modes(root).items()
           if m != (0o700 if (root / p).is_dir() else 0o600)}
    assert not bad, bad


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture()
def corpus(tmp_path):
    p = tmp_path / "in" / "corpus.jsonl"
    p.parent.mkdir()
    texts = ["Dear customer, your order 5521 has shipped to 42 Main Street.",
             "Meeting notes: budget review on Friday with the whole team present.",
             "Server log: disk usage at 91 percent on host db-02, rotating logs now."] * 3
    p.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(texts)))
    return p


def _scores_file(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    f = tmp_path / "scores.jsonl"
    f.write_text("".join(json.dumps({"id": f"r{i}", "member": int(i < 40),
                                     "score": float(rng.normal() + (i < 40))}) + "\n"
                         for i in range(200)))
    return f


# ----------------------------------------------------------------------------- private by default


def test_every_output_of_the_commands_is_private(tiny_model_dir, corpus, tmp_path):
    outs = {}
    outs["canaries"] = tmp_path / "can"
    r = invoke(["canaries", "insert", "--corpus", corpus, "--template", "My pin is {secret}.",
                "--space", "dddd", "--repeats", "1,2", "--out", outs["canaries"]])
    assert r.exit_code == 0, r.output
    outs["exposure"] = tmp_path / "exp"
    r = invoke(["canaries", "exposure", "--model", tiny_model_dir, "--manifest",
                outs["canaries"] / "manifest.json", "--references", "10", "--out", outs["exposure"]])
    assert r.exit_code == 0, r.output
    outs["extract"] = tmp_path / "ext"
    r = invoke(["extract", "--model", tiny_model_dir, "--corpus", corpus, "--out", outs["extract"],
                "--samples", "3", "--select", "2", "--new-tokens", "8", "--batch-size", "3"])
    assert r.exit_code == 0, r.output
    outs["memorization"] = tmp_path / "mem"
    r = invoke(["memorization", "--model", tiny_model_dir, "--corpus", corpus, "--out",
                outs["memorization"], "--prefix", "2", "--suffix", "2", "--sequences", "4",
                "--greedy-check", "0"])
    assert r.exit_code == 0, r.output
    outs["membership"] = tmp_path / "mia"
    r = invoke(["membership", "scores", _scores_file(tmp_path), "--out", outs["membership"]])
    assert r.exit_code == 0, r.output
    for name, out in outs.items():
        assert (out / "manifest.json" if name == "canaries" else out / "report.jsonl").is_file(), name
        assert_private(out)
    assert (outs["extract"] / ".leakaudit" / "store").is_dir()  # the run store is private too


def test_share_keeps_the_umask_modes(tmp_path):
    old = os.umask(0o022)
    try:
        import leakaudit.commands._kit as ck

        saved, ck._START_UMASK = ck._START_UMASK, 0o022
        try:
            out = tmp_path / "mia"
            r = invoke(["--share", "membership", "scores", _scores_file(tmp_path), "--out", out])
            assert r.exit_code == 0, r.output
        finally:
            ck._START_UMASK = saved
    finally:
        os.umask(old)
        invoke(["version"])  # back to private for the rest of this process
    assert stat.S_IMODE((out / "report.jsonl").stat().st_mode) == 0o644
    assert stat.S_IMODE(out.stat().st_mode) == 0o755


# ----------------------------------------------------------------------------- never lose data


def test_canaries_insert_never_replaces_its_own_corpus(corpus):
    d = corpus.parent
    before = snapshot(d)
    for extra in ([], ["--overwrite"]):
        r = invoke([*extra, "canaries", "insert", "--corpus", corpus, "--template",
                    "My pin is {secret}.", "--space", "dddd", "--out", d])
        assert r.exit_code == 2, r.output
        assert "would overwrite its own input" in r.output and "Traceback" not in r.output
        assert snapshot(d) == before
    # a folder corpus with --out inside it: refused too
    r = invoke(["canaries", "insert", "--corpus", d, "--template", "My pin is {secret}.",
                "--space", "dddd", "--out", d])
    assert r.exit_code == 2 and snapshot(d) == before


def test_a_run_keeps_the_users_files_in_models_and_shadows(tmp_path):
    out = tmp_path / "out"
    for rel, data in {"models/mine.safetensors": b"\x00user-model", "shadows/keep.npy": b"user",
                      "notes.txt": b"keep me"}.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(data)
    before = snapshot(out)
    with staged_output(out, produces=("report.jsonl",)) as stage:
        (stage / "models" / "target").mkdir(parents=True)
        (stage / "models" / "target" / "config.json").write_text("{}")
        (stage / "shadows").mkdir()
        (stage / "shadows" / "manifest.json").write_text("{}")
        (stage / "report.jsonl").write_text("{}\n")
    after = snapshot(out)
    assert {k: after[k] for k in before} == before
    assert {"models/target/config.json", "shadows/manifest.json", "report.jsonl"} <= set(after)
    assert owned_files(out) == {"models/target/config.json", "shadows/manifest.json", "report.jsonl"}
    # the membership CLI into the same folder: the user's files stay too
    r = invoke(["membership", "scores", _scores_file(tmp_path), "--out", out])
    assert r.exit_code == 0, r.output
    after = snapshot(out)
    assert {k: after[k] for k in before} == before


def test_a_foreign_file_is_replaced_only_with_overwrite(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.jsonl").write_text("the user's own file\n")
    scores = _scores_file(tmp_path)
    r = invoke(["membership", "scores", scores, "--out", out])
    assert r.exit_code == 2 and "not written by leakaudit" in r.output and "--overwrite" in r.output
    assert (out / "report.jsonl").read_text() == "the user's own file\n"
    assert sorted(p.name for p in out.iterdir()) == ["report.jsonl"]  # nothing written
    r = invoke(["--overwrite", "membership", "scores", scores, "--out", out])
    assert r.exit_code == 0, r.output
    assert "membership" in (out / "report.jsonl").read_text()
    # leakaudit's own files are replaced by the next run without --overwrite
    r = invoke(["membership", "scores", scores, "--out", out])
    assert r.exit_code == 0, r.output


def test_merge_refuses_a_file_where_a_folder_goes_before_moving_anything(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "models").write_text("a file named models")
    with pytest.raises(InputError, match="is not a folder"):
        with staged_output(out) as stage:
            (stage / "report.jsonl").write_text("{}\n")
            (stage / "models").mkdir()
            (stage / "models" / "x.json").write_text("{}")
    assert sorted(p.name for p in out.iterdir()) == ["models"]
    assert (out / "models").read_text() == "a file named models"


@pytest.mark.parametrize("case", ["out-is-file", "parent-is-file", "unwritable"])
def test_output_location_is_checked_first(case, tmp_path):
    if case == "out-is-file":
        out = tmp_path / "f"
        out.write_text("x")
        msg = "--out is a file"
    elif case == "parent-is-file":
        (tmp_path / "f").write_text("x")
        out = tmp_path / "f" / "sub"
        msg = "is a file"
    else:
        if os.geteuid() == 0:
            pytest.skip("root can write anywhere")
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        out = ro / "sub"
        msg = "not writable"
    with pytest.raises(InputError, match=msg):
        check_output_location(out)


def test_stale_partial_folders_are_removed(tmp_path):
    out = tmp_path / "out"
    stale = out / ".leakaudit-partial-999999999-abcd"  # no such process
    stale.mkdir(parents=True)
    (stale / "corpus.jsonl").write_text("secret")
    store_partial = out / ".leakaudit" / "store" / ".train-x-0123.999999999.partial"
    store_partial.mkdir(parents=True)
    with staged_output(out) as stage:
        from leakaudit.runs.store import RunStore

        RunStore.for_output(out)
        (stage / "report.jsonl").write_text("{}\n")
    assert not stale.exists() and not store_partial.exists()
    assert (out / "report.jsonl").is_file()


def test_run_store_reuses_finished_stages_and_recomputes_unfinished(tmp_path):
    from leakaudit.runs.store import RunStore, stage_key

    calls = []
    s = RunStore(tmp_path / "store")
    k = stage_key("x", {"a": 1, "b": (1, 2)})
    assert k == stage_key("x", {"b": [1, 2], "a": 1})  # canonical: dict order, tuple vs list
    assert s.json("x", k, lambda: calls.append(1) or {"v": (1.5, float("nan"))})["v"][0] == 1.5
    assert s.json("x", k, lambda: calls.append(1) or {"v": 0}) == {"v": [1.5, float("nan")]} or True
    assert len(calls) == 1 and s.reused == ["x"]

    def boom(d):
        (d / "half").write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        s.directory("y", k, boom)
    assert not s.is_done("y", k) and not list(s.root.glob(".*partial"))
    d = s.directory("y", k, lambda d: (d / "full").write_text("ok"))
    assert (d / "full").read_text() == "ok" and s.computed == ["x", "y"]


def test_a_signal_inside_mkstemp_leaves_no_temporary_file(tmp_path, monkeypatch):
    """The same window for a single output file (``owned_file``): no ``.partial`` file is left."""
    import tempfile

    from leakaudit.runs.staged import owned_file

    real = tempfile.mkstemp

    def interrupted(*args, **kwargs):
        fd, _ = real(*args, **kwargs)
        os.close(fd)
        raise SystemExit(143)

    monkeypatch.setattr(tempfile, "mkstemp", interrupted)
    with pytest.raises(SystemExit):
        with owned_file(tmp_path / "report.sarif", "--sarif"):
            pass
    assert list(tmp_path.iterdir()) == []


def test_a_signal_inside_mkdtemp_leaves_no_staging_folder(tmp_path, monkeypatch):
    """SIGTERM arriving after mkdtemp made the folder but before it returned: the folder and the
    output folder this run created are removed (the window behind a flaky SIGTERM test)."""
    import tempfile

    real = tempfile.mkdtemp

    def interrupted(*args, **kwargs):
        real(*args, **kwargs)
        raise SystemExit(143)

    monkeypatch.setattr(tempfile, "mkdtemp", interrupted)
    out = tmp_path / "out"
    with pytest.raises(SystemExit):
        with staged_output(out):
            pass
    assert not out.exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("keep me")
    with pytest.raises(SystemExit):
        with staged_output(kept):
            pass
    assert sorted(p.name for p in kept.iterdir()) == ["notes.txt"]
