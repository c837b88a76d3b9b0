"""WeChat Pay's notifications (API v3): POST /pay/wechatpay/notify (a contract
path), POST /pay/wechatpay/refund-notify and POST /pay/wechatpay/transfer-notify
(a merchant transfer to a distributor finished).

Each is proved genuine here — the WeChat Pay public key's signature over
``timestamp\\nnonce\\nbody\\n`` and the AEAD_AES_256_GCM resource decrypted
with the APIv3 key, both by wechatpayv3's ``callback`` — and addressed to us
(mchid, appid). Whether it pays an order or finishes a refund is
handlers.payments' call. 204 with no body stops WeChat Pay's retries; a
refusal answers 4xx with ``{"code":"FAIL","message":…}`` and is recorded.
WeChat Pay sends *probe* notifications with bad signatures on purpose: they
are refused like any forgery.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from flask import Response, current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

from handlers import outbox, payments, withdrawals
from handlers.clock import now
from handlers.errors import DomainError
from handlers.payments import GatewayTrade
from models import NoticeVerdict, PayChannel, WithdrawalStatus

from . import bp
from .wechatpay import TRANSFER_FINAL, WeChatPayGateway, transfer_failure

CH = PayChannel.WECHATPAY
MAX_BODY = 64 * 1024  # a real notification is about 1 KB
MAX_AGE_SECONDS = 300  # WeChat Pay signs each (re)sent notification afresh
SIGNATURE_TYPE = "WECHATPAY2-SHA256-RSA2048"
SIGNED_HEADERS = ("Wechatpay-Signature", "Wechatpay-Timestamp", "Wechatpay-Nonce", "Wechatpay-Serial",
                  "Wechatpay-Signature-Type")
REFUND_EVENTS = {"REFUND.SUCCESS": "SUCCESS", "REFUND.ABNORMAL": "ABNORMAL", "REFUND.CLOSED": "CLOSED"}


class Refused(Exception):
    def __init__(self, reason: str, status: int = 400, key: str | None = None) -> None:
        super().__init__(reason)
        self.reason, self.status, self.key = reason, status, key


def _fail(status: int, message: str) -> Response:
    body = json.dumps({"code": "FAIL", "message": message}, ensure_ascii=False)
    return Response(body, status, content_type="application/json; charset=utf-8")


def _ok() -> Response:
    return Response(status=204)


def _read_body() -> str:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise Refused(f"body of {request.content_length} bytes", 413)
    try:
        raw = request.get_data(cache=True)
    except RequestEntityTooLarge:
        raise Refused("body too large", 413) from None
    if len(raw) > MAX_BODY:
        raise Refused(f"body of {len(raw)} bytes", 413)
    # Verified as text (the SDK's own decoding); PostgreSQL text cannot hold
    # NUL, which only garbage contains.
    return raw.decode("utf-8", errors="replace")


def _verified(gateway: WeChatPayGateway, body: str) -> dict[str, Any]:
    """The notification with its resource decrypted, or Refused."""
    headers = {name: request.headers.get(name, "") for name in SIGNED_HEADERS}
    if not all(headers.values()):
        raise Refused("no signature headers", 401)
    # The timestamp is signed with the body: a notification (or a copy of
    # one) older than five minutes, or from the future, is refused.
    stamp = headers["Wechatpay-Timestamp"]
    if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 12) \
            or abs(int(stamp) - time.time()) > MAX_AGE_SECONDS:
        raise Refused(f"timestamp {stamp[:20]!r} is more than {MAX_AGE_SECONDS} s from now", 401)
    if headers["Wechatpay-Signature-Type"] != SIGNATURE_TYPE:
        raise Refused(f"signature type {headers['Wechatpay-Signature-Type'][:40]!r}", 401)
    # Checked before the SDK sees it: for a serial that is not our public key
    # id, wechatpayv3 would go and download platform certificates.
    if headers["Wechatpay-Serial"] != gateway.public_key_id:
        raise Refused(f"serial {headers['Wechatpay-Serial'][:40]!r} is not our WeChat Pay public key", 401)
    try:
        data = gateway.client.callback(headers, body)
    except Exception as exc:  # the SDK raises bare Exception / ValueError / binascii.Error on garbage
        raise Refused(f"unreadable notification ({type(exc).__name__})", 400) from None
    if data is None:  # bad signature (probes), or a resource that does not decrypt with our APIv3 key
        raise Refused("bad signature or undecryptable resource", 401)
    if not isinstance(data, dict) or not isinstance(data.get("resource"), dict):
        raise Refused("resource is not an object", 400)
    return data


def _handle(kind: str, process: Callable[[WeChatPayGateway, dict[str, Any], str], payments.Outcome]) -> Response:
    if not current_app.config["SETTINGS"]["wechatpay"]["mchid"]:
        return _fail(404, "微信支付未开通")
    body = ""
    try:
        body = _read_body()
        gateway = WeChatPayGateway.from_settings()
        outcome = process(gateway, _verified(gateway, body), body)
    except Refused as refused:
        outbox.rollback()
        payments.reject(CH, kind, refused.key, refused.reason, body.replace("\x00", "\ufffd"))
        outbox.commit()
        return _fail(refused.status, refused.reason)
    outbox.commit()
    if outcome.ok:
        return _ok()
    return _fail(400, outcome.reason)


def _str(value: Any, limit: int = 64) -> str:
    return value if isinstance(value, str) and 0 < len(value) <= limit else ""


def _fen(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _check_ours(gateway: WeChatPayGateway, resource: dict[str, Any], key: str | None, appid: bool) -> None:
    if resource.get("mchid") != gateway.mchid:
        raise Refused(f"mchid {str(resource.get('mchid'))[:32]!r} is not ours", 400, key)
    if appid and resource.get("appid") != gateway.appid:
        raise Refused(f"appid {str(resource.get('appid'))[:32]!r} is not ours", 400, key)


def _pay(gateway: WeChatPayGateway, data: dict[str, Any], body: str) -> payments.Outcome:
    resource = data["resource"]
    out_trade_no = _str(resource.get("out_trade_no")) or None
    if data.get("event_type") != "TRANSACTION.SUCCESS":
        raise Refused(f"event_type {str(data.get('event_type'))[:40]!r}", 400, out_trade_no)
    _check_ours(gateway, resource, out_trade_no, appid=True)
    if out_trade_no is None:
        raise Refused("no out_trade_no", 400)
    if resource.get("trade_state") != "SUCCESS":
        raise Refused(f"trade_state {str(resource.get('trade_state'))[:20]!r}", 400, out_trade_no)
    amount = resource.get("amount") if isinstance(resource.get("amount"), dict) else {}
    total = _fen(amount.get("total"))
    if total is None:
        raise Refused(f"amount {str(amount)[:60]}", 400, out_trade_no)
    if amount.get("currency", "CNY") != "CNY":
        raise Refused(f"currency {str(amount.get('currency'))[:8]!r}", 400, out_trade_no)
    transaction_id = _str(resource.get("transaction_id"))
    if not transaction_id:
        raise Refused("no transaction_id", 400, out_trade_no)
    payer = resource.get("payer") if isinstance(resource.get("payer"), dict) else {}
    trade = GatewayTrade(channel=CH, out_trade_no=out_trade_no, paid=True, transaction_id=transaction_id,
                         amount_fen=total, payer=_str(payer.get("openid"), 128) or None, raw=resource)
    return payments.mark_paid(trade, body, "pay")


def _refund(gateway: WeChatPayGateway, data: dict[str, Any], body: str) -> payments.Outcome:
    resource = data["resource"]
    out_refund_no = _str(resource.get("out_refund_no")) or None
    expected = REFUND_EVENTS.get(data.get("event_type"))
    if expected is None:
        raise Refused(f"event_type {str(data.get('event_type'))[:40]!r}", 400, out_refund_no)
    _check_ours(gateway, resource, out_refund_no, appid=False)  # refund notices carry no appid
    if out_refund_no is None:
        raise Refused("no out_refund_no", 400)
    if resource.get("refund_status") != expected:
        raise Refused(f"refund_status {str(resource.get('refund_status'))[:20]!r} under {data['event_type']}",
                      400, out_refund_no)
    amount = resource.get("amount") if isinstance(resource.get("amount"), dict) else {}
    refunded = _fen(amount.get("refund"))
    if refunded is None:
        raise Refused(f"amount {str(amount)[:60]}", 400, out_refund_no)
    return payments.refund_notified(CH, out_refund_no, expected, refunded,
                                    out_trade_no=_str(resource.get("out_trade_no")),
                                    transaction_id=_str(resource.get("transaction_id")),
                                    gateway_refund_id=_str(resource.get("refund_id")), body=body)


def _transfer(gateway: WeChatPayGateway, data: dict[str, Any], body: str) -> payments.Outcome:
    """MCHTRANSFER.BILL.FINISHED: the distributor confirmed (SUCCESS), the
    transfer failed (FAIL) or was cancelled / not confirmed in time
    (CANCELLED). The amount must be the withdrawal's net amount."""
    resource = data["resource"]
    out_bill_no = _str(resource.get("out_bill_no"), 32) or None
    if data.get("event_type") != "MCHTRANSFER.BILL.FINISHED":
        raise Refused(f"event_type {str(data.get('event_type'))[:40]!r}", 400, out_bill_no)
    # WeChat Pay's documents spell it both ways.
    mchid = resource.get("mchid", resource.get("mch_id"))
    if mchid != gateway.mchid:
        raise Refused(f"mchid {str(mchid)[:32]!r} is not ours", 400, out_bill_no)
    if out_bill_no is None:
        raise Refused("no out_bill_no", 400)
    state = resource.get("state")
    if state not in TRANSFER_FINAL:
        raise Refused(f"state {str(state)[:20]!r} is not final", 400, out_bill_no)
    amount = resource.get("transfer_amount")
    if isinstance(amount, bool) or not isinstance(amount, int) or amount < 1:
        raise Refused(f"transfer_amount {str(amount)[:20]!r}", 400, out_bill_no)
    reason = transfer_failure(_str(resource.get("fail_reason"))) if state == "FAIL" else ""
    at = now()
    try:
        withdrawal = withdrawals.transfer_finished(out_bill_no, state, reason, at=at, amount_fen=amount)
    except DomainError as exc:  # unknown bill, or another amount: nothing changed
        raise Refused(exc.message, 404 if exc.status == 404 else 400, out_bill_no) from None
    if withdrawal.decided_at == at:
        payments.record_notice(CH, "transfer", out_bill_no, NoticeVerdict.ACCEPTED, state, body)
        return payments.Outcome(NoticeVerdict.ACCEPTED, state)
    said = f"{state}, withdrawal already {withdrawal.status}"
    if (state == "SUCCESS") != (withdrawal.status == WithdrawalStatus.PAID.value):
        current_app.logger.error("transfer %s: %s", out_bill_no, said)  # contradicts what we were told before
    payments.record_notice(CH, "transfer", out_bill_no, NoticeVerdict.DUPLICATE, said, body)
    return payments.Outcome(NoticeVerdict.DUPLICATE, said)


@bp.post("/wechatpay/notify")
def wechatpay_notify() -> Response:
    return _handle("pay", _pay)


@bp.post("/wechatpay/refund-notify")
def wechatpay_refund_notify() -> Response:
    return _handle("refund", _refund)


@bp.post("/wechatpay/transfer-notify")
def wechatpay_transfer_notify() -> Response:
    return _handle("transfer", _transfer)
