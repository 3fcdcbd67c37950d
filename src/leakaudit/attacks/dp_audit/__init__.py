"""DP auditing attacks: audit examples (canaries) to insert, their inclusion coin flips, and the
scores that turn a trained model into per-canary membership guesses (higher = more likely the
canary was trained on). The statistics are in :mod:`leakaudit.metrics.dp_audit`."""
