"""A login to the H5 pages, kept server-side so that it can be ended.

The signed session cookie carries only this row's random id (and, for a
guest, their cart and orders): every H5 request looks the row up by primary
key, and a revoked, unknown or long-idle id logs the browser out. Logging
out revokes the row, so a copy of the cookie stops working too.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, UTCDateTime, utcnow


class H5Session(Base):
    __tablename__ = "h5_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # secrets.token_urlsafe(32)
    # The WeChat user logged in by OAuth; None for a guest buyer outside
    # WeChat, known only by this browser (their mobile number and orders).
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Refreshed at most once an hour; a session idle longer than the cookie's
    # lifetime is over, even if someone kept a copy of the cookie.
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    @property
    def is_guest(self) -> bool:
        return self.user_id is None

    def __repr__(self) -> str:
        return f"<H5Session user={self.user_id} revoked={self.revoked_at is not None}>"
