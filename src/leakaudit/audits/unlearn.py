"""The production step of an erasure study: every requested unlearned model of one trained causal
LM (approximate: gradient ascent, gradient difference, NPO; exact: the retrained oracle and SISA),
written under one folder with ``unlearn.json``, which :func:`leakaudit.audits.erasure.run_verify`
then verifies."""

from __future__ import annotations

import json
from pathlib import Path


def method_folders(methods) -> tuple[str, ...]:
    """The folders :func:`run_unlearn` writes (and replaces) under its output folder for
    ``methods``: one per method, and SISA's ensemble before the deletion."""
    dirs: list[str] = []
    for m in methods:
        dirs += ["sisa-before", "sisa"] if m == "sisa" else [m]
    return tuple(dirs)


def run_unlearn(*, model, docs, forget_ids: list[str], methods: list[str], out: Path,
                steps: int, lr: float, batch_size: int, beta: float, retain_weight: float,
                shards: int, train_spec, seed: int, target=None, log=print) -> dict:
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
    from leakaudit.runs.atomic import atomic_write_text

    atomic_write_text(out / "unlearn.json", json.dumps(result, indent=1, default=str))
    return result
