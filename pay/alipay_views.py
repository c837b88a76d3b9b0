"""POST /pay/alipay/notify: Alipay's asynchronous notification (a contract path).

A form POST signed by Alipay. Here it is proved genuine and addressed to us
(signature, app_id, seller_id); whether it pays an order — the order exists,
the amount matches to the fen, once only — is handlers.payments' call.
The literal body ``success`` stops Alipay's retries; anything else makes it
try again (8 times over 25 hours), so only a refusal answers otherwise.
"""
from __future__ import annotations

from flask import Response, current_app, request

from handlers import outbox, payments
from handlers.payments import GatewayTrade
from models import PayChannel

from . import bp
from .alipay import PAID_STATUSES, AlipayGateway, yuan_to_fen

KIND = "pay"
CH = PayChannel.ALIPAY


def _answer(ok: bool) -> Response:
    if ok:
        return Response("success", 200, content_type="text/plain; charset=utf-8")
    return Response("fail", 400, content_type="text/plain; charset=utf-8")


def _refuse(out_trade_no: str | None, reason: str, body: str) -> Response:
    payments.reject(CH, KIND, out_trade_no, reason, body)
    outbox.commit()
    return _answer(False)


@bp.post("/alipay/notify")
def alipay_notify() -> Response:
    # Kept as received (read before the form is parsed from it); PostgreSQL
    # text cannot hold NUL, which only garbage contains.
    body = request.get_data(as_text=True).replace("\x00", "\ufffd")
    if not current_app.config["SETTINGS"]["alipay"]["app_id"]:
        return _answer(False)
    gateway = AlipayGateway.from_settings()
    lists = request.form.to_dict(flat=False)
    data = {key: values[0] for key, values in lists.items()}
    if any("\x00" in key + "".join(values) for key, values in lists.items()):
        return _refuse(None, "NUL in a field", body)
    out_trade_no = data.get("out_trade_no") or None
    if any(len(values) > 1 for values in lists.values()):
        return _refuse(out_trade_no, "a field given twice", body)
    sign = data.pop("sign", "")
    sign_type = data.pop("sign_type", "")
    if not sign:
        return _refuse(out_trade_no, "no sign", body)
    if sign_type != "RSA2":
        return _refuse(out_trade_no, f"sign_type {sign_type[:10]!r}", body)
    if not gateway.verify(data, sign):
        return _refuse(out_trade_no, "bad signature", body)
    if data.get("app_id") != gateway.app_id:
        return _refuse(out_trade_no, f"app_id {data.get('app_id', '')[:32]!r} is not ours", body)
    if gateway.seller_id and data.get("seller_id") != gateway.seller_id:
        return _refuse(out_trade_no, f"seller_id {data.get('seller_id', '')[:32]!r} is not ours", body)
    if not out_trade_no:
        return _refuse(None, "no out_trade_no", body)
    try:
        amount = yuan_to_fen(data.get("total_amount", ""))
    except ValueError:
        return _refuse(out_trade_no, f"total_amount {data.get('total_amount', '')[:20]!r}", body)
    trade = GatewayTrade(channel=CH, out_trade_no=out_trade_no, paid=data.get("trade_status") in PAID_STATUSES,
                         transaction_id=data.get("trade_no", ""), amount_fen=amount,
                         payer=data.get("buyer_id") or data.get("buyer_open_id") or None, raw=data)
    if data.get("refund_fee"):
        return _refunded(trade, data, body)
    # A genuine notice of an unpaid or closed trade is acknowledged and
    # recorded ("not paid"): retrying it would never change anything.
    outcome = payments.mark_paid(trade, body, KIND)
    outbox.commit()
    return _answer(outcome.ok)


def _refunded(trade: GatewayTrade, data: dict[str, str], body: str) -> Response:
    """A refund on the trade: TRADE_CLOSED (all of it refunded) or
    TRADE_SUCCESS (part of it), ``refund_fee`` being the trade's refunded
    total so far and ``out_biz_no`` the refund's request number — ours when
    we asked for it, Alipay's when it was made in Alipay's console."""
    try:
        refunded_total = yuan_to_fen(data["refund_fee"])
    except ValueError:
        return _refuse(trade.out_trade_no, f"refund_fee {data['refund_fee'][:20]!r}", body)
    if not refunded_total or data.get("trade_status") not in PAID_STATUSES | {"TRADE_CLOSED"}:
        return _refuse(trade.out_trade_no, f"refund_fee under {data.get('trade_status', '')[:20]!r}", body)
    out_biz_no = data.get("out_biz_no", "")
    ours = payments.find_refund(out_biz_no) if out_biz_no else None
    if ours is not None:
        outcome = payments.finish_refund(CH, out_biz_no, True, ours.amount_fen, gateway_refund_id=trade.transaction_id,
                                         body=body)
    else:
        if trade.paid and payments.payment_by_transaction(CH, trade.transaction_id) is None:
            payments.mark_paid(trade, "", KIND)  # a payment we had not heard of comes first
        outcome = payments.refunded_at_gateway(CH, trade.out_trade_no, trade.transaction_id,
                                               refunded_total_fen=refunded_total, out_refund_no=out_biz_no, body=body)
    outbox.commit()
    return _answer(outcome.ok)
