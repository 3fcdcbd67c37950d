"""``leakaudit endpoint ...``: audit a model behind an OpenAI-compatible HTTP API.

``probe`` prints what the endpoint supports; ``audit`` runs every attack those capabilities allow
against a corpus; ``export-gguf`` writes a GPT-2-style model for llama.cpp's server. Thin: each
command parses arguments and calls the library (``leakaudit.audits.endpoint``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from leakaudit.commands._kit import _fail, _log, _progress, _quiet_libraries, out_console
from leakaudit.errors import InputError, LeakauditError

SpecArg = Annotated[str, typer.Argument(
    help="openai-completions:URL or openai-chat:URL (URL ends in /v1).")]
ModelOpt = Annotated[Optional[str], typer.Option("--model", help="Model name on the server (default: the only one it serves).")]
KeyEnvOpt = Annotated[Optional[str], typer.Option("--api-key-env", help="Environment variable holding the API key (never written anywhere).")]
KeyFileOpt = Annotated[Optional[Path], typer.Option("--api-key-file", help="File whose first line is the API key (never written anywhere).")]
TokOpt = Annotated[Optional[Path], typer.Option("--tokenizer", help="Local tokenizer matching the served model (token-level attacks need it): a transformers folder, or the served GGUF file itself.")]


#: what ``endpoint audit`` writes into --out (the request ledger is SQLite in WAL mode)
ENDPOINT_OUTPUTS = ("report.jsonl", "summary.json", "requests.sqlite", "requests.sqlite-wal",
                    "requests.sqlite-shm")


def _client_config(concurrency, timeout, retries, max_requests, max_tokens):
    from leakaudit.targets.api_client import ClientConfig

    return ClientConfig(concurrency=concurrency, timeout_s=timeout, max_retries=retries,
                        max_requests=max_requests, max_tokens=max_tokens)


def register(app: typer.Typer) -> None:
    ep = typer.Typer(no_args_is_help=True, help="Audit a model behind an OpenAI-compatible API.")
    app.add_typer(ep, name="endpoint")

    @ep.command("probe")
    def probe(spec: SpecArg, model: ModelOpt = None, api_key_env: KeyEnvOpt = None,
              api_key_file: KeyFileOpt = None, tokenizer: TokOpt = None,
              ledger: Annotated[Optional[Path], typer.Option("--ledger", help="SQLite request ledger (reruns send nothing).")] = None,
              max_logprobs: Annotated[Optional[int], typer.Option("--max-logprobs", min=1, help="Never ask for more top log-probs (a provider's limit).")] = None,
              ) -> None:
        """Find out what the endpoint supports (a handful of requests) and print it as JSON."""
        from leakaudit.targets.openai_api import load_endpoint

        _quiet_libraries()
        try:
            if ledger is not None:
                _check_ledger(ledger)
            t = load_endpoint(spec, model=model, api_key_env=api_key_env,
                              api_key_file=None if api_key_file is None else str(api_key_file),
                              tokenizer=None if tokenizer is None else str(tokenizer),
                              ledger=ledger, max_logprobs=max_logprobs, log=_log)
            if ledger is not None:
                from leakaudit.runs.staged import record_owned

                record_owned(ledger.absolute().parent, [ledger.name])
        except LeakauditError as e:
            _fail(e)
        out_console.print_json(json.dumps({"model": t.model_id, **t.capabilities.to_dict(),
                                           "requests": t.request_summary()}))
        t.close()

    @ep.command("audit")
    def audit(spec: SpecArg,
              corpus: Annotated[Optional[Path], typer.Option("--corpus", help="Training documents (JSONL with id/text, .txt, Parquet, folder).")] = None,
              nonmembers: Annotated[Optional[Path], typer.Option("--nonmembers", help="Documents never trained on (membership non-members).")] = None,
              reference: Annotated[Optional[list[str]], typer.Option("--reference", help="Local reference model(s): HF directory or .gguf file; repeatable.")] = None,
              attack: Annotated[Optional[list[str]], typer.Option("--attack", help="extraction, memorization, membership, exposure, divergence, pii (repeatable; default: all the endpoint allows).")] = None,
              out: Annotated[Path, typer.Option("--out", help="Output folder (report.jsonl, summary.json, requests.sqlite).")] = Path("leakaudit-endpoint"),
              model: ModelOpt = None, api_key_env: KeyEnvOpt = None, api_key_file: KeyFileOpt = None,
              tokenizer: TokOpt = None,
              concurrency: Annotated[int, typer.Option("--concurrency", min=1, help="Requests in flight.")] = 4,
              timeout: Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds per request of up to 1,000 tokens of work (prompt + 3 per token asked for: each generated token takes a forward pass of its own); a larger request gets proportionally longer. A request with no answer in time is not retried in the run.")] = 60.0,
              retries: Annotated[int, typer.Option("--retries", min=0, help="Retries per request.")] = 5,
              max_requests: Annotated[Optional[int], typer.Option("--max-requests", min=0, help="Stop after sending this many requests (cached answers are free); rerun to continue.")] = None,
              max_tokens: Annotated[Optional[int], typer.Option("--max-tokens", min=0, help="Stop after this many billed tokens; rerun to continue.")] = None,
              show_pii: Annotated[bool, typer.Option("--show-pii", help="Write raw PII into the report (masked by default).")] = False,
              seed: Annotated[int, typer.Option("--seed")] = 0,
              samples: Annotated[int, typer.Option("--samples", min=1, help="Extraction: samples drawn through the API (top-k from the start token).")] = 200,
              new_tokens: Annotated[int, typer.Option("--new-tokens", min=1, help="Extraction: tokens per sample.")] = 256,
              select: Annotated[int, typer.Option("--select", min=1, help="Extraction: candidates per ranking.")] = 50,
              context: Annotated[Optional[int], typer.Option("--context", min=2, help="The server's context in tokens: longer texts are cut to fit (default: the --tokenizer folder's model config, if any).")] = None,
              target_scores: Annotated[str, typer.Option("--target-scores", help="Extraction ranking log-probs: auto, echo (prompt log-probs of each sample), generated (returned with the samples), none (local --reference and zlib).")] = "auto",
              replica: Annotated[Optional[list[str]], typer.Option("--replica", help="Another server of the same model (URL ending in /v1); repeatable. Requests go to the server with the fewest in flight and fail over to another; the ledger keys them by the spec's URL, so each is stored and counted once.")] = None,
              ) -> None:
        """Run every attack the endpoint's capabilities allow; the rest are reported as skipped."""
        from leakaudit.targets import check_spec
        from leakaudit.targets.openai_api import EndpointSpec, replica_pool

        try:  # a typo in a reference path or a server URL answers at once, before torch is imported
            for r in reference or []:
                check_spec(r)
            replica_pool(EndpointSpec.parse(spec).base_url, replica or [])
        except LeakauditError as e:
            _fail(e)
        from leakaudit.corpus.load import load_corpus
        from leakaudit.audits.endpoint import ATTACKS, EndpointAuditConfig, audit_endpoint
        from leakaudit.targets import default_name, load_target
        from leakaudit.targets.openai_api import load_endpoint

        _quiet_libraries()
        try:
            from dataclasses import replace

            from leakaudit.attacks.extraction.pipeline import SCORE_SOURCES

            if target_scores not in SCORE_SOURCES:
                raise InputError(f"--target-scores must be one of {', '.join(SCORE_SOURCES)}, "
                                 f"got {target_scores!r}")
            base = EndpointAuditConfig()
            cfg = EndpointAuditConfig(attacks=tuple(attack) if attack else ATTACKS,
                                      show_pii=show_pii, seed=seed,
                                      extraction=replace(base.extraction, n_samples=samples,
                                                         max_new_tokens=new_tokens, select=select,
                                                         target_scores=target_scores))
            cfg.validate()
            docs = _docs(load_corpus, corpus)
            non = _docs(load_corpus, nonmembers)
            if non and "membership" in cfg.attacks:
                from leakaudit.audits.membership import check_sides

                check_sides(docs, corpus, non, nonmembers)
            refs = {}
            for i, r in enumerate(reference or []):
                name = default_name(r)
                name = name if name not in refs else f"{name}-{i}"
                refs[name] = load_target(r, name=name)
            subjects = None
            if docs:
                from leakaudit.attacks.probes.pii import lab_subjects

                subjects = {"trained": lab_subjects(docs)}
                if non:
                    subjects["held-out"] = lab_subjects(non)
                if not subjects["trained"]:
                    subjects = None
            from leakaudit.runs.staged import owned_output

            with owned_output(out, produces=ENDPOINT_OUTPUTS, inputs=[corpus, nonmembers],
                              log=_log):  # the folder's lock, and no foreign file replaced
                t = load_endpoint(spec, model=model, api_key_env=api_key_env,
                                  api_key_file=None if api_key_file is None else str(api_key_file),
                                  tokenizer=None if tokenizer is None else str(tokenizer),
                                  ledger=out / "requests.sqlite", context=context,
                                  replicas=replica or (),
                                  config=_client_config(concurrency, timeout, retries, max_requests,
                                                        max_tokens), log=_log)
                summary = audit_endpoint(t, out, config=cfg, corpus=docs, nonmembers=non,
                                         subjects=subjects, references=refs, progress=_progress(),
                                         log=_log)
                t.close()
        except LeakauditError as e:
            _fail(e)
        _print(summary, out)
        if summary.get("stopped"):
            raise typer.Exit(code=3)

    @ep.command("export-gguf")
    def export_gguf(model_dir: Annotated[Path, typer.Argument(help="GPT-2-style HF model directory.")],
                    out: Annotated[Path, typer.Argument(help="Output .gguf file.")],
                    add_bos: Annotated[bool, typer.Option("--add-bos", help="Make llama.cpp prepend BOS (GPT-2's tokenizer adds none; the default matches it).")] = False,
                    ) -> None:
        """Write a GPT-2-style model as a float32 GGUF for llama.cpp's server."""
        from leakaudit.targets.gguf_export import export_gguf as _export

        try:
            p = _export(model_dir, out, add_bos=add_bos)
        except LeakauditError as e:
            _fail(e)
        out_console.print(f"wrote {p}", highlight=False)


def _check_ledger(ledger: Path) -> None:
    """``--ledger FILE`` is added to, never replaced: it may be a ledger leakaudit wrote (recorded
    as its own, or recognisably a request ledger); any other file there is refused, and with
    ``leakaudit --overwrite`` removed so that a new ledger takes its place."""
    from leakaudit.runs.staged import check_output_file, file_owned, foreign_file_error, overwriting
    from leakaudit.targets.api_client import RequestLedger

    check_output_file(ledger, "--ledger", overwrite=True)  # a folder, or no folder to write in
    if not (ledger.exists() or ledger.is_symlink()) or file_owned(ledger):
        return
    if ledger.is_file() and not ledger.is_symlink() and RequestLedger.is_ledger(ledger):
        return
    if not overwriting():
        raise foreign_file_error(ledger, "--ledger")
    ledger.unlink()


def _docs(load_corpus, path):
    if path is None:
        return None
    return [{"id": d.id, "text": d.text} for d in load_corpus(path)]


def _print(summary: dict, out: Path) -> None:
    r = summary["requests"]
    out_console.print(f"requests: {r['requests']} ({r['sent']} sent, {r['cached']} cached, "
                      f"{r['retried']} retried, {r['failed']} failed), {r['tokens_billed']} "
                      f"tokens billed", highlight=False)
    for name, s in summary["attacks"].items():
        extra = ""
        if name == "extraction":
            extra = (f": {s.get('n_verified_samples')} of {s.get('n_samples')} samples verified "
                     f"against the corpus (ranked with {s.get('target_scores')} log-probs)")
        out_console.print(f"{name}: done ({s.get('wall_s')} s){extra}", highlight=False)
    for s in summary["skipped"]:
        out_console.print(f"{s['attack']}: skipped ({s['reason']})", highlight=False)
    if summary.get("stopped"):
        out_console.print(f"stopped: {summary['stopped']}", highlight=False)
    out_console.print(f"report: {out / 'report.jsonl'}", highlight=False)
