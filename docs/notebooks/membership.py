# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Membership inference on your own model, from a notebook
#
# Was this document in the training data? This notebook asks it of a causal LM with the
# Python API: the same attacks, defaults and findings as `leakaudit membership llm`, returned
# as typed findings and a pandas DataFrame, and nothing written to disk.
#
# It runs on the lab's models (`leakaudit lab --out leakaudit-lab`, or set `LEAKAUDIT_LAB`);
# replace the paths with your own model folder and your member / non-member JSONL files.

# %%
import os
from pathlib import Path

import leakaudit as la

LAB = Path(os.environ.get("LEAKAUDIT_LAB", "leakaudit-lab"))
target = LAB / "models" / "target"
reference = LAB / "models" / "reference"  # same tokenizer, trained on other text
members = LAB / "corpus" / "train.jsonl"  # documents the target was trained on
nonmembers = LAB / "corpus" / "heldout.jsonl"  # documents from the same source, never trained on

# %% [markdown]
# One call runs LOSS, zlib, lowercase, Min-K%, Min-K%++ and the reference-model ratio, with the
# model-free ("blind") baseline beside them. Every AUC and TPR at low FPR has a bootstrap CI.

# %%
report = la.membership(str(target), members, nonmembers, references=[str(reference)])
df = report.to_frame()
mia = df[(df.entry_type == "membership") & df.method.notna()]
print(mia[["method", "value", "ci_low", "ci_high", "severity"]].to_string(index=False))

# %% [markdown]
# Read the AUC against the blind baseline: an attack is only evidence of leakage where it beats
# what the text alone (no model) can tell apart. TPR at 1% FPR is the number that matters for a
# confident claim about one document; with few non-members it is "not resolvable".

# %%
blind = [f for f in report.of("membership") if f.attack == "blind_baseline"]
loss = next(f for f in report.of("membership") if f.data.get("method") == "loss")
print("blind baseline AUC:", [round(f.metric.value, 3) for f in blind])
print("LOSS AUC:", round(loss.metric.value, 3), "CI", (loss.metric.ci_low, loss.metric.ci_high))
for row in loss.data["tpr_at_fpr"]:
    print(f"TPR at FPR {row['fpr']}: {row.get('tpr')} (resolvable: {row['resolvable']})")
assert 0.0 <= loss.metric.value <= 1.0
