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
from .reach import UnitVisit
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
    # The sums of the day's unit rows (daily_unit_stats), for the funnel's "all units" line.
    visits: Mapped[int] = mapped_column(default=0, server_default="0")
    visitors: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    bound: Mapped[int] = mapped_column(default=0, server_default="0")
    first_orders: Mapped[int] = mapped_column(default=0, server_default="0")
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
# A visitor's first visit of the day to a unit (today's part counts visitors that way, so
# its parts add up): "no earlier visit of theirs today" is one probe of this index.
Index("ix_stats_unit_visits_unit_id_visitor_at", UnitVisit.unit_id, UnitVisit.visitor, UnitVisit.at)
# The ranking of units (handlers.stats): the first rows of each stored day or month by paid
# sales, visits, bound customers or first orders, read in order from an index; then those few
# units' rows summed from the index alone (every figure in it: no visit to the table's pages).
_UNIT_FIGURES = ("paid_fen", "orders_paid", "refunded_fen", "visits", "visitors", "bound", "first_orders")
Index("ix_daily_unit_stats_day_paid_fen", DailyUnitStat.day, DailyUnitStat.paid_fen, DailyUnitStat.unit_id)
Index("ix_daily_unit_stats_day_visits", DailyUnitStat.day, DailyUnitStat.visits, DailyUnitStat.unit_id)
Index("ix_daily_unit_stats_day_bound", DailyUnitStat.day, DailyUnitStat.bound, DailyUnitStat.unit_id)
Index("ix_daily_unit_stats_day_first_orders", DailyUnitStat.day, DailyUnitStat.first_orders, DailyUnitStat.unit_id)
Index("ix_daily_unit_stats_unit_id_day_figures", DailyUnitStat.unit_id, DailyUnitStat.day,
      *[DailyUnitStat.__table__.c[n] for n in _UNIT_FIGURES])
Index("ix_monthly_unit_stats_month_paid_fen", MonthlyUnitStat.month, MonthlyUnitStat.paid_fen, MonthlyUnitStat.unit_id)
Index("ix_monthly_unit_stats_month_visits", MonthlyUnitStat.month, MonthlyUnitStat.visits, MonthlyUnitStat.unit_id)
Index("ix_monthly_unit_stats_month_bound", MonthlyUnitStat.month, MonthlyUnitStat.bound, MonthlyUnitStat.unit_id)
Index("ix_monthly_unit_stats_month_first_orders", MonthlyUnitStat.month, MonthlyUnitStat.first_orders,
      MonthlyUnitStat.unit_id)
Index("ix_monthly_unit_stats_unit_id_month_figures", MonthlyUnitStat.unit_id, MonthlyUnitStat.month,
      *[MonthlyUnitStat.__table__.c[n] for n in _UNIT_FIGURES])
