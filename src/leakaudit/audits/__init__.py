"""Audits: one module per audit (extraction, memorization, exposure, membership, inversion).

Each exposes ``prepare(request)``, which checks the user's inputs and loads the targets (bad input
raises :class:`~leakaudit.errors.InputError` before any expensive work and before anything is
written), and ``run(targets, request, env)``, which runs the attacks and returns an
:class:`~leakaudit.audits.base.AuditResult` (run record, report records, summary) for the one
writer (:func:`leakaudit.report.writer.write_report`). ``cli.py`` parses arguments into a request
and calls :func:`leakaudit.audits.base.execute`; the lab composes the same audit functions.
"""
