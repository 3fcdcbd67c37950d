"""The Python API: every audit of the CLI as a function, for notebooks and scripts
(``extract``, ``memorization``, ``exposure``, ``membership*``, ``invert``, ``compare``, ``dp_audit``).

>>> import leakaudit as la                                           # doctest: +SKIP
>>> r = la.membership("leakaudit-lab/models/target", members="members.jsonl",
...                   nonmembers="nonmembers.jsonl")                 # doctest: +SKIP
>>> r.to_frame()[["attack", "metric", "value", "ci_low", "ci_high"]]  # doctest: +SKIP

Each function takes the same options as its command (the option ``--new-tokens`` is the keyword
``new_tokens``; the defaults are the command's, read from the same request dataclass) and returns
an :class:`AuditReport`: the typed findings, the run record and the summary. Nothing is written
unless ``out`` is given: without it the audit runs in a temporary folder (its run store and
report included) that is removed before the function returns. With ``out`` the folder is the one
the command would write (``report.jsonl``, ``summary.json``, and the ``formats`` asked for), with
the same ownership and resume rules.

Every function also takes ``threads=N`` (torch/OpenMP threads; by default ``OMP_NUM_THREADS``
when set, else the CPUs this process may use; 0: those the machine's load leaves free). Scores
do not depend on it; a model trained at another thread count differs in its last bits.

Bad input raises :class:`~leakaudit.errors.InputError` (the CLI prints its one-line message and
exits 2); a missing capability raises :class:`~leakaudit.errors.CapabilityError`.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from leakaudit.errors import InputError
from leakaudit.findings import Finding, Record, RunContext, to_record

__all__ = ["AuditReport", "CompareReport", "DPAuditReport", "extract", "memorization", "exposure",
           "membership", "membership_classifier", "membership_scores", "invert", "compare",
           "dp_audit", "dp_audit_white_box", "request_defaults", "run_audit"]


@dataclass
class AuditReport:
    """A finished audit. ``findings`` are typed :class:`~leakaudit.findings.Finding` records
    (the rows of ``report.jsonl`` between its ``run`` and ``summary`` lines); ``out`` is the
    folder written, or ``None`` when nothing was kept."""

    run: dict[str, Any]
    findings: list[Finding]
    summary: dict[str, Any]
    out: Path | None = None
    files: dict[str, Path] = field(default_factory=dict)
    exit_code: int = 0

    def __iter__(self) -> Iterator[Finding]:
        return iter(self.findings)

    def __len__(self) -> int:
        return len(self.findings)

    def of(self, entry_type: str) -> list[Finding]:
        """The findings of one entry type (``"membership"``, ``"sample"``, ``"exposure"``, …)."""
        return [f for f in self.findings if f.entry_type == entry_type]

    def rows(self) -> list[dict[str, Any]]:
        """One flat dict per finding: the envelope (entry type, family, attack, target,
        severity, defense, seed), the headline metric with its CI, then the entry type's own
        scalar fields."""
        out = []
        for f in self.findings:
            m = f.metric
            row = {"entry_type": f.entry_type, "family": f.family, "attack": f.attack,
                   "target": f.target.name, "severity": f.severity, "defense": f.defense,
                   "metric": m.name if m else None, "value": m.value if m else None,
                   "ci_low": m.ci_low if m else None, "ci_high": m.ci_high if m else None,
                   "n": m.n if m else None, "seed": f.seed, "doc_uri": f.doc_uri}
            for k, v in f.data.items():
                if k not in row and (v is None or isinstance(v, (str, int, float, bool))):
                    row[k] = v
            out.append(row)
        return out

    def to_frame(self):
        """The findings as a pandas DataFrame (one row per finding, see :meth:`rows`)."""
        try:
            import pandas as pd
        except ImportError as e:
            raise ImportError("to_frame() needs pandas: pip install pandas") from e
        return pd.DataFrame(self.rows())

    def to_dicts(self) -> list[dict[str, Any]]:
        """The findings as written to ``report.jsonl``."""
        return [f.to_dict() for f in self.findings]


@dataclass
class CompareReport(AuditReport):
    """:func:`compare`'s result: the findings (one ``defense_comparison`` per model, then the
    memorization records), ``variants`` (each model's row: utility, memorization, membership,
    extraction, exposure, its training record), the ``baseline`` model's name and the
    comparison's ``warnings``."""

    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    baseline: str | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass
class DPAuditReport(AuditReport):
    """:func:`dp_audit`'s result: the ``dp_audit`` finding and the audit's
    :class:`~leakaudit.audits.dp_audit.DPAuditResult` (``result.epsilon_lb``,
    ``result.max_certifiable``, ``result.claimed_epsilon``, ``result.verdict()``)."""

    result: Any = None


def request_defaults(request_cls) -> dict[str, Any]:
    """The default of every field of an audit's request dataclass (what the API and the
    command share)."""
    out = {}
    for f in dataclasses.fields(request_cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            out[f.name] = f.default_factory()  # type: ignore[misc]
    return out


def _request(request_cls, given: dict[str, Any]):
    """The request dataclass from the API's keywords; ``threads`` (torch/OpenMP threads, see
    :func:`leakaudit.targets.threads.configure_threads`) is applied here and is not a field."""
    from leakaudit.targets.threads import configure_threads

    given = dict(given)
    configure_threads(given.pop("threads", None))
    names = {f.name for f in dataclasses.fields(request_cls)}
    unknown = sorted(set(given) - names)
    if unknown:
        import difflib

        hints = [f"{u!r} (did you mean {m[0]!r}?)" if (m := difflib.get_close_matches(u, names, 1))
                 else repr(u) for u in unknown]
        raise InputError(f"unknown option(s) {', '.join(hints)} for {request_cls.__name__}; "
                         f"known: {', '.join(sorted(names))}")
    paths = {f.name for f in dataclasses.fields(request_cls) if "Path" in str(f.type)}
    kw = {k: (Path(v) if k in paths and isinstance(v, str) else v) for k, v in given.items()}
    for k, v in kw.items():  # the commands take repeatable options as tuples
        if isinstance(v, list):
            kw[k] = tuple(v)
    return request_cls(**kw)


def _typed(records: Iterable, run: dict[str, Any]) -> list[Finding]:
    ctx = RunContext.from_run(run)
    out = []
    for item in records:
        typed = item if isinstance(item, (Finding, Record)) else to_record(*item, ctx)
        if isinstance(typed, Finding):
            out.append(typed)
    return out


def run_audit(module, request, out: str | Path, *, produces, inputs, formats, fail_on,
              progress, log, command: str = "leakaudit.api"):
    """``prepare`` + ``run`` of one audit module (a module of :mod:`leakaudit.audits` with a
    request dataclass) into ``out`` through :func:`leakaudit.audits.base.execute`; returns
    ``(AuditResult, Written)``. Every command and every function of this module runs its audit
    here."""
    from leakaudit.audits.base import execute

    return execute(Path(out), produces=produces, inputs=inputs,
                   prepare=lambda: module.prepare(request),
                   run=lambda t, env: module.run(t, request, env), formats=formats,
                   fail_on=fail_on, command=command, progress=progress,
                   log=log or (lambda m: None))


def _run(module, request, *, out, produces, inputs, formats, fail_on, progress, log):
    """:func:`run_audit` into ``out``, or into a temporary folder that is removed afterwards."""

    def go(folder: Path):
        return run_audit(module, request, folder, produces=produces, inputs=inputs,
                         formats=formats, fail_on=fail_on, progress=progress, log=log)

    if out is None:
        with tempfile.TemporaryDirectory(prefix="leakaudit-api-") as tmp:
            result, written = go(Path(tmp) / "out")
            files = {}
    else:
        result, written = go(Path(out))
        files = dict(written.files)
    return AuditReport(run=result.run_record, findings=_typed(result.records, result.run_record),
                       summary=result.summary, out=None if out is None else Path(out),
                       files=files, exit_code=written.exit_code)


def _common(out, formats, fail_on):
    """The output formats (default: ``jsonl`` and ``html`` into ``out``; ``jsonl`` only when
    nothing is kept) and the ``fail_on`` expressions, both checked before any work."""
    from leakaudit.report.thresholds import parse_all
    from leakaudit.report.writer import parse_formats

    if isinstance(formats, str):
        formats = [formats]
    formats = parse_formats(",".join(formats)) if formats is not None else (
        ("jsonl",) if out is None else ("jsonl", "html"))
    fail_on = [fail_on] if isinstance(fail_on, str) else list(fail_on or [])
    parse_all(fail_on)
    return formats, fail_on or None


def extract(model: str, corpus: str | Path | None = None, *, out: str | Path | None = None,
            formats: Iterable[str] | None = None, fail_on: Iterable[str] | None = None,
            progress=None, log=None, **options) -> AuditReport:
    """Untargeted training-data extraction (Carlini et al. 2021): ``leakaudit extract``.
    ``options`` are the fields of :class:`leakaudit.audits.extraction.ExtractionRequest`
    (``n_samples``, ``references``, ``samplers``, ``new_tokens``, ``seed``, …)."""
    from leakaudit.audits import extraction
    from leakaudit.runs.staged import EXTRACT_OUTPUTS

    req = _request(extraction.ExtractionRequest,
                   {"model": model, "corpus": corpus, "out": Path(out) if out else None, **options})
    fmts, thr = _common(out, formats, fail_on)
    return _run(extraction, req, out=out, produces=EXTRACT_OUTPUTS, formats=fmts, fail_on=thr,
                inputs=[req.corpus, req.prompts, model, req.cache, *req.references],
                progress=_progress(progress), log=log)


def memorization(models: str | Iterable[str], corpus: str | Path, *,
                 out: str | Path | None = None, formats: Iterable[str] | None = None,
                 fail_on: Iterable[str] | None = None, progress=None, log=None,
                 **options) -> AuditReport:
    """Exact and approximate memorization (Carlini et al. 2022): ``leakaudit memorization``.
    ``options`` are the fields of :class:`leakaudit.audits.memorization.MemorizationRequest`."""
    from leakaudit.audits import memorization as audit
    from leakaudit.runs.staged import REPORT_OUTPUTS

    models = (models,) if isinstance(models, (str, Path)) else tuple(models)
    req = _request(audit.MemorizationRequest,
                   {"models": tuple(str(m) for m in models), "corpus": corpus,
                    "out": Path(out) if out else None, **options})
    fmts, thr = _common(out, formats, fail_on)
    return _run(audit, req, out=out, produces=REPORT_OUTPUTS, formats=fmts, fail_on=thr,
                inputs=[req.corpus, *req.models], progress=_progress(progress), log=log)


def exposure(model: str, manifest: str | Path, *, out: str | Path | None = None,
             formats: Iterable[str] | None = None, fail_on: Iterable[str] | None = None,
             progress=None, log=None, **options) -> AuditReport:
    """Canary exposure (Carlini et al. 2019): ``leakaudit canaries exposure``. ``options`` are
    the fields of :class:`leakaudit.audits.exposure.ExposureRequest`."""
    from leakaudit.audits import exposure as audit
    from leakaudit.runs.staged import REPORT_OUTPUTS

    req = _request(audit.ExposureRequest, {"model": model, "manifest": manifest, **options})
    fmts, thr = _common(out, formats, fail_on)
    return _run(audit, req, out=out, produces=REPORT_OUTPUTS, formats=fmts, fail_on=thr,
                inputs=[req.manifest, model], progress=_progress(progress), log=log)


def membership(model: str, members: str | Path, nonmembers: str | Path, *,
               out: str | Path | None = None, formats: Iterable[str] | None = None,
               fail_on: Iterable[str] | None = None, progress=None, log=None,
               **options) -> AuditReport:
    """Membership inference on an LLM (LOSS, zlib, Min-K%, Min-K%++, reference models) with TPR at
    low FPR and the model-free baseline: ``leakaudit membership llm``. ``options`` are the
    fields of :class:`leakaudit.audits.membership.MembershipRequest` (``references``, ``k``,
    ``text_field``, ``seed``, …)."""
    from leakaudit.audits import membership as audit

    req = _request(audit.MembershipRequest,
                   {"model": model, "members": members, "nonmembers": nonmembers, **options})
    return _membership(audit, req, out, formats, fail_on, progress, log,
                       inputs=[req.members, req.nonmembers, model, *req.references])


def membership_classifier(classifier: str | Path, data: str | Path, *,
                          out: str | Path | None = None, formats: Iterable[str] | None = None,
                          fail_on: Iterable[str] | None = None, progress=None, log=None,
                          **options) -> AuditReport:
    """Membership inference on a classifier (LOSS, Shokri et al. shadows, LiRA, RMIA):
    ``leakaudit membership classifier``."""
    from leakaudit.audits import membership as audit

    req = _request(audit.MembershipRequest,
                   {"classifier": classifier, "data": data, **options})
    return _membership(audit, req, out, formats, fail_on, progress, log,
                       inputs=[req.classifier, req.data])


def membership_scores(scores: str | Path, *, out: str | Path | None = None,
                      formats: Iterable[str] | None = None, fail_on: Iterable[str] | None = None,
                      progress=None, log=None, **options) -> AuditReport:
    """Membership metrics from precomputed scores (``.npz``/JSONL): ``leakaudit membership
    scores``."""
    from leakaudit.audits import membership as audit

    req = _request(audit.MembershipRequest, {"scores": scores, **options})
    return _membership(audit, req, out, formats, fail_on, progress, log, inputs=[req.scores])


def _membership(audit, req, out, formats, fail_on, progress, log, *, inputs) -> AuditReport:
    from leakaudit.runs.staged import REPORT_OUTPUTS

    fmts, thr = _common(out, formats, fail_on)
    return _run(audit, req, out=out, produces=REPORT_OUTPUTS, formats=fmts, fail_on=thr,
                inputs=inputs, progress=_progress(progress), log=log)


def invert(model: str | Path | None = None, *, endpoint: str | None = None,
           out: str | Path | None = None,
           formats: Iterable[str] | None = None, fail_on: Iterable[str] | None = None,
           progress=None, log=None, **options) -> AuditReport:
    """Model inversion of a classifier (Fredrikson et al. 2015, MI-Face white-box or NES
    black-box): ``leakaudit invert``. ``options`` are the fields of
    :class:`leakaudit.audits.inversion.InversionRequest`. ``model`` is a classifier folder
    (white-box), ``endpoint`` an HTTP classifier (black-box)."""
    from leakaudit.audits import inversion as audit
    from leakaudit.runs.staged import REPORT_OUTPUTS

    req = _request(audit.InversionRequest, {"model": model, "endpoint": endpoint, **options})
    fmts, thr = _common(out, formats, fail_on)
    return _run(audit, req, out=out, produces=REPORT_OUTPUTS, formats=fmts, fail_on=thr,
                inputs=[v for k, v in dataclasses.asdict(req).items() if isinstance(v, Path)],
                progress=_progress(progress), log=log)


# ---------------------------------------------------------------------------- compare

def training_record(spec: str) -> dict | None:
    """How a compared model was trained, when leakaudit trained it: ``leakaudit_training.json``
    (lab and defense trainers) or ``finetune.json`` (``leakaudit finetune``); its ``dp`` entry
    carries ε with δ and the privacy unit."""
    import json

    spec = str(spec)
    folder = Path(spec.split(":", 1)[1] if spec.startswith(("hf:", "peft:")) else spec)
    for name in ("leakaudit_training.json", "finetune.json"):
        if (folder / name).is_file():
            return json.loads((folder / name).read_text())
    return None


def _named_specs(models) -> list[tuple[str, str]]:
    """``{"name": spec}`` or ``["NAME=SPEC", …]`` (the command's ``--model``) → ``[(name, spec)]``."""
    if isinstance(models, (str, Path)):
        models = [models]
    if hasattr(models, "items"):
        specs = [(str(n), str(p)) for n, p in models.items()]
    else:
        specs = []
        for m in models:
            name, sep, path = str(m).partition("=")
            if not sep or not name or not path:
                raise InputError(f"--model takes NAME=DIR (or NAME=SPEC), got {str(m)!r}")
            specs.append((name, path))
    if not specs:
        raise InputError("compare needs at least one model")
    if any(not n or not p for n, p in specs):
        raise InputError("every model needs a name and a spec")
    if len({n for n, _ in specs}) != len(specs):
        raise InputError("--model names must be distinct")
    return specs


#: The files ``compare`` writes into ``out`` (and ``formats``' extra files).
COMPARE_OUTPUTS = ("report.jsonl", "summary.json", "report.html")


def compare(models, corpus: str | Path, heldout: str | Path, *, out: str | Path | None = None,
            reference: str | None = None, samples: int = 200, windows: int = 500,
            text_field: str = "text", seed: int = 0, device: str = "cpu",
            allow_download: bool = False, formats: Iterable[str] | None = None,
            fail_on: Iterable[str] | None = None, progress=None, log=None,
            command: str = "leakaudit.api") -> CompareReport:
    """One attack battery over several causal LMs (an undefended model and its defended
    variants) on the same training data, with utility: ``leakaudit compare``.

    ``models`` is ``{"name": spec}`` or the command's ``["NAME=SPEC", …]``; the first is the
    baseline. ``corpus`` is the training data every model is attacked on, ``heldout`` documents
    of the same kind never trained on (utility, membership non-members, extraction prompts).
    ``samples``: extraction generations per sampler; ``windows``: training windows measured for
    memorization; ``reference``: a model that saw neither split, for the ratio attacks. The
    defaults are the command's. Nothing is written unless ``out`` is given.
    """
    from dataclasses import replace

    from leakaudit.runs.staged import check_output_location
    from leakaudit.targets import check_spec

    specs = _named_specs(models)
    if samples < 1 or windows < 1:
        raise InputError(f"samples and windows must be at least 1; got {samples} and {windows}")
    fmts, thr = _common(out, formats, fail_on)
    from leakaudit.report.writer import format_files

    produces = (*COMPARE_OUTPUTS, *format_files(fmts))
    corpus, heldout = Path(corpus), Path(heldout)
    if out is not None:
        check_output_location(out, produces=produces, inputs=[corpus, heldout])
    for _, p in specs + ([("reference", reference)] if reference is not None else []):
        check_spec(p, allow_download=allow_download)  # a typo answers at once, no torch

    from leakaudit.audits.compare import BatteryConfig, comparison_warnings, run_battery
    from leakaudit.corpus.index import CorpusIndex
    from leakaudit.corpus.load import load_corpus
    from leakaudit.targets import load_target, require_capabilities
    from leakaudit.targets.checks import check_device
    from leakaudit.versions import versions

    log = log or (lambda m: None)
    check_device(device)
    train = load_corpus(corpus, text_field=text_field)
    held = load_corpus(heldout, text_field=text_field)
    loaded = {n: load_target(p, name=n, device=device, allow_download=allow_download)
              for n, p in specs}
    ref = (load_target(reference, name="reference", device=device, allow_download=allow_download)
           if reference is not None else None)
    for (n, p), m in zip(specs + [("reference", reference)], [*loaded.values(), ref]):
        if m is not None:  # the battery scores, samples and checks greedy choices
            require_capabilities(m, "prompt_logprobs", "argmax", "generation", who="compare", spec=p)
    base = BatteryConfig(seed=seed)
    cfg = replace(base, memorization=replace(base.memorization, n_sequences=windows, seed=seed),
                  extraction=replace(base.extraction, n_samples=samples, seed=seed))
    index = CorpusIndex.build([d.text for d in train], [d.id for d in train])

    def battery(cache_dir: Path):
        rows, mem = run_battery(loaded, reference=ref, train_texts=[d.text for d in train],
                                train_ids=[d.id for d in train], heldout_texts=[d.text for d in held],
                                index=index, config=cfg, cache_dir=cache_dir,
                                progress=_progress(progress), log=log)
        recs = []
        for n, m in loaded.items():
            net = getattr(m, "model", None)
            rows[n]["n_params"] = (sum(p.numel() for p in net.parameters())
                                   if net is not None else None)
            rows[n]["training"] = training_record(dict(specs)[n])
            recs.append(("defense_comparison", rows[n]))
        return rows, recs + mem

    def finish(rows):
        run = {**versions(), "command": command, "seed": seed,
               "models": {n: {"path": str(p), "fingerprint": loaded[n].fingerprint(),
                              "n_params": rows[n]["n_params"]} for n, p in specs},
               "corpus": {"path": str(corpus), "n_docs": len(train), "heldout": str(heldout)}}
        warnings = comparison_warnings(rows, baseline=specs[0][0])
        for w in warnings:
            log(f"warning: {w}")
        summary = {"attack": "defense_comparison", "variants": list(loaded),
                   "baseline": specs[0][0], "warnings": warnings}
        return run, warnings, summary

    files, exit_code = {}, 0
    if out is None:
        with tempfile.TemporaryDirectory(prefix="leakaudit-api-") as tmp:
            rows, records = battery(Path(tmp) / "cache")
        run, warnings, summary = finish(rows)
    else:
        import shutil

        from leakaudit.report.writer import write_report
        from leakaudit.runs.staged import staged_output

        with staged_output(out, produces=produces, inputs=[corpus, heldout]) as stage:
            rows, records = battery(stage / "cache")
            run, warnings, summary = finish(rows)
            shutil.rmtree(stage / "cache", ignore_errors=True)
            written = write_report(stage, formats=fmts, run_record=run, records=records,
                                   summary=summary, fail_on=thr)
        files = {k: Path(out) / v.name for k, v in written.files.items()}
        exit_code = written.exit_code
    return CompareReport(run=run, findings=_typed(records, run), summary=summary,
                         out=None if out is None else Path(out), files=files, exit_code=exit_code,
                         variants=rows, baseline=specs[0][0], warnings=warnings)


# ---------------------------------------------------------------------------- dp_audit

def load_npz(path: str | Path):
    """A classifier data set for :func:`dp_audit`: an ``.npz`` of plain arrays ``x``, ``y`` (and
    ``pool_x``, ``pool_y`` for mislabelled canaries); no pickle."""
    import numpy as np

    from leakaudit.audits.dp_audit import ClassifierData

    path = Path(path)
    if not path.is_file():
        raise InputError("no such file", path=str(path))
    try:
        z = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise InputError(f"not a numpy .npz of plain arrays: {e}", path=str(path)) from None
    for k in ("x", "y"):
        if k not in z.files:
            raise InputError(f"missing array {k!r} (have {', '.join(z.files) or 'none'})", path=str(path))
    x, y = z["x"].astype(np.float32), z["y"].astype(np.int64)
    if len(x) != len(y) or len(x) == 0:
        raise InputError(f"x has {len(x)} rows but y has {len(y)}", path=str(path))
    if y.min() < 0:
        raise InputError("labels y must be 0..n_classes-1", path=str(path))
    pool = (z["pool_x"].astype(np.float32), z["pool_y"].astype(np.int64)) if "pool_x" in z.files else (None, None)
    return ClassifierData(x=x, y=y, n_classes=int(y.max()) + 1, pool_x=pool[0], pool_y=pool[1])


def load_texts(path: str | Path) -> list[str]:
    """An LM data set for :func:`dp_audit`: UTF-8 text, one document per (non-blank) line."""
    path = Path(path)
    if not path.is_file():
        raise InputError("no such file", path=str(path))
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise InputError(f"not UTF-8 text: {e.reason} at byte {e.start}", path=str(path)) from None
    texts = [t for t in lines if t.strip()]
    if not texts:
        raise InputError("no documents (one per line expected)", path=str(path))
    return texts


def _hook(train):
    """``"module:function"`` → the function; a callable is used as it is."""
    from leakaudit.audits.dp_audit import load_hook

    if callable(train):
        return train
    return load_hook(str(train))


def dp_audit(*, mode: str = "one-run", world: str = "classifier", train=None, data=None,
             lab_variant: str = "dp", epsilon: float = 1.0, canaries: int = 1000, models: int = 32,
             select_fraction: float = 0.5, confidence: float = 0.95, delta: float | None = None,
             canary_kind: str = "crafted", seed: int = 0, out: str | Path | None = None,
             formats: Iterable[str] | None = None, log=None,
             command: str = "leakaudit.api") -> DPAuditReport:
    """Does a DP claim hold? Canaries in the training data, the trained model attacked, ε bounded
    from below next to the claim and the most this audit could certify: ``leakaudit dp-audit``.

    ``train`` is the pipeline under audit: a callable or ``"module:function"`` (classifier:
    ``train(x, y, *, seed) -> model`` or ``(model, {"epsilon": …, "delta": …})``; lm:
    ``train(texts, *, seed) -> (model, tokenizer[, info])``), with ``data`` (classifier: an
    ``.npz`` path or a :class:`~leakaudit.audits.dp_audit.ClassifierData`; lm: a text file, one
    document per line, or a list of texts). Without ``train``, the lab's trainer
    ``lab_variant`` at ``epsilon`` on the lab's data. ``mode``: ``"one-run"`` (``canaries``
    canaries, one training) or ``"multi-run"`` (``models`` trainings per side). The defaults are
    the command's. Nothing is written unless ``out`` is given; with it, trained models are kept
    in its run store and reused when the same audit runs again.
    """
    from leakaudit.audits.dp_audit import (
        ClassifierData,
        DPAuditConfig,
        audit_dp_classifier,
        audit_dp_lm_one_run,
        trainer_id,
    )
    from leakaudit.report.writer import parse_formats
    from leakaudit.runs.staged import check_output_location

    log = log or (lambda m: None)
    data_path = Path(data) if isinstance(data, (str, Path)) else None
    fmts = parse_formats(",".join([formats] if isinstance(formats, str) else formats)) \
        if formats is not None else ("jsonl",)
    from leakaudit import registry

    produces = ("report.jsonl", *(registry.entry("formats", f).produces for f in fmts if f != "jsonl"))
    if world not in ("classifier", "lm"):
        raise InputError(f"--world must be classifier or lm; got {world!r}")
    if world == "lm" and mode != "one-run":
        raise InputError("--world lm supports --mode one-run only")
    if out is not None:
        check_output_location(out, produces=produces, inputs=[data_path])
    cfg = DPAuditConfig(mode=mode, n_canaries=canaries, n_models=models, confidence=confidence,
                        delta=delta, canary_kind=canary_kind, seed=seed, select_fraction=select_fraction)
    cfg.validate()
    if world == "lm":
        if train is not None:
            fn = _hook(train)
            if data is None:
                raise InputError("--train needs --data (a text file, one document per line)")
            texts = _lm_texts(data)
        else:
            from leakaudit.lab.dp_audit import lab_lm_trainer

            if lab_variant not in ("dp", "no_noise", "none"):
                raise InputError(f"--world lm --lab-variant must be dp, no_noise or none; got {lab_variant!r}")
            if lab_variant != "none" and epsilon <= 0:
                raise InputError("--epsilon must be > 0")
            fn, texts = lab_lm_trainer(lab_variant, None if lab_variant == "none" else epsilon,
                                       delta=delta if delta is not None else 1e-5, seed=seed)
            if data is not None:
                texts = _lm_texts(data)
    elif train is not None:
        fn = _hook(train)
        if data is None:
            raise InputError("--train needs --data (an .npz with x and y)")
        d = data if isinstance(data, ClassifierData) else load_npz(data)
    else:
        from leakaudit.lab.dp_audit import VARIANTS, DPAuditLabConfig, lab_data, lab_trainer

        if lab_variant not in VARIANTS:
            raise InputError(f"--lab-variant must be one of {', '.join(VARIANTS)}; got {lab_variant!r}")
        if lab_variant != "none" and epsilon <= 0:
            raise InputError("--epsilon must be > 0")
        lab_cfg = DPAuditLabConfig(delta=delta if delta is not None else 1e-5)
        fn = lab_trainer(lab_variant, None if lab_variant == "none" else epsilon, lab_cfg)
        d = (data if isinstance(data, ClassifierData) else load_npz(data)) if data is not None \
            else lab_data(lab_cfg.n_train, seed=seed)
    where = f"models kept in the run store of {out}" if out is not None else "models not kept"
    log(f"dp-audit: {mode}, {cfg.models_to_train()} model(s) to train, "
        f"{canaries if mode == 'one-run' else 1} canar{'ies' if mode == 'one-run' else 'y'}, "
        f"confidence {confidence:g}; {where}")
    store_dir = None
    if out is not None:
        from leakaudit.runs.store import RunStore

        store_dir = RunStore.for_output(out).root

    def progress(done, total):
        log(f"  model {done}/{total}")

    if world == "lm":
        res = audit_dp_lm_one_run(fn, texts, cfg, store_dir=store_dir)
    else:
        res = audit_dp_classifier(fn, d, cfg, store_dir=store_dir, progress=progress)
    if train is None:
        res.trainer = fn.label()
    from leakaudit.versions import versions

    run = {**versions(), "command": command, "seed": seed,
           "config": {**cfg.__dict__, "world": world, "trainer": trainer_id(fn)}}
    records = [("dp_audit", res.to_record())]
    files: dict[str, Path] = {}
    if out is not None:
        from leakaudit.report.writer import write_report
        from leakaudit.runs.staged import staged_output

        with staged_output(out, produces=produces, inputs=[data_path], log=log) as stage:
            # the findings schema (leakaudit.findings): the dp_audit entry type's adapter
            written = write_report(stage, run_record=run, records=records, summary=None, formats=fmts)
        files = {k: Path(out) / v.name for k, v in written.files.items()}
    return DPAuditReport(run=run, findings=_typed(records, run), summary={}, result=res,
                         out=None if out is None else Path(out), files=files)


#: The lab's white-box pipelines: honest DP-SGD and the broken ones the audit must catch.
WHITEBOX_VARIANTS = ("dp", "sigma_div10", "no_noise", "no_clip", "clip_after_noise", "shuffle",
                     "noise_once_per_epoch")


def dp_audit_white_box(*, train=None, data=None, clip: float | None = None, lab_variant: str = "dp",
                       epsilon: float = 2.0, canaries: int = 2000, confidence: float = 0.95,
                       seed: int = 0, out: str | Path | None = None,
                       formats: Iterable[str] | None = None,
                       command: str = "leakaudit.api") -> DPAuditReport:
    """White-box DP audit of a DP-SGD pipeline that exposes its steps (gradient canaries in one
    training run): ``leakaudit dp-audit white-box``. ``train`` (a callable or
    ``"module:function"``: ``train(x, y, *, seed, whitebox) -> (model, claim)``) needs ``data``
    (an ``.npz`` path or a ``ClassifierData``) and ``clip``, the pipeline's clipping bound;
    without ``train``, the lab pipeline ``lab_variant`` claiming ``epsilon``. ``result`` is the
    white-box result (``result.caught``, ``result.one_run``, ``result.step_gdp``,
    ``result.summary_lines()``). The defaults are the command's; nothing is written unless
    ``out`` is given.
    """
    from leakaudit.attacks.dp_audit.whitebox import hook_trainer, whitebox_audit
    from leakaudit.audits.dp_audit import ClassifierData, trainer_id
    from leakaudit.report.writer import parse_formats
    from leakaudit.runs.staged import check_output_location

    data_path = Path(data) if isinstance(data, (str, Path)) else None
    fmts = parse_formats(",".join([formats] if isinstance(formats, str) else formats)) \
        if formats is not None else ("jsonl",)
    from leakaudit import registry

    produces = ("report.jsonl", *(registry.entry("formats", f).produces for f in fmts if f != "jsonl"))
    if not 0.0 < confidence < 1.0:
        raise InputError(f"--confidence must be in (0, 1), got {confidence}")
    if canaries < 2:
        raise InputError(f"--canaries must be at least 2, got {canaries}")
    if out is not None:
        check_output_location(out, produces=produces, inputs=[data_path])
    if train is not None:
        if data is None or clip is None:
            raise InputError("--train needs --data (an .npz with x and y) and --clip C")
        fn = _hook(train)
        d = data if isinstance(data, ClassifierData) else load_npz(data)
        label = trainer_id(fn)
        res = whitebox_audit(hook_trainer(fn, d.x, d.y, seed=seed, max_grad_norm=clip),
                             m=canaries, seed=seed, beta=1.0 - confidence)
    else:
        if lab_variant not in WHITEBOX_VARIANTS:
            raise InputError(f"--lab-variant must be one of {', '.join(WHITEBOX_VARIANTS)}; "
                             f"got {lab_variant!r}")
        if epsilon <= 0:
            raise InputError("--epsilon must be > 0")
        from leakaudit.lab.dp_audit import run_whitebox_lab

        label = f"lab:{lab_variant}"
        res = run_whitebox_lab(lab_variant, epsilon, m=canaries, seed=seed, beta=1.0 - confidence)
    from leakaudit.versions import versions

    run = {**versions(), "command": command, "seed": seed,
           "config": {"mode": "white-box", "n_canaries": canaries, "confidence": confidence,
                      "trainer": label}}
    rec = {**res.to_dict(), "mode": "white-box", "model": label, "n_canaries": canaries,
           "canary_kind": "gradient", "confidence": confidence,
           "epsilon_lb": max(res.one_run["epsilon"], res.step_gdp["epsilon"]),
           "claimed_epsilon": res.claim["epsilon"]}
    records = [("dp_audit", rec)]
    files: dict[str, Path] = {}
    if out is not None:
        from leakaudit.report.writer import write_report
        from leakaudit.runs.staged import staged_output

        with staged_output(out, produces=produces, inputs=[data_path]) as stage:
            written = write_report(stage, run_record=run, records=records, summary=None, formats=fmts)
        files = {k: Path(out) / v.name for k, v in written.files.items()}
    return DPAuditReport(run=run, findings=_typed(records, run), summary={}, result=res,
                         out=None if out is None else Path(out), files=files)


def _lm_texts(data) -> list[str]:
    if isinstance(data, (list, tuple)):
        texts = [str(t) for t in data if str(t).strip()]
        if not texts:
            raise InputError("no documents in data (a list of texts expected)")
        return texts
    return load_texts(data)


def _progress(progress):
    """``None``/``False``: silent; ``True``: rich progress bars; else a progress object."""
    from leakaudit.progress import null_progress

    if progress is None or progress is False:
        return null_progress
    if progress is True:
        from leakaudit.progress import make_rich_progress

        return make_rich_progress()
    return progress
