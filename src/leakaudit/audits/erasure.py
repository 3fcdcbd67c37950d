"""Verify an erasure: did unlearning remove the data subject's documents, at what utility and
cost, and does it stay removed?

For every model (the original, the oracle retrained without the forget set, each approximate
method, the SISA ensemble after deletion) and every **relapse** variant of it (8- and 4-bit
round-to-nearest per-channel fake quantization of the linear weights, and a short fine-tune on
retain documents related to the forget set), :func:`verify_models` measures:

- **membership, per example** (Hayes et al. 2024: population U-MIAs overstate forgetting): each
  document's reference-calibrated score, mean log p_model − mean log p_reference (Carlini et al.
  2021; the loss score when no reference model is given), for forget, retain and never-seen
  documents. Reported: AUC of forget vs never-seen and of retain vs never-seen with bootstrap
  CIs (0.5 = indistinguishable), and the share of forget documents scoring above the
  ``flag_quantile`` of never-seen scores (chance = 1 − quantile) with a Clopper-Pearson CI;
  and, for every model but the oracle, the **difference from the oracle**: its forget-vs-never-
  seen AUC minus the oracle's, with a paired bootstrap CI over both sides (:func:`vs_oracle`).
  An exact retrain is what erasure means, so each method is judged against it, not against 0.5
  (a retrained model can still tell its never-seen documents apart from the forgotten ones);
- **secret extraction**: greedy continuation of each forget-set secret's prompt contains the
  secret (letters and digits compared);
- **canary exposure** (Carlini et al. 2019) of forget-set canaries, by rank among same-space
  references;
- **utility**: perplexity on retain and never-seen documents;
- **cost**: wall time relative to the oracle's retraining.
"""

from __future__ import annotations

import copy
import json
import math
import random
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from leakaudit.errors import InputError
from leakaudit.metrics.roc import auc, auc_bootstrap_ci
from leakaudit.metrics.stats import rate
from leakaudit.targets.base import LanguageModel, SamplingConfig

_NON_ALNUM = re.compile(r"[^0-9A-Za-z]+")


@dataclass(frozen=True)
class VerifyConfig:
    n_retain: int = 60  #: retain documents sampled for membership and utility
    flag_quantile: float = 0.95
    n_boot: int = 200
    secret_chars: int = 60
    max_new_tokens: int = 24
    exposure_references: int = 100
    quant_bits: tuple[int, ...] = (8, 4)
    finetune_docs: int = 40  #: related retain documents for the relapse fine-tune
    finetune_epochs: float = 1.0
    finetune_lr: float = 1e-3
    batch_size: int = 16
    seed: int = 0


def mean_logprobs(model: LanguageModel, texts: Sequence[str], batch_size: int) -> np.ndarray:
    scores = model.score(list(texts), batch_size=batch_size)
    return np.array([float(np.mean(s.logprobs)) if len(s) else float("nan") for s in scores])


def _membership(score: dict[str, np.ndarray], cfg: VerifyConfig) -> dict[str, Any]:
    f, r, u = score["forget"], score["retain"], score["unseen"]
    out: dict[str, Any] = {}
    for name, pos in (("forget", f), ("retain", r)):
        s = np.concatenate([pos, u])
        y = np.concatenate([np.ones(len(pos)), np.zeros(len(u))])
        lo, hi = auc_bootstrap_ci(s, y, n_boot=cfg.n_boot, alpha=0.05, seed=cfg.seed)
        out[f"auc_{name}_vs_unseen"] = {"value": auc(s, y), "ci_low": lo, "ci_high": hi}
    thr = float(np.quantile(u, cfg.flag_quantile))
    out["forget_flagged"] = rate(int(np.sum(f > thr)), len(f)).to_dict()
    out["flag_chance"] = 1 - cfg.flag_quantile
    out["mean_score"] = {k: float(np.mean(v)) for k, v in score.items()}
    # per example: each forget document's score and the share of never-seen documents it beats
    # (a per-document p-value is 1 minus that share, with the usual +1 correction)
    out["forget_per_doc"] = [{"score": float(x), "beats_unseen": float(np.mean(u < x)),
                              "p_value": float((1 + np.sum(u >= x)) / (1 + len(u)))} for x in f]
    return out


def _secrets(model: LanguageModel, secrets: Sequence[Mapping], cfg: VerifyConfig) -> dict | None:
    if not secrets:
        return None
    gens = model.generate([str(s["prefix"]).rstrip(" ") for s in secrets],
                          SamplingConfig(greedy=True, max_new_tokens=cfg.max_new_tokens),
                          seed=cfg.seed, batch_size=cfg.batch_size)
    hits = 0
    for s, g in zip(secrets, gens):
        cont = _NON_ALNUM.sub("", model.decode(g.new_ids)[: cfg.secret_chars]).lower()
        hits += _NON_ALNUM.sub("", str(s["secret"])).lower() in cont
    return rate(hits, len(secrets)).to_dict()


def _exposure(model: LanguageModel, canaries: Sequence[Mapping], cfg: VerifyConfig) -> dict | None:
    if not canaries:
        return None
    from leakaudit.attacks.canaries.exposure import canary_exposure

    recs = canary_exposure(model, canaries, n_references=cfg.exposure_references, seed=cfg.seed,
                           batch_size=cfg.batch_size)
    return {"mean_exposure_rank": float(np.mean([r["exposure_rank"] for r in recs])),
            "max_exposure_bits": recs[0]["exposure_max_by_rank"],
            "per_canary": [{"canary_id": r["canary_id"], "repeats": r["repeats"],
                            "exposure_rank": r["exposure_rank"], "rank": r["rank"]} for r in recs]}


def measure(model: LanguageModel, *, texts: Mapping[str, Sequence[str]],
            ref_logp: Mapping[str, np.ndarray] | None, secrets: Sequence[Mapping],
            canaries: Sequence[Mapping], cfg: VerifyConfig
            ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Every measure of the module docstring for one model, and its per-document membership
    scores (``{"forget"|"retain"|"unseen": array}``)."""
    lp = {k: mean_logprobs(model, v, cfg.batch_size) for k, v in texts.items()}
    score = {k: lp[k] - ref_logp[k] if ref_logp is not None else lp[k] for k in lp}
    return {
        "membership": _membership(score, cfg),
        "membership_score": "reference" if ref_logp is not None else "loss",
        "secret_extraction": _secrets(model, secrets, cfg),
        "exposure": _exposure(model, canaries, cfg),
        "utility": {f"ppl_{k}": float(math.exp(-np.nanmean(lp[k]))) for k in ("retain", "unseen")},
    }, score


def vs_oracle(score: Mapping[str, np.ndarray], oracle: Mapping[str, np.ndarray],
              cfg: VerifyConfig) -> dict[str, Any]:
    """A model's forget-vs-never-seen AUC minus the retrained oracle's, with a paired bootstrap
    CI over both the forget and the never-seen documents (both models score the same documents),
    and the verdict it supports: ``as the oracle`` when the CI holds 0, ``retained`` when it is
    above 0 (the forget documents still stand out more than after an exact retrain),
    ``over-forgotten`` when below (they stand out *less* than never-seen documents would after a
    retrain: the unlearning itself is detectable, the "Streisand effect" of MUSE's PrivLeak)."""
    from leakaudit.metrics.roc import auc_diff_bootstrap_ci

    d, lo, hi = auc_diff_bootstrap_ci(score["forget"], score["unseen"], oracle["forget"],
                                      oracle["unseen"], n_boot=cfg.n_boot, alpha=0.05,
                                      seed=cfg.seed)
    verdict = "retained" if lo > 0 else "over-forgotten" if hi < 0 else "as the oracle"
    return {"auc_diff": d, "ci_low": lo, "ci_high": hi, "ci_level": 0.95, "n_boot": cfg.n_boot,
            "verdict": verdict}


def relapse_variants(name: str, model, tokenizer, finetune_texts: Sequence[str],
                     cfg: VerifyConfig) -> dict[str, Any]:
    """``{variant name: HFCausalLM}``: fake-quantized copies and a short fine-tune on
    ``finetune_texts`` (related retain documents) of an HF model."""
    from leakaudit.defenses.unlearning import fake_quantize_
    from leakaudit.targets.hf import HFCausalLM
    from leakaudit.training.lm import LMSpec, train_causal_lm

    out = {}
    for b in cfg.quant_bits:
        m = copy.deepcopy(model)
        fake_quantize_(m, b)
        out[f"{name}+int{b}"] = HFCausalLM(m, tokenizer, name=f"{name}+int{b}")
    if finetune_texts:
        m = copy.deepcopy(model)
        n_ctx = int(getattr(m.config, "n_positions", None)
                    or getattr(m.config, "max_position_embeddings", 1024))
        spec = LMSpec(n_ctx=n_ctx, epochs=cfg.finetune_epochs, lr=cfg.finetune_lr, batch_size=8,
                      warmup_frac=0.0, packing="document")
        train_causal_lm(list(finetune_texts), tokenizer, spec, seed=cfg.seed, model=m)
        out[f"{name}+finetune"] = HFCausalLM(m, tokenizer, name=f"{name}+finetune")
    return out


def verify_models(models: Mapping[str, LanguageModel], *, forget: Sequence[str],
                  retain: Sequence[str], unseen: Sequence[str], reference: LanguageModel | None,
                  secrets: Sequence[Mapping] = (), canaries: Sequence[Mapping] = (),
                  finetune_texts: Sequence[str] = (), costs: Mapping[str, float] | None = None,
                  relapse: Sequence[str] = (), oracle: str | None = None, cfg: VerifyConfig,
                  log=lambda m: None) -> list[dict[str, Any]]:
    """One ``erasure`` record per model and per relapse variant of each model named in
    ``relapse`` (these must be HFCausalLM targets). ``costs``: wall seconds per model; the
    ``oracle`` entry, when present, is the unit of ``cost_vs_oracle``. ``oracle``: the name of
    the model retrained without the forget set; every other record (relapse variants included)
    gets ``vs_oracle`` (:func:`vs_oracle`), the oracle's own record ``is_oracle``."""
    from leakaudit.targets.hf import HFCausalLM

    if not forget:
        raise InputError("the forget set is empty")
    if len(unseen) < 5:
        raise InputError(f"need at least 5 never-seen documents, got {len(unseen)}")
    rng = random.Random(cfg.seed)
    retain_s = rng.sample(list(retain), min(cfg.n_retain, len(retain)))
    texts = {"forget": list(forget), "retain": retain_s, "unseen": list(unseen)}
    ref_logp = ({k: mean_logprobs(reference, v, cfg.batch_size) for k, v in texts.items()}
                if reference is not None else None)
    costs = dict(costs or {})
    unit = costs.get("oracle")
    if oracle is not None and oracle not in models:
        raise InputError(f"no oracle model {oracle!r}; have {', '.join(models)}")
    out, scores = [], {}
    for name, model in models.items():
        variants: dict[str, Any] = {name: model}
        if name in relapse:
            if not isinstance(model, HFCausalLM):
                raise InputError(f"relapse variants need an HF model; {name} is not one")
            t0 = time.perf_counter()
            variants.update(relapse_variants(name, model.model, model.tokenizer, finetune_texts, cfg))
            log(f"relapse variants of {name}: {time.perf_counter() - t0:.1f}s")
        for vname, m in variants.items():
            t0 = time.perf_counter()
            rec, scores[vname] = measure(m, texts=texts, ref_logp=ref_logp, secrets=secrets,
                                         canaries=canaries, cfg=cfg)
            rec.update({"model": vname, "method": name,
                        "relapse": None if vname == name else vname[len(name) + 1:],
                        "n_forget": len(forget), "n_retain": len(retain_s),
                        "n_unseen": len(unseen),
                        "cost_s": costs.get(name) if vname == name else None,
                        "cost_vs_oracle": (costs[name] / unit if unit and name in costs
                                           and vname == name else None),
                        "config": asdict(cfg)})
            out.append(rec)
            log(f"{vname}: forget AUC {rec['membership']['auc_forget_vs_unseen']['value']:.3f} "
                f"({time.perf_counter() - t0:.1f}s)")
    for rec in out:
        rec["is_oracle"] = rec["model"] == oracle
        rec["vs_oracle"] = (vs_oracle(scores[rec["model"]], scores[oracle], cfg)
                            if oracle is not None and not rec["is_oracle"] else None)
    return out


#: characters of a document before a data subject's identifier that prompt for it
SUBJECT_PREFIX_CHARS = 200


def subject_secrets(manifest: Mapping[str, Any], docs, forget_ids: set[str]) -> list[dict]:
    """The forgotten data subjects' own identifiers as secrets: for each recurring subject of a
    lab manifest (``recurring_subjects``) all of whose documents are forgotten, and each of those
    documents, the text before the subject's phone number (else e-mail) as the prompt
    (at most :data:`SUBJECT_PREFIX_CHARS` characters) and the identifier as the secret."""
    out = []
    by_id = {d.id: d.text for d in docs}
    for subj in manifest.get("recurring_subjects") or []:
        if not subj.get("doc_ids") or not set(subj["doc_ids"]) <= forget_ids:
            continue
        for i in subj["doc_ids"]:
            text = by_id.get(i, "")
            for key in ("phone", "email"):
                value = subj.get(key)
                at = text.find(value) if value else -1
                if at > 0:
                    out.append({"prefix": text[max(0, at - SUBJECT_PREFIX_CHARS):at],
                                "secret": subj[key]})
                    break
    return out


def erasure_records(unlearn_dir: Path, *, docs, unseen: list[str], reference,
                    manifest: Optional[dict], relapse: list[str], cfg, log=print) -> list[dict]:
    """Load every model of an ``unlearn`` folder and verify it (see
    :func:`verify_models`); ``docs``: the training corpus (objects
    with ``id`` and ``text``), ``unseen``: never-seen texts, ``reference``: a target or None."""
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
        secrets += subject_secrets(manifest, docs, forget_ids)
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
                            relapse=relapse, oracle="oracle" if "oracle" in models else None,
                            cfg=cfg, log=log)
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
        v = r.get("vs_oracle")
        lines.append(f"{r['model']}: forget-vs-unseen AUC {a['value']:.3f} "
                     f"[{a['ci_low']:.3f}, {a['ci_high']:.3f}]"
                     + (" (the oracle)" if r.get("is_oracle") else "")
                     + (f", vs oracle {v['auc_diff']:+.3f} [{v['ci_low']:+.3f}, "
                        f"{v['ci_high']:+.3f}]: {v['verdict']}" if v else "")
                     + (f", secrets extracted {s['k']}/{s['n']}" if s else "")
                     + f", ppl retain {r['utility']['ppl_retain']:.2f} / unseen "
                     f"{r['utility']['ppl_unseen']:.2f}")
    return lines


def run_verify(unlearn_dir: Path, *, heldout: Path, reference: Optional[str],
               manifest: Optional[Path], relapse: list[str], out: Path, cfg, command: str,
               log=print) -> dict:
    from datetime import datetime, timezone

    from leakaudit.corpus.load import load_corpus
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
    run_record = {**versions(), "command": command, "seed": cfg.seed,
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
