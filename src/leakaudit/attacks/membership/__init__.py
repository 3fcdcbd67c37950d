"""Membership inference attacks for LLMs and classifiers; importing this registers all of them
in :data:`leakaudit.attacks.membership.base.MEMBERSHIP_ATTACKS`."""

from leakaudit.attacks.membership import classifier, label_only, llm  # noqa: F401  (registration)
from leakaudit.attacks.membership.base import MEMBERSHIP_ATTACKS, MembershipAttack

__all__ = ["MEMBERSHIP_ATTACKS", "MembershipAttack"]
