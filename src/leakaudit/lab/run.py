"""``leakaudit lab``: the embedded default audit.

A seeded synthetic corpus with known ground truth → a byte-level BPE tokenizer and two GPT-2-style
models trained on the CPU → untargeted extraction → report. The same seed gives the same corpus,
models and findings.

The two models play the roles of Carlini et al.'s GPT-2 XL and GPT-2 Small: the *target* is
trained for many epochs on the training split (it memorizes); the *reference* is smaller and is
trained on the reference split, documents of the same generator that the target never saw. That
is the auditor's usual situation — a public base model of the same kind of text that did not see
the private data — so the reference predicts generic text (templates, logs) as well as the target
does, but not the target's memorized records. The held-out split, seen by no model, supplies the
``internet`` sampler's prompts and the non-members of the membership audit; because the reference
never saw them either, its ratio is not biased towards calling them non-members.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from leakaudit.attacks.extraction.pipeline import ExtractionConfig
from leakaudit.attacks.memorization.measure import MemorizationConfig
from leakaudit.progress import null_progress
from leakaudit.training.lm import LMSpec
from leakaudit.versions import versions


#: The lab models have a 256-token context; prompts take up to 10 tokens, so samples get 240 new
#: tokens (the paper's 256 with GPT-2's 1024-token context).
MAX_NEW_TOKENS = 240


@dataclass(frozen=True)
class LabConfig:
    """Sizes of the lab. ``quick()`` is for tests and CI (about a minute or two on 2 cores)."""

    n_docs: int = 300
    n_heldout: int = 300
    #: documents of the reference split (the reference model's training data)
    n_reference: int = 300
    vocab_size: int = 1024
    canary_repeats: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    boilerplate_repeats: tuple[int, ...] = (2, 8, 16, 32)
    #: recurring customers (see :class:`~leakaudit.lab.corpus.LabCorpusConfig`): the PII probes'
    #: dose-response (1 document, 8, 16)
    subject_repeats: tuple[int, ...] = (8, 16)
    subjects_per_repeat: int = 4
    target: LMSpec = field(default_factory=lambda: LMSpec(n_layer=2, n_embd=128, n_head=4, n_ctx=256,
                                                          epochs=22, lr=3e-3, batch_size=8))
    reference: LMSpec = field(default_factory=lambda: LMSpec(n_layer=2, n_embd=96, n_head=4, n_ctx=256,
                                                             epochs=8, lr=3e-3, batch_size=8))
    #: Trained like the target on the training split, with a quarter of its width squared: the
    #: capacity question ("does the smaller model memorize less?").
    small: LMSpec = field(default_factory=lambda: LMSpec(n_layer=2, n_embd=64, n_head=4, n_ctx=256,
                                                         epochs=22, lr=3e-3, batch_size=8))
    extraction: ExtractionConfig = field(default_factory=lambda: ExtractionConfig(
        n_samples=1000, select=100, generate_batch_size=100, score_batch_size=32,
        max_new_tokens=MAX_NEW_TOKENS))
    #: Pythia's 32-token suffix, three prefix lengths; 500 windows, all cross-checked by greedy
    #: decoding.
    memorization: MemorizationConfig = field(default_factory=lambda: MemorizationConfig(
        prefix_lengths=(8, 16, 32), suffix_length=32, n_sequences=500, greedy_check=500))
    exposure_references: int = 1000
    #: LLM membership inference: training documents (insertions removed) vs held-out documents,
    #: and canary sentences vs ``membership_reference_secrets`` same-template secrets per canary
    membership: bool = True
    membership_k: float = 0.2  #: Min-K% / Min-K%++ fraction
    membership_reference_secrets: int = 50
    membership_heavy_repeats: int = 16
    membership_boot: int = 500
    inversion: bool = True  #: run the classifier inversion lab (digits, tabular records)
    inversion_quick: bool = False
    #: an explicit inversion-lab config (``tiny()``); None: quick or full as ``inversion_quick``
    inversion_config: Any = None
    seed: int = 0

    @classmethod
    def quick(cls, seed: int = 0) -> "LabConfig":
        return cls(
            n_docs=150, n_heldout=150, n_reference=150,
            target=LMSpec(n_layer=2, n_embd=128, n_head=4, n_ctx=256, epochs=15, lr=3e-3,
                          batch_size=8),
            reference=LMSpec(n_layer=2, n_embd=64, n_head=4, n_ctx=256, epochs=5, lr=3e-3,
                             batch_size=8),
            small=LMSpec(n_layer=2, n_embd=64, n_head=4, n_ctx=256, epochs=15, lr=3e-3,
                         batch_size=8),
            extraction=ExtractionConfig(n_samples=100, select=25, generate_batch_size=100,
                                        score_batch_size=32, max_new_tokens=MAX_NEW_TOKENS),
            memorization=MemorizationConfig(prefix_lengths=(8, 16, 32), suffix_length=32,
                                            n_sequences=200, greedy_check=200),
            inversion_quick=True,
            # two customers in 8 documents each: the dose-response needs the default lab's
            # size, and more recurring documents in 150 would blur the memorization trends
            subject_repeats=(8,), subjects_per_repeat=2,
            membership_reference_secrets=20,
            membership_boot=200,
            seed=seed,
        )

    @classmethod
    def tiny(cls, seed: int = 0) -> "LabConfig":
        """The smallest lab that runs every stage of :func:`run_lab` (the same code paths as
        ``quick``; sizes only): for the crash-and-resume tests. Its numbers mean nothing."""
        from leakaudit.attacks.inversion.mi_face import MIFaceParams
        from leakaudit.attacks.inversion.nes import NESParams
        from leakaudit.lab.inversion import InversionLabConfig, TabularParams
        from leakaudit.training.classifier import TrainConfig

        tiny_lm = LMSpec(n_layer=1, n_embd=32, n_head=2, n_ctx=128, epochs=1, lr=3e-3, batch_size=8)
        inv = InversionLabConfig(
            seed=seed, target_train=TrainConfig(epochs=2, lr=1e-2, batch_size=64, seed=0),
            mlp_hidden=(8,), mlp_train=TrainConfig(epochs=2, lr=1e-3, batch_size=64, seed=0),
            evaluator_hidden=(8,), evaluator_train=TrainConfig(epochs=2, lr=1e-3, batch_size=64, seed=1),
            dp_train=TrainConfig(epochs=1, lr=0.5, batch_size=64, seed=0),
            mi_face=MIFaceParams(max_iter=40, patience=10), nes=NESParams(budget=63), nes_seeds=(0,),
            budgets=(63,),
            tabular=TabularParams(n_records=300))
        return cls(
            n_docs=40, n_heldout=30, n_reference=30, vocab_size=400,
            canary_repeats=(1, 4), boilerplate_repeats=(2, 4),
            target=tiny_lm, reference=tiny_lm, small=tiny_lm,
            extraction=ExtractionConfig(n_samples=12, select=4, generate_batch_size=4,
                                        score_batch_size=8, max_new_tokens=24, match_tokens=16,
                                        shard_samples=4),
            memorization=MemorizationConfig(prefix_lengths=(8,), suffix_length=8,
                                            n_sequences=12, greedy_check=12),
            exposure_references=20, membership_reference_secrets=4, membership_boot=20,
            inversion_config=inv, seed=seed)

    def with_seed(self, seed: int) -> "LabConfig":
        return replace(self, seed=seed, extraction=replace(self.extraction, seed=seed),
                       memorization=replace(self.memorization, seed=seed))


#: Files the lab writes into ``--out`` (checked for conflicts before any work).
LAB_OUTPUTS = (("report.jsonl", "summary.json", "report.html", "hits.jsonl")
               + tuple(f"corpus/{n}" for n in ("train.jsonl", "heldout.jsonl", "reference.jsonl",
                                               "manifest.json"))
               + tuple(f"models/{r}/{n}" for r in ("target", "reference", "small")
                       for n in ("config.json", "model.safetensors", "generation_config.json",
                                 "tokenizer.json", "tokenizer_config.json",
                                 "special_tokens_map.json", "leakaudit_training.json")))


def run_lab(out_dir: str | Path, config: LabConfig, *, progress=null_progress, log=print,
            command: str = "leakaudit lab", cache_dir: str | Path | None = None,
            formats=("jsonl", "html"), fail_on: list[str] | None = None) -> dict[str, Any]:
    """Build the corpus, train the models, run extraction and write the report into ``out_dir``.

    Every stage (corpus, tokenizer, each model's training, memorization, each model's exposure
    references, membership, inversion, extraction's sampling shards, scoring passes and
    verification) is recorded in the run store of ``out_dir`` (``.leakaudit/store``) under a key
    of its inputs and config, so rerunning after a crash or ``kill -9`` reuses what finished and
    gives the same records. The outputs are written into a staging folder and merged into
    ``out_dir`` at the end (never replacing files leakaudit did not write). The LLM signal cache
    lives in the run store unless ``cache_dir`` shares another. Returns the summary record, with
    ``written`` (a :class:`leakaudit.report.writer.Written`: files by ``formats`` and the verdicts
    of the ``fail_on`` thresholds) added (not in summary.json).
    """
    import torch

    from leakaudit.corpus.index import CorpusIndex
    from leakaudit.lab.corpus import LabCorpus, LabCorpusConfig, generate_lab_corpus
    from leakaudit.report.writer import write_report
    from leakaudit.runs.files import link_tree
    from leakaudit.runs.staged import staged_output
    from leakaudit.runs.store import RunStore, stage_key, texts_key
    from leakaudit.targets import load_target
    from leakaudit.training.lm import train_causal_lm, train_tokenizer
    from leakaudit.audits.exposure import exposure_records
    from leakaudit.audits.extraction import extraction_records
    from leakaudit.audits.memorization import memorization_records

    cfg = config.with_seed(config.seed)
    if cfg.n_reference < 1:
        raise ValueError("the lab needs n_reference >= 1 documents to train its reference model")
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    t_start = time.perf_counter()
    from leakaudit.report.writer import format_files

    extra = format_files(formats)
    with staged_output(out_dir, produces=LAB_OUTPUTS + extra, log=log) as stage:
        store = RunStore.for_output(out_dir, log=log)
        cache = Path(cache_dir) if cache_dir is not None else store.cache_dir
        threads = torch.get_num_threads()
        # corpus
        t0 = time.perf_counter()
        ccfg = LabCorpusConfig(n_docs=cfg.n_docs, n_heldout=cfg.n_heldout,
                               n_reference=cfg.n_reference, seed=cfg.seed,
                               canary_repeats=cfg.canary_repeats,
                               boilerplate_repeats=cfg.boilerplate_repeats,
                               subject_repeats=cfg.subject_repeats,
                               subjects_per_repeat=cfg.subjects_per_repeat)
        ckey = stage_key("lab-corpus", ccfg)
        cdir = store.directory("corpus", ckey, lambda d: generate_lab_corpus(ccfg).write(d))
        corpus = LabCorpus.read(cdir)
        link_tree(cdir, stage / "corpus")
        (stage / "corpus" / "stage.json").unlink(missing_ok=True)
        train_texts = [d["text"] for d in corpus.train]
        log(f"corpus: {len(train_texts)} training documents, {len(corpus.heldout)} held-out, "
            f"{len(corpus.reference)} reference, {len(corpus.manifest['canaries'])} canaries ({time.perf_counter() - t0:.1f}s)")

        # tokenizer + models
        tkey = stage_key("tokenizer", ckey, cfg.vocab_size)
        tdir = store.directory("tokenizer", tkey, lambda d: train_tokenizer(
            train_texts, vocab_size=cfg.vocab_size, out_dir=d))
        tok = None
        training: dict[str, Any] = {}
        heldout_texts = [d["text"] for d in corpus.heldout]
        reference_texts = [d["text"] for d in corpus.reference]
        models: dict[str, Any] = {}
        for role, spec, seed_off, texts in (("target", cfg.target, 0, train_texts),
                                            ("reference", cfg.reference, 1, reference_texts),
                                            ("small", cfg.small, 2, train_texts)):
            t0 = time.perf_counter()
            mkey = stage_key("lm", tkey, texts_key(texts), spec, cfg.seed * 101 + seed_off, threads)

            def train(d: Path, *, _role=role, _spec=spec, _seed=cfg.seed * 101 + seed_off,
                      _texts=texts) -> None:
                nonlocal tok
                if tok is None:
                    from transformers import PreTrainedTokenizerFast

                    tok = PreTrainedTokenizerFast.from_pretrained(str(tdir))
                last = {"loss": float("nan")}
                t1 = time.perf_counter()
                with progress(f"training {_role}", None) as adv:
                    def cb(step, total, loss, _adv=adv):
                        last["loss"] = loss
                        _adv(1)

                    train_causal_lm(_texts, tok, _spec, seed=_seed, out_dir=d, progress=cb)
                (d / "lab_training.json").write_text(json.dumps(
                    {"final_loss": last["loss"], "wall_s": round(time.perf_counter() - t1, 1)}))

            mdir = store.directory(f"train-{role}", mkey, train)
            info = json.loads((mdir / "lab_training.json").read_text())
            link_tree(mdir, stage / "models" / role)
            for extra in ("stage.json", "lab_training.json"):
                (stage / "models" / role / extra).unlink(missing_ok=True)
            training[role] = {"final_loss": info["final_loss"], "wall_s": info["wall_s"],
                              "spec": asdict(spec), "n_docs": len(texts),
                              "data": "reference split" if role == "reference" else "training split"}
            log(f"trained {role}: {spec.n_layer} layers × {spec.n_embd}, final loss "
                f"{info['final_loss']:.3f} ({time.perf_counter() - t0:.1f}s)")
            models[role] = load_target(mdir, name=role)
        target, reference, small = models["target"], models["reference"], models["small"]

        index = CorpusIndex.build(train_texts, [d["id"] for d in corpus.train])
        run_record = {
            **versions(),
            "command": command,
            "started": started,
            "seed": cfg.seed,
            "config": {"lab": _jsonable(asdict(cfg)), **_jsonable(asdict(cfg.extraction))},
            "models": {
                "target": {"path": "models/target", "fingerprint": target.fingerprint(),
                           "token_convention": target.token_convention(),
                           "n_params": sum(p.numel() for p in target.model.parameters())},
                "reference": {"path": "models/reference", "fingerprint": reference.fingerprint(),
                              "token_convention": reference.token_convention(),
                              "n_params": sum(p.numel() for p in reference.model.parameters())},
                "small": {"path": "models/small", "fingerprint": small.fingerprint(),
                          "token_convention": small.token_convention(),
                          "n_params": sum(p.numel() for p in small.model.parameters())},
            },
            "corpus": {"path": "corpus/train.jsonl", "n_docs": len(train_texts),
                       "n_bytes": index.n_bytes},
            "lab": {"manifest": "corpus/manifest.json",
                    "genre_counts": corpus.manifest.get("genre_counts")},
            "training": training,
            "threads": threads,
        }
        fps = {m: models[m].fingerprint() for m in models}
        # memorization of training windows (target, smaller model, and the reference as a negative
        # control: it never saw the training split) and canary exposure
        t0 = time.perf_counter()
        mem = store.json("memorization", stage_key("memorization", fps, ckey, cfg.memorization,
                                                    cfg.extraction.show_pii), lambda: _jsonable(
            memorization_records(
                {"target": target, "small": small, "reference": reference}, texts=train_texts,
                doc_ids=[d["id"] for d in corpus.train], index=index, config=cfg.memorization,
                show_pii=cfg.extraction.show_pii, progress=progress, log=log,
                trained_on={"target": "training split", "small": "training split",
                            "reference": "reference split"})))
        mem_pairs, mem_summary = [tuple(p) for p in mem[0]], mem[1]
        log(f"memorization: exact at k={max(cfg.memorization.prefix_lengths)}: " + ", ".join(
            f"{m} {v:.1%}" for m, v in mem_summary["exact_rate"].items())
            + f" ({time.perf_counter() - t0:.1f}s)")
        t0 = time.perf_counter()
        exp_pairs: list = []
        for m in (target, small, reference):
            ek = stage_key("exposure", fps[m.name], corpus.manifest["canaries"],
                           cfg.exposure_references, cfg.seed, cfg.extraction.score_batch_size,
                           cfg.extraction.show_pii)
            pairs, by_rep = store.json(f"exposure-{m.name}", ek, lambda _m=m: _jsonable(exposure_records(
                _m, corpus.manifest["canaries"], n_references=cfg.exposure_references,
                seed=cfg.seed, batch_size=cfg.extraction.score_batch_size,
                show_pii=cfg.extraction.show_pii, progress=progress)))
            exp_pairs += [tuple(p) for p in pairs]
            log(f"exposure ({m.name}): " + ", ".join(
                f"r{r['repeats']} {r['mean_exposure_rank']:.1f}" for r in by_rep) + " bits")
        log(f"exposure: {time.perf_counter() - t0:.1f}s")
        # PII probes (ProPILE-style): a data subject's name (and e-mail) in the corpus's own
        # formats, asking for their e-mail, phone or date of birth; the reference model and the
        # held-out subjects are the negative controls
        from leakaudit.attacks.probes.pii import PIIProbeConfig, lab_pii_probes

        t0 = time.perf_counter()
        pcfg = PIIProbeConfig(seed=cfg.seed)
        pk = stage_key("pii-probes", fps["target"], fps["reference"], ckey, pcfg,
                       cfg.extraction.show_pii)
        pii_pairs_raw, pii_summary = store.json("pii-probes", pk, lambda: _jsonable(lab_pii_probes(
            {"target": target, "reference": reference}, corpus, config=pcfg,
            show_pii=cfg.extraction.show_pii)))
        pii_pairs = [tuple(p) for p in pii_pairs_raw]
        for k, v in pii_summary.items():
            log(f"pii probes ({k}): exact {v['exact']['k']}/{v['exact']['n']}, "
                f"partial {v['partial']['k']}/{v['partial']['n']}")
        log(f"pii probes: {time.perf_counter() - t0:.1f}s")
        mem_inf_pairs: list = []
        summary_extra: dict[str, Any] = {"memorization": mem_summary, "pii_probes": pii_summary}
        if cfg.membership:
            from leakaudit.attacks.membership.evaluate import EvalConfig
            from leakaudit.lab.membership import llm_lab_membership

            t0 = time.perf_counter()

            def membership() -> Any:
                mia = llm_lab_membership(
                    target, {"reference": reference}, corpus, k=cfg.membership_k,
                    n_reference_secrets=cfg.membership_reference_secrets,
                    heavy_repeats=cfg.membership_heavy_repeats, seed=cfg.seed,
                    eval_config=EvalConfig(n_boot=cfg.membership_boot, seed=cfg.seed),
                    cache_dir=cache, batch_size=cfg.extraction.score_batch_size,
                    show_pii=cfg.extraction.show_pii, progress=progress, log=log)
                return _jsonable([mia.records(), mia.summary()])

            mk = stage_key("membership", fps["target"], fps["reference"], ckey, cfg.membership_k,
                           cfg.membership_reference_secrets, cfg.membership_heavy_repeats,
                           cfg.membership_boot, cfg.seed, cfg.extraction.score_batch_size,
                           cfg.extraction.show_pii)
            mia_records, mia_summary = store.json("membership", mk, membership)
            mem_inf_pairs = [tuple(p) for p in mia_records]
            summary_extra["membership"] = mia_summary
            for audit in mia_summary.values():
                for sub, r in audit.items():
                    best = max(r["attacks"], key=lambda a: r["attacks"][a]["auc"])
                    tpr = r["attacks"][best]["tpr@0.01"]
                    log(f"membership ({sub}): best {best} AUC {r['attacks'][best]['auc']:.3f}, "
                        f"TPR@1%FPR {'n/a' if tpr is None else f'{tpr:.1%}'}; "
                        f"model-free baseline AUC {r['blind_auc']:.3f}")
            log(f"membership: {time.perf_counter() - t0:.1f}s")
        # model inversion of classifiers (digits) and attribute inference (tabular records)
        from leakaudit.lab.inversion import InversionLabConfig, run_inversion_lab

        inv_pairs: list = []
        if cfg.inversion:
            t0 = time.perf_counter()
            inv_cfg = cfg.inversion_config or (
                InversionLabConfig.quick(cfg.seed) if cfg.inversion_quick
                else InversionLabConfig(seed=cfg.seed))
            inv_pairs = [tuple(p) for p in store.json(
                "inversion", stage_key("inversion", inv_cfg, threads),
                lambda: _jsonable(run_inversion_lab(inv_cfg, progress=progress, log=log)))]
            run_record["config"]["inversion"] = _jsonable(inv_cfg.to_dict())
            log(f"inversion: {time.perf_counter() - t0:.1f}s")
        ext_pairs, summary = extraction_records(
            target=target, references={"reference": reference}, index=index,
            prompt_texts=heldout_texts,
            canaries=corpus.manifest["canaries"], config=cfg.extraction,
            progress=progress, log=log, cache_dir=cache, store=store,
            doc_locations={d["id"]: {"file": "corpus/train.jsonl", "line": i + 1}
                           for i, d in enumerate(corpus.train)})
        summary.update(summary_extra)
        written = write_report(stage, run_record=run_record,
                               records=ext_pairs + mem_pairs + exp_pairs + pii_pairs + mem_inf_pairs
                               + inv_pairs,
                               summary=summary, formats=formats, fail_on=fail_on)
        summary["wall_s"] = round(time.perf_counter() - t_start, 1)
        if store.reused:
            log(f"run store: reused {len(store.reused)} finished stages "
                f"({', '.join(dict.fromkeys(store.reused))}); computed {len(store.computed)}")
    summary["written"] = written  # files (by format) and --fail-on verdicts; not in summary.json
    return summary


def _jsonable(x):
    return json.loads(json.dumps(x, default=str))
