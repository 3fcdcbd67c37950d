"""The classifier DP audit with user training hooks: power on a memorizing model, a negative
control on a model that ignores its data, resume from stored models, and the CLI."""

import json
import stat

import numpy as np
import pytest
from typer.testing import CliRunner

from leakaudit.audits.dp_audit import ClassifierData, DPAuditConfig, audit_dp_classifier, load_hook
from leakaudit.errors import CapabilityError, InputError
from tests import dp_hooks


@pytest.fixture(scope="module")
def data():
    from leakaudit.lab.dp_audit import lab_data

    return lab_data(300, seed=0)


def _cfg(mode, **kw):
    base = dict(mode=mode, n_canaries=400, n_models=10, confidence=0.95, delta=None, canary_kind="crafted", seed=0)
    return DPAuditConfig(**{**base, **kw})


def test_one_run_refutes_a_memorizing_pipeline(data, tmp_path):
    res = audit_dp_classifier(dp_hooks.train_knn, data, _cfg("one-run"), store_dir=tmp_path)
    # 1-NN recalls every included canary's label (excluded ones match by chance 1 time in 10)
    assert 2.0 < res.epsilon_lb <= res.max_certifiable
    assert res.refuted and "claim refuted" in res.verdict()
    assert res.models_trained == 1 and res.detail["m"] == 400 and res.detail["v"] > 0.9 * res.detail["r"]
    # resume: the same audit again trains nothing and gives the same number
    again = audit_dp_classifier(dp_hooks.train_knn, data, _cfg("one-run"), store_dir=tmp_path)
    assert (again.models_trained, again.models_reused, again.epsilon_lb) == (0, 1, res.epsilon_lb)
    run_json = next(tmp_path.glob("*/run.json"))
    assert stat.S_IMODE(run_json.stat().st_mode) == 0o600


def test_negative_control_model_that_ignores_its_data(data, tmp_path):
    res = audit_dp_classifier(dp_hooks.train_ignores_data, data, _cfg("one-run"), store_dir=tmp_path)
    assert res.epsilon_lb < 0.5 and not res.refuted
    assert "proves nothing" in res.verdict()
    stage = next(p for p in tmp_path.iterdir() if not p.name.startswith("."))  # not .locks/
    assert (stage / "model.safetensors").is_file()
    multi = audit_dp_classifier(dp_hooks.train_ignores_data, data, _cfg("multi-run"), store_dir=None)
    assert multi.epsilon_lb == 0.0 and multi.models_trained == 20


def test_mislabelled_canaries_multi_run(data):
    res = audit_dp_classifier(dp_hooks.train_knn, data, _cfg("multi-run", canary_kind="mislabelled"))
    d = res.detail
    assert (d["n_in"], d["n_out"], d["n_select_in"], d["selection"]) == (5, 5, 5, "split")
    assert res.epsilon_lb == pytest.approx(res.max_certifiable)  # perfectly separated
    assert res.canary_kind == "mislabelled" and res.n_canaries == 1


def test_clipbkd_canary_multi_run_and_its_limit(data):
    from leakaudit.attacks.dp_audit.canaries import clipbkd_canaries

    c = clipbkd_canaries(data.x, 2, n_classes=10, seed=0)
    x = np.asarray(data.x, np.float64).reshape(len(data.x), -1)
    # on the data's least-variance directions: the data barely varies along them
    assert np.var((x - x.mean(0)) @ (c.x[0] / np.linalg.norm(c.x[0]))) < 1e-3 * np.var(x, 0).sum()
    res = audit_dp_classifier(dp_hooks.train_knn, data, _cfg("multi-run", canary_kind="clipbkd"))
    assert res.epsilon_lb == pytest.approx(res.max_certifiable) and res.canary_kind == "clipbkd"
    ctrl = audit_dp_classifier(dp_hooks.train_ignores_data, data, _cfg("multi-run", canary_kind="clipbkd"))
    assert ctrl.epsilon_lb == 0.0  # negative control: same score in and out
    with pytest.raises(InputError, match="principal directions"):
        audit_dp_classifier(dp_hooks.train_knn, data, _cfg("one-run", canary_kind="clipbkd"))


def test_bad_hooks_and_config(data):
    with pytest.raises(InputError, match="module:function"):
        load_hook("no_colon")
    with pytest.raises(InputError, match="cannot import"):
        load_hook("no_such_module_xyz:train")
    with pytest.raises(InputError, match="expected a torch.nn.Module"):
        audit_dp_classifier(dp_hooks.not_a_model, data, _cfg("one-run"))
    with pytest.raises(InputError, match="mode"):
        audit_dp_classifier(dp_hooks.train_knn, data, _cfg("two-run"))
    with pytest.raises(InputError, match="pool"):
        audit_dp_classifier(dp_hooks.train_knn, ClassifierData(data.x, data.y, 10), _cfg("one-run", canary_kind="mislabelled"))


def test_canary_scores_through_the_classifier_factory_equal_the_old_path(data, tmp_path, monkeypatch):
    """What a pipeline returns goes through the factory `invert` and `membership classifier` use:
    on the same models the canary scores equal the old hand-wrapped path (TorchClassifier,
    SklearnClassifier) exactly, and the ONNX export of the same model, returned by its path,
    gives the same audit (scores within float tolerance, the same ε̂)."""
    pytest.importorskip("onnxruntime")
    from leakaudit.attacks.dp_audit.classifier import canary_scores
    from leakaudit.audits.dp_audit import _as_classifier, make_canaries
    from leakaudit.targets.classifier import SklearnClassifier, TorchClassifier

    canaries = make_canaries(data, 400, kind="crafted", seed=0)
    module, _ = dp_hooks.train_mlp(data.x, data.y, seed=0)
    knn, _ = dp_hooks.train_knn(data.x, data.y, seed=0)
    old_mlp = canary_scores(TorchClassifier(module, n_classes=10, input_shape=(64,)), canaries)
    old_knn = canary_scores(SklearnClassifier(knn, input_shape=(64,)), canaries)
    np.testing.assert_array_equal(canary_scores(_as_classifier(module, data), canaries), old_mlp)
    np.testing.assert_array_equal(canary_scores(_as_classifier(knn, data), canaries), old_knn)
    # a bare predict_proba function is a classifier target too
    np.testing.assert_array_equal(canary_scores(_as_classifier(knn.predict_proba, data), canaries), old_knn)
    assert np.abs(old_mlp - old_knn).max() > 1  # the scores are the model's, not a constant

    monkeypatch.setenv("LEAKAUDIT_TEST_ONNX_DIR", str(tmp_path))
    native = audit_dp_classifier(dp_hooks.train_mlp, data, _cfg("one-run"), store_dir=tmp_path / "a")
    onnx = audit_dp_classifier(dp_hooks.train_mlp_onnx, data, _cfg("one-run"), store_dir=tmp_path / "b")
    scores = [np.array(json.loads(next((tmp_path / d).glob("*/run.json")).read_text())["scores"])
              for d in ("a", "b")]
    np.testing.assert_allclose(scores[1], scores[0], atol=1e-4, rtol=0)
    assert onnx.epsilon_lb == native.epsilon_lb and onnx.detail == native.detail
    assert not (next((tmp_path / "b").glob("*/")) / "model.safetensors").exists()  # a path, no weights


def test_a_label_only_pipeline_is_refused_naming_the_capability(data, tmp_path):
    """Negative control: the same MLP behind a label-only API cannot serve the canary score
    (it needs probabilities); the audit says so, stores nothing, and the CLI exits 2 in one line."""
    from leakaudit.cli import app

    with pytest.raises(CapabilityError, match="canary score .* needs probabilities"):
        audit_dp_classifier(dp_hooks.train_mlp_label_only, data, _cfg("one-run"), store_dir=tmp_path / "s")
    assert not list((tmp_path / "s").glob("*/run.json"))
    npz = tmp_path / "d.npz"
    np.savez(npz, x=data.x, y=data.y)
    r = CliRunner().invoke(app, ["dp-audit", "--train", "tests.dp_hooks:train_mlp_label_only", "--data",
                                 str(npz), "--canaries", "50", "--out", str(tmp_path / "o")])
    errors = [line for line in r.output.splitlines() if line.startswith("error:")]
    assert r.exit_code == 2 and len(errors) == 1 and "needs probabilities" in errors[0], r.output
    assert not (tmp_path / "o" / "report.jsonl").exists()


def test_cli_user_hook_and_resume(data, tmp_path):
    from leakaudit.cli import app

    npz = tmp_path / "d.npz"
    np.savez(npz, x=data.x, y=data.y)
    out = tmp_path / "out"
    args = ["dp-audit", "--train", "tests.dp_hooks:train_knn", "--data", str(npz), "--canaries", "300",
            "--out", str(out)]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "max certifiable ε" in r.output and "claimed ε = 1.000" in r.output and "claim refuted" in r.output
    assert "1 model(s) trained, 0 reused" in r.output
    recs = [json.loads(line) for line in (out / "report.jsonl").read_text().splitlines()]
    assert [x["entry_type"] for x in recs] == ["run", "dp_audit"]
    assert recs[1]["epsilon_lb"] > 1 and recs[1]["refuted"] and recs[1]["detail"]["m"] == 300
    # the findings schema: a refuted DP claim is a critical finding whose metric is ε̂
    assert recs[1]["severity"] == "critical" and recs[1]["metric"]["name"] == "epsilon_lb"
    assert recs[1]["metric"]["value"] == recs[1]["epsilon_lb"] and "schema_version" in recs[1]
    stage = next(out.glob(".leakaudit/store/dp-audit-model-*"))  # the model is a run-store stage
    assert stat.S_IMODE((stage / "run.json").stat().st_mode) == 0o600 and (stage / "stage.json").is_file()
    assert stat.S_IMODE((out / "report.jsonl").stat().st_mode) == 0o600
    r2 = CliRunner().invoke(app, args)
    assert r2.exit_code == 0 and "0 model(s) trained, 1 reused" in r2.output


@pytest.mark.parametrize("extra,msg", [(["--mode", "bogus"], "mode must be one of"),
                                       (["--train", "nosuch_mod_q:f", "--data", "x.npz"], "cannot import"),
                                       (["--train", "tests.dp_hooks:train_knn"], "needs --data"),
                                       (["--confidence", "1.5"], "confidence"),
                                       (["--world", "image"], "must be classifier or lm"),
                                       (["--world", "lm", "--mode", "multi-run"], "one-run only"),
                                       (["--world", "lm", "--train", "tests.dp_hooks:lm_ignores_data"],
                                        "one document per line"),
                                       (["--world", "lm", "--lab-variant", "sample_rate"], "dp, no_noise or none")])
def test_cli_bad_input_is_one_line_exit_2(extra, msg, tmp_path):
    from leakaudit.cli import app

    r = CliRunner().invoke(app, ["dp-audit", "--out", str(tmp_path / "o"), *extra])
    assert r.exit_code == 2, r.output
    assert msg in r.output and "error:" in r.output
