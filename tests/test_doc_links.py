"""Every finding and every HTML report section links to its page of the docs site.

- ``doc_uri`` of a finding is the docs page of its entry type or attack family (under the site's
  ``site_url``), the paper it cites is ``paper_uri``; reports that named the paper ``doc_uri``
  still read (the paper becomes ``paper_uri``);
- the drift check: every ``doc_uri`` the quick lab writes, every SARIF ``helpUri`` and every
  section link of its HTML report is the address of a file under ``docs/`` (and the anchor, when
  there is one, a heading of that file); every section the report code can build has a page.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from leakaudit.findings import ENTRY_TYPES, Finding, TargetRef, upgrade
from leakaudit.taxonomy import DOC_PAGES, DOCS_URL, FALLBACK_DOC_PAGE, doc_uri, page_url

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def _slug(heading: str) -> str:
    """MkDocs' default (Python-Markdown toc) anchor of a heading."""
    s = re.sub(r"[^\w\s-]", "", heading.strip().lower())
    return re.sub(r"[-\s]+", "-", s).strip("-")


def docs_file(uri: str) -> Path:
    """The ``docs/`` file a site address names; AssertionError when there is none (or the
    anchor is no heading of it)."""
    assert uri.startswith(DOCS_URL), f"{uri} is not on the docs site {DOCS_URL}"
    path, _, anchor = uri[len(DOCS_URL):].partition("#")
    assert path == "" or path.endswith("/"), f"{uri}: not a directory URL"
    path = path.rstrip("/")
    candidates = [DOCS / f"{path}.md", DOCS / path / "index.md"] if path else [DOCS / "index.md"]
    found = [c for c in candidates if c.is_file()]
    assert found, f"{uri}: no docs page {candidates[0].relative_to(ROOT)}"
    if anchor:
        heads = [_slug(m.group(1)) for m in re.finditer(r"^#+\s+(.*)$", found[0].read_text(), re.M)]
        assert anchor in heads, f"{uri}: no heading #{anchor} in {found[0].relative_to(ROOT)}"
    return found[0]


def _load_yaml(path: Path) -> dict:
    class _Loader(yaml.SafeLoader):  # mkdocs.yml may hold !!python tags; only keys matter here
        pass

    _Loader.add_multi_constructor("", lambda loader, suffix, node: None)
    return yaml.load(path.read_text(), Loader=_Loader)


def test_site_url_is_the_one_constant():
    assert _load_yaml(ROOT / "mkdocs.yml")["site_url"] == DOCS_URL
    assert DOCS_URL.endswith("/")


@pytest.mark.parametrize("key", sorted(DOC_PAGES))
def test_every_mapped_page_exists(key):
    assert docs_file(doc_uri(key)).is_file()


def test_every_finding_entry_type_has_a_page():
    for et in ENTRY_TYPES.values():
        if et.kind == "finding":
            docs_file(doc_uri(et.name, et.family))
    docs_file(page_url(FALLBACK_DOC_PAGE))


def test_checker_rejects_a_missing_page_and_anchor():
    """Negative controls of :func:`docs_file`."""
    with pytest.raises(AssertionError, match="no docs page"):
        docs_file(DOCS_URL + "concepts/no-such-family/")
    with pytest.raises(AssertionError, match="no heading"):
        docs_file(DOCS_URL + "concepts/membership/#no-such-heading")
    with pytest.raises(AssertionError, match="not on the docs site"):
        docs_file("https://arxiv.org/abs/1709.01604")
    assert docs_file(DOCS_URL + "guides/defenses/#output-filtering-after-training").name == "defenses.md"


def test_doc_uri_is_the_family_page_and_the_paper_is_kept():
    paper = "https://arxiv.org/abs/1709.01604"
    f = Finding("membership", "membership", "loss", TargetRef("t"), data={"doc_uri": paper})
    d = f.to_dict()
    assert d["doc_uri"] == DOCS_URL + "concepts/membership/" and d["paper_uri"] == paper
    assert f.doc_uri == d["doc_uri"] and f.paper_uri == paper
    # read back: the same; the derived doc_uri is not stored as payload
    again = Finding.from_dict(d)
    assert again.to_dict() == d and "doc_uri" not in again.data
    # the entry type's page comes before the family's (erasure is in the membership family)
    e = Finding("erasure", "membership", "erasure_verification", TargetRef("t"))
    assert e.to_dict()["doc_uri"] == DOCS_URL + "guides/erasure/" and e.paper_uri is None
    # an unknown family points at the findings page, never at nothing
    assert Finding("x", "newfamily", "a", TargetRef("t")).doc_uri == DOCS_URL + "concepts/findings/"


def test_a_legacy_report_reads_with_the_paper_as_paper_uri():
    """A schema-1 record (no schema_version) whose doc_uri was the paper, migrated on load."""
    paper = "https://arxiv.org/abs/2012.07805"
    rows = upgrade([{"entry_type": "run", "command": "x", "models": {}},
                    {"entry_type": "membership", "world": "llm", "method": "zlib", "subset": "s",
                     "auc": 0.6, "tpr_at_fpr": [], "doc_uri": paper}])
    assert rows[1]["paper_uri"] == paper
    assert docs_file(rows[1]["doc_uri"]).name == "membership.md"


def _section_ids() -> set[str]:
    """Every section id the report code can build (``Section("id", …)`` / ``Section(id="id"``)."""
    ids = set()
    for py in (ROOT / "src" / "leakaudit" / "report").glob("*.py"):
        ids |= set(re.findall(r"Section\(\s*(?:id=)?\"([\w-]+)\"", py.read_text()))
    return ids


def test_every_report_section_has_a_page():
    from leakaudit.report.html_base import SECTION_DOCS, Section

    ids = _section_ids()
    assert len(ids) >= 15, ids  # the pattern still finds the sections
    assert ids <= set(SECTION_DOCS), sorted(ids - set(SECTION_DOCS))
    for sid in ids:
        assert SECTION_DOCS[sid] in DOC_PAGES, sid
        docs_file(Section(sid, sid, "tables").doc_uri)


def test_lab_links_to_existing_pages(tiny_lab):
    """The drift check over what a run writes: report.jsonl, report.sarif, report.html (the tiny
    lab runs every stage of the quick lab)."""
    out, _, _ = tiny_lab
    reports = sorted(out.rglob("report.jsonl"))
    assert reports
    seen = set()
    for rep in reports:
        for line in rep.read_text().splitlines():
            row = json.loads(line)
            if row["entry_type"] in ("run", "summary") or ENTRY_TYPES.get(row["entry_type"]).kind != "finding":
                continue
            assert "doc_uri" in row, row["entry_type"]
            seen.add(row["doc_uri"])
            assert not row.get("paper_uri") or not row["paper_uri"].startswith(DOCS_URL)
    assert len(seen) >= 3, seen  # extraction, memorization, membership, … at least
    for uri in seen:
        docs_file(uri)

    sarifs = sorted(out.rglob("report.sarif"))
    assert sarifs
    for s in sarifs:
        rules = [r for run in json.loads(s.read_text())["runs"] for r in run["tool"]["driver"]["rules"]]
        assert rules and all("helpUri" in r for r in rules)
        for r in rules:
            docs_file(r["helpUri"])

    htmls = sorted(out.rglob("report.html"))
    assert htmls
    for h in htmls:
        text = h.read_text()
        sections = re.findall(r'<section id="sec-([\w-]+)"[^>]*>\s*<h2>.*?</h2>\s*'
                              r'<p class="small docs"><a href="([^"]+)">', text, re.S)
        assert sections and len(sections) == text.count('<section id="sec-'), h
        for _, href in sections:
            docs_file(href)


def test_sarif_and_html_of_an_older_report_link_the_docs(tmp_path):
    """A schema-2 report written before the docs site (its doc_uri the paper): the SARIF rule's
    helpUri and the HTML section link still go to the docs page; the paper is named as the method."""
    from leakaudit.report.writer import render

    paper = "https://arxiv.org/abs/2012.07805"
    f = Finding("membership", "membership", "zlib", TargetRef("target"), "low",
                ["owasp:LLM02:2025"], data={"world": "llm", "method": "zlib", "subset": "docs",
                                            "auc": 0.7, "auc_ci": [0.6, 0.8], "tpr_at_fpr": []})
    old = {k: v for k, v in f.to_dict().items() if k != "doc_uri"} | {"doc_uri": paper}
    old.pop("paper_uri", None)
    rows = [{"entry_type": "run", "schema_version": 2, "command": "x", "models": {}}, old]
    (tmp_path / "report.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    render(tmp_path, ("html", "sarif"))
    (rule,) = json.loads((tmp_path / "report.sarif").read_text())["runs"][0]["tool"]["driver"]["rules"]
    assert rule["helpUri"] == DOCS_URL + "concepts/membership/" and paper in rule["help"]["text"]
    html = (tmp_path / "report.html").read_text()
    assert f'<a href="{DOCS_URL}concepts/membership/">' in html
