"""Defenses: each yields a new target or corpus to re-audit (DP-SGD training in ``dp``)."""
