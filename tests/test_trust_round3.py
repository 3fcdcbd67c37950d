"""Silent wrong results and leftovers of the third wave, each with a number checkable by hand and
a negative control:

- ``defend dedup``: a document that joined a near-duplicate cluster through another one is
  reported with its *own* Jaccard with the document kept (0.661), and the link it came through
  (0.815), not with the cluster's strongest link;
- an e-mail address cut off by the end of a sample ("Contact alice.smith") is masked;
- a classifier answer that is not a probability vector (negative values, rows not summing to 1)
  is refused, through ``invert --endpoint`` too;
- ``endpoint export-gguf`` on a tokenizer without a pad token writes a whole GGUF, and a failed
  export leaves no file;
- ``triage --json`` under a path whose parent is a file: one error line, nothing written;
- ``memorization --greedy-check -5``: one error line.
"""

from __future__ import annotations

import json
import shutil
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from typer.testing import CliRunner

from leakaudit.cli import app
from leakaudit.errors import InputError


def invoke(args):
    return CliRunner().invoke(app, [str(a) for a in args])


def one_error_line(r) -> str:
    lines = [x for x in r.output.splitlines() if x.strip()]
    assert r.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), r.output
    return lines[0]


# ----------------------------------------------------------------------------- dedup


def test_dedup_reports_each_removed_documents_own_jaccard():
    from leakaudit.defenses.dedup import DedupConfig, deduplicate

    a = [f"w{i}" for i in range(200)]  # 196 distinct word 5-grams
    b = list(a)
    for k in (20, 60, 100, 140):  # 4 words changed, far apart: 20 grams differ on each side
        b[k] = "x" + b[k]
    c = list(b)
    for k in (40, 80, 120, 160):
        c[k] = "y" + c[k]
    res = deduplicate([" ".join(a), " ".join(b), " ".join(c)], ["a", "b", "c"],
                      config=DedupConfig(method="near"))
    rem = {r["doc_id"]: r for r in res.removals}
    assert set(rem) == {"b", "c"} and res.kept == [True, False, False]
    # J(a, b) = 176 / 216; J(b, c) = 176 / 216; J(a, c) = 156 / 236, under the 0.8 threshold
    assert rem["b"]["duplicate_of"] == "a" and rem["b"]["jaccard"] == round(176 / 216, 4) == 0.8148
    assert rem["c"]["duplicate_of"] == "a" and rem["c"]["jaccard"] == round(156 / 236, 4) == 0.661
    assert rem["c"]["linked_via"] == "b" and rem["c"]["link_jaccard"] == 0.8148
    assert rem["b"]["linked_via"] == "a"  # a direct duplicate links to the document kept


# ----------------------------------------------------------------------------- PII masking


@pytest.mark.parametrize("text,masked", [
    ("The order was shipped. Contact alice.smith", "The order was shipped. Contact a***@…"),
    ("Contact alice.smith\n", "Contact a***@…\n"),
    ("Write to alice.smith@exa", "Write to a***@e***"),
    ("Write to alice.smith@", "Write to a***@***"),
    ("Write to alice.smith@example.com", "Write to a***@e***.com"),
    # negative controls: a dotted name inside the text, a version number, a sentence's end
    ("Contact alice.smith for the invoice", "Contact alice.smith for the invoice"),
    ("Upgrade to version 1.2", "Upgrade to version 1.2"),
    ("Contact alice.smith.", "Contact alice.smith."),
])
def test_a_cut_off_email_is_masked(text, masked):
    from leakaudit.corpus.pii import mask_text

    assert mask_text(text) == masked


# ----------------------------------------------------------------------------- probabilities


def test_probability_rows_are_checked():
    from leakaudit.targets.classifier import check_probability_rows

    check_probability_rows(np.array([[0.2, 0.8], [1.0, 0.0], [0.5, 0.5 + 5e-4]]), "c")
    check_probability_rows(np.array([[0.33, 0.33, 0.33]]), "c")  # rounded to 2 decimals: 0.99
    check_probability_rows(np.array([[0.3, 0.3, 0.3]]), "c", sums=False)  # a rounding defense
    with pytest.raises(InputError, match="row 0"):  # ... still in [0, 1]
        check_probability_rows(np.array([[-0.1, 0.3, 0.3]]), "c", sums=False)
    for rows, needle in (([[-0.2, 1.2]], "row 0 of the answer is not a probability vector (min -0.2"),
                         ([[0.2, 0.8], [0.3, 0.3]], ("row 1 of the answer is not a probability "
                                                     "vector (min 0.3, max 0.3, sum 0.6)")),
                         ([[2.0, -3.0]], "row 0"), ([[np.nan, 1.0]], "NaN")):
        with pytest.raises(InputError, match=needle.replace("(", r"\(").replace(")", r"\)")):
            check_probability_rows(np.array(rows), "c")


class _NegativeProbs(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_POST(self):
        n = len(json.loads(self.rfile.read(int(self.headers["Content-Length"])))["inputs"])
        body = json.dumps({"probabilities": [[-0.2, 1.2]] * n}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_invert_endpoint_refuses_negative_probabilities(tmp_path):
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _NegativeProbs)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}/predict"
        r = invoke(["invert", "--endpoint", url, "--input-shape", "4", "--n-classes", "2",
                    "--out", tmp_path / "out"])
    finally:
        srv.shutdown()
        srv.server_close()
    errors = [x for x in r.output.splitlines() if x.startswith("error:")]  # (after a progress bar)
    assert r.exit_code == 2 and len(errors) == 1 and "Traceback" not in r.output, r.output
    line = errors[0]
    assert f"{url}: row 0 of the answer is not a probability vector (min -0.2, max 1.2, sum 1)" in line
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- GGUF export


def test_export_gguf_without_a_pad_token(tiny_model_dir, tmp_path):
    gguf = pytest.importorskip("gguf")
    model = tmp_path / "nopad"
    shutil.copytree(tiny_model_dir, model)
    cfg = json.loads((model / "tokenizer_config.json").read_text())
    cfg.pop("pad_token", None)
    (model / "tokenizer_config.json").write_text(json.dumps(cfg))
    out = tmp_path / "m.gguf"
    r = invoke(["endpoint", "export-gguf", model, out])
    assert r.exit_code == 0, r.output
    fields = gguf.GGUFReader(str(out)).fields
    assert "tokenizer.ggml.eos_token_id" in fields and "tokenizer.ggml.padding_token_id" not in fields
    # no partial file; .leakaudit holds the ownership record of m.gguf (a rerun may replace it)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".leakaudit", "m.gguf", "nopad"]
    assert sorted(p.name for p in (tmp_path / ".leakaudit").iterdir()) == ["owned.json"]


def test_a_failed_export_leaves_no_file(tiny_model_dir, tmp_path):
    pytest.importorskip("gguf")
    from transformers import GPT2LMHeadModel

    from leakaudit.targets.gguf_export import write_gpt2_gguf

    class BadPad:  # the real tokenizer, with a pad id that cannot be packed: the export fails
        pad_token_id = "not an id"  # while writing the metadata, after the header was written

        def __init__(self, tok):
            self._tok = tok

        def __getattr__(self, name):
            return getattr(self._tok, name)

    from transformers import AutoTokenizer

    model = GPT2LMHeadModel.from_pretrained(tiny_model_dir)
    tok = BadPad(AutoTokenizer.from_pretrained(tiny_model_dir))
    with pytest.raises(struct.error):
        write_gpt2_gguf(model, tok, tmp_path / "m.gguf")
    assert list(tmp_path.iterdir()) == []


def test_export_gguf_under_a_file(tiny_model_dir, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    line = one_error_line(invoke(["endpoint", "export-gguf", tiny_model_dir, f / "m.gguf"]))
    assert f"{f} is a file, not a folder" in line and f.read_text() == "x"


# ----------------------------------------------------------------------------- triage, memorization


@pytest.mark.parametrize("option", ["--json", "--html"])
def test_triage_output_under_a_file(option, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    other = tmp_path / "ok.html"
    r = invoke(["triage", "--example", "A", option, f / "t.out",
                "--html" if option == "--json" else "--json", other])
    line = one_error_line(r)
    assert f"cannot write {option}: {f} is a file, not a folder" in line
    assert not other.exists() and f.read_text() == "x"  # nothing written, not even the other file


@pytest.mark.parametrize("value,ok", [("-5", False), ("-2", False), ("-1", True), ("0", True)])
def test_memorization_greedy_check_range(value, ok):
    from leakaudit.attacks.memorization import MemorizationConfig

    cfg = MemorizationConfig(greedy_check=int(value))
    if ok:
        cfg.validate()
    else:
        with pytest.raises(InputError, match=f"--greedy-check must be -1 .* got {value}"):
            cfg.validate()


def test_memorization_greedy_check_negative_on_the_command_line(tiny_model_dir, tmp_path):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text(json.dumps({"id": "a", "text": "Dear customer, your order shipped."}) + "\n")
    line = one_error_line(invoke(["memorization", "--model", tiny_model_dir, "--corpus", corpus,
                                  "--greedy-check", "-5", "--out", tmp_path / "out"]))
    assert "--greedy-check must be -1 (every window), 0 (none) or a positive number" in line
    assert not (tmp_path / "out").exists()
