"""The ``leakaudit`` command line: ``extract`` end to end on a model saved with plain transformers
calls, bad input (one-line error, exit code 2, nothing half-written), ``report``, SIGTERM, help."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from leakaudit.cli import app

RANKINGS = {"perplexity", "zlib", "lowercase", "window", "min_k"}
SAMPLERS = {"top_k", "temperature", "internet"}
PROMPT_LINES = [
    "The weather today is sunny and warm with light winds from the west and a few clouds.",
    "Stock markets rose sharply on Monday after a week of losses in the technology sector.",
    "A new bakery opened on the corner of the street, selling bread, cakes and hot coffee.",
]


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """Tiny models run fastest on one thread; on a busy 2-core machine two threads spin against
    each other (sampling gets tens of times slower). Restore the setting and the SIGTERM handler
    the CLI installs, so the rest of the session is unaffected."""
    import torch

    threads = torch.get_num_threads()
    handler = signal.getsignal(signal.SIGTERM)
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    signal.signal(signal.SIGTERM, handler)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli_inputs")
    corpus = d / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(
        ["Dear customer, your order has shipped.", "Meeting notes: budget review on Friday.",
         "Server log: disk usage at 91 percent on host db-02."])))
    prompts = d / "prompts.txt"
    prompts.write_text("\n".join(PROMPT_LINES) + "\n")
    return corpus, prompts


def invoke(args: list[str]):
    return CliRunner().invoke(app, [str(a) for a in args])


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "report.jsonl").read_text(encoding="utf-8").splitlines()
            if line.strip()]


def samples_of(out: Path) -> list[dict]:
    return [r for r in records(out) if r["entry_type"] == "sample"]


def extract_args(model, corpus, prompts, out, *, new_tokens, extra=()):
    return ["extract", "--model", model, "--reference", model, "--corpus", corpus,
            "--prompts", prompts, "--out", out, "--samples", 6, "--select", 3,
            "--new-tokens", new_tokens, "--batch-size", 6, *extra]


@pytest.fixture(scope="module")
def basic_run(tiny_model_dir, inputs, tmp_path_factory):
    corpus, prompts = inputs
    out = tmp_path_factory.mktemp("cli_basic") / "out"
    result = invoke(extract_args(tiny_model_dir, corpus, prompts, out, new_tokens=24))
    assert result.exit_code == 0, result.output
    return out, result


@pytest.fixture(scope="module")
def memorized_runs(tiny_model_dir, inputs, tmp_path_factory):
    """Run 1 with raw texts (--show-pii); run 2, same seed, against a corpus made of run 1's
    samples: every run-2 sample is then verbatim training data."""
    corpus, prompts = inputs
    base = tmp_path_factory.mktemp("cli_mem")
    out1, out2 = base / "out1", base / "out2"
    r1 = invoke(extract_args(tiny_model_dir, corpus, prompts, out1, new_tokens=60, extra=["--show-pii"]))
    assert r1.exit_code == 0, r1.output
    mem_corpus = base / "memorized.jsonl"
    mem_corpus.write_text("".join(json.dumps({"text": s["text"]}) + "\n" for s in samples_of(out1)),
                          encoding="utf-8")
    r2 = invoke(extract_args(tiny_model_dir, mem_corpus, prompts, out2, new_tokens=60,
                             extra=["--show-pii"]))
    assert r2.exit_code == 0, r2.output
    return out1, out2


# ----------------------------------------------------------------------------- extract, happy path


def test_extract_writes_a_complete_report(basic_run, tiny_model_dir):
    out, result = basic_run
    for name in ("report.jsonl", "hits.jsonl", "report.html", "summary.json"):
        assert (out / name).is_file(), name
    assert not list(out.glob(".leakaudit-partial-*"))
    assert sorted(p.name for p in out.iterdir()) == [".leakaudit", "hits.jsonl", "report.html",
                                                     "report.jsonl", "summary.json"]
    assert (out / ".leakaudit" / "store").is_dir()  # the run store: a rerun reuses its stages
    recs = records(out)
    assert recs[0]["entry_type"] == "run"
    assert recs[-1]["entry_type"] == "summary"
    assert recs[0]["models"]["target"]["fingerprint"]
    assert json.loads((out / "summary.json").read_text())["n_samples"] == 18

    samples = [r for r in recs if r["entry_type"] == "sample"]
    assert len(samples) == 18 and {s["sampler"] for s in samples} == SAMPLERS
    ref_name = "reference:" + Path(tiny_model_dir).name
    for s in samples:
        assert set(s["scores"]) == RANKINGS | {ref_name}, s["scores"]
        assert s["verified"] is not None  # verified against the corpus (and, here, not memorized)
    pairs = {(e["sampler"], e["ranking"]) for e in recs if e["entry_type"] == "eval"}
    assert pairs == {(s, r) for s in SAMPLERS for r in RANKINGS | {ref_name}}
    assert "report.html" in result.output


def test_extract_verifies_samples_that_are_in_the_corpus(memorized_runs):
    _, out2 = memorized_runs
    samples = samples_of(out2)
    verified = [s for s in samples if s["verified"]]
    assert verified, [(s["n_tokens"], s["longest_match_tokens"]) for s in samples]
    # With 60 new tokens most samples are long enough for a real 50-token window.
    assert any(s["longest_match_tokens"] >= 50 for s in verified)
    for s in verified:
        assert s["longest_match_tokens"] >= 50 or s["longest_match_tokens"] == s["n_tokens"]
        assert s["match_doc_count"] >= 1 and s["match_docs"]
    hits = [json.loads(line) for line in (out2 / "hits.jsonl").read_text().splitlines() if line]
    assert sorted(h["sample_id"] for h in hits) == sorted(s["sample_id"] for s in verified)
    summary = json.loads((out2 / "summary.json").read_text())
    assert summary["n_verified_candidates"] >= 1


def test_same_seed_gives_identical_samples(memorized_runs):
    out1, out2 = memorized_runs
    t1 = [s["text"] for s in samples_of(out1)]
    t2 = [s["text"] for s in samples_of(out2)]
    assert len(t1) == 18 and t1 == t2


# ----------------------------------------------------------------------------- bad input


def _write_bad_inputs(d: Path) -> dict[str, Path]:
    d.mkdir(parents=True, exist_ok=True)
    bad_line3 = d / "bad_line3.jsonl"
    bad_line3.write_text('{"text": "one"}\n{"text": "two"}\n{"text": oops\n{"text": "four"}\n')
    empty = d / "empty.jsonl"
    empty.write_bytes(b"")
    not_utf8 = d / "not_utf8.jsonl"
    not_utf8.write_bytes(b'{"text": "fine"}\n{"text": "caf\xe9 au lait"}\n')
    short_prompts = d / "short_prompts.txt"
    short_prompts.write_text("hi\nok\n")
    return {"bad_line3": bad_line3, "empty": empty, "not_utf8": not_utf8,
            "short_prompts": short_prompts}


BAD_CASES = ["missing_model", "malformed_line", "empty_corpus", "not_utf8", "unknown_sampler",
             "short_prompts"]


def _bad_case(case: str, tmp: Path, model: Path, corpus: Path):
    """(extra CLI args, substrings the one-line error must contain)."""
    files = _write_bad_inputs(tmp / "inputs")
    base = ["--model", model, "--corpus", corpus]
    if case == "missing_model":
        nope = tmp / "nope"
        return ["--model", nope, "--corpus", corpus], ["not found", str(nope)]
    if case == "malformed_line":
        p = files["bad_line3"]
        return ["--model", model, "--corpus", p], [f"{p}:3:"]
    if case == "empty_corpus":
        p = files["empty"]
        return ["--model", model, "--corpus", p], ["empty", str(p)]
    if case == "not_utf8":
        p = files["not_utf8"]
        return ["--model", model, "--corpus", p], [f"{p}:2:", "UTF-8"]
    if case == "unknown_sampler":
        return base + ["--sampler", "topk"], ["topk", "top_k"]
    if case == "short_prompts":
        p = files["short_prompts"]
        return base + ["--sampler", "internet", "--prompts", p], [str(p), "5 tokens"]
    raise AssertionError(case)


@pytest.mark.parametrize("out_exists", [False, True], ids=["new-out", "existing-out"])
@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(case, out_exists, tmp_path,
                                                            tiny_model_dir, inputs):
    corpus, _ = inputs
    args, needles = _bad_case(case, tmp_path, tiny_model_dir, corpus)
    out = tmp_path / "out"
    if out_exists:
        out.mkdir()
        (out / "notes.txt").write_text("keep me")
    result = invoke(["extract", *args, "--out", out, "--samples", 2, "--new-tokens", 8])
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    if out_exists:
        assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
        assert (out / "notes.txt").read_text() == "keep me"
    else:
        assert not out.exists()


# ----------------------------------------------------------------------------- report


def test_report_rerenders_html(basic_run, tmp_path):
    src, _ = basic_run
    out = tmp_path / "copy"
    shutil.copytree(src, out)
    (out / "report.html").unlink()
    result = invoke(["report", out])
    assert result.exit_code == 0, result.output
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "precision-table" in html


def test_report_on_a_folder_without_a_report_fails_cleanly(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = invoke(["report", empty])
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(empty) in lines[0], lines
    assert "report.jsonl" in lines[0]
    assert list(empty.iterdir()) == []


# ----------------------------------------------------------------------------- SIGTERM


@pytest.mark.parametrize("out_exists,sig", [(False, signal.SIGTERM), (True, signal.SIGTERM),
                                            (False, signal.SIGINT)],
                         ids=["new-out", "existing-out", "sigint"])
def test_sigterm_removes_the_partial_output(out_exists, sig, tiny_model_dir, inputs, tmp_path):
    """SIGTERM exits 143 and SIGINT 130 (not click's "Aborted!" 1, which means a crossed
    threshold), both removing the staged output."""
    corpus, _ = inputs
    out = tmp_path / "out"
    if out_exists:
        out.mkdir()
        (out / "notes.txt").write_text("keep me")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-c", "from leakaudit.cli import main; main()",
           "extract", "--model", str(tiny_model_dir), "--corpus", str(corpus), "--out", str(out),
           "--samples", "400", "--new-tokens", "200"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not list(out.glob(".leakaudit-partial-*")):
            assert proc.poll() is None, proc.stdout.read().decode(errors="replace")
            assert time.monotonic() < deadline, "no staging folder after 60 s"
            time.sleep(0.05)
        proc.send_signal(sig)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = output.decode(errors="replace")
    assert proc.returncode == 128 + sig, text
    if out_exists:
        assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    else:
        assert not out.exists(), list(out.iterdir())


# ----------------------------------------------------------------------------- help


@pytest.mark.parametrize("argv,needles", [
    ([], ["extract", "lab", "report"]),
    (["extract"], ["--model", "--reference", "--corpus", "--prompts", "--out", "--samples",
                   "--select", "--new-tokens", "--sampler", "--seed", "--batch-size", "--show-pii"]),
    (["lab"], ["--out", "--quick", "--seed", "--samples", "--show-pii", "defenses", "endpoint",
               "after-training"]),
    (["lab", "defenses"], ["--out", "--quick", "--seed", "--samples"]),
    (["lab", "endpoint"], ["{url}", "--out", "--api-key-env", "--show-pii", "--seed"]),
    (["lab", "after-training"], ["--out", "--seed", "OUT/output-filter"]),
    (["membership"], ["llm", "classifier", "scores", "lab"]),
    (["membership", "llm"], ["--model", "--members", "--nonmembers", "--reference", "--k", "--cluster"]),
    (["membership", "classifier"], ["{classifier}", "--data", "--epochs", "--rmia-a", "--shadows", "--cluster"]),
    (["membership", "scores"], ["{scores}", "--out", "--format", "--fail-on"]),
    (["membership", "lab"], ["--shadows", "--seed", "--out"]),
    (["report"], ["directory", "report.html"]),
], ids=["main", "extract", "lab", "lab-defenses", "lab-endpoint", "lab-after-training", "membership",
        "membership-llm", "membership-classifier", "membership-scores", "membership-lab", "report"])
def test_help(argv, needles):
    result = CliRunner().invoke(app, [*argv, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for needle in needles:
        assert needle in result.output, needle


def _subcommands(argv: list[str]) -> list[str]:
    """The names in the Commands panel of ``leakaudit ARGV --help``."""
    text = CliRunner().invoke(app, [*argv, "--help"], env={"COLUMNS": "200"}).output
    panel = text.split("Commands")[1].splitlines()[1:]
    return [ln.strip("│ ").split()[0] for ln in panel if ln.startswith("│ ") and ln[2] != " "]


def test_modes_are_subcommands():
    assert _subcommands(["lab"]) == ["defenses", "endpoint", "after-training", "finetune"]
    assert _subcommands(["membership"]) == ["llm", "classifier", "scores", "lab"]
    # each subcommand has only the options that apply to it
    sub = CliRunner().invoke(app, ["lab", "defenses", "--help"], env={"COLUMNS": "200"}).output
    assert "--show-pii" not in sub and "--endpoint" not in sub and "--format" not in sub
    sub = CliRunner().invoke(app, ["lab", "finetune", "--help"], env={"COLUMNS": "200"}).output
    assert "--tiny" in sub and "--show-pii" not in sub and "--samples" not in sub
    sub = CliRunner().invoke(app, ["membership", "scores", "--help"], env={"COLUMNS": "200"}).output
    assert "--cluster" not in sub and "--members" not in sub and "--model" not in sub


@pytest.mark.parametrize("argv,line", [
    (["lab", "--defenses"], "'leakaudit lab --defenses' is now 'leakaudit lab defenses'"),
    (["lab", "--defenses", "--quick", "--out", "x"], "'leakaudit lab --defenses' is now 'leakaudit lab defenses'"),
    (["lab", "--out", "x", "--endpoint", "http://127.0.0.1:9/v1"],
     "'leakaudit lab --endpoint URL' is now 'leakaudit lab endpoint URL'"),
    (["lab", "--endpoint=http://127.0.0.1:9/v1"], "'leakaudit lab --endpoint URL' is now 'leakaudit lab endpoint URL'"),
    (["lab", "--api-key-env", "K", "--endpoint", "http://127.0.0.1:9/v1"],
     "'leakaudit lab --endpoint URL --api-key-env VAR' is now 'leakaudit lab endpoint URL --api-key-env VAR'"),
    (["lab", "--after-training", "--out", "x"], "'leakaudit lab --after-training' is now 'leakaudit lab after-training'"),
    (["membership", "--model", "m", "--members", "a", "--nonmembers", "b"],
     "'leakaudit membership --model M' is now 'leakaudit membership llm --model M'"),
    (["membership", "--members", "a", "--model", "m"],
     "'leakaudit membership --model M' is now 'leakaudit membership llm --model M'"),
    (["membership", "--classifier", "clf", "--data", "d.npz"],
     "'leakaudit membership --classifier DIR' is now 'leakaudit membership classifier DIR'"),
    (["membership", "--scores", "s.csv"], "'leakaudit membership --scores FILE' is now 'leakaudit membership scores FILE'"),
    (["membership", "--lab", "--shadows", "4"], "'leakaudit membership --lab' is now 'leakaudit membership lab'"),
], ids=["lab-defenses", "lab-defenses-quick", "lab-endpoint", "lab-endpoint-equals", "lab-api-key-env",
        "lab-after-training", "membership-model", "membership-model-later", "membership-classifier",
        "membership-scores", "membership-lab"])
def test_old_mode_flags_name_the_new_spelling(argv, line, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(app, argv)
    assert r.exit_code == 2, r.output
    assert r.output.splitlines() == [f"error: {line}"]
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_a_mode_word_after_a_subcommand_is_its_own_option(tmp_path):
    """The old flags are looked for only before the subcommand: ``invert --endpoint`` and a
    subcommand's own options are not old spellings (negative control)."""
    r = CliRunner().invoke(app, ["membership", "llm", "--model", str(tmp_path / "nope"), "--members",
                                 "a", "--nonmembers", "b", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "is now" not in r.output and "nope" in r.output
    r = CliRunner().invoke(app, ["invert", "--endpoint", "http://127.0.0.1:9/", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "is now" not in r.output and "--input-shape" in r.output


def test_warnings_stay_on_one_line_when_not_a_terminal(tiny_model_dir, inputs, tmp_path):
    corpus, _ = inputs
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-c", "from leakaudit.cli import main; main()",
           "extract", "--model", str(tiny_model_dir), "--corpus", str(corpus),
           "--out", str(tmp_path / "out"), "--samples", "2", "--new-tokens", "8"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert ("warning: no reference model given: the reference-ratio ranking is skipped; precision "
            "is typically lower without it") in proc.stderr


def test_sigterm_inside_an_import_still_exits_143(monkeypatch):
    # A SIGTERM that lands inside a dataclass __set_name__ hook (e.g. while rich.progress is being
    # imported) reaches the top as RuntimeError; main() must still exit with 128 + SIGTERM.
    import leakaudit.cli as cli

    def wrapped(**kwargs):
        try:
            cli._terminate(signal.SIGTERM, None)
        except SystemExit as e:
            raise RuntimeError("Error calling __set_name__") from e

    monkeypatch.setattr(cli, "app", wrapped)
    monkeypatch.setattr(cli._clikit, "_terminated_by", None)
    with pytest.raises(SystemExit) as exc:
        cli.main()
    assert exc.value.code == 128 + signal.SIGTERM


def test_main_reraises_ordinary_errors(monkeypatch):
    import leakaudit.cli as cli

    def broken(**kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(cli, "app", broken)
    monkeypatch.setattr(cli._clikit, "_terminated_by", None)
    with pytest.raises(RuntimeError, match="boom"):
        cli.main()
