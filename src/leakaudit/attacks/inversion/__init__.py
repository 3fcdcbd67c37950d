"""Model inversion attacks on classifiers: class inversion (white-box MI-Face, black-box NES) and
tabular attribute inference. :data:`INVERSION_ATTACKS` finds them through the registry
(:mod:`leakaudit.registry`; rows in :mod:`leakaudit.registry.builtin`)."""

from leakaudit.attacks.inversion.base import INVERSION_ATTACKS, InversionResult, PlateauStop
from leakaudit.attacks.inversion.mi_face import MIFace
from leakaudit.attacks.inversion.nes import NESInversion

__all__ = ["INVERSION_ATTACKS", "InversionResult", "MIFace", "NESInversion", "PlateauStop"]
