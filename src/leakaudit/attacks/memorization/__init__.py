"""How much of the training data is memorized, and what drives it (Carlini et al. 2022)."""

from leakaudit.attacks.memorization.measure import (PRESETS, MemorizationConfig, MemorizationResult,
                                                     measure_memorization, select_sequences)

__all__ = ["PRESETS", "MemorizationConfig", "MemorizationResult", "measure_memorization",
           "select_sequences"]
