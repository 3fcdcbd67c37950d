# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Training-data extraction and memorization, from a notebook
#
# Does the model recite its training data? Two audits through the Python API:
#
# 1. **Extraction** (Carlini et al. 2021): sample from the model, rank the samples by how
#    likely they are memorized, and verify the top ones against the training corpus.
# 2. **Memorization** (Carlini et al. 2022): prompt with k tokens of a training document and
#    check whether greedy decoding continues with its next ℓ tokens, by how often the window
#    occurs in the corpus.
#
# It runs on the lab's models (`leakaudit lab --out leakaudit-lab`, or set `LEAKAUDIT_LAB`);
# small sizes keep it to a minute on a laptop. Pass `out="my-audit"` to keep the report files
# (`report.jsonl`, `report.html`) as the command writes them.

# %%
import os
from pathlib import Path

import leakaudit as la

LAB = Path(os.environ.get("LEAKAUDIT_LAB", "leakaudit-lab"))
target = str(LAB / "models" / "target")
reference = str(LAB / "models" / "reference")
corpus = LAB / "corpus" / "train.jsonl"

# %%
ext = la.extract(target, corpus, references=[reference], n_samples=32, new_tokens=32, select=8,
                 seed=0)
samples = ext.to_frame()
samples = samples[samples.entry_type == "sample"]
print(f"{len(samples)} candidates checked, {int(samples.verified.sum())} verified in the corpus")
print(ext.summary.get("verified_unique", ext.summary))

# %% [markdown]
# Every candidate's text is PII-masked unless you pass `show_pii=True`; the verified ones carry
# the corpus document they come from.

# %%
mem = la.memorization([target, reference], corpus, prefix=(16,), suffix=16, sequences=64,
                      greedy_check=8, seed=0)
rows = mem.to_frame()
rates = rows[(rows.entry_type == "memorization") & (rows.kind == "rate")]
print(rates[["target", "k", "ell", "bucket", "metric", "value", "ci_low", "ci_high"]]
      .to_string(index=False))
print("exact memorization rate by model:", mem.summary["memorization"]["exact_rate"])
assert len(rates) > 0
