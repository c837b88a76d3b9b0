"""A pooled PostgreSQL connection is pinged before use only when it sat idle.

``pool_pre_ping`` pings on every checkout: a round trip before each
request's first statement, some 4 % of a WeChat push's time. A connection
given back to the pool less than ``TRUSTED_FOR`` seconds ago was working
then; one idle for longer (a restarted server, a firewall dropping quiet
connections) is pinged, and one that fails the ping is replaced before the
request sees it. Should the server go away within those seconds, the one
request that meets a dead connection fails, and SQLAlchemy then discards
every pooled connection older than that failure.
"""
from __future__ import annotations

import time

from sqlalchemy import event, exc
from sqlalchemy.engine import Engine

TRUSTED_FOR = 5.0  # seconds
_RETURNED = "fenxiao.returned_at"


def install(engine: Engine) -> None:
    if engine.dialect.name == "sqlite":  # a file, not a server: nothing to lose
        return
    dialect = engine.dialect

    @event.listens_for(engine, "checkin")
    def _returned(_dbapi_connection, record) -> None:
        record.info[_RETURNED] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection, record, _proxy) -> None:
        returned = record.info.pop(_RETURNED, None)
        if returned is None or time.monotonic() - returned < TRUSTED_FOR:
            return  # new, or in use a moment ago
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as error:  # noqa: BLE001 - any failure: the pool connects afresh
            raise exc.DisconnectionError(f"idle connection failed its ping: {error}") from error
