"""The merchant's staff: accounts for the management platform and their logins.

A staff login is a row of its own, separate from the H5 sessions: the admin
cookie carries a random token whose SHA-256 is this row's id, so a database
read never gives a usable cookie. Logging out, disabling the account or
changing its password revokes the rows.
"""
from __future__ import annotations

from datetime import datetime
from enum import Enum

from sqlalchemy import CheckConstraint, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .base import Base, UTCDateTime, utcnow


class StaffRole(str, Enum):
    OWNER = "owner"          # everything, staff management
    OPERATOR = "operator"    # applications, distributors, products
    FINANCE = "finance"      # withdrawals, refunds, exports
    SHIPPING = "shipping"    # ships orders


class Staff(Base):
    __tablename__ = "staff"
    __table_args__ = (CheckConstraint("role IN ('owner', 'operator', 'finance', 'shipping')", name="role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(32), unique=True)  # the login name
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(255))
    totp_secret: Mapped[str | None] = mapped_column(String(64))
    # The last TOTP time step accepted: a code is good once (RFC 6238 §5.2).
    totp_last_step: Mapped[int | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    password_changed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    sessions: Mapped[list["StaffSession"]] = relationship(back_populates="staff")

    @property
    def is_active(self) -> bool:
        return self.disabled_at is None

    @property
    def has_2fa(self) -> bool:
        return bool(self.totp_secret)

    def __repr__(self) -> str:
        return f"<Staff {self.name} {self.role}>"


class StaffSession(Base):
    __tablename__ = "staff_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 hex of the cookie's token
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ip: Mapped[str] = mapped_column(String(64), default="")
    # False while an owner or finance account that must use 2FA has yet to set it up.
    fully_signed_in: Mapped[bool] = mapped_column(default=True)

    staff: Mapped[Staff] = relationship(back_populates="sessions")
