"""The audit log: who changed what, when, from where and why.

Rows are appended by the handler that makes the change, in the same
transaction, so a change cannot commit without its row. Nothing updates or
deletes them: no route does, and on PostgreSQL and SQLite a trigger refuses
an UPDATE (PostgreSQL refuses a DELETE too).
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, UTCDateTime, utcnow


class AuditEntry(Base):
    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_target", "target_type", "target_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"), index=True)
    actor: Mapped[str] = mapped_column(String(64))  # the staff name, "cli:<login>" or "system"
    action: Mapped[str] = mapped_column(String(64), index=True)  # "application.approve"
    target_type: Mapped[str] = mapped_column(String(32))
    target_id: Mapped[str] = mapped_column(String(64))
    before: Mapped[Any | None] = mapped_column(JSON)
    after: Mapped[Any | None] = mapped_column(JSON)
    reason: Mapped[str] = mapped_column(Text, default="")
    ip: Mapped[str] = mapped_column(String(64), default="")

    def __repr__(self) -> str:
        return f"<AuditEntry {self.actor} {self.action} {self.target_type}:{self.target_id}>"
