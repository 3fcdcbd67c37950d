"""The labs as declared lists of stages (lab/stages.py): each stage takes only results of earlier
stages, the walker runs them in order, and a list that asks for a later result is refused before
anything runs."""

from __future__ import annotations

import ast
import inspect

import pytest

from leakaudit.lab.defenses import DEFENSE_LAB_STAGES
from leakaudit.lab.finetune import FINETUNE_LAB_STAGES
from leakaudit.lab.run import LAB_STAGES
from leakaudit.lab.stages import needs, run_stages, stage_order_errors


def test_the_labs_declare_their_stages_in_order():
    assert [n for n, _ in LAB_STAGES] == [
        "corpus", "tokenizer", "models", "index", "memorization", "exposure", "pii_probes",
        "membership", "inversion", "extraction", "report"]
    assert [n for n, _ in DEFENSE_LAB_STAGES] == [
        "corpus", "tokenizer", "training_data", "variants", "index", "battery", "report"]
    assert [n for n, _ in FINETUNE_LAB_STAGES] == [
        "corpus", "general_text", "base", "variants", "index", "battery", "report"]
    assert stage_order_errors(LAB_STAGES) == []
    assert stage_order_errors(DEFENSE_LAB_STAGES) == []
    assert stage_order_errors(FINETUNE_LAB_STAGES) == []
    # the report takes every result the records come from
    assert needs(dict(LAB_STAGES)["report"]) == [
        "corpus", "models", "index", "memorization", "exposure", "pii_probes", "membership",
        "inversion", "extraction"]


@pytest.mark.parametrize("stages", [LAB_STAGES, DEFENSE_LAB_STAGES, FINETUNE_LAB_STAGES],
                         ids=["lab", "defenses", "finetune"])
def test_stages_are_small(stages):
    long = {}
    for _, fn in stages:
        node = ast.parse(inspect.getsource(fn)).body[0]
        if node.end_lineno - node.lineno + 1 > 40:
            long[fn.__name__] = node.end_lineno - node.lineno + 1
    assert not long, long


def _a(run):
    run.append("a")
    return 2


def _b(run, a):
    run.append("b")
    return a * 3


def _c(run, a, b):
    run.append("c")
    return a + b


def test_run_stages_passes_results_by_name():
    calls: list[str] = []
    got = run_stages((("a", _a), ("b", _b), ("c", _c)), calls)
    assert got == {"a": 2, "b": 6, "c": 8}  # 2, 2·3, 2 + 6
    assert calls == ["a", "b", "c"]


def test_a_stage_before_what_it_needs_is_refused_before_anything_runs():
    calls: list[str] = []
    bad = (("a", _a), ("c", _c), ("b", _b), ("a", _a))
    assert stage_order_errors(bad) == ["c needs 'b', which no earlier stage produces",
                                       "a is declared twice"]
    with pytest.raises(ValueError, match="c needs 'b'"):
        run_stages(bad, calls)
    assert calls == []
