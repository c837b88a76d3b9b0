"""What the dashboard shows: what waits for the merchant's staff, and
today's figures. Read-only: nothing here changes a row.

"Today" is the calendar day in China time (00:00-24:00 CST) of the
product's clock. Today's sales are defined once, here:

* **sales** (销售额): the totals of the orders paid today (``orders.paid_at``
  today), whatever happened to them since;
* **refunded** (退款): refunds that succeeded today (``refunds.finished_at``
  today), of any order, paid today or earlier, in full or in part — except
  the automatic refunds of a payment the order could not keep (a second
  payment, one after cancellation), whose money never counted as a sale;
* **net** (净销售额) = sales - refunded; it can be negative on a day of
  refunds and few sales.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Collection

from sqlalchemy import func, select

from models import (Application, ApplicationStatus, Distributor, Order, OrderStatus, Refund, RefundOrigin,
                    RefundStatus, Withdrawal, WithdrawalStatus, db)

from .clock import CHINA, now

# The areas a staff member may view decide what is counted (and shown).
APPLICATIONS, WITHDRAWALS, ORDERS, DISTRIBUTORS = "applications", "withdrawals", "orders", "distributors"
OPEN_REFUNDS = (RefundStatus.PENDING.value, RefundStatus.ABNORMAL.value)


@dataclass(frozen=True)
class Amount:
    count: int
    total_fen: int = 0


@dataclass(frozen=True)
class Today:
    day: str               # 2026-12-01, China time
    sales_fen: int | None = None
    refunded_fen: int | None = None
    orders_paid: int | None = None
    new_distributors: int | None = None

    @property
    def net_fen(self) -> int | None:
        return None if self.sales_fen is None else self.sales_fen - (self.refunded_fen or 0)


@dataclass(frozen=True)
class Overview:
    """``None`` for what the staff member may not view."""

    applications: int | None = None
    withdrawals: Amount | None = None      # requested, waiting for the merchant
    transfers: Amount | None = None        # WeChat transfers waiting for the distributor's confirmation
    to_ship: int | None = None             # paid, not shipped
    refunds: int | None = None             # pending or abnormal
    today: Today | None = None


def china_day(at: datetime) -> tuple[datetime, datetime]:
    """The China-time day holding ``at``, as [start, end) instants."""
    local = at.astimezone(CHINA)
    start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return start, start + timedelta(days=1)


def pending_applications() -> int:
    # The partial unique index on pending applications serves this count.
    return int(db.session.scalar(select(func.count(Application.id))
                                 .where(Application.status == ApplicationStatus.PENDING.value)) or 0)


def _withdrawals(status: WithdrawalStatus) -> Amount:
    count, total = db.session.execute(
        select(func.count(Withdrawal.id), func.coalesce(func.sum(Withdrawal.amount_fen), 0))
        .where(Withdrawal.status == status.value)).one()
    return Amount(int(count), int(total))  # SUM(BIGINT) is NUMERIC on PostgreSQL


def orders_to_ship() -> int:
    return int(db.session.scalar(select(func.count(Order.id)).where(Order.status == OrderStatus.PAID.value)) or 0)


def open_refunds() -> int:
    return int(db.session.scalar(select(func.count(Refund.id)).where(Refund.status.in_(OPEN_REFUNDS))) or 0)


def today(areas: Collection[str], at: datetime | None = None) -> Today:
    start, end = china_day(at or now())
    sales = refunded = paid = joined = None
    if ORDERS in areas:
        paid, sales = db.session.execute(
            select(func.count(Order.id), func.coalesce(func.sum(Order.total_fen), 0))
            .where(Order.paid_at >= start, Order.paid_at < end)).one()
        refunded = db.session.scalar(
            select(func.coalesce(func.sum(Refund.amount_fen), 0))
            .where(Refund.status == RefundStatus.SUCCEEDED.value, Refund.origin != RefundOrigin.AUTO.value,
                   Refund.finished_at >= start, Refund.finished_at < end))
        paid, sales, refunded = int(paid), int(sales), int(refunded)
    if DISTRIBUTORS in areas:
        joined = int(db.session.scalar(select(func.count(Distributor.id))
                                       .where(Distributor.approved_at >= start, Distributor.approved_at < end)) or 0)
    return Today(start.strftime("%Y-%m-%d"), sales, refunded, paid, joined)


def overview(areas: Collection[str], at: datetime | None = None) -> Overview:
    """Everything the dashboard shows, for a staff member who may view ``areas``."""
    return Overview(
        applications=pending_applications() if APPLICATIONS in areas else None,
        withdrawals=_withdrawals(WithdrawalStatus.REQUESTED) if WITHDRAWALS in areas else None,
        transfers=_withdrawals(WithdrawalStatus.TRANSFERRING) if WITHDRAWALS in areas else None,
        to_ship=orders_to_ship() if ORDERS in areas else None,
        refunds=open_refunds() if ORDERS in areas else None,
        today=today(areas, at) if (ORDERS in areas or DISTRIBUTORS in areas) else None,
    )


BADGE_CAP = 99  # a menu badge says "99+" beyond this: counting further would cost every page


def _capped(query) -> int:
    """COUNT of at most BADGE_CAP + 1 rows: the cost stays flat however much waits."""
    return int(db.session.scalar(select(func.count()).select_from(query.limit(BADGE_CAP + 1).subquery())) or 0)


def badges(areas: Collection[str]) -> dict[str, int]:
    """The menu's counts (capped at BADGE_CAP + 1): one small COUNT each, on
    an indexed status column."""
    counts = {}
    if APPLICATIONS in areas:
        counts[APPLICATIONS] = _capped(select(Application.id).where(
            Application.status == ApplicationStatus.PENDING.value))
    if WITHDRAWALS in areas:
        counts[WITHDRAWALS] = _capped(select(Withdrawal.id).where(
            Withdrawal.status == WithdrawalStatus.REQUESTED.value))
    if ORDERS in areas:
        counts[ORDERS] = _capped(select(Order.id).where(Order.status == OrderStatus.PAID.value))
    return counts
