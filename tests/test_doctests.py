"""Run the doctests of the pure-maths modules and the scorer's batching rule: each pins a number
checkable by hand or from a published source (TF Privacy's exposure tests, Hayes et al.'s (n, p)
formulas, Clopper–Pearson)."""

import doctest
import importlib

import pytest

MODULES = [
    "leakaudit.metrics.stats",
    "leakaudit.metrics.memorization",
    "leakaudit.metrics.exposure",
    "leakaudit.metrics.dp_audit",
    "leakaudit.attacks.dp_audit.canaries",
    "leakaudit.attacks.dp_audit.lm",
    "leakaudit.attacks.canaries.spaces",
    "leakaudit.signals.lm",
    "leakaudit.targets.hf",
    "leakaudit.targets.api_client",
    "leakaudit.targets.openai_api",
    "leakaudit.defenses.unlearning",
    "leakaudit.audits.output_filter",
    "leakaudit.triage.model",
    "leakaudit.lab.finetune",
    "leakaudit.lab.corpus",
]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name):
    mod = importlib.import_module(name)
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no doctests"
    assert result.failed == 0
