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
