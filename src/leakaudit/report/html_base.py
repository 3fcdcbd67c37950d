"""Building blocks of the HTML report shared by ``html.py`` and the section modules
(``sections_*.py``): the section type, the grouped report data, figure helpers. Kept apart from
``html.py`` so section modules import it without an import cycle."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from leakaudit.report.reader import load_report
from leakaudit.taxonomy import doc_uri

#: The docs page of each report section, by section id: a key of
#: :data:`leakaudit.taxonomy.DOC_PAGES` (an entry type or an attack family). A section missing
#: here links to the findings page; ``tests/test_doc_links.py`` fails on one that is missing.
SECTION_DOCS: dict[str, str] = {
    "summary": "extraction", "precision": "extraction", "precision-at-k": "extraction",
    "match-length": "extraction", "memorized-samples": "extraction", "canaries": "extraction",
    "pii": "extraction",
    "inversion": "inversion", "inversion-grid": "inversion", "inversion-budget": "inversion",
    "attribute-inference": "inversion",
    "membership": "membership", "membership-records": "membership",
    "memorization": "memorization", "exposure": "exposure", "pii-probes": "pii_probe",
    "defenses": "defense_comparison", "output-filter": "output_filter", "erasure": "erasure",
    "dp-audit": "dp_audit",
}


@dataclass
class Section:
    """One block of the page: drawn by the template macro ``kind`` with ``data``."""

    id: str
    title: str
    kind: str
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def doc_uri(self) -> str:
        """The docs page that explains this section (see :data:`SECTION_DOCS`)."""
        return doc_uri(SECTION_DOCS.get(self.id))


@dataclass
class ReportData:
    """The grouped records of one report, with the lookups every builder needs."""

    records: dict[str, list[dict[str, Any]]]
    run: dict[str, Any]
    config: dict[str, Any]

    @classmethod
    def load(cls, report_dir: str | Path) -> "ReportData":
        records = load_report(report_dir)
        run = records["run"][0]
        config = run.get("config") if isinstance(run.get("config"), dict) else {}
        return cls(records, run, config)

    def of(self, entry_type: str, attack: str | None = None) -> list[dict[str, Any]]:
        """Records of one type; with ``attack``, only those of that family (a finding's
        ``family``; a summary names its family in ``attack``, extraction's omits it)."""
        recs = self.records.get(entry_type, [])
        if attack is None:
            return recs
        return [r for r in recs if (r.get("family") or r.get("attack", "extraction")) == attack]

    @property
    def show_pii(self) -> bool:
        return bool(self.config.get("show_pii", False))

    def summary(self, attack: str) -> dict[str, Any]:
        recs = self.of("summary", attack)
        return recs[-1] if recs else {}


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _new_figure(**kw):
    # A bare Figure draws with Agg and never touches pyplot's global state (or a notebook's figures).
    from matplotlib.figure import Figure

    return Figure(**kw)
