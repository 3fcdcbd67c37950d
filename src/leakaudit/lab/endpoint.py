"""The lab's models audited through an OpenAI-compatible endpoint.

``leakaudit lab --out DIR`` trains the lab; ``leakaudit endpoint export-gguf DIR/models/target
target.gguf`` writes the target for llama.cpp; ``python -m llama_cpp.server --model target.gguf``
serves it; ``leakaudit lab endpoint URL --out DIR`` then audits the endpoint against the lab's
ground truth: its corpus (memorization, divergence verification), held-out documents (membership
non-members, PII control subjects), canaries (exposure), the data subjects of its documents (PII
probes) and its reference model (the reference attack, and the PII probes' negative control).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from leakaudit.errors import InputError
from leakaudit.progress import null_progress


def run_endpoint_lab(lab_dir: str | Path, spec: str, *, out: str | Path | None = None,
                     config=None, client_config=None, model: str | None = None,
                     api_key_env: str | None = None, api_key_file: str | None = None,
                     progress=null_progress, log=print, command: str = "leakaudit lab endpoint"
                     ) -> dict[str, Any]:
    """Audit the endpoint ``spec`` (``openai-completions:URL`` / ``openai-chat:URL``, or a bare
    URL for completions) against the finished lab in ``lab_dir``; the report goes to
    ``out`` (default ``lab_dir/endpoint``), the request ledger next to it."""
    from leakaudit.attacks.probes.pii import lab_subjects
    from leakaudit.audits.endpoint import EndpointAuditConfig, audit_endpoint
    from leakaudit.lab.corpus import LabCorpus
    from leakaudit.targets.api_client import ClientConfig
    from leakaudit.targets import load_target
    from leakaudit.targets.openai_api import load_endpoint

    lab = Path(lab_dir)
    if not (lab / "corpus" / "manifest.json").is_file() or not (lab / "models" / "target").is_dir():
        raise InputError("not a finished lab folder (no corpus/manifest.json or models/target): "
                         "run `leakaudit lab --out DIR` first", path=str(lab))
    if spec.startswith(("http://", "https://")):
        spec = "openai-completions:" + spec
    out = Path(out) if out is not None else lab / "endpoint"
    corpus = LabCorpus.read(lab / "corpus")
    target = load_endpoint(spec, model=model, api_key_env=api_key_env, api_key_file=api_key_file,
                           tokenizer=str(lab / "models" / "target"), ledger=out / "requests.sqlite",
                           config=client_config or ClientConfig(), name="endpoint", log=log)
    try:
        reference = load_target(lab / "models" / "reference", name="reference")
        subjects = {"trained": lab_subjects(corpus.train), "held-out": lab_subjects(corpus.heldout)}
        return audit_endpoint(
            target, out, config=config or EndpointAuditConfig(), corpus=corpus.train,
            nonmembers=corpus.heldout, canaries=corpus.manifest["canaries"], subjects=subjects,
            references={"reference": reference}, run_record={"command": command,
                                                             "lab_dir": str(lab)},
            progress=progress, log=log)
    finally:
        target.close()
