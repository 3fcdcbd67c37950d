"""HTTPClassifier against a local http.server started in a thread."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from leakaudit.targets.http_classifier import EndpointError, HTTPClassifier

W = np.array([[1.0, -1.0], [-2.0, 0.5], [0.3, 0.3]])  # 2 inputs -> 3 classes


def softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


class Handler(BaseHTTPRequestHandler):
    mode = "ok"
    batches: list[int] = []

    def log_message(self, *a):  # keep test output clean
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        x = np.asarray(body["inputs"], dtype=float)
        Handler.batches.append(len(x))
        mode = Handler.mode
        if mode == "500":
            self.send_response(500)
            self.end_headers()
            self.wfile.write(b"model crashed")
            return
        if mode == "slow":
            import time
            time.sleep(1.0)
        out = {"probabilities": softmax(x @ W.T).tolist()}
        if mode == "bad_shape":
            out = {"probabilities": [[1.0, 0.0]] * len(x)}
        if mode == "not_json":
            payload = b"<html>oops</html>"
        else:
            payload = json.dumps(out).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture(scope="module")
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/predict"
    srv.shutdown()
    srv.server_close()


def client(url, **kw):
    return HTTPClassifier(url, n_classes=3, input_shape=(2,), batch_size=kw.pop("batch_size", 4),
                          timeout_s=kw.pop("timeout_s", 5.0), **kw)


def test_batched_probabilities_and_counted_queries(server):
    Handler.mode, Handler.batches = "ok", []
    c = client(server)
    x = np.random.default_rng(0).random((10, 2))
    p = c.predict_proba(x)
    assert p == pytest.approx(softmax(x.astype(np.float32) @ W.T), abs=1e-6)
    assert Handler.batches == [4, 4, 2] and c.queries == 10 and c.requests == 3


def test_black_box_inversion_runs_through_the_endpoint(server):
    from leakaudit.attacks.inversion import NESInversion

    Handler.mode = "ok"
    c = client(server, batch_size=64)
    a = NESInversion(budget=105, n_directions=2, sigma=0.05, lr=5.0, patience=100, gamma=0.0,
                     min_delta=0.0, tv_weight=0.0, l2_weight=0.0, clip=(0.0, 1.0), image_shape=None)
    r = a.invert(c, [0], start=np.full(2, 0.5), seed=0)
    assert c.queries == r.queries.sum() == 105
    assert r.x[0] == pytest.approx([1.0, 0.0], abs=0.05)  # argmax of w0 - others over the box
    assert r.confidence[0] > softmax(np.full((1, 2), 0.5) @ W.T)[0, 0]


@pytest.mark.parametrize("mode,match", [("500", "HTTP 500.*model crashed"), ("bad_shape", "shape"),
                                        ("not_json", "not JSON"), ("slow", "no answer within")])
def test_clear_errors(server, mode, match):
    Handler.mode = mode
    c = client(server, timeout_s=0.3)
    with pytest.raises(EndpointError, match=match):
        c.predict_proba(np.zeros((2, 2)))
    assert c.queries == 2  # queries sent are counted even when the answer is unusable


def test_unreachable_and_bad_url():
    with pytest.raises(EndpointError, match="cannot connect"):
        client("http://127.0.0.1:9/x", timeout_s=2.0).predict_proba(np.zeros((1, 2)))
    from leakaudit.errors import InputError
    with pytest.raises(InputError, match="http"):
        client("ftp://example.org")
