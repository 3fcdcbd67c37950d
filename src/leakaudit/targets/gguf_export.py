"""Write a GPT-2-style Hugging Face model as a float32 GGUF file, for serving it with llama.cpp.

An audit of a deployed endpoint is checked by serving a model the lab also runs in-process: the
same weights behind llama.cpp's OpenAI-compatible server must give the same greedy tokens and the
same log-probs (to the server's float tolerance). Tensor names come from the ``gguf`` package's
own HF→GGUF name map (the one transformers reads them back with), and the Conv1D weights are
transposed as llama.cpp's converter does. Nothing is quantized.

``add_bos`` records ``tokenizer.ggml.add_bos_token``. The default (False) matches GPT-2's
tokenizer, which adds no start token, so the server sees exactly the tokens the in-process scorer
does (leakaudit's token convention). llama.cpp's echoed log-probs then come out one position late;
the endpoint backend's alignment check detects it and realigns from the full top log-probs.
``add_bos=True`` makes llama.cpp start every prompt with BOS (aligned echo, but every score is
conditioned on a BOS the tokenizer would not add). ``chat_template`` (Jinja) is stored for the chat endpoint; the default passes the last
user message through unchanged, so a base model continues it as plain text.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

_TRANSPOSED = ("attn_qkv.weight", "ffn_down.weight", "ffn_up.weight", "attn_output.weight")

#: A chat template for a base model: the conversation's messages joined as plain text.
PLAIN_CHAT_TEMPLATE = "{% for message in messages %}{{ message['content'] }}{% endfor %}"


def write_gpt2_gguf(model, tokenizer, path: str | Path, *, add_bos: bool = False,
                    chat_template: str | None = None) -> Path:
    """Write ``model`` (a ``GPT2LMHeadModel``) and its byte-level BPE ``tokenizer`` to ``path``."""
    try:
        import gguf
    except ImportError as e:
        raise ImportError("writing GGUF needs the gguf package: pip install 'leakaudit[gguf]'") from e

    import os

    cfg = model.config
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")  # moved into place when whole
    try:
        _write(gguf, model, tokenizer, cfg, tmp, add_bos=add_bos, chat_template=chat_template)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _write(gguf, model, tokenizer, cfg, path: Path, *, add_bos: bool,
           chat_template: str | None) -> None:
    w = gguf.GGUFWriter(str(path), "gpt2")
    w.add_context_length(cfg.n_positions)
    w.add_embedding_length(cfg.n_embd)
    w.add_block_count(cfg.n_layer)
    w.add_feed_forward_length(cfg.n_inner or 4 * cfg.n_embd)
    w.add_head_count(cfg.n_head)
    w.add_layer_norm_eps(cfg.layer_norm_epsilon)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    tj = json.loads(tokenizer.backend_tokenizer.to_str())
    vocab = tj["model"]["vocab"]
    tokens = [""] * len(vocab)
    for t, i in vocab.items():
        tokens[i] = t
    merges = [m if isinstance(m, str) else " ".join(m) for m in tj["model"]["merges"]]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")  # GPT-2's split regex (digits stay together), as HF's ByteLevel
    w.add_token_list(tokens)
    w.add_token_merges(merges)
    special = set(tokenizer.all_special_tokens)
    w.add_token_types([gguf.TokenType.CONTROL if t in special else gguf.TokenType.NORMAL
                       for t in tokens])
    for add, tid in ((w.add_bos_token_id, tokenizer.bos_token_id),
                     (w.add_eos_token_id, tokenizer.eos_token_id),
                     (w.add_pad_token_id, tokenizer.pad_token_id)):
        if tid is not None:  # a GPT-2 tokenizer has no pad token (nor, some, a BOS)
            add(tid)
    w.add_add_bos_token(bool(add_bos))
    if chat_template is not None:
        w.add_chat_template(chat_template)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.GPT2, cfg.n_layer)
    for name, t in model.state_dict().items():
        if name.endswith(".attn.bias") or name.endswith(".attn.masked_bias"):
            continue  # causal-mask buffers of older transformers versions, not weights
        g = names.get_name(name.removeprefix("transformer."), try_suffixes=(".weight", ".bias"))
        if g is None:
            raise ValueError(f"no GGUF name for {name}")
        a = t.detach().cpu().numpy().astype(np.float32)
        w.add_tensor(g, a.T.copy() if g.endswith(_TRANSPOSED) else a)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def export_gguf(model_dir: str | Path, out: str | Path, *, add_bos: bool = False,
                chat_template: str | None = PLAIN_CHAT_TEMPLATE) -> Path:
    """Load a GPT-2-style model directory and write it as GGUF (float32)."""
    from transformers import AutoTokenizer, GPT2LMHeadModel

    from leakaudit.errors import InputError
    from leakaudit.runs.staged import check_output_file

    check_output_file(out, "output .gguf")
    try:
        tok = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
        model = GPT2LMHeadModel.from_pretrained(str(model_dir), local_files_only=True)
    except (OSError, ValueError) as e:
        raise InputError(f"not a GPT-2-style model directory: {str(e).splitlines()[0]}",
                         path=str(model_dir)) from None
    from leakaudit.runs.staged import owned_file

    # never over a file leakaudit did not write; recorded as leakaudit's, so a rerun replaces it
    with owned_file(out, "output .gguf") as tmp:
        write_gpt2_gguf(model, tok, tmp, add_bos=add_bos, chat_template=chat_template)
    return Path(out)
