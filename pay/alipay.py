"""Alipay mobile-web payment (alipay.trade.wap.pay) through python-alipay-sdk.

The product signs its requests with the app private key and verifies every
answer, notification and return with Alipay's public key: the SDK's own
code, pointed at ``[alipay] gateway`` (Alipay, or this deployment's sandbox).
Money crosses this boundary as a yuan string ("12.30"); inside it is integer
fen, converted exactly in both directions.
"""
from __future__ import annotations

import binascii
import json
import logging
import re
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from alipay import AliPay
from alipay.exceptions import AliPayException, AliPayValidationError
from alipay.utils import AliPayConfig
from flask import current_app

from handlers import payments
from handlers.clock import CHINA
from handlers.payments import GatewayTrade
from models import Order, PayChannel, Refund

log = logging.getLogger(__name__)

NOTIFY_PATH = "/pay/alipay/notify"
PAID_STATUSES = frozenset({"TRADE_SUCCESS", "TRADE_FINISHED"})
# Sub-codes Alipay documents as "call again with the same parameters".
RETRY_SUB_CODES = frozenset({"ACQ.SYSTEM_ERROR", "aop.ACQ.SYSTEM_ERROR"})
TIMEOUT_SECONDS = 10

_YUAN = re.compile(r"(0|[1-9][0-9]{0,11})(?:\.([0-9]{1,2}))?", re.ASCII)
_SUBJECT_FORBIDDEN = re.compile(r"[/=&\x00-\x1f]")  # Alipay refuses these in subject


class AlipayError(Exception):
    """No usable answer from Alipay (network, system error, bad signature):
    nothing is known, so the caller retries later."""


def fen_to_yuan(fen: int) -> str:
    """12345 → "123.45", exactly."""
    if isinstance(fen, bool) or not isinstance(fen, int) or fen < 0:
        raise ValueError(f"not an amount in fen: {fen!r}")
    return f"{fen // 100}.{fen % 100:02d}"


def yuan_to_fen(text: str) -> int:
    """"123.45" → 12345, exactly; anything that is not a plain non-negative
    amount with at most two decimals ("12.305", "-1", "1e3", "abc") raises."""
    if not isinstance(text, str):
        raise ValueError(f"not a yuan amount: {text!r}")
    match = _YUAN.fullmatch(text)
    if match is None:
        raise ValueError(f"not a yuan amount: {text!r}")
    return int(match.group(1)) * 100 + int((match.group(2) or "0").ljust(2, "0"))


def beijing_time(at: datetime) -> str:
    if at.tzinfo is None:  # our columns are UTC
        at = at.replace(tzinfo=timezone.utc)
    return at.astimezone(CHINA).strftime("%Y-%m-%d %H:%M:%S")


def subject_of(order: Order) -> str:
    return _SUBJECT_FORBIDDEN.sub(" ", order.title).strip()[:256] or "商品"


def _fen_or_none(text: str) -> int | None:
    try:
        return yuan_to_fen(text)
    except ValueError:
        return None


class AlipayGateway:
    """The Alipay side of handlers.payments.Gateway, plus what the pages need."""

    channel = PayChannel.ALIPAY

    def __init__(self, client: AliPay, app_id: str, seller_id: str, gateway: str, notify_url: str) -> None:
        self.client = client
        self.app_id = app_id
        self.seller_id = seller_id
        self.gateway = gateway
        self.notify_url = notify_url

    @classmethod
    def from_settings(cls, settings: Mapping[str, Mapping[str, Any]] | None = None) -> AlipayGateway:
        settings = settings or current_app.config["SETTINGS"]
        conf = settings["alipay"]
        if not conf["app_id"]:
            raise AlipayError("Alipay is not configured ([alipay] app_id is empty)")
        notify_url = settings["app"]["base_url"].rstrip("/") + NOTIFY_PATH
        client = AliPay(
            appid=conf["app_id"],
            app_notify_url=notify_url,
            app_private_key_string=Path(conf["app_private_key_path"]).read_text(),
            alipay_public_key_string=Path(conf["alipay_public_key_path"]).read_text(),
            sign_type="RSA2",
            config=AliPayConfig(timeout=TIMEOUT_SECONDS),
        )
        # python-alipay-sdk 3.4 has no argument for the address: BaseAliPay.__init__
        # sets the private ``_gateway`` (production, or Alipay's dev sandbox when
        # debug=True) and verified_sync_response() sends every call there.
        client._gateway = conf["gateway"]
        return cls(client, conf["app_id"], conf["seller_id"], conf["gateway"], notify_url)

    # -- paying ----------------------------------------------------------

    def wap_pay_url(self, order: Order, return_url: str) -> str:
        """Where to send the buyer's browser to pay the order. Alipay appends
        its return parameters to ``return_url`` and allows no query of its own
        there ("不能加?id=123这类自定义参数"): put the order in the path."""
        if "?" in return_url or "#" in return_url:
            raise ValueError("Alipay's return_url may not carry a query string")
        query = self.client.api_alipay_trade_wap_pay(
            out_trade_no=order.order_no,
            total_amount=fen_to_yuan(order.total_fen),
            subject=subject_of(order),
            return_url=return_url,
            notify_url=self.notify_url,
            # Alipay closes the trade when our order would expire anyway.
            time_expire=beijing_time(order.expires_at),
        )
        return f"{self.gateway}?{query}"

    def verify(self, data: dict[str, str], sign: str) -> bool:
        """Alipay's signature over ``data`` (without ``sign``; ``sign_type``
        is popped and must be RSA2). Never raises on garbage."""
        if not sign or not isinstance(sign, str):
            return False
        try:
            return self.client.verify(dict(data), sign)
        except (AliPayException, ValueError, TypeError, binascii.Error):
            return False

    def verify_return(self, args: Mapping[str, str]) -> bool:
        """The synchronous return parameters (the buyer's browser coming back)
        were signed by Alipay for our app. A hint only: the notification or a
        query decides whether the order is paid."""
        if hasattr(args, "getlist") and any(len(args.getlist(k)) > 1 for k in args):
            return False  # a parameter given twice: which one did Alipay sign?
        data = dict(args)
        sign = data.pop("sign", "")
        if data.get("sign_type", "RSA2") != "RSA2":
            return False
        return self.verify(data, sign) and data.get("app_id") == self.app_id

    # -- asking ----------------------------------------------------------

    def _call(self, api: str, **kwargs: Any) -> dict[str, Any]:
        try:
            return getattr(self.client, api)(**kwargs)
        except AliPayValidationError as exc:
            raise AlipayError(f"{api}: the answer's signature is not Alipay's") from exc
        except AliPayException as exc:
            raise AlipayError(f"{api}: {exc}") from exc
        except (OSError, ValueError) as exc:  # network, timeout, HTTP error, unreadable JSON
            raise AlipayError(f"{api}: {exc!r}") from exc

    def query(self, order: Order) -> GatewayTrade | None:
        """Alipay's view of the order; None when it knows nothing (no trade yet)
        or cannot be asked now — the notification will still come."""
        try:
            resp = self._call("api_alipay_trade_query", out_trade_no=order.order_no)
        except AlipayError as exc:
            log.warning("alipay query for %s failed: %s", order.order_no, exc)
            return None
        if resp.get("code") != "10000":
            if resp.get("sub_code") != "ACQ.TRADE_NOT_EXIST":
                log.warning("alipay query for %s: %s %s", order.order_no, resp.get("sub_code"), resp.get("sub_msg"))
            return None
        if resp.get("out_trade_no") != order.order_no:
            log.error("alipay query for %s answered about %s", order.order_no, resp.get("out_trade_no"))
            return None
        try:
            amount = yuan_to_fen(resp.get("total_amount", ""))
        except ValueError:
            log.error("alipay query for %s: bad total_amount %r", order.order_no, resp.get("total_amount"))
            return None
        return GatewayTrade(channel=self.channel, out_trade_no=order.order_no,
                            paid=resp.get("trade_status") in PAID_STATUSES,
                            transaction_id=resp.get("trade_no", ""), amount_fen=amount,
                            payer=resp.get("buyer_user_id") or resp.get("buyer_open_id"), raw=resp)

    def close(self, order: Order) -> bool:
        """Close an unpaid trade so it can no longer be paid; True when closed
        or never opened."""
        resp = self._call("api_alipay_trade_close", out_trade_no=order.order_no)
        if resp.get("code") == "10000" or resp.get("sub_code") == "ACQ.TRADE_NOT_EXIST":
            return True
        if resp.get("sub_code") in RETRY_SUB_CODES or resp.get("code") != "40004":
            raise AlipayError(f"close {order.order_no}: {resp.get('code')} {resp.get('sub_code')}")
        return False

    def refund(self, order: Order, refund: Refund) -> None:
        """Alipay answers a refund at once: finish it here. A business refusal
        fails the refund (the order goes back where it was); no answer, or a
        system error, raises so that the job is retried with the same
        out_request_no, which Alipay treats as the same refund."""
        resp = self._call("api_alipay_trade_refund", refund_amount=fen_to_yuan(refund.amount_fen),
                          out_trade_no=order.order_no, out_request_no=refund.out_refund_no,
                          refund_reason=refund.reason)
        body = json.dumps(resp, ensure_ascii=False)
        code, sub_code = resp.get("code"), resp.get("sub_code")
        if code == "10000":
            if resp.get("out_trade_no") != order.order_no:
                raise AlipayError(f"refund {refund.out_refund_no} answered about {resp.get('out_trade_no')}")
            # ``refund_fee`` is the trade's refunded total: this refund is what
            # it adds to the refunds of this payment that went before. When
            # that does not add up (no money moved by this call — a repeated
            # out_request_no, still in progress — or a console refund we have
            # not heard of), the refund query says what this request refunded.
            amount = _fen_or_none(resp.get("refund_fee", "")) if resp.get("fund_change") == "Y" else None
            if amount is not None:
                amount -= payments.refunded_before(refund)
            if amount != refund.amount_fen:
                resp = self._call("api_alipay_trade_fastpay_refund_query", out_request_no=refund.out_refund_no,
                                  out_trade_no=order.order_no)
                body = json.dumps(resp, ensure_ascii=False)
                if resp.get("code") != "10000" or resp.get("refund_status") != "REFUND_SUCCESS":
                    raise AlipayError(f"refund {refund.out_refund_no} not confirmed yet: {resp.get('sub_code')}")
                amount = _fen_or_none(resp.get("refund_amount", ""))
                if amount is None:
                    raise AlipayError(f"refund {refund.out_refund_no}: bad amount {resp.get('refund_amount')!r}")
            payments.finish_refund(self.channel, refund.out_refund_no, True, amount,
                                   gateway_refund_id=resp.get("trade_no", ""), body=body)
        elif code == "40004" and sub_code not in RETRY_SUB_CODES:
            log.warning("alipay refused refund %s: %s %s", refund.out_refund_no, sub_code, resp.get("sub_msg"))
            payments.finish_refund(self.channel, refund.out_refund_no, False, refund.amount_fen, body=body)
        else:
            raise AlipayError(f"refund {refund.out_refund_no}: {code} {sub_code} {resp.get('sub_msg', '')}")
