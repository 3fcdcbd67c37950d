"""End to end on the lab: an overfit target leaks, a model that never saw the data does not."""

import json
from dataclasses import replace

import numpy as np
import pytest

from leakaudit.lab.run import LabConfig, run_lab
from leakaudit.report.records import load_report


# quick_lab: the session fixture in conftest.py (the notebooks of docs/ run on it too)


@pytest.mark.slow
def test_quick_lab_finds_verified_memorized_samples(quick_lab):
    out, summary, _ = quick_lab
    assert summary["n_verified_candidates"] >= 1
    for name in ("report.jsonl", "hits.jsonl", "report.html", "summary.json", "corpus/train.jsonl",
                 "corpus/manifest.json", "models/target/config.json",
                 "models/target/model.safetensors", "models/reference/config.json"):
        assert (out / name).is_file(), name
    assert not list(out.glob(".leakaudit-partial-*"))


@pytest.mark.slow
def test_most_repeated_canary_is_extracted(quick_lab):
    out, summary, _ = quick_lab
    rep = load_report(out)
    top = max(c["repeats"] for c in rep["canary"])
    extracted = [c for c in rep["canary"] if c["extracted"]]
    assert any(c["repeats"] == top for c in extracted), [c["canary_id"] for c in extracted]
    # Extraction follows repetition: the extracted canaries are the often repeated ones.
    assert np.mean([c["repeats"] for c in extracted]) > np.mean([c["repeats"] for c in rep["canary"]])


@pytest.mark.slow
def test_every_verified_sample_has_a_50_token_verbatim_window(quick_lab):
    """Check the suffix-array verdicts independently: brute-force substring search in the corpus."""
    from leakaudit.targets.hf import HFCausalLM

    out, _, _ = quick_lab
    docs = [json.loads(line)["text"] for line in open(out / "corpus/train.jsonl")]
    lm = HFCausalLM.load(out / "models/target")
    hits = [json.loads(line) for line in open(out / "hits.jsonl")]
    assert hits
    for h in hits:
        text = h["text"]
        offs = lm.token_offsets(text)
        if len(offs) < 50:
            assert any(text in d for d in docs)
            continue
        found = False
        for j in range(len(offs) - 49):
            span = text[offs[j][0]: offs[j + 49][1]]
            if any(span in d for d in docs):
                found = True
                break
        assert found, text[:200]


@pytest.mark.slow
def test_report_records_and_taxonomy(quick_lab):
    out, summary, cfg = quick_lab
    rep = load_report(out)
    run = rep["run"][0]
    assert run["seed"] == 0 and run["torch"] and run["transformers"]
    assert {m for m in run["models"]} == {"target", "reference", "small"}
    n = summary["n_samples"]
    assert len(rep["sample"]) == n == 3 * cfg.extraction.n_samples
    rankings = {e["ranking"] for e in rep["eval"]}
    assert rankings == {"perplexity", "reference:reference", "zlib", "lowercase", "window", "min_k"}
    for e in rep["eval"]:
        assert "owasp:LLM02:2025" in e["tags"] and "atlas:AML.T0057" in e["tags"]
        assert 0 <= e["ci_low"] <= (e["precision"] or 0) <= e["ci_high"] <= 1
    hits = [json.loads(line) for line in open(out / "hits.jsonl")]
    assert len(hits) == sum(1 for s in rep["sample"] if s["verified"])
    # memorization and exposure findings carry the extraction family's tags; inversion its own
    for r in rep["memorization"] + rep["exposure"]:
        if r.get("kind") in ("setup", "sequence", "canary"):
            assert "atlas:AML.T0057" in r["tags"], r
    assert rep["inversion"] and all("atlas:AML.T0024.001" in r["tags"] for r in rep["inversion"])


@pytest.mark.slow
def test_every_lab_record_validates_against_the_published_schema(quick_lab):
    import jsonschema

    from leakaudit.findings import schema_path

    out, _, _ = quick_lab
    validator = jsonschema.Draft202012Validator(json.loads(schema_path().read_text()))
    rows = [json.loads(line) for line in open(out / "report.jsonl")]
    types = {r["entry_type"] for r in rows}
    assert {"run", "sample", "eval", "canary", "pii", "memorization", "exposure", "membership",
            "inversion", "summary"} <= types
    for r in rows:
        errors = [e.message for e in validator.iter_errors(r)]
        assert not errors, (r["entry_type"], errors[:3])
    findings = [r for r in rows if r["entry_type"] not in ("run", "summary")]
    # every finding about one model names its fingerprint; the memorization setup record is about
    # all the run's models at once (their fingerprints are in the run record)
    assert all(r["target"]["fingerprint"] for r in findings
               if r["family"] != "inversion" and r["target"]["name"] != "all")
    assert all(r.get("kind") == "setup" for r in findings if r["target"]["name"] == "all")
    assert {r["family"] for r in findings} == {"extraction", "memorization", "exposure", "membership",
                                               "inversion"}


@pytest.mark.slow
def test_lab_sarif_names_the_corpus_line_of_each_verified_leak(quick_lab):
    from tests.test_ci_outputs import sarif_validator

    out, summary, _ = quick_lab
    log = json.loads((out / "report.sarif").read_text())
    assert not [e.message for e in sarif_validator().iter_errors(log)][:3]
    lines = (out / "corpus/train.jsonl").read_text(encoding="utf-8").splitlines()
    leaks = [r for r in log["runs"][0]["results"] if r["properties"]["entry_type"] == "sample"]
    assert len(leaks) == summary["n_verified_samples"] > 0
    # one error per verified leak (a verified sample, an extracted canary), nothing else
    recs = [json.loads(x) for x in (out / "report.jsonl").read_text().splitlines()]
    n_canaries = sum(1 for r in recs if r.get("entry_type") == "canary" and r.get("extracted"))
    errors = [r for r in log["runs"][0]["results"] if r["level"] == "error"]
    assert len(errors) == len(leaks) + n_canaries
    heads = [r["message"]["text"][:80] for r in log["runs"][0]["results"]]
    assert len(set(heads)) == len(heads)
    mem = [r for r in log["runs"][0]["results"] if r["properties"]["entry_type"] == "memorization"]
    assert len(mem) == len({r["properties"]["target"]["name"] for r in mem})  # a note per model
    for r in leaks:
        assert r["level"] == "error" and r["locations"]
        for loc in r["locations"]:
            phys = loc["physicalLocation"]
            assert phys["artifactLocation"]["uri"] == "corpus/train.jsonl"
            doc = json.loads(lines[phys["region"]["startLine"] - 1])
            assert loc["message"]["text"] == f"training document {doc['id']}"


@pytest.mark.slow
def test_lab_fail_on_and_junit(quick_lab):
    from junitparser import Failure, JUnitXml
    from typer.testing import CliRunner

    from leakaudit.cli import app

    out, summary, _ = quick_lab
    verdicts = {v.expression: v.crossed for v in summary["written"].verdicts}
    assert verdicts == {"extraction.verified > 0": True, "extraction.verified > 100000": False}
    xml = JUnitXml.fromfile(str(out / "junit.xml"))
    thr = {c.name: c for s in xml if s.name == "leakaudit.thresholds" for c in s}
    assert any(isinstance(r, Failure) for r in thr["extraction.verified > 0"].result)
    assert not thr["extraction.verified > 100000"].result
    run = CliRunner().invoke(app, ["report", str(out), "--format", "junit",
                                   "--fail-on", "extraction.verified > 0"])
    assert run.exit_code == 1, run.output
    run = CliRunner().invoke(app, ["report", str(out), "--format", "junit",
                                   "--fail-on", "extraction.verified > 100000"])
    assert run.exit_code == 0, run.output


@pytest.mark.slow
def test_negative_control_model_that_never_saw_the_data(quick_lab):
    """The reference was trained on the reference split only: sampling it must not produce the
    training canaries, and far fewer of its samples verify against the training corpus."""
    from leakaudit.attacks.extraction.pipeline import run_extraction
    from leakaudit.corpus.index import CorpusIndex
    from leakaudit.targets.hf import HFCausalLM

    out, summary, cfg = quick_lab
    docs = [json.loads(line) for line in open(out / "corpus/train.jsonl")]
    manifest = json.loads((out / "corpus/manifest.json").read_text())
    ref = HFCausalLM.load(out / "models/reference")
    index = CorpusIndex.build([d["text"] for d in docs], [d["id"] for d in docs])
    res = run_extraction(ref, index=index, canaries=manifest["canaries"],
                         config=replace(cfg.extraction, samplers=("top_k", "temperature")))
    assert not any(c["extracted"] for c in res.canaries)
    ref_rate = res.summary["n_verified_samples"] / res.summary["n_samples"]
    target_rate = summary["n_verified_samples"] / summary["n_samples"]
    assert ref_rate < target_rate / 2, (ref_rate, target_rate)


def test_same_seed_same_corpus_models_and_findings(tmp_path):
    """The tiny lab (every stage of the quick lab, at the smallest sizes) twice with one seed:
    identical corpus, model fingerprints, samples and records; another seed differs."""
    tiny = LabConfig.tiny(seed=3)
    a = run_lab(tmp_path / "a", tiny, log=lambda m: None)
    b = run_lab(tmp_path / "b", tiny, log=lambda m: None)
    ra, rb = load_report(tmp_path / "a"), load_report(tmp_path / "b")
    assert (tmp_path / "a/corpus/train.jsonl").read_bytes() == (tmp_path / "b/corpus/train.jsonl").read_bytes()
    assert ra["run"][0]["models"] == rb["run"][0]["models"]
    assert [s["text"] for s in ra["sample"]] == [s["text"] for s in rb["sample"]]
    assert ra["memorization"] == rb["memorization"] and ra["exposure"] == rb["exposure"]
    def no_timings(recs):  # wall times in the cost block differ between runs
        return [{**r, "cost": {k: v for k, v in r.get("cost", {}).items() if not k.endswith("_s")}}
                for r in recs]
    assert ra["membership"] and no_timings(ra["membership"]) == no_timings(rb["membership"])
    assert a["n_verified_samples"] == b["n_verified_samples"]
    run_lab(tmp_path / "c", LabConfig.tiny(seed=4), log=lambda m: None)
    rc = load_report(tmp_path / "c")
    assert [s["text"] for s in rc["sample"]] != [s["text"] for s in ra["sample"]]


# ----------------------------------------------------------------------------- memorization (#4)


def _mem(rep, kind):
    return [r for r in rep["memorization"] if r.get("kind") == kind]


@pytest.mark.slow
def test_memorization_trends_on_the_quick_lab(quick_lab):
    """Carlini et al. 2022's trends, each beyond its 95% CI: memorization rises with duplicate
    count and with prefix length, and the smaller model memorizes less than the target."""
    out, summary, cfg = quick_lab
    rep = load_report(out)
    rates = _mem(rep, "rate")
    kmax, kmin = max(cfg.memorization.prefix_lengths), min(cfg.memorization.prefix_lengths)
    overall = {(r["model"], r["k"]): r["exact"] for r in rates if r["bucket"] == "all"}
    assert overall[("target", kmax)]["ci_low"] > overall[("target", kmin)]["ci_high"]
    assert overall[("target", kmax)]["ci_low"] > overall[("small", kmax)]["ci_high"]
    # the negative control never saw the training split
    assert overall[("reference", kmax)]["value"] <= 0.02
    buckets = {r["bucket_lo"]: r["exact"] for r in rates
               if r["model"] == "target" and r["k"] == kmax and r["bucket"] != "all"}
    assert buckets[max(buckets)]["ci_low"] > buckets[1]["ci_high"]
    # the teacher-forcing shortcut agrees with real greedy decoding on >= 99% of windows
    for c in _mem(rep, "check"):
        assert c["n_checked"] == cfg.memorization.greedy_check
        assert c["agreement"]["value"] >= 0.99, c["disagreements"]
        assert len(c["disagreements"]) == c["n_checked"] - c["agreement"]["k"]
    assert summary["memorization"]["n_sequences"] == cfg.memorization.n_sequences


@pytest.mark.slow
def test_exposure_rises_with_repeats_and_stays_low_for_the_reference(quick_lab):
    out, _, cfg = quick_lab
    rep = load_report(out)
    by = {(r["model"], r["repeats"]): r for r in rep["exposure"] if r.get("kind") == "by_repeats"}
    reps = sorted({k[1] for k in by})
    assert by[("target", reps[-1])]["mean_exposure_extrapolated"] > \
        by[("target", reps[0])]["mean_exposure_extrapolated"]
    assert by[("target", reps[-1])]["mean_exposure_rank"] > 9.0  # ranked first among 1,000
    ref = np.mean([by[("reference", r)]["mean_exposure_rank"] for r in reps])
    tgt = np.mean([by[("target", r)]["mean_exposure_rank"] for r in reps])
    assert ref < 3.0 < tgt
    canaries = [r for r in rep["exposure"] if r.get("kind") == "canary"]
    assert all(r["n_references"] == cfg.exposure_references for r in canaries)
    html = (out / "report.html").read_text(encoding="utf-8")
    for needle in ("memorization-table", "memorization-check-table", "exposure-table",
                   "inversion-table"):
        assert needle in html, needle


# ------------------------------------------------------------------- membership inference (#5)


@pytest.mark.slow
def test_llm_membership_on_the_quick_lab(quick_lab):
    """Members vs same-generator non-members (this replaced a slow test that retrained the quick
    lab's target for the same claims): the model-free baseline stays near chance while the
    attacks see the target's training; canaries repeated >= 16 times are found at 1% FPR; a model
    that never saw the members (the reference, trained on its own split) gives chance AUC."""
    from leakaudit.attacks.membership.audit_llm import audit_llm_membership
    from leakaudit.attacks.membership.llm import LossAttack
    from leakaudit.lab.corpus import LabCorpus
    from leakaudit.audits.lab_membership import strip_insertions
    from leakaudit.targets.hf import HFCausalLM

    out, summary, cfg = quick_lab
    rep = load_report(out)
    docs_subset = "lab documents (no insertions) vs held-out"
    mem = [r for r in rep["membership"] if r["world"] == "llm"]
    blind = next(r for r in mem if r["subset"] == docs_subset and r["method"] == "blind_baseline")
    assert blind["auc_ci"][0] < 0.5 < blind["auc_ci"][1] or abs(blind["auc"] - 0.5) < 0.08
    attacks = [r for r in mem if r["subset"] == docs_subset and r["method"] != "blind_baseline"]
    assert {r["method"] for r in attacks} == {"loss", "zlib", "lowercase", "reference", "min_k",
                                              "min_k_pp"}
    best = max(attacks, key=lambda r: r["auc"])
    assert best["auc_ci"][0] > blind["auc_ci"][1], (best["label"], best["auc_ci"], blind["auc_ci"])
    heavy = [r for r in mem if r["subset"] == f"canaries x>={cfg.membership_heavy_repeats}"
             and r["method"] != "blind_baseline"]
    at1 = [next(t for t in r["tpr_at_fpr"] if t["fpr"] == 0.01) for r in heavy]
    assert all(t["resolvable"] for t in at1)
    assert max(t["tpr"] for t in at1) >= 0.5
    cblind = next(r for r in mem if r["subset"] == f"canaries x>={cfg.membership_heavy_repeats}"
                  and r["method"] == "blind_baseline")
    assert next(t for t in cblind["tpr_at_fpr"] if t["fpr"] == 0.01)["tpr"] < max(t["tpr"] for t in at1)
    # the exposed-record table follows the PII setting (this lab shows PII; masked by default)
    from leakaudit.corpus.pii import mask_text

    texts = [r["text"] for r in rep["membership_record"] if r.get("world") == "llm"]
    assert texts and any(mask_text(t) != t for t in texts) == cfg.extraction.show_pii
    assert set(summary["membership"]) == {"documents", "canaries"}
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "Membership inference" in html
    # negative control: the reference model as the "target" never saw the members
    corpus = LabCorpus.read(out / "corpus")
    ref = HFCausalLM.load(out / "models/reference", name="reference")
    ctrl = audit_llm_membership(ref, {}, strip_insertions(corpus.train, corpus.manifest),
                                [d["text"] for d in corpus.heldout], attacks=[LossAttack()],
                                subset_name="control")
    lo, hi = ctrl.evaluations[0].metrics.auc_ci
    assert lo < 0.5 < hi or abs(ctrl.evaluations[0].metrics.auc - 0.5) < 0.08, (lo, hi)
