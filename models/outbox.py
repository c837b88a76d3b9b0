"""The transactional outbox: every side effect is a row written in the
transaction that decided it, delivered from there (``handlers.outbox``)."""
from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, CheckConstraint, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, UTCDateTime, utcnow
from .states import check_in


class OutboxState(str, enum.Enum):
    PENDING = "pending"  # waiting for its due time, queued, or between retries
    DONE = "done"        # ran (or refused for good, with last_error noted)
    FAILED = "failed"    # out of retries: stays until someone retries it


NOT_DONE = "state <> 'done'"


class OutboxRow(Base):
    __tablename__ = "outbox"
    __table_args__ = (
        CheckConstraint(check_in("state", OutboxState), name="state"),
        CheckConstraint("attempts >= 0", name="attempts"),
        # One live row per key (the old RQ job id): deciding the same effect
        # twice adds nothing while the first is not done.
        Index("uq_outbox_key_live", "key", unique=True,
              postgresql_where=text(NOT_DONE), sqlite_where=text(NOT_DONE)),
        # The relay's scan: pending rows by due time, done rows left out.
        Index("ix_outbox_pending_due", "due_at",
              postgresql_where=text("state = 'pending'"), sqlite_where=text("state = 'pending'")),
        Index("ix_outbox_state_id", "state", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    task: Mapped[str] = mapped_column(String(128))  # dotted path, e.g. wxbot.jobs.send_template
    args: Mapped[list[Any]] = mapped_column(JSON)
    key: Mapped[str | None] = mapped_column(String(160))
    due_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    state: Mapped[str] = mapped_column(String(16), default=OutboxState.PENDING.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    # Handed to RQ at; a pending row handed over longer than the lease ago
    # was lost (Redis emptied, worker killed) and is handed over again.
    enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
