"""A table of bad inputs, tried as a hostile tester would, across every command.

Each case asserts: exit status 2, exactly one output line ``error: …`` naming the problem, no
traceback, nothing written (the ``--out`` folder does not appear; an existing file is untouched).
Almost every case fails before a model is loaded, so the table stays fast.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from leakaudit.cli import app


@pytest.fixture(scope="module")
def bad(tiny_model_dir, tmp_path_factory):
    """Every file the cases refer to, by name."""
    d = tmp_path_factory.mktemp("bad_inputs")
    p: dict[str, Path] = {"model": Path(tiny_model_dir), "d": d}

    def w(name, text=None, data=None):
        f = d / name
        f.parent.mkdir(parents=True, exist_ok=True)
        if data is not None:
            f.write_bytes(data)
        else:
            f.write_text(text, encoding="utf-8")
        p[name.replace(".", "_").replace("/", "_")] = f
        return f

    texts = ["Dear customer, your order has shipped to you today.",
             "Meeting notes: budget review on Friday with everyone.",
             "Server log: disk usage at 91 percent on host db-02."]
    w("corpus.jsonl", "".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(texts)))
    w("empty.jsonl", "")
    w("badjson.jsonl", '{"text": "ok"}\n{"text": \n')
    w("notext.jsonl", '{"body": "x"}\n')
    w("textint.jsonl", '{"text": 5}\n')
    w("binary.jsonl", data=b"\x00\xff\xfe\x00" * 10)
    w("short.txt", "hi\n")
    (d / "emptydir").mkdir()
    p["emptydir"] = d / "emptydir"
    w("outfile", "I am a file")
    # models
    trunc = d / "trunc_model"
    shutil.copytree(tiny_model_dir, trunc)
    st = (trunc / "model.safetensors").read_bytes()
    (trunc / "model.safetensors").write_bytes(st[: len(st) // 2])
    p["trunc_model"] = trunc
    pick = d / "pickle_model"
    shutil.copytree(tiny_model_dir, pick)
    (pick / "model.safetensors").unlink()
    (pick / "pytorch_model.bin").write_bytes(b"PK\x03\x04 pretend pickle zip")
    p["pickle_model"] = pick
    badcfg = d / "badcfg_model"
    shutil.copytree(tiny_model_dir, badcfg)
    (badcfg / "config.json").write_text("{")
    p["badcfg_model"] = badcfg
    # membership score files
    rows = lambda vals: "".join(json.dumps(r) + "\n" for r in vals)  # noqa: E731
    ok = [{"member": i % 2, "score": float(i)} for i in range(10)]
    w("s_half.jsonl", rows(ok[:3] + [{"member": 0.5, "score": 1.0}]))
    w("s_17.jsonl", rows(ok[:3] + [{"member": 1.7, "score": 1.0}]))
    w("s_nan.jsonl", rows(ok[:3]) + '{"member": 1, "score": NaN}\n')
    w("s_str.jsonl", rows(ok[:3] + [{"member": 1, "score": "high"}]))
    w("s_noscore.jsonl", rows([{"member": 1}]))
    w("s_onlymembers.jsonl", rows([{"member": 1, "score": float(i)} for i in range(5)]))
    w("s_onenon.jsonl", rows([{"member": 1, "score": float(i)} for i in range(5)] + [{"member": 0, "score": 0.0}]))
    w("s_negprob.jsonl", rows([{"member": i % 2, "label": 0, "probs": [-0.2, 1.2]} for i in range(4)]))
    w("s_floatlabel.jsonl", rows([{"member": i % 2, "label": 0.5, "probs": [0.5, 0.5]} for i in range(4)]))
    w("s_labelrange.jsonl", rows([{"member": i % 2, "label": 3, "probs": [0.5, 0.5]} for i in range(4)]))
    w("s_list.jsonl", "[1, 2]\n")
    w("s.txt", "member,score\n1,0.5\n")
    w("s_badcsv.csv", "member,score\n1,0.5\n0,abc\n")
    w("s_[b]x.jsonl", rows(ok[:3] + [{"member": 0.5, "score": 1.0}]))
    # npz data
    def npz(name, **arrs):
        f = d / name
        np.savez(f, **arrs)
        p[name.replace(".", "_")] = f

    x = np.random.default_rng(0).random((6, 4)).astype(np.float32)
    y = np.array([0, 1, 0, 1, 0, 1])
    npz("data_ok.npz", x_members=x, y_members=y, x_nonmembers=x, y_nonmembers=y)
    npz("data_missing.npz", x_members=x, y_members=y)
    xn = x.copy()
    xn[0, 0] = np.nan
    npz("data_nan.npz", x_members=xn, y_members=y, x_nonmembers=x, y_nonmembers=y)
    npz("data_yrange.npz", x_members=x, y_members=y + 7, x_nonmembers=x, y_nonmembers=y)
    npz("data_yfloat.npz", x_members=x, y_members=y + 0.5, x_nonmembers=x, y_nonmembers=y)
    npz("ref_nan.npz", x=xn, y=y)
    w("notnpz.npz", "not a zip")
    # a classifier folder
    from leakaudit.training.classifier import MLPSpec, build_mlp, save_classifier

    spec = MLPSpec(input_dim=4, hidden=(4,), n_classes=2)
    clf = d / "clf"
    save_classifier(build_mlp(spec), spec, clf)
    p["clf"] = clf
    clf_trunc = d / "clf_trunc"
    shutil.copytree(clf, clf_trunc)
    data = (clf_trunc / "model.safetensors").read_bytes()
    (clf_trunc / "model.safetensors").write_bytes(data[:20])
    p["clf_trunc"] = clf_trunc
    clf_pickle = d / "clf_pickle"
    shutil.copytree(clf, clf_pickle)
    (clf_pickle / "model.safetensors").unlink()
    (clf_pickle / "model.pt").write_bytes(b"pickle")
    p["clf_pickle"] = clf_pickle
    # canary manifests
    w("man_bad.json", '{"canaries": [\n')
    w("man_list.json", "[1, 2]")
    w("man_none.json", '{"canaries": []}')
    w("man_fields.json", json.dumps({"canaries": [{"id": "c0"}]}))
    # report folders
    def report(name, lines):
        f = d / name
        f.mkdir(parents=True)
        (f / "report.jsonl").write_text("".join(
            (ln if isinstance(ln, str) else json.dumps(ln)) + "\n" for ln in lines))
        p[name] = f

    run = {"entry_type": "run", "command": "x", "models": {}, "config": {}}
    report("rep_badline", [run, "{not json"])
    report("rep_norun", [{"entry_type": "summary"}])
    report("rep_types", [run, {"entry_type": "summary", "n_samples": "many", "best": "x"},
                         {"entry_type": 5, "scores": "no", "text": 5}])
    report("rep_notobj", [run, "[1, 2]"])
    report("rep_[/]key", [run, {"entry_type": "eval", "[/]": 1, "precision": "[/]"}])
    report("rep_piilist", [run, {"entry_type": "pii", "counts": [1, 2], "scope": "verified"}])
    # third-wave inputs
    e = np.zeros((0, 4), np.float32)
    npz("data_empty.npz", x_members=e, y_members=np.zeros(0, np.int64), x_nonmembers=e,
        y_nonmembers=np.zeros(0, np.int64))
    npz("data_onenon.npz", x_members=x, y_members=y, x_nonmembers=x[:1], y_nonmembers=y[:1])
    w("nothing.npz", data=b"")
    w("one.jsonl", json.dumps({"id": "z", "text": "A single held out document about the weather."}) + "\n")
    # the user's own files where a single-file output or a per-method folder goes
    mine = b"the user's own file\n\x00\xff"
    for name in FOREIGN:
        w(name, data=mine)
    report("rep_foreign", [run])
    for name in ("report.html", "report.sarif", "junit.xml"):
        (d / "rep_foreign" / name).write_bytes(mine)
    return p


#: the user's files (relative to the fixture folder) that the "foreign-*" cases must leave
#: byte-identical
FOREIGN = ("foreign/t.json", "foreign/t.html", "foreign/m.gguf", "foreign/ledger.sqlite",
           "unl/ga/config.json", "unl/npo/config.json", "unl/oracle/config.json",
           "unl/sisa/config.json", "unl/sisa-before/shard-0/config.json", "mlab/junit.xml")


# (id, argv, text the error line must contain). {name} refers to a fixture path; {out} is a
# fresh output path that must not exist afterwards.
CASES = [
    # --- the output location, checked first
    ("extract-out-is-file", ["extract", "--model", "{model}", "--out", "{outfile}"], "--out is a file"),
    ("memorization-out-is-file", ["memorization", "--model", "{model}", "--corpus", "{corpus_jsonl}", "--out", "{outfile}"], "--out is a file"),
    ("membership-out-is-file", ["membership", "scores", "{s_half_jsonl}", "--out", "{outfile}"], "--out is a file"),
    ("canaries-out-is-file", ["canaries", "insert", "--corpus", "{corpus_jsonl}", "--template", "a {secret}", "--space", "ssn", "--out", "{outfile}"], "--out is a file"),
    ("exposure-out-is-file", ["canaries", "exposure", "--model", "{model}", "--manifest", "{man_bad_json}", "--out", "{outfile}"], "--out is a file"),
    ("invert-out-is-file", ["invert", "{clf}", "--out", "{outfile}"], "--out is a file"),
    ("lab-out-is-file", ["lab", "--out", "{outfile}"], "--out is a file"),
    ("extract-out-under-file", ["extract", "--model", "{model}", "--out", "{outfile}/sub"], "is a file"),
    ("memorization-out-under-file", ["memorization", "--model", "{model}", "--corpus", "{corpus_jsonl}", "--out", "{outfile}/sub"], "is a file"),
    ("membership-out-under-file", ["membership", "scores", "{s_half_jsonl}", "--out", "{outfile}/sub"], "is a file"),
    ("lab-out-under-file", ["lab", "--out", "{outfile}/sub"], "is a file"),
    ("canaries-out-is-input", ["canaries", "insert", "--corpus", "{corpus_jsonl}", "--template", "a {secret}", "--space", "ssn", "--out", "{d}"], "would overwrite its own input"),
    # --- models
    ("extract-truncated-safetensors", ["extract", "--model", "{trunc_model}", "--out", "{out}"], "model.safetensors"),
    ("extract-pickle-only", ["extract", "--model", "{pickle_model}", "--out", "{out}"], "pickle"),
    ("memorization-pickle-only", ["memorization", "--model", "{pickle_model}", "--corpus", "{corpus_jsonl}", "--out", "{out}"], "pickle"),
    ("extract-bad-config", ["extract", "--model", "{badcfg_model}", "--out", "{out}"], "config.json"),
    ("extract-empty-model-dir", ["extract", "--model", "{emptydir}", "--out", "{out}"], "emptydir"),
    ("extract-missing-model", ["extract", "--model", "{d}/nope", "--out", "{out}"], "nope"),
    ("extract-missing-reference", ["extract", "--model", "{model}", "--reference", "{d}/nope", "--out", "{out}"], "nope"),
    ("extract-reference-pickle", ["extract", "--model", "{model}", "--reference", "{pickle_model}", "--out", "{out}"], "pickle"),
    ("exposure-truncated-model", ["canaries", "exposure", "--model", "{trunc_model}", "--manifest", "{man_fields_json}", "--out", "{out}"], "model.safetensors"),
    ("membership-truncated-model", ["membership", "llm", "--model", "{trunc_model}", "--members", "{corpus_jsonl}", "--nonmembers", "{corpus_jsonl}", "--out", "{out}"], "model.safetensors"),
    ("classifier-truncated", ["membership", "classifier", "{clf_trunc}", "--data", "{data_ok_npz}", "--out", "{out}"], "model.safetensors"),
    ("classifier-pickle-only", ["membership", "classifier", "{clf_pickle}", "--data", "{data_ok_npz}", "--out", "{out}"], "pickle"),
    ("invert-truncated", ["invert", "{clf_trunc}", "--out", "{out}"], "model.safetensors"),
    ("invert-not-a-classifier", ["invert", "{emptydir}", "--out", "{out}"], "classifier.json"),
    # --- devices
    ("extract-device-gpu", ["extract", "--model", "{model}", "--device", "gpu", "--out", "{out}"], "--device"),
    ("extract-device-cuda-typo", ["extract", "--model", "{model}", "--device", "cdua", "--out", "{out}"], "--device"),
    ("memorization-device-typo", ["memorization", "--model", "{model}", "--corpus", "{corpus_jsonl}", "--device", "cpu0", "--out", "{out}"], "--device"),
    ("membership-device-typo", ["membership", "llm", "--model", "{model}", "--members", "{corpus_jsonl}", "--nonmembers", "{corpus_jsonl}", "--device", "CPU!", "--out", "{out}"], "--device"),
    ("exposure-device-typo", ["canaries", "exposure", "--model", "{model}", "--manifest", "{man_fields_json}", "--device", "tpu", "--out", "{out}"], "--device"),
    # --- corpora
    ("extract-missing-corpus", ["extract", "--model", "{model}", "--corpus", "{d}/none.jsonl", "--out", "{out}"], "none.jsonl"),
    ("extract-empty-corpus", ["extract", "--model", "{model}", "--corpus", "{empty_jsonl}", "--out", "{out}"], "empty.jsonl"),
    ("extract-corpus-bad-json", ["extract", "--model", "{model}", "--corpus", "{badjson_jsonl}", "--out", "{out}"], "badjson.jsonl:2"),
    ("extract-corpus-no-text-field", ["extract", "--model", "{model}", "--corpus", "{notext_jsonl}", "--out", "{out}"], "notext.jsonl"),
    ("extract-corpus-text-not-string", ["extract", "--model", "{model}", "--corpus", "{textint_jsonl}", "--out", "{out}"], "textint.jsonl"),
    ("extract-corpus-binary", ["extract", "--model", "{model}", "--corpus", "{binary_jsonl}", "--out", "{out}"], "binary.jsonl"),
    ("extract-corpus-empty-dir", ["extract", "--model", "{model}", "--corpus", "{emptydir}", "--out", "{out}"], "emptydir"),
    ("extract-markup-in-path", ["extract", "--model", "{model}", "--corpus", "{d}/[/]x.jsonl", "--out", "{out}"], "[/]x.jsonl"),
    ("extract-bold-in-path", ["extract", "--model", "{model}", "--corpus", "{d}/[b]x.jsonl", "--out", "{out}"], "[b]x.jsonl"),
    ("extract-markup-text-field", ["extract", "--model", "{model}", "--corpus", "{corpus_jsonl}", "--text-field", "[/]", "--out", "{out}"], "[/]"),
    ("memorization-empty-corpus", ["memorization", "--model", "{model}", "--corpus", "{empty_jsonl}", "--out", "{out}"], "empty.jsonl"),
    # --- extract options
    ("extract-unknown-sampler", ["extract", "--model", "{model}", "--sampler", "topk", "--out", "{out}"], "topk"),
    ("extract-internet-no-prompts", ["extract", "--model", "{model}", "--sampler", "internet", "--out", "{out}"], "--prompts"),
    ("extract-prompts-too-short", ["extract", "--model", "{model}", "--prompts", "{short_txt}", "--out", "{out}"], "short.txt"),
    ("extract-samples-zero", ["extract", "--model", "{model}", "--samples", "0", "--out", "{out}"], "--samples"),
    ("extract-new-tokens-text", ["extract", "--model", "{model}", "--new-tokens", "many", "--out", "{out}"], "--new-tokens"),
    ("extract-unknown-option", ["extract", "--model", "{model}", "--smaples", "3", "--out", "{out}"], "--smaples"),
    # --- memorization options
    ("memorization-prefix-text", ["memorization", "--model", "{model}", "--corpus", "{corpus_jsonl}", "--prefix", "a", "--out", "{out}"], "--prefix"),
    ("memorization-prefix-zero", ["memorization", "--model", "{model}", "--corpus", "{corpus_jsonl}", "--prefix", "0", "--out", "{out}"], "--prefix"),
    ("memorization-unknown-preset", ["memorization", "--model", "{model}", "--corpus", "{corpus_jsonl}", "--preset", "gpt5", "--out", "{out}"], "gpt5"),
    ("memorization-suffix-zero", ["memorization", "--model", "{model}", "--corpus", "{corpus_jsonl}", "--suffix", "0", "--out", "{out}"], "--suffix"),
    # --- membership
    ("membership-no-mode", ["membership", "--out", "{out}"], "No such option: --out"),
    ("membership-two-old-modes", ["membership", "--lab", "--scores", "{s_half_jsonl}", "--out", "{out}"], "is now 'leakaudit membership lab'"),
    ("membership-scores-cluster", ["membership", "scores", "{s_half_jsonl}", "--cluster", "local", "--out", "{out}"], "--cluster"),
    ("membership-lab-cluster", ["membership", "lab", "--cluster", "local", "--out", "{out}"], "--cluster"),
    ("membership-scores-two-files", ["membership", "scores", "{s_half_jsonl}", "{s_17_jsonl}", "--out", "{out}"], "unexpected extra argument"),
    ("membership-k-zero", ["membership", "llm", "--model", "{model}", "--members", "{corpus_jsonl}", "--nonmembers", "{corpus_jsonl}", "--k", "0", "--out", "{out}"], "--k"),
    ("membership-k-big", ["membership", "llm", "--model", "{model}", "--members", "{corpus_jsonl}", "--nonmembers", "{corpus_jsonl}", "--k", "1.5", "--out", "{out}"], "--k"),
    ("membership-fpr-zero", ["membership", "llm", "--model", "{model}", "--members", "{corpus_jsonl}", "--nonmembers", "{corpus_jsonl}", "--fpr", "0", "--out", "{out}"], "--fpr must be in (0, 1)"),
    ("membership-fpr-one", ["membership", "llm", "--model", "{model}", "--members", "{corpus_jsonl}", "--nonmembers", "{corpus_jsonl}", "--fpr", "0.01", "--fpr", "1", "--out", "{out}"], "--fpr must be in (0, 1)"),
    ("membership-fpr-nan", ["membership", "scores", "{s_half_jsonl}", "--fpr", "nan", "--out", "{out}"], "--fpr must be in (0, 1)"),
    ("membership-no-members", ["membership", "llm", "--model", "{model}", "--out", "{out}"], "--members"),
    ("membership-member-half", ["membership", "scores", "{s_half_jsonl}", "--out", "{out}"], "s_half.jsonl:4: member must be 0 or 1"),
    ("membership-member-1.7", ["membership", "scores", "{s_17_jsonl}", "--out", "{out}"], "s_17.jsonl:4: member must be 0 or 1"),
    ("membership-score-nan", ["membership", "scores", "{s_nan_jsonl}", "--out", "{out}"], "s_nan.jsonl:4"),
    ("membership-score-string", ["membership", "scores", "{s_str_jsonl}", "--out", "{out}"], "s_str.jsonl:4"),
    ("membership-no-score", ["membership", "scores", "{s_noscore_jsonl}", "--out", "{out}"], "s_noscore.jsonl:1"),
    ("membership-only-members", ["membership", "scores", "{s_onlymembers_jsonl}", "--out", "{out}"], "non-members"),
    ("membership-one-nonmember", ["membership", "scores", "{s_onenon_jsonl}", "--out", "{out}"], "non-member"),
    ("membership-negative-probs", ["membership", "scores", "{s_negprob_jsonl}", "--out", "{out}"], "s_negprob.jsonl:1"),
    ("membership-float-label", ["membership", "scores", "{s_floatlabel_jsonl}", "--out", "{out}"], "s_floatlabel.jsonl:1"),
    ("membership-label-range", ["membership", "scores", "{s_labelrange_jsonl}", "--out", "{out}"], "s_labelrange.jsonl:1"),
    ("membership-row-not-object", ["membership", "scores", "{s_list_jsonl}", "--out", "{out}"], "s_list.jsonl:1"),
    ("membership-unknown-format", ["membership", "scores", "{s_txt}", "--out", "{out}"], "s.txt"),
    ("membership-csv-bad-number", ["membership", "scores", "{s_badcsv_csv}", "--out", "{out}"], "s_badcsv.csv:3"),
    ("membership-bold-in-file-name", ["membership", "scores", "{s_[b]x_jsonl}", "--out", "{out}"], "s_[b]x.jsonl:4"),
    ("membership-missing-scores", ["membership", "scores", "{d}/nope.csv", "--out", "{out}"], "nope.csv"),
    ("classifier-no-data", ["membership", "classifier", "{clf}", "--out", "{out}"], "--data"),
    ("classifier-data-missing-arrays", ["membership", "classifier", "{clf}", "--data", "{data_missing_npz}", "--out", "{out}"], "x_nonmembers"),
    ("classifier-data-nan", ["membership", "classifier", "{clf}", "--data", "{data_nan_npz}", "--out", "{out}"], "x_members"),
    ("classifier-data-label-range", ["membership", "classifier", "{clf}", "--data", "{data_yrange_npz}", "--out", "{out}"], "y_members"),
    ("classifier-data-float-labels", ["membership", "classifier", "{clf}", "--data", "{data_yfloat_npz}", "--out", "{out}"], "y_members"),
    ("classifier-data-not-npz", ["membership", "classifier", "{clf}", "--data", "{notnpz_npz}", "--out", "{out}"], "notnpz.npz"),
    ("classifier-shadows-too-few", ["membership", "classifier", "{clf}", "--data", "{data_ok_npz}", "--shadows", "2", "--out", "{out}"], "--shadows"),
    # --- invert
    ("invert-clip-reversed", ["invert", "{clf}", "--clip", "1,0", "--out", "{out}"], "--clip"),
    ("invert-clip-text", ["invert", "{clf}", "--clip", "a,b", "--out", "{out}"], "--clip"),
    ("invert-classes-text", ["invert", "{clf}", "--classes", "x", "--out", "{out}"], "--classes"),
    ("invert-classes-range", ["invert", "{clf}", "--classes", "9", "--out", "{out}"], "--classes"),
    ("invert-endpoint-no-shape", ["invert", "--endpoint", "http://127.0.0.1:9/x", "--out", "{out}"], "--input-shape"),
    ("invert-bad-shape", ["invert", "--endpoint", "http://127.0.0.1:9/x", "--input-shape", "0", "--n-classes", "2", "--out", "{out}"], "--input-shape"),
    ("invert-image-shape-3d", ["invert", "{clf}", "--image-shape", "2x2x1", "--out", "{out}"], "--image-shape"),
    ("invert-reference-nan", ["invert", "{clf}", "--reference-data", "{ref_nan_npz}", "--out", "{out}"], "ref_nan.npz"),
    ("invert-unknown-attack", ["invert", "{clf}", "--attack", "mi-face", "--out", "{out}"], "mi-face"),
    ("invert-both-targets", ["invert", "{clf}", "--endpoint", "http://127.0.0.1:9/x", "--out", "{out}"], "either"),
    # --- canaries
    ("canaries-no-placeholder", ["canaries", "insert", "--corpus", "{corpus_jsonl}", "--template", "no secret", "--space", "ssn", "--out", "{out}"], "{secret}"),
    ("canaries-mistyped-space", ["canaries", "insert", "--corpus", "{corpus_jsonl}", "--template", "a {secret}", "--space", "snn", "--out", "{out}"], "snn"),
    ("canaries-mistyped-space-weak-pattern", ["canaries", "insert", "--corpus", "{corpus_jsonl}", "--template", "a {secret}", "--space", "phnoe", "--out", "{out}"], "did you mean phone"),
    ("canaries-space-count", ["canaries", "insert", "--corpus", "{corpus_jsonl}", "--template", "a {secret}", "--template", "b {secret}", "--template", "c {secret}", "--space", "ssn", "--space", "phone", "--out", "{out}"], "--space"),
    ("canaries-repeats-zero", ["canaries", "insert", "--corpus", "{corpus_jsonl}", "--template", "a {secret}", "--space", "ssn", "--repeats", "0", "--out", "{out}"], "--repeats"),
    ("canaries-repeats-text", ["canaries", "insert", "--corpus", "{corpus_jsonl}", "--template", "a {secret}", "--space", "ssn", "--repeats", "x", "--out", "{out}"], "--repeats"),
    ("exposure-manifest-bad-json", ["canaries", "exposure", "--model", "{model}", "--manifest", "{man_bad_json}", "--out", "{out}"], "man_bad.json:2"),
    ("exposure-manifest-list", ["canaries", "exposure", "--model", "{model}", "--manifest", "{man_list_json}", "--out", "{out}"], "man_list.json"),
    ("exposure-manifest-empty", ["canaries", "exposure", "--model", "{model}", "--manifest", "{man_none_json}", "--out", "{out}"], "man_none.json"),
    ("exposure-manifest-fields", ["canaries", "exposure", "--model", "{model}", "--manifest", "{man_fields_json}", "--out", "{out}"], "man_fields.json"),
    ("exposure-missing-manifest", ["canaries", "exposure", "--model", "{model}", "--manifest", "{d}/none.json", "--out", "{out}"], "none.json"),
    ("exposure-references-few", ["canaries", "exposure", "--model", "{model}", "--manifest", "{man_fields_json}", "--references", "3", "--out", "{out}"], "--references"),
    # --- report
    ("report-no-report", ["report", "{emptydir}"], "report.jsonl"),
    ("report-missing-dir", ["report", "{d}/nodir"], "nodir"),
    ("report-bad-line", ["report", "{rep_badline}"], "report.jsonl:2"),
    ("report-no-run", ["report", "{rep_norun}"], "run record"),
    ("report-entry-type-not-string", ["report", "{rep_types}"], "report.jsonl:3: entry_type"),
    ("report-line-not-object", ["report", "{rep_notobj}"], "report.jsonl:2"),
    ("report-pii-counts-list", ["report", "{rep_piilist}"], "the pii records do not have the shape leakaudit writes"),
    # --- issue 26: tracebacks and silent results of the third wave
    ("canaries-template-globals", ["canaries", "insert", "--corpus", "{corpus_jsonl}", "--template", "x {secret.__class__.__init__.__globals__} {secret}", "--space", "ssn", "--out", "{out}"], "only the field {secret} is allowed, not {secret.__class__.__init__.__globals__}"),
    ("canaries-template-class", ["canaries", "insert", "--corpus", "{corpus_jsonl}", "--template", "x {secret.__class__}", "--space", "ssn", "--out", "{out}"], "not {secret.__class__}"),
    ("canaries-template-index", ["canaries", "insert", "--corpus", "{corpus_jsonl}", "--template", "x {secret[0]}", "--space", "ssn", "--out", "{out}"], "not {secret[0]}"),
    ("canaries-template-other-field", ["canaries", "insert", "--corpus", "{corpus_jsonl}", "--template", "x {secret} {name}", "--space", "ssn", "--out", "{out}"], "not {name}"),
    ("invert-huge-shape", ["invert", "--endpoint", "http://127.0.0.1:9/x", "--input-shape", "1000000x1000000", "--n-classes", "2", "--out", "{out}"], "1,000,000,000,000 values per input"),
    ("invert-huge-shape-overflow", ["invert", "--endpoint", "http://127.0.0.1:9/x", "--input-shape", "99999999999999999999", "--n-classes", "2", "--out", "{out}"], "--input-shape"),
    ("invert-negative-shape", ["invert", "--endpoint", "http://127.0.0.1:9/x", "--input-shape=-5", "--n-classes", "2", "--out", "{out}"], "--input-shape"),
    ("classifier-data-empty", ["membership", "classifier", "{clf}", "--data", "{data_empty_npz}", "--out", "{out}"], "x_members holds 0 records"),
    ("classifier-data-one-nonmember", ["membership", "classifier", "{clf}", "--data", "{data_onenon_npz}", "--out", "{out}"], "x_nonmembers holds 1 records"),
    ("classifier-data-empty-file", ["membership", "classifier", "{clf}", "--data", "{nothing_npz}", "--out", "{out}"], "nothing.npz: not a plain numeric .npz"),
    ("membership-llm-one-nonmember", ["membership", "llm", "--model", "{model}", "--members", "{corpus_jsonl}", "--nonmembers", "{one_jsonl}", "--out", "{out}"], "one.jsonl: 1 non-member"),
    ("extract-fail-on-deep", ["extract", "--model", "{model}", "--fail-on", "(" * 1000 + "extraction.verified > 0" + ")" * 1000, "--out", "{out}"], "nest more than 32 deep"),
    # --- second- and third-wave commands: endpoint, defend, compare, unlearn, verify-erasure,
    # output-filter, dp-audit, triage, list, membership subcommands
    ("endpoint-audit-out-is-file", ["endpoint", "audit", "openai-completions:http://127.0.0.1:9/v1", "--out", "{outfile}"], "--out is a file"),
    ("endpoint-audit-out-under-file", ["endpoint", "audit", "openai-completions:http://127.0.0.1:9/v1", "--out", "{outfile}/sub"], "is a file"),
    ("endpoint-audit-unknown-scheme", ["endpoint", "audit", "openai-complete:http://127.0.0.1:9/v1", "--out", "{out}"], "openai-complete"),
    ("endpoint-audit-missing-corpus", ["endpoint", "audit", "openai-completions:http://127.0.0.1:9/v1", "--corpus", "{d}/none.jsonl", "--out", "{out}"], "none.jsonl"),
    ("endpoint-audit-bad-corpus", ["endpoint", "audit", "openai-completions:http://127.0.0.1:9/v1", "--corpus", "{badjson_jsonl}", "--out", "{out}"], "badjson.jsonl:2"),
    ("endpoint-audit-target-scores", ["endpoint", "audit", "openai-completions:http://127.0.0.1:9/v1", "--target-scores", "logits", "--out", "{out}"], "--target-scores"),
    ("endpoint-audit-missing-reference", ["endpoint", "audit", "openai-completions:http://127.0.0.1:9/v1", "--reference", "{d}/nope", "--out", "{out}"], "nope"),
    ("endpoint-audit-one-nonmember", ["endpoint", "audit", "openai-completions:http://127.0.0.1:9/v1", "--corpus", "{corpus_jsonl}", "--nonmembers", "{one_jsonl}", "--out", "{out}"], "one.jsonl: 1 non-member; membership inference needs at least 2"),
    ("endpoint-audit-samples-zero", ["endpoint", "audit", "openai-completions:http://127.0.0.1:9/v1", "--samples", "0", "--out", "{out}"], "--samples"),
    ("endpoint-export-gguf-missing-model", ["endpoint", "export-gguf", "{d}/nope", "{out}"], "nope"),
    ("endpoint-export-gguf-empty-dir", ["endpoint", "export-gguf", "{emptydir}", "{out}"], "emptydir"),
    ("endpoint-export-gguf-under-file", ["endpoint", "export-gguf", "{model}", "{outfile}/m.gguf"], "is a file, not a folder"),
    ("endpoint-export-gguf-into-folder", ["endpoint", "export-gguf", "{model}", "{emptydir}"], "is a folder, not a file"),
    ("defend-unknown-subcommand", ["defend", "dedupe"], "dedupe"),
    ("defend-dedup-missing-corpus", ["defend", "dedup", "{d}/none.jsonl", "--out", "{out}"], "none.jsonl"),
    ("defend-dedup-empty-corpus", ["defend", "dedup", "{empty_jsonl}", "--out", "{out}"], "empty.jsonl"),
    ("defend-dedup-out-is-file", ["defend", "dedup", "{corpus_jsonl}", "--out", "{outfile}"], "--out is a file"),
    ("defend-dedup-bad-method", ["defend", "dedup", "{corpus_jsonl}", "--method", "fuzzy", "--out", "{out}"], "fuzzy"),
    ("defend-scrub-bad-json", ["defend", "scrub", "{badjson_jsonl}", "--out", "{out}"], "badjson.jsonl:2"),
    ("defend-scrub-binary", ["defend", "scrub", "{binary_jsonl}", "--out", "{out}"], "binary.jsonl"),
    ("defend-dp-train-missing-corpus", ["defend", "dp-train", "{d}/none.jsonl", "--epsilon", "8", "--out", "{out}"], "none.jsonl"),
    ("defend-capacity-missing-corpus", ["defend", "capacity", "{d}/none.jsonl", "--width", "16", "--out", "{out}"], "none.jsonl"),
    ("compare-missing-model", ["compare", "--model", "a={d}/nope", "--corpus", "{corpus_jsonl}", "--heldout", "{corpus_jsonl}", "--out", "{out}"], "nope"),
    ("compare-missing-heldout", ["compare", "--model", "a={model}", "--corpus", "{corpus_jsonl}", "--heldout", "{d}/none.jsonl", "--out", "{out}"], "none.jsonl"),
    ("compare-out-is-file", ["compare", "--model", "a={model}", "--corpus", "{corpus_jsonl}", "--heldout", "{corpus_jsonl}", "--out", "{outfile}"], "--out is a file"),
    ("unlearn-missing-model", ["unlearn", "--model", "{d}/nope", "--corpus", "{corpus_jsonl}", "--forget-match", "order", "--out", "{out}"], "nope"),
    ("unlearn-unknown-method", ["unlearn", "--model", "{model}", "--corpus", "{corpus_jsonl}", "--forget-match", "order", "--methods", "ga,retrain", "--out", "{out}"], "retrain"),
    ("unlearn-missing-corpus", ["unlearn", "--model", "{model}", "--corpus", "{d}/none.jsonl", "--forget-match", "order", "--out", "{out}"], "none.jsonl"),
    ("unlearn-out-is-file", ["unlearn", "--model", "{model}", "--corpus", "{corpus_jsonl}", "--forget-match", "order", "--out", "{outfile}"], "--out is a file"),
    ("verify-erasure-not-an-unlearn-folder", ["verify-erasure", "{emptydir}", "--heldout", "{corpus_jsonl}", "--out", "{out}"], "emptydir"),
    ("verify-erasure-missing-folder", ["verify-erasure", "{d}/nope", "--heldout", "{corpus_jsonl}", "--out", "{out}"], "nope"),
    ("output-filter-missing-model", ["output-filter", "--model", "{d}/nope", "--corpus", "{corpus_jsonl}", "--out", "{out}"], "nope"),
    ("output-filter-bad-corpus", ["output-filter", "--model", "{model}", "--corpus", "{badjson_jsonl}", "--out", "{out}"], "badjson.jsonl:2"),
    ("output-filter-bad-manifest", ["output-filter", "--model", "{model}", "--corpus", "{corpus_jsonl}", "--manifest", "{man_list_json}", "--out", "{out}"], "man_list.json"),
    ("output-filter-unknown-style", ["output-filter", "--model", "{model}", "--corpus", "{corpus_jsonl}", "--styles", "plain,leet", "--out", "{out}"], "leet"),
    ("output-filter-manifest-no-canaries", ["output-filter", "--model", "{model}", "--corpus", "{corpus_jsonl}", "--manifest", "{man_none_json}", "--out", "{out}"], "man_none.json: the manifest has no canaries"),
    ("output-filter-out-is-file", ["output-filter", "--model", "{model}", "--corpus", "{corpus_jsonl}", "--out", "{outfile}"], "--out is a file"),
    ("dp-audit-unknown-mode", ["dp-audit", "--mode", "two-run", "--out", "{out}"], "two-run"),
    ("dp-audit-unknown-world", ["dp-audit", "--world", "image", "--out", "{out}"], "image"),
    ("dp-audit-confidence", ["dp-audit", "--confidence", "1.5", "--out", "{out}"], "confidence must be in (0, 1)"),
    ("dp-audit-out-is-file", ["dp-audit", "--out", "{outfile}"], "--out is a file"),
    ("triage-nothing", ["triage"], "give a profile"),
    ("triage-unknown-example", ["triage", "--example", "Z"], "Z"),
    ("triage-missing-profile", ["triage", "{d}/none.toml"], "none.toml"),
    ("triage-bad-profile", ["triage", "{badjson_jsonl}"], "badjson.jsonl"),
    ("triage-json-under-file", ["triage", "--example", "A", "--json", "{outfile}/t.json"], "is a file, not a folder"),
    ("triage-html-is-folder", ["triage", "--example", "A", "--html", "{emptydir}"], "is a folder, not a file"),
    ("list-unknown-kind", ["list", "atacks"], "atacks"),
    # --- single-file outputs and unlearn's per-method folders over the user's own files
    ("foreign-triage-json", ["triage", "--example", "A", "--json", "{d}/foreign/t.json"], "t.json: exists and was not written by leakaudit; to replace it run 'leakaudit --overwrite"),
    ("foreign-triage-html", ["triage", "--example", "B", "--html", "{d}/foreign/t.html"], "t.html: exists and was not written by leakaudit"),
    ("foreign-export-gguf", ["endpoint", "export-gguf", "{model}", "{d}/foreign/m.gguf"], "m.gguf: exists and was not written by leakaudit"),
    ("foreign-probe-ledger", ["endpoint", "probe", "openai-completions:http://127.0.0.1:9/v1", "--ledger", "{d}/foreign/ledger.sqlite"], "ledger.sqlite: exists and was not written by leakaudit"),
    ("foreign-report-html", ["report", "{rep_foreign}"], "report.html: exists and was not written by leakaudit"),
    ("foreign-report-sarif", ["report", "{rep_foreign}", "--format", "sarif"], "report.sarif: exists and was not written by leakaudit"),
    ("foreign-report-junit", ["report", "{rep_foreign}", "--format", "junit", "--fail-on", "extraction.verified > 0"], "junit.xml: exists and was not written by leakaudit"),
    ("foreign-membership-lab-junit", ["membership", "lab", "--format", "junit", "--out", "{d}/mlab"], "junit.xml: exists and was not written by leakaudit"),
    ("foreign-unlearn-ga", ["unlearn", "--model", "{model}", "--corpus", "{corpus_jsonl}", "--forget-match", "order", "--methods", "ga", "--out", "{d}/unl"], "ga: exists and was not written by leakaudit (it holds ga/config.json)"),
    ("foreign-unlearn-npo", ["unlearn", "--model", "{model}", "--corpus", "{corpus_jsonl}", "--forget-match", "order", "--methods", "npo", "--out", "{d}/unl"], "(it holds npo/config.json)"),
    ("foreign-unlearn-oracle", ["unlearn", "--model", "{model}", "--corpus", "{corpus_jsonl}", "--forget-match", "order", "--methods", "oracle", "--epochs", "0.1", "--out", "{d}/unl"], "(it holds oracle/config.json)"),
    ("foreign-unlearn-sisa", ["unlearn", "--model", "{model}", "--corpus", "{corpus_jsonl}", "--forget-match", "order", "--methods", "sisa", "--epochs", "0.1", "--out", "{d}/unl"], "(it holds sisa-before/shard-0/config.json)"),
    ("membership-classifier-unknown-scheme", ["membership", "classifier", "xyz:foo", "--data", "{data_ok_npz}", "--out", "{out}"], "xyz"),
    ("membership-llm-unknown-attack", ["membership", "llm", "--model", "{model}", "--members", "{corpus_jsonl}", "--nonmembers", "{corpus_jsonl}", "--attack", "minkk", "--out", "{out}"], "minkk"),
    ("membership-lab-out-is-file", ["membership", "lab", "--out", "{outfile}"], "--out is a file"),
    ("membership-scores-fail-on-unknown", ["membership", "scores", "{s_onlymembers_jsonl}", "--fail-on", "nosuch.family > 1", "--out", "{out}"], "nosuch.family"),
    # --- lab
    ("lab-samples-zero", ["lab", "--samples", "0", "--out", "{out}"], "--samples"),
    ("lab-defenses-samples-zero", ["lab", "defenses", "--samples", "0", "--out", "{out}"], "--samples"),
    ("lab-option-before-subcommand", ["lab", "--out", "{out}", "defenses"], "--out before 'defenses' belongs to the default 'leakaudit lab'"),
    ("lab-quick-before-subcommand", ["lab", "--quick", "defenses", "--out", "{out}"], "--quick before 'defenses'"),
    ("lab-defenses-show-pii", ["lab", "defenses", "--show-pii", "--out", "{out}"], "--show-pii"),
    ("lab-endpoint-no-url", ["lab", "endpoint", "--out", "{out}"], "Missing argument"),
    ("lab-after-training-format", ["lab", "after-training", "--format", "sarif", "--out", "{out}"], "--format"),
    ("lab-unknown-subcommand", ["lab", "defences"], "defences"),
    ("unknown-command", ["extrct", "--model", "{model}"], "extrct"),
]


def test_the_table_is_large_enough():
    assert len(CASES) >= 170
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case_id,argv,needle", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gives_one_line_and_exit_2(case_id, argv, needle, bad, tmp_path):
    out = tmp_path / "out"
    paths = {**{k: str(v) for k, v in bad.items()}, "out": str(out)}
    args = []
    for a in argv:
        for k in sorted(paths, key=len, reverse=True):
            a = a.replace("{" + k + "}", paths[k])
        args.append(a)
    before_outfile = bad["outfile"].read_text()
    res = CliRunner().invoke(app, args)
    text = res.output
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert res.exit_code == 2, (res.exit_code, text, res.exception)
    assert "Traceback" not in text and not isinstance(res.exception, Exception) or \
        isinstance(res.exception, SystemExit), text
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert needle in lines[0], lines[0]
    assert not out.exists(), sorted(p.name for p in out.rglob("*"))
    assert bad["outfile"].read_text() == before_outfile
    for name in FOREIGN:  # the user's own files where outputs go: byte-identical
        assert (bad["d"] / name).read_bytes() == b"the user's own file\n\x00\xff", name
    for folder in ("foreign", "unl", "rep_foreign", "mlab"):  # and nothing written beside them
        assert not (bad["d"] / folder / ".leakaudit").exists(), folder


def test_markup_in_paths_and_keys_is_printed_verbatim(bad):
    """A "[/]" in a folder name or a JSONL key is text, not console markup (it crashed rich)."""
    res = CliRunner().invoke(app, ["report", str(bad["rep_[/]key"])])
    assert res.exit_code == 0, res.output
    assert "rep_[/]key" in res.output.replace("\n", "")
    assert (bad["rep_[/]key"] / "report.html").is_file()
