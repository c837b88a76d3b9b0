"""Statistics (PRODUCT.md flow 14): sales, orders, people, commission, top units, refund rate
and each unit's funnel over a chosen date range, drawn with ECharts."""
from __future__ import annotations

from . import bp  # noqa: F401
