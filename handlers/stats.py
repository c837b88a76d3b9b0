"""Statistics over a range of China days (PRODUCT.md flow 14).

What each figure counts, by the day (China time, 00:00-24:00 CST) of the
moment named:

* **sales** (销售额): the totals of orders paid that day (``orders.paid_at``)
  and how many (订单数); **refunded** (退款): refunds that succeeded that day
  (``refunds.finished_at``), except automatic ones (a second payment given
  back never counted as a sale) — the dashboard's definitions
  (handlers.dashboard). **Net** = sales - refunded: a refund counts on the day
  the money went back, not on the order's day, so a past day never changes.
* **refund rate** (退款率) = refunded / sales over the range.
* **new users** (新用户): first contact that day (``users.created_at``); **new
  followers** (新增关注): those of them who came by following (first contact
  not OAuth); **new customers** (新增客户): users bound to a distributor that
  day (``users.attributed_at``); **new distributors**: approved that day.
* **commission accrued** (产生佣金): commission rows created that day;
  **settled** (结算佣金): rows that became withdrawable that day, a clawback of
  withdrawable money counting negative; **paid** (提现打款): withdrawals paid
  that day (``withdrawals.decided_at``, status paid).
* per unit: its sales and refunds (by the order's unit), **visits** (打开次数,
  ``unit_visits``), **visitors** (访客: distinct visitors of each day, summed
  over the days), **bound** (绑定客户: ``referral_touches`` outcome bound
  through the unit) and **first orders** (首单: a buyer's first paid order,
  placed at the unit).

Past days are read from ``daily_stats``/``daily_unit_stats`` (models/stats.py),
a range's whole months of units from ``monthly_unit_stats``. Today is a
stored part, brought up to date at most every ``SNAPSHOT_EVERY`` by adding
the rows stamped since, plus the newest rows counted live: a page costs a
few minutes of rows, however big the shop (a part of a day counts a visitor
at their first visit of the day, so the parts add up). The top units and
the funnel are ranked without summing every unit: each day's (month's)
first units are read from an index until the ranking is proven exact
(``_ranked``). A day's row computed before the day was over (plus
``SETTLE_MARGIN`` for transactions still committing at midnight) is stale and
is recomputed when a page asks for it, as is a missing one: so the first page
after midnight counts yesterday once, and a move of the sandbox clock finds
the days it jumped over missing. ``flask --app wsgi stats rebuild`` counts a
range again from the rows (e.g. after an import, or to fill a year at once).
The one figure a later event can change on a past day: a second partial
refund after settlement enlarges an existing clawback row, whose settled day
is in the past; a rebuild of that day puts it right.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from datetime import date, datetime, time, timedelta
from typing import Callable, Iterable, Mapping

from sqlalchemy import Date, Integer, and_, any_, delete, exists, func, literal, select, tuple_, union_all
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import aliased
from sqlalchemy.sql.expression import FunctionElement

from models import (CommissionKind, CommissionRow, DailyStat, DailyUnitStat, Distributor, FirstContact,
                    MonthlyUnitStat, Order, ReferralTouch, Refund, RefundOrigin, RefundStatus, TouchOutcome, Unit, UnitVisit, User,
                    Withdrawal, WithdrawalStatus, db)

from .clock import CHINA, now
from .errors import DomainError

MAX_DAYS = 366
DEFAULT_DAYS = 30
EARLIEST = date(2000, 1, 1)
SETTLE_MARGIN = timedelta(minutes=10)
TOP_UNITS = 10
FUNNEL_UNITS = 20


# -- the China day of a stored instant, in SQL ------------------------------------

class china_day(FunctionElement):
    """The China-time calendar day of a UTC timestamp column."""

    type = Date()
    inherit_cache = True


@compiles(china_day, "postgresql")
def _china_day_pg(element, compiler, **kw):
    return f"CAST(timezone('UTC', {compiler.process(element.clauses, **kw)}) + INTERVAL '8 hours' AS DATE)"


@compiles(china_day, "sqlite")
def _china_day_sqlite(element, compiler, **kw):
    # Whole seconds only: SQLite rounds 23:59:59.999999 up to the next day.
    return f"date(substr({compiler.process(element.clauses, **kw)}, 1, 19), '+8 hours')"


def _as_date(value) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def today(at: datetime | None = None) -> date:
    return (at or now()).astimezone(CHINA).date()


def _span(first: date, last: date) -> tuple[datetime, datetime]:
    """Days first..last (inclusive) as [start, end) instants."""
    return (datetime.combine(first, time(), CHINA),
            datetime.combine(last + timedelta(days=1), time(), CHINA))


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


# -- the figures -------------------------------------------------------------------

class _Sums:
    """Figures that add up field by field; net sales = paid − refunded."""

    paid_fen: int
    refunded_fen: int

    @property
    def net_fen(self) -> int:
        return self.paid_fen - self.refunded_fen

    def add(self, other: "_Sums") -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def is_empty(self) -> bool:
        return not any(getattr(self, f.name) for f in fields(self))


@dataclass
class DayFigures(_Sums):
    paid_fen: int = 0
    orders_paid: int = 0
    refunded_fen: int = 0
    new_users: int = 0
    new_followers: int = 0
    new_customers: int = 0
    new_distributors: int = 0
    commission_accrued_fen: int = 0
    commission_settled_fen: int = 0
    withdrawals_paid_fen: int = 0
    # The sums of its units' figures (the funnel's "all units" line; the sales above are too).
    visits: int = 0
    visitors: int = 0
    bound: int = 0
    first_orders: int = 0

    def add_units(self, units: "UnitFigures") -> None:
        for name in UNIT_FIELDS:
            setattr(self, name, getattr(self, name) + getattr(units, name))


@dataclass
class UnitFigures(_Sums):
    paid_fen: int = 0
    orders_paid: int = 0
    refunded_fen: int = 0
    visits: int = 0
    visitors: int = 0
    bound: int = 0
    first_orders: int = 0


DAY_FIELDS = [f.name for f in fields(DayFigures)]
UNIT_FIELDS = [f.name for f in fields(UnitFigures)]


def _grouped(column, start: datetime, end: datetime, *measures, where: Iterable = (), by_unit=None,
             from_=None):
    """A query of (day, unit or NULL, measure, measure or 0) rows of
    ``column``'s days in [start, end): one branch of compute()'s statement."""
    day = china_day(column)
    keys = [day] + ([by_unit] if by_unit is not None else [])
    values = [*measures, *[literal(0)] * (2 - len(measures))]
    query = select(day.label("day"), (by_unit if by_unit is not None else literal(None, Integer())).label("unit_id"),
                   *[v.label(f"v{n}") for n, v in enumerate(values)])
    if from_ is not None:
        query = query.select_from(from_)
    return query.where(column >= start, column < end, *where).group_by(*keys)


def _refund_kept():
    return (Refund.status == RefundStatus.SUCCEEDED.value, Refund.origin != RefundOrigin.AUTO.value)


def _first_orders(start: datetime, end: datetime) -> list:
    """Queries of (day, unit, count) of paid orders that were their buyer's
    first paid order: a signed-in buyer by user, a guest by mobile number."""
    earlier = aliased(Order)
    # (paid_at, id) orders two payments in the same microsecond too; the
    # row comparison is one range of the (buyer, paid_at, id) index.
    before = tuple_(earlier.paid_at, earlier.id) < tuple_(Order.paid_at, Order.id)
    queries = []
    for who, same in ((Order.buyer_id.is_not(None), earlier.buyer_id == Order.buyer_id),
                      (Order.buyer_id.is_(None), and_(earlier.guest_mobile == Order.guest_mobile,
                                                      earlier.buyer_id.is_(None)))):
        none_before = ~exists().where(same, earlier.paid_at.is_not(None), before)
        queries.append(_grouped(Order.paid_at, start, end, func.count(), by_unit=Order.unit_id,
                                where=(who, none_before)))
    return queries


def _first_visit_since(day_start: datetime):
    """The visit is its visitor's first to the unit since ``day_start``."""
    earlier = aliased(UnitVisit)
    return ~exists().where(earlier.unit_id == UnitVisit.unit_id, earlier.visitor == UnitVisit.visitor,
                           earlier.at >= day_start, tuple_(earlier.at, earlier.id) < tuple_(UnitVisit.at, UnitVisit.id))


def _figure_queries(first: date, last: date, start: datetime, end: datetime) -> list[tuple[tuple[str, ...], object]]:
    """Each figure's query over [start, end) (within days first..last), with
    the names of its two measures: the shop's own, then its units'."""
    visitors = func.count(UnitVisit.visitor.distinct())
    if (start, end) != _span(first, last):  # a part of one day: a visitor counts at their first visit that day
        visitors = func.count().filter(_first_visit_since(_span(first, first)[0]))
    sum_of = lambda column: func.coalesce(func.sum(column), 0)  # noqa: E731
    return [
        (("new_users", "new_followers"), _grouped(User.created_at, start, end, func.count(), func.count().filter(
            User.first_contact != FirstContact.OAUTH.value))),
        (("new_customers",), _grouped(User.attributed_at, start, end, func.count())),
        (("new_distributors",), _grouped(Distributor.approved_at, start, end, func.count())),
        (("commission_accrued_fen",), _grouped(CommissionRow.created_at, start, end, sum_of(CommissionRow.amount_fen),
                                               where=(CommissionRow.kind == CommissionKind.COMMISSION.value,))),
        (("commission_settled_fen",), _grouped(CommissionRow.settled_at, start, end, sum_of(CommissionRow.amount_fen))),
        (("withdrawals_paid_fen",), _grouped(Withdrawal.decided_at, start, end, sum_of(Withdrawal.amount_fen),
                                             where=(Withdrawal.status == WithdrawalStatus.PAID.value,))),
        # the units'
        (("paid_fen", "orders_paid"), _grouped(Order.paid_at, start, end, sum_of(Order.total_fen), func.count(),
                                               by_unit=Order.unit_id)),
        (("refunded_fen",), _grouped(Refund.finished_at, start, end, sum_of(Refund.amount_fen), by_unit=Order.unit_id,
                                     where=_refund_kept(),
                                     from_=Refund.__table__.join(Order.__table__, Order.id == Refund.order_id))),
        (("visits", "visitors"), _grouped(UnitVisit.at, start, end, func.count(), visitors, by_unit=UnitVisit.unit_id)),
        (("bound",), _grouped(ReferralTouch.at, start, end, func.count(), by_unit=ReferralTouch.unit_id,
                              where=(ReferralTouch.outcome == TouchOutcome.BOUND.value,
                                     ReferralTouch.unit_id.is_not(None)))),
        *[(("first_orders",), query) for query in _first_orders(start, end)],
    ]


def compute(first: date, last: date, since: datetime | None = None, until: datetime | None = None,
            ) -> tuple[dict[date, DayFigures], dict[tuple[date, int], UnitFigures]]:
    """Every figure of days first..last, straight from the rows, in one
    statement; only of rows stamped in [since, until) when given (a part of
    one day: today)."""
    start, end = _span(first, last)
    start, end = max(start, since or start), min(end, until or end)
    days = {d: DayFigures() for d in _days(first, last)}
    units: dict[tuple[date, int], UnitFigures] = {}
    if start >= end:
        return days, units
    queries = _figure_queries(first, last, start, end)
    tagged = [select(literal(n).label("figure"), *query.subquery().c) for n, (_, query) in enumerate(queries)]
    for n, d, unit_id, *values in db.session.execute(union_all(*tagged)):
        d = _as_date(d)
        figures = days[d] if unit_id is None else units.setdefault((d, unit_id), UnitFigures())
        for name, value in zip(queries[n][0], values):
            setattr(figures, name, getattr(figures, name) + int(value or 0))
    for (d, _), figures in units.items():  # the shop's sales and funnel are its units' (one read of the rows)
        days[d].add_units(figures)
    return days, units


# -- the pre-aggregated days -------------------------------------------------------

def _upsert(model, keys: list[str], columns: list[str], only_changes: bool = False):
    """INSERT … ON CONFLICT (keys) DO UPDATE, for many rows at once
    (executemany); ``only_changes``: a row whose figures are the same is
    left alone (no new row version, no index entries)."""
    dialect = db.session.get_bind().dialect.name
    insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(model)
    changed = [c for c in columns if c not in keys]
    where = (tuple_(*[model.__table__.c[c] for c in changed]) != tuple_(*[insert.excluded[c] for c in changed])
             if only_changes else None)
    return insert.on_conflict_do_update(index_elements=keys, set_={c: insert.excluded[c] for c in changed},
                                        where=where)


def _among(model, unit_ids: list[int]):
    """``model.unit_id`` is one of ``unit_ids`` (one array on PostgreSQL, however many)."""
    if db.session.get_bind().dialect.name == "postgresql":
        return model.unit_id == any_(literal(unit_ids, postgresql.ARRAY(Integer())))
    return model.unit_id.in_(unit_ids)


CHUNK_DAYS = 31  # one recompute's queries cover at most a month of rows
WHOLE_MONTH_FROM = 20_000  # units touched from which a month is summed again whole


def recompute(first: date, last: date, at: datetime | None = None) -> int:
    """Count days first..last again from the rows and store them (idempotent:
    the same rows give the same table). Only days already over: today and
    later are refused quietly (they are counted live). Flushes; the caller
    commits. Returns how many days were stored. Unit rows whose figures did
    not change are not written, and a month is summed again only for the
    units of the days counted (yesterday counted again after midnight is
    mostly what its snapshots already held)."""
    at = at or now()
    last = min(last, today(at) - timedelta(days=1))
    stored = 0
    months = {_month_of(d) for d in _days(first, last)} if first <= last else set()
    touched: set[int] = set()
    while first <= last:
        chunk_last = min(last, first + timedelta(days=CHUNK_DAYS - 1))
        days, units = compute(first, chunk_last)
        db.session.execute(_upsert(DailyStat, ["day"], ["computed_at", *DAY_FIELDS]),
                           [dict(day=d, computed_at=at, **vars(f)) for d, f in days.items()])
        kept = {(_as_date(d), u) for d, u in db.session.execute(
            select(DailyUnitStat.day, DailyUnitStat.unit_id)
            .where(DailyUnitStat.day >= first, DailyUnitStat.day <= chunk_last))}
        fresh = {key: f for key, f in units.items() if not f.is_empty()}
        gone = sorted(kept - set(fresh))
        for n in range(0, len(gone), 1000):
            db.session.execute(delete(DailyUnitStat).where(
                tuple_(DailyUnitStat.day, DailyUnitStat.unit_id).in_(gone[n:n + 1000])))
        if fresh:
            db.session.execute(_upsert(DailyUnitStat, ["day", "unit_id"], UNIT_FIELDS, only_changes=True),
                               [dict(day=d, unit_id=u, **vars(f)) for (d, u), f in fresh.items()])
        touched.update(u for _, u in kept)
        touched.update(u for _, u in fresh)
        stored += len(days)
        first = chunk_last + timedelta(days=1)
    for month in sorted(months):
        _sum_month(month, sorted(touched) if len(touched) < WHOLE_MONTH_FROM else None)
    db.session.flush()
    return stored


def _month_of(d: date) -> date:
    return d.replace(day=1)


def _next_month(month: date) -> date:
    return (month + timedelta(days=32)).replace(day=1)


def _sum_month(month: date, unit_ids: list[int] | None = None) -> None:
    """The month's unit rows again, from its stored days: of ``unit_ids``
    only when given (the other units' days did not change)."""
    end = _next_month(month)
    of_units = (lambda model: (_among(model, unit_ids),)) if unit_ids is not None else (lambda model: ())  # noqa: E731
    in_month = (DailyUnitStat.day >= month, DailyUnitStat.day < end)
    db.session.execute(delete(MonthlyUnitStat).where(
        MonthlyUnitStat.month == month, *of_units(MonthlyUnitStat),
        ~exists().where(DailyUnitStat.unit_id == MonthlyUnitStat.unit_id, *in_month)))
    sums = [func.sum(getattr(DailyUnitStat, name)) for name in UNIT_FIELDS]
    dialect = db.session.get_bind().dialect.name
    insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(MonthlyUnitStat).from_select(
        ["month", "unit_id", *UNIT_FIELDS],
        select(literal(month, Date()), DailyUnitStat.unit_id, *sums)
        .where(*in_month, *of_units(DailyUnitStat)).group_by(DailyUnitStat.unit_id))
    # Two pages summing the same month at once: the later one's sums stand.
    table = MonthlyUnitStat.__table__.c
    db.session.execute(insert.on_conflict_do_update(
        index_elements=["month", "unit_id"], set_={n: insert.excluded[n] for n in UNIT_FIELDS},
        where=tuple_(*[table[n] for n in UNIT_FIELDS]) != tuple_(*[insert.excluded[n] for n in UNIT_FIELDS])))


def stale_days(first: date, last: date, at: datetime | None = None) -> list[date]:
    """Past days of first..last whose stored row is missing or was computed
    before the day (and SETTLE_MARGIN) was over."""
    at = at or now()
    last = min(last, today(at) - timedelta(days=1))
    if first > last:
        return []
    stored = dict(db.session.execute(select(DailyStat.day, DailyStat.computed_at)
                                     .where(DailyStat.day >= first, DailyStat.day <= last)).all())
    stale = []
    for d in _days(first, last):
        computed = stored.get(d)
        if computed is None or computed < _span(d, d)[1] + SETTLE_MARGIN:
            stale.append(d)
    return stale


def refresh(first: date, last: date, at: datetime | None = None) -> int:
    """Recompute the stale days of first..last (from the first stale one to
    the last: usually just yesterday, or nothing)."""
    stale = stale_days(first, last, at)
    return recompute(stale[0], stale[-1], at) if stale else 0


# -- the range asked for -----------------------------------------------------------

def _parse_day(text: str, label: str) -> date:
    try:
        value = date.fromisoformat(text)
    except ValueError:
        raise DomainError(f"{label}的格式应为 年-月-日，例如 2026-12-01") from None
    if value < EARLIEST:
        raise DomainError(f"{label}不能早于 {EARLIEST.isoformat()}")
    return value


def parse_range(args: Mapping[str, str], at: datetime | None = None) -> tuple[date, date]:
    """The ``from``/``to`` of the query string (China days, inclusive), checked;
    both empty: the last DEFAULT_DAYS days up to today."""
    now_day = today(at)
    given = {k: (args.get(k) or "").strip()[:32] for k in ("from", "to")}
    last = _parse_day(given["to"], "结束日期") if given["to"] else now_day
    first = _parse_day(given["from"], "开始日期") if given["from"] else last - timedelta(days=DEFAULT_DAYS - 1)
    if last > now_day:
        raise DomainError(f"结束日期不能晚于今天（{now_day.isoformat()}）")
    if first > last:
        raise DomainError("开始日期不能晚于结束日期")
    if (last - first).days + 1 > MAX_DAYS:
        raise DomainError(f"日期范围最多 {MAX_DAYS} 天，请缩短范围")
    return first, last


# -- the page's report -------------------------------------------------------------

@dataclass
class UnitLine:
    unit_id: int
    name: str
    figures: UnitFigures

    def rate(self, part: int, whole: int) -> float | None:
        return None if not whole else part / whole


@dataclass
class Report:
    first: date
    last: date
    days: dict[date, DayFigures]
    total: DayFigures
    top_units: list[UnitLine]      # by net sales
    funnel: list[UnitLine]         # by visits
    funnel_total: UnitFigures = field(default_factory=UnitFigures)

    @property
    def refund_rate(self) -> float | None:
        return self.total.refunded_fen / self.total.paid_fen if self.total.paid_fen else None

    def series(self) -> dict:
        """What the charts draw (the page embeds it as JSON)."""
        def line(name):
            return [getattr(f, name) for f in self.days.values()]

        return {
            "days": [d.isoformat() for d in self.days],
            "net_fen": [f.net_fen for f in self.days.values()],
            **{name: line(name) for name in DAY_FIELDS},
            "top_units": [{"name": u.name, "net_fen": u.figures.net_fen, "paid_fen": u.figures.paid_fen,
                           "refunded_fen": u.figures.refunded_fen} for u in self.top_units],
            "funnel": [{"name": u.name, "visits": u.figures.visits, "visitors": u.figures.visitors,
                        "bound": u.figures.bound, "first_orders": u.figures.first_orders} for u in self.funnel],
        }


# -- the ranked units: the first few of tens of thousands -------------------------

@dataclass(frozen=True)
class _Part:
    """Stored unit rows of days ``first``..``last``: whole months from
    ``monthly_unit_stats`` (``first`` and ``last`` are months' first days), or
    single days from ``daily_unit_stats``."""
    monthly: bool
    first: date
    last: date

    @property
    def model(self):
        return MonthlyUnitStat if self.monthly else DailyUnitStat

    @property
    def key(self):
        return MonthlyUnitStat.month if self.monthly else DailyUnitStat.day

    def keys(self) -> list[date]:
        if not self.monthly:
            return _days(self.first, self.last)
        months, month = [], self.first
        while month <= self.last:
            months.append(month)
            month = _next_month(month)
        return months


def _stored_parts(first: date, last: date) -> list[_Part]:
    """What days first..last read: their whole months from the monthly
    rows, the days at either end from the daily ones."""
    if first > last:
        return []
    months = []
    month = _month_of(first) if first.day == 1 else _next_month(first)
    while _next_month(month) - timedelta(days=1) <= last:
        months.append(month)
        month = _next_month(month)
    if not months:
        return [_Part(False, first, last)]
    parts = [_Part(False, first, months[0] - timedelta(days=1)), _Part(True, months[0], months[-1]),
             _Part(False, _next_month(months[-1]), last)]
    return [p for p in parts if p.first <= p.last]


# How many units of each stored day or month a ranking reads first, by each figure it ranks
# on: a few times the length of the list shown, so that, with a shop's usual skew, the units
# read are enough to prove the ranking exact at once; more are read when they are not.
LEADERS_READ = 40


def _leaders(parts: list[_Part], figures: tuple[str, ...], limit: int) -> dict[tuple[str, object], list]:
    """For each figure of ``figures`` and each stored day or month of
    ``parts`` holding rows, its first ``limit`` (unit_id, figure) by that
    figure, largest first. On PostgreSQL a few rows of an index per day or
    month (a LATERAL join); elsewhere (SQLite, small) a window over the rows."""
    if not parts:
        return {}
    postgres = db.session.get_bind().dialect.name == "postgresql"
    queries = []
    for part in parts:
        model, key = part.model, part.key
        for n, name in enumerate(figures):
            figure = getattr(model, name)
            if postgres:
                keys = select(func.unnest(literal(part.keys(), postgresql.ARRAY(Date()))).label("k")).subquery("keys")
                first = (select(model.unit_id, figure.label("value")).where(key == keys.c.k)
                         .order_by(figure.desc()).limit(limit).lateral("first_rows"))
                queries.append(select(literal(n).label("figure"), keys.c.k, first.c.unit_id, first.c.value)
                               .select_from(keys.join(first, literal(True))))
            else:
                place = func.row_number().over(partition_by=key, order_by=figure.desc()).label("place")
                rows = select(key.label("k"), model.unit_id, figure.label("value"), place).where(
                    key >= part.first, key <= part.last).subquery()
                queries.append(select(literal(n).label("figure"), rows.c.k, rows.c.unit_id, rows.c.value)
                               .where(rows.c.place <= limit))
    runs: dict[tuple[str, object], list] = {}  # a day at either end is never in a month read whole
    for n, k, unit_id, value in db.session.execute(union_all(*queries) if len(queries) > 1 else queries[0]):
        runs.setdefault((figures[n], k), []).append((unit_id, int(value)))
    return {run: sorted(rows, key=lambda r: -r[1]) for run, rows in runs.items()}


class _UnitSums:
    """Units' exact figures over the range: their stored rows summed (a few
    units at a time, from the (unit_id, day) indexes) plus today's newest."""

    def __init__(self, parts: list[_Part], live: Mapping[int, UnitFigures]) -> None:
        self.parts, self.live, self.known = parts, live, {}

    def of(self, unit_ids: Iterable[int]) -> dict[int, UnitFigures]:
        missing = sorted(set(unit_ids) - set(self.known))
        if missing:
            stored = self._stored(missing)
            for unit_id in missing:
                figures = UnitFigures()
                for part in (stored.get(unit_id), self.live.get(unit_id)):
                    if part is not None:
                        figures.add(part)
                self.known[unit_id] = figures
        return self.known

    def _stored(self, unit_ids: list[int]) -> dict[int, UnitFigures]:
        if not self.parts:
            return {}
        selects = [select(p.model.unit_id, *[getattr(p.model, n) for n in UNIT_FIELDS])
                   .where(_among(p.model, unit_ids), p.key >= p.first, p.key <= p.last) for p in self.parts]
        rows = union_all(*selects).subquery() if len(selects) > 1 else selects[0].subquery()
        return {unit_id: UnitFigures(*[int(v or 0) for v in values]) for unit_id, *values in db.session.execute(
            select(rows.c.unit_id, *[func.sum(rows.c[n]) for n in UNIT_FIELDS]).group_by(rows.c.unit_id))}


@dataclass(frozen=True)
class _Ranking:
    """An order of units, largest ``score`` first (a tuple of figures,
    compared in order; then the smaller unit id). ``read`` are stored
    figures, one per place of ``score``, never smaller than it in any day
    (paid sales bound net sales; visits are visits). ``shown``: who may be
    listed; ``hidden_at_zero``: a unit whose ``read`` figures are all 0 on
    every day is not shown."""
    read: tuple[str, ...]
    score: Callable[[UnitFigures], tuple]
    shown: Callable[[UnitFigures], bool]
    hidden_at_zero: bool


BY_SALES = _Ranking(("paid_fen",), lambda f: (f.net_fen,), lambda f: bool(f.paid_fen or f.refunded_fen), False)
BY_REACH = _Ranking(("visits", "bound", "first_orders"), lambda f: (f.visits, f.bound, f.first_orders),
                    lambda f: bool(f.visits or f.bound or f.first_orders), True)


def _ranked(ranking: _Ranking, count: int, parts: list[_Part], live: Mapping[int, UnitFigures],
            sums: _UnitSums) -> list[int]:
    """The first ``count`` units by ``ranking`` over the stored parts plus
    today's newest rows, exactly, without summing every unit (Fagin's
    threshold algorithm): read each day's (month's, today's) first units by
    each figure of ``ranking.read``. A unit read nowhere has, for each of
    them, at most the sum over the days of the last figure read there (0
    where every row was read) — so once the last unit chosen among those
    read scores more than those sums, no other can take its place.
    Otherwise read further, down to every row if need be."""
    limit, read = max(LEADERS_READ, count), ranking.read[:1]  # the first figure alone settles most lists
    while True:
        runs = _leaders(parts, read, limit)
        for name in read:
            runs[(name, "live")] = sorted(((u, getattr(f, name)) for u, f in live.items()), key=lambda r: -r[1])[:limit]
        candidates, unread_at_most = set(), {name: 0 if name in read else math.inf for name in ranking.read}
        for (name, _), run in runs.items():
            candidates.update(unit_id for unit_id, _ in run)
            if len(run) == limit:  # the day may hold more rows
                unread_at_most[name] += max(run[-1][1], 0)
        bound = tuple(unread_at_most.values())
        figures = sums.of(candidates)
        chosen = sorted((u for u in candidates if ranking.shown(figures[u])),
                        key=lambda u: (tuple(-v for v in ranking.score(figures[u])), u))[:count]
        if not any(bound) and (ranking.hidden_at_zero or all(len(run) < limit for run in runs.values())):
            return chosen  # every unit that can be shown was read
        if len(chosen) == count and ranking.score(figures[chosen[-1]]) > bound:
            return chosen
        if read != ranking.read:
            read = ranking.read
        else:
            limit *= 8


def report(first: date, last: date, at: datetime | None = None) -> Report:
    """The figures of days first..last: past days from the table (stale ones
    recomputed first: the caller commits), today's stored part plus its
    newest rows."""
    at = at or now()
    now_day = today(at)
    refresh(first, last, at)
    past_last = min(last, now_day - timedelta(days=1))
    days = {d: DayFigures() for d in _days(first, last)}
    if first <= past_last:
        columns = [getattr(DailyStat, name) for name in DAY_FIELDS]
        for day, *values in db.session.execute(select(DailyStat.day, *columns)
                                               .where(DailyStat.day >= first, DailyStat.day <= past_last)):
            days[_as_date(day)] = DayFigures(*values)
    live: dict[int, UnitFigures] = {}
    if last >= now_day:
        days[now_day], live = _today(now_day, at)
    total = DayFigures()
    for figures in days.values():
        total.add(figures)
    parts = _stored_parts(first, past_last) + ([_Part(False, now_day, now_day)] if last >= now_day else [])
    sums = _UnitSums(parts, live)
    top = _ranked(BY_SALES, TOP_UNITS, parts, live, sums)
    funnel = _ranked(BY_REACH, FUNNEL_UNITS, parts, live, sums)
    units = sums.known
    names = _unit_names(set(top) | set(funnel))
    line = lambda u: UnitLine(u, names.get(u, f"单元 {u}"), units[u])  # noqa: E731
    funnel_total = UnitFigures(**{name: getattr(total, name) for name in UNIT_FIELDS})
    return Report(first, last, days, total, [line(u) for u in top], [line(u) for u in funnel], funnel_total)


# -- today: a stored part, and the rows since ---------------------------------------

SNAPSHOT_EVERY = timedelta(minutes=5)


def _covered(row: DailyStat, start: datetime) -> datetime:
    """How far a row of today reaches: rows stamped before this are in it
    (SETTLE_MARGIN before it was counted, for transactions still committing)."""
    return max(start, row.computed_at - SETTLE_MARGIN)


def _today(day: date, at: datetime) -> tuple[DayFigures, dict[int, UnitFigures]]:
    """Today's figures, exact: the stored part of today (counted again, by
    adding the rows since, when older than SNAPSHOT_EVERY) plus the rows
    stamped after it, counted live — a few minutes of rows, whatever the
    size of the shop. Returns the day's figures and the units of the rows
    since (the units' stored part is read with the past days'). The stored
    part stays as read until the page commits: a page refreshing it waits."""
    start, _ = _span(day, day)
    row = db.session.get(DailyStat, day)
    if row is None or at - row.computed_at >= SNAPSHOT_EVERY:
        row = _snapshot_today(day, at)
    else:
        row = db.session.scalars(select(DailyStat).where(DailyStat.day == day).with_for_update(read=True)
                                 .execution_options(populate_existing=True)).one()
    figures = DayFigures(**{name: getattr(row, name) for name in DAY_FIELDS})
    live_days, live_units = compute(day, day, since=_covered(row, start))
    figures.add(live_days[day])
    return figures, {unit_id: extra for (_, unit_id), extra in live_units.items()}


def _snapshot_today(day: date, at: datetime) -> DailyStat:
    """Add today's rows stamped since the stored part to it, under the row's
    lock (two pages at once add them once). Flushes; the caller commits."""
    from models.base import insert_ignoring_conflict

    start, _ = _span(day, day)
    db.session.execute(insert_ignoring_conflict(DailyStat, {"day": day, "computed_at": start,
                                                            **dict.fromkeys(DAY_FIELDS, 0)}, ["day"]))
    row = db.session.scalars(select(DailyStat).where(DailyStat.day == day).with_for_update()
                             .execution_options(populate_existing=True)).one()
    since, until = _covered(row, start), at - SETTLE_MARGIN
    if until <= since:
        return row
    days, units = compute(day, day, since=since, until=until)
    for name in DAY_FIELDS:
        setattr(row, name, getattr(row, name) + getattr(days[day], name))
    row.computed_at = at
    if units:
        dialect = db.session.get_bind().dialect.name
        insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(DailyUnitStat)
        db.session.execute(
            insert.on_conflict_do_update(index_elements=["day", "unit_id"],
                                         set_={n: getattr(DailyUnitStat, n) + insert.excluded[n] for n in UNIT_FIELDS}),
            [dict(day=day, unit_id=unit_id, **vars(extra)) for (_, unit_id), extra in units.items()])
    db.session.flush()
    return row


def _unit_names(ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    return dict(db.session.execute(select(Unit.id, Unit.name).where(Unit.id.in_(ids))).all())


def nightly() -> tuple[date, date, int]:
    """The timetabled recount of yesterday (app/cron.py), in the worker's app context."""
    try:
        result = rebuild()
        db.session.commit()
        return result
    finally:
        db.session.rollback()  # the worker's session serves the next job too


def rebuild(from_text: str | None = None, to_text: str | None = None, at: datetime | None = None,
            ) -> tuple[date, date, int]:
    """``stats rebuild``: count days from..to (both yesterday by default: a
    nightly job) again from the rows, any length (a month of rows at a
    time). Today is never stored whole."""
    yesterday = today(at) - timedelta(days=1)
    first = _parse_day(from_text.strip()[:32], "开始日期") if from_text else yesterday
    last = _parse_day(to_text.strip()[:32], "结束日期") if to_text else yesterday
    if last > yesterday:
        raise DomainError(f"只能重算已经过去的日子：结束日期最晚是昨天（{yesterday.isoformat()}）")
    if first > last:
        raise DomainError("开始日期不能晚于结束日期")
    return first, last, recompute(first, last, at)
