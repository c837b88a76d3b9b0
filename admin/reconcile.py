"""Reconciliation: each day's WeChat Pay and Alipay bills against the payments, refunds and
transfers recorded here; every difference listed and resolved with a note."""
from __future__ import annotations

from . import bp  # noqa: F401
