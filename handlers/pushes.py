"""WeChat pushes done once, by the database: the webhook records each push
it handled in the transaction that did the work (Redis answers WeChat's
quick retries; this row survives Redis losing its keys)."""
from __future__ import annotations

import hashlib
from datetime import timedelta

from sqlalchemy import bindparam, delete, select
from sqlalchemy.dialects import postgresql, sqlite

from models import WxPush, db

from . import settings
from .clock import now

KEEP = timedelta(days=1)  # WeChat retries within ~15 s; a day outlives any Redis outage we would not notice


def key_of(dedupe_key: str) -> str:
    return hashlib.sha256(dedupe_key.encode("utf-8", "surrogatepass")).hexdigest()


def record(key: str, query_key: str, reply: str) -> bool:
    """Mark the push done, in the current transaction, with the signed query
    that brought it and the reply it got. False: the push was done already,
    or its query was used for another message (``reply_of`` tells which);
    either way this attempt's work must be rolled back. On PostgreSQL the
    INSERT waits for a twin still committing the same key, then finds it taken."""
    conn = db.session.connection()
    statement = _RECORD_PG if conn.dialect.name == "postgresql" else _RECORD_SQLITE
    return conn.execute(statement, {"key": key, "query_key": query_key, "reply": reply,
                                    "created_at": now()}).first() is not None


def _record(dialect_insert):
    # Built once: the webhook runs it for every push (a cached Core statement, no ORM).
    return dialect_insert(WxPush.__table__).values(
        key=bindparam("key"), query_key=bindparam("query_key"), reply=bindparam("reply"),
        created_at=bindparam("created_at")).on_conflict_do_nothing().returning(WxPush.__table__.c.key)


_RECORD_PG, _RECORD_SQLITE = _record(postgresql.insert), _record(sqlite.insert)


def reply_of(key: str) -> str | None:
    """The reply a push got when it was done; None if no row for it is
    visible (its query was another message's, or a twin has not committed)."""
    return db.session.scalar(select(WxPush.reply).where(WxPush.key == key))


def query_used(query_key: str) -> bool:
    return db.session.scalar(select(WxPush.key).where(WxPush.query_key == query_key)) is not None


def prune() -> int:
    """Forget pushes older than a day (and than twice the replay window, so
    a signed push still inside its window can never be done twice)."""
    window = timedelta(seconds=settings.section("wechat")["replay_window_seconds"])
    cutoff = now() - max(KEEP, 2 * window)
    return db.session.execute(delete(WxPush).where(WxPush.created_at < cutoff)
                              .execution_options(synchronize_session=False)).rowcount
