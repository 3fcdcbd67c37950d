"""PEFT adapter folders as targets: a base model plus a (LoRA) adapter, as users ship fine-tunes.

An adapter folder holds ``adapter_config.json`` (whose ``base_model_name_or_path`` names the base)
and ``adapter_model.safetensors``; it has no ``config.json`` of its own. The base is itself a
target spec (``hf:`` directory or cached hub name, ``gguf:`` file), loaded under the same offline
rules as any other: a local-looking base that does not exist is an error naming it, a hub name
needs the local cache or ``allow_download``. A relative base path is tried relative to the
working directory, then to the adapter folder.

The adapter is applied unmerged (``peft.PeftModel.from_pretrained`` on the loaded base), so the
scores are exactly what peft's own forward pass computes; a merged LoRA
(``merge_and_unload().save_pretrained``) is an ordinary model folder and loads with ``hf:``.

The fingerprint covers base and adapter: sha256 of the base target's fingerprint, the adapter
config (minus where the base lives) and the bytes of every adapter weights file.

**The base as default reference.** A fine-tune's natural reference model is the model it was
fine-tuned from (Mireshghallah et al. 2022, "Memorization in NLP Fine-tuning Methods"): the
reference-calibrated scores then measure what fine-tuning added. :func:`base_spec` says where a
target's base is (an adapter's ``adapter_config.json``, or the ``finetune.json`` that
``leakaudit finetune`` writes next to a full or head-only fine-tune), and
:func:`default_reference` loads it; the audits use it when no reference is given and record
``reference_source`` (``"adapter base"`` or ``"given"``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

from leakaudit.errors import InputError, LeakauditError, read_json_object
from leakaudit.targets.hf import HFCausalLM

ADAPTER_CONFIG = "adapter_config.json"
#: written by ``leakaudit finetune`` next to a fine-tuned model (full, head) or adapter
FINETUNE_RECORD = "finetune.json"
#: what a run record says when the reference is the target's base
ADAPTER_BASE = "adapter base"


def is_adapter_dir(spec: str | os.PathLike) -> bool:
    """A folder with ``adapter_config.json`` and no ``config.json`` (cheap: no imports)."""
    p = Path(os.path.expanduser(str(spec)))
    return p.is_dir() and (p / ADAPTER_CONFIG).is_file() and not (p / "config.json").is_file()


def _adapter_config(folder: Path) -> dict[str, Any]:
    return read_json_object(folder / ADAPTER_CONFIG)


def _resolve_base(raw: str, folder: Path) -> str:
    """The base spec an adapter names: as written, or relative to the adapter folder when a
    relative path does not exist from the working directory."""
    from leakaudit.targets import parse_spec

    scheme, rest = parse_spec(raw)
    p = Path(os.path.expanduser(rest))
    if not p.is_absolute() and not p.exists() and (folder / p).exists():
        rest = str((folder / p).resolve())
        return f"{scheme}:{rest}"
    return raw


def adapter_base(folder: str | os.PathLike) -> str:
    """The base model spec of an adapter folder (``base_model_name_or_path``), resolved."""
    folder = Path(os.path.expanduser(str(folder)))
    cfg = _adapter_config(folder)
    raw = cfg.get("base_model_name_or_path")
    if not isinstance(raw, str) or not raw.strip():
        raise InputError(f"{ADAPTER_CONFIG} names no base model (base_model_name_or_path)",
                         path=str(folder / ADAPTER_CONFIG))
    return _resolve_base(raw.strip(), folder)


def check_adapter(folder: str | os.PathLike, *, allow_download: bool = False) -> str:
    """Everything about an adapter folder checkable without torch: its config is a JSON object
    naming a base, its weights are complete safetensors (pickle refused), and the base spec
    passes :func:`leakaudit.targets.check_spec`. Returns the base spec."""
    from leakaudit.targets import check_spec
    from leakaudit.targets.checks import check_weights_folder

    folder = Path(os.path.expanduser(str(folder)))
    base = adapter_base(folder)
    check_weights_folder(folder, weights="adapter_model*.safetensors",
                         hint="save the adapter with safetensors: model.save_pretrained('{d}', "
                              "safe_serialization=True)")
    try:
        check_spec(base, allow_download=allow_download)
    except InputError as e:
        raise InputError(f"the adapter's base model: {e}", path=str(folder / ADAPTER_CONFIG)) from None
    return base


def adapter_fingerprint(folder: Path, base_fingerprint: str) -> str:
    """sha256 over the base's fingerprint, the adapter config (without the base's location) and
    the bytes of every adapter weights file, in name order."""
    h = hashlib.sha256(f"base:{base_fingerprint}".encode())
    cfg = {k: v for k, v in _adapter_config(folder).items()
           if k not in ("base_model_name_or_path", "revision")}
    h.update(json.dumps(cfg, sort_keys=True, default=str).encode())
    for f in sorted(folder.glob("adapter_model*.safetensors")):
        h.update(f.name.encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


@contextlib.contextmanager
def peft_quiet():
    """Silence two advisories peft triggers that say nothing about the model or the results:
    transformers' ``is_gradient_checkpointing`` deprecation on every wrap, and, when saving an
    adapter whose base is not a folder (a ``.gguf`` file), "Could not find a config file" (it
    looks there for a resized vocabulary; LoRA leaves the vocabulary alone)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
        warnings.filterwarnings("ignore", message="Could not find a config file in")
        yield


class PeftCausalLM(HFCausalLM):
    """An HF causal LM with an unmerged PEFT adapter (``peft.PeftModel``); ``base_spec`` names
    the base model, ``base_fingerprint`` is the base target's fingerprint."""

    def __init__(self, model, tokenizer, *, name: str, source: str | None, adapter_dir: Path,
                 base_spec: str, base_fingerprint: str):
        super().__init__(model, tokenizer, name=name, source=source)
        self.adapter_dir = Path(adapter_dir)
        self.base_spec = base_spec
        self.base_fingerprint = base_fingerprint

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = adapter_fingerprint(self.adapter_dir, self.base_fingerprint)
        return self._fingerprint


class AdapterBaseLM(HFCausalLM):
    """The base model of a loaded adapter target, served by the *same* weights with the adapter
    switched off (``PeftModel.disable_adapter()``) around every pass: the default reference of
    an adapter costs no second copy of the base (a 7B base stays one 7B base in memory). Its
    fingerprint and ``source`` are the base's, so caches and workers that reload by spec see
    the base itself. Not for concurrent use with its adapter target (they share one module)."""

    def __init__(self, adapter: PeftCausalLM, *, name: str = "base"):
        super().__init__(adapter.model, adapter.tokenizer, name=name, source=adapter.base_spec)
        self._fingerprint = adapter.base_fingerprint

    def score_ids(self, *args, **kwargs):
        with self.model.disable_adapter():
            return super().score_ids(*args, **kwargs)

    def generate_ids(self, *args, **kwargs):
        with self.model.disable_adapter():
            return super().generate_ids(*args, **kwargs)


def load_peft(rest: str, *, name: str | None = None, device: str = "cpu", dtype: str = "float32",
              allow_download: bool = False) -> PeftCausalLM:
    """The adapter backend of :func:`leakaudit.targets.load_target`: the base target, then
    ``peft.PeftModel.from_pretrained`` on its transformers model (``pip install
    'leakaudit[finetune]'``)."""
    from leakaudit.targets import load_target

    folder = Path(os.path.expanduser(rest))
    base = check_adapter(folder, allow_download=allow_download)
    try:
        from peft import PeftModel
    except ImportError as e:
        raise LeakauditError("loading a PEFT adapter needs the 'peft' package: "
                             "pip install 'leakaudit[finetune]'") from e
    base_target = load_target(base, name="base", device=device, dtype=dtype,
                              allow_download=allow_download)
    if not isinstance(base_target, HFCausalLM):
        raise InputError(f"the adapter's base {base!r} is not an in-process transformers model",
                         path=str(folder / ADAPTER_CONFIG))
    base_fp = base_target.fingerprint()  # of the base weights, before the adapter wraps them
    try:
        with peft_quiet():
            model = PeftModel.from_pretrained(base_target.model, str(folder), is_trainable=False)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"could not apply the adapter to its base {base!r}: {msg}",
                         path=str(folder)) from None
    model.to(device)
    return PeftCausalLM(model, base_target.tokenizer, name=name or folder.name, source=str(rest),
                        adapter_dir=folder, base_spec=base, base_fingerprint=base_fp)


def base_spec(target_or_spec) -> str | None:
    """Where the base model of a fine-tuned target is: an adapter's base, or the ``base`` of the
    ``finetune.json`` that ``leakaudit finetune`` wrote into a model folder; None if unknown."""
    spec = getattr(target_or_spec, "base_spec", None)
    if spec:
        return str(spec)
    src = getattr(target_or_spec, "source", None) if not isinstance(target_or_spec, (str, os.PathLike)) \
        else target_or_spec
    if src is None:
        return None
    from leakaudit.targets import parse_spec

    try:
        scheme, rest = parse_spec(src)
    except InputError:
        return None
    folder = Path(os.path.expanduser(rest))
    if is_adapter_dir(folder):
        return adapter_base(folder)
    rec = folder / FINETUNE_RECORD
    if scheme == "hf" and folder.is_dir() and rec.is_file():
        base = read_json_object(rec).get("base")
        return _resolve_base(str(base), folder) if isinstance(base, str) and base else None
    return None


def default_reference(target, *, device: str = "cpu", allow_download: bool = False):
    """The base model of a fine-tuned target as a reference target named ``base``, or None when
    the base is not known (see :func:`base_spec`): for an adapter target, its own base weights
    with the adapter switched off (:class:`AdapterBaseLM`); else the base spec, loaded."""
    from leakaudit.targets import load_target

    if isinstance(target, PeftCausalLM) and str(target.device).startswith(str(device)):
        return AdapterBaseLM(target)  # the loaded base weights, adapter off: no second copy
    spec = base_spec(target)
    if spec is None:
        return None
    return load_target(spec, name="base", device=device, allow_download=allow_download)


def references_or_base(target, given: dict[str, Any], *, device: str = "cpu",
                       allow_download: bool = False, log=None) -> tuple[dict[str, Any], str | None]:
    """The reference models an audit uses and where they came from: the ones given (``"given"``)
    or, when none are, the target's base (``"adapter base"``), or none (None)."""
    if given:
        return given, "given"
    ref = default_reference(target, device=device, allow_download=allow_download)
    if ref is None:
        return {}, None
    if log is not None:
        log(f"reference: the target's base model {base_spec(target)} (no --reference given)")
    return {"base": ref}, ADAPTER_BASE
