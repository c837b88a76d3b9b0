"""The dashboard: what waits for the merchant's staff, and today's figures;
and the menu's badges (how many wait behind 分销申请, 提现, 订单)."""
from __future__ import annotations

import logging

from flask import current_app, g, render_template, request, url_for
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.routing import BuildError

from handlers import dashboard
from handlers import clock
from handlers.clock import CHINA

from . import bp
from .auth import can, is_htmx, requires

log = logging.getLogger(__name__)

# What a role may view decides what it is shown (handlers.staff.PERMISSIONS).
AREAS = {
    dashboard.APPLICATIONS: "applications.view",
    dashboard.WITHDRAWALS: "withdrawals.view",
    dashboard.ORDERS: "orders.view",
    dashboard.DISTRIBUTORS: "distributors.view",
}
BADGES = {dashboard.APPLICATIONS: "admin.applications", dashboard.WITHDRAWALS: "admin.withdrawals",
          dashboard.ORDERS: "admin.orders"}


def _areas() -> set[str]:
    return {area for area, permission in AREAS.items() if can(permission)}


def link(endpoint: str, permission: str, query: str = "") -> str | None:
    """The address of a list page, when it exists and the staff member may
    open it (pages are added area by area); else None: no link."""
    if endpoint not in current_app.view_functions or not can(permission):
        return None
    try:
        return url_for(endpoint) + query
    except BuildError:
        return None


@bp.get("/")
@requires("dashboard.view")
def index():
    overview = dashboard.overview(_areas())
    links = {
        "applications": link("admin.applications", "applications.view"),
        "withdrawals": link("admin.withdrawals", "withdrawals.view", "?status=requested"),
        "transfers": link("admin.withdrawals", "withdrawals.view", "?status=transferring"),
        "to_ship": link("admin.orders", "orders.view", "?status=paid"),
        "refunds": link("admin.orders", "orders.view", "?status=refunding"),
        "orders": link("admin.orders", "orders.view"),
        "distributors": link("admin.distributors", "distributors.view"),
    }
    ahead = clock.offset()  # the sandbox clock (try-out only): say so, or "today" would puzzle
    return render_template("admin/index.html", o=overview, links=links,
                           clock=(clock.real_now() + ahead).astimezone(CHINA),
                           ahead_days=ahead.total_seconds() / 86400)


@bp.app_context_processor
def badge_context() -> dict:
    """Counts next to menu entries. Skipped for htmx fragments (no menu)
    and when nobody is logged in; a database error shows no badges rather
    than breaking the page (the error page renders through here too)."""
    if not request.path.startswith("/admin") or g.get("staff") is None or is_htmx():
        return {}
    try:
        counts = dashboard.badges(_areas())
    except SQLAlchemyError as exc:
        log.warning("admin badges skipped: %s", type(exc).__name__)
        return {}
    return {"badges": {BADGES[area]: (f"{n}" if n <= dashboard.BADGE_CAP else f"{dashboard.BADGE_CAP}+")
                       for area, n in counts.items() if n}}
