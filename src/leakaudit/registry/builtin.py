"""The builtin entries of :mod:`leakaudit.registry`, in one table.

Each row is ``(name, "module:object", fields)``; nothing here is imported until an entry is used,
so reading the table (``leakaudit list``) costs no torch import. A new backend, attack, defense,
format or audit is one file plus one row here (or, from another package, one
``leakaudit.plugins`` entry point). ``tests/test_plugins.py`` imports every row's target and checks
that an attack's row says what its class says.
"""

from __future__ import annotations

from typing import Any

_LM_CAPS = ("prompt_logprobs", "vocab_stats", "argmax", "sampling_logprobs", "generation",
            "seeded_generation", "logits_processors", "gradients", "top_logprobs")
_TARGET_LOGPROBS = "grey-box: per-token log-probs of given texts"
_SHADOWS = "black-box + reference models trained by the attacker (IN/OUT) on same-distribution data"
FREDRIKSON_2014 = ("https://www.usenix.org/conference/usenixsecurity14/technical-sessions/"
                   "presentation/fredrikson_matthew")
FREDRIKSON_2015 = "https://doi.org/10.1145/2810103.2813677"
ABADI_2016 = "https://arxiv.org/abs/1607.00133"


def _row(name: str, target: str, summary: str, **fields: Any) -> tuple[str, str, dict[str, Any]]:
    return name, target, {"summary": summary, **fields}


def _llm_attack(name: str, cls: str, reference: str, *, needs: tuple[str, ...] = (),
                threat_model: str = _TARGET_LOGPROBS, capabilities=("prompt_logprobs",),
                summary: str):
    return _row(name, f"leakaudit.attacks.membership.llm:{cls}", summary, family="membership",
                world="llm", capabilities=capabilities, threat_model=threat_model,
                reference=reference, needs=needs)


def _clf_attack(name: str, cls: str, reference: str, *, threat_model: str, summary: str,
                needs: tuple[str, ...] = ()):
    return _row(name, f"leakaudit.attacks.membership.classifier:{cls}", summary,
                family="membership", world="classifier", threat_model=threat_model,
                reference=reference, needs=needs, capabilities=("probabilities",))


def _label_attack(name: str, cls: str, summary: str, threat_model: str):
    return _row(name, f"leakaudit.attacks.membership.label_only:{cls}", summary,
                family="membership", world="label_only", capabilities=("labels", "float_inputs"),
                needs=(), threat_model=threat_model, reference="https://arxiv.org/abs/2007.14321")


BACKENDS = [
    _row("hf", "leakaudit.targets.hf:load_hf",
         "a transformers model directory, or a hub name (cache; --allow-download)",
         capabilities=_LM_CAPS, threat_model="white-box: weights loaded in process",
         reference="https://huggingface.co/docs/transformers", scheme=True, world="llm"),
    _row("gguf", "leakaudit.targets.hf:load_gguf", "a GGUF file (dequantized by transformers)",
         capabilities=_LM_CAPS, threat_model="white-box: weights loaded in process",
         reference="https://huggingface.co/docs/transformers/gguf", requires=("gguf",),
         extra="gguf", scheme=True, world="llm"),
    _row("sisa", "leakaudit.defenses.unlearning:load_sisa",
         "a SISA ensemble folder written by leakaudit unlearn (sisa.json, shard-K/)",
         capabilities=("prompt_logprobs", "vocab_stats", "argmax", "generation",
                       "seeded_generation"),
         threat_model="white-box: every shard model loaded in process",
         reference="https://arxiv.org/abs/1912.03817", scheme=True, world="llm"),
    _row("peft", "leakaudit.targets.peft:load_peft",
         "a PEFT (LoRA) adapter folder: adapter_config.json names the base model (an hf: folder "
         "with an adapter_config.json and no config.json loads this way too)",
         capabilities=_LM_CAPS, threat_model="white-box: base weights and adapter loaded in process",
         reference="https://huggingface.co/docs/peft", requires=("peft",), extra="finetune",
         scheme=True, world="llm"),
    _row("openai-completions", "leakaudit.targets.openai_api:load_openai_completions",
         "an OpenAI-compatible /v1/completions endpoint: URL[#model=..&tokenizer=..&api_key_env=VAR]",
         capabilities=("generation", "top_logprobs", "prompt_logprobs"),
         threat_model="black-box API: generated text and top-k log-probs; prompt log-probs when "
                      "the server echoes them (probed at load)",
         reference="https://platform.openai.com/docs/api-reference/completions",
         requires=("httpx", "tenacity"), extra="api", scheme=True, world="llm"),
    _row("openai-chat", "leakaudit.targets.openai_api:load_openai_chat",
         "an OpenAI-compatible /v1/chat/completions endpoint (text-level attacks)",
         capabilities=("generation", "top_logprobs"),
         threat_model="black-box API: chat replies and their top-k log-probs (probed at load)",
         reference="https://platform.openai.com/docs/api-reference/chat",
         requires=("httpx", "tenacity"), extra="api", scheme=True, world="llm"),
    _row("torch-classifier", "leakaudit.targets.classifier:TorchClassifier",
         "a torch.nn.Module mapping inputs to logits (Python API; --classifier DIR loads "
         "leakaudit's MLP folders into it)",
         capabilities=("probabilities", "logits", "gradients"),
         threat_model="white-box: the module in process", reference="https://pytorch.org/docs",
         scheme=False, world="classifier"),
    _row("sklearn-classifier", "leakaudit.targets.classifier:SklearnClassifier",
         "any estimator with predict_proba (Python API)", capabilities=("probabilities",),
         threat_model="black-box: class probabilities",
         reference="https://scikit-learn.org/stable/glossary.html#term-predict_proba",
         scheme=False, world="classifier"),
    _row("http-classifier", "leakaudit.targets.classifier_formats:load_http_classifier",
         "a classifier behind an HTTP endpoint: http(s)://URL answering probabilities, or labels "
         "only (--answers labels)",
         capabilities=("probabilities", "labels"),
         threat_model="black-box API: class probabilities, or the top-1 label only",
         reference="https://doi.org/10.1145/2810103.2813677", scheme=False, world="classifier",
         classifier_schemes=("http", "https")),
    _row("leakaudit-classifier", "leakaudit.training.classifier:native_classifier_target",
         "a classifier folder written by leakaudit (classifier.json + model.safetensors)",
         capabilities=("probabilities", "logits", "gradients", "labels"),
         threat_model="white-box: the MLP in process", reference="https://pytorch.org/docs",
         scheme=False, world="classifier", classifier_schemes=("leakaudit",)),
    _row("hf-classifier", "leakaudit.targets.classifier_formats:load_hf_classifier",
         "a transformers image or sequence classification folder (hf:DIR, or a folder with "
         "config.json)", capabilities=("probabilities", "logits", "gradients", "labels"),
         threat_model="white-box: the model in process",
         reference="https://huggingface.co/docs/transformers/tasks/image_classification",
         scheme=False, world="classifier", classifier_schemes=("hf",)),
    _row("onnx", "leakaudit.targets.classifier_formats:load_onnx_classifier",
         "an ONNX classifier file through onnxruntime (onnx:FILE[#output=logits|probabilities])",
         capabilities=("probabilities", "labels"),
         threat_model="black-box: outputs of the exported graph", reference="https://onnx.ai",
         requires=("onnxruntime",), extra="classifiers", scheme=False, world="classifier",
         classifier_schemes=("onnx",)),
    _row("skops", "leakaudit.targets.classifier_formats:load_skops_classifier",
         "a scikit-learn model saved with skops (never pickle; skops:FILE[#trust=a.B])",
         capabilities=("probabilities", "labels"), threat_model="black-box: predict_proba",
         reference="https://skops.readthedocs.io/en/stable/persistence.html",
         requires=("skops",), extra="classifiers", scheme=False, world="classifier",
         classifier_schemes=("skops",)),
]

ATTACKS = [
    _llm_attack("loss", "LossAttack", "https://arxiv.org/abs/1709.01604",
                summary="mean token log-likelihood (Yeom et al. 2018)"),
    _llm_attack("zlib", "ZlibAttack", "https://arxiv.org/abs/2012.07805",
                summary="log-likelihood over zlib entropy (Carlini et al. 2021)"),
    _llm_attack("lowercase", "LowercaseAttack", "https://arxiv.org/abs/2012.07805",
                needs=("lowercase",), summary="log-perplexity ratio to the lowercased text"),
    _llm_attack("reference", "ReferenceAttack", "https://arxiv.org/abs/2012.07805",
                needs=("reference",), summary="log-perplexity ratio to a reference model"),
    _llm_attack("min_k", "MinKAttack", "https://arxiv.org/abs/2310.16789",
                summary="mean of the lowest k% token log-probs (Shi et al. 2024)"),
    _llm_attack("min_k_pp", "MinKPlusPlusAttack", "https://arxiv.org/abs/2404.02936",
                needs=("vocab_stats",), capabilities=("prompt_logprobs", "vocab_stats"),
                threat_model="grey-box: per-token log-probs and full-vocabulary log-prob statistics",
                summary="Min-K% of standardized token log-probs (Zhang et al. 2025)"),
    _clf_attack("clf_loss", "ClassifierLossAttack", "https://arxiv.org/abs/1709.01604",
                threat_model="black-box: class probabilities of the target",
                summary="true-class log-probability (Yeom et al. 2018)"),
    _clf_attack("shokri", "ShokriAttack", "https://arxiv.org/abs/1610.05820",
                threat_model="black-box + shadow models trained by the attacker on "
                             "same-distribution data",
                needs=("ref_probs", "ref_keep"), summary="shadow-model attack (Shokri et al. 2017)"),
    _clf_attack("lira", "LiRAAttack", "https://arxiv.org/abs/2112.03570", threat_model=_SHADOWS,
                needs=("ref_probs", "ref_keep"),
                summary="likelihood-ratio attack (Carlini et al. 2022)"),
    _clf_attack("rmia", "RMIAAttack", "https://arxiv.org/abs/2312.03262",
                threat_model="black-box + 1 or more reference models and population records the "
                             "target did not train on",
                needs=("ref_probs", "pop_y", "pop_target_probs", "pop_ref_probs"),
                summary="relative membership inference (Zarifzadeh et al. 2024)"),
    _label_attack("label_gap", "LabelGapAttack",
                  "label-only gap attack: member iff the top-1 label is right (1 query a record)",
                  "label-only: the top-1 label of the record"),
    _label_attack("label_augment", "AugmentationAttack",
                  "label-only data-augmentation attack: how many perturbed copies keep the true label",
                  "label-only: top-1 labels of the record and of a few perturbed copies"),
    _label_attack("boundary_distance", "BoundaryDistanceAttack",
                  "label-only decision-boundary distance (HopSkipJump-style search, budget per record)",
                  "label-only: top-1 labels of chosen inputs (query access)"),
    _row("mi_face", "leakaudit.attacks.inversion.mi_face:MIFace",
         "gradient descent on the input toward a class (Fredrikson et al. 2015)",
         family="inversion", world="classifier", capabilities=("gradients",),
         threat_model="white-box: input gradients of log p(class | x)", reference=FREDRIKSON_2015),
    _row("nes", "leakaudit.attacks.inversion.nes:NESInversion",
         "black-box inversion with natural-evolution-strategy gradient estimates",
         family="inversion", world="classifier", capabilities=("probabilities",),
         threat_model="black-box: class probabilities only, query budget per class",
         reference=FREDRIKSON_2015),
    _row("fredrikson14", "leakaudit.attacks.inversion.attribute:ModelInversionAttribute",
         "attribute inference: the value that best explains the model's output",
         family="attribute", world="classifier", capabilities=("probabilities",),
         threat_model="black-box: class probabilities of completed records; the record's label "
                      "or output", reference=FREDRIKSON_2014),
    _row("marginal", "leakaudit.attacks.inversion.attribute:MarginalBaseline",
         "attribute inference baseline: the attribute's most frequent value",
         family="attribute", world="classifier",
         threat_model="none: the attribute's marginal distribution only",
         reference=FREDRIKSON_2014),
]

_OUTPUT_FILTER = "https://arxiv.org/abs/2210.17546"
DEFENSES = [
    _row("dedup", "leakaudit.defenses.dedup:deduplicate",
         "NearDup (MinHash) + ExactSubstr deduplication (leakaudit defend dedup)",
         produces="corpus", reference="https://arxiv.org/abs/2107.06499"),
    _row("scrub", "leakaudit.defenses.scrub:scrub_texts",
         "PII redaction, masking or pseudonymization (leakaudit defend scrub)",
         produces="corpus", reference="https://arxiv.org/abs/2302.00539"),
    _row("dp-sgd", "leakaudit.training.dp_lm:train_causal_lm_dp",
         "DP-SGD training or fine-tuning of a causal LM through Opacus (leakaudit defend dp-train)",
         produces="training", reference=ABADI_2016, requires=("opacus",)),
    _row("dp-sgd-classifier", "leakaudit.training.dp_classifier:train_classifier_dp",
         "DP-SGD training of an MLP classifier through Opacus", produces="training",
         reference=ABADI_2016, requires=("opacus",)),
    _row("memfree", "leakaudit.defenses.output_filter:MemFreeLM",
         "MemFree decoding: no generated n-gram is in the training corpus (Bloom filter)",
         produces="decoding", reference=_OUTPUT_FILTER),
    _row("output-filter", "leakaudit.defenses.output_filter:FilteredTextLM",
         "a text-level filter on a target's outputs (blocks or truncates a verbatim n-gram)",
         produces="decoding", reference=_OUTPUT_FILTER),
    _row("rounded-outputs", "leakaudit.targets.classifier:RoundedOutputs",
         "a classifier's probabilities rounded to a few digits", produces="decoding",
         reference=FREDRIKSON_2015),
    _row("label-only", "leakaudit.targets.classifier:LabelOnlyOutputs",
         "a classifier that answers its top-1 label only", produces="decoding",
         reference="https://arxiv.org/abs/2007.14321"),
    _row("unlearn-ga", "leakaudit.defenses.unlearning:unlearn_model",
         "approximate unlearning by gradient ascent on the forget set (leakaudit unlearn)",
         produces="weights", reference="https://arxiv.org/abs/2210.01504", method="ga"),
    _row("unlearn-gd", "leakaudit.defenses.unlearning:unlearn_model",
         "gradient difference: ascent on the forget set, descent on the retain set",
         produces="weights", reference="https://arxiv.org/abs/2203.12817", method="gd"),
    _row("unlearn-npo", "leakaudit.defenses.unlearning:unlearn_model",
         "negative preference optimization on the forget set", produces="weights",
         reference="https://arxiv.org/abs/2404.05868", method="npo"),
    _row("retrain", "leakaudit.defenses.unlearning:retrain",
         "exact unlearning: retrain from scratch without the forget set (the oracle)",
         produces="weights", reference="https://arxiv.org/abs/1912.03817"),
    _row("sisa", "leakaudit.defenses.unlearning:sisa_train",
         "SISA: one model per shard, a deletion retrains its shard (load with sisa:DIR)",
         produces="weights", reference="https://arxiv.org/abs/1912.03817"),
]

FORMATS = [
    _row("jsonl", "leakaudit.report.writer:FindingsWriter",
         "typed findings, one JSON object a line (always written; the source of the others)",
         produces="report.jsonl", reference="https://jsonlines.org", always=True),
    _row("html", "leakaudit.report.html:render_html", "a self-contained HTML report",
         produces="report.html", reference="https://html.spec.whatwg.org"),
    _row("sarif", "leakaudit.report.sarif:write_sarif",
         "SARIF 2.1.0 for code-scanning dashboards (rules = attacks, results = findings)",
         produces="report.sarif",
         reference="https://docs.oasis-open.org/sarif/sarif/v2.1.0/sarif-v2.1.0.html"),
    _row("junit", "leakaudit.report.junit:write_junit",
         "JUnit XML: one test case per --fail-on threshold, for CI systems",
         produces="junit.xml", reference="https://github.com/testmoapp/junitxml"),
]


def _audit(name: str, module: str, summary: str, reference: str = "", **fields: Any):
    return _row(name, f"leakaudit.audits.{module}", summary, reference=reference, **fields)


AUDITS = [
    _audit("extraction", "extraction", "untargeted training-data extraction: sample, rank, verify",
           "https://arxiv.org/abs/2012.07805", capabilities=("generation",)),
    _audit("memorization", "memorization", "verbatim memorization of training windows",
           "https://arxiv.org/abs/2202.07646", capabilities=("argmax",)),
    _audit("exposure", "exposure", "canary exposure (The Secret Sharer)",
           "https://arxiv.org/abs/1802.08232", capabilities=("prompt_logprobs",)),
    _audit("canaries", "canaries", "insert Secret Sharer canaries into a corpus",
           "https://arxiv.org/abs/1802.08232"),
    _audit("membership", "membership",
           "membership inference: TPR at low FPR with CIs, a model-free baseline beside it",
           "https://arxiv.org/abs/2112.03570"),
    _audit("inversion", "inversion", "model inversion of a classifier (MI-Face, NES)",
           FREDRIKSON_2015),
    _audit("compare", "compare", "one attack battery over several models, leakage next to utility"),
    _audit("endpoint", "endpoint",
           "every attack an OpenAI-compatible endpoint's capabilities allow, one report"),
    _audit("erasure", "erasure",
           "verify an erasure against the retrained oracle: removed, at what utility and cost"),
    _audit("output-filter", "output_filter",
           "re-attack an output-filtered target: what the filter blocks and what still leaks",
           _OUTPUT_FILTER),
    _audit("dp-audit", "dp_audit",
           "empirical DP audit of a training pipeline: canaries in, a lower bound on ε out",
           "https://arxiv.org/abs/2305.08846"),
]

DP_AUDITORS = [
    _row("one-run", "leakaudit.attacks.dp_audit.auditors:OneRunAuditor",
         "m canaries, each included with probability 1/2, one training (Steinke, Nasr & "
         "Jagielski 2023)", threat_model="the auditor inserts canaries into the training data",
         reference="https://arxiv.org/abs/2305.08846", models="1"),
    _row("multi-run", "leakaudit.attacks.dp_audit.auditors:MultiRunAuditor",
         "one canary, n trainings with it and n without; Clopper-Pearson bounds on the "
         "threshold test (Jagielski et al. 2020; Nasr et al. 2021)",
         threat_model="the auditor inserts a canary and trains the pipeline 2n times",
         reference="https://arxiv.org/abs/2101.04535", models="2n"),
]

#: Every builtin entry, by kind.
BUILTIN = {"backends": BACKENDS, "attacks": ATTACKS, "defenses": DEFENSES, "formats": FORMATS,
           "audits": AUDITS, "dp-auditors": DP_AUDITORS}
