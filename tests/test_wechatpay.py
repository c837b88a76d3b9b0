"""WeChat Pay API v3 (JSAPI, public-key mode), end to end: the product
(wechatpayv3) against the sandbox gateway over real HTTP, with real RSA
signatures both ways and AEAD_AES_256_GCM-encrypted notifications. Every
refused notification changes nothing, is recorded, and is answered 4xx with
{"code":"FAIL"} (WeChat Pay retries it); a genuine one pays the order once."""
from __future__ import annotations

import base64
import json
import re
import secrets
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from html import unescape
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from sqlalchemy import func, select
from wechatpayv3 import WeChatPay, WeChatPayType

from distribution_helpers import make_user
from handlers.audit import SYSTEM
from handlers import catalogue, orders, outbox, payments
from handlers.errors import DomainError
from models import Order, Payment, Product, Refund, db
from pay.wechatpay import WeChatPayError, WeChatPayGateway, description_of
from sandbox import paykeys
from sandbox import wechatpay as sandbox_wx

RECEIVER = ("张三", "13800138000", "上海市徐汇区漕溪北路 1 号")


# -- helpers -------------------------------------------------------------------

@pytest.fixture
def gw(app) -> WeChatPayGateway:
    return WeChatPayGateway.from_settings()


@pytest.fixture
def buyer(app):
    return make_user("微信买家")


@pytest.fixture
def make_order(app, buyer):
    def make(price_fen: int = 1990, qty: int = 1, stock: int = 10) -> Order:
        product = catalogue.add_product("测试", price_fen, stock)
        order = orders.place_order(orders.Buyer(user=buyer), {product.id: qty}, orders.Receiver.checked(*RECEIVER))
        outbox.commit()
        return order

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


def verdicts(key: str | None = None) -> list[tuple[str, str]]:
    db.session.rollback()
    return [(n.verdict, n.reason) for n in payments.notices(key)]


def closed_port_url(path: str = "") -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


def stranger_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def merchant_public(settings) -> rsa.RSAPublicKey:
    return serialization.load_pem_public_key(paykeys.merchant_public_half(settings["wechatpay"]["private_key_path"]))


def resource(settings, order: Order, **over) -> dict:
    """A paid transaction, as WeChat Pay describes it inside a notification."""
    conf = settings["wechatpay"]
    data = {"appid": conf["appid"], "mchid": conf["mchid"], "out_trade_no": order.order_no,
            "transaction_id": "4200" + f"{secrets.randbelow(10**24):024d}", "trade_type": "JSAPI",
            "trade_state": "SUCCESS", "trade_state_desc": "支付成功", "bank_type": "OTHERS", "attach": "",
            "success_time": sandbox_wx.rfc3339(), "payer": {"openid": "oBUYER"},
            "amount": {"total": order.total_fen, "payer_total": order.total_fen, "currency": "CNY",
                       "payer_currency": "CNY"}}
    data.update(over)
    return data


def notification(res: dict, event_type: str = "TRANSACTION.SUCCESS", original_type: str = "transaction",
                 key: rsa.RSAPrivateKey | None = None, **header_over) -> tuple[dict[str, str], bytes]:
    """Encrypted with the APIv3 key and signed with the platform key, unless
    ``key`` says whose signature it carries."""
    body = sandbox_wx.notification_body(event_type, "支付成功", original_type, res)
    headers = {"Content-Type": "application/json", **sandbox_wx.signed_headers(body, key), **header_over}
    return headers, body.encode()


def post(base: str, note: tuple[dict[str, str], bytes], path: str = "/pay/wechatpay/notify") -> requests.Response:
    headers, body = note
    return requests.post(base + path, data=body, headers=headers, timeout=30)


def assert_refused(resp: requests.Response, status: int | None = None) -> None:
    assert 400 <= resp.status_code < 500, (resp.status_code, resp.text)
    if status:
        assert resp.status_code == status, resp.text
    answer = resp.json()
    assert answer["code"] == "FAIL" and answer["message"]


def cashier_url(gw: WeChatPayGateway, order: Order, openid: str, back: str) -> str:
    return gw.cashier_url(gw.jsapi_params(order, openid), back)


def hidden_form(html: str) -> dict[str, str]:
    return {name: unescape(value) for name, value in
            re.findall(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)">', html)[:2]}


def press(base: str, html: str, button: str, **kwargs) -> requests.Response:
    return requests.post(f"{base}/sandbox/pay/wechatpay/cashier/{button}", data=hidden_form(html), timeout=60,
                         **kwargs)


# -- prepay and paySign ------------------------------------------------------------------

def test_prepay_gives_the_bridge_parameters_signed_by_the_merchant(gw, make_order, buyer, settings):
    order = make_order()
    params = gw.jsapi_params(order, buyer.openid)
    assert set(params) == {"appId", "timeStamp", "nonceStr", "package", "signType", "paySign"}
    assert params["appId"] == settings["wechatpay"]["appid"] and params["signType"] == "RSA"
    assert re.fullmatch(r"prepay_id=wx[0-9a-f]{34}", params["package"])
    message = "\n".join([params["appId"], params["timeStamp"], params["nonceStr"], params["package"]]) + "\n"
    merchant_public(settings).verify(base64.b64decode(params["paySign"]), message.encode(), padding.PKCS1v15(),
                                     hashes.SHA256())
    with pytest.raises(InvalidSignature):
        merchant_public(settings).verify(base64.b64decode(params["paySign"]), message.replace("wx", "wy").encode(),
                                         padding.PKCS1v15(), hashes.SHA256())
    # The gateway knows the trade as ordered.
    trade = sandbox_wx.load_trade(settings["wechatpay"]["mchid"], order.order_no)
    assert (trade["total"], trade["openid"], trade["description"]) == (1990, buyer.openid, description_of(order))
    assert trade["notify_url"] == settings["app"]["base_url"] + "/pay/wechatpay/notify"
    assert trade["trade_state"] == "NOTPAY" and trade["time_expire"].endswith("+08:00")
    # Asked again: the same prepay id (cached, and WeChat Pay answers the same anyway).
    again = gw.jsapi_params(order, buyer.openid)
    assert again["package"] == params["package"] and again["nonceStr"] != params["nonceStr"]


def test_the_same_out_trade_no_is_one_trade(gw, make_order, buyer, settings):
    order = make_order()
    package = gw.jsapi_params(order, buyer.openid)["package"]
    kwargs = dict(description=description_of(order), out_trade_no=order.order_no,
        amount={"total": order.total_fen, "currency": "CNY"}, payer={"openid": buyer.openid})
    code, text = gw.client.pay(**kwargs)
    assert code == 200 and "prepay_id=" + json.loads(text)["prepay_id"] == package
    code, text = gw.client.pay(**{**kwargs, "amount": {"total": 1, "currency": "CNY"}})
    assert code == 400 and json.loads(text) == {"code": "INVALID_REQUEST", "message": "订单号重复"}
    # Another payer for the same order number is another content too.
    with pytest.raises(WeChatPayError) as refused:
        gw.jsapi_params(order, "oSOMEBODYELSE")
    assert isinstance(refused.value, DomainError) and refused.value.message == "订单信息已变化，请重新下单"


@pytest.mark.parametrize("over, message", [
    ({"out_trade_no": "12345"}, "out_trade_no"),
    ({"out_trade_no": "A" * 33}, "out_trade_no"),
    ({"out_trade_no": "ABC/123456"}, "out_trade_no"),
    ({"amount": {"total": 0, "currency": "CNY"}}, "amount.total"),
    ({"amount": {"total": 1.5, "currency": "CNY"}}, "amount.total"),
    ({"amount": {"total": 100, "currency": "USD"}}, "currency"),
    ({"payer": {"openid": ""}}, "payer"),
    ({"description": "x" * 128}, "description"),
    ({"notify_url": "http://127.0.0.1/notify?order=1"}, "notify_url"),
    ({"time_expire": "tomorrow"}, "time_expire"),
])
def test_the_gateway_refuses_a_bad_jsapi_order(gw, over, message):
    kwargs = dict(description="测试", out_trade_no="T" + secrets.token_hex(8),
                  amount={"total": 100, "currency": "CNY"}, payer={"openid": "oBUYER"})
    kwargs.update(over)
    if not kwargs["payer"]["openid"]:
        kwargs["payer"] = {"openid": 0}  # the SDK itself refuses an empty payer
    code, text = gw.client.pay(**kwargs)
    answer = json.loads(text)
    assert code == 400 and answer["code"] == "PARAM_ERROR" and message in answer["message"], text


def test_requests_are_checked_and_answers_signed(gw, settings, base, make_order):
    url = f"{base}/sandbox/pay/wechatpay/v3/pay/transactions/jsapi"
    unsigned = requests.post(url, json={"mchid": gw.mchid}, timeout=10)
    assert unsigned.status_code == 401 and unsigned.json()["code"] == "SIGN_ERROR"
    # A merchant key that is not the one registered: SIGN_ERROR, through the SDK.
    conf = settings["wechatpay"]
    pem = stranger_key().private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()).decode()
    impostor = WeChatPay(wechatpay_type=WeChatPayType.JSAPI, mchid=conf["mchid"], private_key=pem,
                         cert_serial_no=conf["cert_serial_no"], appid=conf["appid"], apiv3_key=conf["apiv3_key"],
                         notify_url=base + "/pay/wechatpay/notify",
                         public_key=Path(conf["public_key_path"]).read_text(), public_key_id=conf["public_key_id"])
    impostor._core._gate_way = conf["api_base"]
    code, text = impostor.query(out_trade_no="T12345678")
    assert code == 401 and json.loads(text)["code"] == "SIGN_ERROR"
    # Every answer carries WeChat Pay's signature, which the SDK checks.
    answer = requests.get(f"{base}/sandbox/pay/wechatpay/v3/pay/transactions/out-trade-no/T1?mchid=1", timeout=10)
    assert {"Wechatpay-Signature", "Wechatpay-Timestamp", "Wechatpay-Nonce"} <= set(answer.headers)
    assert answer.headers["Wechatpay-Serial"] == conf["public_key_id"]
    # A gateway whose answers are signed by someone else is not believed.
    fooled = WeChatPayGateway.from_settings()
    other = stranger_key().public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo)
    fooled.client._core._public_key = serialization.load_pem_public_key(other)
    with pytest.raises(WeChatPayError) as refused:
        fooled.prepay_id(make_order(), "oBUYER")
    assert "微信支付暂时不可用" in refused.value.message and "signature" in refused.value.detail


def test_an_unreachable_gateway_is_a_clear_refusal(make_order, buyer):
    order = make_order()
    down = WeChatPayGateway.from_settings()
    down.client._core._gate_way = closed_port_url()
    with pytest.raises(WeChatPayError) as refused:
        down.jsapi_params(order, buyer.openid)
    assert refused.value.message == "微信支付暂时无法连接，请稍后再试"
    assert down.query(order) is None  # nothing known: the notification will still come
    assert fresh(order.order_no).status == "pending"


def test_production_has_no_cashier(gw, make_order, buyer):
    params = gw.jsapi_params(make_order(), buyer.openid)
    gw.sandbox = False
    assert gw.cashier_url(params, "https://shop.example/back") is None


# -- the sandbox cashier ---------------------------------------------------------------------

def test_the_cashier_pays_the_order_exactly_once(gw, make_order, buyer, base, settings):
    order = make_order(1990, 2)
    back = f"{base}/h5/orders/{order.order_no}"
    url = cashier_url(gw, order, buyer.openid, back)
    assert url.startswith(base + "/sandbox/pay/wechatpay/cashier?")
    page = requests.get(url, timeout=30)
    assert page.status_code == 200 and "微信支付" in page.text and "¥</small>39.80" in page.text
    assert "确认支付" in page.text
    paid = press(base, page.text, "pay", allow_redirects=False)
    assert paid.status_code == 303 and paid.headers["Location"] == back
    now = fresh(order.order_no)
    assert (now.status, now.pay_channel) == ("paid", "wechatpay") and payment_count() == 1
    assert verdicts(order.order_no) == [("accepted", "")]
    # The gateway agrees, and its transaction id is the order's.
    trade = gw.query(now)
    assert trade.paid and trade.amount_fen == 3980 and trade.transaction_id == now.transaction_id
    # A second tap charges nothing and sends nothing.
    again = press(base, page.text, "pay", allow_redirects=False)
    assert again.status_code == 303 and payment_count() == 1 and len(verdicts(order.order_no)) == 1
    # Paid: no new prepay for it.
    with pytest.raises(WeChatPayError) as refused:
        gw.prepay_id(fresh(order.order_no), "oSOMEBODYELSE")
    assert refused.value.message == "该订单已支付，请勿重复付款"


def test_ten_taps_at_once_pay_once(gw, make_order, buyer, base):
    order = make_order()
    page = requests.get(cashier_url(gw, order, buyer.openid, base + "/h5/orders"), timeout=30)
    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda _: press(base, page.text, "pay", allow_redirects=False).status_code,
                                range(10)))
    assert all(code == 303 for code in answers)
    assert fresh(order.order_no).status == "paid" and payment_count() == 1
    assert verdicts(order.order_no) == [("accepted", "")]


def test_the_cashier_checks_pay_sign_return_and_prepay_id(gw, make_order, buyer, base):
    order = make_order()
    url = cashier_url(gw, order, buyer.openid, base + "/h5/orders")
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    cashier = base + "/sandbox/pay/wechatpay/cashier"
    forged = requests.get(cashier, params={**query, "paySign": base64.b64encode(b"x" * 256).decode()}, timeout=30)
    assert forged.status_code == 400 and "支付验证签名失败" in forged.text
    other_time = requests.get(cashier, params={**query, "timeStamp": "1"}, timeout=30)
    assert other_time.status_code == 400 and "SIGN_ERROR" in other_time.text
    for back in ("https://evil.example/steal", "//evil.example/x", "javascript:alert(1)"):
        away = requests.get(cashier, params={**query, "return": back}, timeout=30)
        assert away.status_code == 400 and "本站" in away.text
    unknown = requests.get(cashier, params={**query, "prepay_id": "wx" + "0" * 34}, timeout=30)
    assert unknown.status_code == 404
    posted = requests.post(cashier + "/pay", data={"prepay_id": query["prepay_id"], "return": "https://evil.example"},
                           allow_redirects=False, timeout=30)
    assert posted.status_code == 400
    assert fresh(order.order_no).status == "pending" and payment_count() == 0


def test_forged_and_tampered_notifications_from_the_cashier_are_refused(gw, make_order, buyer, base):
    order = make_order()
    page = requests.get(cashier_url(gw, order, buyer.openid, base + "/h5/orders"), timeout=30).text
    forged = press(base, page, "forge")
    assert forged.status_code == 200 and "伪造签名的支付通知，商户回答：HTTP 401" in forged.text
    tampered = press(base, page, "tamper")
    assert "0.01 元的支付通知（签名有效），商户回答：HTTP 400" in tampered.text and "FAIL" in tampered.text
    assert fresh(order.order_no).status == "pending" and payment_count() == 0
    found = verdicts()
    assert [v for v, _ in found] == ["rejected", "rejected"] and "1990 fen" in found[1][1]
    # The trade itself is untouched: the buyer can still pay.
    paid = press(base, page, "pay", allow_redirects=False)
    assert paid.status_code == 303 and fresh(order.order_no).status == "paid"


def test_a_closed_trade_cannot_be_paid(gw, make_order, buyer, base):
    order = make_order()
    url = cashier_url(gw, order, buyer.openid, base + "/h5/orders")
    assert gw.close(order) is True
    page = requests.get(url, timeout=30)
    assert page.status_code == 400 and "ORDER_CLOSED" in page.text
    with pytest.raises(WeChatPayError) as refused:
        gw.jsapi_params(order, buyer.openid)
    assert refused.value.message == "该订单已关闭，请重新下单"
    # Never opened: closing is fine too; paid: it cannot be closed.
    assert gw.close(make_order()) is True
    paid = make_order()
    page = requests.get(cashier_url(gw, paid, buyer.openid, base + "/h5/orders"), timeout=30).text
    press(base, page, "pay", allow_redirects=False)
    assert gw.close(paid) is False


# -- notifications: genuine, duplicated, and every attack --------------------------------------

def test_a_genuine_notification_pays_and_a_replay_is_acknowledged_once(make_order, settings, base):
    order = make_order()
    note = notification(resource(settings, order, payer={"openid": "oPAYER"}))
    first = post(base, note)
    assert (first.status_code, first.content) == (204, b"")
    paid = fresh(order.order_no)
    assert paid.status == "paid" and paid.pay_channel == "wechatpay" and paid.transaction_id
    assert db.session.scalars(select(Payment)).one().payer == "oPAYER"
    replay = post(base, note)
    assert (replay.status_code, replay.content) == (204, b"")
    assert payment_count() == 1 and [v for v, _ in verdicts(order.order_no)] == ["accepted", "duplicate"]


def _probe(settings, order):
    headers, body = notification(resource(settings, order))
    return {**headers, "Wechatpay-Signature": "WECHATPAY/SIGNTEST/" + base64.b64encode(b"probe" * 40).decode()}, body


def _tampered_after_signing(settings, order):
    headers, body = notification(resource(settings, order))
    data = json.loads(body)
    data["summary"] = "支付成功!"
    return headers, json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


def _wrong_apiv3_key(settings, order):
    body = json.dumps({"id": "x", "create_time": sandbox_wx.rfc3339(), "resource_type": "encrypt-resource",
                       "event_type": "TRANSACTION.SUCCESS", "summary": "支付成功",
                       "resource": sandbox_wx.encrypt_resource(resource(settings, order), "transaction",
                                                               secrets.token_hex(16))})
    return {"Content-Type": "application/json", **sandbox_wx.signed_headers(body)}, body.encode()


def _signed_raw(body: str):
    return {"Content-Type": "application/json", **sandbox_wx.signed_headers(body)}, body.encode()


ATTACKS = {
    "forged signature": (lambda s, o: notification(resource(s, o), key=stranger_key()), 401),
    "probe notification": (_probe, 401),
    "body changed after signing": (_tampered_after_signing, 401),
    "no signature headers": (lambda s, o: ({"Content-Type": "application/json"},
                                           notification(resource(s, o))[1]), 401),
    "another serial": (lambda s, o: notification(resource(s, o), **{"Wechatpay-Serial": "5157F09EFDC096DE15EBE81A"
                                                                    "47057A7232F1B8E1"}), 401),
    "another signature type": (lambda s, o: notification(resource(s, o), **{"Wechatpay-Signature-Type":
                                                                            "WECHATPAY2-SM2-WITH-SM3"}), 401),
    "resource not encrypted with our key": (_wrong_apiv3_key, 401),
    "tampered amount, validly signed": (lambda s, o: notification(resource(
        s, o, amount={"total": 1, "payer_total": 1, "currency": "CNY", "payer_currency": "CNY"})), 400),
    "amount as a string": (lambda s, o: notification(resource(
        s, o, amount={"total": str(o.total_fen), "currency": "CNY"})), 400),
    "unknown out_trade_no": (lambda s, o: notification(resource(s, o, out_trade_no="2099010100000000000")), 400),
    "wrong mchid": (lambda s, o: notification(resource(s, o, mchid="1230000109")), 400),
    "wrong appid": (lambda s, o: notification(resource(s, o, appid="wxd678efh567hg6787")), 400),
    "trade not paid": (lambda s, o: notification(resource(s, o, trade_state="NOTPAY")), 400),
    "trade closed": (lambda s, o: notification(resource(s, o, trade_state="CLOSED")), 400),
    "another event": (lambda s, o: notification(resource(s, o), event_type="REFUND.SUCCESS"), 400),
    "no transaction_id": (lambda s, o: notification(resource(s, o, transaction_id="")), 400),
    "signed garbage": (lambda s, o: _signed_raw("not json at all"), 400),
    "signed JSON array": (lambda s, o: _signed_raw("[1, 2, 3]"), 400),
    "unsigned garbage": (lambda s, o: ({"Content-Type": "application/json"}, secrets.token_bytes(300)), 401),
    "oversized": (lambda s, o: notification(resource(s, o, attach="x" * 100_000)), 413),
}


@pytest.mark.parametrize("attack", ATTACKS)
def test_every_attack_changes_nothing(attack, make_order, settings, base):
    order = make_order()
    build, status = ATTACKS[attack]
    resp = post(base, build(settings, order))
    assert_refused(resp, status)
    assert fresh(order.order_no).status == "pending" and payment_count() == 0
    found = verdicts()
    assert [v for v, _ in found] == ["rejected"], found
    # The genuine notification still pays afterwards.
    assert post(base, notification(resource(settings, order))).status_code == 204
    assert fresh(order.order_no).status == "paid" and payment_count() == 1


def test_attacks_on_a_paid_order_change_nothing(make_order, settings, base):
    order = make_order()
    assert post(base, notification(resource(settings, order))).status_code == 204
    paid = fresh(order.order_no)
    for attack in ("forged signature", "tampered amount, validly signed", "wrong appid", "trade not paid"):
        build, status = ATTACKS[attack]
        assert_refused(post(base, build(settings, paid)), status)
    # Another transaction for the same order (paid twice) is recorded as a
    # duplicate and refunded by a refund of its own; the order is paid once.
    second = post(base, notification(resource(settings, paid)))
    assert second.status_code == 204
    now = fresh(order.order_no)
    assert (now.status, now.transaction_id, now.paid_at) == ("paid", paid.transaction_id, paid.paid_at)
    assert payment_count() == 2 and verdicts(order.order_no)[-1] == ("duplicate", "second payment, refunded")
    duplicate = db.session.scalars(select(Payment).where(Payment.duplicate.is_(True))).one()
    refund = db.session.scalars(select(Refund)).one()
    assert (refund.payment_id, refund.origin, refund.return_to) == (duplicate.id, "auto", None)


def test_garbage_of_every_kind_is_a_4xx(make_order, settings, base):
    url = base + "/pay/wechatpay/notify"
    tries = [
        requests.post(url, data=b"", timeout=10),
        requests.post(url, data=b"\x00\xff" * 50, headers={"Content-Type": "application/json"}, timeout=10),
        requests.post(url, data="\x00{}", headers={**sandbox_wx.signed_headers("\x00{}"),
                                                   "Content-Type": "application/json"}, timeout=10),
        requests.post(url, json={"resource": "x"}, headers=sandbox_wx.signed_headers('{"resource": "x"}'),
                      timeout=10),
        requests.post(url, data=b"x" * (3 * 1024 * 1024), timeout=30),
        requests.post(url, data=(b"x" for _ in range(200_000)), timeout=30),  # chunked, no length
    ]
    _, body = notification(resource(settings, make_order()))
    headers = {**sandbox_wx.signed_headers(body.decode()), "Content-Type": "application/json",
               "Wechatpay-Timestamp": "not-a-number"}
    tries.append(requests.post(url, data=body, headers=headers, timeout=10))
    for resp in tries:
        assert 400 <= resp.status_code < 500, (resp.status_code, resp.text[:200])
    assert payment_count() == 0


def test_twenty_duplicate_notifications_at_once_pay_once(make_order, settings, base):
    order = make_order()
    note = notification(resource(settings, order))
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda _: post(base, note), range(20)))
    assert all(r.status_code < 500 for r in answers), [r.text for r in answers]
    if settings["app"]["database_url"].startswith("postgresql"):
        # The order row is locked while a notification is handled: the others see the payment.
        assert all(r.status_code == 204 for r in answers), [r.text for r in answers]
    else:
        assert sum(r.status_code == 204 for r in answers) >= 1
    assert fresh(order.order_no).status == "paid" and payment_count() == 1
    found = [v for v, _ in verdicts(order.order_no)]
    assert found.count("accepted") == 1 and len(found) == 20
    # Whatever raced, the retry is acknowledged.
    assert post(base, note).status_code == 204 and payment_count() == 1


def test_without_wechat_pay_the_endpoint_answers_fail(live, base):
    from conftest import make_raw_config

    from app import create_app
    from app.config import build

    raw = make_raw_config(base, live.config["SETTINGS"]["app"]["database_url"], wechatpay={"mchid": ""})
    other = create_app(build(raw, {}, "tests"))
    resp = other.test_client().post("/pay/wechatpay/notify", data=b"{}")
    assert resp.status_code == 404 and resp.get_json()["code"] == "FAIL"
    with other.app_context():
        db.engine.dispose()


# -- asking the gateway ------------------------------------------------------------------------

def test_the_buyer_back_before_the_notification_is_paid_by_asking(make_order, buyer, base, settings):
    order = make_order()
    # The notification is lost on the way (the notify_url does not answer).
    lost = WeChatPayGateway.from_settings()
    lost.client._notify_url = closed_port_url("/pay/wechatpay/notify")
    page = requests.get(cashier_url(lost, order, buyer.openid, base + "/h5/orders"), timeout=30).text
    result = press(base, page, "pay", allow_redirects=False)
    assert result.status_code == 200 and "发送失败" in result.text
    assert fresh(order.order_no).status == "pending"
    gw = WeChatPayGateway.from_settings()
    synced = payments.sync_with_gateway(order.order_no, gw)
    outbox.commit()
    assert synced.status == "paid" and fresh(order.order_no).status == "paid" and payment_count() == 1
    trade = sandbox_wx.load_trade(gw.mchid, order.order_no)
    assert fresh(order.order_no).transaction_id == trade["transaction_id"]
    assert verdicts(order.order_no) == [("accepted", "")]
    # WeChat Pay's retry arrives later: the same transaction, acknowledged once.
    late = notification(sandbox_wx.transaction(trade))
    assert post(base, late).status_code == 204
    assert payment_count() == 1 and [v for v, _ in verdicts(order.order_no)] == ["accepted", "duplicate"]


def test_asking_about_an_unpaid_or_unknown_trade_pays_nothing(gw, make_order, buyer):
    unknown = make_order()
    assert gw.query(unknown) is None
    opened = make_order()
    gw.jsapi_params(opened, buyer.openid)
    trade = gw.query(opened)
    assert trade is not None and not trade.paid and trade.transaction_id == ""
    for order in (unknown, opened):
        assert payments.sync_with_gateway(order.order_no, gw).status == "pending"
    outbox.commit()
    assert payment_count() == 0


# -- refunds ---------------------------------------------------------------------------------------

def _paid_at_cashier(gw, order: Order, openid: str, base: str) -> None:
    page = requests.get(cashier_url(gw, order, openid, base + "/h5/orders"), timeout=30).text
    assert press(base, page, "pay", allow_redirects=False).status_code == 303
    assert fresh(order.order_no).status == "paid"


def stock_of(order: Order) -> int:
    db.session.rollback()
    line = fresh(order.order_no).lines[0]
    return db.session.get(Product, line.product_id).stock


def test_refund_through_the_job_and_its_notification(gw, make_order, buyer, base, jobs, settings):
    order = make_order(1990, 2, stock=10)
    _paid_at_cashier(gw, order, buyer.openid, base)
    assert stock_of(order) == 8
    refund = payments.start_refund(order.order_no, "买家不想要了", actor=SYSTEM)
    out_refund_no = refund.out_refund_no
    outbox.commit()
    jobs.run()  # the request_refund job, then the gateway's REFUND.SUCCESS notification
    done = fresh(order.order_no)
    assert done.status == "refunded" and stock_of(order) == 10  # never shipped: the goods are back
    refund = payments.find_refund(out_refund_no)
    sandbox_refund = sandbox_wx.load_refund(gw.mchid, out_refund_no)
    assert refund.status == "succeeded" and refund.gateway_refund_id == sandbox_refund["refund_id"]
    assert sandbox_refund["status"] == "SUCCESS" and sandbox_refund["refund"] == 3980
    assert sandbox_refund["notify_url"] == base + "/pay/wechatpay/refund-notify"
    assert gw.query(done).raw["trade_state"] == "REFUND"
    assert verdicts(out_refund_no) == [("accepted", "")]
    # Asked again (a retried job): the same out_refund_no is the same refund.
    gw.refund(done, refund)
    jobs.run()
    assert sandbox_wx.load_trade(gw.mchid, order.order_no)["refunded"] == 3980
    # WeChat Pay's retry of the notification is acknowledged and changes nothing.
    assert sandbox_wx.notify_refund(sandbox_wx.load_refund(gw.mchid, out_refund_no)) == "HTTP 204"
    assert fresh(order.order_no).status == "refunded" and stock_of(order) == 10
    assert [v for v, _ in verdicts(out_refund_no)] == ["accepted", "duplicate"]


def test_a_refused_refund_request_raises_for_a_retry(gw, make_order, buyer, base, settings):
    order = make_order()
    # Paid by a notification whose trade the gateway never saw: it cannot refund it.
    assert post(base, notification(resource(settings, order))).status_code == 204
    refund = payments.start_refund(order.order_no, "测试退款", actor=SYSTEM)
    db.session.commit()  # not through the outbox: this test asks the gateway itself
    with pytest.raises(WeChatPayError) as refused:
        gw.refund(fresh(order.order_no), db.session.get(Refund, refund.id))
    assert refused.value.code == "RESOURCE_NOT_EXISTS"
    down = WeChatPayGateway.from_settings()
    down.client._core._gate_way = closed_port_url()
    with pytest.raises(WeChatPayError):
        down.refund(fresh(order.order_no), db.session.get(Refund, refund.id))
    assert fresh(order.order_no).status == "refunding"
    assert db.session.get(Refund, refund.id).status == "pending"


def _pending_refund(gw, make_order, buyer, base) -> tuple[Order, Refund]:
    order = make_order(1990, 1, stock=5)
    _paid_at_cashier(gw, order, buyer.openid, base)
    refund = payments.start_refund(order.order_no, "测试退款", actor=SYSTEM)
    db.session.commit()  # the job is not queued: the notifications below are all there is
    return order, refund


def refund_resource(settings, order: Order, refund: Refund, **over) -> dict:
    data = {"mchid": settings["wechatpay"]["mchid"], "out_trade_no": order.order_no,
            "transaction_id": fresh(order.order_no).transaction_id, "out_refund_no": refund.out_refund_no,
            "refund_id": "50" + f"{secrets.randbelow(10**27):027d}", "refund_status": "SUCCESS",
            "success_time": sandbox_wx.rfc3339(), "user_received_account": "支付用户零钱",
            "amount": {"total": order.total_fen, "refund": refund.amount_fen, "payer_total": order.total_fen,
                       "payer_refund": refund.amount_fen}}
    data.update(over)
    return data


REFUND_NOTIFY = "/pay/wechatpay/refund-notify"


@pytest.mark.parametrize("attack, status", [
    ("forged", 401), ("amount", 400), ("mchid", 400), ("status", 400), ("unknown", 400),
    ("another transaction", 400), ("event", 400), ("stale", 401),
])
def test_a_bad_refund_notification_changes_nothing(attack, status, gw, make_order, buyer, base, settings):
    order, refund = _pending_refund(gw, make_order, buyer, base)
    res = refund_resource(settings, order, refund)
    event, key = "REFUND.SUCCESS", None
    if attack == "forged":
        key = stranger_key()
    elif attack == "amount":
        res["amount"] = {**res["amount"], "refund": 1}
    elif attack == "mchid":
        res["mchid"] = "1230000109"
    elif attack == "status":
        res["refund_status"] = "PROCESSING"
    elif attack == "unknown":  # a refund of nothing we know (a console refund names a trade of ours)
        res.update(out_refund_no="R" + secrets.token_hex(8), out_trade_no="20990101000000000000")
    elif attack == "another transaction":
        res.update(out_refund_no="R" + secrets.token_hex(8), transaction_id="4200" + "9" * 24)
    else:
        event = "TRANSACTION.SUCCESS"
    over = {"Wechatpay-Timestamp": str(int(time.time()) - 600)} if attack == "stale" else {}
    assert_refused(post(base, notification(res, event, "refund", key=key, **over), REFUND_NOTIFY), status)
    assert fresh(order.order_no).status == "refunding" and stock_of(order) == 4
    assert db.session.get(Refund, refund.id).status == "pending"
    # The genuine one finishes it.
    assert post(base, notification(refund_resource(settings, order, refund), "REFUND.SUCCESS", "refund"),
                REFUND_NOTIFY).status_code == 204
    assert fresh(order.order_no).status == "refunded" and stock_of(order) == 5


def test_an_abnormal_refund_stays_open_and_a_later_success_finishes_it(gw, make_order, buyer, base, settings):
    order, refund = _pending_refund(gw, make_order, buyer, base)
    note = notification(refund_resource(settings, order, refund, refund_status="ABNORMAL"), "REFUND.ABNORMAL",
                        "refund")
    assert post(base, note, REFUND_NOTIFY).status_code == 204
    assert fresh(order.order_no).status == "refunding" and stock_of(order) == 4
    assert db.session.get(Refund, refund.id).status == "abnormal"
    assert post(base, note, REFUND_NOTIFY).status_code == 204  # again: nothing changes
    assert [v for v, _ in verdicts(refund.out_refund_no)] == ["accepted", "duplicate"]
    success = notification(refund_resource(settings, order, refund), "REFUND.SUCCESS", "refund")
    assert post(base, success, REFUND_NOTIFY).status_code == 204
    assert fresh(order.order_no).status == "refunded" and stock_of(order) == 5
    assert db.session.get(Refund, refund.id).status == "succeeded"
    # A payment notification sent to the refund endpoint is refused.
    assert_refused(post(base, notification(resource(settings, order)), REFUND_NOTIFY), 400)


def test_an_abnormal_refund_closed_at_last_puts_the_order_back(gw, make_order, buyer, base, settings):
    order, refund = _pending_refund(gw, make_order, buyer, base)
    for status, event in (("ABNORMAL", "REFUND.ABNORMAL"), ("CLOSED", "REFUND.CLOSED")):
        note = notification(refund_resource(settings, order, refund, refund_status=status), event, "refund")
        assert post(base, note, REFUND_NOTIFY).status_code == 204
    assert fresh(order.order_no).status == "paid" and stock_of(order) == 4
    assert db.session.get(Refund, refund.id).status == "failed"
