"""``--fail-on`` thresholds over a report's findings: a small expression language, no ``eval``.

Grammar (case-insensitive keywords)::

    expr    := and ("or" and)*
    and     := unary ("and" unary)*
    unary   := "not" unary | "(" expr ")" | compare
    compare := QUANTITY OP NUMBER            OP: > >= < <= == !=
    NUMBER  := a decimal (1, 0.05, 1e-3) or a percentage (5%)

Quantities (computed from the findings of one report; "max" is over every target audited):

====================== ==============================================================
``extraction.verified`` verified memorized samples (extraction)
``extraction.precision`` best precision of a (sampler, ranking) selection
``canaries.extracted``  inserted canaries the model generated
``exposure.max``        highest canary exposure (bits, extrapolated, capped at the space)
``exposure.rank_max``   highest canary exposure by rank (bits)
``memorization.exact``  highest exact-memorization rate (all windows, any prefix length)
``membership.tpr@F``    highest TPR at FPR ≤ F (F one of the evaluated FPRs), baselines excluded
``membership.auc``      highest AUC (baselines excluded)
``membership.epsilon_lb`` highest ε lower bound
``inversion.top1``      highest evaluator top-1 accuracy of reconstructions
``findings.SEVERITY``   number of findings at SEVERITY or above (info … critical)
``FAMILY.METRIC``       generic: highest ``metric.value`` named METRIC among FAMILY's findings
====================== ==============================================================

A quantity the report did not measure (e.g. ``membership.auc`` on an extraction run) makes its
comparison *not evaluated*, and the command exits 2 naming the quantities the run did measure: a
CI gate on something that was never measured must not pass. Several ``--fail-on`` options are
combined with "or": the command exits 1 if any is crossed. Parentheses and ``not`` nest at most
:data:`MAX_DEPTH` deep.

Exit codes of every command: 0 passed, 1 a threshold was crossed, 2 bad input (an unmeasured
``--fail-on`` quantity included), 130 interrupted (SIGINT), 143 terminated (SIGTERM).
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass, field
from typing import Any

from leakaudit.errors import InputError
from leakaudit.findings import ENTRY_TYPES, SEVERITIES, severity_rank

EXIT_PASSED, EXIT_THRESHOLD, EXIT_BAD_INPUT, EXIT_SIGINT, EXIT_SIGTERM = 0, 1, 2, 130, 143

#: how deep parentheses and ``not`` may nest in one expression
MAX_DEPTH = 32

OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
       "==": operator.eq, "!=": operator.ne}
FIXED = ("extraction.verified", "extraction.precision", "canaries.extracted", "exposure.max",
         "exposure.rank_max", "memorization.exact", "membership.auc", "membership.epsilon_lb",
         "inversion.top1")
_TOKEN = re.compile(r"\s*(?:(?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?%?)"
                    r"|(?P<op>>=|<=|==|!=|>|<)|(?P<paren>[()])"
                    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_@.:%+-]*[A-Za-z0-9_%])?))")


@dataclass(frozen=True)
class Compare:
    quantity: str
    op: str
    value: float

    def __str__(self) -> str:
        return f"{self.quantity} {self.op} {self.value:g}"


@dataclass(frozen=True)
class Not:
    arg: Any


@dataclass(frozen=True)
class BoolOp:
    op: str  # "and" | "or"
    args: tuple


@dataclass
class Verdict:
    """One ``--fail-on`` expression evaluated: ``crossed`` is True/False, or None when a quantity
    it needs was not measured."""

    expression: str
    crossed: bool | None
    values: dict[str, float | None] = field(default_factory=dict)
    measured: tuple[str, ...] = ()  # every quantity the report measured (for the message)

    @property
    def status(self) -> str:
        return "not evaluated" if self.unmeasured else \
            {True: "crossed", False: "passed", None: "not evaluated"}[self.crossed]

    @property
    def unmeasured(self) -> list[str]:
        return [k for k, v in self.values.items() if v is None]

    def error(self) -> str:
        """The one-line message of an expression that needs a quantity the run did not measure."""
        return (f"--fail-on {self.expression!r}: this run did not measure "
                f"{', '.join(self.unmeasured)}; it measured "
                f"{', '.join(self.measured) if self.measured else 'nothing --fail-on can test'}")


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise InputError(f"--fail-on {text!r}: cannot read {text[pos:].strip()!r}")
        kind = m.lastgroup
        out.append((kind, m.group(kind)))
        pos = m.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return out


def _check_quantity(name: str, text: str) -> str:
    q = name.lower()
    if q in FIXED or re.fullmatch(r"membership\.tpr@[0-9.e-]+", q):
        return q
    fam, _, rest = q.partition(".")
    if fam == "findings" and rest in SEVERITIES:
        return q
    families = {et.family for et in ENTRY_TYPES.values() if et.family}
    if rest and fam in families:
        return q
    raise InputError(f"--fail-on {text!r}: unknown quantity {name!r}; known: "
                     f"{', '.join(FIXED)}, membership.tpr@F, findings.SEVERITY, FAMILY.METRIC "
                     f"(families: {', '.join(sorted(families))})")


def parse(text: str):
    """Parse one ``--fail-on`` expression into a tree; bad input raises :class:`InputError`."""
    toks = _tokens(text)
    pos = 0

    def peek():
        return toks[pos] if pos < len(toks) else (None, None)

    def take():
        nonlocal pos
        if pos >= len(toks):
            raise InputError(f"--fail-on {text!r}: unexpected end")
        pos += 1
        return toks[pos - 1]

    def expr():
        args = [conj()]
        while peek()[0] == "name" and peek()[1].lower() == "or":
            take()
            args.append(conj())
        return args[0] if len(args) == 1 else BoolOp("or", tuple(args))

    def conj():
        args = [unary()]
        while peek()[0] == "name" and peek()[1].lower() == "and":
            take()
            args.append(unary())
        return args[0] if len(args) == 1 else BoolOp("and", tuple(args))

    depth = 0

    def nested(inner):
        nonlocal depth
        depth += 1
        if depth > MAX_DEPTH:
            raise InputError(f"--fail-on {text[:60]!r}…: parentheses and 'not' nest more than "
                             f"{MAX_DEPTH} deep")
        try:
            return inner()
        finally:
            depth -= 1

    def unary():
        kind, val = peek()
        if kind == "name" and val.lower() == "not":
            take()
            return Not(nested(unary))
        if kind == "paren" and val == "(":
            take()
            e = nested(expr)
            if take() != ("paren", ")"):
                raise InputError(f"--fail-on {text!r}: missing ')'")
            return e
        kind, name = take()
        if kind != "name":
            raise InputError(f"--fail-on {text!r}: expected a quantity, got {name!r}")
        quantity = _check_quantity(name, text)
        kind, op = take()
        if kind != "op":
            raise InputError(f"--fail-on {text!r}: expected one of {' '.join(OPS)} after {name}, got {op!r}")
        kind, num = take()
        if kind != "num":
            raise InputError(f"--fail-on {text!r}: expected a number after {op}, got {num!r}")
        value = float(num[:-1]) / 100 if num.endswith("%") else float(num)
        return Compare(quantity, op, value)

    if not toks:
        raise InputError("--fail-on needs an expression such as 'extraction.verified > 0'")
    tree = expr()
    if pos != len(toks):
        raise InputError(f"--fail-on {text!r}: unexpected {toks[pos][1]!r}")
    return tree


def parse_all(texts: list[str] | None) -> list[tuple[str, Any]]:
    return [(t, parse(t)) for t in (texts or [])]


# ------------------------------------------------------------------ quantities from findings

def _max(values) -> float | None:
    vals = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return max(vals) if vals else None


def _obj(x: Any) -> dict[str, Any]:
    """``x`` if it is a JSON object, else an empty one: a field of the wrong type in an edited
    or foreign report counts as not measured (never a crash, never a number)."""
    return x if isinstance(x, dict) else {}


def _objs(x: Any) -> list[dict[str, Any]]:
    return [r for r in x if isinstance(r, dict)] if isinstance(x, list) else []


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def quantities(records: dict[str, list[dict[str, Any]]]) -> dict[str, float | None]:
    """The fixed quantities of one report (``None`` = not measured)."""
    samples = _objs(records.get("sample"))
    q: dict[str, float | None] = {}
    q["extraction.verified"] = (float(sum(1 for s in samples if s.get("verified") is True))
                                if any(isinstance(s.get("verified"), bool) for s in samples) else None)
    q["extraction.precision"] = _max(e.get("precision") for e in _objs(records.get("eval")))
    canaries = _objs(records.get("canary"))
    q["canaries.extracted"] = float(sum(1 for c in canaries if c.get("extracted") is True)) if canaries else None
    exp = [r for r in _objs(records.get("exposure")) if r.get("kind") == "canary"]
    q["exposure.max"] = _max(r.get("exposure_extrapolated") for r in exp)
    q["exposure.rank_max"] = _max(r.get("exposure_rank") for r in exp)
    q["memorization.exact"] = _max(_obj(r.get("exact")).get("value") for r in _objs(records.get("memorization"))
                                   if r.get("kind") == "rate" and r.get("bucket") == "all")
    mia = [r for r in _objs(records.get("membership")) if not r.get("baseline")]
    q["membership.auc"] = _max(r.get("auc") for r in mia)
    q["membership.epsilon_lb"] = _max(r.get("epsilon_lb") for r in mia)
    points = [t for r in mia for t in _objs(r.get("tpr_at_fpr")) if _number(t.get("fpr"))]
    for fpr in sorted({float(t["fpr"]) for t in points}):
        q[f"membership.tpr@{fpr:g}"] = _max(t.get("tpr") for t in points
                                            if t["fpr"] == fpr and t.get("resolvable") is True)
    q["inversion.top1"] = _max(_obj(r.get("top1")).get("value") for r in _objs(records.get("inversion")))
    ranks = [severity_rank(r["severity"]) for recs in records.values() for r in _objs(recs)
             if r.get("severity") in SEVERITIES]
    for sev in SEVERITIES:
        q[f"findings.{sev}"] = float(sum(1 for k in ranks if k >= severity_rank(sev)))
    return q


def _generic(records, quantity: str) -> float | None:
    fam, _, metric = quantity.partition(".")
    return _max(_obj(r.get("metric")).get("value") for recs in records.values() for r in _objs(recs)
                if r.get("family") == fam and isinstance(_obj(r.get("metric")).get("name"), str)
                and r["metric"]["name"].lower() == metric)


def _lookup(q: dict[str, float | None], records, quantity: str) -> float | None:
    if quantity in q:
        return q[quantity]
    if quantity.startswith("membership.tpr@"):
        want = float(quantity.split("@", 1)[1])
        for k, v in q.items():
            if k.startswith("membership.tpr@") and abs(float(k.split("@", 1)[1]) - want) < 1e-12:
                return v
        return None
    return _generic(records, quantity)


def evaluate(tree, q: dict[str, float | None], records, values: dict[str, float | None]) -> bool | None:
    if isinstance(tree, Compare):
        v = _lookup(q, records, tree.quantity)
        values[tree.quantity] = v
        return None if v is None else bool(OPS[tree.op](v, tree.value))
    if isinstance(tree, Not):
        r = evaluate(tree.arg, q, records, values)
        return None if r is None else not r
    results = [evaluate(a, q, records, values) for a in tree.args]
    if tree.op == "and":
        if any(r is False for r in results):
            return False
        return None if any(r is None for r in results) else True
    if any(r is True for r in results):
        return True
    return None if any(r is None for r in results) else False


def check(records: dict[str, list[dict[str, Any]]], expressions: list[str]) -> list[Verdict]:
    """Evaluate every expression on one report's grouped records."""
    q = quantities(records)
    done = measured(q, records)
    out = []
    for text, tree in parse_all(expressions):
        values: dict[str, float | None] = {}
        out.append(Verdict(text, evaluate(tree, q, records, values), values, done))
    return out


def measured(q: dict[str, float | None], records) -> tuple[str, ...]:
    """The quantities a report measured: the fixed ones with a value (``findings.*`` only when
    there are findings) and every ``FAMILY.METRIC`` of its findings."""
    names = {k for k, v in q.items() if v is not None and not k.startswith("findings.")}
    if any(v for k, v in q.items() if k.startswith("findings.")):
        names.add("findings.SEVERITY")
    for recs in records.values():
        for r in _objs(recs):
            if isinstance(r.get("family"), str) and isinstance(_obj(r.get("metric")).get("name"), str):
                names.add(f"{r['family']}.{r['metric']['name'].lower()}")
    return tuple(sorted(names))


def exit_code(verdicts: list[Verdict]) -> int:
    """2 when an expression needs a quantity the run did not measure (a gate that cannot be
    checked must not pass), else 1 when one was crossed, else 0."""
    if any(v.unmeasured for v in verdicts):
        return EXIT_BAD_INPUT
    return EXIT_THRESHOLD if any(v.crossed for v in verdicts) else EXIT_PASSED
