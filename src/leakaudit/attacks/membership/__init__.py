"""Membership inference attacks for LLMs and classifiers, found by name through
:data:`leakaudit.attacks.membership.base.MEMBERSHIP_ATTACKS` (a view of :mod:`leakaudit.registry`)."""

from leakaudit.attacks.membership.base import MEMBERSHIP_ATTACKS, MembershipAttack

__all__ = ["MEMBERSHIP_ATTACKS", "MembershipAttack"]
