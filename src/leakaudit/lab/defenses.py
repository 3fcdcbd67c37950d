"""``leakaudit lab defenses``: every training-side defense judged by re-running the same attacks.

One seeded lab corpus (:mod:`leakaudit.lab.corpus`), one tokenizer (trained on the undefended
training split, so per-token perplexities compare), one seed, the target's training schedule;
the variants differ only in the defense:

- ``undefended``: the lab target;
- ``dedup``: trained on the training split after NearDup + ExactSubstr (:mod:`leakaudit.defenses.dedup`,
  Lee et al.'s parameters, tokens of the lab tokenizer);
- ``scrubbed``: trained on the training split with every detected PII value redacted
  (:mod:`leakaudit.defenses.scrub`);
- ``dp_eps8``, ``dp_eps1``: DP-SGD (:mod:`leakaudit.training.dp_lm`, ghost clipping, C = 1,
  δ = 1/(10·n)) calibrated to ε = 8 and ε = 1;
- ``small``, ``tiny``: the target's schedule at two smaller widths (capacity).

The battery, the same for every variant and always against the *original* training split (the
question is what each model gives away of the data the owner holds): held-out perplexity
(utility, bootstrap CI over documents); exact memorization of training windows (Carlini et al.
2022) overall and by duplicate count, for formerly duplicated windows (count ≥ 2) and for windows
without PII; canary exposure (Secret Sharer; bootstrap CI over canaries); LLM membership inference
(documents vs held-out and canaries vs same-template secrets, the best attack's TPR at 1% FPR with
its Clopper–Pearson interval, next to the model-free baseline's AUC); untargeted extraction
(best ranking's precision with CI, verified samples, canaries whose secret appears in a sample,
distinct training-corpus PII values that appear in a sample, by kind).

Every variant gives one ``defense_comparison`` record; the HTML report draws the table and the
privacy–utility plot (:mod:`leakaudit.report.sections_defenses`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from leakaudit.attacks.extraction.pipeline import ExtractionConfig
from leakaudit.attacks.memorization.measure import MemorizationConfig
from leakaudit.audits.compare import (  # noqa: F401  (re-exported)
    BatteryConfig, bootstrap_mean_ci, heldout_perplexity, run_battery)
from leakaudit.audits.compare import claim_verdict, comparison_warnings
from leakaudit.lab.stages import run_stages
from leakaudit.progress import null_progress
from leakaudit.training.finetune import privacy_statement
from leakaudit.training.lm import LMSpec

VARIANTS = ("undefended", "dedup", "scrubbed", "dp_eps8", "dp_eps1", "small", "tiny")
#: what ``run_defense_lab`` writes (checked before any work)
DEFENSE_LAB_OUTPUTS = (("report.jsonl", "summary.json", "report.html")
                       + tuple(f"corpus/{n}" for n in ("train.jsonl", "heldout.jsonl", "reference.jsonl",
                                                       "manifest.json"))
                       + tuple(f"models/{v}/model.safetensors" for v in (*VARIANTS, "reference")))


@dataclass(frozen=True)
class DefenseLabConfig:
    """Sizes of the defenses lab. The default trains seven variants of the regular quick lab's
    target (2×128, 256-token context, 15 epochs on 150 documents) plus a reference; it
    takes about 52 CPU-minutes (measured: 3,034 s user, 2 threads; about half an hour on an idle
    2-core machine); ``quick()`` is CI-sized."""

    n_docs: int = 150
    n_heldout: int = 150
    n_reference: int = 150
    vocab_size: int = 1024
    canary_repeats: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    boilerplate_repeats: tuple[int, ...] = (2, 8, 16, 32)
    target: LMSpec = field(default_factory=lambda: LMSpec(n_layer=2, n_embd=128, n_head=4, n_ctx=256,
                                                          epochs=15, lr=3e-3, batch_size=8))
    reference: LMSpec = field(default_factory=lambda: LMSpec(n_layer=2, n_embd=64, n_head=4, n_ctx=256,
                                                             epochs=5, lr=3e-3, batch_size=8))
    #: widths of the capacity variants (same depth, heads and schedule as the target)
    small_widths: tuple[int, int] = (64, 32)
    dp_epsilons: tuple[float, float] = (8.0, 1.0)
    dp_max_grad_norm: float = 1.0
    scrub_mode: str = "redact"
    variants: tuple[str, ...] = VARIANTS
    memorization: MemorizationConfig = field(default_factory=lambda: MemorizationConfig(
        prefix_lengths=(32,), suffix_length=32, n_sequences=300, greedy_check=0))
    extraction: ExtractionConfig = field(default_factory=lambda: ExtractionConfig(
        samplers=("top_k", "internet"), n_samples=100, select=25, generate_batch_size=100,
        score_batch_size=32, max_new_tokens=240, show_pii=True))
    exposure_references: int = 500
    membership_k: float = 0.2
    membership_reference_secrets: int = 20
    membership_boot: int = 200
    n_boot: int = 1000
    seed: int = 0

    @classmethod
    def quick(cls, seed: int = 0) -> "DefenseLabConfig":
        """CI-sized: 100 training documents, a 2×64 target with a 128-token context (so seven
        variants train in minutes), 16+16-token memorization windows, 40 samples per sampler."""
        return cls(
            n_docs=100, n_heldout=100, n_reference=60, vocab_size=1024,
            target=LMSpec(n_layer=2, n_embd=64, n_head=4, n_ctx=128, epochs=10, lr=3e-3, batch_size=8),
            reference=LMSpec(n_layer=2, n_embd=32, n_head=4, n_ctx=128, epochs=4, lr=3e-3, batch_size=8),
            small_widths=(32, 16),
            memorization=MemorizationConfig(prefix_lengths=(16,), suffix_length=16, n_sequences=200,
                                            greedy_check=0),
            extraction=ExtractionConfig(samplers=("top_k", "internet"), n_samples=40, select=20,
                                        generate_batch_size=40, score_batch_size=32,
                                        max_new_tokens=100, show_pii=True),
            exposure_references=200, membership_reference_secrets=20, membership_boot=100,
            n_boot=300, seed=seed)

    def with_seed(self, seed: int) -> "DefenseLabConfig":
        return replace(self, seed=seed, extraction=replace(self.extraction, seed=seed),
                       memorization=replace(self.memorization, seed=seed))

    def battery(self) -> BatteryConfig:
        """The attack settings the battery takes (:class:`~leakaudit.audits.compare.BatteryConfig`)."""
        return BatteryConfig(**{f.name: getattr(self, f.name) for f in fields(BatteryConfig)})


# ------------------------------------------------------------------------------ the lab

def run_defense_lab(out_dir: str | Path, config: DefenseLabConfig, *, progress=null_progress, log=print,
                    command: str = "leakaudit lab defenses") -> dict[str, Any]:
    """Corpus → variants → the battery → ``report.jsonl`` (one ``defense_comparison`` record per
    variant), ``summary.json`` and ``report.html`` in ``out_dir``: the stages of
    :data:`DEFENSE_LAB_STAGES`, in order."""
    import shutil

    from leakaudit.report.html import render_html
    from leakaudit.runs.staged import staged_output

    cfg = config.with_seed(config.seed)
    unknown = [v for v in cfg.variants if v not in VARIANTS]
    if unknown or "undefended" not in cfg.variants:
        raise ValueError(f"variants must include 'undefended' and come from {VARIANTS}; got {cfg.variants}")
    t_start = time.perf_counter()
    with staged_output(out_dir, produces=DEFENSE_LAB_OUTPUTS) as stage:
        run = DefenseLabRun(cfg=cfg, stage=stage, progress=progress, log=log, command=command,
                            t_start=t_start)
        summary = run_stages(DEFENSE_LAB_STAGES, run)["report"]
        shutil.rmtree(stage / "cache", ignore_errors=True)
        render_html(stage)
    return summary


@dataclass(frozen=True)
class DefenseLabRun:
    """What every stage of the defenses lab is given besides earlier stages' results."""

    cfg: DefenseLabConfig
    stage: Path  #: the staging folder that becomes ``--out``
    progress: Any
    log: Callable[[str], None]
    command: str
    t_start: float


@dataclass(frozen=True)
class Variants:
    """The trained variants by name (undefended first), the reference, and how each was
    trained."""

    models: dict[str, Any]
    reference: Any
    training: dict[str, dict[str, Any]]


def corpus_stage(run: DefenseLabRun):
    """The seeded lab corpus, written into ``--out/corpus``."""
    from leakaudit.lab.corpus import LabCorpusConfig, generate_lab_corpus

    cfg = run.cfg
    corpus = generate_lab_corpus(LabCorpusConfig(
        n_docs=cfg.n_docs, n_heldout=cfg.n_heldout, n_reference=cfg.n_reference, seed=cfg.seed,
        canary_repeats=cfg.canary_repeats, boilerplate_repeats=cfg.boilerplate_repeats))
    corpus.write(run.stage / "corpus")
    return corpus


def tokenizer_stage(run: DefenseLabRun, corpus):
    """One tokenizer for every variant, trained on the undefended training split."""
    from leakaudit.training.lm import train_tokenizer

    return train_tokenizer([d["text"] for d in corpus.train], vocab_size=run.cfg.vocab_size)


def training_data_stage(run: DefenseLabRun, corpus, tokenizer) -> tuple[dict[str, list[str]], dict]:
    """The training texts of each variant (deduplicated, scrubbed, or the training split) and
    each corpus defense's record."""
    from leakaudit.defenses.dedup import DedupConfig, deduplicate
    from leakaudit.defenses.scrub import ScrubConfig, residual_secrets, scrub_texts

    cfg, log = run.cfg, run.log
    train_texts = [d["text"] for d in corpus.train]
    data: dict[str, list[str]] = {"undefended": train_texts}
    defenses: dict[str, dict[str, Any]] = {}
    if "dedup" in cfg.variants:
        dd = deduplicate(train_texts, [d["id"] for d in corpus.train], tokenizer=tokenizer,
                         config=DedupConfig())
        data["dedup"] = [t for t, k in zip(dd.texts, dd.kept) if k]
        defenses["dedup"] = dd.summary()
        log(f"dedup: {dd.stats['n_near_duplicate_docs']} near-duplicate documents, "
            f"{dd.stats['n_repeated_spans']} repeated spans ({dd.stats['n_repeated_span_tokens']} tokens) "
            f"removed; windows before {dd.windows_before}, after {dd.windows_after}")
    if "scrubbed" in cfg.variants:
        sc = scrub_texts(train_texts, ScrubConfig(mode=cfg.scrub_mode))
        data["scrubbed"] = sc.texts
        truth = [(c["kind"], c["secret"]) for c in corpus.manifest["canaries"]]
        defenses["scrubbed"] = {**sc.summary(), "canary_secrets_left": residual_secrets(sc.texts, truth)}
        log(f"scrub: replaced {sc.counts}; residual {sc.residual}; canary secrets left "
            f"{defenses['scrubbed']['canary_secrets_left']}")
    return data, defenses


def variants_stage(run: DefenseLabRun, corpus, tokenizer, training_data) -> Variants:
    """Every variant of ``cfg.variants`` trained (the target's schedule; DP-SGD or a smaller
    width where the variant says so), then the reference on the reference split."""
    from leakaudit.training.dp_lm import DPLMConfig

    cfg, (data, _) = run.cfg, training_data
    training: dict[str, Any] = {}

    def fit(name, texts, spec, seed_off, dp=None):
        return _fit(run, tokenizer, training, name, texts, spec, seed_off, dp)

    models = {"undefended": fit("undefended", data["undefended"], cfg.target, 0)}
    for v in ("dedup", "scrubbed"):
        if v in cfg.variants:
            models[v] = fit(v, data[v], cfg.target, 0)
    for v, eps in zip(("dp_eps8", "dp_eps1"), cfg.dp_epsilons):
        if v in cfg.variants:
            models[v] = fit(v, data["undefended"], cfg.target, 0,
                            DPLMConfig(target_epsilon=eps, max_grad_norm=cfg.dp_max_grad_norm))
    for v, w in zip(("small", "tiny"), cfg.small_widths):
        if v in cfg.variants:
            models[v] = fit(v, data["undefended"], replace(cfg.target, n_embd=w), 0)
    reference = fit("reference", [d["text"] for d in corpus.reference], cfg.reference, 1)
    return Variants(models, reference, training)


def _fit(run: DefenseLabRun, tok, training: dict[str, Any], name: str, texts, spec: LMSpec,
         seed_off: int, dp=None):
    """Train one variant into ``--out/models/<name>``; its record goes into ``training``."""
    from leakaudit.progress import steps_progress
    from leakaudit.targets import load_target
    from leakaudit.training.dp_lm import train_causal_lm_dp
    from leakaudit.training.lm import train_causal_lm

    mdir, seed = run.stage / "models" / name, run.cfg.seed * 101 + seed_off
    t0 = time.perf_counter()
    with steps_progress(run.progress, f"training {name}") as cb:
        if dp is None:
            train_causal_lm(texts, tok, spec, seed=seed, out_dir=mdir, progress=cb)
            rec = None
        else:
            _, rec = train_causal_lm_dp(texts, tok, spec, dp, seed=seed, out_dir=mdir, progress=cb)
    training[name] = {"wall_s": round(time.perf_counter() - t0, 1), "spec": asdict(spec),
                      "n_docs": len(texts), **({"dp": rec} if rec else {})}
    run.log(f"trained {name}: {spec.n_layer}×{spec.n_embd}"
            + (f", {privacy_statement(rec)} (σ = {rec['noise_multiplier']:.3f}, q = {rec['sample_rate']:.4f}, "
               f"{rec['steps']} steps)" if rec else "") + f" ({training[name]['wall_s']}s)")
    return load_target(mdir, name=name)


def index_stage(run: DefenseLabRun, corpus):
    """The exact-match index of the (undefended) training split."""
    from leakaudit.corpus.index import CorpusIndex

    return CorpusIndex.build([d["text"] for d in corpus.train], [d["id"] for d in corpus.train])


def battery_stage(run: DefenseLabRun, corpus, variants: Variants, index) -> tuple[dict, list]:
    """The same attacks on every variant, against the original training split
    (:func:`leakaudit.audits.compare.run_battery`): rows by variant and memorization records."""
    return run_battery(
        variants.models, reference=variants.reference, train_texts=[d["text"] for d in corpus.train],
        train_ids=[d["id"] for d in corpus.train], heldout_texts=[d["text"] for d in corpus.heldout],
        index=index, config=run.cfg.battery(), lab_corpus=corpus, cache_dir=run.stage / "cache",
        progress=run.progress, log=run.log)


def report_stage(run: DefenseLabRun, corpus, training_data, variants: Variants,
                 battery) -> dict[str, Any]:
    """One ``defense_comparison`` record per variant, the claims' verdicts and the run record,
    written as ``report.jsonl`` and ``summary.json``; returns the summary."""
    import torch

    from leakaudit.report.writer import write_report
    from leakaudit.runs.store import jsonable
    from leakaudit.versions import versions

    cfg, (rows, mem_records), defenses = run.cfg, battery, training_data[1]
    models, training = variants.models, variants.training
    records = []
    for name in models:
        row = rows[name]
        row.update({"defense": name, "n_params": sum(p.numel() for p in models[name].model.parameters()),
                    "training": training[name], "defense_record": defenses.get(name)})
        records.append(("defense_comparison", row))
    summary = {"attack": "defense_comparison", "variants": list(models), "claims": evaluate_claims(rows),
               "warnings": comparison_warnings(rows, baseline="undefended"),
               "wall_s": round(time.perf_counter() - run.t_start, 1)}
    run_record = {**versions(), "command": run.command, "seed": cfg.seed, "threads": torch.get_num_threads(),
                  "config": {"defense_lab": jsonable(asdict(cfg))},
                  "models": {n: {"path": f"models/{n}", "fingerprint": m.fingerprint(),
                                 "n_params": rows[n]["n_params"]} for n, m in models.items()},
                  "corpus": {"path": "corpus/train.jsonl", "n_docs": len(corpus.train)},
                  "training": training}
    write_report(run.stage, formats=("jsonl",), run_record=run_record,
                 records=records + mem_records, summary=summary)
    return summary


#: The defenses lab, in order: (name, stage); see :mod:`leakaudit.lab.stages`.
DEFENSE_LAB_STAGES: tuple[tuple[str, Callable[..., Any]], ...] = (
    ("corpus", corpus_stage),
    ("tokenizer", tokenizer_stage),
    ("training_data", training_data_stage),
    ("variants", variants_stage),
    ("index", index_stage),
    ("battery", battery_stage),
    ("report", report_stage),
)


def _v(r: dict | None):
    return None if not r else r.get("value", r.get("tpr"))


def evaluate_claims(rows: dict[str, dict]) -> dict[str, dict[str, Any]]:
    """The seeds' four claims, each as measured numbers and a verdict (True / False / None when a
    variant is missing or a number is not resolvable). Intervals are 95%."""
    out: dict[str, dict[str, Any]] = {}
    u = rows.get("undefended")
    if u is None:
        return out
    if "dedup" in rows:
        a, b = u["memorization"].get("dup"), rows["dedup"]["memorization"].get("dup")
        ratio = (a["value"] / b["value"]) if a and b and b["value"] else (math.inf if a and a["value"] else None)
        out["dedup_cuts_duplicated_memorization"] = {
            "claim": "deduplication cuts verbatim memorization of formerly duplicated content several-fold",
            "undefended": a, "dedup": b, "ratio": ratio,
            "undefended_leaked": None if a is None else bool(a["value"]),
            # several-fold (≥ 3×), and the intervals separate
            # not resolvable when the undefended model memorizes none of them
            "holds": None if a is None or b is None or not a["value"] else bool(
                (ratio is not None and ratio >= 3) and a["ci_low"] > b["ci_high"])}
    if "dp_eps8" in rows:
        a, b = u["membership"]["documents"], rows["dp_eps8"]["membership"]["documents"]
        ea, eb = u["exposure"]["mean"], rows["dp_eps8"]["exposure"]["mean"]
        ok = None if a["tpr"] is None or b["tpr"] is None or not a["tpr"] else bool(b["tpr"] <= a["tpr"] / 3)
        out["dp_eps8_cuts_mia_and_exposure"] = {
            "claim": "DP-SGD at ε≈8 cuts the best membership attack's TPR at 1% FPR to at most a third "
                     "of the undefended model's, and canary exposure falls",
            "undefended_tpr": a, "dp_tpr": b, "undefended_exposure": ea, "dp_exposure": eb,
            "privacy": privacy_statement((rows["dp_eps8"].get("training") or {}).get("dp")),
            "undefended_leaked": None if a["tpr"] is None else bool(a["tpr"]),
            "holds": None if ok is None else bool(ok and eb["ci_high"] < ea["ci_low"])}
    if "scrubbed" in rows:
        a, b = u["extraction"], rows["scrubbed"]["extraction"]
        ma, mb = u["memorization"].get("nonpii"), rows["scrubbed"]["memorization"].get("nonpii")
        pii_b = sum(b["corpus_pii_in_samples"].values())
        out["scrub_removes_pii_keeps_other_memorization"] = {
            "claim": "scrubbing removes the scrubbed PII kinds from what can be extracted while "
                     "memorization of non-PII text stays",
            "undefended_pii_in_samples": a["corpus_pii_in_samples"], "scrubbed_pii_in_samples": b["corpus_pii_in_samples"],
            "undefended_canaries_extracted": a["canaries_extracted"], "scrubbed_canaries_extracted": b["canaries_extracted"],
            "undefended_nonpii_memorization": ma, "scrubbed_nonpii_memorization": mb,
            "undefended_leaked": bool(sum(a["corpus_pii_in_samples"].values()) or a["canaries_extracted"]),
            # no training-corpus PII value and no canary secret in any sample, and the non-PII
            # memorization intervals overlap
            "holds": None if ma is None or mb is None else bool(
                pii_b == 0 and b["canaries_extracted"] == 0
                and mb["ci_high"] >= ma["ci_low"] and ma["ci_high"] >= mb["ci_low"])}
    sizes = [n for n in ("undefended", "small", "tiny") if n in rows]
    if len(sizes) > 1:
        rs = [rows[n]["memorization"].get("all") for n in sizes]
        # each smaller model memorizes no more than the next larger one, and the largest's
        # interval lies above the smallest's. Two sizes that both memorize nothing (the floor,
        # e.g. 0/300 and 0/300) are a tie the measure cannot resolve: listed in "ties", and the
        # claim is then "not resolvable" (None) unless a resolvable step refutes it; never
        # "holds" (default-size lab: 29.3% -> 0% -> 0%).
        ties = [] if any(r is None for r in rs) else [
            [sizes[i], sizes[i + 1]] for i in range(len(rs) - 1)
            if rs[i]["value"] == rs[i + 1]["value"]]
        floor = [t for t in ties if rows[t[0]]["memorization"]["all"]["value"] == 0]
        if any(r is None for r in rs):
            holds = None
        elif any(rs[i]["value"] < rs[i + 1]["value"] for i in range(len(rs) - 1)):
            holds = False  # a smaller model memorizes more
        elif floor:
            holds = None
        else:
            holds = bool(rs[0]["ci_low"] > rs[-1]["ci_high"])
        out["smaller_models_memorize_less"] = {
            "claim": "smaller models memorize less",
            "by_size": {n: {"n_params": rows[n].get("n_params"), "exact": r} for n, r in zip(sizes, rs)},
            "undefended_leaked": None if rs[0] is None else bool(rs[0]["value"]),
            "ties": ties, "floor_ties": floor, "holds": holds}
    for c in out.values():  # a claim whose undefended side leaked nothing is "not testable"
        c["verdict"] = claim_verdict(c)
    return out
