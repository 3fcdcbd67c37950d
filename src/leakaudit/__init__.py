"""leakaudit: measure how much a trained model leaks its training data.

The Python API (:mod:`leakaudit.api`) is available from the package itself, imported on first
use so that ``import leakaudit`` stays cheap::

    import leakaudit as la
    r = la.membership("models/target", members="members.jsonl", nonmembers="heldout.jsonl")
    r.to_frame()

Layers, lowest first (each imports only layers before it; tests/test_imports.py checks it):
errors/taxonomy/registry/versions/progress -> metrics -> runs/findings -> targets ->
signals, corpus, training -> attacks, defenses -> exec -> report -> audits, triage -> lab -> api ->
commands -> cli. See DESIGN.md in the project's shared notes.
"""

import os as _os

__version__ = "0.1.0"

# OpenMP threads that wait for work by spinning (libgomp's default) thrash beside any other
# CPU-bound process: with one other busy process on a 2-core machine, training the test suite's
# small LMs took 208 s at 2 threads and 5.6 s at 1. Waiting passively they took 5.7 s at 2
# threads. libgomp reads this when torch is first imported, so it is set here, before any
# leakaudit module imports torch; a value the user set is kept.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

_API = ("AuditReport", "CompareReport", "DPAuditReport", "extract", "memorization", "exposure",
        "membership", "membership_classifier", "membership_scores", "invert", "compare", "dp_audit",
        "dp_audit_white_box", "request_defaults")


def __getattr__(name):
    if name in _API:
        from leakaudit import api

        return getattr(api, name)
    raise AttributeError(f"module 'leakaudit' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_API])
