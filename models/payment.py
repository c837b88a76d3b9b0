"""Money that moved through a gateway, and every notification that claimed so."""
from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint, false, text
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, Fen, UTCDateTime, utcnow
from .order import PayChannel
from .states import check_in


class Payment(Base):
    """One successful payment. The unique gateway transaction id, inserted in
    the same transaction that marks the order paid, makes a retried or
    concurrent notification pay the order exactly once.

    An order keeps one payment; any other that reaches it (the other
    channel, another transaction) is a row too, marked ``duplicate`` and
    refunded by a refund row of its own — never kept silently. The partial
    unique index lets the database, not a race, decide which one is kept."""

    __tablename__ = "payments"
    __table_args__ = (
        UniqueConstraint("channel", "transaction_id", name="uq_payments_channel_transaction_id"),
        CheckConstraint(check_in("channel", PayChannel), name="channel"),
        CheckConstraint("amount_fen > 0", name="amount_positive"),
        Index("uq_payments_one_kept_per_order", "order_id", unique=True,
              postgresql_where=text("NOT duplicate"), sqlite_where=text("NOT duplicate")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    duplicate: Mapped[bool] = mapped_column(default=False, server_default=false())
    channel: Mapped[str] = mapped_column(String(16))
    transaction_id: Mapped[str] = mapped_column(String(64))
    amount_fen: Mapped[Fen]
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
    # The gateway could not pay the money back (REFUND.ABNORMAL: the buyer's
    # card closed…): still open, the merchant is told; a later SUCCESS or
    # CLOSED finishes it.
    ABNORMAL = "abnormal"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class RefundOrigin(str, enum.Enum):
    MERCHANT = "merchant"   # asked for by the merchant (``orders refund``)
    AUTO = "auto"           # a payment the order cannot keep: a second one, or one after cancellation
    GATEWAY = "gateway"     # made at the gateway (WeChat Pay's console, Alipay's), learnt from a notification


class Refund(Base):
    __tablename__ = "refunds"
    __table_args__ = (
        CheckConstraint(check_in("status", RefundStatus), name="status"),
        CheckConstraint(check_in("origin", RefundOrigin), name="origin"),
        CheckConstraint("amount_fen > 0", name="amount_positive"),
        # Whole refunds: one that is live (pending, abnormal or done) per
        # payment; a failed one may be asked for again. Partial refunds made
        # at the gateway are only recorded.
        Index("uq_refunds_one_live_per_payment", "payment_id", unique=True,
              postgresql_where=text("status <> 'failed' AND NOT partial"),
              sqlite_where=text("status <> 'failed' AND NOT partial")),
        # What was refunded of an order, from the index alone (the centre's reach, the distributors list).
        Index("ix_refunds_order_id_status_amount", "order_id", "status", "amount_fen"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    # The payment whose money goes back (NULL only for rows older than this column).
    payment_id: Mapped[int | None] = mapped_column(ForeignKey("payments.id"), index=True)
    origin: Mapped[str] = mapped_column(String(16), default=RefundOrigin.MERCHANT.value,
                                        server_default=RefundOrigin.MERCHANT.value)
    partial: Mapped[bool] = mapped_column(default=False, server_default=false())
    out_refund_no: Mapped[str] = mapped_column(String(64), unique=True)
    amount_fen: Mapped[Fen]
    reason: Mapped[str] = mapped_column(String(80))
    status: Mapped[str] = mapped_column(String(16), default=RefundStatus.PENDING.value)
    # The order state before refunding; NULL when the refund does not move
    # the order (a duplicate payment, a payment after cancellation, a partial one).
    return_to: Mapped[str | None] = mapped_column(String(16))
    gateway_refund_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
