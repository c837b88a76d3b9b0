"""State of the built-in sandbox WeChat platform (try-out and tests only).

These tables play WeChat's side: the people of the phone simulator, the QR
codes it has issued, the media it holds and every message the product sent.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, CheckConstraint, Index, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, UTCDateTime, utcnow


class SandboxUser(Base):
    __tablename__ = "sandbox_users"

    id: Mapped[int] = mapped_column(primary_key=True)
    openid: Mapped[str] = mapped_column(String(64), unique=True)
    nickname: Mapped[str] = mapped_column(String(64))
    subscribed: Mapped[bool] = mapped_column(default=False)
    subscribe_time: Mapped[datetime | None] = mapped_column(UTCDateTime())
    subscribe_scene: Mapped[str] = mapped_column(String(32), default="")
    qr_scene_str: Mapped[str] = mapped_column(String(64), default="")
    last_message_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class SandboxQRCode(Base):
    __tablename__ = "sandbox_qrcodes"

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket: Mapped[str] = mapped_column(String(128), unique=True)
    action_name: Mapped[str] = mapped_column(String(32))
    scene: Mapped[str] = mapped_column(String(64))
    url: Mapped[str] = mapped_column(String(255))
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class SandboxMessage(Base):
    """One bubble of a simulator chat: what the user sent, the passive reply,
    or a customer-service / template message the product pushed."""

    __tablename__ = "sandbox_messages"
    __table_args__ = (Index("ix_sandbox_messages_openid_id", "openid", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    openid: Mapped[str] = mapped_column(String(64))
    direction: Mapped[str] = mapped_column(String(16))  # user | reply | custom | template
    msg_type: Mapped[str] = mapped_column(String(32))
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class SandboxMedia(Base):
    __tablename__ = "sandbox_media"

    id: Mapped[int] = mapped_column(primary_key=True)
    media_id: Mapped[str] = mapped_column(String(128), unique=True)
    media_type: Mapped[str] = mapped_column(String(16))
    content_type: Mapped[str] = mapped_column(String(64))
    content: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class SandboxMenu(Base):
    __tablename__ = "sandbox_menus"

    id: Mapped[int] = mapped_column(primary_key=True)
    appid: Mapped[str] = mapped_column(String(64), unique=True)
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class SandboxClock(Base):
    """How far the try-out's clock runs ahead of real time (one row, id 1).

    In the database, not in a process: every thread and worker of the
    try-out must read the same time. No row means real time."""

    __tablename__ = "sandbox_clock"
    __table_args__ = (CheckConstraint("id = 1", name="one_row"),
                      CheckConstraint("offset_seconds >= 0", name="forward_only"))

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    offset_seconds: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
