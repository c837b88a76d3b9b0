"""The sandbox clock on the phone simulator: moving the product's time
forward expires unpaid orders, receives shipped ones and settles their
commission at the moments they fell due, so a withdrawal can be made; back
to real time; bad input refused with a message; a double click is one move;
every process reads the same time; with the sandbox off there is no clock."""
from __future__ import annotations

import inspect
import re
import threading
from datetime import timedelta

import pytest
import requests
from sqlalchemy import event, select

from admin_helpers import make_staff, staff_browser  # noqa: F401
from conftest import needs_postgres, second_product
from distribution_helpers import make_distributor, make_user
from handlers import audit, clock, commissions, orders, outbox, payments, referrals, withdrawals
from handlers.clock import CHINA
from handlers.errors import DomainError, Forbidden
from handlers.payments import GatewayTrade
from models import (AuditEntry, CommissionRow, Notification, Order, PayChannel, Product, SandboxClock, Source,
                    Withdrawal, db)

RECEIVER = orders.Receiver.checked("张三", "13800138000", "上海市徐汇区漕溪北路 1 号")
DAY = timedelta(days=1)
NEAR = timedelta(seconds=30)
BAD_DAYS = "请输入 1-365 之间的整数天数"


@pytest.fixture(autouse=True)
def real_time_after(app):
    clock.forget()
    yield
    outbox.rollback()
    clock.back_to_real_time(actor=audit.SYSTEM)
    outbox.commit()
    clock.forget()


def acting(fn, *args, **kwargs):
    """Call a staff action as the system (whether or not it takes an actor yet)."""
    if "actor" in inspect.signature(fn).parameters:
        kwargs["actor"] = audit.SYSTEM
    return fn(*args, **kwargs)


def product(price_fen: int = 10000, stock: int = 10) -> Product:
    p = Product(name="山茶花礼盒", price_fen=price_fen, stock=stock)
    db.session.add(p)
    outbox.commit()
    return p


def simulator(base: str) -> requests.Session:
    """A browser on the phone simulator (no simulated user needed: the clock is on every page)."""
    return requests.Session()


def page_of(browser: requests.Session, base: str) -> str:
    res = browser.get(f"{base}/sandbox/")
    assert res.status_code == 200
    return res.text


def move(browser: requests.Session, base: str, days, page: str | None = None, **extra) -> requests.Response:
    """Submit the clock control as the page shows it (its CSRF token, the offset it showed)."""
    page = page or page_of(browser, base)
    form = {"csrf_token": re.search(r'name="csrf_token" value="([^"]+)"', page).group(1),
            "from": re.search(r'name="from" value="(\d+)"', page).group(1), "days": str(days), **extra}
    return browser.post(f"{base}/sandbox/clock", data=form, allow_redirects=False)


def flash(page: str) -> list[str]:
    return re.findall(r'<div class="flash">([^<]*)</div>', page)


def ahead() -> timedelta:
    clock.forget()
    return clock.now() - clock.real_now()


def stored_offset() -> int:
    db.session.expire_all()
    return db.session.scalar(select(SandboxClock.offset_seconds)) or 0


def fresh(row):
    db.session.expire_all()
    return db.session.get(type(row), row.id)


def test_the_simulator_shows_the_product_time_and_links_to_the_admin(app, base):
    b = simulator(base)
    page = page_of(b, base)
    assert "时间机器" in page and "（真实时间）" in page
    assert clock.real_now().astimezone(CHINA).strftime("%Y-%m-%d") in page
    assert re.search(r'<a class="admin-link" href="/admin/" target="_blank"[^>]*>商家后台', page)
    assert "发货 7 天后自动收货" in page and "收货 7 天后佣金可提现" in page


def test_one_day_expires_an_unpaid_order_at_its_timeout(app, base):
    p = product(stock=2)
    order = orders.place_order(orders.Buyer(user=make_user()), {p.id: 2}, RECEIVER)
    outbox.commit()
    b = simulator(base)
    assert move(b, base, 1).status_code == 302
    page = page_of(b, base)
    assert any("1 笔未付款订单超时取消" in m for m in flash(page)), flash(page)
    assert "已拨快 1 天" in page
    assert (clock.real_now() + DAY).astimezone(CHINA).strftime("%Y-%m-%d") in page
    order = fresh(order)
    assert order.status == "cancelled" and order.cancel_reason == "超时未付款"
    assert order.cancelled_at == order.expires_at  # when a worker would have done it
    assert fresh(p).stock == 2
    assert abs(ahead() - DAY) < NEAR and stored_offset() == 86400


def test_eight_days_receive_a_shipped_order_then_its_commission_settles_and_is_withdrawn(app, base):
    d = make_distributor("小李")
    customer = make_user()
    referrals.attribute_referral(customer, Source.QR, d.unit.scene)
    outbox.commit()
    order = orders.place_order(orders.Buyer(user=customer), {product(10000).id: 1}, RECEIVER)
    outbox.commit()
    assert payments.mark_paid(GatewayTrade(PayChannel.WECHATPAY, order.order_no, True, "4200000777",
                                           order.total_fen)).ok
    outbox.commit()
    acting(orders.ship_order, order.order_no, "顺丰速运", "SF1234567890")
    outbox.commit()
    b = simulator(base)

    assert move(b, base, 8).status_code == 302
    assert any("1 笔订单自动确认收货" in m and "0 条佣金" in m for m in flash(page_of(b, base)))
    order = fresh(order)
    assert order.status == "completed" and order.completed_at == order.auto_confirm_at
    row = db.session.scalars(select(CommissionRow).where(CommissionRow.order_id == order.id)).one()
    assert row.state == "frozen" and row.settle_at == order.completed_at + timedelta(days=7)
    balance = commissions.balance_of(d.id)
    assert (balance.frozen_fen, balance.withdrawable_fen) == (1000, 0)
    with pytest.raises(DomainError):
        withdrawals.request_withdrawal(d, 1000, withdrawals.new_request_key())
    outbox.rollback()

    assert move(b, base, 7).status_code == 302  # day 15: the 7-day freeze after receipt on day 7 is over
    assert any("1 条佣金转为可提现" in m for m in flash(page_of(b, base)))
    row = fresh(row)
    assert row.state == "withdrawable" and row.settled_at == row.settle_at
    balance = commissions.balance_of(d.id)
    assert (balance.frozen_fen, balance.withdrawable_fen) == (0, 1000)
    assert db.session.scalars(select(Notification).where(Notification.kind == "commission_settled")).first()
    w = withdrawals.request_withdrawal(db.session.get(type(d), d.id), 1000, withdrawals.new_request_key())
    outbox.commit()
    assert fresh(w).status == "requested" and abs(fresh(w).requested_at - clock.now()) < NEAR
    assert abs(ahead() - 15 * DAY) < NEAR


def test_back_to_real_time_keeps_what_happened(app, base):
    p = product(stock=1)
    order = orders.place_order(orders.Buyer(user=make_user()), {p.id: 1}, RECEIVER)
    outbox.commit()
    b = simulator(base)
    move(b, base, 3)
    assert "已拨快 3 天" in page_of(b, base) and abs(ahead() - 3 * DAY) < NEAR
    page = page_of(b, base)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    res = b.post(f"{base}/sandbox/clock", data={"csrf_token": token, "action": "reset"}, allow_redirects=False)
    assert res.status_code == 302
    page = page_of(b, base)
    assert any(m.startswith("已回到真实时间") for m in flash(page)) and "（真实时间）" in page
    assert abs(ahead()) < NEAR and stored_offset() == 0
    assert fresh(order).status == "cancelled"  # the future that happened stays
    # Again: harmless.
    assert b.post(f"{base}/sandbox/clock", data={"csrf_token": token, "action": "reset"},
                  allow_redirects=False).status_code == 302
    assert stored_offset() == 0


@pytest.mark.parametrize("days", ["-1", "0", "366", "100000000000000000000000", "abc", "三", "1.5", "1e3", "",
                                  "１", " 7x"])
def test_bad_input_is_refused_with_a_message_and_moves_nothing(app, base, days):
    b = simulator(base)
    assert move(b, base, days).status_code == 302
    assert BAD_DAYS in flash(page_of(b, base))
    assert stored_offset() == 0 and abs(ahead()) < NEAR


def test_a_missing_or_forged_csrf_token_moves_nothing(app, base):
    b = simulator(base)
    page_of(b, base)
    for token in (None, "forged"):
        data = {"days": "1", **({"csrf_token": token} if token else {})}
        assert b.post(f"{base}/sandbox/clock", data=data, allow_redirects=False).status_code == 302
        assert "页面已过期，请刷新后再调整时间" in flash(page_of(b, base))
    assert stored_offset() == 0


def test_the_whole_offset_is_capped(app):
    for _ in range(10):
        clock.move_forward(365, actor=audit.SYSTEM)
        outbox.commit()
    with pytest.raises(DomainError, match="最多一共拨快 3650 天"):
        clock.move_forward(1, actor=audit.SYSTEM)
    outbox.rollback()
    assert stored_offset() == 3650 * 86400


def test_a_double_click_is_one_move(app, base):
    b = simulator(base)
    page = page_of(b, base)
    assert move(b, base, 1, page=page).status_code == 302
    assert move(b, base, 1, page=page).status_code == 302  # the same form again
    assert any("时间刚被调整过" in m for m in flash(page_of(b, base)))
    assert stored_offset() == 86400


@needs_postgres
def test_many_moves_at_once_from_one_page_are_one_move(app, base):
    browsers = [simulator(base) for _ in range(6)]
    pages = [page_of(b, base) for b in browsers]
    barrier = threading.Barrier(len(browsers))
    answers = []

    def go(b, page):
        barrier.wait()
        answers.append(move(b, base, 1, page=page).status_code)

    threads = [threading.Thread(target=go, args=pair) for pair in zip(browsers, pages)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == [302] * 6 and stored_offset() == 86400
    messages = [m for b in browsers for m in flash(page_of(b, base))]
    assert sum("时间已拨快" in m for m in messages) == 1
    assert sum("时间刚被调整过" in m for m in messages) == 5
    audit_rows = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "sandbox.clock")).all()
    assert len(audit_rows) == 1


def test_every_process_reads_the_same_clock(app, base, settings):
    b = simulator(base)
    move(b, base, 2)
    with second_product(settings) as other, other.app_context():
        assert abs(clock.now() - clock.real_now() - 2 * DAY) < NEAR


def test_with_the_sandbox_off_there_is_no_clock_to_move(app, base, settings):
    clock.move_forward(1, actor=audit.SYSTEM)  # in the database, for a product that would read it
    outbox.commit()
    real = {"sandbox": False, "api_base": "https://api.weixin.qq.com", "open_base": "https://open.weixin.qq.com"}
    with second_product(settings, wechat=real) as other, other.app_context():
        statements = []

        def seen(conn, cursor, statement, *args):
            statements.append(statement)

        event.listen(db.engine, "before_cursor_execute", seen)
        try:
            at = clock.now()
        finally:
            event.remove(db.engine, "before_cursor_execute", seen)
        assert statements == [] and abs(at - clock.real_now()) < NEAR
        with pytest.raises(Forbidden):
            clock.move_forward(1, actor=audit.SYSTEM)
        db.session.rollback()
        client = other.test_client()
        assert client.post("/sandbox/clock", data={"days": "1"}).status_code == 404
        assert client.get("/sandbox/").status_code == 404
    assert stored_offset() == 86400


def test_a_move_is_in_the_audit_log(app, base):
    move(simulator(base), base, 1)
    entry = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "sandbox.clock")).one()
    assert entry.actor == "sandbox:simulator" and entry.after == {"offset_seconds": 86400}
    assert db.session.scalar(select(Withdrawal.id)) is None and db.session.scalar(select(Order.id)) is None


def test_moving_the_clock_does_not_log_the_merchant_out(app, base, staff_browser):
    """Staff sessions follow the wall clock: 30 days ahead is past their 12-hour
    life by the sandbox's time, yet the merchant playing both sides stays in."""
    merchant = staff_browser("owner")
    move(simulator(base), base, 30)
    assert ahead() > 29 * DAY
    res = merchant.get(f"{base}/admin/", allow_redirects=False)
    assert res.status_code == 200 and merchant.staff_name in res.text
