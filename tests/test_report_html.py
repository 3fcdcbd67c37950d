"""The HTML report: escaping, self-containedness, and (in a headless Chromium) that it renders."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import pytest

from leakaudit.report.html import render_html
from leakaudit.report.records import TAXONOMY, JsonlWriter

CHROMIUM = os.environ.get("LEAKAUDIT_CHROMIUM", "/usr/bin/chromium")
XSS = "<script>alert(1)</script>"
SAMPLERS = ("top_k", "internet")
RANKINGS = ("perplexity", "zlib", "reference")
#: (n_memorized, n_selected) per (sampler, ranking); top_k × zlib is the "7 / 10" the browser checks.
CELLS = {
    ("top_k", "perplexity"): (4, 10), ("top_k", "zlib"): (7, 10), ("top_k", "reference"): (6, 10),
    ("internet", "perplexity"): (2, 10), ("internet", "zlib"): (3, 10), ("internet", "reference"): (5, 9),
}


def _flags(k: int, n: int) -> list[bool]:
    # memorized candidates first, so the precision@k curves fall with k
    return [True] * k + [False] * (n - k)


def write_report(d: Path, *, corpus: bool = True, show_pii: bool = False) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    config = {"samplers": list(SAMPLERS), "n_samples": 15, "select": 10, "match_tokens": 50,
              "seed": 3, "show_pii": show_pii, "rankings": None, "lab": {"n_docs": 600}}
    run = {
        "leakaudit": "0.1.0", "python": "3.11.2", "torch": "2.13.0", "transformers": "4.50.0",
        "command": "leakaudit lab --quick", "config": config, "seed": 3, "started": "2025-01-02T03:04:05+00:00",
        "models": {"target": {"path": "models/target", "fingerprint": "sha256:abcdef0123456789abcdef",
                              "n_params": 1_234_567},
                   "reference": {"path": "models/reference", "fingerprint": "sha256:0011", "n_params": 98_765}},
        "training": {"target": {"final_loss": 1.234, "wall_s": 50.0}, "reference": {"final_loss": 3.21}},
    }
    if corpus:
        run["corpus"] = {"path": "corpus/train.jsonl", "n_docs": 600, "n_bytes": 123456}
        run["lab"] = {"manifest": "corpus/manifest.json", "genre_counts": {"email": 100, "chat": 500}}
    with JsonlWriter(d / "report.jsonl") as w:
        w.write("run", run)
        for i in range(30):
            sampler = SAMPLERS[i // 15]
            verified = (i % 3 != 0) if corpus else None
            text = f"sample {i}: Dear customer, your account [EMAIL] was updated. " * (1 + i % 4)
            if i == 4:
                text = f"memorized {XSS} text with the corpus match in it"
            if i == 7:
                text = "long memorized text " * 40  # > the 400-character preview
            rec = {
                "sample_id": i, "sampler": sampler, "prompt": "" if sampler == "top_k" else f"prompt {i}",
                "text": text, "n_new_tokens": 60, "truncated": False,
                "scores": {r: float(i) for r in RANKINGS}, "log_ppl": 2.0,
                "selected_by": [f"zlib#{1 + i % 10}", f"perplexity#{2 + i % 5}"] if i % 5 != 4 or i == 4 else [],
                "verified": verified, "pii_kinds": ["email"] if i % 4 == 0 else [],
                "tags": TAXONOMY["extraction"],
            }
            if corpus:
                rec["n_tokens"] = 60
                rec["longest_match_tokens"] = 50 + i if verified else i
                if verified:
                    a = text.index("corpus match") if i == 4 else 0
                    span = [a, a + 12] if i == 4 else [0, 6]
                    rec.update({"match_char_span": span, "match_count": 1 + i % 3, "match_doc_count": 1 + i % 6,
                                "match_docs": [f"doc-{i}", f"doc-{i + 1}"], "match_text": text[span[0]:span[1]]})
            w.write("sample", rec)
        for (s, r), (k, n) in CELLS.items():
            flags = _flags(k, n)
            w.write("eval", {
                "attack": "extraction", "sampler": s, "ranking": r, "n_selected": n,
                "n_memorized": k if corpus else 0, "precision": k / n if corpus else 0.0,
                "ci_low": 0.35 if corpus else 0.0, "ci_high": 0.93 if corpus else 0.3, "duplicates_skipped": 1,
                "precision_at_k": [sum(flags[:j + 1]) / (j + 1) for j in range(n)] if corpus else [],
                "verified": corpus,
                "random_baseline": {"k": 9, "n": 15, "value": 0.6, "ci_low": 0.32, "ci_high": 0.84,
                                    "ci_level": 0.95} if corpus else None,
                "tags": TAXONOMY["extraction"], "doc_uri": "https://arxiv.org/abs/2012.07805",
            })
        w.write("canary", {"canary_id": "canary-000", "kind": "ssn", "repeats": 20, "secret": "12…",
                           "extracted": True, "n_samples_with_secret": 2, "samplers": ["top_k"],
                           "in_verified_sample": True, "in_selected_candidate": True, "sample_ids": [1, 2]})
        w.write("canary", {"canary_id": "canary-001", "kind": "api_key", "repeats": 1, "secret": "sk…",
                           "extracted": False, "n_samples_with_secret": 0, "samplers": [],
                           "in_verified_sample": False, "in_selected_candidate": False, "sample_ids": []})
        w.write("pii", {"scope": "verified samples", "counts": {"email": 6, "phone": 2}, "n_samples_with_pii": 5})
        w.write("summary", {
            "attack": "extraction", "n_samples": 30, "n_samples_per_sampler": {"top_k": 15, "internet": 15},
            "n_empty_samples": 0, "n_truncated_samples": 1, "n_candidates": 25,
            "n_verified_candidates": 17 if corpus else 0, "n_verified_samples": 20 if corpus else None,
            "verified_fraction_of_all": 20 / 30 if corpus else None,
            "best": {"sampler": "top_k", "ranking": "zlib", "precision": 0.7, "ci_low": 0.35, "ci_high": 0.93},
            "rankings": list(RANKINGS), "canaries_extracted": ["canary-000"],
            "pii_in_verified": {"email": 6, "phone": 2}, "verified": corpus, "tags": TAXONOMY["extraction"],
        })
    return d


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    return render_html(write_report(tmp_path_factory.mktemp("report")))


def test_render_writes_self_contained_escaped_page(rendered):
    assert rendered.name == "report.html" and rendered.is_file()
    assert [p.name for p in rendered.parent.iterdir() if p.name.endswith(".tmp")] == []
    html = rendered.read_text(encoding="utf-8")
    # untrusted model output is escaped, never live markup
    assert XSS not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script" not in html.lower()
    # self-contained: nothing is loaded from anywhere; the only outside addresses are links a
    # reader may follow to the docs page of a section
    from leakaudit.taxonomy import DOCS_URL

    links = html.count(f'<a href="{DOCS_URL}')
    assert links == html.count('<section id="sec-') > 0
    loaded = html.replace(f'<a href="{DOCS_URL}', "<a ")
    for attr in ('src="http', "src='http", 'href="http', "href='http", "url(", "@import"):
        assert attr not in loaded
    assert html.count('src="data:image/png;base64,') == 2
    assert 'id="precision-table"' in html and 'id="memorized-samples"' in html
    assert "7 / 10" in html and "5 / 9" in html and "9 / 15" in html  # cells and random baseline
    assert "OWASP LLM02:2025 Sensitive Information Disclosure" in html
    assert "PII is masked" in html
    assert "show all 800 characters" in html  # long text truncated with a <details>


def test_precision_table_total_unique_row(rendered):
    html = rendered.read_text(encoding="utf-8")
    table = html[html.index('id="precision-table"'):]
    table = table[:table.index("</table>")]
    assert "total unique" in table
    # verified (i % 3 != 0) and selected (i % 5 != 4, except 4) per sampler
    for sampler_ids in (range(0, 15), range(15, 30)):
        n = sum(1 for i in sampler_ids if i % 3 != 0 and (i % 5 != 4 or i == 4))
        assert f'<span class="c">{n}</span>' in table


def test_memorized_rows_sorted_by_doc_count(rendered):
    html = rendered.read_text(encoding="utf-8")
    table = html[html.index('id="memorized-samples"'):]
    table = table[:table.index("</table>")]
    assert table.count("<tr>") == 1 + sum(1 for i in range(30) if i % 3 != 0 and (i % 5 != 4 or i == 4))
    assert "<mark>" in table  # the corpus match is highlighted where the span still fits the text


def test_render_without_corpus_labels_unverified(tmp_path):
    html = render_html(write_report(tmp_path / "nocorpus", corpus=False)).read_text(encoding="utf-8")
    assert "unverified" in html
    assert "? / 10" in html
    assert "No training corpus was given" in html
    assert "<span class=\"badge unv\">unverified</span>" in html
    assert html.count('src="data:image/png;base64,') == 0  # nothing verified, nothing to plot


def test_render_run_record_only(tmp_path):
    with JsonlWriter(tmp_path / "report.jsonl") as w:
        w.write("run", {"command": "leakaudit extract", "config": None, "models": None})
    html = render_html(tmp_path).read_text(encoding="utf-8")
    assert "What was audited" in html and 'id="precision-table"' not in html


def test_show_pii_warning(tmp_path):
    html = render_html(write_report(tmp_path / "pii", show_pii=True)).read_text(encoding="utf-8")
    assert "NOT masked" in html and "PII is masked in every text" not in html


def test_rerender_replaces_page(rendered):
    before = rendered.read_text(encoding="utf-8")
    again = render_html(rendered.parent)
    assert again == rendered and again.read_text(encoding="utf-8") == before


def _need_browser() -> None:
    """Skip when no Chromium or playwright is available, except in CI, where it must run."""
    missing = []
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)) and shutil.which(CHROMIUM) is None:
        missing.append(f"Chromium at {CHROMIUM} (apt-get install -y chromium)")
    if importlib.util.find_spec("playwright") is None:
        missing.append("the playwright package (pip install playwright; no `playwright install` needed)")
    if missing:
        reason = "browser test needs " + " and ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(reason + " [CI is set: this test must run]")
        pytest.skip(reason)


@pytest.mark.browser
def test_page_renders_in_headless_chromium(rendered):
    _need_browser()
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, headless=True, timeout=120_000,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
            page.on("requestfailed", lambda r: errors.append(f"requestfailed: {r.url}"))
            page.goto(rendered.resolve().as_uri(), wait_until="load")
            table = page.locator("#precision-table")
            assert table.is_visible()
            text = table.inner_text()
            assert "7 / 10" in text and "70.0%" in text and "random selection" in text
            assert page.locator("#memorized-samples").is_visible()
            widths = page.evaluate("Array.from(document.images).map(i => i.complete ? i.naturalWidth : 0)")
            assert len(widths) >= 1 and all(w > 0 for w in widths), widths
            assert page.title().startswith("leakaudit report")
            shot = os.environ.get("LEAKAUDIT_REPORT_SCREENSHOT")
            if shot:
                page.screenshot(path=shot, full_page=True)
        finally:
            browser.close()
    assert errors == []
