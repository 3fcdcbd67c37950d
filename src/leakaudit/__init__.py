"""leakaudit: measure how much a trained model leaks its training data.

Layers (each imports only layers to its left):
targets -> signals -> attacks -> metrics -> report; corpus, training, defenses, lab beside them.
See DESIGN.md in the project's shared notes.
"""

__version__ = "0.1.0"
