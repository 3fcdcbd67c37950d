"""Deployment risk triage: profiles → ranked risks, first audits, the most impactful control,
regulatory flags; measured results replace assumptions (see ``model`` for the scoring)."""

from leakaudit.triage.model import Assessment, assess, compare
from leakaudit.triage.profile import Profile, load_example, load_profile

__all__ = ["Assessment", "Profile", "assess", "compare", "load_example", "load_profile"]
