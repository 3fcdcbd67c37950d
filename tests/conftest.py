import os

import pytest

import leakaudit  # noqa: F401  (sets OMP_WAIT_POLICY=PASSIVE before any test module loads torch)

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _server_error_to_the_real_stderr(self, request, client_address):
    """socketserver prints a handler's exception to ``sys.stderr`` from the server's thread; the
    test servers (fake endpoints, llama-style servers) outlive their requests, so such a line
    landed in whatever stream a later test had swapped in (CliRunner's captured stderr: a
    one-line-error check then counted 5 lines). Printed to the process's real stderr instead."""
    import sys
    import traceback

    print(f"test server: exception while handling a request from {client_address}",
          file=sys.__stderr__)
    traceback.print_exc(file=sys.__stderr__)


import socketserver  # noqa: E402

socketserver.BaseServer.handle_error = _server_error_to_the_real_stderr

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Patient John Doe, DOB 1970-01-01, presented with a mild cough and fever.",
    "Ticket #1234 | Priority: High | Customer reports login failures since Monday.",
    "Hello",
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.",
    "Order 5521 shipped to 42 Main Street; call 555-201-7788 with questions.",
] * 5


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny GPT-2 model saved with plain transformers calls (not the lab's trainer)."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    d = tmp_path_factory.mktemp("tiny_model")
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(TEXTS, vocab_size=400, min_frequency=1, special_tokens=["<|endoftext|>"],
                            show_progress=False)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<|endoftext|>",
                                  eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=len(tok), n_positions=128, n_embd=32, n_layer=2, n_head=2,
                     bos_token_id=0, eos_token_id=0)
    model = GPT2LMHeadModel(cfg)
    model.save_pretrained(d)
    tok.save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def tiny_lm(tiny_model_dir):
    from leakaudit.targets.hf import HFCausalLM

    return HFCausalLM.load(tiny_model_dir)


@pytest.fixture(scope="session")
def quick_lab(tmp_path_factory):
    """The quick lab at seed 0 (PII shown), run once per session: ``(out, summary, cfg)``.
    tests/test_lab_e2e.py checks its findings (marked slow: about 4.5 minutes of training and
    attacks on 2 cores)."""
    from dataclasses import replace

    from leakaudit.lab.run import LabConfig, run_lab

    out = tmp_path_factory.mktemp("lab") / "out"
    cfg = LabConfig.quick(seed=0)
    cfg = replace(cfg, extraction=replace(cfg.extraction, show_pii=True))
    summary = run_lab(out, cfg, log=lambda m: None, formats=("jsonl", "html", "sarif", "junit"),
                      fail_on=["extraction.verified > 0", "extraction.verified > 100000"])
    return out, summary, cfg


@pytest.fixture(scope="session")
def tiny_lab(tmp_path_factory):
    """The tiny lab at seed 0 (every stage of the quick lab at the smallest sizes; its numbers
    mean nothing), run once per session: ``(out, summary, cfg)``. The docs' notebooks and the
    docs-link drift check run on it in the default test run."""
    from leakaudit.lab.run import LabConfig, run_lab

    out = tmp_path_factory.mktemp("tiny_lab") / "out"
    cfg = LabConfig.tiny(seed=0)
    summary = run_lab(out, cfg, log=lambda m: None, formats=("jsonl", "html", "sarif", "junit"))
    return out, summary, cfg
