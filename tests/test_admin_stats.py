"""Statistics (统计): on generated rows spread over ten China days, every
figure the page shows equals a plain SQL sum over the rows behind it, day by
day and in total, per unit too; past days come from the pre-aggregated
table and agree with the rows; a refund on a later day counts on that day; a
stale day is counted again; bad ranges are refused in Chinese and write
nothing; only the roles with stats.view may look."""
from __future__ import annotations

import itertools
import json
import random
import re
import threading
from datetime import date, datetime, time, timedelta

import pytest
from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.orm import aliased

from admin_helpers import make_staff, staff_browser  # noqa: F401  (fixtures)
from conftest import needs_postgres
from distribution_helpers import make_distributor
from handlers import outbox
from handlers import stats as figures
from handlers.clock import CHINA, now
from models import (CommissionRow, DailyStat, DailyUnitStat, Distributor, Order, OrderLine, Product,
                    ReferralTouch, Refund, Unit, UnitVisit, User, Withdrawal, db)

_seq = itertools.count(1)
DAYS = 10


def day_start(d: date) -> datetime:
    return datetime.combine(d, time(), CHINA)


def moment(rng: random.Random, d: date, at: datetime) -> datetime:
    """An instant of China day ``d`` no later than ``at``: often right at
    either edge of the day, to catch an off-by-eight-hours."""
    start = day_start(d)
    end = min(start + timedelta(days=1), at)
    edge = rng.random()
    if edge < 0.1:
        return start
    if edge < 0.2 and end == start + timedelta(days=1):
        return end - timedelta(microseconds=1)
    return start + (end - start) * rng.random()


def merchant_unit_id() -> int:
    return db.session.scalars(select(Unit.id).where(Unit.distributor_id.is_(None))).first()


def make_order(unit_id: int, paid_at: datetime | None, total_fen: int, buyer_id: int | None = None,
               guest: str | None = None, distributor_id: int | None = None, status: str = "paid") -> Order:
    n = next(_seq)
    created = (paid_at or now()) - timedelta(minutes=3)
    row = Order(order_no=f"S{n:012d}", unit_id=unit_id, buyer_id=buyer_id,
                guest_mobile=guest if buyer_id is None else None, distributor_id=distributor_id,
                status=status if paid_at else "pending", goods_fen=total_fen, total_fen=total_fen,
                receiver_name="张三", receiver_mobile="13800138000", receiver_address="上海市徐汇区漕溪北路 1 号",
                created_at=created, expires_at=created + timedelta(minutes=30), paid_at=paid_at)
    db.session.add(row)
    return row


def make_refund(order: Order, amount_fen: int, finished_at: datetime | None, status: str = "succeeded",
                origin: str = "merchant") -> Refund:
    row = Refund(order_id=order.id, origin=origin, partial=True, out_refund_no=f"R{next(_seq):012d}",
                 amount_fen=amount_fen, reason="测试", status=status, finished_at=finished_at,
                 created_at=(finished_at or now()) - timedelta(minutes=1))
    db.session.add(row)
    return row


def make_user_at(rng: random.Random, at: datetime, contact: str, referrer: User | None = None,
                 attributed_at: datetime | None = None) -> User:
    user = User(openid=f"oSTAT{next(_seq):08d}{'y' * 12}", first_contact=contact, created_at=at,
                subscription="never" if contact == "oauth" else "subscribed",
                subscribed_at=None if contact == "oauth" else at,
                referrer_id=referrer.id if referrer else None, source="qr" if referrer else "organic",
                attributed_at=attributed_at if referrer else None)
    db.session.add(user)
    return user


@pytest.fixture
def world(app):
    return generate(DAYS)


def generate(n_days: int) -> dict:
    """``n_days`` China days of a shop, today's up to now: orders paid and not,
    signed-in buyers (some buying again) and guests, refunds finished the
    same day, days later or not at all, automatic ones; users by every
    door, customers bound, distributors; commission accrued, settled and
    clawed back; withdrawals paid and not; visits and referral touches."""
    rng = random.Random(20261201)
    at = now()
    today = figures.today(at)
    first = today - timedelta(days=n_days - 1)
    d1, d2 = make_distributor("甲"), make_distributor("乙")
    units = [merchant_unit_id(), d1.unit.id, d2.unit.id]
    product = Product(name="山茶花礼盒", price_fen=990, stock=100)
    db.session.add(product)
    db.session.flush()
    buyers = [make_user_at(rng, day_start(first) - timedelta(days=3), "subscribe") for _ in range(6)]
    db.session.flush()
    orders = []
    for d in (first + timedelta(days=n) for n in range(n_days)):
        for _ in range(rng.randint(3, 9)):
            paid = rng.random() < 0.85
            who = rng.random()
            o = make_order(rng.choice(units), moment(rng, d, at) if paid else None, rng.randint(100, 99999),
                           buyer_id=rng.choice(buyers).id if who < 0.6 else None,
                           guest=f"1390000{rng.randint(0, 3):04d}", distributor_id=rng.choice([None, d1.id, d2.id]))
            orders.append(o)
        for _ in range(rng.randint(1, 4)):
            contact = rng.choice(["subscribe", "scan", "message", "oauth"])
            when = moment(rng, d, at)
            bound = rng.random() < 0.5
            make_user_at(rng, when, contact, referrer=rng.choice([d1, d2]).user if bound else None,
                         attributed_at=when + (at - when) * rng.random() if bound else None)
        for _ in range(rng.randint(0, 12)):
            who = rng.choice(buyers)
            db.session.add(UnitVisit(unit_id=rng.choice(units), user_id=who.id, visitor=f"u{who.id}",
                                     at=moment(rng, d, at)))
        for _ in range(rng.randint(0, 3)):
            db.session.add(ReferralTouch(user_id=rng.choice(buyers).id, unit_id=rng.choice(units[1:]), source="qr",
                                         token="t", outcome=rng.choice(["bound", "bound", "already"]),
                                         at=moment(rng, d, at)))
    db.session.flush()
    paid = [o for o in orders if o.paid_at]
    for o in paid:
        roll = rng.random()
        later = o.paid_at + (at - o.paid_at) * rng.random()
        if roll < 0.15:
            make_refund(o, o.total_fen, o.paid_at + (at - o.paid_at) * 0.01)     # the same day, mostly
        elif roll < 0.35:
            make_refund(o, rng.randint(1, o.total_fen), later)                  # any later day
        elif roll < 0.40:
            make_refund(o, o.total_fen, later, origin="auto")                   # never a sale
        elif roll < 0.45:
            make_refund(o, o.total_fen, None, status=rng.choice(["pending", "abnormal"]))
        if rng.random() < 0.6:
            line = OrderLine(order_id=o.id, product_id=product.id, name="礼盒", unit_price_fen=o.total_fen,
                             quantity=1, amount_fen=o.total_fen, level1_rate_bp=1000)
            db.session.add(line)
            db.session.flush()
            amount = o.total_fen // 10
            settled = o.paid_at + (at - o.paid_at) * rng.random() if rng.random() < 0.5 else None
            db.session.add(CommissionRow(distributor_id=d1.id, order_id=o.id, order_line_id=line.id, level=1,
                                         base_fen=o.total_fen, rate_bp=1000, amount_fen=amount,
                                         state="withdrawable" if settled else "frozen", created_at=o.paid_at,
                                         settled_at=settled))
            if settled and rng.random() < 0.3:
                db.session.add(CommissionRow(distributor_id=d1.id, order_id=o.id, order_line_id=line.id, level=1,
                                             kind="clawback", base_fen=o.total_fen, rate_bp=1000,
                                             amount_fen=-max(1, amount // 2), state="withdrawable",
                                             created_at=settled, settled_at=settled))
    for status in ("paid", "paid", "paid", "requested", "rejected"):
        when = moment(rng, first + timedelta(days=rng.randrange(n_days)), at)
        db.session.add(Withdrawal(distributor_id=rng.choice([d1, d2]).id, request_key=f"k{next(_seq)}",
                                  amount_fen=rng.randint(100, 5000), fee_fen=0, status=status,
                                  requested_at=when - timedelta(hours=1),
                                  decided_at=when if status != "requested" else None))
    outbox.commit()
    return {"first": first, "today": today, "at": at, "units": units}


# -- the SQL the page's figures must equal ------------------------------------------

def sql_day(d: date) -> dict:
    """Day ``d``'s figures, each a plain SUM or COUNT over a WHERE on instants."""
    start, end = day_start(d), day_start(d + timedelta(days=1))

    earlier = aliased(Order)

    def one(query):
        return int(db.session.scalar(query) or 0)

    kept = (Refund.status == "succeeded", Refund.origin != "auto", Refund.finished_at >= start,
            Refund.finished_at < end)
    return {
        "paid_fen": one(select(func.sum(Order.total_fen)).where(Order.paid_at >= start, Order.paid_at < end)),
        "orders_paid": one(select(func.count()).where(Order.paid_at >= start, Order.paid_at < end)),
        "refunded_fen": one(select(func.sum(Refund.amount_fen)).where(*kept)),
        "new_users": one(select(func.count()).where(User.created_at >= start, User.created_at < end)),
        "new_followers": one(select(func.count()).where(User.created_at >= start, User.created_at < end,
                                                        User.first_contact != "oauth")),
        "new_customers": one(select(func.count()).where(User.attributed_at >= start, User.attributed_at < end)),
        "new_distributors": one(select(func.count()).where(Distributor.approved_at >= start,
                                                           Distributor.approved_at < end)),
        "commission_accrued_fen": one(select(func.sum(CommissionRow.amount_fen)).where(
            CommissionRow.kind == "commission", CommissionRow.created_at >= start, CommissionRow.created_at < end)),
        "commission_settled_fen": one(select(func.sum(CommissionRow.amount_fen)).where(
            CommissionRow.settled_at >= start, CommissionRow.settled_at < end)),
        "withdrawals_paid_fen": one(select(func.sum(Withdrawal.amount_fen)).where(
            Withdrawal.status == "paid", Withdrawal.decided_at >= start, Withdrawal.decided_at < end)),
        "visits": one(select(func.count()).where(UnitVisit.at >= start, UnitVisit.at < end)),
        "visitors": one(select(func.count()).select_from(
            select(UnitVisit.unit_id, UnitVisit.visitor).where(UnitVisit.at >= start, UnitVisit.at < end)
            .distinct().subquery())),
        "bound": one(select(func.count()).where(ReferralTouch.outcome == "bound", ReferralTouch.unit_id.is_not(None),
                                                ReferralTouch.at >= start, ReferralTouch.at < end)),
        "first_orders": one(select(func.count()).where(Order.paid_at >= start, Order.paid_at < end, ~exists().where(
            earlier.paid_at.is_not(None),
            or_(and_(Order.buyer_id.is_not(None), earlier.buyer_id == Order.buyer_id),
                and_(Order.buyer_id.is_(None), earlier.buyer_id.is_(None), earlier.guest_mobile == Order.guest_mobile)),
            or_(earlier.paid_at < Order.paid_at, and_(earlier.paid_at == Order.paid_at, earlier.id < Order.id))))),
    }


def sql_units(first: date, last: date) -> dict[int, dict]:
    """Each unit's figures over the range, from the rows (first orders found
    by looking at every buyer's paid orders in Python)."""
    start, end = day_start(first), day_start(last + timedelta(days=1))
    out: dict[int, dict] = {}

    def put(unit_id, name, value):
        out.setdefault(unit_id, dict.fromkeys(figures.UNIT_FIELDS, 0))[name] += int(value or 0)

    for unit_id, total, count in db.session.execute(
            select(Order.unit_id, func.sum(Order.total_fen), func.count())
            .where(Order.paid_at >= start, Order.paid_at < end).group_by(Order.unit_id)):
        put(unit_id, "paid_fen", total)
        put(unit_id, "orders_paid", count)
    for unit_id, total in db.session.execute(
            select(Order.unit_id, func.sum(Refund.amount_fen)).join(Order, Order.id == Refund.order_id)
            .where(Refund.status == "succeeded", Refund.origin != "auto", Refund.finished_at >= start,
                   Refund.finished_at < end).group_by(Order.unit_id)):
        put(unit_id, "refunded_fen", total)
    for visit in db.session.scalars(select(UnitVisit).where(UnitVisit.at >= start, UnitVisit.at < end)):
        put(visit.unit_id, "visits", 1)
    seen = {(v.unit_id, v.visitor, v.at.astimezone(CHINA).date())
            for v in db.session.scalars(select(UnitVisit).where(UnitVisit.at >= start, UnitVisit.at < end))}
    for unit_id, _, _ in seen:
        put(unit_id, "visitors", 1)
    for unit_id, count in db.session.execute(
            select(ReferralTouch.unit_id, func.count()).where(ReferralTouch.outcome == "bound",
                                                              ReferralTouch.at >= start, ReferralTouch.at < end)
            .group_by(ReferralTouch.unit_id)):
        put(unit_id, "bound", count)
    firsts = {}
    for o in db.session.scalars(select(Order).where(Order.paid_at.is_not(None)).order_by(Order.paid_at, Order.id)):
        firsts.setdefault(("u", o.buyer_id) if o.buyer_id else ("g", o.guest_mobile), o)
    for o in firsts.values():
        if start <= o.paid_at < end:
            put(o.unit_id, "first_orders", 1)
    return out


def page_data(page: str) -> dict:
    found = re.search(r'<script type="application/json" id="stats-data">(.*?)</script>', page, re.S)
    assert found, "no chart data on the page"
    return json.loads(found.group(1))


def card(page: str, name: str) -> tuple[str, str]:
    found = re.search(rf'data-card="{name}">\s*<div class="ad-stat__label">[^<]*</div>\s*'
                      r'<div class="ad-stat__value">([^<]*)</div>\s*(?:<div class="ad-stat__sub">([^<]*)</div>)?', page)
    assert found, f"no card {name}"
    return found.group(1).strip(), (found.group(2) or "").strip()


def money(fen: int) -> str:
    return f"¥{'-' if fen < 0 else ''}{abs(fen) // 100}.{abs(fen) % 100:02d}"


def stats_url(base: str, first: date, last: date) -> str:
    return f"{base}/admin/stats?from={first.isoformat()}&to={last.isoformat()}"


def assert_page_equals_rows(page: str, first: date, last: date) -> None:
    data = page_data(page)
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    assert data["days"] == [d.isoformat() for d in days]
    expected = {d: sql_day(d) for d in days}
    for name in figures.DAY_FIELDS:
        assert data[name] == [expected[d][name] for d in days], name
    assert data["net_fen"] == [expected[d]["paid_fen"] - expected[d]["refunded_fen"] for d in days]
    total = {name: sum(e[name] for e in expected.values()) for name in figures.DAY_FIELDS}
    net = total["paid_fen"] - total["refunded_fen"]
    assert card(page, "net_sales") == (money(net), f"销售 {money(total['paid_fen'])} − 退款 {money(total['refunded_fen'])}")
    assert card(page, "orders_paid")[0] == str(total["orders_paid"])
    rate = f"{total['refunded_fen'] * 100 / total['paid_fen']:.1f}%" if total["paid_fen"] else "—"
    assert card(page, "refund_rate")[0] == rate
    assert card(page, "new_followers") == (str(total["new_followers"]), f"新用户 {total['new_users']} 人")
    assert card(page, "new_customers")[0] == str(total["new_customers"])
    assert card(page, "new_distributors")[0] == str(total["new_distributors"])
    assert card(page, "commission_accrued")[0] == money(total["commission_accrued_fen"])
    assert card(page, "commission_settled")[0] == money(total["commission_settled_fen"])
    assert card(page, "withdrawals_paid")[0] == money(total["withdrawals_paid_fen"])
    units = sql_units(first, last)
    names = dict(db.session.execute(select(Unit.id, Unit.name)).all())
    selling = sorted((u for u, f in units.items() if f["paid_fen"] or f["refunded_fen"]),
                     key=lambda u: (-(units[u]["paid_fen"] - units[u]["refunded_fen"]), u))[:figures.TOP_UNITS]
    assert data["top_units"] == [{"name": names[u], "net_fen": units[u]["paid_fen"] - units[u]["refunded_fen"],
                                  "paid_fen": units[u]["paid_fen"], "refunded_fen": units[u]["refunded_fen"]}
                                 for u in selling]
    reached = sorted((u for u, f in units.items() if f["visits"] or f["bound"] or f["first_orders"]),
                     key=lambda u: (-units[u]["visits"], -units[u]["bound"], -units[u]["first_orders"], u))
    funnel = [{"name": names[u], **{k: units[u][k] for k in ("visits", "visitors", "bound", "first_orders")}}
              for u in reached[:figures.FUNNEL_UNITS]]
    assert data["funnel"] == funnel
    if funnel:  # the "all units" line: every unit's funnel, not only the ones listed
        found = re.search(r'<tr id="st-funnel-total"><th>全部单元</th>' + r'<th class="num">([^<]*)</th>' * 5, page)
        assert found, "no funnel total"
        whole = {k: sum(f[k] for f in units.values()) for k in ("visits", "visitors", "bound", "first_orders")}
        assert [found.group(n) for n in (1, 2, 3, 5)] == [str(whole[k]) for k in ("visits", "visitors", "bound",
                                                                                   "first_orders")]


# -- the tests -----------------------------------------------------------------------

def test_every_figure_equals_the_sql_sums_over_its_rows(world, base, staff_browser):
    browser = staff_browser("owner")
    url = stats_url(base, world["first"], world["today"])
    page = browser.get(url)
    assert page.status_code == 200, page.text
    assert "统计" in page.text and "echarts-6.1.0.min.js" in page.text
    assert_page_equals_rows(page.text, world["first"], world["today"])
    # The past days are now kept, each equal to its rows; today in part (rows since are counted live).
    db.session.expire_all()
    stored = {row.day: row for row in db.session.scalars(select(DailyStat))}
    assert set(stored) == {world["first"] + timedelta(days=n) for n in range(DAYS)}
    for d, row in stored.items():
        if d != world["today"]:
            assert {name: getattr(row, name) for name in figures.DAY_FIELDS} == sql_day(d)
    # Read again from the table: the same figures, nothing counted again (but for yesterday in the first
    # SETTLE_MARGIN after China's midnight, which is counted again on each view until it has settled).
    settling = set(figures.stale_days(world["first"], world["today"]))
    computed = {d: r.computed_at for d, r in stored.items() if d not in settling}
    again = browser.get(url).text
    assert_page_equals_rows(again, world["first"], world["today"])
    db.session.expire_all()
    assert {r.day: r.computed_at for r in db.session.scalars(select(DailyStat)) if r.day not in settling} == computed
    # A range of past days only, and a single day.
    past = world["today"] - timedelta(days=3)
    assert_page_equals_rows(browser.get(stats_url(base, world["first"], past)).text, world["first"], past)
    assert_page_equals_rows(browser.get(stats_url(base, past, past)).text, past, past)


def test_whole_months_are_read_from_their_monthly_sums(app, base, staff_browser):
    """Over 75 days the units' figures come from whole months plus the days
    at either end; they still equal the rows, for ranges cut anywhere."""
    made = generate(75)
    browser = staff_browser("owner")
    today, first = made["today"], made["first"]
    month = today.replace(day=1) - timedelta(days=1)
    month = month.replace(day=1)  # last month: whole, in the past
    for a, b in ((first, today), (month, month + timedelta(days=40) if month + timedelta(days=40) <= today else today),
                 (first, month - timedelta(days=1)), (first + timedelta(days=3), today - timedelta(days=2))):
        page = browser.get(stats_url(base, a, b))
        assert page.status_code == 200
        assert_page_equals_rows(page.text, a, b)
    db.session.expire_all()
    from models import MonthlyUnitStat

    stored = db.session.scalars(select(MonthlyUnitStat).where(MonthlyUnitStat.month == month)).all()
    assert stored and sum(r.paid_fen for r in stored) == sum(
        sql_day(month + timedelta(days=n))["paid_fen"] for n in range((today.replace(day=1) - month).days))


def test_a_unit_never_among_any_days_first_still_leads_the_ranking(app, base, staff_browser, monkeypatch):
    """The rankings read only each day's first units (LEADERS_READ of them)
    and prove the list exact or read further: a unit that is only third on
    every day, but first over the range, still leads both lists."""
    monkeypatch.setattr(figures, "LEADERS_READ", 2)
    monkeypatch.setattr(figures, "TOP_UNITS", 1)
    monkeypatch.setattr(figures, "FUNNEL_UNITS", 1)
    today = figures.today()
    days = [today - timedelta(days=n) for n in (3, 2, 1)]
    steady, *others = [make_distributor(name).unit.id for name in ("稳", "甲", "乙", "丙", "丁", "戊", "己")]
    for n, d in enumerate(days):
        at = day_start(d) + timedelta(hours=12)
        big, small = others[2 * n], others[2 * n + 1]
        for unit_id, fen, visits in ((big, 10000, 5), (small, 5000, 3), (steady, 4000, 2)):
            make_order(unit_id, at, fen, guest=f"1390001{next(_seq) % 10000:04d}")
            for v in range(visits):
                db.session.add(UnitVisit(unit_id=unit_id, visitor=f"g{unit_id}-{n}-{v}", at=at))
    outbox.commit()
    page = staff_browser("owner").get(stats_url(base, days[0], days[-1])).text
    data = page_data(page)
    name = db.session.get(Unit, steady).name
    assert [u["name"] for u in data["top_units"]] == [name] and data["top_units"][0]["net_fen"] == 12000
    assert [u["name"] for u in data["funnel"]] == [name] and data["funnel"][0]["visits"] == 6
    assert_page_equals_rows(page, days[0], days[-1])


def test_the_default_range_is_the_last_thirty_days(world, base, staff_browser):
    page = staff_browser("finance").get(f"{base}/admin/stats").text
    first = world["today"] - timedelta(days=figures.DEFAULT_DAYS - 1)
    assert page_data(page)["days"][0] == first.isoformat()
    assert_page_equals_rows(page, first, world["today"])


def test_a_refund_on_a_later_day_counts_on_that_day(app, base, staff_browser):
    at = now()
    today = figures.today(at)
    paid_day = today - timedelta(days=2)
    order = make_order(merchant_unit_id(), day_start(paid_day) + timedelta(hours=23, minutes=59), 10000,
                       guest="13900001111")
    outbox.commit()
    browser = staff_browser("owner")
    url = stats_url(base, paid_day, today)
    before = page_data(browser.get(url).text)
    assert before["paid_fen"] == [10000, 0, 0] and before["refunded_fen"] == [0, 0, 0]
    # Refunded today (the gateway's answer arrives now): today's net goes
    # negative, the day it was paid keeps its sale.
    make_refund(order, 10000, now())
    outbox.commit()
    after = browser.get(url).text
    data = page_data(after)
    assert data["paid_fen"] == [10000, 0, 0] and data["refunded_fen"] == [0, 0, 10000]
    assert data["net_fen"] == [10000, 0, -10000]
    assert card(after, "net_sales")[0] == "¥0.00"
    assert card(after, "refund_rate")[0] == "100.0%"
    assert_page_equals_rows(after, paid_day, today)
    # Tomorrow, today is a past day: counted from the rows and kept, refund and all.
    tomorrow = day_start(today + timedelta(days=1)) + timedelta(hours=1)
    report = figures.report(paid_day, today + timedelta(days=1), at=tomorrow)
    outbox.commit()
    assert [d.net_fen for d in report.days.values()] == [10000, 0, -10000, 0]
    assert db.session.get(DailyStat, today).refunded_fen == 10000


def test_today_is_a_stored_part_plus_the_rows_since(app):
    """Today's figures: a stored part, brought up to date every few minutes
    by adding the rows since, and the newest rows counted live. A row
    stamped before the stored part was counted but committed after (its
    transaction was slow) is still counted, once; so is a visitor who came
    back after the stored part."""
    day = figures.today() - timedelta(days=2)  # played as "today", at moments of our choosing
    start = day_start(day)
    unit = merchant_unit_id()

    def order_at(at, fen):
        make_order(unit, at, fen, guest=f"1390000{next(_seq) % 10000:04d}")
        db.session.add(UnitVisit(unit_id=unit, visitor="guest-a", at=at))
        outbox.commit()

    def page(at):
        found = figures.report(day, day, at=at)
        outbox.commit()
        return found

    def truth():
        return sql_day(day)["paid_fen"], db.session.scalar(select(func.count(UnitVisit.visitor.distinct())))

    order_at(start + timedelta(hours=1), 100)
    at1 = start + timedelta(hours=10)
    assert page(at1).total.paid_fen == 100                       # the stored part: rows before at1 - margin
    order_at(at1 - timedelta(minutes=3), 20)                      # committed late, stamped inside the margin
    order_at(at1 + timedelta(minutes=1), 3)
    got = page(at1 + timedelta(minutes=2))                        # no new part yet: the rest live
    assert (got.total.paid_fen, got.funnel[0].figures.visitors) == truth() == (123, 1)
    at3 = at1 + timedelta(minutes=30)
    order_at(at3 - timedelta(minutes=1), 4000)
    got = page(at3 + timedelta(minutes=1))                        # a new part: the rows since added once
    assert db.session.get(DailyStat, day).computed_at == at3 + timedelta(minutes=1)
    assert (got.total.paid_fen, got.total.orders_paid, got.funnel[0].figures.visits) == (4123, 4, 4)
    assert got.funnel[0].figures.visitors == 1 and got.funnel[0].figures.first_orders == 4
    again = page(at3 + timedelta(hours=2))
    assert again.total.paid_fen == 4123 and again.funnel[0].figures.visits == 4


def test_a_day_counted_just_after_midnight_is_counted_again(app):
    """A payment committed a moment after midnight but stamped 23:59:59
    (its transaction began before) would be missed by a count made at
    00:01: a row counted within SETTLE_MARGIN of its day's end is stale."""
    at = now()
    day = figures.today(at) - timedelta(days=3)
    end = day_start(day + timedelta(days=1))
    assert figures.recompute(day, day, at=end + timedelta(minutes=1)) == 1
    outbox.commit()
    make_order(merchant_unit_id(), end - timedelta(seconds=1), 4321, guest="13900002222")
    outbox.commit()
    assert figures.stale_days(day, day, at=end + timedelta(minutes=5)) == [day]
    report = figures.report(day, day, at=end + timedelta(minutes=30))
    outbox.commit()
    assert report.total.paid_fen == 4321
    assert figures.stale_days(day, day, at=end + timedelta(minutes=40)) == []


def test_stats_rebuild_counts_days_again_from_the_rows(app, world):
    from app.cli_stats import stats_cli

    runner = app.test_cli_runner()
    yesterday = world["today"] - timedelta(days=1)
    figures.report(world["first"], world["today"])
    outbox.commit()
    # Rows written behind the table's back (an import): the table is wrong until rebuilt.
    make_order(merchant_unit_id(), day_start(world["first"]) + timedelta(hours=2), 55500, guest="13900003333")
    outbox.commit()
    kept = db.session.get(DailyStat, world["first"])
    assert kept.paid_fen == sql_day(world["first"])["paid_fen"] - 55500
    done = runner.invoke(stats_cli, ["rebuild", "--from", world["first"].isoformat()])
    assert done.exit_code == 0, done.output
    assert f"{DAYS - 1} day(s) counted again" in done.output
    db.session.expire_all()
    for d in (world["first"] + timedelta(days=n) for n in range(DAYS - 1)):
        row = db.session.get(DailyStat, d)
        assert {name: getattr(row, name) for name in figures.DAY_FIELDS} == sql_day(d)
    # Twice is the same.
    rows_before = db.session.execute(select(DailyUnitStat).order_by(DailyUnitStat.day, DailyUnitStat.unit_id)
                                     ).scalars().all()
    snapshot = [(r.day, r.unit_id, r.paid_fen, r.visits, r.first_orders) for r in rows_before]
    assert runner.invoke(stats_cli, ["rebuild", "--from", world["first"].isoformat(),
                                     "--to", yesterday.isoformat()]).exit_code == 0
    db.session.expire_all()
    assert [(r.day, r.unit_id, r.paid_fen, r.visits, r.first_orders) for r in db.session.scalars(
        select(DailyUnitStat).order_by(DailyUnitStat.day, DailyUnitStat.unit_id))] == snapshot
    nightly = runner.invoke(stats_cli, ["rebuild"])
    assert nightly.exit_code == 0 and f"1 day(s) counted again: {yesterday} .. {yesterday}" in nightly.output
    for args, message in ((["rebuild", "--from", "昨天"], "格式"),
                          (["rebuild", "--from", yesterday.isoformat(), "--to", world["today"].isoformat()], "最晚是昨天"),
                          (["rebuild", "--from", yesterday.isoformat(), "--to", world["first"].isoformat()],
                           "不能晚于")):
        refused = runner.invoke(stats_cli, args)
        assert refused.exit_code != 0 and message in refused.output, refused.output


def test_a_rebuild_drops_a_unit_left_with_nothing_from_its_day_and_month(app):
    """Counted again, a day loses the row of a unit whose only visit is gone
    (rows deleted behind the table's back), and so does its month."""
    from models import MonthlyUnitStat

    day = figures.today() - timedelta(days=3)
    unit = merchant_unit_id()
    visit = UnitVisit(unit_id=unit, visitor="guest-z", at=day_start(day) + timedelta(hours=1))
    db.session.add(visit)
    outbox.commit()
    figures.recompute(day, day)
    outbox.commit()
    month = day.replace(day=1)
    assert db.session.get(DailyUnitStat, (day, unit)).visits == 1
    assert db.session.get(MonthlyUnitStat, (month, unit)).visits == 1
    db.session.delete(visit)
    outbox.commit()
    figures.rebuild(day.isoformat(), day.isoformat())
    outbox.commit()
    db.session.expire_all()
    assert db.session.get(DailyUnitStat, (day, unit)) is None
    assert db.session.get(MonthlyUnitStat, (month, unit)) is None
    assert db.session.get(DailyStat, day).visits == 0


@pytest.mark.parametrize("query, message", [
    ("from=2026-12-10&to=2026-12-01", "开始日期不能晚于结束日期"),
    ("from=2020-01-01&to=2022-01-01", "日期范围最多 366 天"),
    ("from=abc", "开始日期的格式应为 年-月-日"),
    ("to=2026-13-01", "结束日期的格式应为 年-月-日"),
    ("from=%EF%BC%92%EF%BC%90%EF%BC%92%EF%BC%96-01-01", "开始日期的格式"),
    ("from=' OR 1=1 --", "开始日期的格式"),
    ("from=" + "9" * 5000, "开始日期的格式"),
    ("from=0001-01-01&to=0001-01-02", "不能早于 2000-01-01"),
    ("to=2999-01-01", "结束日期不能晚于今天"),
    ("from=%00", "控制字符"),  # refused before the view by app/input_guard
])
def test_bad_ranges_are_refused_in_chinese_and_write_nothing(app, base, staff_browser, query, message):
    page = staff_browser("owner").get(f"{base}/admin/stats?{query}")
    assert page.status_code == 400, page.text[:300]
    assert message in page.text
    assert 'id="stats-data"' not in page.text
    if "控制字符" not in message:
        assert 'name="from"' in page.text  # the form stays, to try again
    assert db.session.scalar(select(func.count()).select_from(DailyStat)) == 0


def test_ranges_at_the_limits_are_accepted(app, base, staff_browser):
    today = figures.today()
    browser = staff_browser("owner")
    longest = browser.get(stats_url(base, today - timedelta(days=figures.MAX_DAYS - 1), today))
    assert longest.status_code == 200
    assert len(page_data(longest.text)["days"]) == figures.MAX_DAYS
    assert browser.get(f"{base}/admin/stats?to={today.isoformat()}").status_code == 200
    assert browser.get(f"{base}/admin/stats?from=&to=").status_code == 200


@pytest.mark.parametrize("role, allowed", [("owner", True), ("operator", True), ("finance", True),
                                           ("shipping", False)])
def test_only_roles_with_stats_view_see_the_page_and_its_menu_entry(app, base, staff_browser, role, allowed):
    browser = staff_browser(role)
    page = browser.get(f"{base}/admin/stats")
    assert page.status_code == (200 if allowed else 403)
    home = browser.get(f"{base}/admin/").text
    assert ('href="/admin/stats"' in home) is allowed
    if not allowed:
        assert db.session.scalar(select(func.count()).select_from(DailyStat)) == 0


def test_nobody_logged_in_is_sent_to_the_login(app, base):
    import requests

    res = requests.get(f"{base}/admin/stats", allow_redirects=False)
    assert res.status_code in (302, 303) and "/admin/login" in res.headers["Location"]


@needs_postgres
def test_pages_counting_the_same_stale_days_at_once(world, base, staff_browser):
    """Eight staff open the page together on a cold table: each answers,
    every day is kept once, and the figures equal the rows."""
    browsers = [staff_browser("owner") for _ in range(8)]
    url = stats_url(base, world["first"], world["today"])
    gate = threading.Barrier(len(browsers))
    pages: list = [None] * len(browsers)

    def load(n):
        gate.wait()
        pages[n] = browsers[n].get(url, timeout=60)

    threads = [threading.Thread(target=load, args=(n,)) for n in range(len(browsers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [p.status_code for p in pages] == [200] * len(browsers)
    for p in pages:
        assert_page_equals_rows(p.text, world["first"], world["today"])
    db.session.expire_all()
    assert db.session.scalar(select(func.count()).select_from(DailyStat)) == DAYS  # today's part too


@needs_postgres
def test_pages_counting_different_days_of_one_month_at_once(world, base, staff_browser):
    """Two ranges of the same month, cold, four pages each at once: each
    page answers and the month's sums end equal to its days'."""
    from models import MonthlyUnitStat

    first = world["first"]
    ranges = [(first, first + timedelta(days=2)), (first + timedelta(days=5), first + timedelta(days=7))] * 4
    browsers = [staff_browser("owner") for _ in ranges]
    gate = threading.Barrier(len(ranges))
    pages: list = [None] * len(ranges)

    def load(n):
        gate.wait()
        pages[n] = browsers[n].get(stats_url(base, *ranges[n]), timeout=60)

    threads = [threading.Thread(target=load, args=(n,)) for n in range(len(ranges))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [p.status_code for p in pages] == [200] * len(ranges)
    for p, (a, b) in zip(pages, ranges):
        assert_page_equals_rows(p.text, a, b)
    db.session.expire_all()
    month = first.replace(day=1)
    by_days = db.session.scalar(select(func.sum(DailyUnitStat.paid_fen)).where(
        DailyUnitStat.day >= month, DailyUnitStat.day < figures._next_month(month)))
    assert db.session.scalar(select(func.sum(MonthlyUnitStat.paid_fen)).where(MonthlyUnitStat.month == month)) \
        == by_days
