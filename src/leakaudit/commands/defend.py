"""``leakaudit defend``: training-side defenses on your own corpus or model.

- ``defend dedup CORPUS --out DIR``: Lee et al. 2022 NearDup + ExactSubstr deduplication;
- ``defend scrub CORPUS --out DIR``: PII redaction / masking / pseudonymization;
- ``defend dp-train CORPUS --out DIR``: DP-SGD training or fine-tuning of a causal LM (Opacus).

Each writes its output (a corpus or a model) and a ``defense.json`` record; files are private
(0600). Audit the output with the same commands as the original (``extract``, ``memorization``,
``membership``) and compare with ``leakaudit compare``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from leakaudit.commands._kit import _fail, _log, _quiet_libraries, out_console

defend_app = typer.Typer(no_args_is_help=True, help="Training-side defenses: dedup, scrub, dp-train.")


def register(app: typer.Typer) -> None:
    app.add_typer(defend_app, name="defend")


def _write_json(path: Path, obj) -> None:
    from leakaudit.runs.atomic import atomic_write_text

    atomic_write_text(path, json.dumps(obj, indent=1, ensure_ascii=False, default=str) + "\n")


def _write_jsonl(path: Path, rows) -> None:
    from leakaudit.runs.atomic import atomic_open

    with atomic_open(path) as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")


def _load(corpus: Path, text_field: str):
    from leakaudit.corpus.load import load_corpus

    return load_corpus(corpus, text_field=text_field)


def _tokenizer(path: Optional[Path]):
    if path is None:
        return None
    from leakaudit.errors import InputError

    if not path.is_dir():
        raise InputError("no such tokenizer directory", path=str(path))
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path), local_files_only=True)


@defend_app.command("dedup")
def dedup_cmd(
    corpus: Annotated[Path, typer.Argument(help="Corpus: JSONL, .txt, Parquet, or a folder.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder: corpus.jsonl, removed.jsonl, defense.json.")],
    method: Annotated[str, typer.Option("--method", help="both, exact (ExactSubstr) or near (NearDup).")] = "both",
    min_tokens: Annotated[int, typer.Option("--min-tokens", min=1, help="ExactSubstr: repeated spans of at least this many tokens are removed (Lee et al.: 50).")] = 50,
    tokenizer: Annotated[Optional[Path], typer.Option("--tokenizer", help="HF tokenizer directory for ExactSubstr tokens (default: whitespace words).")] = None,
    backend: Annotated[str, typer.Option("--backend", help="MinHash library: rensa or datasketch.")] = "rensa",
    num_perm: Annotated[int, typer.Option("--num-perm", min=1)] = 9000,
    bands: Annotated[int, typer.Option("--bands", min=1)] = 450,
    rows: Annotated[int, typer.Option("--rows", min=1)] = 20,
    jaccard: Annotated[float, typer.Option("--jaccard", help="NearDup: minimum exact Jaccard of word 5-gram sets.")] = 0.8,
    edit_sim: Annotated[float, typer.Option("--edit-similarity", help="NearDup: minimum word-level edit similarity.")] = 0.8,
    text_field: Annotated[str, typer.Option("--text-field")] = "text",
) -> None:
    """Deduplicate a corpus (Lee et al. 2022): near-duplicate documents and repeated spans."""
    from leakaudit.defenses.dedup import DedupConfig, deduplicate
    from leakaudit.errors import LeakauditError
    from leakaudit.runs.staged import check_output_location, staged_output

    produces = ("corpus.jsonl", "removed.jsonl", "defense.json")
    try:
        check_output_location(out, produces=produces, inputs=[corpus])
        cfg = DedupConfig(method=method, min_tokens=min_tokens, num_perm=num_perm, bands=bands,
                          rows=rows, jaccard=jaccard, edit_similarity=edit_sim, backend=backend)
        cfg.validate()
        if backend == "datasketch" or tokenizer is not None:
            _quiet_libraries()
        tok = _tokenizer(tokenizer)
        docs = _load(corpus, text_field)
        res = deduplicate([d.text for d in docs], [d.id for d in docs], tokenizer=tok, config=cfg)
        with staged_output(out, produces=produces, inputs=[corpus]) as stage:
            _write_jsonl(stage / "corpus.jsonl", res.documents([d.id for d in docs]))
            _write_jsonl(stage / "removed.jsonl", res.removals)
            _write_json(stage / "defense.json", {"defense": "dedup", "input": str(corpus), **res.summary()})
    except LeakauditError as e:
        _fail(e)
    s = res.stats
    out_console.print(
        f"{s['n_docs']} documents → {s['n_docs_kept']} kept; {s['n_near_duplicate_docs']} near-duplicate "
        f"documents, {s['n_repeated_spans']} repeated spans ({s['n_repeated_span_tokens']} tokens) removed\n"
        f"{cfg.min_tokens}-token windows by count, before: {res.windows_before}\n"
        f"after: {res.windows_after}\ncorpus: {out / 'corpus.jsonl'}  removed: {out / 'removed.jsonl'}",
        highlight=False, markup=False)


@defend_app.command("scrub")
def scrub_cmd(
    corpus: Annotated[Path, typer.Argument(help="Corpus: JSONL, .txt, Parquet, or a folder.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder: corpus.jsonl, defense.json.")],
    mode: Annotated[str, typer.Option("--mode", help="redact ([EMAIL]), mask (j***@e***.com) or pseudonymize (consistent fakes).")] = "redact",
    kind: Annotated[Optional[list[str]], typer.Option("--kind", help="PII kind to scrub (repeatable; default: every kind detected).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Keys the pseudonym mapping.")] = 0,
    text_field: Annotated[str, typer.Option("--text-field")] = "text",
) -> None:
    """Scrub the PII the detector finds; counts per kind and the residual after re-detection."""
    from leakaudit.defenses.scrub import ScrubConfig, scrub_texts
    from leakaudit.errors import LeakauditError
    from leakaudit.runs.staged import check_output_location, staged_output

    produces = ("corpus.jsonl", "defense.json")
    try:
        check_output_location(out, produces=produces, inputs=[corpus])
        cfg = ScrubConfig(mode=mode, kinds=tuple(kind) if kind else None, seed=seed)
        cfg.validate()
        docs = _load(corpus, text_field)
        res = scrub_texts([d.text for d in docs], cfg)
        with staged_output(out, produces=produces, inputs=[corpus]) as stage:
            _write_jsonl(stage / "corpus.jsonl", ({"id": d.id, "text": t} for d, t in zip(docs, res.texts)))
            _write_json(stage / "defense.json", {"input": str(corpus), **res.summary()})
    except LeakauditError as e:
        _fail(e)
    out_console.print(f"{res.n_docs_changed} of {len(docs)} documents changed; replaced: {res.counts}; "
                      f"residual after re-detection: {res.residual}\ncorpus: {out / 'corpus.jsonl'}",
                      highlight=False, markup=False)


@defend_app.command("dp-train")
def dp_train_cmd(
    corpus: Annotated[Path, typer.Argument(help="Training corpus: JSONL, .txt, Parquet, or a folder.")],
    out: Annotated[Path, typer.Option("--out", help="Output model directory (HF format, with leakaudit_training.json).")],
    epsilon: Annotated[Optional[float], typer.Option("--epsilon", help="Target ε (σ from Opacus' get_noise_multiplier).")] = None,
    noise: Annotated[Optional[float], typer.Option("--noise-multiplier", help="σ instead of a target ε.")] = None,
    delta: Annotated[Optional[float], typer.Option("--delta", help="δ (default 1/(10·n) for n training blocks; must be < 1/n).")] = None,
    clip: Annotated[float, typer.Option("--max-grad-norm", help="Per-example clipping norm C.")] = 1.0,
    accountant: Annotated[str, typer.Option("--accountant", help="rdp or prv.")] = "rdp",
    clipping: Annotated[str, typer.Option("--clipping", help="ghost (fast, default) or flat (per-example gradients).")] = "ghost",
    model: Annotated[Optional[str], typer.Option("--model", help="Fine-tune this causal LM: HF directory or .gguf file (default: train a new GPT-2 with --tokenizer).")] = None,
    tokenizer: Annotated[Optional[Path], typer.Option("--tokenizer", help="Tokenizer directory for a new model (default: train a byte-level BPE on the corpus).")] = None,
    vocab_size: Annotated[int, typer.Option("--vocab-size", min=64)] = 1024,
    n_layer: Annotated[int, typer.Option("--n-layer", min=1)] = 2,
    n_embd: Annotated[int, typer.Option("--n-embd", min=8)] = 128,
    n_head: Annotated[int, typer.Option("--n-head", min=1)] = 4,
    n_ctx: Annotated[int, typer.Option("--n-ctx", min=8)] = 256,
    epochs: Annotated[float, typer.Option("--epochs")] = 10.0,
    lr: Annotated[float, typer.Option("--lr")] = 3e-3,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Expected batch size (q = 1/ceil(n/B)).")] = 16,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    text_field: Annotated[str, typer.Option("--text-field")] = "text",
) -> None:
    """Train or fine-tune a causal LM with DP-SGD; prints ε at δ, σ, C, q, steps."""
    from leakaudit.errors import InputError, LeakauditError
    from leakaudit.runs.staged import check_output_location, staged_output
    from leakaudit.training.dp_lm import DPLMConfig, _check, train_causal_lm_dp
    from leakaudit.training.lm import LMSpec, train_tokenizer

    _quiet_libraries()
    try:
        spec = LMSpec(n_layer=n_layer, n_embd=n_embd, n_head=n_head, n_ctx=n_ctx, epochs=epochs,
                      lr=lr, batch_size=batch_size)
        dp = DPLMConfig(max_grad_norm=clip, noise_multiplier=noise, target_epsilon=epsilon,
                        delta=delta, accountant=accountant, clipping=clipping)
        _check(dp, spec)
        if model is not None:
            from leakaudit.targets import check_spec

            check_spec(model)  # a typo in a path answers at once
        produces = ("model.safetensors", "config.json", "leakaudit_training.json", "defense.json")
        check_output_location(out, produces=produces, inputs=[corpus, model, tokenizer])
        texts = [d.text for d in _load(corpus, text_field)]
        base = None
        if model is not None:
            from leakaudit.defenses.unlearning import dequantized
            from leakaudit.targets import load_target, require_capabilities

            target = load_target(model, name="base")
            require_capabilities(target, "gradients", who="DP-SGD fine-tuning", spec=model)
            base, tok = dequantized(target.model), target.tokenizer
        else:
            tok = _tokenizer(tokenizer) or train_tokenizer(texts, vocab_size=vocab_size)
        _log(f"DP-SGD on {len(texts)} documents ({clipping} clipping, {accountant} accountant)")
        with staged_output(out, produces=produces, inputs=[corpus, model, tokenizer]) as stage:
            _, rec = train_causal_lm_dp(texts, tok, spec, dp, seed=seed, out_dir=stage, model=base)
            _write_json(stage / "defense.json", rec)
    except LeakauditError as e:
        _fail(e)
    out_console.print(f"ε = {rec['epsilon']:.3f} at δ = {rec['delta']:.3g}; σ = {rec['noise_multiplier']:.4f}, "
                      f"C = {rec['max_grad_norm']}, q = {rec['sample_rate']:.5f}, steps = {rec['steps']} "
                      f"({rec['accountant']}); final loss {rec['final_loss']:.3f}\nmodel: {out}",
                      highlight=False, markup=False)


@defend_app.command("capacity")
def capacity_cmd(
    corpus: Annotated[Path, typer.Argument(help="Training corpus: JSONL, .txt, Parquet, or a folder.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder: one model directory per size (w<WIDTH>/), one tokenizer.")],
    width: Annotated[list[int], typer.Option("--width", min=8, help="Model width (n_embd); repeatable. Depth, heads and schedule are shared.")],
    tokenizer: Annotated[Optional[Path], typer.Option("--tokenizer", help="Tokenizer directory (default: train a byte-level BPE on the corpus).")] = None,
    vocab_size: Annotated[int, typer.Option("--vocab-size", min=64)] = 1024,
    n_layer: Annotated[int, typer.Option("--n-layer", min=1)] = 2,
    n_head: Annotated[int, typer.Option("--n-head", min=1)] = 4,
    n_ctx: Annotated[int, typer.Option("--n-ctx", min=8)] = 256,
    epochs: Annotated[float, typer.Option("--epochs")] = 10.0,
    lr: Annotated[float, typer.Option("--lr")] = 3e-3,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 16,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    text_field: Annotated[str, typer.Option("--text-field")] = "text",
) -> None:
    """Capacity sweep: the same corpus, tokenizer, seed and schedule at several model widths
    (compare them with ``leakaudit compare``)."""
    from leakaudit.errors import InputError, LeakauditError
    from leakaudit.runs.staged import check_output_location, staged_output
    from leakaudit.training.lm import LMSpec, train_causal_lm, train_tokenizer

    _quiet_libraries()
    widths = sorted(set(width), reverse=True)
    produces = tuple(f"w{w}/model.safetensors" for w in widths)
    try:
        bad = [w for w in widths if w % n_head]
        if bad:
            raise InputError(f"--width must be a multiple of --n-head ({n_head}); got {bad[0]}")
        check_output_location(out, produces=produces, inputs=[corpus, tokenizer])
        texts = [d.text for d in _load(corpus, text_field)]
        tok = _tokenizer(tokenizer) or train_tokenizer(texts, vocab_size=vocab_size)
        with staged_output(out, produces=produces, inputs=[corpus, tokenizer]) as stage:
            for w in widths:
                spec = LMSpec(n_layer=n_layer, n_embd=w, n_head=n_head, n_ctx=n_ctx, epochs=epochs,
                              lr=lr, batch_size=batch_size)
                _log(f"training width {w}")
                train_causal_lm(texts, tok, spec, seed=seed, out_dir=stage / f"w{w}")
    except LeakauditError as e:
        _fail(e)
    models = " ".join(f"--model w{w}={out / f'w{w}'}" for w in widths)
    out_console.print(f"{len(widths)} models in {out}\ncompare: leakaudit compare {models} --corpus {corpus} "
                      f"--heldout HELDOUT", highlight=False, markup=False)
