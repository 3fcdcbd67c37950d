"""``leakaudit lab``: the embedded default audit.

A seeded synthetic corpus with known ground truth → a byte-level BPE tokenizer and two GPT-2-style
models trained on the CPU (the target, and a smaller reference for the reference-ratio ranking) →
untargeted extraction → report. The same seed gives the same corpus, models and findings.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from leakaudit import __version__
from leakaudit.attacks.extraction.pipeline import ExtractionConfig
from leakaudit.progress import null_progress
from leakaudit.training.lm import LMSpec


@dataclass(frozen=True)
class LabConfig:
    """Sizes of the lab. ``quick()`` is for tests and CI (about a minute or two on 2 cores)."""

    n_docs: int = 800
    n_heldout: int = 200
    vocab_size: int = 2048
    canary_repeats: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    boilerplate_repeats: tuple[int, ...] = (2, 8, 32, 64)
    target: LMSpec = field(default_factory=lambda: LMSpec(n_layer=3, n_embd=192, n_head=4, n_ctx=256,
                                                          epochs=5, lr=2e-3, batch_size=16))
    reference: LMSpec = field(default_factory=lambda: LMSpec(n_layer=2, n_embd=96, n_head=4, n_ctx=256,
                                                             epochs=2, lr=2e-3, batch_size=16))
    extraction: ExtractionConfig = field(default_factory=lambda: ExtractionConfig(
        n_samples=400, select=50, generate_batch_size=100, score_batch_size=32))
    seed: int = 0

    @classmethod
    def quick(cls, seed: int = 0) -> "LabConfig":
        return cls(
            n_docs=150, n_heldout=60, vocab_size=1024, boilerplate_repeats=(2, 8, 16, 32),
            target=LMSpec(n_layer=2, n_embd=128, n_head=4, n_ctx=256, epochs=15, lr=3e-3,
                          batch_size=8),
            reference=LMSpec(n_layer=1, n_embd=64, n_head=2, n_ctx=256, epochs=3, lr=3e-3,
                             batch_size=8),
            extraction=ExtractionConfig(n_samples=100, select=25, generate_batch_size=100,
                                        score_batch_size=32),
            seed=seed,
        )

    def with_seed(self, seed: int) -> "LabConfig":
        return replace(self, seed=seed, extraction=replace(self.extraction, seed=seed))


def versions() -> dict[str, str]:
    import numpy
    import tokenizers
    import torch
    import transformers

    return {"leakaudit": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
            "numpy": numpy.__version__}


def run_lab(out_dir: str | Path, config: LabConfig, *, progress=null_progress, log=print,
            command: str = "leakaudit lab") -> dict[str, Any]:
    """Build the corpus, train the models, run extraction and write the report into ``out_dir``.

    Everything is written into a staging folder first and moved into ``out_dir`` at the end, so a
    failed or interrupted run leaves nothing half-written. Returns the summary record.
    """
    import torch

    from leakaudit.corpus.index import CorpusIndex
    from leakaudit.lab.corpus import LabCorpusConfig, generate_lab_corpus
    from leakaudit.report.html import render_html
    from leakaudit.report.records import staged_output
    from leakaudit.targets.hf import HFCausalLM
    from leakaudit.training.lm import train_causal_lm, train_tokenizer
    from leakaudit.workflow import write_extraction_report

    cfg = config.with_seed(config.seed)
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    t_start = time.perf_counter()
    with staged_output(out_dir) as stage:
        # corpus
        t0 = time.perf_counter()
        ccfg = LabCorpusConfig(n_docs=cfg.n_docs, n_heldout=cfg.n_heldout, seed=cfg.seed,
                               canary_repeats=cfg.canary_repeats,
                               boilerplate_repeats=cfg.boilerplate_repeats)
        corpus = generate_lab_corpus(ccfg)
        corpus.write(stage / "corpus")
        train_texts = [d["text"] for d in corpus.train]
        log(f"corpus: {len(train_texts)} training documents, {len(corpus.heldout)} held-out, "
            f"{len(corpus.manifest['canaries'])} canaries ({time.perf_counter() - t0:.1f}s)")

        # tokenizer + models
        tok = train_tokenizer(train_texts, vocab_size=cfg.vocab_size)
        models: dict[str, Any] = {}
        training: dict[str, Any] = {}
        for role, spec, seed_off in (("target", cfg.target, 0), ("reference", cfg.reference, 1)):
            mdir = stage / "models" / role
            t0 = time.perf_counter()
            last = {"loss": float("nan")}
            with progress(f"training {role}", None) as adv:
                def cb(step, total, loss, _adv=adv):
                    last["loss"] = loss
                    _adv(1)

                train_causal_lm(train_texts, tok, spec, seed=cfg.seed * 101 + seed_off,
                                out_dir=mdir, progress=cb)
            training[role] = {"final_loss": last["loss"], "wall_s": round(time.perf_counter() - t0, 1),
                              "spec": asdict(spec)}
            log(f"trained {role}: {spec.n_layer} layers × {spec.n_embd}, final loss "
                f"{last['loss']:.3f} ({time.perf_counter() - t0:.1f}s)")
        target = HFCausalLM.load(stage / "models" / "target", name="target")
        reference = HFCausalLM.load(stage / "models" / "reference", name="reference")

        index = CorpusIndex.build(train_texts, [d["id"] for d in corpus.train])
        run_record = {
            **versions(),
            "command": command,
            "started": started,
            "seed": cfg.seed,
            "config": {"lab": _jsonable(asdict(cfg)), **_jsonable(asdict(cfg.extraction))},
            "models": {
                "target": {"path": "models/target", "fingerprint": target.fingerprint(),
                           "n_params": sum(p.numel() for p in target.model.parameters())},
                "reference": {"path": "models/reference", "fingerprint": reference.fingerprint(),
                              "n_params": sum(p.numel() for p in reference.model.parameters())},
            },
            "corpus": {"path": "corpus/train.jsonl", "n_docs": len(train_texts),
                       "n_bytes": index.n_bytes},
            "lab": {"manifest": "corpus/manifest.json",
                    "genre_counts": corpus.manifest.get("genre_counts")},
            "training": training,
            "threads": torch.get_num_threads(),
        }
        summary = write_extraction_report(
            stage, target=target, references={"reference": reference}, index=index,
            prompt_texts=[d["text"] for d in corpus.heldout],
            canaries=corpus.manifest["canaries"], config=cfg.extraction, run_record=run_record,
            progress=progress, log=log, cache_dir=stage / "cache",
        )
        render_html(stage)
        summary["wall_s"] = round(time.perf_counter() - t_start, 1)
    return summary


def _jsonable(x):
    return json.loads(json.dumps(x, default=str))
