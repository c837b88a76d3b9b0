"""The one place the product asks what time it is (UTC, timezone-aware).

The sandbox clock: in the sandbox (``[wechat] sandbox = true``, the try-out
and the tests, never a real deployment: the config refuses the sandbox with
an https address) the product's time can be moved forward by whole days, so
a newcomer sees an unpaid order expire, a shipped order received and
commission settle without waiting a week. ``now()`` is real time plus that
offset. The offset lives in the database (one row of ``sandbox_clock``)
because every thread and process of the try-out must read the same time; a
process keeps what it read for at most ``CACHE_SECONDS``. With the sandbox
off ``now()`` is real time and never touches the database.

Moving the clock also does at once what a worker would have done by then
(``catch_up``): unpaid timeouts, automatic receipt and settlement, each at
the moment it fell due, so a receipt that falls on day 7 starts its freeze
window on day 7, not on the day the clock landed.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from flask import current_app, has_app_context

from .errors import Conflict, DomainError, Forbidden

# Every module asks this one for the time, so it imports the rest of the
# product (models, audit, the sweeps) only inside the functions that move it.
log = logging.getLogger(__name__)

# People read times in China Standard Time; the database keeps UTC.
CHINA = timezone(timedelta(hours=8), "CST")
ZERO = timedelta(0)
CACHE_SECONDS = 1.0
MAX_STEP_DAYS = 365             # one move
MAX_OFFSET_DAYS = 10 * 365      # all moves together
MAX_CATCH_UP_STEPS = 500        # distinct due moments replayed one by one; the rest at the target time
_CACHE = "fenxiao.sandbox_clock"


def real_now() -> datetime:
    """The wall clock, whatever the sandbox says: for what must agree with
    the world outside (signatures' timestamps, TOTP codes)."""
    return datetime.now(timezone.utc)


def now() -> datetime:
    return real_now() + offset()


class _Cached:
    __slots__ = ("value", "read_at")

    def __init__(self) -> None:
        self.value, self.read_at = ZERO, float("-inf")


def _sandbox_app():
    """The current app when it runs the sandbox, else None."""
    if not has_app_context():
        return None
    app = current_app._get_current_object()  # one context lookup, not one per attribute
    settings = app.config.get("SETTINGS")
    return app if settings and settings["wechat"]["sandbox"] else None


def sandbox_on() -> bool:
    return _sandbox_app() is not None


def offset() -> timedelta:
    """How far the sandbox clock runs ahead (ZERO outside the sandbox)."""
    app = _sandbox_app()
    if app is None:
        return ZERO
    extensions = app.extensions
    cached = extensions.get(_CACHE) or extensions.setdefault(_CACHE, _Cached())
    stamp = time.monotonic()
    if stamp - cached.read_at < CACHE_SECONDS:
        return cached.value
    # Two threads may both read here: they read the same row, so no lock.
    cached.value, cached.read_at = _read(), stamp
    return cached.value


def forget() -> None:
    """Read the offset again on the next ``now()`` (after this process moved it)."""
    if has_app_context():
        current_app.extensions.pop(_CACHE, None)


def _read() -> timedelta:
    from sqlalchemy import select
    from sqlalchemy.exc import SQLAlchemyError

    from models import SandboxClock, db

    # A connection of its own, not the caller's session: a read here must
    # neither open nor (on an error) spoil the caller's transaction.
    try:
        with db.engine.connect() as conn:
            seconds = conn.execute(select(SandboxClock.offset_seconds).where(SandboxClock.id == 1)).scalar()
    except SQLAlchemyError as exc:  # e.g. before `flask db upgrade` made the table: real time
        log.debug("sandbox clock unreadable (%s): real time", type(exc).__name__)
        return ZERO
    return timedelta(seconds=seconds or 0)


# -- moving it (the phone simulator's control) ----------------------------------------

@dataclass(frozen=True)
class CaughtUp:
    expired: int = 0     # unpaid orders cancelled by the timeout
    confirmed: int = 0   # shipped orders received automatically
    settled: int = 0     # commission rows that became withdrawable


@dataclass(frozen=True)
class Moved:
    offset: timedelta
    now: datetime
    caught_up: CaughtUp

    @property
    def offset_days(self) -> float:
        return self.offset.total_seconds() / 86400


def parse_days(value: object) -> int:
    """A whole number of days, 1..MAX_STEP_DAYS, from a form field."""
    text = str(value if value is not None else "").strip()
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_STEP_DAYS:
        raise DomainError(f"请输入 1-{MAX_STEP_DAYS} 之间的整数天数")
    return int(text)


def _require_sandbox() -> None:
    if not sandbox_on():
        raise Forbidden("只有沙箱（试用）环境可以调整时间")


def _locked_row():
    from sqlalchemy import select

    from models import SandboxClock, db
    from models.base import insert_ignoring_conflict

    db.session.execute(insert_ignoring_conflict(SandboxClock, {"id": 1, "offset_seconds": 0,
                                                               "updated_at": real_now()}, ["id"]))
    return db.session.scalars(select(SandboxClock).where(SandboxClock.id == 1).with_for_update()
                              .execution_options(populate_existing=True)).one()


def move_forward(days: object, expected_offset: object = None, *, actor) -> Moved:
    """Move the sandbox clock ``days`` days ahead and catch up on what fell
    due. ``expected_offset`` (seconds, as the page showed it) makes a double
    click or two people at once one move: the second finds the clock moved
    and is refused."""
    from . import audit

    _require_sandbox()
    days = parse_days(days)
    row = _locked_row()
    if expected_offset not in (None, "") and str(expected_offset).strip() != str(row.offset_seconds):
        raise Conflict(f"时间刚被调整过（现在已拨快 {_days_text(row.offset_seconds)}），本次没有再拨，请看页面上的当前时间")
    before = row.offset_seconds
    after = before + days * 86400
    if after > MAX_OFFSET_DAYS * 86400:
        raise DomainError(f"最多一共拨快 {MAX_OFFSET_DAYS} 天（现在已拨快 {_days_text(before)}）")
    row.offset_seconds, row.updated_at = after, real_now()
    target = real_now() + timedelta(seconds=after)
    audit.record(actor, "sandbox.clock", "sandbox_clock", 1, before={"offset_seconds": before},
                 after={"offset_seconds": after}, reason=f"拨快 {days} 天", at=target)
    caught = catch_up(target)
    return Moved(timedelta(seconds=after), target, caught)


def back_to_real_time(*, actor) -> Moved:
    """The clock reads real time again. What happened in the future stays
    done (a settled commission is not frozen again)."""
    from . import audit

    _require_sandbox()
    row = _locked_row()
    before = row.offset_seconds
    if before:
        row.offset_seconds, row.updated_at = 0, real_now()
        audit.record(actor, "sandbox.clock", "sandbox_clock", 1, before={"offset_seconds": before},
                     after={"offset_seconds": 0}, reason="回到真实时间", at=real_now())
    return Moved(ZERO, real_now(), CaughtUp())


def _days_text(seconds: int) -> str:
    days, rest = divmod(int(seconds), 86400)
    return f"{days} 天" if not rest else f"{days} 天 {rest // 3600} 小时"


def catch_up(until: datetime) -> CaughtUp:
    """What a worker would have done by ``until``: every unpaid timeout,
    automatic receipt and settlement due by then, each run at the moment it
    fell due (a receipt on day 7 settles its commission freeze_days later,
    which may be due by ``until`` too). Flushes; the caller commits."""
    from . import commissions, orders

    expired = confirmed = settled = 0
    for _ in range(MAX_CATCH_UP_STEPS):
        at = _next_due(until)
        if at is None:
            break
        e, c = orders.sweep(at)
        expired, confirmed, settled = expired + e, confirmed + c, settled + commissions.sweep(at)
    else:  # a very busy try-out: whatever is left, at the target time
        e, c = orders.sweep(until)
        expired, confirmed, settled = expired + e, confirmed + c, settled + commissions.sweep(until)
    return CaughtUp(expired, confirmed, settled)


def _next_due(until: datetime) -> datetime | None:
    from sqlalchemy import func, select

    from models import CommissionRow, Order, db

    moments = [
        db.session.scalar(select(func.min(Order.expires_at))
                          .where(Order.status == "pending", Order.expires_at <= until)),
        db.session.scalar(select(func.min(Order.auto_confirm_at))
                          .where(Order.status == "shipped", Order.auto_confirm_at <= until)),
        db.session.scalar(select(func.min(CommissionRow.settle_at))
                          .where(CommissionRow.state == "frozen", CommissionRow.settle_at <= until)),
    ]
    found = [m for m in moments if m is not None]
    return min(found) if found else None


def deliver_due() -> int:
    """After a move has committed: hand over the outbox rows due now (the
    notifications the catch-up wrote), as the worker's relay would. Never
    raises: the move stands, and the worker or the next relay delivers."""
    from . import outbox

    try:
        return outbox.relay()
    except Exception as exc:  # noqa: BLE001 - e.g. Redis down
        log.warning("sandbox clock: relay after the move failed (%s); the worker will deliver", exc)
        return 0
