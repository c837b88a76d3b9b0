"""The sales leaderboard (PRODUCT.md flow 10): net sales of each
distributor's unit, in fen, by the time of payment in China time — today,
this ISO week, this calendar month and all time.

SQL is the truth: a kept payment adds its amount to the periods of its
payment time, a refund that went through takes its amount from the periods
of the payment it gives back. Redis keeps the same figures in one sorted set
per period (``lb:day:20261201``, ``lb:week:2026W49``, ``lb:month:202612``,
``lb:all``; unit id → fen), changed by an outbox job after the commit of
each payment and refund. The job changes the sets exactly once: one Lua
script sets a marker per payment or refund (``lb:applied:pay:<id>``) and
adds to the sets, or does nothing when the marker is there already.

``rebuild`` (``flask --app wsgi leaderboard rebuild``, and nightly) makes
every live key again from SQL, into temporary keys renamed over the live
ones. While it runs the script also logs what it applied; whatever was
applied but missed by the rebuild's reading is added to the new keys before
they replace the old, and the rebuild marks what it counted, so that a job
still to come does not count it twice.

The merchant's own unit never enters the sets; frozen distributors are left
out when the board is read. Without Redis (the try-out) the board is read
from SQL.
"""
from __future__ import annotations

import functools
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Iterable

from flask import current_app
from redis.exceptions import RedisError
from sqlalchemy import Integer, and_, any_, bindparam, func, literal, literal_column, or_, select, union_all
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import joinedload

from app.extensions import db, redis_store
from models import Distributor, DistributorStatus, Order, Payment, Refund, RefundStatus, Unit, User

from . import outbox
from .clock import CHINA, now
from .errors import Conflict, DomainError

log = logging.getLogger(__name__)

PERIODS = {"day": "今日", "week": "本周", "month": "本月", "all": "总榜"}
TOP = 50
GRACE = timedelta(days=1)              # a period's key outlives the period by this much
MARK_TTL = int(timedelta(days=35).total_seconds())  # longer than the longest live period (a month) and its grace
FLAG, LOG = "lb:rebuilding", "lb:rebuild:log"
PATTERNS = ("lb:day:*", "lb:week:*", "lb:month:*", "lb:all")

# KEYS: marker, rebuild flag, rebuild log, period keys…; ARGV: marker ttl, member, fen, log entry, expire-at per
# period key (0: never). A period key already over is not passed (the caller leaves it out).
_APPLY = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 0 end
for i = 4, #KEYS do
  local score = tonumber(redis.call('ZINCRBY', KEYS[i], ARGV[3], ARGV[2]))
  if score == 0 then redis.call('ZREM', KEYS[i], ARGV[2]) end
  local at = tonumber(ARGV[i + 1])
  if at > 0 then redis.call('EXPIREAT', KEYS[i], at) end
end
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('RPUSH', KEYS[3], ARGV[4]) end
return 1
"""

# KEYS: flag, log, then temp and live key pairs; ARGV: token, log entries seen, then expire-at per pair, then
# live keys to delete. Renames only when no live change was logged since the caller last looked.
_SWAP = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
if redis.call('LLEN', KEYS[2]) ~= tonumber(ARGV[2]) then return 0 end
local pairs = (#KEYS - 2) / 2
for i = 3 + pairs, #ARGV do redis.call('DEL', ARGV[i]) end
for i = 0, pairs - 1 do
  local temp, live, at = KEYS[3 + 2 * i], KEYS[4 + 2 * i], tonumber(ARGV[3 + i])
  if redis.call('EXISTS', temp) == 1 then
    redis.call('RENAME', temp, live)
    if at > 0 then redis.call('EXPIREAT', live, at) else redis.call('PERSIST', live) end
  else
    redis.call('DEL', live)
  end
end
redis.call('DEL', KEYS[1], KEYS[2])
return 1
"""


# --- periods ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Period:
    name: str
    key: str
    start: datetime | None  # UTC; None for all time
    end: datetime | None

    @property
    def expire_at(self) -> int:
        """When the key may go (epoch seconds), 0 for never."""
        return int((self.end + GRACE).timestamp()) if self.end else 0


def period(name: str, at: datetime | None = None) -> Period:
    """The period called ``name`` that holds the moment ``at`` (China time)."""
    if name not in PERIODS:
        raise DomainError("没有这个排行周期")
    local = (at or now()).astimezone(CHINA)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if name == "day":
        start, end, key = midnight, midnight + timedelta(days=1), f"lb:day:{local:%Y%m%d}"
    elif name == "week":
        start = midnight - timedelta(days=local.weekday())
        year, week, _ = local.isocalendar()
        end, key = start + timedelta(days=7), f"lb:week:{year}W{week:02d}"
    elif name == "month":
        start = midnight.replace(day=1)
        end, key = (start + timedelta(days=32)).replace(day=1), f"lb:month:{local:%Y%m}"
    else:
        return Period(name, "lb:all", None, None)
    return Period(name, key, start.astimezone(timezone.utc), end.astimezone(timezone.utc))


def periods_of(paid_at: datetime, at: datetime | None = None) -> list[Period]:
    """The keys a sale paid at ``paid_at`` counts in, those not over yet at ``at``."""
    at = at or now()
    return [p for p in (period(name, paid_at) for name in PERIODS) if p.end is None or p.end + GRACE > at]


# --- the truth: events from SQL ------------------------------------------------------------------

@dataclass(frozen=True)
class Event:
    kind: str  # pay | refund
    id: int
    unit_id: int
    paid_at: datetime  # the payment's time: the refund's too
    fen: int           # signed
    at: datetime       # when it happened (the refund: when it went through)

    @property
    def entry(self) -> str:
        return f"{self.kind}:{self.id}"


def _payments(*columns):
    """Kept payments in distributors' units (``columns`` of Payment, Order)."""
    columns = columns or (literal("pay"), Payment.id, Order.unit_id, Payment.paid_at, Payment.amount_fen,
                          Payment.paid_at)
    return (select(*columns).select_from(Payment).join(Order, Order.id == Payment.order_id)
            .join(Unit, Unit.id == Order.unit_id)
            .where(Payment.duplicate.is_(False), Unit.distributor_id.is_not(None)))


def _refunds(*columns):
    """Refunds that went through, with the payment they give back: the
    order's kept one (rows older than refunds.payment_id name none)."""
    columns = columns or (literal("refund"), Refund.id, Order.unit_id, Payment.paid_at, -Refund.amount_fen,
                          func.coalesce(Refund.finished_at, Refund.created_at))
    return (select(*columns).select_from(Refund)
            .join(Payment, and_(Payment.order_id == Refund.order_id, Payment.duplicate.is_(False),
                                or_(Refund.payment_id.is_(None), Refund.payment_id == Payment.id)))
            .join(Order, Order.id == Refund.order_id).join(Unit, Unit.id == Order.unit_id)
            .where(Refund.status == RefundStatus.SUCCEEDED.value, Unit.distributor_id.is_not(None)))


def _events(query) -> list[Event]:
    return [Event(*row) for row in db.session.execute(query)]


def event_of(kind: str, event_id: int) -> Event | None:
    """A payment or refund as the leaderboard counts it; None when it does
    not count (a duplicate payment, the merchant's own unit, a refund that
    did not go through)."""
    query = _payments().where(Payment.id == event_id) if kind == "pay" else _refunds().where(Refund.id == event_id)
    found = _events(query)
    return found[0] if found else None


# --- live: after the commit of a payment or refund ------------------------------------------------

def payment_recorded(payment_id: int) -> None:
    """Called in the transaction that records a payment."""
    outbox.after_commit("handlers.leaderboard.count_payment", payment_id, job_id=f"leaderboard-pay-{payment_id}")


def refund_landed(refund_id: int) -> None:
    """Called in the transaction where a refund goes through."""
    outbox.after_commit("handlers.leaderboard.count_refund", refund_id, job_id=f"leaderboard-refund-{refund_id}")


@outbox.job
def count_payment(payment_id: int) -> bool:
    return _count("pay", payment_id)


@outbox.job
def count_refund(refund_id: int) -> bool:
    return _count("refund", refund_id)


def _count(kind: str, event_id: int) -> bool:
    event = event_of(kind, event_id)
    return apply(event) if event is not None else False


def apply(event: Event, at: datetime | None = None) -> bool:
    """Add the event to the live sets, once: False when it was added before."""
    keys = periods_of(event.paid_at, at)
    conn = redis_store.conn
    done = conn.register_script(_APPLY)(
        keys=[f"lb:applied:{event.entry}", FLAG, LOG, *[p.key for p in keys]],
        args=[MARK_TTL, event.unit_id, event.fen, event.entry, *[p.expire_at for p in keys]])
    return bool(done)


# --- rebuild from SQL -----------------------------------------------------------------------------

def rebuild(at: datetime | None = None) -> dict[str, int]:
    """Every live key made again from SQL; returns each key's member count."""
    at = at or now()
    conn = redis_store.conn
    token = secrets.token_hex(8)
    if not conn.set(FLAG, token, nx=True, ex=3600):
        raise Conflict("排行榜正在重建，请稍后再试")
    try:
        return _rebuild(conn, token, at)
    finally:
        if conn.get(FLAG) == token.encode():
            conn.delete(FLAG, LOG)


def _rebuild(conn, token: str, at: datetime) -> dict[str, int]:
    events = _events(_payments()) + _events(_refunds())
    db.session.rollback()  # the reading is done: hold no transaction while Redis is written
    counted = {e.entry for e in events}
    boards: dict[Period, dict[int, int]] = {}
    for e in events:
        _add(boards, e, at)
    temp = f"lb:tmp:{token}:"
    pipe = conn.pipeline(transaction=False)
    for p, scores in boards.items():
        kept = {unit: fen for unit, fen in scores.items() if fen != 0}
        for chunk in _chunks(list(kept.items()), 5000):
            pipe.zadd(temp + p.key, dict(chunk))
        pipe.expire(temp + p.key, 3600)
    pipe.execute()
    _mark(conn, [e for e in events if e.at >= at - timedelta(seconds=MARK_TTL)])
    seen = 0
    while True:
        fresh = [entry.decode() for entry in conn.lrange(LOG, seen, -1)]
        for entry in fresh:  # applied live, but committed after the reading: counted in the new keys too
            if entry in counted:
                continue
            counted.add(entry)
            kind, _, event_id = entry.partition(":")
            event = event_of(kind, int(event_id))
            db.session.rollback()
            if event is not None:
                _add_live(conn, temp, boards, event, at)
        seen += len(fresh)
        stale = {k.decode() for pattern in PATTERNS for k in conn.scan_iter(match=pattern, count=1000)}
        pairs = sorted(boards, key=lambda p: p.key)
        stale -= {p.key for p in pairs}
        keys = [FLAG, LOG] + [k for p in pairs for k in (temp + p.key, p.key)]
        args = [token, seen, *[p.expire_at for p in pairs], *sorted(stale)]
        swapped = conn.register_script(_SWAP)(keys=keys, args=args)
        if swapped == -1:
            raise Conflict("排行榜重建被另一次重建取代")
        if swapped == 1:
            break
    log.info("leaderboard rebuilt from %d payments and refunds: %d keys", len(events), len(boards))
    return {p.key: sum(1 for fen in scores.values() if fen != 0) for p, scores in boards.items()}


def _add(boards: dict[Period, dict[int, int]], event: Event, at: datetime) -> list[Period]:
    periods = periods_of(event.paid_at, at)
    for p in periods:
        scores = boards.setdefault(p, {})
        scores[event.unit_id] = scores.get(event.unit_id, 0) + event.fen
    return periods


def _add_live(conn, temp: str, boards, event: Event, at: datetime) -> None:
    for p in _add(boards, event, at):
        score = conn.zincrby(temp + p.key, event.fen, event.unit_id)
        if score == 0:
            conn.zrem(temp + p.key, event.unit_id)
        conn.expire(temp + p.key, 3600)


def _mark(conn, events: list[Event]) -> None:
    """What the rebuild counted is applied: a job still to come for it adds nothing."""
    for chunk in _chunks(events, 5000):
        pipe = conn.pipeline(transaction=False)
        for e in chunk:
            pipe.set(f"lb:applied:{e.entry}", 1, nx=True, ex=MARK_TTL)
        pipe.execute()


def _chunks(items: list, size: int) -> Iterable[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def nightly_rebuild() -> dict[str, int]:
    """The timetabled rebuild (app/cron.py), in the worker's app context."""
    try:
        return rebuild()
    finally:
        db.session.rollback()  # the worker's session serves the next job too


# --- reading the board ------------------------------------------------------------------------------

@dataclass
class Row:
    rank: int
    unit_id: int
    fen: int
    name: str = ""          # the distributor's real name (masked for others by the page)
    avatar_url: str | None = None
    mine: bool = False


@dataclass
class Viewer:
    """The person looking at the board, when they are a distributor: read with the names."""
    unit_id: int | None
    unit_name: str
    active: bool


@dataclass
class Board:
    period: Period
    rows: list[Row]
    mine: Row | None          # None: not on the board (no sales, not a distributor, frozen)
    gap_fen: int | None       # how far the one above is ahead of me; None at the top or off the board
    viewer: Viewer | None = None  # given only when the board was asked for a user_id


def distributor_of(user_id: int) -> Distributor | None:
    """The user's distributor with their unit, in one query."""
    return db.session.scalars(select(Distributor).options(joinedload(Distributor.unit))
                              .where(Distributor.user_id == user_id)).one_or_none()


def mask(name: str) -> str:
    """王小明 → 王*明, 王明 → 王*, 王 → 王."""
    name = (name or "").strip()
    if len(name) <= 1:
        return name
    return name[0] + "*" + (name[-1] if len(name) > 2 else "")


def board(name: str, unit_id: int | None = None, at: datetime | None = None, top: int = TOP,
          source: str | None = None, *, user_id: int | None = None) -> Board:
    """The top ``top`` of the period, and where ``unit_id`` stands — or,
    given ``user_id``, that user's unit (the page: no separate query for who
    is looking). ``source`` is ``redis`` or ``sql``; by default Redis, or SQL
    without Redis."""
    p = period(name, at)
    if source is None:
        source = "sql" if current_app.config["SETTINGS"].uses_redis_fallback else "redis"
    try:
        rows, mine, gap, viewer = (_from_redis if source == "redis" else _from_sql)(p, unit_id, top, user_id)
    except RedisError as exc:  # the page still answers, from the truth
        log.warning("leaderboard read from SQL: Redis failed (%s)", exc)
        db.session.rollback()
        rows, mine, gap, viewer = _from_sql(p, unit_id, top, user_id)
    if user_id is not None:
        unit_id = viewer.unit_id if viewer else None
    for r in rows + ([mine] if mine else []):
        r.mine = unit_id is not None and r.unit_id == unit_id
    return Board(p, rows, mine, gap, viewer)


def _viewer(user_id: int) -> Viewer | None:
    distributor = distributor_of(user_id)
    if distributor is None:
        return None
    unit = distributor.unit
    return Viewer(unit.id if unit else None, unit.name if unit else "", distributor.is_active)


def _ranked(scores: list[tuple[int, int]]) -> list[Row]:
    """Highest first; equal sales share a rank (1, 2, 2, 4)."""
    rows: list[Row] = []
    for i, (unit, fen) in enumerate(scores):
        rank = rows[-1].rank if rows and rows[-1].fen == fen else i + 1
        rows.append(Row(rank, unit, fen))
    return rows


def _from_sql(p: Period, unit_id: int | None, top: int, user_id: int | None = None):
    viewer = _viewer(user_id) if user_id is not None else None
    if user_id is not None:
        unit_id = viewer.unit_id if viewer else None
    figures = sales(p)
    _, frozen, _ = _people([])
    # Equal sales in Redis's order: the member's text, descending.
    scores = sorted(((u, f) for u, f in figures.items() if f > 0 and u not in frozen),
                    key=lambda uf: (uf[1], str(uf[0])), reverse=True)
    ranked = _ranked(scores)
    mine = next((r for r in ranked if r.unit_id == unit_id), None)
    gap = None
    if mine is not None and mine.rank > 1:
        gap = min(r.fen for r in ranked if r.fen > mine.fen) - mine.fen
    rows = ranked[:top]
    shown = rows + ([mine] if mine else [])
    _name(shown, _people(r.unit_id for r in shown)[0])
    return rows, mine, gap, viewer


def sales(p: Period) -> dict[int, int]:
    """Net sales per unit in the period, from SQL (the merchant's unit left out, frozen ones not)."""
    figures: dict[int, int] = {}
    for query in (_payments(Order.unit_id, func.sum(Payment.amount_fen)),
                  _refunds(Order.unit_id, -func.sum(Refund.amount_fen))):
        if p.start is not None:
            query = query.where(Payment.paid_at >= p.start, Payment.paid_at < p.end)
        for unit, fen in db.session.execute(query.group_by(Order.unit_id)):
            figures[unit] = figures.get(unit, 0) + int(fen)
    return figures


# KEYS: the board; ARGV: my unit, then every frozen unit. Returns my score, how many not frozen are above
# me and the score of the nearest of them ('' when none), or nothing when I am not on the board.
_STANDING = """
local own = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not own or tonumber(own) <= 0 then return false end
local mine, frozen = tonumber(own), {}
local above = redis.call('ZCOUNT', KEYS[1], '(' .. own, '+inf')
for i = 2, #ARGV do
  frozen[ARGV[i]] = true
  local s = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if s and tonumber(s) > mine then above = above - 1 end
end
local nearest = ''
if above > 0 then
  local near = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. own, '+inf', 'WITHSCORES', 'LIMIT', 0, #ARGV)
  for i = 1, #near, 2 do
    if not frozen[near[i]] then nearest = near[i + 1]; break end
  end
end
return {own, above, nearest}
"""


def _from_redis(p: Period, unit_id: int | None, top: int, user_id: int | None = None):
    """Redis, one query (names, frozen units and the viewer) and Redis again, whatever the board's size."""
    conn = redis_store.conn
    want = top + 20  # room for frozen ones among the first
    while True:
        candidates = [(int(u), int(s)) for u, s in
                      conn.zrevrangebyscore(p.key, "+inf", "(0", start=0, num=want, withscores=True)]
        people, frozen, viewer = _people([u for u, _ in candidates] + ([unit_id] if unit_id is not None else []),
                                         user_id)
        scores = [(u, s) for u, s in candidates if u not in frozen]
        if len(scores) >= top or len(candidates) < want:
            break
        want *= 4
    if user_id is not None:
        unit_id = viewer.unit_id if viewer else None
    rows = _ranked(scores)[:top]
    mine = gap = None
    if unit_id is not None and unit_id not in frozen:
        standing = conn.register_script(_STANDING)(keys=[p.key], args=[unit_id, *sorted(frozen)])
        if standing:
            own, above, nearest = standing
            mine = Row(int(above) + 1, unit_id, int(float(own)))
            gap = int(float(nearest)) - mine.fen if nearest not in (b"", "") else None
    _name(rows + ([mine] if mine else []), people)
    return rows, mine, gap, viewer


@functools.cache
def _people_query(dialect: str, with_units: bool, with_viewer: bool):
    """Built once per shape: the page runs it on every view. On PostgreSQL
    the unit ids go as one array, so the text never changes and the
    statement stays prepared."""
    parts = [_frozen()]
    if with_units:
        ids = bindparam("ids", type_=ARRAY(Integer))
        parts.append(
            select(Unit.id, Distributor.real_name, User.avatar_url, literal("P"), literal(None)).select_from(Unit)
            .join(Distributor, Distributor.id == Unit.distributor_id).join(User, User.id == Distributor.user_id)
            .where(Unit.id == any_(ids) if dialect == "postgresql" else Unit.id.in_(bindparam("ids", expanding=True))))
    if with_viewer:
        parts.append(
            select(Unit.id, Distributor.real_name, User.avatar_url, Distributor.status, Unit.name)
            .select_from(Distributor).join(User, User.id == Distributor.user_id)
            .outerjoin(Unit, Unit.distributor_id == Distributor.id)
            .where(Distributor.user_id == bindparam("user_id")))
    return union_all(*parts) if len(parts) > 1 else parts[0]


def _frozen():
    return (select(Unit.id, literal(""), literal(None), literal("F"), literal(None)).select_from(Distributor)
            .join(Unit, Unit.distributor_id == Distributor.id)
            # Spelled out, not bound: a prepared statement's generic plan uses the partial index only so.
            .where(Distributor.status == literal_column(f"'{DistributorStatus.FROZEN.value}'")))


def _people(unit_ids: Iterable[int], user_id: int | None = None
            ) -> tuple[dict[int, tuple[str, str | None]], set[int], Viewer | None]:
    """Real names and shop avatars of these units, every frozen
    distributor's unit (through a partial index) and, given a user id, that
    user's own shop: one query."""
    ids = list(unit_ids)
    conn = db.session.connection()
    query = _people_query(conn.dialect.name, bool(ids), user_id is not None)
    found = conn.execute(query, {"ids": ids, "user_id": user_id})
    people, frozen, viewer = {}, set(), None
    for unit, real_name, avatar, kind, unit_name in found:
        if kind == "F":
            frozen.add(unit)
        elif kind == "P":
            people[unit] = (real_name, avatar)
        else:
            viewer = Viewer(unit, unit_name or "", kind == DistributorStatus.ACTIVE.value)
            if unit is not None:
                people[unit] = (real_name, avatar)
    return people, frozen, viewer


def _name(rows: list[Row], people: dict[int, tuple[str, str | None]]) -> None:
    for r in rows:
        r.name, r.avatar_url = people.get(r.unit_id, ("", None))
