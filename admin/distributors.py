"""Distributors (PRODUCT.md flow 14): the list with their figures, one distributor's team, orders,
ledger, touches and withdrawals; freeze, unfreeze and moving to another referrer."""
from __future__ import annotations

from . import bp  # noqa: F401
