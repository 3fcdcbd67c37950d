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


def run_unlearn(*, model, docs, forget_ids: list[str], methods: list[str], out: Path,
                steps: int, lr: float, batch_size: int, beta: float, retain_weight: float,
                shards: int, train_spec, seed: int, target=None, log=_log) -> dict:
    """Produce every requested unlearned model under ``out`` and write ``out/unlearn.json``.

    ``model`` is a target spec (HF directory, ``.gguf`` file, …); ``target`` the target it names
    when already loaded. Unlearning edits weights, so the target must provide gradients."""
    import copy
    import time

    from leakaudit.defenses.unlearning import (
        UnlearnConfig,
        dequantized,
        retrain,
        sisa_delete,
        sisa_train,
        unlearn_model,
    )

    if target is None:
        from leakaudit.targets import load_target

        target = load_target(model, name="original")
    from leakaudit.targets import require_capabilities

    require_capabilities(target, "gradients", who="unlearning", spec=model)
    out.mkdir(parents=True, exist_ok=True)
    forget = set(forget_ids)
    forget_texts = [d.text for d in docs if d.id in forget]
    retain_docs = [d for d in docs if d.id not in forget]
    retain_texts = [d.text for d in retain_docs]
    spec, train_seed = train_spec
    result: dict = {"model": str(model), "forget_ids": sorted(forget), "n_docs": len(docs),
                    "train_spec": spec.__dict__, "train_seed": train_seed, "methods": {}}
    tok = target.tokenizer
    for m in methods:
        if m in ("ga", "gd", "npo"):
            cfg = UnlearnConfig(method=m, steps=steps, lr=lr, batch_size=batch_size, beta=beta,
                                retain_weight=retain_weight, seed=seed)
            cfg.validate()
            # the original's weights, fresh for each method (a GGUF file's, dequantized)
            net = dequantized(copy.deepcopy(target.model))
            t0 = time.perf_counter()
            net, info = unlearn_model(net, tok, forget_texts, retain_texts, cfg)
            wall = time.perf_counter() - t0
            net.save_pretrained(str(out / m), safe_serialization=True)
            tok.save_pretrained(str(out / m))
            result["methods"][m] = {"kind": "approximate", "dir": m, "wall_s": wall,
                                    "final_loss": info["losses"][-1], "config": info["config"]}
        elif m == "oracle":
            t0 = time.perf_counter()
            retrain(target, retain_texts, spec, seed=train_seed, out_dir=out / "oracle")
            result["methods"][m] = {"kind": "exact", "dir": "oracle",
                                    "wall_s": time.perf_counter() - t0}
        elif m == "sisa":
            items = [{"id": d.id, "text": d.text} for d in docs]
            t0 = time.perf_counter()
            sisa_train(target, items, spec, n_shards=shards, seed=train_seed, out_dir=out / "sisa-before")
            t_train = time.perf_counter() - t0
            t0 = time.perf_counter()
            man = sisa_delete(out / "sisa-before", target, items, sorted(forget),
                              out_dir=out / "sisa")
            result["methods"][m] = {"kind": "exact", "dir": "sisa", "before_dir": "sisa-before",
                                    "wall_s": time.perf_counter() - t0, "train_wall_s": t_train,
                                    "n_shards": shards,
                                    "retrained_shards": man["retrained_shards"]}
        log(f"{m}: {result['methods'][m]['wall_s']:.1f}s")
    (out / "unlearn.json").write_text(json.dumps(result, indent=1, default=str))
    return result


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
            ms = _methods(methods)
            check_spec(model, allow_download=allow_download)  # a typo answers at once, no torch
        except LeakauditError as e:
            _fail(e)
        from leakaudit.corpus.load import load_corpus
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
            res = run_unlearn(model=model, docs=docs, forget_ids=fids, methods=ms, out=out,
                              steps=steps, lr=lr, batch_size=batch_size, beta=beta,
                              retain_weight=retain_weight, shards=shards, train_spec=spec,
                              seed=seed, target=target)
            res["corpus"] = str(corpus)
            res["text_field"] = text_field
            res["command"] = _command()
            (out / "unlearn.json").write_text(json.dumps(res, indent=1, default=str))
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
            from leakaudit.audits.erasure import VerifyConfig

            cfg = VerifyConfig(n_retain=n_retain, exposure_references=exposure_references,
                               finetune_docs=finetune_docs, seed=seed)
            summary = run_verify(unlearn_dir, heldout=heldout, reference=reference,
                                 manifest=manifest,
                                 relapse=[r.strip() for r in relapse.split(",") if r.strip()],
                                 out=out, cfg=cfg)
        except LeakauditError as e:
            _fail(e)
        for line in summary["lines"]:
            out_console.print(line, highlight=False)
        out_console.print(f"report: {out / 'report.html'}", highlight=False)


def erasure_records(unlearn_dir: Path, *, docs, unseen: list[str], reference,
                    manifest: Optional[dict], relapse: list[str], cfg, log=_log) -> list[dict]:
    """Load every model of an ``unlearn`` folder and verify it (see
    :func:`leakaudit.audits.erasure.verify_models`); ``docs``: the training corpus (objects
    with ``id`` and ``text``), ``unseen``: never-seen texts, ``reference``: a target or None."""
    from leakaudit.audits.erasure import verify_models
    from leakaudit.errors import InputError
    from leakaudit.targets import load_target, require_capabilities

    meta = json.loads((unlearn_dir / "unlearn.json").read_text())
    forget_ids = set(meta["forget_ids"])
    forget = [d.text for d in docs if d.id in forget_ids]
    retain_docs = [d for d in docs if d.id not in forget_ids]
    secrets, canaries, genres = [], [], {}
    if manifest is not None:
        # the subject's canaries: every copy sits in a forgotten document (a canary that is also
        # in kept documents stays learnable, and no erasure should remove it)
        canaries = [c for c in manifest.get("canaries", [])
                    if c.get("doc_ids") and set(c["doc_ids"]) <= forget_ids]
        secrets = [{"prefix": c["prefix"], "secret": c["secret"]} for c in canaries]
        genres = manifest.get("doc_genres", {})
    # related retain data for the relapse fine-tune: same genre as the forget set when known
    fgen = {genres.get(i) for i in forget_ids} - {None}
    related = [d.text for d in retain_docs if genres.get(d.id) in fgen] if fgen else []
    related = (related or [d.text for d in retain_docs])[: cfg.finetune_docs]
    models = {"original": load_target(meta["model"], name="original")}
    costs = {}
    for m, info in meta["methods"].items():
        d = unlearn_dir / info["dir"]  # a SISA folder loads as the sisa: ensemble backend
        models[m] = load_target(d, name=m)
        costs[m] = float(info["wall_s"])
    if reference is None:
        log("no reference model given: membership uses the loss score only; per-example "
            "membership is typically weaker without calibration")
    bad = [r for r in relapse if r not in models]
    if bad:
        raise InputError(f"--relapse: no model {bad[0]!r} in this folder; have {', '.join(models)}")
    for r in relapse:  # quantizing and fine-tuning a copy edit its weights
        require_capabilities(models[r], "gradients", who=f"--relapse {r}",
                             spec=getattr(models[r], "source", None) or r)
    records = verify_models(models, forget=forget, retain=[d.text for d in retain_docs],
                            unseen=unseen, reference=reference, secrets=secrets,
                            canaries=canaries, finetune_texts=related, costs=costs,
                            relapse=relapse, cfg=cfg, log=log)
    for r in records:
        info = meta["methods"].get(r["method"], {})
        r["kind"] = info.get("kind", "original" if r["method"] == "original" else None)
        r["forget_ids"] = sorted(forget_ids)
        if r["method"] == "sisa":
            r["retrained_shards"] = info.get("retrained_shards")
            r["n_shards"] = info.get("n_shards")
    return records


def summary_lines(records: list[dict]) -> list[str]:
    lines = []
    for r in records:
        a = r["membership"]["auc_forget_vs_unseen"]
        s = r["secret_extraction"]
        lines.append(f"{r['model']}: forget-vs-unseen AUC {a['value']:.3f} "
                     f"[{a['ci_low']:.3f}, {a['ci_high']:.3f}]"
                     + (f", secrets extracted {s['k']}/{s['n']}" if s else "")
                     + f", ppl retain {r['utility']['ppl_retain']:.2f} / unseen "
                     f"{r['utility']['ppl_unseen']:.2f}")
    return lines


def run_verify(unlearn_dir: Path, *, heldout: Path, reference: Optional[str],
               manifest: Optional[Path], relapse: list[str], out: Path, cfg, log=_log) -> dict:
    from datetime import datetime, timezone

    from leakaudit.corpus.load import load_corpus
    from leakaudit.errors import InputError
    from leakaudit.versions import versions
    from leakaudit.report.html import render_html
    from leakaudit.report.records import staged_output
    from leakaudit.targets import check_spec, load_target
    from leakaudit.report.writer import write_report

    meta_path = unlearn_dir / "unlearn.json"
    if not meta_path.is_file():
        raise InputError("no unlearn.json: not a folder written by leakaudit unlearn",
                         path=str(unlearn_dir))
    if reference is not None:
        check_spec(reference)  # a typo answers before anything is loaded
    meta = json.loads(meta_path.read_text())
    docs = load_corpus(meta["corpus"], text_field=meta.get("text_field", "text"))
    unseen = [d.text for d in load_corpus(heldout)]
    man = None
    if manifest is not None:
        try:
            man = json.loads(Path(manifest).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise InputError(f"cannot read the manifest: {e}", path=str(manifest)) from None
    ref = load_target(reference, name="reference") if reference is not None else None
    records = erasure_records(unlearn_dir, docs=docs, unseen=unseen, reference=ref, manifest=man,
                              relapse=relapse, cfg=cfg, log=log)
    lines = summary_lines(records)
    run_record = {**versions(), "command": _command(), "seed": cfg.seed,
                  "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  "config": {"erasure": cfg.__dict__, "show_pii": False},
                  "models": {r["model"]: {"method": r["method"]} for r in records},
                  "corpus": {"path": meta["corpus"], "n_docs": len(docs),
                             "n_forget": len(meta["forget_ids"]), "n_unseen": len(unseen)}}
    summary = {"attack": "erasure", "n_models": len(records), "lines": lines}
    with staged_output(out) as stage:
        write_report(stage, formats=("jsonl",), run_record=run_record,
                     records=[("erasure", r) for r in records], summary=summary)
        render_html(stage)
    return summary
