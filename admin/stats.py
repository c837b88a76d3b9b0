"""Statistics (PRODUCT.md flow 14): sales, orders, people, commission, top units, refund rate
and each unit's funnel over a chosen date range, drawn with ECharts.

What each figure counts is said once, in handlers.stats. The page is read
from the pre-aggregated days; a stale day (usually yesterday, once after
midnight) is counted again first and kept, so this GET may write."""
from __future__ import annotations

from datetime import timedelta

from flask import render_template, request

from handlers import outbox
from handlers import stats as figures
from handlers.errors import DomainError

from . import bp
from .auth import requires

QUICK_RANGES = ((7, "近 7 天"), (30, "近 30 天"), (90, "近 90 天"), (365, "近一年"))


@bp.get("/stats")
@requires("stats.view")
def stats():
    today = figures.today()
    asked = {k: request.args.get(k, "").strip()[:32] for k in ("from", "to")}
    quick = [(label, (today - timedelta(days=n - 1)).isoformat(), today.isoformat()) for n, label in QUICK_RANGES]
    try:
        first, last = figures.parse_range(asked)
    except DomainError as exc:
        return render_template("admin/stats.html", error=exc.message, asked=asked, quick=quick, today=today,
                               max_days=figures.MAX_DAYS), exc.status
    found = figures.report(first, last)
    outbox.commit()  # the days counted again, if any
    return render_template("admin/stats.html", r=found, series=found.series(), asked=asked, quick=quick,
                           today=today, max_days=figures.MAX_DAYS, error=None)
