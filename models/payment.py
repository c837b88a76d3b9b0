"""Money that moved through a gateway, and every notification that claimed so."""
from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, UTCDateTime, utcnow
from .order import PayChannel
from .states import check_in


class Payment(Base):
    """One successful payment. The unique gateway transaction id, inserted in
    the same transaction that marks the order paid, makes a retried or
    concurrent notification pay the order exactly once."""

    __tablename__ = "payments"
    __table_args__ = (
        UniqueConstraint("channel", "transaction_id", name="uq_payments_channel_transaction_id"),
        CheckConstraint(check_in("channel", PayChannel), name="channel"),
        CheckConstraint("amount_fen > 0", name="amount_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), unique=True)
    channel: Mapped[str] = mapped_column(String(16))
    transaction_id: Mapped[str] = mapped_column(String(64))
    amount_fen: Mapped[int]
    payer: Mapped[str | None] = mapped_column(String(64))
    raw: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    paid_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class NoticeVerdict(str, enum.Enum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"


class PaymentNotice(Base):
    """Every notification or query answer, kept as received, with what we made of it."""

    __tablename__ = "payment_notices"
    __table_args__ = (CheckConstraint(check_in("verdict", NoticeVerdict), name="verdict"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16))  # pay | refund | query
    out_trade_no: Mapped[str | None] = mapped_column(String(64), index=True)
    verdict: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(200), default="")
    body: Mapped[str] = mapped_column(Text, default="")
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class RefundStatus(str, enum.Enum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Refund(Base):
    __tablename__ = "refunds"
    __table_args__ = (
        CheckConstraint(check_in("status", RefundStatus), name="status"),
        CheckConstraint("amount_fen > 0", name="amount_positive"),
        # Whole-order refunds: one that is pending or done per order; a failed
        # one may be asked for again.
        Index("uq_refunds_one_live_per_order", "order_id", unique=True,
              postgresql_where=text("status <> 'failed'"), sqlite_where=text("status <> 'failed'")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    out_refund_no: Mapped[str] = mapped_column(String(64), unique=True)
    amount_fen: Mapped[int]
    reason: Mapped[str] = mapped_column(String(80))
    status: Mapped[str] = mapped_column(String(16), default=RefundStatus.PENDING.value)
    return_to: Mapped[str] = mapped_column(String(16))  # the order state before refunding
    gateway_refund_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
