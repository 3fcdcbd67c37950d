"""``leakaudit finetune``: fine-tune a model the user has on their corpus (full, LoRA or head),
non-private or with DP-SGD at an explicit privacy unit; the output folder (an adapter or a model)
loads as a target in every audit, with its base as the default reference."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from leakaudit.commands._kit import _command, _fail, _log, _quiet_libraries, out_console

#: files a run may write into --out (checked against foreign files before any work)
PRODUCES = ("finetune.json", "adapter_config.json", "adapter_model.safetensors", "config.json",
            "generation_config.json", "model.safetensors", "tokenizer.json",
            "tokenizer_config.json", "special_tokens_map.json", "README.md", "chat_template.jinja")


def record_keys(corpus: Path, *, text_field: str, key: str, docs) -> list[str]:
    """Each document's value of the record field ``key`` (stringified), in corpus order; a
    record without it is an error naming its file and line."""
    from leakaudit.corpus.load import load_corpus
    from leakaudit.errors import InputError

    keyed = load_corpus(corpus, text_field=text_field, id_field=key)
    plain = load_corpus(corpus, text_field=text_field, id_field=None)  # ids "<file>:<line>"
    for d, k, p in zip(docs, keyed, plain):
        if k.id == p.id:  # the fallback id: the record has no such field
            raise InputError(f"--record-key: this record has no field {key!r}", path=d.source,
                             line=d.line)
    return [k.id for k in keyed]


def dp_settings(*, epsilon, noise_multiplier, delta, max_grad_norm, accountant, privacy_unit,
                record_key):
    """The DP-SGD settings the options ask for, or None (non-private); inconsistent options
    are an InputError."""
    from leakaudit.errors import InputError
    from leakaudit.training.finetune import FinetuneDP

    if epsilon is None and noise_multiplier is None:
        if privacy_unit is not None or record_key is not None or delta is not None:
            raise InputError("--privacy-unit, --record-key and --delta apply to DP-SGD: give "
                             "--epsilon or --noise-multiplier")
        return None
    unit = privacy_unit or ("record" if record_key is not None else "document")
    if unit == "record" and record_key is None:
        raise InputError("--privacy-unit record needs --record-key FIELD (the field naming the "
                         "person a document belongs to)")
    if record_key is not None and unit != "record":
        raise InputError(f"--record-key groups documents into records: it needs --privacy-unit "
                         f"record, not {unit}")
    dp = FinetuneDP(privacy_unit=unit, target_epsilon=epsilon, noise_multiplier=noise_multiplier,
                    delta=delta, max_grad_norm=max_grad_norm, accountant=accountant)
    dp.validate()
    return dp


def register(app: typer.Typer) -> None:
    app.command("finetune")(finetune)


def finetune(
    model: Annotated[str, typer.Option("--model", help="The pretrained model to fine-tune: a transformers folder, a .gguf file (dequantized) or a cached hub name.")],
    corpus: Annotated[Path, typer.Option("--corpus", help="Training data (JSONL, .txt, Parquet or a folder).")],
    out: Annotated[Path, typer.Option("--out", help="Output folder: a LoRA adapter (--method lora) or a model folder, plus finetune.json.")],
    method: Annotated[str, typer.Option("--method", help="full (all weights), lora (a LoRA adapter) or head (the output projection only).")] = "lora",
    epochs: Annotated[float, typer.Option("--epochs", help="Passes over the data (DP: expected passes over the privacy units).")] = 3.0,
    lr: Annotated[float, typer.Option("--lr", help="AdamW learning rate (cosine schedule).")] = 1e-3,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Blocks per step; with DP, the expected privacy units per step.")] = 8,
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="Tokens per training block (longer documents span several blocks).")] = 256,
    lora_r: Annotated[int, typer.Option("--lora-r", help="LoRA rank.")] = 8,
    lora_alpha: Annotated[int, typer.Option("--lora-alpha", help="LoRA alpha (scale alpha/r).")] = 16,
    lora_target_modules: Annotated[Optional[str], typer.Option("--lora-target-modules", help="Comma-separated module names LoRA adapts (default: peft's choice for the architecture).")] = None,
    epsilon: Annotated[Optional[float], typer.Option("--epsilon", help="DP-SGD to this ε (at --delta, per --privacy-unit): the noise is calibrated by the accountant.")] = None,
    noise_multiplier: Annotated[Optional[float], typer.Option("--noise-multiplier", help="DP-SGD with this noise multiplier σ (instead of --epsilon); ε is reported.")] = None,
    delta: Annotated[Optional[float], typer.Option("--delta", help="DP δ (default 1/(10·n) for n privacy units).")] = None,
    max_grad_norm: Annotated[float, typer.Option("--max-grad-norm", help="DP-SGD clipping norm C of each privacy unit's gradient.")] = 1.0,
    accountant: Annotated[str, typer.Option("--accountant", help="rdp or prv (Opacus).")] = "rdp",
    privacy_unit: Annotated[Optional[str], typer.Option("--privacy-unit", help="What one DP guarantee protects: document (default), record (all documents of one --record-key value) or block (one --max-tokens block).")] = None,
    record_key: Annotated[Optional[str], typer.Option("--record-key", help="JSONL/Parquet field naming the person a document belongs to: their documents form one privacy unit.")] = None,
    text_field: Annotated[str, typer.Option("--text-field")] = "text",
    seed: Annotated[int, typer.Option("--seed")] = 0,
    device: Annotated[str, typer.Option("--device", help="cpu or cuda.")] = "cpu",
    allow_download: Annotated[bool, typer.Option("--allow-download", help="Allow fetching a hub model (leakaudit works offline by default).")] = False,
) -> None:
    """Fine-tune a pretrained model on a corpus (full, LoRA or head), optionally with DP-SGD."""
    from leakaudit.errors import LeakauditError
    from leakaudit.runs.staged import check_output_location
    from leakaudit.targets import check_spec
    from leakaudit.training.finetune import FinetuneConfig

    try:
        cfg = FinetuneConfig(method=method, epochs=epochs, lr=lr, batch_size=batch_size,
                             n_ctx=max_tokens, lora_r=lora_r, lora_alpha=lora_alpha,
                             lora_target_modules=tuple(m.strip() for m in lora_target_modules.split(",")
                                                       if m.strip()) if lora_target_modules else None,
                             seed=seed)
        cfg.validate()
        dp = dp_settings(epsilon=epsilon, noise_multiplier=noise_multiplier, delta=delta,
                         max_grad_norm=max_grad_norm, accountant=accountant,
                         privacy_unit=privacy_unit, record_key=record_key)
        scheme, rest = check_spec(model, allow_download=allow_download)  # no torch yet
        if scheme not in ("hf", "gguf"):
            from leakaudit.errors import InputError

            raise InputError(f"fine-tuning starts from a transformers model or a .gguf file, not "
                             f"a {scheme}: target", path=model)
        check_output_location(out, produces=PRODUCES, inputs=[corpus, rest])
    except LeakauditError as e:
        _fail(e)
    _quiet_libraries()
    try:
        record = run_finetune(model, corpus, out, cfg, dp=dp, record_key=record_key,
                              text_field=text_field, device=device, allow_download=allow_download)
    except LeakauditError as e:
        _fail(e)
    priv = record["dp"]
    what = ("non-private" if priv is None else
            f"DP-SGD ε = {priv['epsilon']:.3g} at δ = {priv['delta']:.3g} per {priv['privacy_unit']} "
            f"({priv['n_units']} units, q = {priv['sample_rate']:.3g}, σ = "
            f"{priv['noise_multiplier']:.3g}, {priv['accountant']} accountant)")
    out_console.print(f"{record['output']}: {out} ({record['method']}, {what}; final loss "
                      f"{record['final_loss']:.3f}, {record['wall_s']:.1f}s)", highlight=False)


def run_finetune(model: str, corpus: Path, out: Path, cfg, *, dp=None, record_key=None,
                 text_field: str = "text", device: str = "cpu", allow_download: bool = False,
                 log=_log) -> dict:
    """Load the corpus, fine-tune, and write the output folder (staged: a failure leaves no
    half-written model) with its ``finetune.json``; returns the record."""
    from leakaudit.corpus.load import load_corpus
    from leakaudit.runs.staged import staged_output
    from leakaudit.targets.checks import check_device
    from leakaudit.training.finetune import finetune as train
    from leakaudit.versions import versions

    check_device(device)
    docs = load_corpus(corpus, text_field=text_field)
    keys = record_keys(corpus, text_field=text_field, key=record_key, docs=docs) \
        if record_key is not None else None

    def progress(step: int, total: int, loss: float) -> None:
        if step == total or step % max(1, total // 10) == 0:
            log(f"step {step}/{total}: loss {loss:.4f}")

    with staged_output(out, produces=PRODUCES, inputs=[corpus]) as stage:
        record = train(model, [d.text for d in docs], stage, cfg, dp=dp, record_keys=keys,
                       device=device, allow_download=allow_download, progress=progress)
        record.update({"corpus": {"path": str(corpus), "n_docs": len(docs),
                                  "text_field": text_field, "record_key": record_key},
                       "command": _command(), "versions": versions()})
        (stage / "finetune.json").write_text(json.dumps(record, indent=1, default=str))
    return record
