"""Classifiers as users keep them: Hugging Face image and text classification folders, an ONNX
export, a scikit-learn model saved with skops, Python objects, and a label-only HTTP endpoint.
Each gives the same probabilities as the model in-process (float32, to 1e-5), declares its
capabilities, and the audits skip what a target cannot serve, naming the capability."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from leakaudit.errors import CapabilityError, InputError
from leakaudit.lab.digits import load_digits_data, split_digits
from leakaudit.targets.classifier import TorchClassifier, classifier_from
from leakaudit.targets.classifier_formats import (ClassifierOptions, load_classifier_target,
                                                  split_classifier_spec)

pytest.importorskip("onnxruntime")
pytest.importorskip("skops")

TOL = 1e-5


@pytest.fixture(scope="module")
def digits():
    return split_digits(load_digits_data(), {"a": 0.3, "b": 0.3}, seed=0)


@pytest.fixture(scope="module")
def mlp(digits, tmp_path_factory):
    """The lab's MLP on the digits, saved the leakaudit way."""
    from leakaudit.training.classifier import MLPSpec, TrainConfig, save_classifier, train_classifier

    spec = MLPSpec(input_dim=64, n_classes=10, hidden=(32,))
    module = train_classifier(digits["a"].x, digits["a"].y, spec, TrainConfig(epochs=20, seed=0))
    d = tmp_path_factory.mktemp("clf")
    save_classifier(module, spec, d / "native")
    return module, d


@pytest.fixture(scope="module")
def onnx_file(mlp):
    import torch

    module, d = mlp
    path = d / "mlp.onnx"
    torch.onnx.export(module, (torch.zeros(1, 64),), str(path), input_names=["x"],
                      output_names=["logits"], dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}},
                      dynamo=False)
    return path


def test_native_folder_onnx_and_python_module_give_the_same_probabilities(mlp, onnx_file, digits):
    module, d = mlp
    x = digits["b"].x
    ref = TorchClassifier(module, n_classes=10, input_shape=(64,)).predict_proba(x)
    native = load_classifier_target(d / "native")
    onnx = load_classifier_target(f"onnx:{onnx_file}")
    bare = load_classifier_target(str(onnx_file))  # kind from the extension
    wrapped = classifier_from(module, input_shape=(64,))  # n_classes read from one setup call
    prefixed = load_classifier_target(f"leakaudit:{d / 'native'}")
    for t in (native, onnx, bare, wrapped, prefixed):
        assert t.n_classes == 10 and t.input_shape == (64,)
        np.testing.assert_allclose(t.predict_proba(x), ref, atol=TOL, rtol=0)
        assert t.queries == len(x)  # setup calls are not queries
    assert (ref.argmax(1) == digits["b"].y).mean() > 0.85  # a real classifier
    assert native.capabilities.gradients and wrapped.capabilities.gradients
    assert not onnx.capabilities.gradients and onnx.capabilities.logits
    np.testing.assert_allclose(onnx.logits(x[:5]), native.logits(x[:5]), atol=TOL, rtol=0)
    # fingerprints hash content: the same weights agree, another format of them does not
    assert wrapped.fingerprint() == native.fingerprint()
    assert load_classifier_target(f"onnx:{onnx_file}").fingerprint() == onnx.fingerprint()
    assert onnx.fingerprint() != native.fingerprint()
    assert onnx.source == f"onnx:{onnx_file}"


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_skops_model_matches_in_process_and_pickle_is_refused(digits, tmp_path):
    import pickle

    import skops.io as sio
    from sklearn.neural_network import MLPClassifier

    sk = MLPClassifier((32,), max_iter=60, random_state=0).fit(digits["a"].x, digits["a"].y)
    sio.dump(sk, tmp_path / "m.skops")
    t = load_classifier_target(f"skops:{tmp_path / 'm.skops'}")
    np.testing.assert_allclose(t.predict_proba(digits["b"].x),
                               sk.predict_proba(digits["b"].x.astype(np.float32)), atol=TOL, rtol=0)
    assert t.capabilities.probabilities and not t.capabilities.gradients
    with open(tmp_path / "m.pkl", "wb") as f:
        pickle.dump(sk, f)
    (tmp_path / "m.bin").write_bytes((tmp_path / "m.pkl").read_bytes())  # pickle, any name
    for spec in (tmp_path / "m.pkl", f"skops:{tmp_path / 'm.pkl'}", f"skops:{tmp_path / 'm.bin'}"):
        with pytest.raises(InputError, match="never unpickles.*skops") as e:
            load_classifier_target(spec)
        assert "\n" not in str(e.value)


def test_skops_refuses_types_it_does_not_trust_until_named(digits, tmp_path):
    """A pipeline holding a function from outside scikit-learn (operator.neg): refused, naming
    it; loaded once the spec trusts it."""
    import operator

    import skops.io as sio
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    pipe = make_pipeline(FunctionTransformer(operator.neg), LogisticRegression(max_iter=300))
    pipe.fit(digits["a"].x, digits["a"].y)
    sio.dump(pipe, tmp_path / "p.skops")
    untrusted = [u for u in sio.get_untrusted_types(file=tmp_path / "p.skops")
                 if not u.startswith("sklearn.")]
    assert untrusted == ["_operator.neg"]
    with pytest.raises(InputError, match="does not trust: " + untrusted[0]):
        load_classifier_target(tmp_path / "p.skops")
    t = load_classifier_target(f"{tmp_path / 'p.skops'}#trust={','.join(untrusted)}")
    np.testing.assert_allclose(t.predict_proba(digits["b"].x), pipe.predict_proba(digits["b"].x),
                               atol=TOL, rtol=0)


def test_python_objects_and_functions(digits):
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(max_iter=300).fit(digits["a"].x, digits["a"].y)
    x = digits["b"].x[:50]
    est = classifier_from(lr)  # n_features_in_ and classes_ recorded
    fn = classifier_from(lr.predict_proba, input_shape=(64,))
    assert est.n_classes == fn.n_classes == 10
    np.testing.assert_allclose(est.predict_proba(x), fn.predict_proba(x), atol=0, rtol=0)
    with pytest.raises(InputError, match="input_shape"):
        classifier_from(lr.predict_proba)
    with pytest.raises(InputError, match="cannot make a classifier"):
        classifier_from(42, input_shape=(64,))


def test_hf_image_classifier_folder(tmp_path):
    import torch
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    cfg = ViTConfig(image_size=8, patch_size=4, num_channels=1, num_labels=10, hidden_size=16,
                    num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    model = ViTForImageClassification(cfg).eval()
    model.save_pretrained(tmp_path / "vit")
    x = np.random.default_rng(0).uniform(0, 1, (20, 1, 8, 8)).astype(np.float32)
    with torch.no_grad():
        ref = torch.softmax(model(pixel_values=torch.from_numpy(x)).logits.double(), 1).numpy()
    t = load_classifier_target(f"hf:{tmp_path / 'vit'}")
    assert t.input_shape == (1, 8, 8) and t.n_classes == 10
    assert t.capabilities.gradients and t.capabilities.float_inputs
    np.testing.assert_allclose(t.predict_proba(x), ref, atol=TOL, rtol=0)
    logp, g = t.input_gradient(x[:2], 3)
    assert g.shape == (2, 1, 8, 8) and np.allclose(logp, np.log(ref[:2, 3]), atol=TOL)
    assert split_classifier_spec(tmp_path / "vit")[0] == "hf"  # a folder with config.json
    # the model object itself (its output carries .logits), through the Python API
    obj = classifier_from(model, input_shape=(1, 8, 8))
    assert obj.n_classes == 10 and obj.queries == 0
    np.testing.assert_allclose(obj.predict_proba(x), ref, atol=TOL, rtol=0)


def _bert_folder(path):
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast
    import torch

    words = "the a patient was seen today for pain and fever notes of visit ok".split()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words
    path.mkdir()
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = BertTokenizerFast(vocab_file=str(path / "vocab.txt"))
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1,
                     num_attention_heads=2, intermediate_size=32, num_labels=3,
                     max_position_embeddings=64)
    model = BertForSequenceClassification(cfg).eval()
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return model, tok


def test_hf_text_classifier_folder(tmp_path):
    import torch

    model, tok = _bert_folder(tmp_path / "bert")
    texts = ["the patient was seen today", "fever and pain", "ok", "notes of visit for the patient"]
    with torch.no_grad():
        ref = np.concatenate([torch.softmax(model(**tok([t], return_tensors="pt")).logits.double(), 1)
                              .numpy() for t in texts])  # one at a time: no padding at all
    t = load_classifier_target(tmp_path / "bert")
    assert t.n_classes == 3 and not t.capabilities.float_inputs and not t.capabilities.gradients
    np.testing.assert_allclose(t.predict_proba(texts), ref, atol=TOL, rtol=0)  # batched, padded
    assert t.queries == 4
    with pytest.raises(InputError, match="takes texts"):
        t.predict_proba(np.zeros((2, 3)))


def test_text_classifier_skips_the_attacks_that_perturb_inputs(tmp_path):
    from leakaudit.attacks.membership.audit_clf import LabelOnlySettings, audit_classifier_membership
    from leakaudit.attacks.membership.evaluate import EvalConfig

    _bert_folder(tmp_path / "bert")
    t = load_classifier_target(tmp_path / "bert")
    words = "the a patient was seen today for pain and fever".split()
    rng = np.random.default_rng(0)
    texts = np.array([" ".join(rng.choice(words, 5)) for _ in range(40)])
    res = audit_classifier_membership(t, texts[:20], rng.integers(0, 3, 20), texts[20:],
                                      rng.integers(0, 3, 20), rmia_a=0.3, seed=0,
                                      eval_config=EvalConfig(n_boot=20),
                                      label_only=LabelOnlySettings(budget=20), log=lambda *_: None)
    assert {e.method for e in res.evaluations} == {"clf_loss", "blind_baseline"}
    assert {s["method"] for s in res.skipped} == {"label_gap", "label_augment", "boundary_distance"}
    assert all(s["missing"] == ["float_inputs"] for s in res.skipped)


def test_specs_that_cannot_load_answer_in_one_line(tmp_path):
    (tmp_path / "x.onnx").write_bytes(b"not a model")
    (tmp_path / "x.skops").write_bytes(b"not a zip")
    (tmp_path / "empty").mkdir()
    cases = [(tmp_path / "x.onnx", "onnxruntime cannot load"), (tmp_path / "x.skops", "not a skops file"),
             (tmp_path / "empty", "no classifier.json or config.json"),
             (tmp_path / "nope.onnx", "no such file"), (tmp_path / "m.pt", "export the model to ONNX"),
             ("http://127.0.0.1:9/x", "needs n_classes and input_shape")]
    for spec, msg in cases:
        with pytest.raises(InputError, match=msg) as e:
            load_classifier_target(spec)
        assert "\n" not in str(e.value)


# -- a label-only endpoint ------------------------------------------------------------------

def _serve(predict_labels):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            labels = predict_labels(np.asarray(body["inputs"], dtype=np.float32))
            payload = json.dumps({"labels": [int(v) for v in labels]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(payload)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"http://127.0.0.1:{srv.server_address[1]}/predict"


@pytest.fixture(scope="module")
def label_endpoint(mlp):
    module, _ = mlp
    local = TorchClassifier(module, n_classes=10, input_shape=(64,))
    srv, url = _serve(lambda x: local.predict(x))
    yield url, local
    srv.shutdown()
    srv.server_close()


def test_label_only_endpoint_declares_itself_and_audits_skip_with_the_reason(label_endpoint, digits):
    from leakaudit.attacks.membership.audit_clf import LabelOnlySettings, audit_classifier_membership
    from leakaudit.attacks.membership.evaluate import EvalConfig
    from leakaudit.audits.inversion import choose_attack

    url, local = label_endpoint
    opts = ClassifierOptions(n_classes=10, input_shape=(64,), batch_size=500, answers="labels")
    t = load_classifier_target(url, options=opts)
    assert t.capabilities.label_only and not t.capabilities.probabilities
    x = digits["b"].x[:30]
    assert np.array_equal(t.predict(x), local.predict(x))
    assert np.array_equal(t.predict_proba(x).sum(1), np.ones(30))  # one-hot rows
    # the probability endpoint reader names the label-only option when it gets labels
    with pytest.raises(Exception, match="answers='labels'"):
        load_classifier_target(url, options=ClassifierOptions(n_classes=10, input_shape=(64,))) \
            .predict_proba(x[:1])
    t.queries = 0
    a, b = digits["a"], digits["b"]
    res = audit_classifier_membership(t, a.x[:40], a.y[:40], b.x[:40], b.y[:40], rmia_a=0.3, seed=0,
                                      eval_config=EvalConfig(n_boot=20),
                                      label_only=LabelOnlySettings(budget=30), log=lambda *_: None)
    assert {e.method for e in res.evaluations} == {"label_gap", "label_augment", "boundary_distance",
                                                   "blind_baseline"}
    (sk,) = res.skipped
    assert sk["method"] == "clf_loss" and sk["missing"] == ["probabilities"]
    assert all(q["max_per_record"] <= 30 for q in res.queries.values())
    assert t.queries == sum(q["total"] for q in res.queries.values())
    # inversion: MI-Face needs gradients, so NES runs; asking for MI-Face is refused by name
    assert choose_attack(t, None)[0] == "nes"
    assert choose_attack(t, None)[1][0]["missing"] == ["gradients"]
    with pytest.raises(CapabilityError, match="gradients"):
        choose_attack(t, "mi_face")


def test_audits_give_the_same_records_on_the_native_folder_and_its_onnx_export(mlp, onnx_file, digits):
    """Membership (LOSS, label-only attacks, baseline) and black-box inversion (NES) on the
    leakaudit folder and on its ONNX export: the same numbers within float tolerance."""
    from leakaudit.attacks.inversion.audit import make_attack
    from leakaudit.attacks.membership.audit_clf import LabelOnlySettings, audit_classifier_membership
    from leakaudit.attacks.membership.evaluate import EvalConfig

    _, d = mlp
    a, b = digits["a"], digits["b"]
    runs = {}
    for spec in (d / "native", f"onnx:{onnx_file}"):
        t = load_classifier_target(spec)
        res = audit_classifier_membership(t, a.x[:40], a.y[:40], b.x[:40], b.y[:40], rmia_a=0.3,
                                          seed=0, eval_config=EvalConfig(n_boot=50),
                                          label_only=LabelOnlySettings(budget=40, image_shape=(8, 8)),
                                          log=lambda *_: None)
        nes = make_attack("nes", budget=42, clip=(0.0, 1.0), image_shape=(8, 8), tv_weight=None)
        inv = nes.invert(t, [0, 3], start=np.full(64, 0.3), seed=0)
        runs[str(spec)] = ({e.method: e for e in res.evaluations}, inv)
    (ev1, inv1), (ev2, inv2) = runs.values()
    assert set(ev1) == set(ev2) == {"clf_loss", "label_gap", "label_augment", "boundary_distance",
                                    "blind_baseline"}
    for m in ev1:
        np.testing.assert_allclose(ev1[m].scores, ev2[m].scores, atol=1e-4, rtol=0)
        assert ev1[m].metrics.auc == pytest.approx(ev2[m].metrics.auc, abs=1e-9)
    np.testing.assert_allclose(inv1.x, inv2.x, atol=1e-4)
    np.testing.assert_allclose(inv1.confidence, inv2.confidence, atol=1e-5)


def mlp_as_hf_resnet(module, path):
    """The lab's MLP ``Flatten → (Linear → ReLU)×k → Linear`` as a transformers
    ``ResNetForImageClassification`` that computes the same function, saved with save_pretrained.

    The 64 pixels are the 64 channels of a 1×1 image. On a 1×1 input the stem's 7×7 convolution
    (stride 2, padding 3) sees only its centre tap: a dense layer 64 → h; its batch norm (eval:
    running mean 0, variance 1) adds the bias, then ReLU; the 3×3 max pool is the identity. Each
    further hidden layer is a stage whose projection shortcut (1×1 convolution + batch norm) is the
    dense layer and whose residual branch is zero, so the stage gives ReLU(W h + b); with one hidden
    layer the single stage has an identity shortcut and gives ReLU(h) = h. Average pooling of a 1×1
    map is the identity, and the classifier is the last Linear."""
    import torch
    from transformers import ResNetConfig, ResNetForImageClassification

    linears = [m for m in module if isinstance(m, torch.nn.Linear)]
    hidden = [lin.out_features for lin in linears[:-1]]
    extra = hidden[1:] or hidden[:1]
    cfg = ResNetConfig(num_channels=linears[0].in_features, embedding_size=hidden[0],
                       hidden_sizes=extra, depths=[1] * len(extra), layer_type="basic",
                       hidden_act="relu", downsample_in_first_stage=len(hidden) > 1,
                       num_labels=linears[-1].out_features, image_size=1)
    model = ResNetForImageClassification(cfg).eval()
    state = model.state_dict()
    with torch.no_grad():
        for k, v in state.items():  # every weight 0; batch norms: mean 0, variance 1, scale 1
            if v.is_floating_point():
                v.fill_(1.0 if k.endswith(("running_var", "normalization.weight")) else 0.0)

        def dense(conv, norm, lin, tap):
            conv.weight[:, :, tap, tap] = lin.weight * (1 + norm.eps) ** 0.5  # undoes 1/sqrt(var+eps)
            norm.bias.copy_(lin.bias)

        stem = model.resnet.embedder.embedder
        dense(stem.convolution, stem.normalization, linears[0], 3)
        for stage, lin in zip(model.resnet.encoder.stages, linears[1:-1]):
            short = stage.layers[0].shortcut
            dense(short.convolution, short.normalization, lin, 0)
        model.classifier[1].weight.copy_(linears[-1].weight)
        model.classifier[1].bias.copy_(linears[-1].bias)
    model.save_pretrained(path)
    return path


def _records(out):
    return [json.loads(line) for line in (out / "report.jsonl").read_text().splitlines()]


def _numbers_and_rest(rec, path=""):
    """``({path: number}, {path: other value})`` of a JSON record, leaves only."""
    nums, rest = {}, {}
    items = rec.items() if isinstance(rec, dict) else enumerate(rec) if isinstance(rec, list) else None
    if items is None:
        (nums if isinstance(rec, (int, float)) and not isinstance(rec, bool) else rest)[path] = rec
        return nums, rest
    for k, v in items:
        n, r = _numbers_and_rest(v, f"{path}/{k}")
        nums.update(n)
        rest.update(r)
    return nums, rest


@pytest.mark.parametrize("hidden", [(32,), (16, 12)])
def test_mlp_as_hf_resnet_computes_the_same_function(digits, tmp_path, hidden):
    """The export is a transformers ResNetForImageClassification folder (save_pretrained) that
    `hf:` loads with transformers' own class; logits and input gradients equal the MLP's."""
    import torch
    from transformers import ResNetForImageClassification

    from leakaudit.training.classifier import MLPSpec, TrainConfig, train_classifier

    module = train_classifier(digits["a"].x, digits["a"].y, MLPSpec(64, 10, hidden),
                              TrainConfig(epochs=3, seed=0))
    mlp_as_hf_resnet(module, tmp_path / "hf")
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["architectures"] == ["ResNetForImageClassification"]
    x = digits["b"].x
    ref = TorchClassifier(module, n_classes=10, input_shape=(64,))
    flat = load_classifier_target(f"hf:{tmp_path / 'hf'}", options=ClassifierOptions(input_shape=(64,)))
    pixels = load_classifier_target(tmp_path / "hf")  # the shape the config records: 64 channels, 1x1
    assert isinstance(flat.module.inner, ResNetForImageClassification)
    assert flat.input_shape == (64,) and pixels.input_shape == (64, 1, 1)
    np.testing.assert_allclose(flat.logits(x), ref.logits(x), atol=TOL, rtol=0)
    np.testing.assert_allclose(pixels.predict_proba(x.reshape(-1, 64, 1, 1)), ref.predict_proba(x),
                               atol=TOL, rtol=0)
    np.testing.assert_allclose(flat.input_gradient(x[:8], 3)[1], ref.input_gradient(x[:8], 3)[1],
                               atol=TOL, rtol=0)
    with torch.no_grad():  # the folder alone, through transformers, without leakaudit
        own = ResNetForImageClassification.from_pretrained(tmp_path / "hf").eval()
        z = own(pixel_values=torch.from_numpy(x.reshape(-1, 64, 1, 1))).logits.double().numpy()
    np.testing.assert_allclose(z, ref.logits(x), atol=TOL, rtol=0)
    with pytest.raises(InputError, match="has 65 values; the model takes pixel values of shape 64x1x1"):
        load_classifier_target(f"hf:{tmp_path / 'hf'}", options=ClassifierOptions(input_shape=(65,)))


def test_invert_and_membership_give_the_same_records_on_the_native_folder_and_an_hf_folder(
        mlp, digits, tmp_path):
    """The lab's digits MLP as a transformers folder: `leakaudit invert` (white-box MI-Face) and
    `leakaudit membership classifier` (LOSS, label-only attacks, baseline) write the same records
    as on the native folder, every number within float tolerance; the same commands on the export
    of a differently seeded MLP do not (negative control)."""
    from typer.testing import CliRunner

    from leakaudit.cli import app
    from leakaudit.training.classifier import MLPSpec, TrainConfig, train_classifier

    module, d = mlp
    mlp_as_hf_resnet(module, tmp_path / "hf")
    other = train_classifier(digits["a"].x, digits["a"].y, MLPSpec(64, 10, (32,)),
                             TrainConfig(epochs=20, seed=1))
    mlp_as_hf_resnet(other, tmp_path / "hf-other")
    a, b = digits["a"], digits["b"]
    np.savez(tmp_path / "m.npz", x_members=a.x[:40], y_members=a.y[:40], x_nonmembers=b.x[:40],
             y_nonmembers=b.y[:40])
    commands = {"invert": ["invert", "--classes", "0,3", "--image-shape", "8x8"],
                "membership": ["membership", "classifier", "--data", str(tmp_path / "m.npz"),
                               "--budget", "40"]}
    recs = {}
    for name, spec, extra in [("native", str(d / "native"), []),
                              ("hf", f"hf:{tmp_path / 'hf'}", ["--input-shape", "64"]),
                              ("other", f"hf:{tmp_path / 'hf-other'}", ["--input-shape", "64"])]:
        for cmd, args in commands.items():
            out = tmp_path / f"{name}-{cmd}"
            r = CliRunner().invoke(app, [*args[:1 + (cmd == "membership")], spec,
                                         *args[1 + (cmd == "membership"):], *extra, "--out", str(out)])
            assert r.exit_code == 0, r.output
            recs[name, cmd] = [x for x in _records(out) if x["entry_type"] != "run"]
    # what legitimately differs: the target's name and fingerprint
    names = {"native": "native", "hf": "hf", "other": "hf-other"}

    def parts(name, cmd):
        text = json.dumps(recs[name, cmd]).replace(f"/{names[name]}/", "/TARGET/")
        text = text.replace(f'"name": "{names[name]}"', '"name": "TARGET"')
        for rec in recs[name, cmd]:
            fp = (rec.get("target") or {}).get("fingerprint")
            if fp:
                text = text.replace(fp, "FINGERPRINT")
        return _numbers_and_rest(json.loads(text))

    for cmd in commands:
        (n1, r1), (n2, r2), (n3, _) = (parts(n, cmd) for n in ("native", "hf", "other"))
        assert r1 == r2 and n1.keys() == n2.keys() and len(n1) > 50
        diff = max(abs(n1[k] - n2[k]) for k in n1)
        assert diff < 1e-5, (cmd, diff)
        assert max(abs(n1[k] - n3[k]) for k in n1.keys() & n3.keys()) > 1e-2  # another model differs
    aucs = {(n, x["method"]): x["metric"]["value"] for n in ("native", "hf")
            for x in recs[n, "membership"] if x["entry_type"] == "membership"}
    assert {m for _, m in aucs} == {"clf_loss", "label_gap", "label_augment", "boundary_distance",
                                    "blind_baseline"}


def test_membership_command_on_a_text_classifier_folder(tmp_path):
    """`membership classifier DIR` on an HF text classifier with texts in the .npz: LOSS and the
    model-free baseline reported; the label-only attacks listed as skipped (inputs are text)."""
    from typer.testing import CliRunner

    from leakaudit.cli import app

    _bert_folder(tmp_path / "bert")
    words = "the a patient was seen today for pain and fever".split()
    rng = np.random.default_rng(0)
    texts = np.array([" ".join(rng.choice(words, 6)) for _ in range(24)])
    np.savez(tmp_path / "d.npz", x_members=texts[:12], y_members=rng.integers(0, 3, 12),
             x_nonmembers=texts[12:], y_nonmembers=rng.integers(0, 3, 12))
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["membership", "classifier", f"hf:{tmp_path / 'bert'}", "--data",
                                 str(tmp_path / "d.npz"), "--out", str(out)])
    assert r.exit_code == 0, r.output
    recs = [json.loads(line) for line in (out / "report.jsonl").read_text().splitlines()]
    mem = [x for x in recs if x["entry_type"] == "membership"]
    assert {x["method"] for x in mem if not x.get("skipped")} == {"clf_loss", "blind_baseline"}
    skipped = {x["method"]: x["missing"] for x in mem if x.get("skipped")}
    assert skipped == {m: ["float_inputs"] for m in ("label_gap", "label_augment", "boundary_distance")}
    # numeric inputs for a text classifier: one line, exit 2
    np.savez(tmp_path / "bad.npz", x_members=np.zeros((4, 3)), y_members=np.zeros(4, int),
             x_nonmembers=np.zeros((4, 3)), y_nonmembers=np.zeros(4, int))
    r = CliRunner().invoke(app, ["membership", "classifier", str(tmp_path / "bert"), "--data",
                                 str(tmp_path / "bad.npz"), "--out", str(tmp_path / "o2")])
    assert r.exit_code == 2 and "array of texts" in r.output and r.output.count("\n") == 1
