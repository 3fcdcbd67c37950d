"""Single-file outputs (``triage --json/--html``, ``endpoint export-gguf OUT``, the files
``report --format`` writes into a folder, ``endpoint probe --ledger``) and ``unlearn``'s
per-method folders never replace what leakaudit did not write.

For each: a foreign file (or folder) is refused with exit 2 and one ``error:`` line and is left
byte-identical; a rerun replaces leakaudit's own file; ``leakaudit --overwrite`` replaces the
foreign one.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from leakaudit.cli import app

runner = CliRunner()


def invoke(args):
    return runner.invoke(app, [str(a) for a in args])


def _refused(r, path: Path, before: bytes) -> None:
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert r.exit_code == 2, (r.exit_code, r.output, r.exception)
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert str(path) in lines[0] and "not written by leakaudit" in lines[0], lines[0]
    assert "--overwrite" in lines[0]
    assert path.read_bytes() == before


def _no_partials(folder: Path) -> None:
    assert not [p.name for p in folder.iterdir() if p.name.endswith(".partial")]


# --- the library helper


def test_owned_file_refuses_replaces_own_and_overwrites(tmp_path):
    from leakaudit.errors import InputError
    from leakaudit.runs.staged import file_owned, write_owned_text

    f = tmp_path / "sub" / "t.json"
    write_owned_text(f, "--json", "one")  # a new file (and its folder)
    assert f.read_text() == "one" and file_owned(f)
    write_owned_text(f, "--json", "two")  # its own: replaced
    assert f.read_text() == "two"
    g = tmp_path / "mine.json"
    g.write_bytes(b"the user's own\n")
    with pytest.raises(InputError, match="not written by leakaudit"):
        write_owned_text(g, "--json", "x")
    assert g.read_bytes() == b"the user's own\n" and not file_owned(g)
    write_owned_text(g, "--json", "x", overwrite=True)
    assert g.read_text() == "x" and file_owned(g)
    _no_partials(tmp_path)
    assert oct((tmp_path / "sub" / "t.json").stat().st_mode & 0o777) == "0o600"


def test_owned_file_interrupted_leaves_nothing(tmp_path):
    from leakaudit.runs.staged import owned_file

    f = tmp_path / "out.bin"
    with pytest.raises(RuntimeError):
        with owned_file(f, "OUT") as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_a_file_appearing_during_the_run_is_not_replaced(tmp_path):
    from leakaudit.errors import InputError
    from leakaudit.runs.staged import owned_file

    f = tmp_path / "late.json"
    with pytest.raises(InputError):
        with owned_file(f, "--json") as tmp:
            tmp.write_text("ours")
            f.write_text("theirs")  # the user's file, written while the run worked
    assert f.read_text() == "theirs"
    _no_partials(tmp_path)


# --- triage --json / --html


@pytest.mark.parametrize("option,name", [("--json", "t.json"), ("--html", "t.html")])
def test_triage_single_file(tmp_path, option, name):
    f = tmp_path / name
    f.write_bytes(b"my notes\x00\xff")
    before = f.read_bytes()
    _refused(invoke(["triage", "--example", "A", option, f]), f, before)
    assert not (tmp_path / ".leakaudit").exists()  # nothing written beside it either

    own = tmp_path / "own" / name
    for _ in range(2):  # the second run replaces the first run's file
        r = invoke(["triage", "--example", "A", option, own])
        assert r.exit_code == 0, r.output
    assert own.read_bytes() != b""
    if option == "--json":
        assert json.loads(own.read_text())[0]

    r = invoke(["--overwrite", "triage", "--example", "A", option, f])
    assert r.exit_code == 0, r.output
    assert f.read_bytes() != before
    _no_partials(tmp_path)


# --- report --format: report.sarif / junit.xml / report.html written into a folder


def _report_folder(d: Path) -> Path:
    d.mkdir()
    run = {"entry_type": "run", "command": "x", "models": {}, "config": {}}
    (d / "report.jsonl").write_text(json.dumps(run) + "\n")
    return d


@pytest.mark.parametrize("fmt,name", [("sarif", "report.sarif"), ("junit", "junit.xml"),
                                      ("html", "report.html")])
def test_report_formats_never_replace_a_foreign_file(tmp_path, fmt, name):
    d = _report_folder(tmp_path / "rep")
    f = d / name
    f.write_text("the user's own file\n")
    before = f.read_bytes()
    _refused(invoke(["report", d, "--format", fmt]), f, before)
    r = invoke(["--overwrite", "report", d, "--format", fmt])
    assert r.exit_code == 0, r.output
    assert f.read_bytes() != before
    r = invoke(["report", d, "--format", fmt])  # now leakaudit's own: a rerun replaces it
    assert r.exit_code == 0, r.output


def test_report_rerun_into_a_fresh_folder(tmp_path):
    d = _report_folder(tmp_path / "rep")
    for _ in range(2):
        r = invoke(["report", d, "--format", "html,sarif,junit"])
        assert r.exit_code == 0, r.output
    assert {"report.html", "report.sarif", "junit.xml"} <= {p.name for p in d.iterdir()}


# --- endpoint export-gguf MODEL OUT.gguf


def test_export_gguf_single_file(tiny_model_dir, tmp_path):
    pytest.importorskip("gguf")
    f = tmp_path / "mine.gguf"
    f.write_bytes(b"GGUF but mine")
    before = f.read_bytes()
    _refused(invoke(["endpoint", "export-gguf", tiny_model_dir, f]), f, before)
    own = tmp_path / "own.gguf"
    for _ in range(2):
        r = invoke(["endpoint", "export-gguf", tiny_model_dir, own])
        assert r.exit_code == 0, r.output
        assert own.read_bytes()[:4] == b"GGUF"
    r = invoke(["--overwrite", "endpoint", "export-gguf", tiny_model_dir, f])
    assert r.exit_code == 0, r.output
    assert f.read_bytes()[:4] == b"GGUF" and f.read_bytes() != before
    _no_partials(tmp_path)


# --- endpoint probe --ledger FILE (added to, never replaced)


def test_probe_ledger_is_never_a_foreign_file(tmp_path):
    from leakaudit.commands.endpoint import _check_ledger
    from leakaudit.errors import InputError
    from leakaudit.runs.staged import set_overwrite
    from leakaudit.targets.api_client import RequestLedger

    foreign = tmp_path / "notes.sqlite"
    foreign.write_text("my notes, not a database\n")
    r = invoke(["endpoint", "probe", "openai-completions:http://127.0.0.1:9/v1",
                "--ledger", foreign])
    _refused(r, foreign, b"my notes, not a database\n")
    # a SQLite file of the user's own (not a ledger) is refused too: it would gain a table
    import sqlite3

    db = tmp_path / "mine.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE requests (a TEXT)")
    con.commit()
    con.close()
    before = db.read_bytes()
    with pytest.raises(InputError, match="not written by leakaudit"):
        _check_ledger(db)
    assert db.read_bytes() == before
    # a ledger leakaudit wrote (here: not recorded, e.g. by an older version) is reused
    led = tmp_path / "old.sqlite"
    RequestLedger(led).close()
    _check_ledger(led)
    assert RequestLedger.is_ledger(led) and not RequestLedger.is_ledger(db)
    # --overwrite: the foreign file makes way for a new ledger
    set_overwrite(True)
    try:
        _check_ledger(foreign)
    finally:
        set_overwrite(False)
    assert not foreign.exists()


# --- unlearn: one model folder per method


def _corpus(tmp_path: Path) -> Path:
    from tests.conftest import TEXTS

    c = tmp_path / "train.jsonl"
    c.write_text("".join(json.dumps({"id": f"u{i}", "text": t}) + "\n" for i, t in enumerate(TEXTS)))
    return c


@pytest.mark.parametrize("methods,folder", [("ga", "ga"), ("ga,npo", "npo"),
                                            ("oracle", "oracle"), ("sisa", "sisa"),
                                            ("sisa", "sisa-before")])
def test_unlearn_refuses_a_foreign_method_folder(tiny_model_dir, tmp_path, methods, folder):
    out = tmp_path / "unl"
    (out / folder).mkdir(parents=True)
    mine = out / folder / "config.json"
    mine.write_text('{"mine": true}\n')
    r = invoke(["unlearn", "--model", tiny_model_dir, "--corpus", _corpus(tmp_path),
                "--forget-match", "John Doe", "--methods", methods, "--epochs", "0.1",
                "--out", out])
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert r.exit_code == 2, r.output
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(out / folder) in lines[0]
    assert "not written by leakaudit" in lines[0] and f"{folder}/config.json" in lines[0]
    assert mine.read_text() == '{"mine": true}\n'
    assert sorted(p.name for p in out.iterdir()) == [folder]  # nothing else written


def test_unlearn_input_model_inside_a_method_folder_is_refused(tiny_model_dir, tmp_path):
    import shutil

    out = tmp_path / "unl"
    shutil.copytree(tiny_model_dir, out / "ga")
    r = invoke(["--overwrite", "unlearn", "--model", out / "ga", "--corpus", _corpus(tmp_path),
                "--forget-match", "John Doe", "--methods", "ga", "--out", out])
    assert r.exit_code == 2 and "its own input" in r.output, r.output


def test_unlearn_rerun_and_overwrite(tiny_model_dir, tmp_path):
    corpus = _corpus(tmp_path)
    out = tmp_path / "unl"
    args = ["unlearn", "--model", tiny_model_dir, "--corpus", corpus, "--forget-match",
            "John Doe", "--methods", "ga,sisa", "--steps", 1, "--batch-size", 2, "--shards", 2,
            "--epochs", 0.3, "--out", out]
    for _ in range(2):  # the rerun replaces its own model folder
        r = invoke(args)
        assert r.exit_code == 0, r.output
        assert (out / "ga" / "model.safetensors").is_file()
        assert (out / "sisa" / "shard-0").is_dir() and (out / "sisa-before" / "shard-1").is_dir()
    meta = json.loads((out / "unlearn.json").read_text())
    assert meta["methods"]["ga"]["dir"] == "ga"
    # a file the user puts into the folder afterwards makes it foreign again
    (out / "ga" / "notes.txt").write_text("mine")
    r = invoke(args)
    assert r.exit_code == 2 and "ga/notes.txt" in r.output, r.output
    r = invoke(["--overwrite", *args])
    assert r.exit_code == 0, r.output
    assert (out / "ga" / "notes.txt").read_text() == "mine"  # replaced files only, never deleted


def test_concurrent_ownership_records_keep_every_entry(tmp_path):
    """Single-file outputs do not hold the folder's lock, so the record is extended under its own
    flock: writers at the same time never drop each other's entries."""
    import threading

    from leakaudit.runs.staged import owned_files, record_owned

    def add(k):
        for i in range(40):
            record_owned(tmp_path, [f"t{k}-{i}.json"])

    threads = [threading.Thread(target=add, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(owned_files(tmp_path)) == 240
