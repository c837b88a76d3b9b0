"""The statistics page's figures, pre-aggregated by China day.

Each row holds one China day's sums as ``handlers.stats.recompute`` read
them from the rows behind them; a past day is read from here, today is
always counted live. ``computed_at`` (the product's clock) says whether a
row can be trusted: one computed before its day had ended is stale.

The indexes at the bottom serve the per-day sums on other areas' tables
(the range of one day, or of the days being rebuilt): without them, each
figure of today would scan its whole table.
"""
from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Date, Index
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, Fen, UTCDateTime
from .distributor import Distributor
from .ledger import CommissionRow, Withdrawal
from .order import Order
from .payment import Refund
from .referral import ReferralTouch
from .user import User


class DailyStat(Base):
    """The whole shop on one China day."""

    __tablename__ = "daily_stats"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    paid_fen: Mapped[Fen] = mapped_column(default=0)        # orders paid that day (orders.paid_at)
    orders_paid: Mapped[int] = mapped_column(default=0)
    refunded_fen: Mapped[Fen] = mapped_column(default=0)    # refunds that succeeded that day, auto ones aside
    new_users: Mapped[int] = mapped_column(default=0)       # first contact that day (users.created_at)
    new_followers: Mapped[int] = mapped_column(default=0)   # …of them, reached us by following
    new_customers: Mapped[int] = mapped_column(default=0)   # bound to a distributor that day
    new_distributors: Mapped[int] = mapped_column(default=0)
    commission_accrued_fen: Mapped[Fen] = mapped_column(default=0)   # commission rows created
    commission_settled_fen: Mapped[Fen] = mapped_column(default=0)   # became withdrawable, clawbacks net
    withdrawals_paid_fen: Mapped[Fen] = mapped_column(default=0)     # withdrawals paid out
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DailyUnitStat(Base):
    """One unit on one China day; only units with something to count."""

    __tablename__ = "daily_unit_stats"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    unit_id: Mapped[int] = mapped_column(primary_key=True)  # no foreign key: a rebuild may run in any order
    paid_fen: Mapped[Fen] = mapped_column(default=0)
    orders_paid: Mapped[int] = mapped_column(default=0)
    refunded_fen: Mapped[Fen] = mapped_column(default=0)
    visits: Mapped[int] = mapped_column(default=0)          # opens of the unit's links
    visitors: Mapped[int] = mapped_column(BigInteger, default=0)  # distinct visitors that day
    bound: Mapped[int] = mapped_column(default=0)           # customers bound through the unit
    first_orders: Mapped[int] = mapped_column(default=0)    # a buyer's first paid order, placed at the unit


class MonthlyUnitStat(Base):
    """One unit's month: the sum of its ``daily_unit_stats`` rows, summed
    again whenever a day of the month is stored, so a year's ranking reads
    twelve rows per unit instead of 365."""

    __tablename__ = "monthly_unit_stats"

    month: Mapped[date] = mapped_column(Date, primary_key=True)  # its first day
    unit_id: Mapped[int] = mapped_column(primary_key=True)
    paid_fen: Mapped[Fen] = mapped_column(default=0)
    orders_paid: Mapped[int] = mapped_column(default=0)
    refunded_fen: Mapped[Fen] = mapped_column(default=0)
    visits: Mapped[int] = mapped_column(default=0)
    visitors: Mapped[int] = mapped_column(BigInteger, default=0)
    bound: Mapped[int] = mapped_column(default=0)
    first_orders: Mapped[int] = mapped_column(default=0)


# A buyer's first paid order (handlers.stats): "no paid order of theirs
# before this one" answered from the index alone.
Index("ix_stats_orders_buyer_id_paid_at_id", Order.buyer_id, Order.paid_at, Order.id)
Index("ix_stats_orders_guest_mobile_paid_at_id", Order.guest_mobile, Order.paid_at, Order.id)
Index("ix_stats_refunds_finished_at", Refund.finished_at)
Index("ix_stats_users_created_at", User.created_at)
Index("ix_stats_users_attributed_at", User.attributed_at)
Index("ix_stats_distributors_approved_at", Distributor.approved_at)
Index("ix_stats_commission_rows_created_at", CommissionRow.created_at)
Index("ix_stats_commission_rows_settled_at", CommissionRow.settled_at)
Index("ix_stats_withdrawals_decided_at", Withdrawal.decided_at)
Index("ix_stats_referral_touches_at", ReferralTouch.at)
