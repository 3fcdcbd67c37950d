"""Synthetic medical records for the attribute-inference lab (seeded, plain numpy).

Each record has non-sensitive attributes (age, sex, bmi, systolic blood pressure, cholesterol,
exercise hours per week), one sensitive attribute (``smoker``, 0/1, ≈30% of the population) and a
diagnosis label (``heart_disease``, 0/1) drawn from a logistic model in which smoking is a strong
risk factor. The sensitive attribute therefore correlates with the label — the situation in which
Fredrikson et al. (USENIX Security 2014) showed that a model plus a record's other attributes and
label reveal the sensitive attribute better than its marginal does.

All columns are numeric (``FEATURES`` order); the sensitive column is ``SENSITIVE``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FEATURES = ("age", "sex", "bmi", "systolic_bp", "cholesterol", "exercise_h", "smoker")
SENSITIVE = "smoker"
LABEL = "heart_disease"
SMOKER_RATE = 0.3
#: Logistic model of the label: logit = INTERCEPT + Σ coefficient · standardized attribute.
RISK = {"age": 0.9, "sex": 0.3, "bmi": 0.5, "systolic_bp": 0.6, "cholesterol": 0.5,
        "exercise_h": -0.5, "smoker": 2.2}
INTERCEPT = -1.6


@dataclass(frozen=True)
class MedicalRecords:
    x: np.ndarray  # (n, len(FEATURES)) float64
    y: np.ndarray  # (n,) int64 diagnosis
    ids: np.ndarray  # (n,) int64

    @property
    def sensitive(self) -> np.ndarray:
        return self.x[:, FEATURES.index(SENSITIVE)].astype(np.int64)

    def subset(self, idx) -> MedicalRecords:
        idx = np.asarray(idx)
        return MedicalRecords(self.x[idx], self.y[idx], self.ids[idx])

    def __len__(self) -> int:
        return len(self.y)


def generate_medical_records(n: int, *, seed: int) -> MedicalRecords:
    """``n`` records; the same seed gives the same records."""
    rng = np.random.default_rng(seed)
    age = np.clip(rng.normal(52, 15, n), 18, 90).round()
    sex = rng.integers(0, 2, n).astype(np.float64)
    smoker = (rng.random(n) < SMOKER_RATE).astype(np.float64)
    bmi = np.clip(rng.normal(26.5 + 0.8 * smoker, 4.5, n), 15, 50).round(1)
    bp = np.clip(rng.normal(110 + 0.45 * age + 0.6 * (bmi - 26) + 4 * smoker, 12, n), 85, 210).round()
    chol = np.clip(rng.normal(180 + 0.5 * age + 10 * smoker, 30, n), 100, 340).round()
    exercise = np.clip(rng.gamma(2.0, 1.6 - 0.5 * smoker, n), 0, 20).round(1)
    cols = {"age": age, "sex": sex, "bmi": bmi, "systolic_bp": bp, "cholesterol": chol,
            "exercise_h": exercise, "smoker": smoker}
    x = np.stack([cols[f] for f in FEATURES], axis=1)
    z = (x - x.mean(0)) / np.where(x.std(0) > 0, x.std(0), 1)
    logit = INTERCEPT + sum(RISK[f] * z[:, FEATURES.index(f)] for f in FEATURES)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    return MedicalRecords(x=x, y=y, ids=np.arange(n, dtype=np.int64))
