"""Training-data extraction (Carlini et al. 2021) through a real llama.cpp server.

A small GPT-2 is trained to memorize 12 documents (one per block, after the start token), written
as a float32 GGUF and served on 127.0.0.1. ``leakaudit endpoint audit --attack extraction``
samples through the API (top-k from the start token, one seeded request per sample), ranks with
the log-probs the server returns with the samples (its echo is misaligned: scoring a sample would
take one request per token), and verifies against the corpus (a 50-token verbatim window): it
finds verified extractions, of the same documents the in-process run finds. Negative control: the
same samples (answered from the request ledger: 0 sent) verified against 12 documents of the same
form the model never saw give 0 verified.
"""

from __future__ import annotations

import json
import random

import pytest

pytest.importorskip("llama_cpp.server", reason="needs llama-cpp-python[server] (scripts/setup.sh --test)")

from .llama_server import LlamaServer  # noqa: E402

N_SAMPLES, NEW_TOKENS = 12, 100


@pytest.fixture(scope="module")
def memorizer(tmp_path_factory):
    from leakaudit.targets.gguf_export import export_gguf
    from leakaudit.training.lm import LMSpec, train_causal_lm, train_tokenizer

    rng = random.Random(0)
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi pi rho".split()

    def doc():
        return " ".join(rng.choice(words) for _ in range(80)) + "."

    train, unseen = [doc() for _ in range(12)], [doc() for _ in range(12)]
    d = tmp_path_factory.mktemp("memorizer")
    tok = train_tokenizer(train + unseen, vocab_size=300)
    spec = LMSpec(n_layer=2, n_embd=64, n_head=2, n_ctx=128, epochs=80, lr=1e-2, batch_size=4,
                  packing="document")
    train_causal_lm(train, tok, spec, seed=0, out_dir=d / "model")
    export_gguf(d / "model", d / "model.gguf")
    for name, docs in (("train", train), ("unseen", unseen)):
        (d / f"{name}.jsonl").write_text("".join(json.dumps({"id": f"{name}{i}", "text": t}) + "\n"
                                                 for i, t in enumerate(docs)))
    return d, train, unseen


@pytest.mark.slow
def test_extraction_through_the_server_finds_what_in_process_finds(memorizer, tmp_path):
    from typer.testing import CliRunner

    from leakaudit.attacks.extraction.pipeline import ExtractionConfig, run_extraction
    from leakaudit.cli import app
    from leakaudit.corpus.index import CorpusIndex
    from leakaudit.audits.endpoint import EndpointAuditConfig, audit_endpoint
    from leakaudit.targets.hf import HFCausalLM
    from leakaudit.targets.openai_api import load_endpoint

    d, train, unseen = memorizer
    # in-process: the same pipeline on the same weights
    local = HFCausalLM.load(d / "model", name="target")
    index = CorpusIndex.build(train, [f"train{i}" for i in range(len(train))])
    cfg = ExtractionConfig(samplers=("top_k",), n_samples=N_SAMPLES, max_new_tokens=NEW_TOKENS,
                           select=6)
    loc = run_extraction(local, index=index, config=cfg)
    loc_docs = {m for s in loc.samples if s["verified"] for m in s["match_docs"]}
    assert loc.summary["n_verified_samples"] >= N_SAMPLES // 2, loc.summary

    with LlamaServer(d / "model.gguf", n_ctx=256, log=d / "server.log") as srv:
        out = tmp_path / "ep"
        argv = ["endpoint", "audit", f"openai-completions:{srv.url}", "--tokenizer",
                str(d / "model"), "--corpus", str(d / "train.jsonl"), "--out", str(out),
                "--attack", "extraction", "--samples", str(N_SAMPLES), "--new-tokens",
                str(NEW_TOKENS), "--select", "6", "--concurrency", "2"]
        r = CliRunner().invoke(app, argv)
        assert r.exit_code == 0, r.output
        assert "extraction: done" in r.output and "ranked with generated log-probs" in r.output
        rows = [json.loads(x) for x in (out / "report.jsonl").read_text().splitlines()]
        samples = [x for x in rows if x["entry_type"] == "sample"]
        assert len(samples) == N_SAMPLES
        assert all(x["family"] == "extraction" and x["schema_version"] == 2 for x in samples)
        assert samples[0]["target"]["fingerprint"]  # the endpoint's (model id + probe answers)
        verified = [x for x in samples if x["verified"]]
        api_docs = {m for x in verified for m in x["match_docs"]}
        print("verified: in-process", loc.summary["n_verified_samples"], sorted(loc_docs),
              "server", len(verified), sorted(api_docs))
        # a real effect: most samples recite a training document verbatim (>= 50 tokens), and
        # documents the in-process run extracts are extracted through the server too
        assert len(verified) >= N_SAMPLES // 2 and loc_docs & api_docs
        assert all(x["longest_match_tokens"] >= 50 and x["severity"] in ("high", "critical")
                   for x in verified)
        evals = [x for x in rows if x["entry_type"] == "eval"]
        assert {e["ranking"] for e in evals} == {"perplexity", "zlib", "window", "min_k"}
        summary = json.loads((out / "summary.json").read_text())
        ext, req = summary["attacks"]["extraction"], summary["requests"]
        assert ext["target_scores"] == "generated"
        assert (out / "report.jsonl").stat().st_mode & 0o077 == 0
        gen = [x for x in rows if x["entry_type"] == "api_request"]
        assert len(gen) == req["requests"] == req["cached"] + req["succeeded"] + req["failed"]
        assert req["failed"] == 0

        # a rerun sends 0 requests; the negative control: the same samples, verified against
        # documents the model never saw, give 0 verified
        ep = load_endpoint(f"openai-completions:{srv.url}", tokenizer=str(d / "model"),
                           ledger=out / "requests.sqlite", log=lambda m: None)
        probe = ep.request_summary()["requests"]
        # request accounting: one request per sample (no ``n`` on this server), nothing more
        assert req["requests"] - probe == N_SAMPLES, (req, probe)
        for corpus, want in ((train, len(verified)), (unseen, 0)):
            s = audit_endpoint(ep, tmp_path / f"again-{want}", config=EndpointAuditConfig(
                attacks=("extraction",), extraction=replace_cfg(cfg)),
                corpus=[{"id": f"c{i}", "text": t} for i, t in enumerate(corpus)],
                log=lambda m: None)
            assert s["attacks"]["extraction"]["n_verified_samples"] == want
        assert ep.request_summary()["sent"] == 0
        ep.close()


def replace_cfg(cfg):
    """The CLI's extraction settings (its defaults plus --samples/--new-tokens/--select)."""
    from dataclasses import replace

    from leakaudit.audits.endpoint import EndpointAuditConfig

    return replace(EndpointAuditConfig().extraction, n_samples=cfg.n_samples,
                   max_new_tokens=cfg.max_new_tokens, select=cfg.select)
