"""The account's custom menu as staff edited it: every save is a version
(who, when); a version WeChat accepted is marked pushed with the next push
number, and the highest push number is the menu WeChat shows."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, String
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, UTCDateTime, utcnow


class MenuVersion(Base):
    __tablename__ = "menu_versions"
    __table_args__ = (
        CheckConstraint("push_no IS NULL OR (push_no > 0 AND pushed_at IS NOT NULL AND pushed_by IS NOT NULL)",
                        name="pushed_when_numbered"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)  # menu/create's body: {"button": [...]}
    saved_by: Mapped[str] = mapped_column(String(64))
    saved_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    pushed_by: Mapped[str | None] = mapped_column(String(64))
    pushed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # 1, 2, 3… in the order WeChat accepted them; a version pushed again takes a new number.
    push_no: Mapped[int | None] = mapped_column(unique=True)

    @property
    def is_pushed(self) -> bool:
        return self.push_no is not None
