"""Reconciliation: each China day's run per gateway, and every difference
between the gateway's bill and what we recorded (handlers.reconcile)."""
from __future__ import annotations

import enum
from datetime import date, datetime

from sqlalchemy import BigInteger, CheckConstraint, Date, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, UTCDateTime, utcnow
from .states import check_in


class DayState(str, enum.Enum):
    CLEAN = "clean"              # the bill and our records agree
    DIFFERENCES = "differences"  # at least one difference was found
    FAILED = "failed"            # the bill could not be had; ``message`` says why


class DiffKind(str, enum.Enum):
    TRADE = "trade"
    REFUND = "refund"
    TRANSFER = "transfer"


class DiffProblem(str, enum.Enum):
    GATEWAY_ONLY = "gateway_only"  # in the bill, not here
    LOCAL_ONLY = "local_only"      # here, not in the bill
    AMOUNT = "amount"              # both, different amounts
    STATE = "state"                # both, different states


class ReconcileDay(Base):
    """The last run of one gateway's bill for one China day; rerunning the
    day updates this row (locked, so two runs at once take turns)."""

    __tablename__ = "reconcile_days"
    __table_args__ = (
        UniqueConstraint("day", "channel", name="uq_reconcile_days_day_channel"),
        CheckConstraint(check_in("state", DayState), name="state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    day: Mapped[date] = mapped_column(Date)
    channel: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), default=DayState.CLEAN.value)
    message: Mapped[str] = mapped_column(String(500), default="")  # the gateway's words when it failed
    differences: Mapped[int] = mapped_column(Integer, default=0)   # found by the last run
    gateway_rows: Mapped[int] = mapped_column(Integer, default=0)
    local_rows: Mapped[int] = mapped_column(Integer, default=0)
    runs: Mapped[int] = mapped_column(Integer, default=0)
    run_by: Mapped[str] = mapped_column(String(64), default="")
    ran_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ReconcileDifference(Base):
    """One difference. A rerun finds the same one again (the unique key) and
    leaves it as it was; an unresolved one no longer found goes away; a
    resolved one stays resolved with its note."""

    __tablename__ = "reconcile_differences"
    __table_args__ = (
        UniqueConstraint("day", "channel", "kind", "ref", "problem", name="uq_reconcile_differences_key"),
        CheckConstraint(check_in("kind", DiffKind), name="kind"),
        CheckConstraint(check_in("problem", DiffProblem), name="problem"),
        Index("ix_reconcile_differences_day", "day", "channel"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    day: Mapped[date] = mapped_column(Date)
    channel: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16))
    ref: Mapped[str] = mapped_column(String(64))  # out_trade_no, out_refund_no or out_bill_no
    problem: Mapped[str] = mapped_column(String(16))
    gateway_fen: Mapped[int | None] = mapped_column(BigInteger)
    local_fen: Mapped[int | None] = mapped_column(BigInteger)
    gateway_state: Mapped[str] = mapped_column(String(32), default="")
    local_state: Mapped[str] = mapped_column(String(32), default="")
    gateway_id: Mapped[str] = mapped_column(String(64), default="")  # the gateway's transaction or refund id
    found_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    resolved_by: Mapped[str | None] = mapped_column(String(64))
    resolved_staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    note: Mapped[str | None] = mapped_column(String(500))
