"""``leakaudit unlearn`` and ``leakaudit verify-erasure``: answer a right-to-erasure request
with approximate and exact unlearning, then check what each option really removed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from leakaudit.commands._kit import _command, _fail, _log, _quiet_libraries, out_console

ALL_METHODS = ("ga", "gd", "npo", "oracle", "sisa")


def _methods(value: str) -> list[str]:
    from leakaudit.errors import InputError

    names = [m.strip() for m in value.split(",") if m.strip()]
    bad = [m for m in names if m not in ALL_METHODS]
    if bad or not names:
        raise InputError(f"--methods: unknown {bad or value!r}; known: {', '.join(ALL_METHODS)}")
    return names


def select_forget(docs, *, match: list[str], ids_file: Optional[Path]) -> list[str]:
    """Ids of the documents to forget: those containing any ``match`` string (a name, an e-mail
    address, an identifier) plus those listed one per line in ``ids_file``."""
    from leakaudit.errors import InputError

    wanted: set[str] = set()
    if ids_file is not None:
        if not ids_file.is_file():
            raise InputError("no such file", path=str(ids_file))
        wanted = {ln.strip() for ln in ids_file.read_text().splitlines() if ln.strip()}
        known = {d.id for d in docs}
        missing = sorted(wanted - known)
        if missing:
            raise InputError(f"{len(missing)} forget id(s) not in the corpus, e.g. {missing[0]!r}",
                             path=str(ids_file))
    if not match and ids_file is None:
        raise InputError("give the forget set: --forget-match TEXT (repeatable) or --forget-ids FILE")
    for d in docs:
        if any(m in d.text for m in match):
            wanted.add(d.id)
    if not wanted:
        raise InputError(f"no training document contains {match!r}: the forget set is empty")
    if len(wanted) == len(docs):
        raise InputError("the forget set is the whole corpus: nothing would remain")
    return sorted(wanted)


def register(app: typer.Typer) -> None:
    @app.command("unlearn")
    def unlearn(
        model: Annotated[str, typer.Option("--model", help="The trained causal LM: HF directory, .gguf file or hub name (in-process: unlearning needs gradients).")],
        corpus: Annotated[Path, typer.Option("--corpus", help="Its training corpus (JSONL, .txt, Parquet or a folder).")],
        forget_match: Annotated[list[str], typer.Option("--forget-match", help="Forget every training document containing this text (a name, e-mail, identifier); repeatable.")] = [],  # noqa: B006
        forget_ids: Annotated[Optional[Path], typer.Option("--forget-ids", help="File of document ids to forget, one per line.")] = None,
        methods: Annotated[str, typer.Option("--methods", help="Comma-separated: ga, gd, npo (approximate), oracle (retrain without the forget set), sisa (shards; deletion retrains the affected ones).")] = "ga,gd,npo,oracle,sisa",
        out: Annotated[Path, typer.Option("--out", help="Output folder (one model folder per method).")] = Path("leakaudit-unlearn"),
        steps: Annotated[int, typer.Option("--steps", min=1, help="Optimizer steps of the approximate methods.")] = 20,
        lr: Annotated[float, typer.Option("--lr", help="Learning rate of the approximate methods.")] = 1e-4,
        batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 8,
        beta: Annotated[float, typer.Option("--beta", help="NPO β.")] = 0.1,
        retain_weight: Annotated[float, typer.Option("--retain-weight", help="λ of the retain loss (gd, npo).")] = 1.0,
        shards: Annotated[int, typer.Option("--shards", min=1, help="SISA shards.")] = 4,
        epochs: Annotated[Optional[float], typer.Option("--epochs", help="Retraining epochs (oracle, sisa) when the model has no leakaudit_training.json.")] = None,
        train_lr: Annotated[float, typer.Option("--train-lr", help="Retraining learning rate when the model has no leakaudit_training.json.")] = 1e-3,
        text_field: Annotated[str, typer.Option("--text-field")] = "text",
        seed: Annotated[int, typer.Option("--seed")] = 0,
        allow_download: Annotated[bool, typer.Option("--allow-download", help="Allow fetching a hub model (leakaudit works offline by default).")] = False,
    ) -> None:
        """Unlearn a data subject's documents: gradient ascent, gradient difference, NPO, the
        retrained oracle and SISA."""
        from leakaudit.errors import InputError, LeakauditError
        from leakaudit.targets import check_spec

        try:
            from leakaudit.runs.staged import check_output_location

            from leakaudit.audits.unlearn import method_folders

            ms = _methods(methods)
            inputs = [corpus, forget_ids, Path(model) if Path(model).exists() else None]
            # one model folder per method, written whole: a foreign one there is refused now
            check_output_location(out, produces=("unlearn.json",), inputs=inputs,
                                  folders=method_folders(ms))
            check_spec(model, allow_download=allow_download)  # a typo answers at once, no torch
        except LeakauditError as e:
            _fail(e)
        from leakaudit.corpus.load import load_corpus
        from leakaudit.audits.unlearn import run_unlearn
        from leakaudit.defenses.unlearning import training_spec
        from leakaudit.targets import load_target, require_capabilities
        from leakaudit.training.lm import LMSpec

        _quiet_libraries()
        try:
            docs = load_corpus(corpus, text_field=text_field)
            fids = select_forget(docs, match=forget_match, ids_file=forget_ids)
            target = load_target(model, name="original", allow_download=allow_download)
            require_capabilities(target, "gradients", who="unlearning", spec=model)
            spec = training_spec(model) if Path(model).is_dir() else None
            if spec is None and {"oracle", "sisa"} & set(ms):
                if epochs is None:
                    raise InputError("the model has no leakaudit_training.json: give --epochs (and "
                                     "--train-lr) for retraining the oracle and SISA shards",
                                     path=str(model))
                cfg = target.model.config
                n_ctx = int(getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", 256))
                spec = (LMSpec(n_ctx=min(n_ctx, 1024), epochs=epochs, lr=train_lr, batch_size=8), seed)
            spec = spec or (LMSpec(), seed)
            _log(f"forget set: {len(fids)} of {len(docs)} documents")
            from leakaudit.runs.atomic import atomic_write_text
            from leakaudit.runs.staged import owned_output

            with owned_output(out, produces=("unlearn.json",), inputs=inputs,
                              folders=method_folders(ms),
                              log=_log):  # the folder's lock, and no foreign file replaced
                res = run_unlearn(model=model, docs=docs, forget_ids=fids, methods=ms, out=out,
                                  steps=steps, lr=lr, batch_size=batch_size, beta=beta,
                                  retain_weight=retain_weight, shards=shards, train_spec=spec,
                                  seed=seed, target=target, log=_log)
                res["corpus"] = str(corpus)
                res["text_field"] = text_field
                res["command"] = _command()
                atomic_write_text(out / "unlearn.json", json.dumps(res, indent=1, default=str))
        except LeakauditError as e:
            _fail(e)
        for m, info in res["methods"].items():
            out_console.print(f"{m}: {out / info['dir']} ({info['wall_s']:.1f}s)", highlight=False)

    @app.command("verify-erasure")
    def verify_erasure(
        unlearn_dir: Annotated[Path, typer.Argument(help="A folder written by leakaudit unlearn.")],
        heldout: Annotated[Path, typer.Option("--heldout", help="Never-seen documents of the same kind (the non-members).")],
        reference: Annotated[Optional[str], typer.Option("--reference", help="A reference model trained on other data of the same kind, HF directory or .gguf (calibrates the per-example membership score).")] = None,
        manifest: Annotated[Optional[Path], typer.Option("--manifest", help="A canary manifest (lab manifest.json): the forget set's canaries are extracted and their exposure measured.")] = None,
        relapse: Annotated[str, typer.Option("--relapse", help="Comma-separated models to probe for relapse (int8/int4 fake quantization, a short fine-tune); '' for none.")] = "ga,gd,npo,oracle",
        out: Annotated[Path, typer.Option("--out", help="Report folder.")] = Path("leakaudit-erasure"),
        n_retain: Annotated[int, typer.Option("--n-retain", min=5)] = 60,
        exposure_references: Annotated[int, typer.Option("--exposure-references", min=10)] = 100,
        finetune_docs: Annotated[int, typer.Option("--finetune-docs", min=0, help="Related retain documents for the relapse fine-tune.")] = 40,
        seed: Annotated[int, typer.Option("--seed")] = 0,
    ) -> None:
        """Verify an erasure against the oracle: membership, extraction, exposure, utility, cost,
        relapse under quantization and fine-tuning."""
        from leakaudit.errors import LeakauditError
        from leakaudit.targets import check_spec

        try:
            if reference is not None:
                check_spec(reference)  # a typo in a path answers at once, before torch
        except LeakauditError as e:
            _fail(e)
        _quiet_libraries()
        try:
            from leakaudit.audits.erasure import VerifyConfig, run_verify

            cfg = VerifyConfig(n_retain=n_retain, exposure_references=exposure_references,
                               finetune_docs=finetune_docs, seed=seed)
            summary = run_verify(unlearn_dir, heldout=heldout, reference=reference,
                                 manifest=manifest,
                                 relapse=[r.strip() for r in relapse.split(",") if r.strip()],
                                 out=out, cfg=cfg, command=_command(), log=_log)
        except LeakauditError as e:
            _fail(e)
        for line in summary["lines"]:
            out_console.print(line, highlight=False)
        out_console.print(f"report: {out / 'report.html'}", highlight=False)
