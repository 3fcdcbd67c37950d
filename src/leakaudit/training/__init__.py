"""Training: fit and fine-tune the models leakaudit audits, plain and with DP-SGD.

- :mod:`leakaudit.training.lm`: causal LMs (GPT-2 style; tokenizer, packing, training loop).
- :mod:`leakaudit.training.classifier`: MLP classifiers (train, save, load; safetensors).

**Differential privacy, in one place.** A newcomer looking for DP finds it in two halves:

- *DP training* (the defense) lives here: :mod:`leakaudit.training.dp_lm` (DP-SGD training and
  fine-tuning of causal LMs through Opacus; the privacy unit is one training block) and
  :mod:`leakaudit.training.dp_classifier` (DP-SGD for classifiers). Both are registered as
  ``defenses`` that produce a ``training`` (``leakaudit list defenses``: ``dp-sgd``,
  ``dp-sgd-classifier``); ``leakaudit defend dp-train`` runs the LM one.
- *DP auditing* (measuring ε from below) lives beside the other attacks and audits:
  :mod:`leakaudit.attacks.dp_audit` (canaries and their scores, and the auditors as classes in
  :mod:`leakaudit.attacks.dp_audit.auditors`, created by name with
  ``create_auditor("one-run" | "multi-run", ...)`` like Opacus's ``create_accountant("rdp")``;
  ``leakaudit list dp-auditors``), :mod:`leakaudit.metrics.dp_audit` (the pure statistics, with
  doctests of known numbers) and :mod:`leakaudit.audits.dp_audit` (the audit of a training
  pipeline: train with canaries, score, bound ε; ``leakaudit dp-audit``).
"""
