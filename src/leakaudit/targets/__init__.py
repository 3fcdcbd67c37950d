"""Targets: the model under audit, created from a string spec by :func:`load_target`.

A spec is ``scheme:rest`` or a bare path / hub name::

    hf:./my-model          a transformers model directory (safetensors, ...)
    hf:EleutherAI/pythia-70m   a hub name: from the local Hugging Face cache, or fetched when
                           downloads are allowed (``--allow-download``)
    gguf:./model.gguf      a GGUF file (transformers dequantizes it; ``pip install 'leakaudit[gguf]'``)
    ./my-model, x.gguf     no scheme: ``gguf`` for a ``.gguf`` file, else ``hf``
    openai-completions:http://127.0.0.1:8000/v1#tokenizer=./tok&api_key_env=MY_KEY
                           an OpenAI-compatible server (``pip install 'leakaudit[api]'``); the
                           capabilities are probed; ``openai-chat:URL`` for chat endpoints

Backends are the ``backends`` entries of :mod:`leakaudit.registry` whose ``scheme`` flag is set:
lazily imported loaders (``"package.module:function"``), so a backend's heavy dependencies load
only when it is chosen. The builtin ones are rows of :mod:`leakaudit.registry.builtin`; another
package adds one through a ``leakaudit.plugins`` entry point (or :func:`register_backend`). An
unknown scheme answers with the closest known ones.

**Offline by default.** Something that looks like a local path (it exists, starts with ``.``,
``/`` or ``~``, or has more than one ``/``) is never sent to the hub: a typo answers at once,
naming the path, before torch or transformers are imported. A hub name is looked up in the
local cache only, unless ``allow_download=True``.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from leakaudit import registry
from leakaudit.errors import InputError

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+._-]*):(.*)$", re.S)


def register_backend(scheme: str, loader: str | Callable[..., Any], *, help: str,
                     extra: str | None = None, needs: tuple[str, ...] = ()) -> None:
    """Register a target backend reached by ``load_target("SCHEME:...")`` (a ``backends`` entry
    of :mod:`leakaudit.registry`). ``loader(rest, *, name, device, dtype, allow_download)``
    returns the target; ``rest`` is the spec after ``scheme:``. ``needs``: importable modules,
    provided by the pip ``extra``."""
    registry.register("backends", scheme, loader, summary=help, extra=extra, requires=needs,
                      scheme=True, replace=True)


def backends() -> dict[str, registry.Entry]:
    """The backends ``load_target`` reaches, by scheme."""
    return {e.name: e for e in registry.entries("backends", scheme=True)}


from leakaudit.targets.base import looks_local  # noqa: E402,F401  (re-exported)


def parse_spec(spec: str | os.PathLike) -> tuple[str, str]:
    """``(scheme, rest)`` of a spec; a bare path or name gets ``gguf`` or ``hf``."""
    s = str(spec).strip()
    m = _SCHEME.match(s)
    if m and not os.path.exists(os.path.expanduser(s)) and len(m.group(1)) > 1:
        scheme, rest = m.group(1).lower(), m.group(2)
        known = list(backends())
        if scheme not in known:
            close = difflib.get_close_matches(scheme, known, n=3, cutoff=0.5)
            hint = f" Did you mean: {', '.join(c + ':' for c in close)}?" if close else ""
            raise InputError(f"unknown target scheme {scheme + ':'!r}.{hint} "
                             f"Known: {', '.join(k + ':' for k in sorted(known))}", path=s)
        return scheme, rest
    if s.lower().endswith(".gguf"):
        return "gguf", s
    p = Path(os.path.expanduser(s))
    if p.is_dir() and (p / "sisa.json").is_file() and not (p / "config.json").is_file():
        return "sisa", s
    return "hf", s


def check_spec(spec: str | os.PathLike, *, allow_download: bool = False) -> tuple[str, str]:
    """Everything about a spec that can be checked without loading it: the scheme exists, a
    local path exists, a hub name is allowed. Cheap (no torch import); raises InputError."""
    scheme, rest = parse_spec(spec)
    # --- issue 28 hook: a PEFT adapter folder (adapter_config.json, no config.json) given as
    # hf:DIR or a bare path loads as base + adapter (targets/peft.py); the registry takes it over.
    if scheme == "hf":
        from leakaudit.targets.peft import check_adapter, is_adapter_dir

        if is_adapter_dir(rest):
            check_adapter(rest, allow_download=allow_download)
            return "peft", rest
    # --- end of the issue 28 hook
    if scheme in ("hf", "gguf"):
        from leakaudit.targets.hf import resolve_local

        path, gguf_file, is_local = resolve_local(rest, gguf=scheme == "gguf",
                                                  allow_download=allow_download)
        if is_local and not gguf_file and os.path.isdir(path):
            from leakaudit.targets.checks import check_hf_model_dir

            check_hf_model_dir(path)  # complete safetensors weights; pickle-only refused
    elif scheme == "sisa":
        p = Path(os.path.expanduser(rest))
        if not (p / "sisa.json").is_file():
            raise InputError("not a SISA ensemble folder (no sisa.json)", path=str(spec))
    return scheme, rest


def check_specs(specs, *, allow_download: bool = False) -> list[tuple[str, str]]:
    """:func:`check_spec` of every spec (None entries skipped), in order: cheap, no torch."""
    return [check_spec(s, allow_download=allow_download) for s in specs if s is not None]


def require_capabilities(target, *names: str, who: str, spec: str | os.PathLike | None = None) -> None:
    """Refuse, in one line naming the capability, a target that cannot serve ``who`` (a command
    whose core needs, e.g., gradients or custom logits processors)."""
    caps = getattr(target, "capabilities", None)
    missing = list(names) if caps is None else caps.missing(*names)
    if missing:
        from leakaudit.targets.base import Capabilities

        what = "; ".join(f"{m} ({Capabilities.DESCRIPTIONS[m]})" for m in missing)
        raise InputError(f"{who} needs {what}, which this target does not provide",
                         path=str(spec if spec is not None else getattr(target, "source", None)
                                  or getattr(target, "name", "target")))


def load_target(spec: str | os.PathLike, *, name: str | None = None, device: str = "cpu",
                dtype: str = "float32", allow_download: bool = False):
    """The target a spec names (see the module docstring). Bad specs raise :class:`InputError`
    naming the spec before anything heavy is imported."""
    scheme, rest = check_spec(spec, allow_download=allow_download)
    loader = backends()[scheme].load()
    return loader(rest, name=name, device=device, dtype=dtype, allow_download=allow_download)


def describe_target(target, spec: str | os.PathLike | None = None) -> dict[str, Any]:
    """What a run record says about a target: spec, content fingerprint, capabilities and the
    token convention in force."""
    out: dict[str, Any] = {"spec": str(spec if spec is not None else getattr(target, "source", "")),
                           "name": getattr(target, "name", None),
                           "fingerprint": target.fingerprint()}
    caps = getattr(target, "capabilities", None)
    if caps is not None and hasattr(caps, "to_dict"):
        out["capabilities"] = caps.to_dict()
    if hasattr(target, "token_convention"):
        out["token_convention"] = target.token_convention()
    return out


def default_name(spec: str | os.PathLike) -> str:
    """A short label for a spec: the last path component."""
    _, rest = parse_spec(spec) if not isinstance(spec, Path) else ("hf", str(spec))
    return Path(rest).name or rest or "model"
