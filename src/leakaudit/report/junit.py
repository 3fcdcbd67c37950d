"""JUnit XML rendering of a report folder (``junit.xml``), one test case per check.

Checks:

- one per (family, attack, target, defense) audited (test suite ``leakaudit.<family>``): it fails
  when a finding of that group has severity ``high`` or above (the failure message names the
  worst one and its metric), and passes otherwise;
  an attack the audit skipped (the target lacks a capability it needs) is a skipped test case;
- one per ``--fail-on`` expression (test suite ``leakaudit.thresholds``): failure when crossed,
  skipped when a quantity it needs was not measured.

Whether the command *exits* 1 depends on the thresholds only; JUnit is for CI dashboards.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from leakaudit.runs.atomic import atomic_write_text
from leakaudit.findings import severity_rank

FAIL_AT = "high"


def _metric_text(f: dict[str, Any]) -> str:
    m = f.get("metric") or {}
    if m.get("value") is None:
        return f"{f['entry_type']}"
    ci = ""
    if m.get("ci_low") is not None and m.get("ci_high") is not None:
        ci = f" (CI {m['ci_low']:.3g}–{m['ci_high']:.3g})"
    return f"{f['entry_type']} {m.get('name')} = {m['value']:.4g}{ci}"


def junit_xml(records: dict[str, list[dict[str, Any]]], verdicts=None) -> str:
    findings = [r for recs in records.values() for r in recs
                if isinstance(r, dict) and "family" in r and isinstance(r.get("target"), dict)]
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for f in findings:
        key = (f["family"], f["attack"], f["target"]["name"], f.get("defense"))
        groups.setdefault(key, []).append(f)
    root = ET.Element("testsuites", name="leakaudit")
    suites: dict[str, ET.Element] = {}
    totals = {"tests": 0, "failures": 0, "skipped": 0}

    def suite(name: str) -> ET.Element:
        if name not in suites:
            suites[name] = ET.SubElement(root, "testsuite", name=name)
        return suites[name]

    for (family, attack, target, defense), fs in groups.items():
        worst = max(fs, key=lambda f: severity_rank(f["severity"]))
        name = f"{attack} on {target}" + (f" with {defense}" if defense else "")
        tc = ET.SubElement(suite(f"leakaudit.{family}"), "testcase", name=name,
                           classname=f"leakaudit.{family}.{attack}")
        props = ET.SubElement(tc, "properties")
        ET.SubElement(props, "property", name="tags", value=",".join(worst.get("tags") or []))
        ET.SubElement(props, "property", name="worst_severity", value=worst["severity"])
        ET.SubElement(props, "property", name="n_findings", value=str(len(fs)))
        if all(f.get("skipped") for f in fs):  # not run: the target lacks a capability it needs
            ET.SubElement(tc, "skipped", message="; ".join(sorted({str(f.get("reason", "skipped"))
                                                                    for f in fs})))
        elif severity_rank(worst["severity"]) >= severity_rank(FAIL_AT):
            n_bad = sum(1 for f in fs if severity_rank(f["severity"]) >= severity_rank(FAIL_AT))
            fail = ET.SubElement(tc, "failure", type=worst["severity"],
                                 message=f"{n_bad} finding(s) of severity {FAIL_AT} or above; worst: "
                                         f"{_metric_text(worst)}")
            fail.text = f"{family}/{attack} on {target}: {n_bad} of {len(fs)} findings at {FAIL_AT}+"
        _count(suites[f"leakaudit.{family}"], totals, tc)
    for v in verdicts or []:
        tc = ET.SubElement(suite("leakaudit.thresholds"), "testcase", name=v.expression,
                           classname="leakaudit.thresholds")
        vals = ", ".join(f"{k} = {'not measured' if x is None else f'{x:g}'}" for k, x in v.values.items())
        if v.crossed is True:
            ET.SubElement(tc, "failure", type="threshold", message=f"crossed: {vals}")
        elif v.crossed is None:
            ET.SubElement(tc, "skipped", message=f"not evaluated: {vals}")
        else:
            ET.SubElement(tc, "system-out").text = f"passed: {vals}"
        _count(suites["leakaudit.thresholds"], totals, tc)
    for k, n in totals.items():
        root.set(k, str(n))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _count(suite_el: ET.Element, totals: dict[str, int], tc: ET.Element) -> None:
    for attr in ("tests", "failures", "skipped"):
        suite_el.set(attr, suite_el.get(attr, "0"))
    suite_el.set("tests", str(int(suite_el.get("tests")) + 1))
    totals["tests"] += 1
    if tc.find("failure") is not None:
        suite_el.set("failures", str(int(suite_el.get("failures")) + 1))
        totals["failures"] += 1
    if tc.find("skipped") is not None:
        suite_el.set("skipped", str(int(suite_el.get("skipped")) + 1))
        totals["skipped"] += 1


def write_junit(report_dir: str | Path, verdicts=None) -> Path:
    """Write ``junit.xml`` next to ``report.jsonl`` and return its path."""
    from leakaudit.report.reader import load_report

    report_dir = Path(report_dir)
    return atomic_write_text(report_dir / "junit.xml", junit_xml(load_report(report_dir), verdicts))
