"""Exports: a list's rows written to a CSV file by a background job, kept
for a few days on the download page of the staff member who asked
(handlers.exports)."""
from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, UTCDateTime, utcnow
from .states import check_in


class ExportState(str, enum.Enum):
    QUEUED = "queued"    # waiting for the background job
    DONE = "done"        # the file is ready to download
    FAILED = "failed"    # the job could not write it; ``message`` says why
    EXPIRED = "expired"  # the file was removed after its days


class Export(Base):
    """One large export. ``request_key`` comes from the list page's form: a
    double click sends it twice and finds this row again."""

    __tablename__ = "exports"
    __table_args__ = (
        CheckConstraint(check_in("state", ExportState), name="state"),
        Index("ix_exports_staff", "staff_id", "id"),
        Index("ix_exports_expires", "state", "expires_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    request_key: Mapped[str] = mapped_column(String(64), unique=True)
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff.id"))
    source: Mapped[str] = mapped_column(String(32))        # the list's name in handlers.exports.SOURCES
    filters: Mapped[Any] = mapped_column(JSON, default=dict)
    state: Mapped[str] = mapped_column(String(16), default=ExportState.QUEUED.value)
    rows: Mapped[int] = mapped_column(Integer, default=0)
    size: Mapped[int] = mapped_column(Integer, default=0)  # bytes
    file_name: Mapped[str] = mapped_column(String(128), default="")  # the name the download is given
    stored: Mapped[str] = mapped_column(String(64), default="")      # the file under [admin] exports_dir
    message: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
