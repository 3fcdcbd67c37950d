"""Registries that are easy to extend and kind when a name is misspelled (see ``leakaudit.registry``)."""

from leakaudit.registry import Registry

__all__ = ["Registry"]
