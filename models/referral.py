"""Every touch of a user by a distributor's QR code, link or invite code,
appended, whether it bound the user or not."""
from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, UTCDateTime, utcnow
from .states import check_in
from .user import Source


class TouchOutcome(str, enum.Enum):
    BOUND = "bound"              # this touch made the user the distributor's
    ALREADY_OWNED = "already"    # the user belonged to someone (maybe the same) already
    SELF = "self"                # a distributor touched their own code
    MERCHANT = "merchant"        # the merchant's own link: stays organic
    DISTRIBUTOR = "distributor"  # distributors are placed at approval, never rebound
    UNKNOWN = "unknown"          # scene, link or code that names no active unit


class ReferralTouch(Base):
    __tablename__ = "referral_touches"
    __table_args__ = (
        CheckConstraint(check_in("source", Source), name="source"),
        CheckConstraint(check_in("outcome", TouchOutcome), name="outcome"),
        Index("ix_referral_touches_user_id_at", "user_id", "at"),
        # A unit's touches in a period (the centre's customers this week) from the index alone (f7d000000023).
        Index("ix_referral_touches_unit_id_at", "unit_id", "at", postgresql_include=["outcome"]),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id"))
    source: Mapped[str] = mapped_column(String(16))
    token: Mapped[str] = mapped_column(String(64))  # the scene, slug or code as received
    outcome: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
