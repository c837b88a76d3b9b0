"""The admin's 订单 pages (issue 10): the list with its filters and keyset
pages, an order's timeline, shipping and refunds in full or in part through
the sandbox WeChat Pay and Alipay gateways — commission taken back in
proportion, the distributor and the buyer told — bad input, roles, double
clicks and two refunds at once. Real HTTP against the live server."""
from __future__ import annotations

import re
import threading
from datetime import timedelta
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
from sqlalchemy import func, select

from admin_helpers import make_staff, post, staff_browser  # noqa: F401
from conftest import needs_postgres
from distribution_helpers import make_user
from handlers import applications, audit, catalogue, commissions, orders, outbox, payments, referrals
from handlers.clock import CHINA, now
from handlers.payments import GatewayTrade
from models import (AuditEntry, Balance, CommissionRow, Notification, Order, OutboxRow, PayChannel, Refund, Source,
                    db)
from pay.alipay import AlipayGateway
from pay.wechatpay import WeChatPayGateway

RECEIVER = orders.Receiver.checked("张三", "13800138000", "上海市徐汇区漕溪北路 1 号")
_txn = iter(range(10**6, 10**7))
_mobile = iter(range(13700000001, 13799999999))


# -- helpers ------------------------------------------------------------------------------------

def distributor(real_name: str, referrer=None):
    """An approved distributor with a name and mobile of their own."""
    user = make_user(real_name)
    application = applications.apply_for_distributor(user, real_name, str(next(_mobile)), "想分享好东西",
                                                     referrer.unit.invite_code if referrer else "")
    outbox.commit()
    made = applications.approve_application(application.id, actor=audit.SYSTEM)
    outbox.commit()
    return made


def customer_of(d=None, nickname: str = "买家"):
    user = make_user(nickname)
    if d is not None:
        referrals.attribute_referral(user, Source.QR, d.unit.scene)
        outbox.commit()
    return user


def product(price_fen: int = 10000, stock: int = 1000):
    made = catalogue.add_product(f"商品{price_fen}", price_fen, stock)
    outbox.commit()
    return made


def placed(user, items, receiver=RECEIVER) -> Order:
    order = orders.place_order(orders.Buyer(user=user), items, receiver)
    outbox.commit()
    return order


def paid(user, items, receiver=RECEIVER) -> Order:
    """Paid by a verified notification (where the gateway is not under test)."""
    order = placed(user, items, receiver)
    assert payments.mark_paid(GatewayTrade(PayChannel.WECHATPAY, order.order_no, True, str(next(_txn)),
                                           order.total_fen)).ok
    outbox.commit()
    return order


def paid_by_wechat(base: str, user, items) -> Order:
    """Paid at the sandbox WeChat Pay cashier."""
    from test_wechatpay import cashier_url, press

    order = placed(user, items)
    gw = WeChatPayGateway.from_settings()
    page = requests.get(cashier_url(gw, order, user.openid, base + "/h5/orders"), timeout=30).text
    assert press(base, page, "pay", allow_redirects=False).status_code == 303
    assert fresh(order.order_no).status == "paid"
    return order


def paid_by_alipay(base: str, user, items) -> Order:
    """Paid at the sandbox Alipay cashier."""
    from test_alipay import form_action, open_cashier

    order = placed(user, items)
    html = open_cashier(base, AlipayGateway.from_settings().wap_pay_url(fresh(order.order_no), f"{base}/back"))
    back = requests.post(base + form_action(html, "pay"), allow_redirects=False, timeout=30).headers["Location"]
    assert dict(parse_qsl(urlsplit(back).query))["trade_no"]
    assert fresh(order.order_no).status == "paid"
    return order


def fresh(order_no: str) -> Order:
    db.session.rollback()
    return db.session.scalars(select(Order).where(Order.order_no == order_no)).one()


def listed(browser, base: str, **args) -> list[str]:
    page = browser.get(f"{base}/admin/orders", params=args)
    assert page.status_code == 200, page.text
    return re.findall(r'<tr id="order-([0-9]{20})"', page.text)


def kinds(page: str) -> list[str]:
    return re.findall(r'<li class="fx-event[^"]*" data-kind="([a-z_]+)"', page)


def notices(kind: str, user_id: int | None = None) -> list[Notification]:
    db.session.rollback()
    query = select(Notification).where(Notification.kind == kind)
    if user_id is not None:
        query = query.where(Notification.user_id == user_id)
    return list(db.session.scalars(query.order_by(Notification.id)))


def audits(action: str, order_no: str) -> list[AuditEntry]:
    db.session.rollback()
    return list(db.session.scalars(select(AuditEntry).where(AuditEntry.action == action,
                                                            AuditEntry.target_id == order_no)))


def refunds_of(order: Order) -> list[Refund]:
    db.session.rollback()
    return list(db.session.scalars(select(Refund).where(Refund.order_id == order.id).order_by(Refund.id)))


def rows(order: Order, kind: str = "commission") -> list[CommissionRow]:
    db.session.rollback()
    return list(db.session.scalars(select(CommissionRow).where(CommissionRow.order_id == order.id,
                                                               CommissionRow.kind == kind)
                                   .order_by(CommissionRow.level, CommissionRow.id)))


def balances_match_rows(*people) -> None:
    db.session.rollback()
    for d in people:
        b = db.session.get(Balance, d.id)
        totals = commissions.totals_from_rows(d.id)
        assert (b.frozen_fen, b.lifetime_fen) == (totals["frozen"], totals["lifetime"])


def refund_form(browser, base: str, order_no: str) -> dict[str, str]:
    page = browser.get(f"{base}/admin/orders/{order_no}")
    assert page.status_code == 200
    found = re.search(r'name="request_key" value="([^"]+)"', page.text)
    assert found, "no refund form on the page"
    return {"request_key": found.group(1)}


def ship(browser, base, order_no, carrier="顺丰速运", tracking_no="SF1234567890", **extra):
    return post(browser, f"{base}/admin/orders/{order_no}/ship",
                {"carrier": carrier, "tracking_no": tracking_no, **extra})


def refund(browser, base, order_no, amount: str, reason: str = "买家退货", key: dict | None = None, htmx=False):
    return post(browser, f"{base}/admin/orders/{order_no}/refund",
                {**(key or refund_form(browser, base, order_no)), "amount": amount, "reason": reason}, htmx=htmx)


def flashed(browser, res) -> str:
    assert res.status_code == 302, res.text[:500]
    target = res.headers["Location"]
    if target.startswith("/"):
        target = res.url.split("/admin", 1)[0] + target
    return browser.get(target).text


# -- the list ------------------------------------------------------------------------------------

def test_filters_find_the_right_orders(app, base, staff_browser):
    top = distributor("王上级")
    seller = distributor("李小店", referrer=top)
    other = distributor("赵另一家")
    goods = product(5000)
    mine = paid(customer_of(seller), {goods.id: 1})
    theirs = paid(customer_of(other), {goods.id: 2},
                  orders.Receiver.checked("李四", "13912345678", "北京市海淀区中关村 1 号"))
    unpaid = placed(customer_of(), {goods.id: 1})
    b = staff_browser("operator")

    assert listed(b, base) == [unpaid.order_no, theirs.order_no, mine.order_no]
    assert listed(b, base, status="paid") == [theirs.order_no, mine.order_no]
    assert listed(b, base, status="pending") == [unpaid.order_no]
    assert listed(b, base, phone="139-1234-5678") == [theirs.order_no]
    assert listed(b, base, order_no=mine.order_no) == [mine.order_no]
    assert listed(b, base, distributor="李小店") == [mine.order_no]
    assert listed(b, base, distributor="王上级") == [mine.order_no]  # level 2 earns on it too
    assert listed(b, base, distributor=other.mobile) == [theirs.order_no]
    assert listed(b, base, distributor="没有这个人") == []
    assert listed(b, base, unit=seller.unit.slug) == [mine.order_no]
    assert listed(b, base, unit=str(other.unit.id)) == [theirs.order_no]
    today = now().astimezone(CHINA).date()
    assert len(listed(b, base, since=today.isoformat(), until=today.isoformat())) == 3
    assert len(listed(b, base, date_field="paid", since=today.isoformat())) == 2
    assert listed(b, base, since=(today + timedelta(days=1)).isoformat()) == []
    assert listed(b, base, until=(today - timedelta(days=1)).isoformat()) == []
    assert listed(b, base, status="paid", distributor="李小店", phone="13800138000") == [mine.order_no]

    page = b.get(f"{base}/admin/orders", params={"order_no": theirs.order_no}).text
    row = re.search(rf'<tr id="order-{theirs.order_no}".*?</tr>', page, re.S).group(0)
    for shown in ("李四", "13912345678", "商品5000", "¥100.00", "待发货", other.unit.name, "赵另一家", "微信支付"):
        assert shown in row, shown


@pytest.mark.parametrize("args, message", [
    ({"status": "lost"}, "没有这个订单状态"),
    ({"since": "2026-13-01"}, "开始日期的格式"),
    ({"since": "2026-12-02", "until": "2026-12-01"}, "结束日期早于开始日期"),
    ({"phone": "12345"}, "11 位"),
    ({"order_no": "abc"}, "20 位"),
    ({"date_field": "shipped"}, "下单时间或付款时间"),
])
def test_bad_filters_are_a_clear_message(app, base, staff_browser, args, message):
    page = staff_browser("shipping").get(f"{base}/admin/orders", params=args)
    assert page.status_code == 400 and message in page.text


def test_keyset_pages_walk_every_order_once(app, base, staff_browser):
    goods = product(100)
    made = []
    for i in range(54):
        made.append(paid(customer_of(nickname=f"买家{i}"), {goods.id: 1}).order_no)
    b = staff_browser("finance")
    page = b.get(f"{base}/admin/orders")
    first = re.findall(r'<tr id="order-([0-9]{20})"', page.text)
    assert first == made[::-1][:50]
    nxt = re.search(r'href="([^"]*before=\d+[^"]*)">下一页', page.text).group(1).replace("&amp;", "&")
    second = b.get(base + nxt)
    rest = re.findall(r'<tr id="order-([0-9]{20})"', second.text)
    assert rest == made[::-1][50:] and "下一页" not in second.text
    # Filters stay on the next page's link.
    page = b.get(f"{base}/admin/orders", params={"status": "paid"})
    assert re.search(r'href="[^"]*status=paid[^"]*before=\d+|href="[^"]*before=\d+[^"]*status=paid', page.text)
    assert b.get(f"{base}/admin/orders", params={"before": "abc"}).status_code == 200


# -- the detail -----------------------------------------------------------------------------------

def test_the_timeline_shows_each_event_in_time_order(app, base, staff_browser, jobs):
    top = distributor("王上级")
    seller = distributor("李小店", referrer=top)
    buyer = customer_of(seller)
    goods = product(10000)
    order = paid_by_wechat(base, buyer, {goods.id: 1})
    owner = staff_browser("owner")
    assert ship(owner, base, order.order_no).status_code == 302
    orders.confirm_receipt(order.order_no, buyer=orders.Buyer(user=buyer))
    outbox.commit()
    assert refund(owner, base, order.order_no, "30.00", "少发一件").status_code == 302
    jobs.run()
    assert refund(owner, base, order.order_no, "70.00", "整单退货").status_code == 302
    jobs.run()

    page = owner.get(f"{base}/admin/orders/{order.order_no}").text
    seen = kinds(page)
    assert seen[:3] == ["created", "paid", "commission_posted"]
    for kind in ("shipped", "received", "refund_requested", "refunded", "commission_clawed_back",
                 "commission_reversed"):
        assert kind in seen, kind
    assert seen.count("refund_requested") == 2 and seen.count("refunded") == 2
    assert seen.index("shipped") < seen.index("received") < seen.index("refund_requested")
    times = re.findall(r'<span class="fx-event__time">([^<]+)</span>', page)
    assert times == sorted(times)
    order = fresh(order.order_no)
    for fact in ("微信支付", order.transaction_id, "顺丰速运", "SF1234567890", owner.staff_name, "买家确认",
                 "少发一件", "整单退货", "¥30.00", "¥70.00", "李小店", "王上级", "已冲销"):
        assert fact in page, fact
    assert '<span id="order-status"><span class="ad-tag ad-tag--danger">已退款</span>' in page


def test_cancelled_and_expired_orders_say_so(app, base, staff_browser):
    goods = product(100)
    buyer = customer_of()
    cancelled = placed(buyer, {goods.id: 1})
    orders.cancel_order(cancelled.order_no, "买家取消", buyer=orders.Buyer(user=buyer))
    expired = placed(buyer, {goods.id: 1})
    orders.expire(expired.order_no, at=expired.expires_at + timedelta(seconds=1))
    outbox.commit()
    b = staff_browser("shipping")
    assert kinds(b.get(f"{base}/admin/orders/{cancelled.order_no}").text) == ["created", "cancelled"]
    page = b.get(f"{base}/admin/orders/{expired.order_no}").text
    assert kinds(page) == ["created", "expired"] and "超时未付款" in page
    assert "ship-card" not in page and "refund-card" not in page


def test_unknown_orders_are_404(app, base, staff_browser):
    b = staff_browser("owner")
    for no in ("26120100000000000000", "nonsense", "1" * 40):
        assert b.get(f"{base}/admin/orders/{no}").status_code == 404
        assert ship(b, base, no).status_code == 404
        assert post(b, f"{base}/admin/orders/{no}/refund",
                    {"amount": "1.00", "reason": "x", "request_key": "k" * 16}).status_code == 404


# -- shipping -------------------------------------------------------------------------------------

def test_ship_from_the_page_tells_the_buyer_once(app, base, staff_browser, settings):
    buyer = customer_of(nickname="收货人")
    order = paid(buyer, {product(2990).id: 1})
    b = staff_browser("shipping")
    page = b.get(f"{base}/admin/orders/{order.order_no}").text
    assert "ship-card" in page and "refund-card" not in page  # shipping staff do not refund
    res = ship(b, base, order.order_no, carrier="其他", carrier_other="安能物流", tracking_no="AN2026120100001")
    assert "已发货：安能物流 AN2026120100001" in flashed(b, res)
    again = ship(b, base, order.order_no, carrier="其他", carrier_other="安能物流", tracking_no="AN2026120100001")
    assert again.status_code == 302  # a double click: the same shipment

    shipped = fresh(order.order_no)
    assert (shipped.status, shipped.carrier, shipped.tracking_no) == ("shipped", "安能物流", "AN2026120100001")
    [entry] = audits("order.ship", order.order_no)
    assert entry.actor == b.staff_name and entry.before["status"] == "paid" and entry.after["status"] == "shipped"
    [notice] = notices("order_shipped", buyer.id)
    assert "安能物流" in notice.body and "AN2026120100001" in notice.body
    template = db.session.scalars(select(OutboxRow).where(
        OutboxRow.key == f"template-buyer-{order.id}-shipped")).one()
    assert template.task == "wxbot.jobs.send_template" and template.args[1] == "TM_order_shipped"
    assert template.args[2]["character_string3"] == "AN2026120100001"
    # Another tracking number for a shipped order is refused, and changes nothing.
    other = ship(b, base, order.order_no, tracking_no="YT9999999999")
    assert other.status_code == 409 and "已发货" in other.text
    assert fresh(order.order_no).tracking_no == "AN2026120100001"
    assert len(audits("order.ship", order.order_no)) == 1 and len(notices("order_shipped")) == 1


@pytest.mark.parametrize("fields, message", [
    ({"tracking_no": ""}, "运单号"),
    ({"tracking_no": "SF 123"}, "运单号"),
    ({"tracking_no": "x" * 41}, "运单号"),
    ({"carrier": "其他", "carrier_other": ""}, "快递公司"),
])
def test_bad_shipping_input_changes_nothing(app, base, staff_browser, fields, message):
    order = paid(customer_of(), {product().id: 1})
    b = staff_browser("owner")
    res = ship(b, base, order.order_no, **fields)
    assert res.status_code == 400 and message in res.text
    assert fresh(order.order_no).status == "paid" and audits("order.ship", order.order_no) == []


def test_an_unpaid_order_cannot_ship_or_refund(app, base, staff_browser):
    order = placed(customer_of(), {product().id: 1})
    b = staff_browser("owner")
    res = ship(b, base, order.order_no)
    assert res.status_code == 409 and "未付款" in res.text
    res = post(b, f"{base}/admin/orders/{order.order_no}/refund",
               {"amount": "1.00", "reason": "测试", "request_key": "k" * 16})
    assert res.status_code == 409 and "未付款" in res.text
    assert fresh(order.order_no).status == "pending" and refunds_of(order) == []


@pytest.mark.parametrize("role, action, allowed", [
    ("operator", "ship", False), ("operator", "refund", False), ("finance", "ship", False),
    ("shipping", "refund", False), ("finance", "refund", True), ("shipping", "ship", True),
])
def test_roles_without_the_permission_get_403(app, base, staff_browser, role, action, allowed):
    order = paid(customer_of(), {product().id: 1})
    b = staff_browser(role)
    if action == "ship":
        res = ship(b, base, order.order_no)
    else:
        res = post(b, f"{base}/admin/orders/{order.order_no}/refund",
                   {"amount": "1.00", "reason": "测试", "request_key": "k" * 16})
    assert res.status_code == (302 if allowed else 403)
    if not allowed:
        assert fresh(order.order_no).status == "paid" and refunds_of(order) == []


# -- refunds ------------------------------------------------------------------------------------

@pytest.mark.parametrize("channel", ["wechatpay", "alipay"])
def test_partial_refunds_then_the_rest_through_the_gateway(app, base, staff_browser, jobs, channel):
    top = distributor("王上级")
    seller = distributor("李小店", referrer=top)
    buyer = customer_of(seller, "退款买家")
    goods = product(3333)  # 10% and 5% of 99.99: 999 and 499 fen
    pay = paid_by_wechat if channel == "wechatpay" else paid_by_alipay
    order = pay(base, buyer, {goods.id: 3})
    assert [r.amount_fen for r in rows(order)] == [999, 499]
    b = staff_browser("finance")

    res = refund(b, base, order.order_no, "33.33", "少发一件")
    assert "部分退款 ¥33.33 已提交" in flashed(b, res)
    jobs.run()
    [first] = refunds_of(order)
    assert (first.status, first.amount_fen, first.partial) == ("succeeded", 3333, True)
    assert first.gateway_refund_id
    assert fresh(order.order_no).status == "paid"  # the order stays where it is
    # Each keeps its share of what the buyer kept, rounded down: 999 × 6666/9999 = 666, 499 → 332.
    assert [(c.amount_fen, c.state) for c in rows(order, "clawback")] == [(-333, "frozen"), (-167, "frozen")]
    balances_match_rows(seller, top)
    assert db.session.get(Balance, seller.id).frozen_fen == 666
    told = notices("commission_clawed_back")
    assert sorted((n.user_id, n.body) for n in told) == sorted([
        (seller.user_id, f"订单 {order.order_no} 退款，扣回佣金 ¥3.33"),
        (top.user_id, f"订单 {order.order_no} 退款，扣回佣金 ¥1.67")])
    [buyer_notice] = notices("order_refunded", buyer.id)
    assert "已部分退款 ¥33.33" in buyer_notice.body

    assert ship(staff_browser("shipping"), base, order.order_no).status_code == 302  # still shippable
    res = refund(b, base, order.order_no, "10", "运费补偿")
    assert res.status_code == 302
    jobs.run()
    assert [(c.amount_fen, c.state) for c in rows(order, "clawback")] == [(-433, "frozen"), (-217, "frozen")]
    page = b.get(f"{base}/admin/orders/{order.order_no}").text
    assert 'value="56.66"' in page and "最多 56.66" in page  # what is left, offered

    res = refund(b, base, order.order_no, "56.67", "整单退")
    assert res.status_code == 400 and "超过可退金额 ¥56.66" in res.text
    res = refund(b, base, order.order_no, "56.66", "整单退")
    assert res.status_code == 302
    assert fresh(order.order_no).status in ("refunding", "refunded")  # refunded: the job ran inline (no Redis)
    jobs.run()
    done = fresh(order.order_no)
    assert done.status == "refunded"
    assert [r.status for r in refunds_of(order)] == ["succeeded"] * 3
    assert sum(r.amount_fen for r in refunds_of(order)) == 9999
    assert [c.state for c in rows(order)] == ["reversed", "reversed"]
    balances_match_rows(seller, top)
    assert db.session.get(Balance, seller.id).frozen_fen == 0 and db.session.get(Balance, top.id).frozen_fen == 0
    assert len(notices("order_refunded", buyer.id)) == 3
    assert len(notices("commission_clawed_back")) == 6
    entries = audits("order.refund", order.order_no)
    assert [e.after["amount_fen"] for e in entries] == [3333, 1000, 5666]
    assert all(e.actor == b.staff_name for e in entries) and entries[0].reason == "少发一件"
    if channel == "alipay":
        from sandbox import alipay as sandbox_alipay

        assert sandbox_alipay.load_trade(done.transaction_id)["refunded_fen"] == 9999
    else:
        from sandbox import wechatpay as sandbox_wx

        gw = WeChatPayGateway.from_settings()
        assert sandbox_wx.load_trade(gw.mchid, order.order_no)["refunded"] == 9999
    page = b.get(f"{base}/admin/orders/{order.order_no}").text
    assert "refund-card" not in page


@pytest.mark.parametrize("channel", ["wechatpay", "alipay"])
def test_a_full_refund_after_settlement_claws_back(app, base, staff_browser, jobs, channel):
    seller = distributor("李小店")
    buyer = customer_of(seller)
    pay = paid_by_wechat if channel == "wechatpay" else paid_by_alipay
    order = pay(base, buyer, {product(10000).id: 1})
    orders.ship_order(order.order_no, "顺丰速运", "SF1234567890", actor=audit.SYSTEM)
    orders.confirm_receipt(order.order_no)
    outbox.commit()
    commissions.settle_order(order.id, at=now() + timedelta(days=60))
    outbox.commit()
    b = staff_browser("owner")
    page = b.get(f"{base}/admin/orders/{order.order_no}").text
    assert 'value="100.00"' in page
    res = refund(b, base, order.order_no, "100.00", "七天无理由")
    assert "退款 ¥100.00 已提交" in flashed(b, res)
    jobs.run()
    assert fresh(order.order_no).status == "refunded"
    assert [(c.amount_fen, c.state) for c in rows(order, "clawback")] == [(-1000, "withdrawable")]
    balances_match_rows(seller)
    assert db.session.get(Balance, seller.id).withdrawable_fen == 0
    [told] = notices("commission_clawed_back", seller.user_id)
    assert "¥10.00" in told.body
    [buyer_notice] = notices("order_refunded", buyer.id)
    assert "已全额退款 ¥100.00" in buyer_notice.body


@pytest.mark.parametrize("amount, message", [
    ("0", "大于 0"), ("0.00", "大于 0"), ("-5", "正确的金额"), ("abc", "正确的金额"), ("", "请填写退款金额"),
    ("1.234", "正确的金额"), ("100.01", "超过可退金额"),
])
def test_bad_refund_amounts_change_nothing(app, base, staff_browser, amount, message):
    order = paid(customer_of(), {product(10000).id: 1})
    b = staff_browser("owner")
    res = refund(b, base, order.order_no, amount)
    assert res.status_code == 400 and message in res.text, res.text[:300]
    assert refunds_of(order) == [] and fresh(order.order_no).status == "paid"
    assert audits("order.refund", order.order_no) == []


def test_a_refund_needs_a_reason_and_a_fresh_form(app, base, staff_browser):
    order = paid(customer_of(), {product(10000).id: 1})
    b = staff_browser("owner")
    res = refund(b, base, order.order_no, "1.00", reason=" ")
    assert res.status_code == 400 and "退款原因" in res.text
    res = refund(b, base, order.order_no, "1.00", key={"request_key": "bad key!"})
    assert res.status_code == 400 and "页面已过期" in res.text
    assert refunds_of(order) == []


def test_a_double_click_on_refund_is_one_refund(app, base, staff_browser, jobs):
    order = paid(customer_of(), {product(10000).id: 1})
    b = staff_browser("owner")
    key = refund_form(b, base, order.order_no)
    first = refund(b, base, order.order_no, "20.00", key=key)
    second = refund(b, base, order.order_no, "20.00", key=key, htmx=True)
    assert first.status_code == 302 and second.status_code == 200 and "¥20.00 已提交" in second.text
    [made] = refunds_of(order)
    assert made.amount_fen == 2000 and len(audits("order.refund", order.order_no)) == 1
    # While it is with the gateway, another refund waits.
    assert "还在处理中" in b.get(f"{base}/admin/orders/{order.order_no}").text
    other = refund(b, base, order.order_no, "5.00", key={"request_key": "n" * 16})
    assert other.status_code == 409 and "还在处理中" in other.text
    assert len(refunds_of(order)) == 1


@needs_postgres
def test_two_refunds_of_the_rest_at_once_make_one(app, base, staff_browser):
    for i in range(4):
        order = paid(customer_of(nickname=f"并发{i}"), {product(10000).id: 1})
        browsers = [staff_browser("owner", name=f"boss{i}a"), staff_browser("finance", name=f"cash{i}b")]
        forms = [{**refund_form(b, base, order.order_no), "amount": "100.00", "reason": "并发退款"}
                 for b in browsers]
        from admin_helpers import token

        tokens, no = [token(b.get(f"{base}/admin/").text) for b in browsers], order.order_no
        barrier, results = threading.Barrier(2), [None, None]

        def go(n: int, no: str = no) -> None:
            barrier.wait()
            results[n] = browsers[n].post(f"{base}/admin/orders/{no}/refund",
                                          data={**forms[n], "csrf_token": tokens[n]}, allow_redirects=False)

        threads = [threading.Thread(target=go, args=(n,)) for n in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        codes = sorted(r.status_code for r in results)
        assert codes == [302, 409], [(r.status_code, r.text[:200]) for r in results]
        assert len(refunds_of(order)) == 1 and len(audits("order.refund", order.order_no)) == 1
        assert fresh(order.order_no).status == "refunding"


@needs_postgres
def test_two_ship_clicks_at_once_ship_once(app, base, staff_browser):
    buyer = customer_of()
    order = paid(buyer, {product().id: 1})
    b = staff_browser("shipping")
    from admin_helpers import token

    csrf, no = token(b.get(f"{base}/admin/").text), order.order_no
    barrier, results = threading.Barrier(3), []

    def go() -> None:
        barrier.wait()
        results.append(b.post(f"{base}/admin/orders/{no}/ship", allow_redirects=False,
                              data={"carrier": "中通快递", "tracking_no": "ZT1234567890", "csrf_token": csrf}))

    threads = [threading.Thread(target=go) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 3 and all(r.status_code == 302 for r in results), [(r.status_code, r.text[:200])
                                                                               for r in results]
    assert len(audits("order.ship", no)) == 1 and len(notices("order_shipped", buyer.id)) == 1


def test_the_cli_ships_and_refunds_in_part_with_its_operator_audited(app):
    def run(*args):
        return app.test_cli_runner().invoke(args=list(args))

    order = paid(customer_of(), {product(10000).id: 1})
    out = run("orders", "ship", order.order_no, "--carrier", "韵达快递", "--tracking-no", "YD1234567890")
    assert out.exit_code == 0, out.output
    out = run("orders", "refund", order.order_no, "--reason", "少发一件", "--amount-fen", "2500")
    assert out.exit_code == 0 and "partial refund" in out.output and "¥25.00" in out.output
    assert run("orders", "refund", order.order_no, "--reason", "x", "--amount-fen", "0").exit_code != 0
    [shipped] = audits("order.ship", order.order_no)
    [refunded] = audits("order.refund", order.order_no)
    assert shipped.actor.startswith("cli:") and refunded.actor.startswith("cli:")
    assert refunded.after["amount_fen"] == 2500 and refunded.after["partial"] is True
    assert fresh(order.order_no).status == "shipped"


def test_a_partial_refund_before_settlement_settles_the_rest(app, base, staff_browser):
    seller = distributor("李小店")
    order = paid(customer_of(seller), {product(10000).id: 1})  # 10%: 1000 fen
    refunded = payments.start_refund(order.order_no, "少发配件", actor=audit.SYSTEM, amount_fen=2500)
    outbox.commit()
    assert payments.finish_refund(PayChannel.WECHATPAY, refunded.out_refund_no, True, 2500).ok
    outbox.commit()
    orders.ship_order(order.order_no, "顺丰速运", "SF1234567890", actor=audit.SYSTEM)
    done = orders.confirm_receipt(order.order_no)
    outbox.commit()
    assert commissions.settle_order(order.id, at=done.completed_at + timedelta(days=60)) == 2
    outbox.commit()
    b = db.session.get(Balance, seller.id)
    assert (b.frozen_fen, b.withdrawable_fen, b.lifetime_fen) == (0, 750, 750)
    assert [(c.amount_fen, c.state) for c in rows(order, "clawback")] == [(-250, "withdrawable")]
    balances_match_rows(seller)
    # A second partial refund after settlement takes back from what is withdrawable.
    second = payments.start_refund(order.order_no, "再退一点", actor=audit.SYSTEM, amount_fen=2500)
    outbox.commit()
    assert payments.finish_refund(PayChannel.WECHATPAY, second.out_refund_no, True, 2500).ok
    outbox.commit()
    assert [(c.amount_fen, c.state) for c in rows(order, "clawback")] == [(-500, "withdrawable")]
    assert db.session.get(Balance, seller.id).withdrawable_fen == 500
    balances_match_rows(seller)
    page = staff_browser("finance").get(f"{base}/admin/orders/{order.order_no}").text
    assert "已结算（部分扣回）" in page and "¥5.00" in page
