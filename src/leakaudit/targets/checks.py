"""Checks of user-supplied model files, run before anything is loaded.

Each failure is an :class:`~leakaudit.errors.InputError` naming the file: a truncated or
malformed safetensors file, a folder that holds only a pickle checkpoint (refused: unpickling can
run code; the message says how to convert it), a missing or malformed ``config.json``, a device
name that does not exist.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from leakaudit.errors import InputError, read_json_object

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")

CONVERT_HINT = ("convert it once, in an environment you trust: python -c \"from transformers import "
                "AutoModelForCausalLM as M; M.from_pretrained('{d}').save_pretrained('{d}-safetensors', "
                "safe_serialization=True)\"")


def check_safetensors(path: str | Path) -> None:
    """The file exists, its header is valid JSON and every tensor lies inside the file."""
    path = Path(path)
    if not path.is_file():
        raise InputError("no such file", path=str(path))
    size = path.stat().st_size
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise ValueError(f"{size} bytes: too short for a safetensors header")
            n = int.from_bytes(head, "little")
            if n <= 0 or 8 + n > size:
                raise ValueError(f"the header announces {n} bytes but the file has {size}")
            header = json.loads(fh.read(n).decode("utf-8"))
        if not isinstance(header, dict):
            raise ValueError("the header is not a JSON object")
        ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"]
    except (ValueError, KeyError, TypeError, IndexError, UnicodeDecodeError) as e:
        raise InputError(f"not a valid safetensors file ({e})", path=str(path)) from None
    need = 8 + n + (max(ends) if ends else 0)
    if need > size:
        raise InputError(f"truncated safetensors file: {size} bytes, its header needs {need}",
                         path=str(path))


def check_weights_folder(folder: str | Path, *, weights: str = "*.safetensors",
                         hint: str = CONVERT_HINT) -> list[Path]:
    """The safetensors files of a model folder, each checked; a pickle-only folder is refused."""
    folder = Path(folder)
    files = sorted(folder.glob(weights))
    if not files:
        pickles = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
        if pickles:
            raise InputError(f"only a pickle checkpoint ({', '.join(pickles[:3])}): leakaudit never "
                             f"unpickles (it can run code); {hint.format(d=folder)}",
                             path=str(folder))
        raise InputError(f"no {weights} weights in this folder", path=str(folder))
    for f in files:
        check_safetensors(f)
    return files


def check_hf_model_dir(folder: str | Path) -> None:
    """A local Hugging Face model folder: a readable config.json and valid safetensors weights."""
    folder = Path(folder)
    read_json_object(folder / "config.json", missing="no config.json: not a Hugging Face model "
                     "folder", missing_at=folder)
    check_weights_folder(folder)


_DEVICE = re.compile(r"^(cpu|mps|cuda(:\d+)?)$")


def check_device(device: str) -> str:
    """``cpu``, ``cuda``, ``cuda:N`` (an existing GPU) or ``mps``; anything else is an error."""
    if not _DEVICE.match(device or ""):
        raise InputError(f"--device must be cpu, cuda, cuda:N or mps, got {device!r}")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise InputError(f"--device {device}: no CUDA device is available here")
        idx = int(device.split(":")[1]) if ":" in device else 0
        if idx >= torch.cuda.device_count():
            raise InputError(f"--device {device}: this machine has {torch.cuda.device_count()} "
                             "CUDA device(s)")
    if device == "mps":
        import torch

        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise InputError("--device mps: MPS is not available here")
    return device


def is_local_model_dir(spec: str | os.PathLike) -> bool:
    p = Path(spec)
    return p.is_dir()
