"""WeChat pushes already handled, kept in the database: Redis remembers a
push for WeChat's retries, but Redis can lose its keys (flushed, restarted
empty). The row is written in the transaction that does the push's work, so
a push replayed after that finds its key taken and does nothing twice, and
a signed query replayed with another message finds its query taken."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, UTCDateTime, utcnow


class WxPush(Base):
    __tablename__ = "wx_pushes"

    # sha256 of the webhook's dedupe key (MsgId, or sender + time + event):
    # fixed length, whatever a push carries.
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    # sha256 of the signed query (timestamp, nonce, signature) that brought
    # it: a query is good for one message, in Redis and here, should Redis forget.
    query_key: Mapped[str] = mapped_column(String(64), unique=True)
    reply: Mapped[str] = mapped_column(Text)  # the passive reply XML; "" for WeChat's "success"
    # Pruned after a day (handlers.pushes.prune); no index: one scan a day
    # costs less than one more index write per push.
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
