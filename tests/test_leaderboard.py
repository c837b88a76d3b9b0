"""The sales leaderboard (PRODUCT.md flow 10, issue 11): net sales per
distributor's unit by time of payment in China time, kept in Redis exactly
once per payment and refund, rebuilt from SQL, shown on the H5 page and by
the bot. The live sets (fakeredis in the try-out, a real Redis when
FENXIAO_TEST_REDIS_URL is set) are compared with SQL throughout."""
from __future__ import annotations

import random
import re
import threading
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from conftest import needs_postgres
from distribution_helpers import make_distributor, make_user
from handlers import audit, catalogue, clock, leaderboard, orders, outbox, payments, referrals
from handlers.audit import SYSTEM
from handlers.clock import CHINA, now
from handlers.errors import DomainError
from handlers.payments import GatewayTrade
from models import Distributor, DistributorStatus, OutboxRow, PayChannel, Refund, Source, db
from app.extensions import redis_store

RECEIVER = orders.Receiver.checked("张三", "13800138000", "上海市徐汇区漕溪北路 1 号")
_txn = iter(range(10**6, 10**7))


@pytest.fixture(autouse=True)
def real_time_after(app):
    clock.forget()
    yield
    outbox.rollback()
    clock.back_to_real_time(actor=audit.SYSTEM)
    outbox.commit()
    clock.forget()


def drain(jobs) -> None:
    """What the worker does: the outbox rows handed over and run."""
    outbox.relay()
    jobs.run()
    db.session.expire_all()


def product(price: int = 10000):
    p = catalogue.add_product(f"商品{price}", price, 100000)
    outbox.commit()
    return p


def seller(name: str = "王小明") -> Distributor:
    d = make_distributor(name)
    d.real_name = name
    outbox.commit()
    return d


def customer_of(d: Distributor | None):
    user = make_user()
    if d is not None:
        referrals.attribute_referral(user, Source.QR, d.unit.scene)
        outbox.commit()
    return user


def sell(d: Distributor | None, price: int, at: datetime | None = None):
    """An order of ``price`` fen in ``d``'s unit (the merchant's without one), paid at ``at``."""
    at = at or now()
    order = orders.place_order(orders.Buyer(user=customer_of(d)), {product(price).id: 1}, RECEIVER, at=at)
    outbox.commit()
    assert payments.mark_paid(GatewayTrade(PayChannel.WECHATPAY, order.order_no, True, str(next(_txn)),
                                           order.total_fen), at=at).ok
    outbox.commit()
    return order


def refund(order, amount: int | None = None, at: datetime | None = None) -> Refund:
    payments.start_refund(order.order_no, "退货", actor=SYSTEM, amount_fen=amount, at=at)
    outbox.commit()
    r = db.session.scalars(select(Refund).where(Refund.order_id == order.id, Refund.status == "pending")).one()
    assert payments.finish_refund(PayChannel.WECHATPAY, r.out_refund_no, True, r.amount_fen, at=at).ok
    outbox.commit()
    return r


def figures(name: str, source: str, at: datetime | None = None) -> list[tuple[int, int, int]]:
    return [(r.rank, r.unit_id, r.fen) for r in leaderboard.board(name, at=at, source=source).rows]


def both(name: str, at: datetime | None = None) -> list[tuple[int, int, int]]:
    """The board from Redis, asserted equal to the board from SQL."""
    live = figures(name, "redis", at)
    assert live == figures(name, "sql", at), name
    return live


def live_keys() -> dict[str, list[tuple[bytes, float]]]:
    conn = redis_store.conn
    keys = sorted(k.decode() for p in leaderboard.PATTERNS for k in conn.scan_iter(match=p))
    return {k: conn.zrange(k, 0, -1, withscores=True) for k in keys}


def china(*args) -> datetime:
    return datetime(*args, tzinfo=CHINA)


def move_to(weekday: int | None = None, day: int | None = None) -> datetime:
    """Move the sandbox clock forward to the next Monday (weekday 0) or 1st of a month; the time of day stays."""
    local = now().astimezone(CHINA)
    days = next(k for k in range(0, 40) if (weekday is None or (local + timedelta(days=k)).weekday() == weekday)
                and (day is None or (local + timedelta(days=k)).day == day))
    if days:
        clock.move_forward(days, actor=audit.SYSTEM)
        outbox.commit()
        clock.forget()
    return now()


# -- periods ------------------------------------------------------------------------------------

def test_periods_are_china_time_days_iso_weeks_and_months():
    at = china(2026, 12, 1, 0, 30)  # 2026-11-30 16:30 UTC: already Tuesday 1 December in China
    assert [leaderboard.period(n, at).key for n in leaderboard.PERIODS] == \
        ["lb:day:20261201", "lb:week:2026W49", "lb:month:202612", "lb:all"]
    day = leaderboard.period("day", at)
    assert (day.start, day.end) == (china(2026, 12, 1), china(2026, 12, 2))
    sunday, monday = china(2026, 12, 6, 23, 59, 59), china(2026, 12, 7)
    assert leaderboard.period("week", sunday).key == "lb:week:2026W49"
    assert leaderboard.period("week", monday).key == "lb:week:2026W50"
    assert leaderboard.period("week", sunday).start == china(2026, 11, 30)  # the week began in November
    assert leaderboard.period("month", china(2026, 12, 31, 23, 59, 59)).end == china(2027, 1, 1)
    assert leaderboard.period("week", china(2027, 1, 1)).key == "lb:week:2026W53"  # ISO year of the week
    assert leaderboard.period("month", china(2027, 2, 28, 12)).end == china(2027, 3, 1)
    with pytest.raises(DomainError):
        leaderboard.period("year", at)


def test_sales_count_by_china_time_of_payment_across_midnight(app, jobs):
    d, e = seller("王小明"), seller("李四")
    today = now().astimezone(CHINA).replace(hour=0, minute=0, second=0, microsecond=0)
    sell(d, 1000, today - timedelta(seconds=1))  # yesterday 23:59:59 China time, 15:59:59 UTC
    sell(e, 2000, today)                           # today 00:00:00
    drain(jobs)
    assert both("day") == [(1, e.unit.id, 2000)]
    assert both("day", today - timedelta(seconds=1)) == [(1, d.unit.id, 1000)]
    assert both("all") == [(1, e.unit.id, 2000), (2, d.unit.id, 1000)]


def test_sunday_night_is_last_week_and_monday_this_week(app, jobs):
    monday = move_to(weekday=0).astimezone(CHINA).replace(hour=0, minute=0, second=0, microsecond=0)
    d, e = seller(), seller("李四")
    sell(d, 1500, monday - timedelta(seconds=1))
    sell(e, 700, monday)
    drain(jobs)
    assert both("week") == [(1, e.unit.id, 700)]
    assert both("week", monday - timedelta(seconds=1)) == [(1, d.unit.id, 1500)]
    assert leaderboard.period("week", monday - timedelta(seconds=1)).key in live_keys()  # its grace day


def test_the_last_second_of_a_month_is_that_month(app, jobs):
    first = move_to(day=1).astimezone(CHINA).replace(hour=0, minute=0, second=0, microsecond=0)
    d, e = seller(), seller("李四")
    sell(d, 990, first - timedelta(seconds=1))
    sell(e, 10, first)
    drain(jobs)
    assert both("month") == [(1, e.unit.id, 10)]
    assert both("month", first - timedelta(seconds=1)) == [(1, d.unit.id, 990)]


def test_period_keys_expire_after_their_period(app, jobs):
    d = seller()
    order = sell(d, 100)
    drain(jobs)
    conn, at = redis_store.conn, now()
    for name in ("day", "week", "month"):
        p = leaderboard.period(name, at)
        assert abs(conn.expiretime(p.key) - p.expire_at) <= 1
        assert p.expire_at == int((p.end + timedelta(days=1)).timestamp())
    assert conn.ttl("lb:all") == -1
    assert 0 < conn.ttl(f"lb:applied:pay:{payments.kept_payment(order.id).id}") <= leaderboard.MARK_TTL


# -- what counts --------------------------------------------------------------------------------------

def test_a_refund_later_takes_from_the_period_of_its_payment(app, jobs):
    d, e = seller(), seller("李四")
    today = now().astimezone(CHINA).replace(hour=0, minute=0, second=0, microsecond=0)
    yesterday = today - timedelta(hours=1)
    order = sell(d, 5000, yesterday)
    sell(e, 3000, now())
    drain(jobs)
    refund(order, 2000)  # a partial refund today, of yesterday's payment
    drain(jobs)
    assert both("day", yesterday) == [(1, d.unit.id, 3000)]
    assert both("day") == [(1, e.unit.id, 3000)]
    refund(order)  # the rest: nothing left of it anywhere
    drain(jobs)
    assert both("day", yesterday) == []
    assert both("all") == [(1, e.unit.id, 3000)]


def test_the_merchants_unit_duplicates_and_frozen_distributors_are_left_out(app, jobs):
    d, frozen = seller(), seller("赵六")
    sell(None, 9000)  # the merchant's own unit
    order = sell(d, 1000)
    sell(frozen, 8000)
    # A second payment of the same order (the other channel) is refunded, never a sale.
    assert payments.mark_paid(GatewayTrade(PayChannel.ALIPAY, order.order_no, True, "A-second", 1000)).ok
    outbox.commit()
    drain(jobs)
    assert both("day") == [(1, frozen.unit.id, 8000), (2, d.unit.id, 1000)]
    frozen.status = DistributorStatus.FROZEN.value
    outbox.commit()
    assert both("day") == [(1, d.unit.id, 1000)]
    board = leaderboard.board("day", frozen.unit.id)
    assert board.mine is None
    assert leaderboard.board("day", d.unit.id).mine.rank == 1  # the frozen one above no longer counts


def test_equal_sales_share_a_rank(app, jobs):
    a, b, c, d = (seller(n) for n in ("甲一", "乙二", "丙三", "丁四"))
    for who, fen in ((a, 900), (b, 500), (c, 500), (d, 100)):
        sell(who, fen)
    drain(jobs)
    ranks = both("day")
    assert [(r, fen) for r, _, fen in ranks] == [(1, 900), (2, 500), (2, 500), (4, 100)]
    for who, rank, gap in ((a, 1, None), (b, 2, 400), (c, 2, 400), (d, 4, 400)):
        for source in ("redis", "sql"):
            board = leaderboard.board("day", who.unit.id, source=source)
            assert (board.mine.rank, board.gap_fen) == (rank, gap), source
    assert [r.unit_id for r in leaderboard.board("day", top=2, source="redis").rows] == \
        [r.unit_id for r in leaderboard.board("day", top=2, source="sql").rows]


def test_without_an_answering_redis_the_board_comes_from_sql(app, jobs):
    import redis

    d = seller()
    sell(d, 1000)
    drain(jobs)
    kept = app.extensions["fenxiao.redis"]
    app.extensions["fenxiao.redis"] = redis.Redis.from_url("redis://127.0.0.1:9/0", socket_connect_timeout=1)
    try:
        board = leaderboard.board("day", d.unit.id, source="redis")
    finally:
        app.extensions["fenxiao.redis"].close()
        app.extensions["fenxiao.redis"] = kept
    assert [(r.rank, r.unit_id, r.fen) for r in board.rows] == [(1, d.unit.id, 1000)]
    assert board.mine.rank == 1


def test_masked_names():
    assert [leaderboard.mask(n) for n in ("王小明", "欧阳小明", "王明", "王", "", " 李 ")] == \
        ["王*明", "欧*明", "王*", "王", "", "李"]


# -- exactly once -----------------------------------------------------------------------------------

def test_a_retried_job_or_notification_changes_nothing(app, jobs):
    d = seller()
    order = sell(d, 1000)
    drain(jobs)
    payment = payments.kept_payment(order.id)
    again = payments.mark_paid(GatewayTrade(PayChannel.WECHATPAY, order.order_no, True, order.transaction_id,
                                            order.total_fen))
    outbox.commit()
    assert again.verdict.value == "duplicate"
    leaderboard.count_payment(payment.id)  # the job run again by hand
    rows = db.session.scalars(select(OutboxRow).where(OutboxRow.task.like("handlers.leaderboard.%"))).all()
    for row in rows:
        outbox.retry(row.id)  # and by the outbox
    outbox.commit()
    drain(jobs)
    r = refund(order, 400)
    drain(jobs)
    assert not leaderboard.apply(leaderboard.event_of("refund", r.id))
    assert payments.finish_refund(PayChannel.WECHATPAY, r.out_refund_no, True, 400).verdict.value == "duplicate"
    outbox.commit()
    drain(jobs)
    assert both("day") == [(1, d.unit.id, 600)]
    assert both("all") == [(1, d.unit.id, 600)]


def test_a_rolled_back_payment_counts_nothing(app, jobs):
    d = seller()
    order = orders.place_order(orders.Buyer(user=customer_of(d)), {product(700).id: 1}, RECEIVER)
    outbox.commit()
    payments.mark_paid(GatewayTrade(PayChannel.WECHATPAY, order.order_no, True, "t-gone", 700))
    outbox.rollback()
    drain(jobs)
    assert both("all") == []


@needs_postgres
def test_concurrent_runs_of_the_same_job_count_once(app, jobs):
    d = seller()
    order = sell(d, 1000)
    payment_id = payments.kept_payment(order.id).id
    redis_store.conn.flushdb()  # as if the job had not run yet
    done, barrier = [], threading.Barrier(8)

    def run():
        with app.app_context():
            barrier.wait()
            done.append(leaderboard.count_payment(payment_id))
            db.session.remove()

    threads = [threading.Thread(target=run) for _ in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sorted(done) == [False] * 7 + [True]
    assert both("day") == [(1, d.unit.id, 1000)]


@needs_postgres
def test_payments_and_refunds_at_once_all_count_once(app, jobs):
    people = [seller(n) for n in ("甲一", "乙二", "丙三")]
    sold = [sell(people[i % 3], 100 * (i + 1)) for i in range(9)]
    barrier = threading.Barrier(9)

    def work(i):
        with app.app_context():
            barrier.wait()
            refund(db.session.merge(sold[i]), 50)
            sell(db.session.merge(people[i % 3]), 10)
            db.session.remove()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(9)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    drain(jobs)
    drain(jobs)
    assert both("day") == both("all")
    assert sum(fen for _, _, fen in both("all")) == sum(100 * (i + 1) for i in range(9)) - 9 * 50 + 9 * 10


# -- rebuild ---------------------------------------------------------------------------------------

def test_the_rebuild_equals_the_live_sets_after_random_payments_and_refunds(app, jobs):
    rng = random.Random(11)
    people = [seller(n) for n in ("甲一", "乙二", "丙三", "丁四", "戊五")]
    today = now().astimezone(CHINA).replace(hour=0, minute=0, second=0, microsecond=0)
    sold = []
    for _ in range(30):
        at = min(now(), today + timedelta(hours=rng.choice([-30, -20, -1, 1, 5, 9]), minutes=rng.randrange(60)))
        sold.append(sell(rng.choice(people + [None]), rng.randrange(1, 50) * 100, at))
    for order in rng.sample(sold, 10):
        refund(order, rng.choice([None, 100]))
    drain(jobs)
    live = live_keys()
    assert "lb:all" in live
    redis_store.conn.flushdb()
    counts = leaderboard.rebuild()
    assert live_keys() == live
    assert counts == {k: len(v) for k, v in live.items()}
    for name in leaderboard.PERIODS:
        both(name)
    # The rebuild marked what it counted: the jobs run again add nothing.
    for row in db.session.scalars(select(OutboxRow).where(OutboxRow.task.like("handlers.leaderboard.%"))):
        outbox.retry(row.id)
    outbox.commit()
    drain(jobs)
    assert live_keys() == live


def test_the_rebuild_replaces_wrong_and_stale_keys(app, jobs):
    d = seller()
    sell(d, 1000)
    drain(jobs)
    live = live_keys()
    conn = redis_store.conn
    conn.zadd("lb:all", {"999999": 5})
    conn.zincrby(leaderboard.period("day").key, 77, d.unit.id)
    conn.zadd("lb:day:20200101", {"1": 1})
    leaderboard.rebuild()
    assert live_keys() == live
    assert not conn.exists(leaderboard.FLAG) and not conn.keys("lb:tmp:*")


def test_only_one_rebuild_at_a_time(app):
    redis_store.conn.set(leaderboard.FLAG, "someone", ex=60)
    with pytest.raises(DomainError, match="正在重建"):
        leaderboard.rebuild()
    assert redis_store.conn.get(leaderboard.FLAG) == b"someone"


def test_a_payment_during_a_rebuild_is_counted_once(app, jobs):
    """A job that runs while the rebuild reads (logged, then added to the new
    keys) and one counted by the rebuild whose job runs after (marked)."""
    d, e = seller(), seller("李四")
    sell(d, 1000)
    drain(jobs)
    conn = redis_store.conn
    token = "t" * 16
    conn.set(leaderboard.FLAG, token, ex=60)
    sell(e, 300)  # committed after the rebuild's reading started: applied live, logged
    drain(jobs)
    assert len(conn.lrange(leaderboard.LOG, 0, -1)) == 1
    conn.delete(leaderboard.FLAG)
    late = sell(d, 50)
    conn.set(leaderboard.FLAG, token, ex=60)
    counts = leaderboard._rebuild(conn, token, now())  # reads SQL: the 50 counted; its job not yet run
    assert counts["lb:all"] == 2
    drain(jobs)  # the late job: marked by the rebuild, adds nothing
    assert both("all") == [(1, d.unit.id, 1050), (2, e.unit.id, 300)]
    assert late.status == "paid"


@needs_postgres
def test_rebuilds_racing_live_payments_end_equal_to_sql(app, jobs):
    people = [seller(n) for n in ("甲一", "乙二", "丙三")]
    stop = threading.Event()
    rebuilt = []

    def rebuild():
        with app.app_context():
            while not stop.is_set():
                try:
                    leaderboard.rebuild()
                    rebuilt.append(1)
                except DomainError:
                    pass
                stop.wait(0.01)
            db.session.remove()

    threads = [threading.Thread(target=rebuild) for _ in range(2)]
    [t.start() for t in threads]
    try:
        for i in range(12):  # the worker runs in this thread (RQ wants the main one)
            sell(people[i % 3], 100 + i)
            if i % 4 == 0:
                refund(sell(people[(i + 1) % 3], 1000), 300)
            drain(jobs)
    finally:
        stop.set()
        [t.join() for t in threads]
    assert rebuilt
    live = live_keys()
    for name in leaderboard.PERIODS:
        both(name)
    redis_store.conn.flushdb()
    leaderboard.rebuild()
    assert live_keys() == live


def test_the_command_rebuilds_and_shows(app, jobs):
    d = seller()
    sell(d, 1234)
    drain(jobs)
    redis_store.conn.flushdb()
    runner = app.test_cli_runner()
    out = runner.invoke(args=["leaderboard", "rebuild"])
    assert out.exit_code == 0, out.output
    assert "lb:all\t1 unit(s)" in out.output
    assert both("all") == [(1, d.unit.id, 1234)]
    out = runner.invoke(args=["leaderboard", "show", "--period", "day", "--source", "redis"])
    assert out.exit_code == 0 and "1\tunit" in out.output and "¥12.34" in out.output, out.output
    assert runner.invoke(args=["leaderboard", "show", "--period", "year"]).exit_code == 2


def test_the_nightly_job_is_scheduled_and_rebuilds(app, jobs):
    from app.cron import SCHEDULE, resolve

    d = seller()
    sell(d, 500)
    drain(jobs)
    redis_store.conn.flushdb()
    path = next(p for p, _, _ in SCHEDULE if p.endswith("nightly_rebuild"))
    resolve(path)()
    assert both("all") == [(1, d.unit.id, 500)]


# -- the page and the bot -----------------------------------------------------------------------------

def test_the_page_shows_tabs_top_masked_names_and_my_rank(app, jobs, person, base):
    browser = person("王小明")
    others = [seller(n) for n in ("李大强", "张三丰")]
    sell(others[0], 5000)
    sell(others[1], 2000)
    drain(jobs)
    page = browser.get(f"{base}/h5/leaderboard")
    assert page.status_code == 200
    for label in ("今日", "本周", "本月", "总榜"):
        assert label in page.text
    assert "李*强" in page.text and "张*丰" in page.text and "李大强" not in page.text
    assert "¥50.00" in page.text and "申请成为分销商" in page.text
    assert browser.get(f"{base}/h5/leaderboard?period=nonsense").status_code == 200


def test_my_own_row_and_how_far_from_the_one_above(app, jobs, person, base):
    from models import User

    browser = person("王小明")
    user = db.session.scalars(select(User).where(User.openid == browser.openid)).one()
    other = seller("李大强")
    sell(other, 5000)
    from handlers import applications

    application = applications.apply_for_distributor(user, "王小明", "13800138000", "想分享", "")
    outbox.commit()
    mine = applications.approve_application(application.id, actor=audit.Actor("test"))
    outbox.commit()
    sell(mine, 1200)
    drain(jobs)
    page = browser.get(f"{base}/h5/leaderboard?period=day").text
    assert "王小明" in page and "距上一名还差 ¥38.00" in page
    assert re.search(r'fx-lb-mine__rank">2<', page)
    empty = browser.get(f"{base}/h5/leaderboard?period=all").text
    assert "¥12.00" in empty


def test_the_board_for_a_user_skips_frozen_ones_above_and_knows_a_frozen_or_plain_viewer(app, jobs):
    top, frozen, me = seller("甲一"), seller("乙二"), seller("丙三")
    for who, fen in ((top, 9000), (frozen, 5000), (me, 1000)):
        sell(who, fen)
    drain(jobs)
    frozen.status = DistributorStatus.FROZEN.value
    outbox.commit()
    for source in ("redis", "sql"):
        board = leaderboard.board("day", user_id=me.user_id, source=source)
        assert (board.viewer.unit_id, board.viewer.unit_name, board.viewer.active) == (me.unit.id, me.unit.name, True)
        assert (board.mine.rank, board.mine.fen, board.gap_fen) == (2, 1000, 8000), source
        assert [(r.unit_id, r.mine) for r in board.rows] == [(top.unit.id, False), (me.unit.id, True)]
        assert board.rows[1].name == "丙三"
        off = leaderboard.board("day", user_id=frozen.user_id, source=source)
        assert off.mine is None and off.viewer.active is False and not any(r.mine for r in off.rows)
        nobody = leaderboard.board("day", user_id=customer_of(top).id, source=source)
        assert nobody.viewer is None and nobody.mine is None and len(nobody.rows) == 2


def test_the_bot_replies_with_the_top_five_and_my_rank(app, jobs):
    from wxbot.commands import COMMANDS

    people = [seller(n) for n in ("甲一", "乙二", "丙三", "丁四", "戊五", "己六")]
    for i, who in enumerate(people):
        sell(who, 1000 * (i + 1))
    drain(jobs)
    text = COMMANDS["LEADERBOARD"](people[0].user)
    assert "1. 己*  ¥60.00" in text and "5. 乙*  ¥20.00" in text and "甲*" not in text
    assert "我的排名：第 6 名（¥10.00，距上一名 ¥10.00）" in text
    assert "查看排行榜" in text
    stranger = COMMANDS["LEADERBOARD"](make_user("路人"))
    assert "我的排名" not in stranger and "1. 己*" in stranger
