"""Report sections for model inversion and attribute inference, from synthetic records."""

import json
import re

import numpy as np

from leakaudit.attacks.inversion.audit import inversion_summary
from leakaudit.report.writer import write_report
from leakaudit.report.html import ReportData, build_attribute_inference, build_inversion, render_html
from leakaudit.report.records import TAXONOMY

XSS = "<script>alert(1)</script>"


def rate(k, n):
    return {"k": k, "n": n, "value": k / n, "ci_low": 0.1, "ci_high": 0.9, "ci_level": 0.95}


def records():
    means = np.eye(3, 4).round(3).tolist()
    base = {"tags": TAXONOMY["inversion"], "top_k": 2, "chance_top1": 1 / 3, "image_shape": [2, 2],
            "start": "mean image", "evaluator": "MLP", "evaluator_accuracy": 0.95, "class_means": means,
            "target_description": f"model {XSS}", "seeds": [0, 1], "sweep": False, "variant": None}
    out = [("inversion", {**base, "attack": "mi_face", "target": XSS, "defense": "none",
                          "budget_per_class": None, "top1": rate(3, 3), "topk": rate(3, 3),
                          "nearest_own_mean": rate(2, 3), "mean_target_confidence": 0.99,
                          "queries_total": 30, "n_runs": 1})]
    for b, k in ((10, 1), (40, 3)):
        out.append(("inversion", {**base, "attack": "nes", "target": "t", "defense": "rounded_1",
                                  "budget_per_class": b, "top1": rate(k, 3), "topk": rate(3, 3),
                                  "nearest_own_mean": rate(k, 3), "sweep": b == 10, "queries_total": 3 * b,
                                  "dp": {"epsilon": 1.75, "delta": 1e-5, "noise_multiplier": 4.0,
                                         "max_grad_norm": 1.0, "steps": 300, "accountant": "rdp"}}))
    for c in range(3):
        out.append(("inversion_record", {"attack": "mi_face", "target": XSS, "defense": "none", "class": c,
                                         "run": 0, "image_shape": [2, 2], "reconstruction": means[c]}))
    out.append(("attribute_inference", {"attack": "fredrikson14", "target": "mlp", "mode": "label",
                                        "records": "members", "control": False, "sensitive_attribute": "smoker",
                                        "label": "heart_disease", "features": ["age", "smoker"],
                                        "prior": [0.7, 0.3], "prior_source": "public", "n": 100,
                                        "accuracy": {**rate(88, 100), "ci_low": 0.8, "ci_high": 0.93},
                                        "baseline": {"name": "marginal", **rate(70, 100), "ci_low": 0.6,
                                                     "ci_high": 0.78},
                                        "advantage": 0.18, "queries": 200, "doc_uri": "https://x"}))
    return out


def test_inversion_sections_render_escaped_with_images(tmp_path):
    write_report(tmp_path, run_record={"command": "test", "seed": 0, "config": {}}, records=records(),
                 summary=inversion_summary(records()), formats=())
    rd = ReportData.load(tmp_path)
    inv = build_inversion(rd)
    assert [r["attack"] for r in inv.data["rows"]] == ["mi_face", "nes"]  # the sweep row is plotted, not tabled
    assert any(k == "DP-SGD" and "ε = 1.75" in v and "σ = 4.0" in v and "C = 1.0" in v for k, v in inv.data["facts"])
    ai = build_attribute_inference(rd)
    assert ai.data["rows"][0]["beats"] is True and ai.data["rows"][0]["advantage"] == "+18.0 pts"
    html = render_html(tmp_path).read_text()
    assert XSS not in html and "&lt;script&gt;" in html
    for anchor in ("sec-inversion", "sec-inversion-grid", "sec-inversion-budget", "sec-attribute-inference"):
        assert f'id="{anchor}"' in html
    assert len(re.findall(r'src="data:image/png;base64,', html)) == 2  # grid + budget plot
    assert "88 / 100" in html and "70 / 100" in html


def test_inversion_only_report_says_so(tmp_path):
    write_report(tmp_path, run_record={"command": "test", "seed": 0, "config": {}}, records=records(),
                 summary=inversion_summary(records()), formats=())
    html = render_html(tmp_path).read_text()
    assert "Model inversion audit" in html and "Training-data extraction audit" not in html
    assert "Fredrikson, Jha &amp; Ristenpart" in html and "k-eidetic" not in html


def test_inversion_sections_join_an_extraction_report(tmp_path):
    """The lab's path: inversion records appended to an extraction report (extra_records)."""
    from leakaudit.report.records import _clean
    from tests.test_report_html import write_report

    d = write_report(tmp_path / "r")
    lines = (d / "report.jsonl").read_text().splitlines()
    extra = [json.dumps({"entry_type": t, **_clean(r)}) for t, r in records()]
    (d / "report.jsonl").write_text("\n".join(lines[:-1] + extra + lines[-1:]) + "\n")
    html = render_html(d).read_text()
    assert "Training-data extraction audit" in html and 'id="sec-precision"' in html
    assert 'id="sec-inversion"' in html and 'id="sec-attribute-inference"' in html
