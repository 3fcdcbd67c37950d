"""The full inversion lab (slow): the issue's thresholds, and reruns with the same seed give the
same images."""

import numpy as np
import pytest

from leakaudit.lab.inversion import InversionLabConfig, run_inversion_lab

pytestmark = pytest.mark.slow


def pick(records, entry_type, **match):
    return [r for t, r in records if t == entry_type and all(r.get(k) == v for k, v in match.items())]


def test_full_inversion_lab_thresholds_and_reproducibility():
    cfg = InversionLabConfig(seed=0)
    a = run_inversion_lab(cfg, log=lambda m: None)
    wb = pick(a, "inversion", attack="mi_face", target="softmax_regression", variant=None)[0]
    assert wb["top1"]["k"] >= 9 and wb["nearest_own_mean"]["k"] >= 8
    bb = pick(a, "inversion", attack="nes", target="softmax_regression", defense="none", sweep=False)[0]
    assert bb["n_reconstructions"] == 30 and bb["top1"]["value"] >= 0.7 * wb["top1"]["value"]
    label = pick(a, "inversion", attack="nes", target="softmax_regression", defense="label_only", sweep=False)[0]
    assert label["top1"]["ci_high"] < bb["top1"]["ci_low"]  # label-only: clearly lower, exact CIs
    rounded = pick(a, "inversion", attack="nes", target="softmax_regression", defense="rounded_1", sweep=False)[0]
    assert rounded["mean_target_confidence"] < bb["mean_target_confidence"]
    # the budget sweep covers every defense and budget
    sweep = pick(a, "inversion", attack="nes", target="softmax_regression")
    assert {(r["defense"], r["budget_per_class"]) for r in sweep} == {
        (d, b) for d in ("none", "rounded_1", "label_only") for b in cfg.budgets}
    # same seed, same images
    b = run_inversion_lab(cfg, log=lambda m: None)
    ra, rb = pick(a, "inversion_record"), pick(b, "inversion_record")
    assert len(ra) == len(rb) > 0
    for x, y in zip(ra, rb):
        assert (x["attack"], x["target"], x["defense"], x["variant"], x["class"], x["seed"]) == \
               (y["attack"], y["target"], y["defense"], y["variant"], y["class"], y["seed"])
        assert np.array_equal(x["reconstruction"], y["reconstruction"])
