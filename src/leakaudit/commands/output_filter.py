"""``leakaudit output-filter``: put a MemFree filter on a model, then re-attack it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from leakaudit.commands._kit import _command, _fail, _log, _quiet_libraries, out_console


def register(app: typer.Typer) -> None:
    @app.command("output-filter")
    def output_filter(
        model: Annotated[str, typer.Option("--model", help="Causal LM in-process: HF directory, .gguf file or hub name (the filter is a logits processor).")],
        corpus: Annotated[Path, typer.Option("--corpus", help="Its training corpus.")],
        manifest: Annotated[Optional[Path], typer.Option("--manifest", help="Canary manifest: also try to extract the canaries' secrets (and, for a lab manifest, continue its repeated boilerplate blocks).")] = None,
        n: Annotated[int, typer.Option("--n", min=2, help="n-gram length of the filter, in tokens.")] = 8,
        fp_rate: Annotated[float, typer.Option("--fp-rate", help="Bloom filter false-positive rate.")] = 1e-4,
        docs: Annotated[int, typer.Option("--docs", min=1, help="Training documents probed.")] = 60,
        prefix: Annotated[int, typer.Option("--prefix", min=1)] = 32,
        suffix: Annotated[int, typer.Option("--suffix", min=1)] = 32,
        styles: Annotated[str, typer.Option("--styles", help="Comma-separated: plain, upper, spaced, format.")] = "plain,upper,spaced,format",
        out: Annotated[Path, typer.Option("--out")] = Path("leakaudit-output-filter"),
        text_field: Annotated[str, typer.Option("--text-field")] = "text",
        device: Annotated[str, typer.Option("--device")] = "cpu",
        seed: Annotated[int, typer.Option("--seed")] = 0,
        allow_download: Annotated[bool, typer.Option("--allow-download", help="Allow fetching a hub model (leakaudit works offline by default).")] = False,
    ) -> None:
        """MemFree output filter (Ippolito et al. 2023): what it blocks, and what still leaks."""
        from leakaudit.errors import InputError, LeakauditError
        from leakaudit.runs.staged import REPORT_OUTPUTS, check_output_location
        from leakaudit.targets import check_spec

        try:  # the output location and the model spec first: cheap, no torch
            check_output_location(out, produces=REPORT_OUTPUTS, inputs=[corpus, model, manifest])
            check_spec(model, allow_download=allow_download)
        except LeakauditError as e:
            _fail(e)
        from leakaudit.corpus.load import load_corpus
        from leakaudit.audits.output_filter import BypassConfig, run_output_filter
        from leakaudit.targets import load_target, require_capabilities
        from leakaudit.targets.checks import check_device

        _quiet_libraries()
        try:
            check_device(device)
            cfg = BypassConfig(n_docs=docs, prefix_tokens=prefix, suffix_tokens=suffix,
                               styles=tuple(s.strip() for s in styles.split(",") if s.strip()),
                               seed=seed)
            cfg.validate()
            canaries, repeated = [], []
            if manifest is not None:
                from leakaudit.audits.exposure import read_manifest
                from leakaudit.errors import read_json_object

                canaries = read_manifest(manifest)
                blocks = read_json_object(manifest).get("boilerplate") or []
                if not isinstance(blocks, list) or not all(
                        isinstance(b, dict) and isinstance(b.get("text"), str) for b in blocks):
                    raise InputError('"boilerplate" must be a list of {"text": ...} blocks',
                                     path=str(manifest))
                repeated = [b["text"] for b in blocks]
            ds = [{"id": d.id, "text": d.text} for d in load_corpus(corpus, text_field=text_field)]
            m = load_target(model, device=device, allow_download=allow_download)
            # MemFree runs inside the model's own decoding loop
            require_capabilities(m, "logits_processors", "generation", who="the output filter",
                                 spec=model)
            res = run_output_filter(model=m, docs=ds, canaries=canaries, n=n, fp_rate=fp_rate,
                                    config=cfg, out=out, repeated=repeated, command=_command(), log=_log,
                                    run_extra={"models": {m.name: {"path": str(model)}},
                                               "corpus": {"path": str(corpus), "n_docs": len(ds)}})
        except LeakauditError as e:
            _fail(e)
        for r in res["rates"]:
            if r["measure"] in ("exact", "near", "normalized", "filter_ngram", "text_window"):
                out_console.print(f"{r['target']:>10} {r['kind']:>12} {r['style']:>7} "
                                  f"{r['measure']:>12}: {r['k']}/{r['n']}", highlight=False)
        out_console.print(f"report: {out / 'report.html'}", highlight=False)
