"""Extension objects, created without an app and bound in ``create_app``."""
from __future__ import annotations

import redis
from flask import Flask, current_app
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from rq import Queue, Retry
import sqlite3
import time

from sqlalchemy import MetaData, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase

# Stable constraint names, so Alembic migrations read the same on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


db = SQLAlchemy(model_class=Base)


def install_sqlite_habits(engine: Engine) -> None:
    """What a SQLite engine needs to behave as PostgreSQL does for us; nothing
    for another database. Listeners go on the engine, not on the Engine
    class: a connection event anywhere on an engine makes SQLAlchemy look
    for listeners around every statement, begin and commit (some 200 000
    instructions per transaction on PostgreSQL, 4 % of a WeChat push)."""
    if engine.dialect.name != "sqlite":
        return
    event.listen(engine, "connect", _sqlite_pragmas)
    event.listen(engine, "savepoint", _sqlite_savepoint_inside_a_transaction)


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    # WAL lets the try-out's threads read while one writes; wait for locks
    # instead of failing at once.
    if isinstance(dbapi_conn, sqlite3.Connection):
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=10000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()


def _sqlite_savepoint_inside_a_transaction(conn, _name) -> None:
    # pysqlite opens a transaction only before a write, so a SAVEPOINT taken
    # before any write would open one itself and its RELEASE would commit it:
    # the change would outlive a later rollback of the request (and of its
    # audit row). Open the real transaction first, as PostgreSQL has.
    dbapi_conn = conn.connection.dbapi_connection
    if isinstance(dbapi_conn, sqlite3.Connection) and not dbapi_conn.in_transaction:
        dbapi_conn.execute("BEGIN")
# H5 forms carry a token; WeChat's pushes and the sandbox platform are exempt.
csrf = CSRFProtect()
# Rate limits (the admin login) live in Redis, shared by every worker; with
# the in-process stand-in (the try-out), in this process's memory.
limiter = Limiter(key_func=get_remote_address, key_prefix="fenxiao-limits", swallow_errors=True,
                  in_memory_fallback_enabled=True)


class RedisHolder:
    """The app's Redis connection: the real server, or an in-process stand-in
    (fakeredis) when ``[app] redis_url`` is empty. The stand-in is shared by
    the threads of one process only, which is all the try-out needs."""

    def init_app(self, app: Flask) -> None:
        url = app.config["SETTINGS"]["app"]["redis_url"]
        if url:
            conn = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
        else:
            import fakeredis  # the stand-in only: a deployment with Redis never loads it

            conn = fakeredis.FakeRedis(server=fakeredis.FakeServer())
        app.extensions["fenxiao.redis"] = conn

    @property
    def conn(self) -> redis.Redis:
        return current_app.extensions["fenxiao.redis"]

    # After Redis failed to answer, the callers that can do without it leave
    # it alone this long: a host that does not answer would otherwise cost
    # every request its connect timeout.
    RESTING = 5.0

    def resting(self) -> bool:
        """Did Redis fail to answer a moment ago (this app's connection)?"""
        return time.monotonic() < current_app.extensions.get("fenxiao.redis_resting_until", 0.0)

    def failed(self) -> None:
        """Redis did not answer: callers that can do without it skip it for ``RESTING`` seconds."""
        current_app.extensions["fenxiao.redis_resting_until"] = time.monotonic() + self.RESTING


redis_store = RedisHolder()


class QueueHolder:
    """RQ on the same Redis. With the in-process fallback jobs run inline."""

    def init_app(self, app: Flask) -> None:
        settings = app.config["SETTINGS"]
        conn = app.extensions["fenxiao.redis"]
        app.extensions["fenxiao.queue"] = Queue(
            settings["queue"]["name"], connection=conn, is_async=not settings.uses_redis_fallback
        )

    @property
    def queue(self) -> Queue:
        return current_app.extensions["fenxiao.queue"]

    def retry(self) -> Retry | None:
        retries = current_app.config["SETTINGS"]["queue"]["max_retries"]
        if not retries:
            return None
        intervals = [10, 60, 300, 900, 3600]
        return Retry(max=retries, interval=intervals[:retries] + [3600] * max(0, retries - 5))


queue = QueueHolder()
