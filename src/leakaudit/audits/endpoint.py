"""``audit_endpoint``: every attack an OpenAI-compatible endpoint's capabilities allow, one report.

Each attack declares what it needs (:data:`ATTACK_NEEDS`); an attack the endpoint cannot serve
(or whose data was not given) is recorded as ``skipped`` with the missing capability, never
silently left out. All requests go through the backend's ledger, so rerunning the same audit into
the same folder sends nothing, and a run stopped by a budget or a crash resumes where it stopped.

Records (``report.jsonl``): ``run``, ``capabilities``, ``skipped``, the attacks' own records
(extraction's ``sample``/``eval``/``canary``/``pii``, ``memorization``, ``membership``,
``exposure``, ``divergence``, ``pii_probe``), one
``api_request`` per request (status, attempts, latency, tokens; no text), ``api_summary`` and
``summary``, all through the findings writer.

**Extraction over the API** (Carlini et al. 2021) is the in-process pipeline
(:func:`~leakaudit.attacks.extraction.pipeline.run_extraction`) with the endpoint as its target:
samples come from the API (top-k from the start token, seeded per request, several per request
where the server honours ``n``), are ranked with the API's own log-probs (the samples' prompt
log-probs via ``echo`` where the endpoint has them, else the log-probs returned with the sampled
tokens, else a local reference model and zlib) and verified against the corpus index (a
``match_tokens``-token verbatim window). The decaying-temperature sampler needs a logits
processor and is recorded as skipped.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from leakaudit.attacks.extraction.pipeline import ExtractionConfig
from leakaudit.attacks.memorization.measure import MemorizationConfig
from leakaudit.attacks.probes.divergence import DivergenceConfig
from leakaudit.attacks.probes.pii import PIIProbeConfig
from leakaudit.errors import CapabilityError, InputError
from leakaudit.progress import null_progress
from leakaudit.runs.store import jsonable
from leakaudit.targets.api_client import BudgetExhausted
from leakaudit.targets.base import SamplingConfig

#: What each attack needs: endpoint capabilities (names of ApiCapabilities fields) and data.
ATTACK_NEEDS: dict[str, dict[str, tuple[str, ...]]] = {
    "extraction": {"capabilities": ("generation", "tokenizer"), "data": ("corpus",)},
    "memorization": {"capabilities": ("prompt_logprobs", "argmax", "tokenizer"),
                     "data": ("corpus",)},
    "membership": {"capabilities": ("prompt_logprobs", "tokenizer"),
                   "data": ("corpus", "nonmembers")},
    "exposure": {"capabilities": ("prompt_logprobs", "tokenizer"), "data": ("canaries",)},
    "divergence": {"capabilities": ("generation",), "data": ("corpus",)},
    "pii": {"capabilities": ("generation",), "data": ("subjects",)},
}
ATTACKS = tuple(ATTACK_NEEDS)


@dataclass(frozen=True)
class EndpointAuditConfig:
    """What to run and at what size (requests cost money on a hosted API: sizes are small)."""

    attacks: tuple[str, ...] = ATTACKS
    #: extraction's settings (seed and show_pii come from this config); the paper's top-k
    #: sampler only: its decaying temperature needs a logits processor an API does not have
    extraction: ExtractionConfig = field(default_factory=lambda: ExtractionConfig(
        samplers=("top_k",), n_samples=200, max_new_tokens=256, select=50, shard_samples=100))
    memorization: MemorizationConfig = field(default_factory=lambda: MemorizationConfig(
        prefix_lengths=(32,), suffix_length=32, n_sequences=100, greedy_check=100,
        stratify=False, sampling=SamplingConfig(top_k=None, temperature=1.0)))
    membership_docs: int | None = 100  #: members and non-members each (None: all)
    membership_k: float = 0.2
    membership_boot: int = 200
    exposure_references: int = 100
    divergence: DivergenceConfig = field(default_factory=DivergenceConfig)
    pii: PIIProbeConfig = field(default_factory=PIIProbeConfig)
    show_pii: bool = False
    seed: int = 0

    def validate(self) -> None:
        bad = [a for a in self.attacks if a not in ATTACK_NEEDS]
        if bad:
            import difflib

            hint = difflib.get_close_matches(bad[0], ATTACKS, n=1)
            raise InputError(f"unknown attack {bad[0]!r}" + (f"; did you mean {hint[0]}?" if hint
                             else "") + f" (available: {', '.join(ATTACKS)})")
        self.memorization.validate()
        if self.extraction.n_samples < 1 or self.extraction.max_new_tokens < 1:
            raise InputError("extraction needs at least one sample of at least one token")
        if "internet" in self.extraction.samplers:
            raise InputError("the internet sampler is not available over an endpoint audit "
                             "(no prompt source); use top_k")
        self.divergence.validate()
        self.pii.validate()


def _private(path: Path) -> None:
    if path.exists():
        os.chmod(path, 0o600)


def audit_endpoint(target, out_dir: str | Path, *, config: EndpointAuditConfig,
                   corpus: list[dict[str, str]] | None = None,
                   nonmembers: list[dict[str, str]] | None = None,
                   canaries: list[dict[str, Any]] | None = None,
                   subjects: dict[str, list] | None = None,
                   references: dict | None = None, run_record: dict[str, Any] | None = None,
                   progress=null_progress, log=print) -> dict[str, Any]:
    """Run the attacks ``config.attacks`` that ``target`` (a probed endpoint backend) can serve.

    ``corpus``: the training documents (``{"id", "text"}``) to verify and sample windows from;
    ``nonmembers``: documents never trained on (membership, PII control); ``canaries``: canary
    records (lab manifest format); ``subjects``: PII subjects per group (``{"trained": [...],
    "held-out": [...]}``); ``references``: local reference models (name → LanguageModel) for the
    reference attack and the PII control. Returns the summary (also written to
    ``summary.json``).
    """
    from leakaudit.report.records import JsonlWriter

    config.validate()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    references = references or {}
    caps = target.capabilities
    have_data = {"corpus": bool(corpus), "nonmembers": bool(nonmembers),
                 "canaries": bool(canaries), "subjects": bool(subjects)}
    records: list[tuple[str, dict[str, Any]]] = []
    skipped: list[dict[str, Any]] = []
    summary: dict[str, Any] = {"target": target.name, "endpoint": target.client.base_url,
                               "kind": caps.kind, "attacks": {}}
    index = None
    if corpus:
        from leakaudit.corpus.index import CorpusIndex

        index = CorpusIndex.build([d["text"] for d in corpus], [d["id"] for d in corpus])
    stopped = None
    t_start = time.perf_counter()
    for name in config.attacks:
        need = ATTACK_NEEDS[name]
        missing = [c for c in need["capabilities"] if not getattr(caps, c, False)]
        missing_data = [d for d in need["data"] if not have_data[d]]
        if missing or missing_data:
            why = ", ".join([f"capability {c}" for c in missing] + [f"data {d}" for d in missing_data])
            skipped.append({"attack": name, "missing": missing + missing_data, "reason": why})
            log(f"{name}: skipped (needs {why})")
            continue
        t0 = time.perf_counter()
        try:
            recs, summ = _run_attack(name, target, config=config, corpus=corpus,
                                     nonmembers=nonmembers, canaries=canaries, subjects=subjects,
                                     references=references, index=index, progress=progress,
                                     log=log)
        except BudgetExhausted as e:
            stopped = str(e)
            log(f"warning: {name}: {e}")
            skipped.append({"attack": name, "missing": ["budget"], "reason": str(e)})
            break
        except CapabilityError as e:
            skipped.append({"attack": name, "missing": ["capability"], "reason": str(e)})
            log(f"{name}: skipped ({e})")
            continue
        records += recs
        summary["attacks"][name] = {**summ, "wall_s": round(time.perf_counter() - t0, 2)}
    req = target.request_summary()
    summary.update(requests=req, skipped=skipped, stopped=stopped,
                   wall_s=round(time.perf_counter() - t_start, 2))
    run = {"command": "endpoint audit", **(run_record or {}), "target": target.name,
           "endpoint": target.client.base_url, "model": target.model_id,
           **({"servers": list(target.client.pool.urls)} if getattr(target.client, "pool", None)
              is not None else {}),
           "fingerprint": target.fingerprint(), "seed": config.seed,
           "models": {"target": {"name": target.name, "endpoint": target.client.base_url,
                                 "fingerprint": target.fingerprint()},
                      **{k: {"name": k, "fingerprint": v.fingerprint()}
                         for k, v in references.items()}},
           "config": jsonable(asdict(config))}
    report = out / "report.jsonl"
    with JsonlWriter(report) as w:
        w.write("run", run)
        w.write("capabilities", {"target": target.name, **caps.to_dict(),
                                 "probe": target.probe_answers, "warnings": target.warnings})
        for s in skipped:
            w.write("skipped", s)
        for et, r in records:
            w.write(et, r)
        for et, r in target.request_records():
            w.write(et, r)
        w.write("api_summary", req)
        w.write("summary", summary)
    (out / "summary.json").write_text(json.dumps(jsonable(summary), indent=2) + "\n")
    _private(report)
    _private(out / "summary.json")
    return summary


def _run_attack(name, target, *, config, corpus, nonmembers, canaries, subjects, references,
                index, progress, log):
    if name == "extraction":
        from dataclasses import replace

        from leakaudit.audits.extraction import extraction_records

        cfg = replace(config.extraction, seed=config.seed, show_pii=config.show_pii)
        pairs, summ = extraction_records(
            target=target, references=references, index=index, prompt_texts=None,
            canaries=canaries, config=cfg, progress=progress, log=log)
        log(f"extraction: {summ['n_verified_samples']} of {summ['n_samples']} samples hold a "
            f"{cfg.match_tokens}-token verbatim training window (ranked with "
            f"{summ['target_scores']} log-probs)")
        return pairs, summ
    if name == "memorization":
        from leakaudit.audits.memorization import memorization_records

        pairs, summ = memorization_records(
            {"target": target}, texts=[d["text"] for d in corpus], doc_ids=[d["id"] for d in corpus],
            index=index, config=config.memorization, show_pii=config.show_pii, progress=progress,
            log=log)
        return pairs, summ
    if name == "membership":
        import random

        from leakaudit.attacks.membership.audit_llm import audit_llm_membership
        from leakaudit.attacks.membership.evaluate import EvalConfig
        from leakaudit.attacks.membership.llm import (LossAttack, LowercaseAttack, MinKAttack,
                                                      ReferenceAttack, ZlibAttack)

        rng = random.Random(config.seed)
        mem, non = list(corpus), list(nonmembers)
        if config.membership_docs is not None:
            mem = rng.sample(mem, min(config.membership_docs, len(mem)))
            non = rng.sample(non, min(config.membership_docs, len(non)))
        attacks = [LossAttack(), ZlibAttack(), LowercaseAttack(),
                   *[ReferenceAttack(reference=r) for r in references],
                   MinKAttack(k=config.membership_k)]
        res = audit_llm_membership(
            target, references, [d["text"] for d in mem], [d["text"] for d in non],
            attacks=attacks, member_ids=[d["id"] for d in mem],
            nonmember_ids=[d["id"] for d in non],
            eval_config=EvalConfig(n_boot=config.membership_boot, seed=config.seed),
            show_pii=config.show_pii, progress=progress, log=log)
        pairs = res.records() + [("skipped", {
            "attack": "membership:min_k_pp", "missing": ["vocab_stats"],
            "reason": "Min-K%++ needs full-vocabulary statistics, which an API does not return"})]
        summ = {e.label: {"auc": e.metrics.auc, "auc_ci": list(e.metrics.auc_ci)}
                for e in res.evaluations}
        summ["blind_baseline"] = {k: {"auc": b.metrics.auc, "auc_ci": list(b.metrics.auc_ci)}
                                  for k, b in res.baseline.items()}
        return pairs, summ
    if name == "exposure":
        from leakaudit.audits.exposure import exposure_records

        pairs, by_rep = exposure_records(target, canaries, n_references=config.exposure_references,
                                         seed=config.seed, batch_size=16,
                                         show_pii=config.show_pii, progress=progress)
        return pairs, {"by_repeats": by_rep}
    if name == "divergence":
        from leakaudit.attacks.probes.divergence import chat_prompts, divergence_attack

        d = config.divergence
        offs = target.token_offsets if target.tokenizer is not None else None
        res = divergence_attack(chat_prompts(target, max_tokens=d.max_tokens,
                                             temperature=d.temperature, seed=d.seed),
                                index, config=d, token_offsets=offs, show_pii=config.show_pii,
                                target=target.name)
        s = res.summary
        log(f"divergence: {s['memorized']['k']} of {s['n_answered']} replies hold a "
            f"{d.min_match_tokens}-{s['unit']} verbatim training run "
            f"({s['per_1000']['value'] or 0:.1f} per 1,000 queries, 95% CI "
            f"{s['per_1000']['ci_low']:.1f}-{s['per_1000']['ci_high']:.1f}); "
            f"{s['diverged']['k']} diverged after repeating the word (replies by repeats "
            f"before stopping: {s['repeat_counts']})")
        return res.records(), s
    if name == "pii":
        from leakaudit.attacks.probes.divergence import text_generator
        from leakaudit.attacks.probes.pii import pii_probes, rate_summary

        p = config.pii
        gens = {target.name: _pii_generator(target, p)}
        for rname, ref in references.items():
            gens[rname] = text_generator(ref, max_tokens=p.max_tokens, temperature=p.temperature,
                                         seed=p.seed)
        res = pii_probes(gens, subjects, config=p, show_pii=config.show_pii)
        summ = rate_summary(res)
        for k, v in summ.items():
            log(f"pii probes ({k}): exact {v['exact']['k']}/{v['exact']['n']}, partial "
                f"{v['partial']['k']}/{v['partial']['n']}")
        return res.records(), summ
    raise InputError(f"unknown attack {name!r}")


def _pii_generator(target, p: PIIProbeConfig):
    from leakaudit.attacks.probes.divergence import chat_prompts

    return chat_prompts(target, max_tokens=p.max_tokens, temperature=p.temperature, seed=p.seed)
