"""Write a GPT-2 Hugging Face model as a GGUF file (float32), for testing the GGUF loading path.

Nothing can be downloaded here, so the tests make their own GGUF: tensor names come from the
``gguf`` package's own HF→GGUF name map (the one transformers reads them back with), and the
Conv1D weights are transposed as llama.cpp's converter does.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

_TRANSPOSED = ("attn_qkv.weight", "ffn_down.weight", "ffn_up.weight", "attn_output.weight")


def write_gpt2_gguf(model, tokenizer, path: Path) -> Path:
    import gguf

    cfg = model.config
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
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_merges(merges)
    special = set(tokenizer.all_special_tokens)
    w.add_token_types([gguf.TokenType.CONTROL if t in special else gguf.TokenType.NORMAL for t in tokens])
    w.add_bos_token_id(tokenizer.bos_token_id)
    w.add_eos_token_id(tokenizer.eos_token_id)
    w.add_pad_token_id(tokenizer.pad_token_id)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.GPT2, cfg.n_layer)
    for name, t in model.state_dict().items():
        g = names.get_name(name.removeprefix("transformer."), try_suffixes=(".weight", ".bias"))
        if g is None:
            raise ValueError(f"no GGUF name for {name}")
        a = t.detach().cpu().numpy().astype(np.float32)
        w.add_tensor(g, a.T.copy() if g.endswith(_TRANSPOSED) else a)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
