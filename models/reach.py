"""Every open of a unit's or a product's shared link: the reach a
distributor's sharing earns (visits), whoever opened it, signed in or not."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, UTCDateTime, utcnow


class UnitVisit(Base):
    __tablename__ = "unit_visits"
    __table_args__ = (
        Index("ix_unit_visits_unit_id_at", "unit_id", "at"),
        Index("ix_unit_visits_at", "at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id"))
    product_id: Mapped[int | None] = mapped_column(ForeignKey("products.id"))  # a product page, else the shop
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))  # None: a guest outside WeChat
    visitor: Mapped[str] = mapped_column(String(64))  # the user, or a guest's session key: counts people, not opens
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
