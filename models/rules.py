"""The merchant's rules as versions: each saved value of a rule (a key of
``[distribution]`` or ``[orders]``) is a row, in effect from its time until
a later version of the same key takes over. ``rule_revision`` is one row
whose number grows with every save or cancellation: savers lock it (so two
saves are checked one after the other), and every process reads it to know
whether what it cached is still current."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, UTCDateTime, utcnow


class RuleVersion(Base):
    __tablename__ = "rule_versions"
    __table_args__ = (
        UniqueConstraint("revision", "key", name="uq_rule_versions_revision_key"),
        CheckConstraint("(cancelled_at IS NULL) = (cancelled_by IS NULL)", name="cancelled_by_someone"),
        Index("ix_rule_versions_key_effective", "key", "effective_from"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    revision: Mapped[int]  # the save that wrote it; the keys saved together share it
    key: Mapped[str] = mapped_column(String(64))
    value: Mapped[Any] = mapped_column(JSON)  # an int, or the review mode's name
    effective_from: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(64))
    created_by_id: Mapped[int | None]  # the staff member; None for the CLI
    reason: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # A version still in the future may be withdrawn; it then never takes effect.
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    cancelled_by: Mapped[str | None] = mapped_column(String(64))


class RuleRevision(Base):
    __tablename__ = "rule_revision"
    __table_args__ = (CheckConstraint("id = 1", name="one_row"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    revision: Mapped[int] = mapped_column(default=0)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime())
