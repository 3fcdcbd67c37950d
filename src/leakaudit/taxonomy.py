"""Framework ids every finding carries (OWASP LLM Top 10 2025, MITRE ATLAS).

At the top of the package so every layer may import it. Ids follow the research note
``eco_conventions.md``: ATLAS v5 names ("AI" instead of "ML"); AML.T0048 is *not* a leakage
technique and is not used.
"""

from __future__ import annotations

#: Taxonomy tags carried by every finding of each attack family.
TAXONOMY: dict[str, list[str]] = {
    "extraction": ["owasp:LLM02:2025", "atlas:AML.T0057"],
    "memorization": ["owasp:LLM02:2025", "atlas:AML.T0057"],
    "exposure": ["owasp:LLM02:2025", "atlas:AML.T0057"],
    "membership": ["owasp:LLM02:2025", "atlas:AML.T0024.000"],
    "inversion": ["owasp:LLM02:2025", "atlas:AML.T0024.001"],
}

TAXONOMY_NAMES: dict[str, str] = {
    "owasp:LLM02:2025": "OWASP LLM02:2025 Sensitive Information Disclosure",
    "owasp:LLM06:2023": "OWASP LLM06 (v1.1, 2023) Sensitive Information Disclosure",
    "atlas:AML.T0057": "MITRE ATLAS AML.T0057 LLM Data Leakage",
    "atlas:AML.T0024.000": "MITRE ATLAS AML.T0024.000 Infer Training Data Membership",
    "atlas:AML.T0024.001": "MITRE ATLAS AML.T0024.001 Invert AI Model",
    "atlas:AML.T0024.002": "MITRE ATLAS AML.T0024.002 Extract AI Model",
}

#: Where each tag's definition lives (SARIF rule help links).
TAXONOMY_URIS: dict[str, str] = {
    "owasp:LLM02:2025": "https://genai.owasp.org/llmrisk/llm022025-sensitive-information-disclosure/",
    "atlas:AML.T0057": "https://atlas.mitre.org/techniques/AML.T0057",
    "atlas:AML.T0024.000": "https://atlas.mitre.org/techniques/AML.T0024.000",
    "atlas:AML.T0024.001": "https://atlas.mitre.org/techniques/AML.T0024.001",
    "atlas:AML.T0024.002": "https://atlas.mitre.org/techniques/AML.T0024.002",
}

# ---------------------------------------------------------------------------- docs pages

#: The documentation site's canonical address (``site_url`` in mkdocs.yml; a test checks they are
#: equal). Every finding's ``doc_uri`` and every HTML report section link to a page under it.
DOCS_URL = "https://leakaudit.github.io/leakaudit/"

#: The docs page (a file under ``docs/``, optionally with ``#anchor``) of each attack family, and
#: of the entry types and report sections whose page is not their family's. Keys are entry-type
#: names first (see :func:`doc_page`), then family names.
DOC_PAGES: dict[str, str] = {
    # families
    "extraction": "concepts/extraction.md",
    "memorization": "concepts/memorization.md",
    "exposure": "concepts/canary-exposure.md",
    "membership": "concepts/membership.md",
    "inversion": "concepts/inversion.md",
    "dp_audit": "concepts/dp-auditing.md",
    "defense": "guides/defenses.md",
    "endpoint": "guides/endpoint.md",
    # entry types (and report sections) with a page of their own
    "divergence": "concepts/probes.md",
    "pii_probe": "concepts/probes.md",
    "erasure": "guides/erasure.md",
    "output_filter": "guides/defenses.md#output-filtering-after-training",
    "defense_comparison": "guides/defenses.md",
}
#: Where a finding of a family this table does not know points: what findings are and how to read them.
FALLBACK_DOC_PAGE = "concepts/findings.md"


def doc_page(*keys: str | None) -> str:
    """The docs page (``docs/``-relative file, maybe with ``#anchor``) of the first key that has
    one (an entry type, then a family, …), else the findings page."""
    for k in keys:
        if k and k in DOC_PAGES:
            return DOC_PAGES[k]
    return FALLBACK_DOC_PAGE


def page_url(page: str) -> str:
    """The address of a ``docs/`` page on the site (MkDocs directory URLs:
    ``concepts/extraction.md#x`` → ``DOCS_URL + "concepts/extraction/#x"``)."""
    path, sep, anchor = page.partition("#")
    path = path.removesuffix(".md")
    path = "" if path == "index" else path.removesuffix("/index") + "/"
    return DOCS_URL + path + sep + anchor


def doc_uri(*keys: str | None) -> str:
    """The docs address for :func:`doc_page` of ``keys``."""
    return page_url(doc_page(*keys))
