"""Pooled connections are pinged before use only after idling (app.pool_ping):
a connection whose server process went away while it sat in the pool is
replaced before a request meets it."""
from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from app import pool_ping
from conftest import DB_URL
from models import db

pytestmark = pytest.mark.skipif(not DB_URL, reason="PostgreSQL only: SQLite has no server connection to lose, "
                                "and app.pool_ping is not installed there")


def backend_pid() -> int:
    pid = db.session.scalar(text("SELECT pg_backend_pid()"))
    db.session.commit()
    return pid


def kill(pid: int) -> None:
    other = create_engine(db.engine.url, poolclass=NullPool)  # outside the pool being tested
    with other.connect() as conn:
        assert conn.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    other.dispose()


def test_a_connection_killed_while_idle_is_replaced_before_use(app, monkeypatch):
    db.session.remove()
    db.engine.dispose()
    first = backend_pid()
    db.session.remove()  # back to the pool
    kill(first)
    monkeypatch.setattr(pool_ping, "TRUSTED_FOR", 0.0)  # it has idled long enough
    assert backend_pid() != first  # the ping failed, a new connection answered
    db.session.remove()


def test_a_connection_used_a_moment_ago_is_not_pinged(app):
    db.session.remove()
    db.engine.dispose()
    first = backend_pid()
    db.session.remove()
    pings = []
    real = db.engine.dialect.do_ping
    db.engine.dialect.do_ping = lambda conn: pings.append(1) or real(conn)
    try:
        assert backend_pid() == first and pings == []  # the same connection, no round trip first
    finally:
        del db.engine.dialect.do_ping
    db.session.remove()
