"""Alipay mobile-web payment, end to end: the product (python-alipay-sdk)
against the sandbox gateway over real HTTP, with real RSA2 signatures both
ways. Every refused notification changes nothing and is not answered
``success`` (Alipay would retry it); a genuine one pays the order once."""
from __future__ import annotations

import json
import re
import secrets
import socket
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from html import unescape
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
from alipay import AliPay
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import func, select
from werkzeug.datastructures import ImmutableMultiDict

from handlers.audit import SYSTEM
from handlers import catalogue, orders, outbox, payments
from models import Order, Payment, Refund, db
from pay.alipay import AlipayError, AlipayGateway, fen_to_yuan, yuan_to_fen
from pay.jobs import request_refund
from sandbox import alipay as sandbox_alipay

BEIJING = timezone(timedelta(hours=8))
RECEIVER = ("张三", "13800138000", "上海市徐汇区漕溪北路 1 号")


# -- helpers -------------------------------------------------------------------

@pytest.fixture
def gw(app) -> AlipayGateway:
    return AlipayGateway.from_settings()


@pytest.fixture
def make_order(app):
    def make(price_fen: int = 1990, qty: int = 1, name: str = "测试") -> str:
        product = catalogue.add_product(name, price_fen, 100)
        order = orders.place_order(orders.Buyer(guest_mobile="13800138000"), {product.id: qty},
                                   orders.Receiver.checked(*RECEIVER))
        outbox.commit()
        return order.order_no

    return make


def fresh(order_no: str) -> Order:
    db.session.rollback()  # see what the server committed
    return orders.find_order(order_no)


def payment_count(order_no: str | None = None) -> int:
    db.session.rollback()
    query = select(func.count(Payment.id))
    if order_no:
        query = query.join(Order, Order.id == Payment.order_id).where(Order.order_no == order_no)
    return db.session.scalar(query)


def verdicts(order_no: str | None = None) -> list[tuple[str, str]]:
    db.session.rollback()
    return [(n.verdict, n.reason) for n in payments.notices(order_no)]


def closed_port_url(path: str = "/pay/alipay/notify") -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


def beijing(delta: timedelta = timedelta()) -> str:
    return (datetime.now(BEIJING) + delta).strftime("%Y-%m-%d %H:%M:%S")


def notice(settings, order_no: str, total: str = "19.90", **over) -> dict[str, str]:
    """The fields of a paid-trade notification, as Alipay sends them (unsigned)."""
    conf = settings["alipay"]
    fields = {"notify_time": beijing(), "notify_type": "trade_status_sync", "notify_id": secrets.token_hex(17),
              "app_id": conf["app_id"], "auth_app_id": conf["app_id"], "charset": "utf-8", "version": "1.0",
              "trade_no": datetime.now(BEIJING).strftime("%Y%m%d") + "2200" + f"{secrets.randbelow(10**16):016d}",
              "out_trade_no": order_no, "buyer_id": "2088102169481075", "seller_id": conf["seller_id"],
              "trade_status": "TRADE_SUCCESS", "total_amount": total, "receipt_amount": total,
              "subject": "测试", "gmt_create": beijing(), "gmt_payment": beijing()}
    fields.update(over)
    return fields


def genuine(fields: dict[str, str]) -> dict[str, str]:
    """Signed with the gateway's key: what only Alipay can produce."""
    return sandbox_alipay.signed_fields(fields)


def stranger_signed(fields: dict[str, str]) -> dict[str, str]:
    return sandbox_alipay.signed_fields(fields, rsa.generate_private_key(public_exponent=65537, key_size=2048))


def post_notice(base: str, form, **kwargs) -> requests.Response:
    return requests.post(f"{base}/pay/alipay/notify", data=form, timeout=30, **kwargs)


def form_action(html: str, name: str) -> str:
    match = re.search(rf'action="([^"]*/cashier/[0-9]+/{name})"', html)
    assert match, f"no {name} button on the page"
    return unescape(match.group(1))


def open_cashier(base: str, url: str) -> str:
    resp = requests.get(url, timeout=30)
    assert resp.status_code == 200, resp.text
    assert "支付宝" in resp.text and "确认付款" in resp.text
    return resp.text


# -- money -----------------------------------------------------------------------

@pytest.mark.parametrize("fen, yuan", [(1, "0.01"), (10, "0.10"), (1990, "19.90"), (1230, "12.30"), (100, "1.00"),
                                       (99999999, "999999.99"), (0, "0.00"), (10000000000, "100000000.00")])
def test_yuan_and_fen_convert_exactly(fen, yuan):
    assert fen_to_yuan(fen) == yuan
    assert yuan_to_fen(yuan) == fen


def test_every_fen_survives_the_round_trip():
    for fen in list(range(0, 20001)) + [99999999, 123456789, 999999999999]:
        assert yuan_to_fen(fen_to_yuan(fen)) == fen


def test_short_yuan_forms_are_read_exactly():
    assert yuan_to_fen("12.3") == 1230
    assert yuan_to_fen("12") == 1200
    assert yuan_to_fen("0.1") == 10


@pytest.mark.parametrize("bad", ["12.305", "-1", "-0.01", "abc", "", " 12", "12 ", "12.30\n", "1e3", "12.", ".5",
                                 "01.00", "+1", "1,000.00", "１２.３０", "NaN", "inf", "0x10", "12.3.4", None, 12.3, 1230])
def test_yuan_that_is_not_an_amount_is_refused(bad):
    with pytest.raises(ValueError):
        yuan_to_fen(bad)


@pytest.mark.parametrize("bad", [-1, 1.5, True, "100", None])
def test_fen_that_is_not_an_amount_is_refused(bad):
    with pytest.raises(ValueError):
        fen_to_yuan(bad)


# -- the payment request -------------------------------------------------------

def test_wap_pay_url_is_a_signed_request_the_gateway_accepts(gw, make_order, settings, base):
    order_no = make_order(995, 2)  # 19.90
    order = fresh(order_no)
    url = gw.wap_pay_url(order, f"{base}/shop/orders/{order_no}")
    assert url.startswith(settings["alipay"]["gateway"] + "?")
    params = dict(parse_qsl(urlsplit(url).query))
    biz = json.loads(params["biz_content"])
    assert params["method"] == "alipay.trade.wap.pay" and params["sign_type"] == "RSA2"
    assert params["notify_url"] == f"{base}/pay/alipay/notify"
    assert biz["out_trade_no"] == order_no and biz["total_amount"] == "19.90"
    assert biz["product_code"] == "QUICK_WAP_PAY" and biz["subject"] == "测试"
    assert biz["time_expire"] > beijing()  # the gateway closes the trade when the order would expire
    html = open_cashier(base, url)
    assert "19.90" in html and order_no in html

    # The request altered on the way (a cheaper amount): the signature no longer holds.
    other = dict(params, biz_content=json.dumps({**biz, "total_amount": "0.01"}, separators=(",", ":")))
    resp = requests.get(settings["alipay"]["gateway"], params=other, timeout=30)
    assert resp.status_code == 400 and "isv.invalid-signature" in resp.text


def test_gateway_refuses_requests_not_signed_by_the_app(gw, make_order, settings, base):
    order_no = make_order()
    foreign_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = foreign_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
    impostor = AliPay(appid=settings["alipay"]["app_id"], app_private_key_string=pem,
                      alipay_public_key_string=Path(settings["alipay"]["alipay_public_key_path"]).read_text())
    query = impostor.api_alipay_trade_wap_pay(out_trade_no=order_no, total_amount="0.01", subject="测试",
                                              return_url=f"{base}/", notify_url=f"{base}/pay/alipay/notify")
    resp = requests.get(f"{settings['alipay']['gateway']}?{query}", timeout=30)
    assert resp.status_code == 400 and "isv.invalid-signature" in resp.text and "确认付款" not in resp.text

    wrong_app = gw.client.api_alipay_trade_wap_pay(out_trade_no=order_no, total_amount="19.90", subject="测试")
    wrong_app = wrong_app.replace(f"app_id={settings['alipay']['app_id']}", "app_id=2021000000009999")
    resp = requests.get(f"{settings['alipay']['gateway']}?{wrong_app}", timeout=30)
    assert resp.status_code == 400 and "isv.invalid-app-id" in resp.text

    resp = requests.get(settings["alipay"]["gateway"], params={"method": "alipay.trade.wap.pay"}, timeout=30)
    assert resp.status_code == 400 and "确认付款" not in resp.text


def test_the_same_order_number_cannot_come_back_with_another_amount(gw, make_order, settings, base):
    order_no = make_order()
    open_cashier(base, gw.wap_pay_url(fresh(order_no), f"{base}/"))
    query = gw.client.api_alipay_trade_wap_pay(out_trade_no=order_no, total_amount="0.01", subject="测试",
                                               return_url=f"{base}/")
    resp = requests.get(f"{settings['alipay']['gateway']}?{query}", timeout=30)
    assert resp.status_code == 400 and "ACQ.CONTEXT_INCONSISTENT" in resp.text


def test_return_and_notify_urls_carry_no_query(gw, make_order, settings, base):
    order_no = make_order()
    with pytest.raises(ValueError):
        gw.wap_pay_url(fresh(order_no), f"{base}/back?order={order_no}")
    query = gw.client.api_alipay_trade_wap_pay(out_trade_no=order_no, total_amount="19.90", subject="测试",
                                               return_url=f"{base}/back?x=1")
    resp = requests.get(f"{settings['alipay']['gateway']}?{query}", timeout=30)
    assert resp.status_code == 400 and "isv.invalid-parameter" in resp.text


def test_an_expired_trade_cannot_be_paid(gw, settings, base, make_order):
    order_no = make_order()
    query = gw.client.api_alipay_trade_wap_pay(out_trade_no=order_no, total_amount="19.90", subject="测试",
                                               time_expire=beijing(timedelta(minutes=-1)))
    resp = requests.get(f"{settings['alipay']['gateway']}?{query}", timeout=30)
    assert resp.status_code == 400 and "ACQ.TRADE_HAS_CLOSE" in resp.text
    assert fresh(order_no).status == "pending"


# -- paying at the cashier -------------------------------------------------------------

def test_cashier_pays_the_order_exactly_once(gw, make_order, base):
    order_no = make_order()
    return_url = f"{base}/shop/orders/{order_no}/alipay-return"
    html = open_cashier(base, gw.wap_pay_url(fresh(order_no), return_url))

    resp = requests.post(base + form_action(html, "pay"), allow_redirects=False, timeout=30)
    # The product answered the notification `success`, so the buyer goes straight back.
    assert resp.status_code == 303
    back = resp.headers["Location"]
    assert back.startswith(return_url + "?")
    args = dict(parse_qsl(urlsplit(back).query))
    assert args["method"] == "alipay.trade.wap.pay.return" and args["out_trade_no"] == order_no
    assert gw.verify_return(args)

    order = fresh(order_no)
    assert order.status == "paid" and order.pay_channel == "alipay"
    assert order.transaction_id == args["trade_no"]
    payment = db.session.scalars(select(Payment)).one()
    assert (payment.amount_fen, payment.transaction_id) == (1990, args["trade_no"])
    assert verdicts(order_no) == [("accepted", "")]

    # A second tap shows the result again; nothing is paid or notified twice.
    again = requests.post(base + form_action(html, "pay"), allow_redirects=False, timeout=30)
    assert again.status_code == 200 and "付款成功" in again.text
    assert payment_count() == 1 and verdicts(order_no) == [("accepted", "")]

    # Alipay retrying the notification: `success` again, still one payment.
    resend = requests.post(base + form_action(again.text, "notify"), timeout=30)
    assert "商户对异步通知的回答：success" in resend.text
    assert payment_count() == 1
    assert verdicts(order_no) == [("accepted", ""), ("duplicate", "")]


def test_return_parameters_are_believed_only_when_alipay_signed_them(gw, make_order, base):
    order_no = make_order()
    html = open_cashier(base, gw.wap_pay_url(fresh(order_no), f"{base}/back"))
    back = requests.post(base + form_action(html, "pay"), allow_redirects=False, timeout=30).headers["Location"]
    args = dict(parse_qsl(urlsplit(back).query))
    assert gw.verify_return(args)
    assert not gw.verify_return({**args, "total_amount": "0.01"})
    assert not gw.verify_return({k: v for k, v in args.items() if k != "sign"})
    assert not gw.verify_return({**args, "sign": "bm90IGEgc2lnbmF0dXJl"})
    assert not gw.verify_return({**args, "sign": "%%% not base64 %%%"})
    assert not gw.verify_return({**args, "sign_type": "RSA"})
    assert not gw.verify_return({})
    assert gw.verify_return(ImmutableMultiDict(list(args.items())))
    assert not gw.verify_return(ImmutableMultiDict(list(args.items()) + [("total_amount", "0.01")]))


def test_many_taps_on_pay_at_once_pay_once(gw, make_order, base):
    order_no = make_order()
    html = open_cashier(base, gw.wap_pay_url(fresh(order_no), f"{base}/back"))
    action = base + form_action(html, "pay")
    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda _: requests.post(action, allow_redirects=False, timeout=60).status_code,
                                range(10)))
    assert all(code in (200, 303) for code in answers) and answers.count(303) == 1
    assert fresh(order_no).status == "paid"
    assert payment_count() == 1 and verdicts(order_no) == [("accepted", "")]


def test_forged_and_tampered_notifications_from_the_cashier_are_refused(gw, make_order, base):
    order_no = make_order()
    html = open_cashier(base, gw.wap_pay_url(fresh(order_no), f"{base}/back"))
    forged = requests.post(base + form_action(html, "forge"), timeout=60)
    assert "伪造签名的付款通知，商户回答：fail" in forged.text
    tampered = requests.post(base + form_action(html, "tamper"), timeout=60)
    assert "0.01 元的付款通知，商户回答：fail" in tampered.text
    assert fresh(order_no).status == "pending" and payment_count() == 0
    assert [v for v, _ in verdicts(order_no)] == ["rejected", "rejected"]
    # The trade itself is untouched: the buyer can still pay.
    paid = requests.post(base + form_action(html, "pay"), allow_redirects=False, timeout=30)
    assert paid.status_code == 303 and fresh(order_no).status == "paid"


# -- notifications: genuine, duplicated, and every attack ---------------------------------

def test_a_genuine_notification_pays_and_a_duplicate_is_acknowledged_once(make_order, settings, base):
    order_no = make_order()
    form = genuine(notice(settings, order_no))
    first = post_notice(base, form)
    assert (first.status_code, first.text) == (200, "success")
    second = post_notice(base, form)
    assert (second.status_code, second.text) == (200, "success")
    assert fresh(order_no).status == "paid" and payment_count() == 1
    assert [v for v, _ in verdicts(order_no)] == ["accepted", "duplicate"]


def _attacks(settings, order_no: str, other_order_no: str) -> dict[str, object]:
    n = lambda **over: notice(settings, order_no, **over)  # noqa: E731
    tampered = genuine(n())
    tampered["total_amount"] = tampered["receipt_amount"] = "0.01"
    duplicated_field = list(genuine(n()).items()) + [("total_amount", "0.01")]
    no_sign = genuine(n())
    del no_sign["sign"]
    rsa1 = dict(genuine(n()), sign_type="RSA")
    return {
        "forged signature": stranger_signed(n()),
        "amount tampered on the way": tampered,
        "amount tampered and re-signed by a stranger": stranger_signed(n(total_amount="0.01", receipt_amount="0.01")),
        "signed by Alipay but not the order's amount": genuine(n(total_amount="0.01", receipt_amount="0.01")),
        "one fen more": genuine(n(total_amount="19.91")),
        "amount with three decimals": genuine(n(total_amount="19.900")),
        "amount not a number": genuine(n(total_amount="19.9O")),
        "unknown out_trade_no": genuine(notice(settings, "2401010000000000000000")),
        "out_trade_no of another shop's format": genuine(notice(settings, "'; DROP TABLE orders; --")),
        "another app's notification": genuine(n(app_id="2021000000009999", auth_app_id="2021000000009999")),
        "another seller's notification": genuine(n(seller_id="2088999999999999")),
        "no trade_no": genuine({k: v for k, v in n().items() if k != "trade_no"}),
        "missing sign": no_sign,
        "empty sign": dict(genuine(n()), sign=""),
        "sign not base64": dict(genuine(n()), sign="%%%"),
        "sign_type RSA": rsa1,
        "no sign_type": {k: v for k, v in genuine(n()).items() if k != "sign_type"},
        "a field given twice": duplicated_field,
        "sign moved to another notification": dict(n(out_trade_no=other_order_no),
                                                   sign=genuine(n())["sign"], sign_type="RSA2"),
    }


ATTACKS = ["forged signature", "amount tampered on the way", "amount tampered and re-signed by a stranger",
           "signed by Alipay but not the order's amount", "one fen more", "amount with three decimals",
           "amount not a number", "unknown out_trade_no", "out_trade_no of another shop's format",
           "another app's notification", "another seller's notification", "no trade_no", "missing sign",
           "empty sign", "sign not base64", "sign_type RSA", "no sign_type", "a field given twice",
           "sign moved to another notification"]


@pytest.mark.parametrize("attack", ATTACKS)
def test_a_refused_notification_changes_nothing_and_is_not_acknowledged(attack, make_order, settings, base):
    order_no, other = make_order(), make_order()
    resp = post_notice(base, _attacks(settings, order_no, other)[attack])
    assert resp.status_code == 400 and resp.text != "success"
    assert fresh(order_no).status == "pending" and fresh(other).status == "pending"
    assert payment_count() == 0
    assert [v for v, _ in verdicts()] == ["rejected"]  # logged, for the merchant to see


@pytest.mark.parametrize("body, content_type", [
    (b"", "application/x-www-form-urlencoded"),
    (b"hello", "text/plain"),
    (b'{"trade_status": "TRADE_SUCCESS"}', "application/json"),
    (b"%%%&&&===", "application/x-www-form-urlencoded"),
    (b"sign=abc&trade_status=TRADE_SUCCESS&out_trade_no=1", "application/x-www-form-urlencoded"),
    ("\u4e2d\u6587=\u4e71\u7801".encode("gbk"), "application/x-www-form-urlencoded"),
    (b"\xff\xfe\x00garbage", "multipart/form-data; boundary=x"),
    (b"out_trade_no=26010100%00&sign=%00&sign_type=RSA2", "application/x-www-form-urlencoded"),
    (b"out_trade_no=" + b"9" * 5000 + b"&sign=x&sign_type=RSA2", "application/x-www-form-urlencoded"),
])
def test_garbage_is_refused_without_an_error(body, content_type, app, base):
    resp = requests.post(f"{base}/pay/alipay/notify", data=body, headers={"Content-Type": content_type},
                         timeout=30)
    assert resp.status_code == 400 and resp.text == "fail"
    assert payment_count() == 0


def test_notification_only_by_post(app, base):
    resp = requests.get(f"{base}/pay/alipay/notify", params={"trade_status": "TRADE_SUCCESS"}, timeout=30)
    assert resp.status_code == 405 and resp.text != "success"


@pytest.mark.parametrize("status", ["WAIT_BUYER_PAY", "TRADE_CLOSED"])
def test_a_genuine_notice_of_an_unpaid_trade_pays_nothing(status, make_order, settings, base):
    """Acknowledged (retrying it could never change anything) but no payment."""
    order_no = make_order()
    resp = post_notice(base, genuine(notice(settings, order_no, trade_status=status, gmt_payment="")))
    assert resp.text == "success"
    assert fresh(order_no).status == "pending" and payment_count() == 0
    assert verdicts(order_no) == [("accepted", "not paid")]


def test_trade_finished_also_pays(make_order, settings, base):
    order_no = make_order()
    assert post_notice(base, genuine(notice(settings, order_no, trade_status="TRADE_FINISHED"))).text == "success"
    assert fresh(order_no).status == "paid"


def test_twenty_duplicate_notifications_at_once_pay_once(make_order, settings, base):
    order_no = make_order()
    fields = notice(settings, order_no)
    # Alipay's retries carry new notify ids and times; the trade is the same.
    forms = [genuine({**fields, "notify_id": secrets.token_hex(17)}) for _ in range(20)]
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda f: post_notice(base, f), forms))
    assert all(r.status_code < 500 for r in answers), [r.text for r in answers]
    assert sum(r.text == "success" for r in answers) >= 1
    assert fresh(order_no).status == "paid"
    assert payment_count() == 1
    found = [v for v, _ in verdicts(order_no)]
    assert found.count("accepted") == 1 and len(found) == 20
    # Whatever raced, a later retry is acknowledged.
    assert post_notice(base, forms[0]).text == "success"


# -- asking the gateway --------------------------------------------------------------------

def test_the_buyer_back_before_the_notification_is_paid_by_asking(gw, make_order, settings, base):
    order_no = make_order()
    order = fresh(order_no)
    assert gw.query(order) is None  # no trade until the cashier opens
    # The notification will not get through (Alipay cannot reach us yet).
    query = gw.client.api_alipay_trade_wap_pay(out_trade_no=order_no, total_amount="19.90", subject="测试",
                                               return_url=f"{base}/back", notify_url=closed_port_url())
    html = open_cashier(base, f"{settings['alipay']['gateway']}?{query}")
    trade = gw.query(fresh(order_no))
    assert trade is not None and not trade.paid and trade.raw["trade_status"] == "WAIT_BUYER_PAY"

    page = requests.post(base + form_action(html, "pay"), allow_redirects=False, timeout=30)
    assert page.status_code == 200 and "发送失败" in page.text and 'id="back"' in page.text
    assert fresh(order_no).status == "pending"

    order = payments.sync_with_gateway(order_no, gw)
    outbox.commit()
    assert fresh(order_no).status == "paid"
    assert payment_count() == 1 and verdicts(order_no) == [("accepted", "")]
    paid_trade = gw.query(fresh(order_no))
    assert paid_trade.paid and paid_trade.amount_fen == 1990

    # The notification arrives later: acknowledged, not paid twice.
    late = genuine(notice(settings, order_no, trade_no=paid_trade.transaction_id))
    assert post_notice(base, late).text == "success"
    assert payment_count() == 1
    assert [v for v, _ in verdicts(order_no)] == ["accepted", "duplicate"]


def test_answers_not_signed_by_alipay_are_not_believed(make_order, settings, base):
    """The SDK checks the gateway's signature on every answer."""
    order_no = make_order()
    gw = AlipayGateway.from_settings()
    open_cashier(base, gw.wap_pay_url(fresh(order_no), f"{base}/back"))
    assert gw.query(fresh(order_no)) is not None
    other_public = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    fooled = AlipayGateway(AliPay(appid=gw.app_id, app_private_key_string=Path(
        settings["alipay"]["app_private_key_path"]).read_text(), alipay_public_key_string=other_public),
        gw.app_id, gw.seller_id, gw.gateway, gw.notify_url)
    fooled.client._gateway = gw.gateway
    assert fooled.query(fresh(order_no)) is None
    unreachable = AlipayGateway.from_settings()
    unreachable.client._gateway = closed_port_url("/gateway.do")
    assert unreachable.query(fresh(order_no)) is None


def test_closing_an_unpaid_trade_stops_the_cashier(gw, make_order, base):
    order_no = make_order()
    url = gw.wap_pay_url(fresh(order_no), f"{base}/back")
    html = open_cashier(base, url)
    assert gw.close(fresh(order_no)) is True
    assert gw.query(fresh(order_no)).raw["trade_status"] == "TRADE_CLOSED"
    reopened = requests.get(url, timeout=30)
    assert reopened.status_code == 400 and "ACQ.TRADE_HAS_CLOSE" in reopened.text
    paid = requests.post(base + form_action(html, "pay"), allow_redirects=False, timeout=30)
    assert paid.status_code == 400 and fresh(order_no).status == "pending"
    assert gw.close(fresh(make_order())) is True  # never opened: nothing to close


# -- refunds -----------------------------------------------------------------------------------

def _paid_at_cashier(gw, order_no: str, base: str) -> str:
    html = open_cashier(base, gw.wap_pay_url(fresh(order_no), f"{base}/back"))
    back = requests.post(base + form_action(html, "pay"), allow_redirects=False, timeout=30).headers["Location"]
    assert fresh(order_no).status == "paid"
    return dict(parse_qsl(urlsplit(back).query))["trade_no"]


def test_refund_through_the_job_refunds_the_order(gw, make_order, base, jobs):
    order_no = make_order(1990, 2)
    trade_no = _paid_at_cashier(gw, order_no, base)
    refund = payments.start_refund(order_no, "买家不想要了", actor=SYSTEM)
    outbox.commit()
    out_refund_no = refund.out_refund_no
    jobs.run()
    order = fresh(order_no)
    assert order.status == "refunded"
    refund = payments.find_refund(out_refund_no)
    assert refund.status == "succeeded" and refund.gateway_refund_id == trade_no
    assert sandbox_alipay.load_trade(trade_no)["refunded_fen"] == 3980
    assert gw.query(order).raw["trade_status"] == "TRADE_CLOSED"

    # Asked again (a retried job): the same out_request_no, no money moves twice.
    gw.refund(order, refund)
    outbox.commit()
    assert sandbox_alipay.load_trade(trade_no)["refunded_fen"] == 3980
    assert fresh(order_no).status == "refunded"


def test_a_refund_whose_answer_was_lost_is_confirmed_on_retry(gw, make_order, base, jobs):
    """Alipay refunded, but the answer never reached us; the retried job gets
    fund_change N for the same out_request_no and confirms by the refund query."""
    order_no = make_order()
    trade_no = _paid_at_cashier(gw, order_no, base)
    refund = payments.start_refund(order_no, "测试退款", actor=SYSTEM)
    db.session.commit()  # the job has not run yet
    lost = gw.client.api_alipay_trade_refund(refund_amount="19.90", out_trade_no=order_no,
                                             out_request_no=refund.out_refund_no)
    assert lost["fund_change"] == "Y"
    request_refund(refund.out_refund_no)
    assert fresh(order_no).status == "refunded"
    assert payments.find_refund(refund.out_refund_no).status == "succeeded"
    assert sandbox_alipay.load_trade(trade_no)["refunded_fen"] == 1990


def test_a_refund_alipay_refuses_puts_the_order_back(make_order, settings, base, jobs):
    order_no = make_order()
    # Paid by a notification whose trade the gateway does not know.
    assert post_notice(base, genuine(notice(settings, order_no))).text == "success"
    refund = payments.start_refund(order_no, "测试退款", actor=SYSTEM)
    outbox.commit()
    out_refund_no = refund.out_refund_no
    jobs.run()
    assert fresh(order_no).status == "paid"
    assert payments.find_refund(out_refund_no).status == "failed"


def test_a_refund_without_an_answer_is_retried_not_failed(gw, make_order, base):
    order_no = make_order()
    _paid_at_cashier(gw, order_no, base)
    refund = payments.start_refund(order_no, "测试退款", actor=SYSTEM)
    db.session.commit()  # not through the outbox: this test asks the gateway itself
    unreachable = AlipayGateway.from_settings()
    unreachable.client._gateway = closed_port_url("/gateway.do")
    with pytest.raises(AlipayError):
        unreachable.refund(fresh(order_no), db.session.get(Refund, refund.id))
    assert fresh(order_no).status == "refunding"
    assert db.session.get(Refund, refund.id).status == "pending"
    # Now the gateway answers: the refund finishes.
    gw.refund(fresh(order_no), db.session.get(Refund, refund.id))
    outbox.commit()
    assert fresh(order_no).status == "refunded"


def test_gateway_refund_is_idempotent_and_bounded(gw, make_order, base, settings):
    order_no = make_order()
    trade_no = _paid_at_cashier(gw, order_no, base)
    client = gw.client
    first = client.api_alipay_trade_refund(refund_amount="10.00", out_trade_no=order_no, out_request_no="R1")
    assert (first["code"], first["fund_change"], first["refund_fee"]) == ("10000", "Y", "10.00")
    again = client.api_alipay_trade_refund(refund_amount="10.00", out_trade_no=order_no, out_request_no="R1")
    assert (again["code"], again["fund_change"], again["refund_fee"]) == ("10000", "N", "10.00")
    changed = client.api_alipay_trade_refund(refund_amount="11.00", out_trade_no=order_no, out_request_no="R1")
    assert changed["code"] == "40004"
    too_much = client.api_alipay_trade_refund(refund_amount="9.91", out_trade_no=order_no, out_request_no="R2")
    assert (too_much["code"], too_much["sub_code"]) == ("40004", "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL")
    rest = client.api_alipay_trade_refund(refund_amount="9.90", out_trade_no=order_no, out_request_no="R2")
    assert (rest["code"], rest["refund_fee"]) == ("10000", "19.90")
    assert sandbox_alipay.load_trade(trade_no)["status"] == "TRADE_CLOSED"
    asked = client.api_alipay_trade_fastpay_refund_query(out_request_no="R1", out_trade_no=order_no)
    assert (asked["refund_status"], asked["refund_amount"]) == ("REFUND_SUCCESS", "10.00")
    unknown = client.api_alipay_trade_fastpay_refund_query(out_request_no="R9", out_trade_no=order_no)
    assert unknown["code"] == "10000" and "refund_status" not in unknown
    missing = client.api_alipay_trade_refund(refund_amount="1.00", out_trade_no="nosuchorder", out_request_no="R3")
    assert (missing["code"], missing["sub_code"]) == ("40004", "ACQ.TRADE_NOT_EXIST")
