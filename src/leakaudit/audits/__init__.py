"""Audits: orchestration, one module per audit (extraction, memorization, exposure, membership,
inversion, DP audit). Each takes targets (or a training entry point) and a config, runs the
attacks, and returns a typed result whose records go to the one report writer
(:func:`leakaudit.report.writer.write_report`).

The command-line audits expose ``prepare(request)``, which checks the user's inputs and loads the
targets (bad input raises :class:`~leakaudit.errors.InputError` before any expensive work and
before anything is written), and ``run(targets, request, env)``, which returns an
:class:`~leakaudit.audits.base.AuditResult` (run record, report records, summary). ``cli.py``
parses arguments into a request and calls :func:`leakaudit.audits.base.execute`; the lab composes
the same audit functions.
"""
