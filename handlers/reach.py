"""Reach: what a distributor's sharing brings (issue 11).

Every open of a unit's or product's shared link is a ``UnitVisit``. The
distributor centre shows, for today and the last 7 days (China days):
visits and distinct visitors, new customers (users bound to the unit in the
period), and orders and sales: orders of the unit paid in the period, net of
refunds (an order refunded in full is left out, a partial refund comes off
the sales). Three small queries on indexed columns, each counting both
periods at once: the centre is a hot page.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, func, select

from models import Order, OrderStatus, ReferralTouch, TouchOutcome, Unit, UnitVisit, User, db

from .clock import CHINA, now

WEEK_DAYS = 7


def log_visit(unit: Unit, visitor: str, user: User | None = None, product_id: int | None = None,
              at: datetime | None = None) -> UnitVisit | None:
    """One open of a shared link. A distributor opening their own link is
    not reach, and is not logged."""
    if user is not None and unit.distributor is not None and unit.distributor.user_id == user.id:
        return None
    visit = UnitVisit(unit_id=unit.id, product_id=product_id, user_id=user.id if user else None,
                      visitor=visitor[:64], at=at or now())
    db.session.add(visit)
    db.session.flush()
    return visit


@dataclass(frozen=True)
class Figures:
    visits: int = 0
    visitors: int = 0
    new_customers: int = 0
    orders: int = 0
    sales_fen: int = 0


@dataclass(frozen=True)
class Reach:
    today: Figures
    week: Figures


def day_starts(at: datetime | None = None) -> tuple[datetime, datetime]:
    """Midnight today and six days before, China time (as UTC-aware datetimes)."""
    local = (at or now()).astimezone(CHINA)
    today = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return today, today - timedelta(days=WEEK_DAYS - 1)


def reach_of(unit_id: int, at: datetime | None = None) -> Reach:
    today, week = day_starts(at)

    def both(column, value=1, distinct=False):
        in_today = case((column >= today, value))
        in_week = case((column >= week, value))
        if distinct:
            return func.count(func.distinct(in_today)), func.count(func.distinct(in_week))
        return func.coalesce(func.sum(in_today), 0), func.coalesce(func.sum(in_week), 0)

    visits = db.session.execute(
        select(*both(UnitVisit.at), *both(UnitVisit.at, UnitVisit.visitor, distinct=True))
        .where(UnitVisit.unit_id == unit_id, UnitVisit.at >= week)).one()
    customers = db.session.execute(
        select(*both(ReferralTouch.at))
        .where(ReferralTouch.unit_id == unit_id, ReferralTouch.outcome == TouchOutcome.BOUND.value,
               ReferralTouch.at >= week)).one()
    sales = db.session.execute(
        select(*both(Order.paid_at), *both(Order.paid_at, Order.total_fen - Order.refunded_fen))
        .where(Order.unit_id == unit_id, Order.paid_at >= week,
               Order.status != OrderStatus.REFUNDED.value)).one()
    return Reach(
        today=Figures(int(visits[0]), int(visits[2]), int(customers[0]), int(sales[0]), int(sales[2])),
        week=Figures(int(visits[1]), int(visits[3]), int(customers[1]), int(sales[1]), int(sales[3])),
    )
