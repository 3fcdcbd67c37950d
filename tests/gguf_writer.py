"""The tests' GGUF writer is the package's own (``leakaudit.targets.gguf_export``)."""

from leakaudit.targets.gguf_export import write_gpt2_gguf  # noqa: F401
