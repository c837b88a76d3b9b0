"""The in-app notification centre (通知中心)."""
from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, UTCDateTime, utcnow
from .states import check_in


class NotificationKind(str, enum.Enum):
    NEW_MEMBER = "new_member"
    NEW_ORDER = "new_order"
    COMMISSION_SETTLED = "commission_settled"
    APPLICATION_APPROVED = "application_approved"
    APPLICATION_REJECTED = "application_rejected"
    WITHDRAWAL_PAID = "withdrawal_paid"
    WITHDRAWAL_REJECTED = "withdrawal_rejected"
    # The buyer's own orders (issue 10, item 7), and a refund taking commission back.
    ORDER_PAID = "order_paid"
    ORDER_SHIPPED = "order_shipped"
    ORDER_REFUNDED = "order_refunded"
    COMMISSION_CLAWED_BACK = "commission_clawed_back"
    # The merchant froze or unfroze the distributor (issue 12).
    DISTRIBUTOR_FROZEN = "distributor_frozen"
    DISTRIBUTOR_UNFROZEN = "distributor_unfrozen"


class Notification(Base):
    __tablename__ = "notifications"
    __table_args__ = (
        CheckConstraint(check_in("kind", NotificationKind), name="kind"),
        Index("ix_notifications_user_id_id", "user_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    kind: Mapped[str] = mapped_column(String(32))
    # What happened, once: a retried event finds its key taken and notifies nobody.
    event_key: Mapped[str] = mapped_column(String(96), unique=True)
    title: Mapped[str] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(String(500))
    url: Mapped[str | None] = mapped_column(String(512))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The WeChat template message went out at: set under the row's lock
    # before sending, so a job that runs twice sends once.
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
