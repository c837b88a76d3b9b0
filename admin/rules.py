"""The merchant's rules (commission rates, review, withdrawals, order timings) as versioned
settings edited on a page, each version effective from a time."""
from __future__ import annotations

from . import bp  # noqa: F401
