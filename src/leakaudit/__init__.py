"""leakaudit: measure how much a trained model leaks its training data.

Layers, lowest first (each imports only layers before it; tests/test_imports.py checks it):
errors/taxonomy/registry/versions/progress -> metrics -> runs/findings -> targets ->
signals, corpus, training -> attacks, defenses -> exec -> report -> audits, triage -> lab -> api ->
commands -> cli. See DESIGN.md in the project's shared notes.
"""

__version__ = "0.1.0"
