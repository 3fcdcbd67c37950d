"""The Python API: every audit of the CLI as a function, for notebooks and scripts.

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

__all__ = ["AuditReport", "extract", "memorization", "exposure", "membership",
           "membership_classifier", "membership_scores", "invert", "request_defaults", "run_audit"]


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
                   "n": m.n if m else None, "seed": f.seed}
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


def _progress(progress):
    """``None``/``False``: silent; ``True``: rich progress bars; else a progress object."""
    from leakaudit.progress import null_progress

    if progress is None or progress is False:
        return null_progress
    if progress is True:
        from leakaudit.progress import make_rich_progress

        return make_rich_progress()
    return progress
