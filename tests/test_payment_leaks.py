"""No money leaks between orders and the payment gateways (issue 9, item 5),
end to end: the product against the sandbox WeChat Pay and Alipay over real
HTTP with real signatures, the background jobs run by a real worker (or
inline without Redis).

- A cancelled or expired order's trades are closed at both gateways; a
  payment that still lands on it, its stock gone, is refunded automatically.
- A second payment (the other channel) is refunded, the order paid once.
- REFUND.ABNORMAL keeps a refund open until a later SUCCESS finishes it.
- Refunds made at a gateway's console reverse the commission.
- A WeChat Pay notification signed more than five minutes ago is refused.
"""
from __future__ import annotations

import secrets
import threading
import time
from datetime import timedelta

import pytest
import requests
from sqlalchemy import func, select

from distribution_helpers import make_distributor, make_user
from handlers.audit import SYSTEM
from handlers import catalogue, commissions, orders, outbox, referrals
from handlers.errors import DomainError
from models import CommissionRow, Order, Payment, Product, Refund, Source, db
from pay.alipay import AlipayGateway
from pay.wechatpay import WeChatPayGateway
from sandbox import alipay as sandbox_ali
from sandbox import wechatpay as sandbox_wx

RECEIVER = orders.Receiver.checked("张三", "13800138000", "上海市徐汇区漕溪北路 1 号")


# -- helpers -------------------------------------------------------------------

@pytest.fixture
def shop(app):
    """A distributor and a customer of theirs: every order earns commission."""
    distributor = make_distributor()
    customer = make_user("顾客")
    referrals.attribute_referral(customer, Source.QR, distributor.unit.scene)
    outbox.commit()
    return distributor, customer


def product(stock: int = 10, price_fen: int = 1990) -> Product:
    p = catalogue.add_product("山茶花礼盒", price_fen, stock)
    outbox.commit()
    return p


def place(user, p: Product, qty: int = 1) -> Order:
    order = orders.place_order(orders.Buyer(user=user), {p.id: qty}, RECEIVER)
    outbox.commit()
    return order


def fresh(order_no: str) -> Order:
    db.session.rollback()  # see what the server and the jobs committed
    return orders.find_order(order_no)


def stock_of(p: Product) -> int:
    db.session.rollback()
    return db.session.get(Product, p.id).stock


def payments_of(order: Order) -> list[Payment]:
    db.session.rollback()
    return list(db.session.scalars(select(Payment).where(Payment.order_id == order.id).order_by(Payment.id)))


def refunds_of(order: Order) -> list[Refund]:
    db.session.rollback()
    return list(db.session.scalars(select(Refund).where(Refund.order_id == order.id).order_by(Refund.id)))


def commission_rows(order: Order) -> list[CommissionRow]:
    db.session.rollback()
    return list(db.session.scalars(select(CommissionRow).where(CommissionRow.order_id == order.id)
                                   .order_by(CommissionRow.id)))


def frozen_of(distributor) -> int:
    db.session.rollback()
    return commissions.balance_of(distributor.id).frozen_fen


def withdrawable_of(distributor) -> int:
    db.session.rollback()
    return commissions.balance_of(distributor.id).withdrawable_fen


def open_wechat(order: Order, openid: str) -> dict:
    """The buyer opens WeChat Pay's sheet: the trade exists at the gateway."""
    gw = WeChatPayGateway.from_settings()
    gw.jsapi_params(order, openid)
    outbox.commit()
    return sandbox_wx.load_trade(gw.mchid, order.order_no)


def open_alipay(order: Order, base: str) -> dict:
    """The buyer opens Alipay's cashier: the trade exists at the gateway."""
    gw = AlipayGateway.from_settings()
    page = requests.get(gw.wap_pay_url(order, f"{base}/h5/orders/{order.order_no}/return/alipay"), timeout=30)
    assert page.status_code == 200, page.text
    return sandbox_ali.find_trade(gw.app_id, order.order_no)


def wechat_trade(order_no: str) -> dict:
    return sandbox_wx.load_trade(sandbox_wx.conf()["mchid"], order_no)


def alipay_trade(order_no: str) -> dict:
    return sandbox_ali.find_trade(sandbox_ali.conf()["app_id"], order_no)


def pay_wechat_quietly(order_no: str) -> dict:
    """The buyer pays on WeChat Pay's sheet; its notification is still on the way."""
    trade = wechat_trade(order_no)
    trade.update(trade_state="SUCCESS", success_time=sandbox_wx.rfc3339(),
                 transaction_id=sandbox_wx.new_id("4200", 18))
    sandbox_wx.save_trade(trade)
    return trade


def pay_alipay_quietly(order_no: str) -> dict:
    """The buyer pays at Alipay's cashier; its notification is still on the way."""
    trade = alipay_trade(order_no)
    trade.update(status="TRADE_SUCCESS", gmt_payment=sandbox_ali.beijing_now())
    sandbox_ali.save_trade(trade)
    return trade


def drain(jobs) -> None:
    """Run the background work to the end (jobs that queue jobs included)."""
    for _ in range(3):
        jobs.run()


def paid_by_wechat(order: Order, openid: str, jobs) -> dict:
    open_wechat(order, openid)
    trade = pay_wechat_quietly(order.order_no)
    assert sandbox_wx.notify_paid(trade) == "HTTP 204"
    drain(jobs)
    assert fresh(order.order_no).status == "paid"
    return trade


def paid_by_alipay(order: Order, base: str, jobs) -> dict:
    open_alipay(order, base)
    trade = pay_alipay_quietly(order.order_no)
    assert sandbox_ali.notify(trade) == "success"
    drain(jobs)
    assert fresh(order.order_no).status == "paid"
    return trade


def refunds_listed(app, *args: str) -> str:
    out = app.test_cli_runner().invoke(args=["refunds", "list", *args])
    assert out.exit_code == 0, out.output
    return out.output


# -- paid after cancel -----------------------------------------------------------------

def test_a_payment_after_expiry_whose_stock_is_gone_is_refunded(shop, jobs, app):
    distributor, customer = shop
    p = product(stock=1)
    late = place(customer, p)
    open_wechat(late, customer.openid)
    paid = pay_wechat_quietly(late.order_no)  # paid at the last second; WeChat Pay is slow to say so
    # The order times out, and someone else buys the last item.
    someone = make_user()
    orders.sweep(at=late.expires_at + timedelta(minutes=1))
    other = orders.place_order(orders.Buyer(user=someone), {p.id: 1}, RECEIVER)
    outbox.commit()
    drain(jobs)
    # Closing the trade found it paid: the payment is recorded and refunded;
    # WeChat Pay's own word arrives late and changes nothing.
    assert sandbox_wx.notify_paid(paid) == "HTTP 204"
    drain(jobs)
    order = fresh(late.order_no)
    assert (order.status, order.holds_stock) == ("cancelled", False)
    assert stock_of(p) == 0 and fresh(other.order_no).holds_stock  # sold once, to the other buyer
    [payment] = payments_of(order)
    [refund] = refunds_of(order)
    assert (refund.origin, refund.status, refund.return_to, refund.payment_id) == ("auto", "succeeded", None,
                                                                                  payment.id)
    assert refund.amount_fen == order.total_fen == payment.amount_fen
    assert order.refunded_fen == 0  # money the order never kept: no sale was refunded
    trade = wechat_trade(late.order_no)
    assert (trade["trade_state"], trade["refunded"]) == ("REFUND", order.total_fen)
    assert commission_rows(order) == [] and frozen_of(distributor) == 0
    # The other buyer cancels: the stock comes back once, not twice.
    orders.cancel_order(other.order_no, "不要了")
    outbox.commit()
    drain(jobs)
    assert stock_of(p) == 1


def test_a_late_payment_revives_the_order_when_its_stock_is_still_there(shop, jobs):
    distributor, customer = shop
    p = product(stock=3)
    late = place(customer, p)
    open_wechat(late, customer.openid)
    paid = pay_wechat_quietly(late.order_no)
    orders.sweep(at=late.expires_at + timedelta(minutes=1))
    outbox.commit()
    drain(jobs)
    assert sandbox_wx.notify_paid(paid) == "HTTP 204"
    order = fresh(late.order_no)
    assert (order.status, order.holds_stock) == ("paid", True) and stock_of(p) == 2
    assert refunds_of(order) == [] and len(commission_rows(order)) == 1


def test_cancelling_closes_the_trade_at_both_gateways(shop, jobs, base):
    _, customer = shop
    order = place(customer, product())
    open_wechat(order, customer.openid)
    open_alipay(order, base)
    never_opened = place(customer, product())
    for no in (order.order_no, never_opened.order_no):
        orders.cancel_order(no, "买家取消", buyer=orders.Buyer(user=customer))
        outbox.commit()
    drain(jobs)
    assert wechat_trade(order.order_no)["trade_state"] == "CLOSED"
    assert alipay_trade(order.order_no)["status"] == "TRADE_CLOSED"
    # Neither cashier takes the money any more.
    prepay = wechat_trade(order.order_no)["prepay_id"]
    sheet = requests.post(f"{base}/sandbox/pay/wechatpay/cashier/pay",
                          data={"prepay_id": prepay, "return": "/h5/orders"}, timeout=30)
    assert sheet.status_code == 400 and "ORDER_CLOSED" in sheet.text
    cashier = requests.post(f"{base}/sandbox/pay/alipay/cashier/{alipay_trade(order.order_no)['trade_no']}/pay",
                            timeout=30)
    assert cashier.status_code == 400 and "TRADE_HAS_CLOSE" in cashier.text
    assert fresh(order.order_no).status == fresh(never_opened.order_no).status == "cancelled"
    assert wechat_trade(never_opened.order_no) is None and alipay_trade(never_opened.order_no) is None


# -- a second payment ---------------------------------------------------------------------------

def test_a_second_payment_by_the_other_channel_is_refunded(shop, jobs, base):
    distributor, customer = shop
    order = place(customer, product())
    open_alipay(order, base)
    in_browser = pay_alipay_quietly(order.order_no)  # paid at Alipay's cashier in the browser…
    paid_by_wechat(order, customer.openid, jobs)  # …and in WeChat
    # Paid by WeChat Pay: closing the Alipay trade found it paid, so that
    # payment is recorded as a second one and given back.
    assert sandbox_ali.notify(in_browser) == "success"  # Alipay's own word, late
    drain(jobs)
    now = fresh(order.order_no)
    assert (now.status, now.pay_channel) == ("paid", "wechatpay")
    kept, second = payments_of(order)
    assert (kept.channel, kept.duplicate, second.channel, second.duplicate) == ("wechatpay", False, "alipay", True)
    [refund] = refunds_of(order)
    assert (refund.payment_id, refund.origin, refund.status) == (second.id, "auto", "succeeded")
    ali = alipay_trade(order.order_no)
    assert (ali["status"], ali["refunded_fen"]) == ("TRADE_CLOSED", order.total_fen)
    assert wechat_trade(order.order_no)["refunded"] == 0
    rows = commission_rows(order)
    assert len(rows) == 1 and frozen_of(distributor) == rows[0].amount_fen > 0
    # The order still refunds normally, through the payment it kept; its
    # sale is whole (net sales are not cut by the second payment's refund).
    assert (fresh(order.order_no).status, fresh(order.order_no).refunded_fen) == ("paid", 0)


def test_paying_closes_the_other_channels_trade(shop, jobs, base):
    _, customer = shop
    order = place(customer, product())
    open_alipay(order, base)
    paid_by_wechat(order, customer.openid, jobs)
    assert alipay_trade(order.order_no)["status"] == "TRADE_CLOSED"
    assert wechat_trade(order.order_no)["trade_state"] == "SUCCESS"


def test_two_channels_notified_at_once_keep_one_payment(shop, jobs, base, settings, app):
    distributor, customer = shop
    placed = [place(customer, product()) for _ in range(3)]  # as many unpaid orders as a buyer may hold
    notes = []
    for order in placed:
        open_wechat(order, customer.openid)
        open_alipay(order, base)
        notes.append((pay_wechat_quietly(order.order_no), pay_alipay_quietly(order.order_no)))
    barrier, answers = threading.Barrier(2 * len(placed)), []

    def send(fn, trade) -> None:
        with app.app_context():  # the sandbox keeps its log in Redis
            barrier.wait(timeout=30)
            answers.append(fn(trade))

    threads = [threading.Thread(target=send, args=(fn, trade)) for wx, ali in notes
               for fn, trade in ((sandbox_wx.notify_paid, wx), (sandbox_ali.notify, ali))]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not any("HTTP 5" in a for a in answers), answers
    if settings["app"]["database_url"].startswith("postgresql"):
        # The order row is locked while a notification is handled: both are acknowledged.
        assert sorted(answers) == ["HTTP 204"] * len(placed) + ["success"] * len(placed), answers
    else:  # SQLite may refuse one that raced; the gateways retry
        for wx, ali in notes:
            sandbox_wx.notify_paid(wx), sandbox_ali.notify(ali)
    drain(jobs)
    for order in placed:
        now = fresh(order.order_no)
        payments = payments_of(order)
        assert now.status == "paid" and [p.duplicate for p in payments].count(False) == 1 and len(payments) == 2
        kept = next(p for p in payments if not p.duplicate)
        second = next(p for p in payments if p.duplicate)
        assert now.pay_channel == kept.channel and now.transaction_id == kept.transaction_id
        [refund] = refunds_of(order)
        assert (refund.payment_id, refund.status, now.refunded_fen) == (second.id, "succeeded", 0)
        assert len(commission_rows(order)) == 1
    rows = [r for order in placed for r in commission_rows(order)]
    assert frozen_of(distributor) == sum(r.amount_fen for r in rows)


# -- REFUND.ABNORMAL ------------------------------------------------------------------------------

def test_an_abnormal_refund_stays_open_until_it_succeeds(shop, jobs, base, app):
    from handlers import payments

    distributor, customer = shop
    p = product(stock=5)
    order = place(customer, p, 2)
    paid_by_wechat(order, customer.openid, jobs)
    assert frozen_of(distributor) > 0 and stock_of(p) == 3
    # The buyer's card is closed: WeChat Pay cannot pay the money back.
    said = requests.post(f"{base}/sandbox/pay/wechatpay/console/refund-outcome",
                         json={"out_trade_no": order.order_no, "outcome": "ABNORMAL"}, timeout=30)
    assert said.status_code == 204
    refund = payments.start_refund(order.order_no, "买家退货", actor=SYSTEM)
    out_refund_no = refund.out_refund_no
    outbox.commit()
    drain(jobs)
    [refund] = refunds_of(order)
    assert refund.status == "abnormal" and fresh(order.order_no).status == "refunding"
    assert frozen_of(distributor) > 0 and stock_of(p) == 3  # nothing given back yet
    assert out_refund_no in refunds_listed(app) and "abnormal" in refunds_listed(app, "--status", "abnormal")
    with pytest.raises(DomainError, match="退款中"):
        orders.ship_order(order.order_no, "顺丰速运", "SF1234567890", actor=SYSTEM)
    outbox.rollback()
    # WeChat Pay says ABNORMAL again: nothing changes.
    assert sandbox_wx.notify_refund(sandbox_wx.load_refund(sandbox_wx.conf()["mchid"], out_refund_no)) == "HTTP 204"
    assert fresh(order.order_no).status == "refunding"
    # The merchant pays it to another account in WeChat Pay's console: SUCCESS.
    done = requests.post(f"{base}/sandbox/pay/wechatpay/console/refunds/{out_refund_no}/finish",
                         json={"status": "SUCCESS"}, timeout=30)
    assert done.status_code == 200 and done.json()["merchant_answer"] == "HTTP 204"
    now = fresh(order.order_no)
    assert now.status == "refunded" and stock_of(p) == 5
    [refund] = refunds_of(order)
    assert refund.status == "succeeded"
    assert {r.state for r in commission_rows(order)} == {"reversed"} and frozen_of(distributor) == 0
    assert out_refund_no not in refunds_listed(app)


# -- refunds made at the gateway -----------------------------------------------------------------

def test_a_refund_made_in_the_wechat_pay_console_reverses_the_commission(shop, jobs, base, app):
    distributor, customer = shop
    p = product(stock=5)
    order = place(customer, p)
    paid_by_wechat(order, customer.openid, jobs)
    assert frozen_of(distributor) > 0
    made = requests.post(f"{base}/sandbox/pay/wechatpay/console/refund", json={"out_trade_no": order.order_no},
                         timeout=30)
    assert made.status_code == 200, made.text
    out_refund_no = made.json()["out_refund_no"]
    drain(jobs)  # WeChat Pay finishes the refund and notifies
    now = fresh(order.order_no)
    assert now.status == "refunded" and stock_of(p) == 5 and now.refunded_fen == now.total_fen
    [refund] = refunds_of(order)
    assert (refund.out_refund_no, refund.origin, refund.status, refund.partial) == (out_refund_no, "gateway",
                                                                                   "succeeded", False)
    assert {r.state for r in commission_rows(order)} == {"reversed"} and frozen_of(distributor) == 0
    # WeChat Pay retries the notification: nothing moves twice.
    assert sandbox_wx.notify_refund(sandbox_wx.load_refund(sandbox_wx.conf()["mchid"], out_refund_no)) == "HTTP 204"
    assert len(refunds_of(order)) == 1 and stock_of(p) == 5 and frozen_of(distributor) == 0
    assert fresh(order.order_no).refunded_fen == order.total_fen


def test_a_console_refund_of_a_completed_order_claws_the_commission_back(shop, jobs, base):
    distributor, customer = shop
    order = place(customer, product())
    paid_by_wechat(order, customer.openid, jobs)
    orders.ship_order(order.order_no, "顺丰速运", "SF1234567890", actor=SYSTEM)
    outbox.commit()
    done = orders.confirm_receipt(order.order_no)
    at = done.completed_at + timedelta(days=30)
    outbox.commit()
    commissions.settle_order(order.id, at)
    outbox.commit()
    assert withdrawable_of(distributor) > 0
    made = requests.post(f"{base}/sandbox/pay/wechatpay/console/refund", json={"out_trade_no": order.order_no},
                         timeout=30)
    assert made.status_code == 200, made.text
    drain(jobs)
    assert fresh(order.order_no).status == "refunded"
    assert withdrawable_of(distributor) == 0
    assert [r.kind for r in commission_rows(order)] == ["commission", "clawback"]


def test_a_partial_console_refund_is_recorded_and_put_before_the_merchant(shop, jobs, base, app):
    distributor, customer = shop
    order = place(customer, product(price_fen=1990))
    paid_by_wechat(order, customer.openid, jobs)
    frozen = frozen_of(distributor)
    made = requests.post(f"{base}/sandbox/pay/wechatpay/console/refund",
                         json={"out_trade_no": order.order_no, "refund": 990}, timeout=30)
    assert made.status_code == 200, made.text
    drain(jobs)
    assert fresh(order.order_no).status == "paid" and frozen_of(distributor) == frozen  # the merchant decides
    assert fresh(order.order_no).refunded_fen == 990  # the staff see the net sale at once
    [refund] = refunds_of(order)
    assert (refund.partial, refund.amount_fen, refund.status) == (True, 990, "succeeded")
    assert refund.out_refund_no in refunds_listed(app)
    # The rest refunded too: the whole payment is back, the order is refunded.
    rest = requests.post(f"{base}/sandbox/pay/wechatpay/console/refund", json={"out_trade_no": order.order_no},
                         timeout=30)
    assert rest.status_code == 200 and rest.json()["amount"]["refund"] == 1000
    drain(jobs)
    assert fresh(order.order_no).status == "refunded" and frozen_of(distributor) == 0
    assert fresh(order.order_no).refunded_fen == 1990


def test_alipay_trade_closed_with_a_refund_reverses_the_commission(shop, jobs, base, app):
    distributor, customer = shop
    p = product(stock=5, price_fen=1990)
    order = place(customer, p)
    paid_by_alipay(order, base, jobs)
    assert frozen_of(distributor) > 0 and stock_of(p) == 4
    part = requests.post(f"{base}/sandbox/pay/alipay/console/refund",
                         data={"out_trade_no": order.order_no, "refund_amount": "9.90"}, timeout=30)
    assert part.json()["alipay_trade_refund_response"]["merchant_answer"] == "success"
    # TRADE_SUCCESS with refund_fee 9.90: recorded, the merchant decides.
    assert fresh(order.order_no).status == "paid" and frozen_of(distributor) > 0
    [partial] = refunds_of(order)
    assert (partial.partial, partial.amount_fen, partial.origin) == (True, 990, "gateway")
    rest = requests.post(f"{base}/sandbox/pay/alipay/console/refund", data={"out_trade_no": order.order_no},
                         timeout=30)
    assert rest.json()["alipay_trade_refund_response"]["merchant_answer"] == "success"
    # TRADE_CLOSED with refund_fee 19.90: the whole of it is back.
    assert alipay_trade(order.order_no)["status"] == "TRADE_CLOSED"
    now = fresh(order.order_no)
    assert now.status == "refunded" and stock_of(p) == 5
    assert {r.state for r in commission_rows(order)} == {"reversed"} and frozen_of(distributor) == 0
    assert [(r.partial, r.amount_fen) for r in refunds_of(order)] == [(True, 990), (False, 1000)]
    # Alipay retries the notification: acknowledged, nothing moves twice.
    last = rest.json()["alipay_trade_refund_response"]["out_biz_no"]
    assert sandbox_ali.notify_refund(alipay_trade(order.order_no), last) == "success"
    assert len(refunds_of(order)) == 2 and stock_of(p) == 5
    assert fresh(order.order_no).refunded_fen == 1990 == order.total_fen


def test_our_own_alipay_refund_notified_back_is_not_counted_twice(shop, jobs, base):
    from handlers import payments

    distributor, customer = shop
    p = product(stock=5)
    order = place(customer, p)
    paid_by_alipay(order, base, jobs)
    refund = payments.start_refund(order.order_no, "买家不想要了", actor=SYSTEM)
    out_refund_no = refund.out_refund_no
    outbox.commit()
    drain(jobs)
    assert fresh(order.order_no).status == "refunded" and stock_of(p) == 5
    # Alipay's TRADE_CLOSED notification for that refund arrives afterwards.
    assert sandbox_ali.notify_refund(alipay_trade(order.order_no), out_refund_no) == "success"
    [only] = refunds_of(order)
    assert (only.out_refund_no, only.status) == (out_refund_no, "succeeded")
    assert stock_of(p) == 5 and frozen_of(distributor) == 0
    assert fresh(order.order_no).refunded_fen == order.total_fen  # counted once


# -- stale WeChat Pay notifications --------------------------------------------------------------

def _signed_at(body: str, stamp: int) -> dict[str, str]:
    nonce = secrets.token_hex(16).upper()
    signature = sandbox_wx.rsa_sign(f"{stamp}\n{nonce}\n{body}\n", sandbox_wx.platform_key())
    return {"Content-Type": "application/json", "Wechatpay-Timestamp": str(stamp), "Wechatpay-Nonce": nonce,
            "Wechatpay-Signature": signature, "Wechatpay-Serial": sandbox_wx.conf()["public_key_id"],
            "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048"}


# Just past the 5-minute window either way. A future stamp comes nearer the window while the
# request travels, so it is 20 s past, not 1: on a busy machine a request can take seconds.
@pytest.mark.parametrize("age", [301, 3600, -320, -86400])
def test_a_wechat_pay_notification_signed_too_long_ago_is_refused(age, shop, base):
    _, customer = shop
    order = place(customer, product())
    open_wechat(order, customer.openid)
    body = sandbox_wx.pay_notification(pay_wechat_quietly(order.order_no))
    url = base + "/pay/wechatpay/notify"
    stale = requests.post(url, data=body.encode(), headers=_signed_at(body, int(time.time()) - age), timeout=30)
    assert stale.status_code == 401 and stale.json()["code"] == "FAIL", stale.text
    assert fresh(order.order_no).status == "pending" and payments_of(order) == []
    # Signed afresh (as WeChat Pay does each retry), the same body pays.
    again = requests.post(url, data=body.encode(), headers=_signed_at(body, int(time.time()) - 10), timeout=30)
    assert again.status_code == 204, again.text
    assert fresh(order.order_no).status == "paid"


def test_stale_refund_notifications_are_refused_too(shop, jobs, base):
    _, customer = shop
    order = place(customer, product())
    paid_by_wechat(order, customer.openid, jobs)
    made = requests.post(f"{base}/sandbox/pay/wechatpay/console/refund-outcome",
                         json={"out_trade_no": order.order_no, "outcome": "ABNORMAL"}, timeout=30)
    assert made.status_code == 204
    made = requests.post(f"{base}/sandbox/pay/wechatpay/console/refund", json={"out_trade_no": order.order_no},
                         timeout=30)
    drain(jobs)
    refund = sandbox_wx.load_refund(sandbox_wx.conf()["mchid"], made.json()["out_refund_no"])
    refund.update(status="SUCCESS", success_time=sandbox_wx.rfc3339())
    body = sandbox_wx.notification_body("REFUND.SUCCESS", "退款成功", "refund", sandbox_wx.refund_resource(refund))
    stale = requests.post(base + "/pay/wechatpay/refund-notify", data=body.encode(),
                          headers=_signed_at(body, int(time.time()) - 600), timeout=30)
    assert stale.status_code == 401 and fresh(order.order_no).status == "paid"


# -- bad input at the sandbox's console doors -----------------------------------------------------

@pytest.mark.parametrize("path, data", [
    ("/sandbox/pay/wechatpay/console/refund", {"out_trade_no": "x"}),
    ("/sandbox/pay/wechatpay/console/refund", {"out_trade_no": "20990101000000000000"}),
    ("/sandbox/pay/wechatpay/console/refund-outcome", {"out_trade_no": "20990101000000000000", "outcome": "NO"}),
    ("/sandbox/pay/wechatpay/console/refunds/R1/finish", {"status": "SUCCESS"}),
    ("/sandbox/pay/wechatpay/console/refunds/R1/finish", {"status": "WHATEVER"}),
])
def test_the_console_doors_refuse_bad_input(path, data, app, base):
    resp = requests.post(base + path, json=data, timeout=30)
    assert 400 <= resp.status_code < 500 and resp.json()["code"], resp.text


def test_refunds_list_says_when_there_is_nothing(app):
    assert refunds_listed(app) == "no refunds to look at\n"
    assert db.session.scalar(select(func.count(Refund.id))) == 0
