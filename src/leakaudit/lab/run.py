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
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from leakaudit.attacks.extraction.pipeline import ExtractionConfig
from leakaudit.attacks.memorization.measure import MemorizationConfig
from leakaudit.lab.stages import run_stages
from leakaudit.progress import null_progress
from leakaudit.runs.store import RunStore
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
            formats=("jsonl", "html"), fail_on: list[str] | None = None,
            helper_lane: bool = True) -> dict[str, Any]:
    """Build the corpus, train the models, run every audit and write the report into ``out_dir``:
    the stages of :data:`LAB_STAGES`, in order.

    Every expensive stage (corpus, tokenizer, each model's training, memorization, each model's
    exposure references, PII probes, membership, inversion, extraction's sampling shards, scoring
    passes and verification) is recorded in the run store of ``out_dir`` (``.leakaudit/store``)
    under a key of its inputs and config, so rerunning after a crash or ``kill -9`` reuses what
    finished and gives the same records. The outputs are written into a staging folder and merged
    into ``out_dir`` at the end (never replacing files leakaudit did not write). The LLM signal
    cache lives in the run store unless ``cache_dir`` shares another. With two or more threads (and
    ``helper_lane``), half of them go to a helper process that walks the stages in the other
    order on the same run store (:mod:`leakaudit.lab.lanes`): the same records, in less time.
    Returns the summary record,
    with ``written`` (a :class:`leakaudit.report.writer.Written`: files by ``formats`` and the
    verdicts of the ``fail_on`` thresholds) added (not in summary.json).
    """
    import torch

    from leakaudit.runs.staged import staged_output

    cfg = config.with_seed(config.seed)
    if cfg.n_reference < 1:
        raise ValueError("the lab needs n_reference >= 1 documents to train its reference model")
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    t_start = time.perf_counter()
    from leakaudit.report.writer import format_files

    from leakaudit.lab.lanes import helper_lane_beside, helper_stages, lane_threads

    extra = format_files(formats)
    budget = torch.get_num_threads()
    lanes = lane_threads(budget) if helper_lane else None
    with staged_output(out_dir, produces=LAB_OUTPUTS + extra, log=log) as stage:
        store = RunStore.for_output(out_dir, log=log)
        run = LabRun(cfg=cfg, store=store, stage=stage,
                     cache=Path(cache_dir) if cache_dir is not None else store.cache_dir,
                     threads=lanes[0] if lanes else budget, progress=progress, log=log,
                     command=command, started=started, formats=tuple(formats), fail_on=fail_on,
                     budget=budget, lanes=lanes or (budget,))
        with helper_lane_beside(run, helper_stages(LAB_STAGES), lanes, budget=budget, log=log):
            summary, written = run_stages(LAB_STAGES, run)["report"]
        summary["wall_s"] = round(time.perf_counter() - t_start, 1)
        if store.reused:
            log(f"run store: reused {len(store.reused)} finished stages "
                f"({', '.join(dict.fromkeys(store.reused))}); computed {len(store.computed)}")
    summary["written"] = written  # files (by format) and --fail-on verdicts; not in summary.json
    return summary


@dataclass(frozen=True)
class LabRun:
    """What every stage of the lab is given besides earlier stages' results: the config, the run
    store, the staging folder that becomes ``--out``, and the run's settings."""

    cfg: LabConfig
    store: RunStore  #: the run store of ``--out``
    stage: Path
    cache: Path  #: the LLM signal cache
    threads: int
    progress: Any
    log: Callable[[str], None]
    command: str
    started: str
    formats: tuple[str, ...]
    fail_on: list[str] | None
    #: the thread budget of the run (``--threads``), and the threads of each process computing
    #: the stages (two: this one and its helper lane; :mod:`leakaudit.lab.lanes`); ``threads``
    #: is this process's
    budget: int = 1
    lanes: tuple[int, ...] = (1,)
    #: the helper lane walks the models and the per-model stages in reverse order
    reverse: bool = False

    def helper_args(self) -> dict[str, Any]:
        """What a helper lane's process needs to build its own run (:meth:`for_helper`)."""
        return {"cfg": self.cfg, "cache": str(self.cache)}

    @classmethod
    def for_helper(cls, *, store: RunStore, stage: Path, threads: int, log, cfg: LabConfig,
                   cache: str) -> "LabRun":
        """The helper lane's run: the same config and store, the other order, no outputs."""
        return cls(cfg=cfg, store=store, stage=stage, cache=Path(cache), threads=threads,
                   progress=null_progress, log=log, command="", started="", formats=(),
                   fail_on=None, reverse=True)


@dataclass(frozen=True)
class LabData:
    """The lab corpus (train, held-out and reference splits, manifest) and its run-store key."""

    corpus: Any  #: :class:`leakaudit.lab.corpus.LabCorpus`
    key: str

    @property
    def train_texts(self) -> list[str]:
        return [d["text"] for d in self.corpus.train]

    @property
    def train_ids(self) -> list[str]:
        return [d["id"] for d in self.corpus.train]

    @property
    def canaries(self) -> list[dict[str, Any]]:
        return self.corpus.manifest["canaries"]


@dataclass(frozen=True)
class LabModels:
    """The three trained models by role (target, reference, small) and how each was trained."""

    models: dict[str, Any]
    training: dict[str, dict[str, Any]]

    def fingerprints(self) -> dict[str, str]:
        return {role: m.fingerprint() for role, m in self.models.items()}


# ------------------------------------------------------------------------------ the stages


def corpus_stage(run: LabRun) -> LabData:
    """The seeded corpus with its ground truth, linked into ``--out/corpus``."""
    from leakaudit.lab.corpus import LabCorpus, LabCorpusConfig, generate_lab_corpus
    from leakaudit.runs.files import link_tree
    from leakaudit.runs.store import stage_key

    cfg, t0 = run.cfg, time.perf_counter()
    ccfg = LabCorpusConfig(n_docs=cfg.n_docs, n_heldout=cfg.n_heldout,
                           n_reference=cfg.n_reference, seed=cfg.seed,
                           canary_repeats=cfg.canary_repeats,
                           boilerplate_repeats=cfg.boilerplate_repeats,
                           subject_repeats=cfg.subject_repeats,
                           subjects_per_repeat=cfg.subjects_per_repeat)
    ckey = stage_key("lab-corpus", ccfg)
    cdir = run.store.directory("corpus", ckey, lambda d: generate_lab_corpus(ccfg).write(d))
    corpus = LabCorpus.read(cdir)
    link_tree(cdir, run.stage / "corpus")
    (run.stage / "corpus" / "stage.json").unlink(missing_ok=True)
    run.log(f"corpus: {len(corpus.train)} training documents, {len(corpus.heldout)} held-out, "
            f"{len(corpus.reference)} reference, {len(corpus.manifest['canaries'])} canaries "
            f"({time.perf_counter() - t0:.1f}s)")
    return LabData(corpus, ckey)


def tokenizer_stage(run: LabRun, corpus: LabData) -> tuple[Path, str]:
    """The byte-level BPE tokenizer trained on the training split: its folder and key."""
    from leakaudit.runs.store import stage_key
    from leakaudit.training.lm import train_tokenizer

    tkey = stage_key("tokenizer", corpus.key, run.cfg.vocab_size)
    tdir = run.store.directory("tokenizer", tkey, lambda d: train_tokenizer(
        corpus.train_texts, vocab_size=run.cfg.vocab_size, out_dir=d))
    return tdir, tkey


def models_stage(run: LabRun, corpus: LabData, tokenizer: tuple[Path, str]) -> LabModels:
    """The target and the small model trained on the training split, the reference on the
    reference split, each linked into ``--out/models/<role>``."""
    cfg, train_texts = run.cfg, corpus.train_texts
    reference_texts = [d["text"] for d in corpus.corpus.reference]
    loaded: dict[str, Any] = {}  # the tokenizer, loaded once by the first model trained
    models, training = {}, {}
    roles = [("target", cfg.target, 0, train_texts),
             ("reference", cfg.reference, 1, reference_texts),
             ("small", cfg.small, 2, train_texts)]
    for role, spec, seed_off, texts in (roles[::-1] if run.reverse else roles):
        if run.reverse and role == "target":
            # the helper lane, before it waits for the lab's target: the stages that need only
            # the models it trained (their canary exposure) or none (the inversion lab)
            for r in ("reference", "small"):
                _exposure(run, corpus, models[r], r)
            inversion_stage(run)
        models[role], training[role] = _train_model(run, tokenizer, loaded, role, spec,
                                                    cfg.seed * 101 + seed_off, texts)
    return LabModels({r: models[r] for r, *_ in roles}, {r: training[r] for r, *_ in roles})


def _train_model(run: LabRun, tokenizer: tuple[Path, str], loaded: dict[str, Any], role: str,
                 spec: LMSpec, seed: int, texts: list[str]) -> tuple[Any, dict[str, Any]]:
    from leakaudit.progress import steps_progress
    from leakaudit.runs.files import link_tree
    from leakaudit.runs.store import stage_key, texts_key
    from leakaudit.targets import load_target
    from leakaudit.training.lm import train_causal_lm

    tdir, tkey = tokenizer
    t0 = time.perf_counter()

    def train(d: Path) -> None:
        if "tok" not in loaded:
            from transformers import PreTrainedTokenizerFast

            loaded["tok"] = PreTrainedTokenizerFast.from_pretrained(str(tdir))
        last = {"loss": float("nan")}
        t1 = time.perf_counter()
        with steps_progress(run.progress, f"training {role}") as bar:
            def cb(step, total, loss):
                last["loss"] = loss
                bar(step, total, loss)

            train_causal_lm(texts, loaded["tok"], spec, seed=seed, out_dir=d, progress=cb)
        (d / "lab_training.json").write_text(json.dumps(
            {"final_loss": last["loss"], "wall_s": round(time.perf_counter() - t1, 1),
             "threads": run.threads}))

    # Not keyed by the thread count: a resume with another count reuses the model. A model
    # trained at 2 threads differs from one trained at 1 in its last bits (CPU reductions in the
    # backward pass sum in a thread-dependent order), so its record says how it was trained;
    # every later stage is keyed by the models' fingerprints and stays consistent with it.
    mkey = stage_key("lm", tkey, texts_key(texts), spec, seed)
    mdir = run.store.directory(f"train-{role}", mkey, train)
    info = json.loads((mdir / "lab_training.json").read_text())
    link_tree(mdir, run.stage / "models" / role)
    for name in ("stage.json", "lab_training.json"):
        (run.stage / "models" / role / name).unlink(missing_ok=True)
    run.log(f"trained {role}: {spec.n_layer} layers × {spec.n_embd}, final loss "
            f"{info['final_loss']:.3f} ({time.perf_counter() - t0:.1f}s)")
    return load_target(mdir, name=role), {
        "final_loss": info["final_loss"], "wall_s": info["wall_s"], "spec": asdict(spec),
        "n_docs": len(texts), "threads": info.get("threads"),
        "data": "reference split" if role == "reference" else "training split"}


def index_stage(run: LabRun, corpus: LabData):
    """The exact-match index of the training split (verifies extracted text)."""
    from leakaudit.corpus.index import CorpusIndex

    return CorpusIndex.build(corpus.train_texts, corpus.train_ids)


def memorization_stage(run: LabRun, corpus: LabData, models: LabModels, index) -> list:
    """Exact memorization of training windows: the target, the smaller model, and the reference
    as a negative control (it never saw the training split). Returns the records and summary."""
    from leakaudit.audits.memorization import memorization_records
    from leakaudit.runs.store import jsonable, stage_key

    cfg, m, t0 = run.cfg, models.models, time.perf_counter()
    key = stage_key("memorization", models.fingerprints(), corpus.key, cfg.memorization,
                    cfg.extraction.show_pii)
    mem = run.store.json("memorization", key, lambda: jsonable(memorization_records(
        {"target": m["target"], "small": m["small"], "reference": m["reference"]},
        texts=corpus.train_texts, doc_ids=corpus.train_ids, index=index, config=cfg.memorization,
        show_pii=cfg.extraction.show_pii, progress=run.progress, log=run.log,
        trained_on={"target": "training split", "small": "training split",
                    "reference": "reference split"})))
    run.log(f"memorization: exact at k={max(cfg.memorization.prefix_lengths)}: " + ", ".join(
        f"{name} {v:.1%}" for name, v in mem[1]["exact_rate"].items())
        + f" ({time.perf_counter() - t0:.1f}s)")
    return [[tuple(p) for p in mem[0]], mem[1]]


def exposure_stage(run: LabRun, corpus: LabData, models: LabModels) -> list:
    """Canary exposure (Secret Sharer) of each model against its own reference secrets."""
    t0 = time.perf_counter()
    pairs_all: list = []
    roles = ("target", "small", "reference")
    by_role = {role: _exposure(run, corpus, models.models[role], role)
               for role in (roles[::-1] if run.reverse else roles)}
    for role in roles:
        pairs, by_rep = by_role[role]
        pairs_all += [tuple(p) for p in pairs]
        run.log(f"exposure ({role}): " + ", ".join(
            f"r{r['repeats']} {r['mean_exposure_rank']:.1f}" for r in by_rep) + " bits")
    run.log(f"exposure: {time.perf_counter() - t0:.1f}s")
    return pairs_all


def _exposure(run: LabRun, corpus: LabData, model, role: str) -> list:
    """One model's exposure records and per-repeats summary (a run-store stage keyed by the
    model's fingerprint): ``[pairs, by_repeats]`` as JSON reads them back."""
    from leakaudit.audits.exposure import exposure_records
    from leakaudit.runs.store import jsonable, stage_key

    cfg = run.cfg
    key = stage_key("exposure", model.fingerprint(), corpus.canaries, cfg.exposure_references,
                    cfg.seed, cfg.extraction.score_batch_size, cfg.extraction.show_pii)
    return run.store.json(f"exposure-{role}", key, lambda: jsonable(exposure_records(
        model, corpus.canaries, n_references=cfg.exposure_references, seed=cfg.seed,
        batch_size=cfg.extraction.score_batch_size, show_pii=cfg.extraction.show_pii,
        progress=run.progress)))


def pii_probes_stage(run: LabRun, corpus: LabData, models: LabModels) -> list:
    """PII probes (ProPILE-style): a data subject's name (and e-mail) in the corpus's own
    formats, asking for their e-mail, phone or date of birth; the reference model and the
    held-out subjects are the negative controls. Returns the records and summary."""
    from leakaudit.attacks.probes.pii import PIIProbeConfig, lab_pii_probes
    from leakaudit.runs.store import jsonable, stage_key

    cfg, m, t0 = run.cfg, models.models, time.perf_counter()
    pcfg = PIIProbeConfig(seed=cfg.seed)
    fps = models.fingerprints()
    key = stage_key("pii-probes", fps["target"], fps["reference"], corpus.key, pcfg,
                    cfg.extraction.show_pii)
    pairs, summary = run.store.json("pii-probes", key, lambda: jsonable(lab_pii_probes(
        {"target": m["target"], "reference": m["reference"]}, corpus.corpus, config=pcfg,
        show_pii=cfg.extraction.show_pii)))
    for k, v in summary.items():
        run.log(f"pii probes ({k}): exact {v['exact']['k']}/{v['exact']['n']}, "
                f"partial {v['partial']['k']}/{v['partial']['n']}")
    run.log(f"pii probes: {time.perf_counter() - t0:.1f}s")
    return [[tuple(p) for p in pairs], summary]


def membership_stage(run: LabRun, corpus: LabData, models: LabModels) -> list:
    """LLM membership inference: training documents (insertions removed) vs held-out documents,
    and canaries vs same-template secrets. Returns the records and summary ([], None when
    ``membership`` is off)."""
    cfg = run.cfg
    if not cfg.membership:
        return [[], None]
    from leakaudit.attacks.membership.evaluate import EvalConfig
    from leakaudit.audits.lab_membership import llm_lab_membership
    from leakaudit.runs.store import jsonable, stage_key

    m, t0, fps = models.models, time.perf_counter(), models.fingerprints()

    def membership() -> Any:
        mia = llm_lab_membership(
            m["target"], {"reference": m["reference"]}, corpus.corpus, k=cfg.membership_k,
            n_reference_secrets=cfg.membership_reference_secrets,
            heavy_repeats=cfg.membership_heavy_repeats, seed=cfg.seed,
            eval_config=EvalConfig(n_boot=cfg.membership_boot, seed=cfg.seed),
            cache_dir=run.cache, batch_size=cfg.extraction.score_batch_size,
            show_pii=cfg.extraction.show_pii, progress=run.progress, log=run.log)
        return jsonable([mia.records(), mia.summary()])

    key = stage_key("membership", fps["target"], fps["reference"], corpus.key, cfg.membership_k,
                    cfg.membership_reference_secrets, cfg.membership_heavy_repeats,
                    cfg.membership_boot, cfg.seed, cfg.extraction.score_batch_size,
                    cfg.extraction.show_pii)
    records, summary = run.store.json("membership", key, membership)
    for audit in summary.values():
        for sub, r in audit.items():
            best = max(r["attacks"], key=lambda a: r["attacks"][a]["auc"])
            tpr = r["attacks"][best]["tpr@0.01"]
            run.log(f"membership ({sub}): best {best} AUC {r['attacks'][best]['auc']:.3f}, "
                    f"TPR@1%FPR {'n/a' if tpr is None else f'{tpr:.1%}'}; "
                    f"model-free baseline AUC {r['blind_auc']:.3f}")
    run.log(f"membership: {time.perf_counter() - t0:.1f}s")
    return [[tuple(p) for p in records], summary]


def inversion_stage(run: LabRun) -> list:
    """Model inversion of classifiers (digits) and attribute inference (tabular records).
    Returns the records and the inversion config as JSON ([], None when ``inversion`` is off)."""
    cfg = run.cfg
    if not cfg.inversion:
        return [[], None]
    from leakaudit.lab.inversion import InversionLabConfig, run_inversion_lab
    from leakaudit.runs.store import jsonable, stage_key

    t0 = time.perf_counter()
    inv_cfg = cfg.inversion_config or (
        InversionLabConfig.quick(cfg.seed) if cfg.inversion_quick
        else InversionLabConfig(seed=cfg.seed))
    pairs = run.store.json("inversion", stage_key("inversion", inv_cfg),
                           lambda: jsonable(run_inversion_lab(inv_cfg, progress=run.progress,
                                                              log=run.log)))
    run.log(f"inversion: {time.perf_counter() - t0:.1f}s")
    return [[tuple(p) for p in pairs], jsonable(inv_cfg.to_dict())]


def extraction_stage(run: LabRun, corpus: LabData, models: LabModels, index) -> tuple:
    """Untargeted extraction (Carlini et al. 2021) from the target, ranked against the reference
    and verified against the training split. Returns the records and summary."""
    from leakaudit.audits.extraction import extraction_records

    cfg, m = run.cfg, models.models
    return extraction_records(
        target=m["target"], references={"reference": m["reference"]}, index=index,
        prompt_texts=[d["text"] for d in corpus.corpus.heldout], canaries=corpus.canaries,
        config=cfg.extraction, progress=run.progress, log=run.log, cache_dir=run.cache,
        store=run.store, doc_locations={d["id"]: {"file": "corpus/train.jsonl", "line": i + 1}
                                        for i, d in enumerate(corpus.corpus.train)})


def report_stage(run: LabRun, corpus: LabData, models: LabModels, index, memorization,
                 exposure, pii_probes, membership, inversion, extraction) -> tuple:
    """``report.jsonl`` (the run record, every stage's records, the summary) and the other
    formats, into the staging folder. Returns the summary and what was written."""
    from leakaudit.report.writer import write_report

    ext_pairs, summary = extraction
    summary.update({"memorization": memorization[1], "pii_probes": pii_probes[1]})
    if membership[1] is not None:
        summary["membership"] = membership[1]
    written = write_report(
        run.stage, run_record=_run_record(run, corpus, models, index, inversion[1]),
        records=ext_pairs + memorization[0] + exposure + pii_probes[0] + membership[0]
        + inversion[0], summary=summary, formats=run.formats, fail_on=run.fail_on)
    return summary, written


def _run_record(run: LabRun, corpus: LabData, models: LabModels, index,
                inversion_config: dict[str, Any] | None) -> dict[str, Any]:
    from leakaudit.runs.store import jsonable

    cfg = run.cfg
    config = {"lab": jsonable(asdict(cfg)), **jsonable(asdict(cfg.extraction))}
    if inversion_config is not None:
        config["inversion"] = inversion_config
    return {
        **versions(),
        "command": run.command,
        "started": run.started,
        "seed": cfg.seed,
        "config": config,
        "models": {role: {"path": f"models/{role}", "fingerprint": m.fingerprint(),
                          "token_convention": m.token_convention(),
                          "n_params": sum(p.numel() for p in m.model.parameters())}
                   for role, m in models.models.items()},
        "corpus": {"path": "corpus/train.jsonl", "n_docs": len(corpus.corpus.train),
                   "n_bytes": index.n_bytes},
        "lab": {"manifest": "corpus/manifest.json",
                "genre_counts": corpus.corpus.manifest.get("genre_counts")},
        "training": models.training,
        "threads": run.budget,
        "lanes": list(run.lanes),
    }


#: The lab, in order: (name, stage). A stage takes the :class:`LabRun` and, by parameter name,
#: the results of earlier stages; :func:`run_lab` walks the list (:mod:`leakaudit.lab.stages`). The expensive stages keep
#: their results in the run store under keys of their inputs (stage names ``corpus``,
#: ``tokenizer``, ``train-<role>``, ``memorization``, ``exposure-<role>``, ``pii-probes``,
#: ``membership``, ``inversion``, and extraction's ``samples-*`` / ``score-*`` / ``verify-*``).
LAB_STAGES: tuple[tuple[str, Callable[..., Any]], ...] = (
    ("corpus", corpus_stage),
    ("tokenizer", tokenizer_stage),
    ("models", models_stage),
    ("index", index_stage),
    ("memorization", memorization_stage),
    ("exposure", exposure_stage),
    ("pii_probes", pii_probes_stage),
    ("membership", membership_stage),
    ("inversion", inversion_stage),
    ("extraction", extraction_stage),
    ("report", report_stage),
)
