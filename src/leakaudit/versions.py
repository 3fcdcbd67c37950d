"""Versions of leakaudit and its main dependencies, recorded in every run record."""

from __future__ import annotations

import platform

from leakaudit import __version__


def versions() -> dict[str, str]:
    import numpy
    import tokenizers
    import torch
    import transformers

    return {"leakaudit": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
            "numpy": numpy.__version__}
