"""A training plan from the data: a cheap fingerprint of the training set -> choices, each with its reason."""

from .fingerprint import Fingerprint, fingerprint
from .plan import MEMORY_MB, Choice, Plan, make_plan
from .rules import default_patch

__all__ = ["Fingerprint", "fingerprint", "MEMORY_MB", "Choice", "Plan", "make_plan", "default_patch"]
