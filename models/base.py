"""Shared column types and helpers for every table."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated

from sqlalchemy import BigInteger, DateTime
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import mapped_column
from sqlalchemy.types import TypeDecorator

from app.extensions import Base, db

__all__ = ["Base", "db", "Fen", "UTCDateTime", "utcnow", "insert_ignoring_conflict"]

# Money: integer fen, 64-bit in the database. A 32-bit INTEGER ends at
# ¥21,474,836.47 — one busy distributor's lifetime income, or one order of
# 99 × ¥1,000,000 — and then PostgreSQL refuses the write (a 500).
Fen = Annotated[int, mapped_column(BigInteger)]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every database (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use handlers.clock.now()")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def insert_ignoring_conflict(model, values: dict, index_elements: list[str]):
    """INSERT … ON CONFLICT DO NOTHING on PostgreSQL and SQLite alike: the
    database, not a read-then-write race, decides who creates a row first."""
    dialect = db.session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(model).values(**values).on_conflict_do_nothing(index_elements=index_elements)
