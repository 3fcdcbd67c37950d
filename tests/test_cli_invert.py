"""``leakaudit invert`` on a saved classifier folder (white-box) and a local HTTP endpoint (black-box)."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from typer.testing import CliRunner

from leakaudit.cli import app
from leakaudit.lab.digits import load_digits_data, split_digits
from leakaudit.targets.classifier import TorchClassifier
from leakaudit.training.classifier import MLPSpec, TrainConfig, save_classifier, train_classifier


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    parts = split_digits(load_digits_data(), {"target": 0.5, "public": 0.5}, seed=0)
    tr, pub = parts["target"], parts["public"]
    spec = MLPSpec(64, 10, ())
    module = train_classifier(tr.x, tr.y, spec, TrainConfig(epochs=40, lr=1e-2, seed=0))
    d = tmp_path_factory.mktemp("clf")
    save_classifier(module, spec, d / "model", extra={"image_shape": [8, 8]})
    np.savez(d / "public.npz", x=pub.x, y=pub.y)
    return d, module


def test_invert_white_box_folder_with_reference_data(folder, tmp_path):
    d, _ = folder
    out = tmp_path / "out"
    r = run("invert", d / "model", "--classes", "0,1,2,3", "--reference-data", d / "public.npz", "--out", out)
    assert r.exit_code == 0, r.output
    assert "evaluation classifier top-1" in r.output
    recs = [json.loads(line) for line in (out / "report.jsonl").read_text().splitlines()]
    ev = [x for x in recs if x["entry_type"] == "inversion"][0]
    assert ev["attack"] == "mi_face" and ev["top1"]["k"] >= 3 and ev["start"].startswith("mean of the reference")
    per = [x for x in recs if x["entry_type"] == "inversion_record"]
    assert [x["class"] for x in per] == [0, 1, 2, 3] and len(per[0]["reconstruction"]) == 64
    html = (out / "report.html").read_text()
    assert 'id="sec-inversion"' in html and 'id="sec-inversion-grid"' in html
    assert not list(out.glob(".leakaudit-partial-*"))


class Handler(BaseHTTPRequestHandler):
    module = None

    def log_message(self, *a):
        pass

    def do_POST(self):
        x = np.asarray(json.loads(self.rfile.read(int(self.headers["Content-Length"])))["inputs"], dtype=np.float32)
        p = TorchClassifier(Handler.module, n_classes=10, input_shape=(64,)).predict_proba(x)
        body = json.dumps({"probabilities": p.tolist()}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)


def test_invert_black_box_endpoint_same_seed_same_images(folder, tmp_path):
    _, module = folder
    Handler.module = module
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_address[1]}/"
    try:
        outs = []
        for name in ("a", "b"):
            out = tmp_path / name
            r = run("invert", "--endpoint", url, "--input-shape", "8x8", "--n-classes", "10", "--classes", "3,7",
                    "--budget", "105", "--seed", "5", "--out", out)
            assert r.exit_code == 0, r.output
            outs.append([json.loads(x) for x in (out / "report.jsonl").read_text().splitlines()])
    finally:
        srv.shutdown()
        srv.server_close()
    ev = [x for x in outs[0] if x["entry_type"] == "inversion"][0]
    assert ev["attack"] == "nes" and ev["budget_per_class"] == 105 and ev["queries_total"] == 2 * 105
    assert ev["judged"] is False and ev["start"].startswith("all-zero")
    imgs = [[x["reconstruction"] for x in o if x["entry_type"] == "inversion_record"] for o in outs]
    assert imgs[0] == imgs[1] and len(imgs[0]) == 2
    run_rec = outs[0][0]
    assert run_rec["seed"] == 5 and run_rec["config"]["params"]["budget"] == 105


@pytest.mark.parametrize("args,match", [
    ((), "either a classifier folder or --endpoint"),
    (("--endpoint", "http://127.0.0.1:9/"), "--input-shape and --n-classes"),
    (("--endpoint", "http://127.0.0.1:9/", "--input-shape", "4", "--n-classes", "2"), "cannot connect"),
    (("MODEL", "--classes", "12"), "--classes must lie in 0..9"),
    (("MODEL", "--attack", "mi_fcae"), "Did you mean: mi_face"),
    (("MODEL", "--budget", "10"), "--budget applies to the black-box"),
])
def test_bad_input_exits_2_with_one_line(folder, tmp_path, args, match):
    d, _ = folder
    args = [str(d / "model") if a == "MODEL" else a for a in args]
    out = tmp_path / "o"
    r = run("invert", *args, "--out", out)
    assert r.exit_code == 2 and match in r.output, r.output
    assert not out.exists()


def test_invert_help_lists_the_options():
    r = CliRunner().invoke(app, ["invert", "--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0
    for opt in ("--endpoint", "--classes", "--budget", "--seed", "--out", "--reference-data"):
        assert opt in r.output


def test_bad_reference_data_names_the_file(folder, tmp_path):
    d, _ = folder
    bad = tmp_path / "bad.npz"
    bad.write_text("not a zip")
    one = tmp_path / "one.npy"
    np.save(one, np.zeros((3, 64)))
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, x=np.zeros((3, 5)), y=np.zeros(3, dtype=int))
    obj = tmp_path / "obj.npz"
    np.savez(obj, x=np.array([{"a": 1}], dtype=object), y=np.zeros(1, dtype=int))
    for f, match in ((bad, "not a readable .npz"), (one, "single array"), (wrong, "expected (n, 64)"),
                     (obj, "not plain numeric"), (tmp_path / "missing.npz", "no such file")):
        r = run("invert", d / "model", "--reference-data", f, "--out", tmp_path / "o")
        assert r.exit_code == 2 and str(f) in r.output and match in r.output, r.output
