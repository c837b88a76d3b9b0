"""WeChat Pay API v3 (JSAPI, public-key mode) through wechatpayv3.

The product signs every request with the merchant's private key and the SDK
verifies every answer with the WeChat Pay public key (``public_key_id``);
notifications are verified and decrypted by the SDK's ``callback`` in
pay/wechatpay_views.py. The gateway address is ``[wechatpay] api_base``
(WeChat Pay, or this deployment's sandbox at /sandbox/pay/wechatpay).
Money is integer fen on both sides of this boundary.
"""
from __future__ import annotations

import json
import logging
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import requests
from flask import current_app
from wechatpayv3 import WeChatPay, WeChatPayType

from app.extensions import redis_store
from handlers.errors import DomainError
from handlers.payments import GatewayTrade
from models import Order, PayChannel, Refund, Withdrawal

log = logging.getLogger(__name__)

NOTIFY_PATH = "/pay/wechatpay/notify"
REFUND_NOTIFY_PATH = "/pay/wechatpay/refund-notify"
TRANSFER_NOTIFY_PATH = "/pay/wechatpay/transfer-notify"
SANDBOX_CASHIER_PATH = "/cashier"
BEIJING = timezone(timedelta(hours=8))  # WeChat Pay's clock; China keeps no daylight saving time
TIMEOUT = (5, 15)  # connect, read (seconds)
# A prepay_id is valid for 2 hours; reuse it for a little less than that.
PREPAY_TTL = 2 * 3600 - 10 * 60
DESCRIPTION_MAX = 127  # characters WeChat Pay accepts in description

# What the buyer is told when WeChat Pay refuses to open the payment.
REFUSALS = {
    "ORDERPAID": "该订单已支付，请勿重复付款",
    "ORDER_CLOSED": "该订单已关闭，请重新下单",
    "OUT_TRADE_NO_USED": "订单信息已变化，请重新下单",
    "INVALID_REQUEST": "订单信息已变化，请重新下单",
    "APPID_MCHID_NOT_MATCH": "商户的微信支付配置有误，请联系客服",
    "MCH_NOT_EXISTS": "商户的微信支付配置有误，请联系客服",
    "SIGN_ERROR": "商户的微信支付配置有误，请联系客服",
    "NOAUTH": "商户暂未开通微信支付，请联系客服",
}


# Merchant transfer (商家转账, user-confirmation mode): scene 1005 佣金报酬,
# with the report items WeChat Pay asks for under that scene.
TRANSFER_SCENE_ID = "1005"
TRANSFER_REMARK = "佣金提现"  # shown to the distributor; at most 32 characters
TRANSFER_REPORT_INFOS = ({"info_type": "岗位类型", "info_content": "分销推广"},
                         {"info_type": "报酬说明", "info_content": "佣金"})
NAME_REQUIRED_FEN = 200_000  # from 2,000 CNY WeChat Pay needs the payee's name (encrypted)
OUT_BILL_NO = re.compile(r"[A-Za-z0-9]{5,32}", re.ASCII)
TRANSFER_FINAL = ("SUCCESS", "FAIL", "CANCELLED")
# 4xx codes after which asking again with the same out_bill_no cannot help.
TRANSFER_DEFINITIVE = {"PARAM_ERROR", "INVALID_REQUEST", "OPENID_INVALID", "NAME_NOT_CORRECT",
                       "INVALID_TRANSFER_AMOUNT", "ACCOUNT_NOT_EXIST"}
# What the distributor reads when a transfer fails (fail_reason of the bill).
TRANSFER_FAILURES = {
    "ACCOUNT_FROZEN": "微信账户已冻结，无法收款",
    "REAL_NAME_CHECK_FAIL": "微信账户未实名认证，无法收款",
    "NAME_NOT_CORRECT": "收款人姓名与微信实名不一致",
    "OPENID_INVALID": "收款微信号有误",
    "TRANSFER_QUOTA_EXCEED": "超过微信单笔收款额度",
    "DAY_RECEIVED_QUOTA_EXCEED": "超过微信当日收款额度",
    "MONTH_RECEIVED_QUOTA_EXCEED": "超过微信当月收款额度",
    "DAY_RECEIVED_COUNT_EXCEED": "超过微信当日收款次数",
    "ID_CARD_NOT_CORRECT": "收款人身份证校验失败",
    "ACCOUNT_NOT_EXIST": "收款微信账户不存在",
    "TRANSFER_RISK": "转账存在风险，已被微信支付拦截",
    "PAYEE_ACCOUNT_ABNORMAL": "收款账户异常",
    "OVERDUE_CLOSE": "超时未确认收款，转账已关闭",
}


def transfer_failure(code: str) -> str:
    """The distributor's reading of a bill's fail_reason."""
    code = (code or "").strip()[:64]
    return TRANSFER_FAILURES.get(code, f"微信转账失败（{code}）" if code else "微信转账失败")


class WeChatPayError(DomainError):
    """WeChat Pay gave no usable answer, or refused; the message is fit to
    show the buyer. Raised from a job, it makes RQ retry."""

    status = 503

    def __init__(self, message: str, code: str = "", detail: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.message} [{self.code or '-'}] {self.detail}".strip()


def rfc3339(at: datetime) -> str:
    """WeChat Pay's time format, e.g. 2024-06-08T10:34:56+08:00."""
    if at.tzinfo is None:  # our columns are UTC
        at = at.replace(tzinfo=timezone.utc)
    return at.astimezone(BEIJING).isoformat(timespec="seconds")


def description_of(order: Order) -> str:
    return " ".join((order.title or "").split())[:DESCRIPTION_MAX] or "商品"


def _prepay_key(order_no: str) -> str:
    return f"wechatpay:prepay:{order_no}"


def _error_of(code: int, text: Any) -> tuple[str, str]:
    """(code, message) of a WeChat Pay error body {"code","message"}."""
    try:
        data = json.loads(text)
    except (TypeError, ValueError):
        return "", f"HTTP {code}"
    if not isinstance(data, dict):
        return "", f"HTTP {code}"
    return str(data.get("code", ""))[:64], str(data.get("message", ""))[:200]


class TransferRefused(WeChatPayError):
    """WeChat Pay refused to create the transfer bill for good (bad openid,
    amount, name…): the same request will never succeed."""

    status = 400


@dataclass(frozen=True)
class TransferBill:
    """A merchant transfer bill as WeChat Pay describes it."""

    out_bill_no: str
    state: str
    transfer_bill_no: str = ""
    package_info: str = ""
    amount_fen: int | None = None
    fail_reason: str = ""
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def final(self) -> bool:
        return self.state in TRANSFER_FINAL


class WeChatPayGateway:
    """The WeChat Pay side of handlers.payments.Gateway, plus what the pay page needs."""

    channel = PayChannel.WECHATPAY

    def __init__(self, client: WeChatPay, *, mchid: str, appid: str, api_base: str, base_url: str,
                 public_key_id: str, sandbox: bool) -> None:
        self.client = client
        self.mchid = mchid
        self.appid = appid
        self.api_base = api_base.rstrip("/")
        self.base_url = base_url.rstrip("/")
        self.public_key_id = public_key_id
        self.sandbox = sandbox

    @classmethod
    def from_settings(cls, settings: Mapping[str, Mapping[str, Any]] | None = None) -> WeChatPayGateway:
        settings = settings or current_app.config["SETTINGS"]
        conf = settings["wechatpay"]
        if not conf["mchid"]:
            raise WeChatPayError("本店暂未开通微信支付", "NOT_CONFIGURED")
        base_url = settings["app"]["base_url"].rstrip("/")
        client = WeChatPay(
            wechatpay_type=WeChatPayType.JSAPI,
            mchid=conf["mchid"],
            private_key=Path(conf["private_key_path"]).read_text(),
            cert_serial_no=conf["cert_serial_no"],
            appid=conf["appid"],
            apiv3_key=conf["apiv3_key"],
            notify_url=base_url + NOTIFY_PATH,
            public_key=Path(conf["public_key_path"]).read_text(),
            public_key_id=conf["public_key_id"],
            timeout=TIMEOUT,
        )
        # wechatpayv3 2.0 has no argument for the address: Core.__init__ sets the
        # private ``_gate_way`` to https://api.mch.weixin.qq.com and request()
        # sends every call to ``_gate_way + path`` (the signature covers the path
        # only). Point it at [wechatpay] api_base.
        client._core._gate_way = conf["api_base"].rstrip("/")
        return cls(client, mchid=conf["mchid"], appid=conf["appid"], api_base=conf["api_base"], base_url=base_url,
                   public_key_id=conf["public_key_id"], sandbox=bool(conf["sandbox"]))

    # -- talking to WeChat Pay ----------------------------------------------

    def _call(self, what: str, fn, *args: Any, **kwargs: Any) -> tuple[int, Any]:
        """(http_code, text) of an SDK call; raises WeChatPayError when there is
        no answer or the answer is not signed by WeChat Pay."""
        try:
            return fn(*args, **kwargs)
        except requests.RequestException as exc:
            raise WeChatPayError("微信支付暂时无法连接，请稍后再试", "NETWORK", f"{what}: {exc!r}") from exc
        except Exception as exc:  # the SDK raises bare Exception, e.g. "failed to verify the signature"
            raise WeChatPayError("微信支付暂时不可用，请稍后再试", "SDK", f"{what}: {exc}") from exc

    # -- paying ----------------------------------------------------------

    def prepay_id(self, order: Order, openid: str) -> str:
        """The JSAPI prepay id of the order for this payer, opened once and
        reused while it is valid (WeChat Pay answers the same out_trade_no
        with the same content with the same prepay_id anyway)."""
        if not openid or not isinstance(openid, str) or len(openid) > 128:
            raise WeChatPayError("请在微信中打开本页面付款", "NO_OPENID")
        if order.total_fen < 1:
            raise WeChatPayError("订单金额有误，无法付款", "AMOUNT")
        want = {"openid": openid, "total": order.total_fen, "description": description_of(order)}
        conn = redis_store.conn
        cached = conn.get(_prepay_key(order.order_no))
        if cached:
            try:
                seen = json.loads(cached)
            except ValueError:
                seen = {}
            if {k: seen.get(k) for k in want} == want and seen.get("prepay_id"):
                return seen["prepay_id"]
        kwargs: dict[str, Any] = dict(description=want["description"], out_trade_no=order.order_no,
                                      amount={"total": order.total_fen, "currency": "CNY"},
                                      payer={"openid": openid})
        if order.expires_at is not None:
            kwargs["time_expire"] = rfc3339(order.expires_at)
        code, text = self._call("jsapi", self.client.pay, **kwargs)
        if code != 200:
            err, message = _error_of(code, text)
            log.warning("wechatpay jsapi for %s refused: %s %s %s", order.order_no, code, err, message)
            if err == "INVALID_REQUEST" and "重复" not in message:
                raise WeChatPayError("微信支付暂时不可用，请稍后再试", err, message)
            raise WeChatPayError(REFUSALS.get(err, "微信支付暂时不可用，请稍后再试"), err, message)
        try:
            prepay_id = json.loads(text)["prepay_id"]
        except (TypeError, ValueError, KeyError) as exc:
            raise WeChatPayError("微信支付暂时不可用，请稍后再试", "BAD_ANSWER", str(text)[:200]) from exc
        if not isinstance(prepay_id, str) or not prepay_id or len(prepay_id) > 64:
            raise WeChatPayError("微信支付暂时不可用，请稍后再试", "BAD_ANSWER", str(text)[:200])
        conn.set(_prepay_key(order.order_no), json.dumps({**want, "prepay_id": prepay_id}), ex=PREPAY_TTL)
        return prepay_id

    def jsapi_params(self, order: Order, openid: str) -> dict[str, str]:
        """What the page passes to WeixinJSBridge 'getBrandWCPayRequest' (or
        wx.chooseWXPay): paySign is the merchant's RSA-SHA256 signature over
        ``appId\\ntimeStamp\\nnonceStr\\npackage\\n``."""
        package = "prepay_id=" + self.prepay_id(order, openid)
        time_stamp = str(int(time.time()))
        nonce = secrets.token_hex(16)
        return {"appId": self.appid, "timeStamp": time_stamp, "nonceStr": nonce, "package": package,
                "signType": "RSA", "paySign": self.client.sign([self.appid, time_stamp, nonce, package])}

    def cashier_url(self, params: Mapping[str, str], return_url: str) -> str | None:
        """In the sandbox: the cashier page that stands in for WeChat's own
        payment sheet (it checks paySign like the WeChat client does). In
        production None: the page calls WeixinJSBridge."""
        if not self.sandbox:
            return None
        query = {"prepay_id": params["package"].removeprefix("prepay_id="), **params, "return": return_url}
        return f"{self.api_base}{SANDBOX_CASHIER_PATH}?{urlencode(query)}"

    # -- asking ----------------------------------------------------------

    def query(self, order: Order) -> GatewayTrade | None:
        """WeChat Pay's view of the order; None when it knows nothing (no
        trade yet) or cannot be asked now — the notification will still come."""
        try:
            code, text = self._call("query", self.client.query, out_trade_no=order.order_no)
        except WeChatPayError as exc:
            log.warning("wechatpay query for %s failed: %s", order.order_no, exc)
            return None
        if code != 200:
            err, message = _error_of(code, text)
            if err != "ORDER_NOT_EXIST":
                log.warning("wechatpay query for %s: %s %s %s", order.order_no, code, err, message)
            return None
        try:
            data = json.loads(text)
            amount = data.get("amount") or {}
            total = amount.get("total")
        except (TypeError, ValueError, AttributeError):
            log.error("wechatpay query for %s: unreadable answer %r", order.order_no, str(text)[:200])
            return None
        if data.get("out_trade_no") != order.order_no or data.get("mchid") != self.mchid \
                or data.get("appid") != self.appid:
            log.error("wechatpay query for %s answered about %s/%s/%s", order.order_no, data.get("out_trade_no"),
                      data.get("mchid"), data.get("appid"))
            return None
        paid = data.get("trade_state") == "SUCCESS"
        if paid and (isinstance(total, bool) or not isinstance(total, int)):
            log.error("wechatpay query for %s: bad amount %r", order.order_no, amount)
            return None
        payer = data.get("payer") or {}
        return GatewayTrade(channel=self.channel, out_trade_no=order.order_no, paid=paid,
                            transaction_id=str(data.get("transaction_id") or ""),
                            amount_fen=total if isinstance(total, int) else 0,
                            payer=payer.get("openid") if isinstance(payer, dict) else None, raw=data)

    def close(self, order: Order) -> bool:
        """Close an unpaid trade so it can no longer be paid; True when closed
        or never opened, False when it is paid already."""
        code, text = self._call("close", self.client.close, out_trade_no=order.order_no)
        redis_store.conn.delete(_prepay_key(order.order_no))
        if code == 204:
            return True
        err, message = _error_of(code, text)
        if err == "ORDER_NOT_EXIST":
            return True
        if err == "ORDERPAID":
            return False
        raise WeChatPayError("微信支付暂时不可用，请稍后再试", err, f"close {order.order_no}: {code} {message}")

    def refund(self, order: Order, refund: Refund) -> None:
        """Ask for the refund. WeChat Pay answers PROCESSING and then sends a
        REFUND.* notification, which finishes it. Anything but a 2xx raises,
        so that the job is retried with the same out_refund_no (WeChat Pay
        treats it as the same refund)."""
        code, text = self._call(
            "refund", self.client.refund, out_refund_no=refund.out_refund_no, out_trade_no=order.order_no,
            reason=(refund.reason or "")[:80] or None,
            amount={"refund": refund.amount_fen, "total": order.total_fen, "currency": "CNY"},
            notify_url=self.base_url + REFUND_NOTIFY_PATH)
        if not 200 <= code < 300:
            err, message = _error_of(code, text)
            raise WeChatPayError("微信支付退款申请失败，稍后自动重试", err,
                                 f"refund {refund.out_refund_no}: {code} {message}")
        try:
            status = json.loads(text).get("status", "")
        except (TypeError, ValueError, AttributeError):
            status = ""
        log.info("wechatpay refund %s for %s requested: %s", refund.out_refund_no, order.order_no, status)

    # -- paying distributors (merchant transfer) ------------------------------

    def create_transfer(self, withdrawal: Withdrawal, openid: str, user_name: str | None = None) -> TransferBill:
        """Create the transfer bill of a withdrawal (amount: what the
        distributor receives, ``net_fen``). WeChat Pay answers
        WAIT_USER_CONFIRM with the ``package_info`` the distributor's page
        hands to ``requestMerchantTransfer``. The same out_bill_no with the same
        content is the same bill, so a retry is safe. From 2,000 CNY the
        payee's real name goes along, encrypted with the WeChat Pay public key
        (the SDK does it, and sends Wechatpay-Serial). Raises TransferRefused
        when WeChat Pay refuses for good, WeChatPayError when asking again
        later may help."""
        out_bill_no = withdrawal.out_bill_no or ""
        if not OUT_BILL_NO.fullmatch(out_bill_no):
            raise TransferRefused("提现单号有误", "OUT_BILL_NO", repr(out_bill_no)[:40])
        if not openid or not isinstance(openid, str) or len(openid) > 128:
            raise TransferRefused("收款人没有微信身份，无法转账", "NO_OPENID")
        amount = withdrawal.net_fen
        if amount < 1:
            raise TransferRefused("转账金额有误", "AMOUNT", str(amount))
        name = " ".join((user_name or "").split()) or None
        if amount < NAME_REQUIRED_FEN:
            name = None  # only asked for from 2,000 CNY; WeChat Pay then checks it against the real name
        elif name is None:
            raise TransferRefused("转账满 2000 元须填写收款人真实姓名", "NAME_REQUIRED")
        code, text = self._call(
            "transfer", self.client.mch_transfer_bills, out_bill_no=out_bill_no,
            transfer_scene_id=TRANSFER_SCENE_ID, openid=openid, transfer_amount=amount,
            transfer_remark=TRANSFER_REMARK, user_name=name,
            transfer_scene_report_infos=[dict(info) for info in TRANSFER_REPORT_INFOS],
            notify_url=self.base_url + TRANSFER_NOTIFY_PATH)
        if code != 200:
            err, message = _error_of(code, text)
            log.warning("wechatpay transfer %s refused: %s %s %s", out_bill_no, code, err, message)
            if 400 <= code < 500 and err in TRANSFER_DEFINITIVE:
                raise TransferRefused(transfer_failure(err) if err in TRANSFER_FAILURES else "微信支付拒绝了这笔转账",
                                      err, message)
            raise WeChatPayError("微信支付暂时无法转账，稍后自动重试", err, f"transfer {out_bill_no}: {code} {message}")
        bill = self._bill(text, out_bill_no)
        if bill is None:
            raise WeChatPayError("微信支付暂时无法转账，稍后自动重试", "BAD_ANSWER", str(text)[:200])
        log.info("wechatpay transfer %s created: %s", out_bill_no, bill.state)
        return bill

    def query_transfer(self, out_bill_no: str) -> TransferBill | None:
        """WeChat Pay's view of the bill; None when it has no such bill.
        Raises WeChatPayError when it cannot be asked now."""
        if not OUT_BILL_NO.fullmatch(out_bill_no or ""):
            return None
        code, text = self._call("transfer query", self.client.mch_transfer_bills_query, out_bill_no=out_bill_no)
        if code != 200:
            err, message = _error_of(code, text)
            if code == 404 or err == "NOT_FOUND":
                return None
            raise WeChatPayError("微信支付暂时不可用，请稍后再试", err, f"transfer query {out_bill_no}: {code} {message}")
        bill = self._bill(text, out_bill_no)
        if bill is None:
            raise WeChatPayError("微信支付暂时不可用，请稍后再试", "BAD_ANSWER", str(text)[:200])
        mchid = bill.raw.get("mch_id", bill.raw.get("mchid"))
        if mchid is not None and mchid != self.mchid:
            raise WeChatPayError("微信支付暂时不可用，请稍后再试", "BAD_ANSWER", f"bill of merchant {mchid!r}")
        return bill

    def cancel_transfer(self, out_bill_no: str) -> TransferBill | None:
        """Ask WeChat Pay to cancel a bill the payee has not confirmed
        (POST …/transfer-bills/out-bill-no/{out_bill_no}/cancel, no body). It
        answers CANCELING (or CANCELLED): the request is taken, the final
        state comes as the MCHTRANSFER.BILL.FINISHED notification or from
        ``query_transfer``. None when WeChat Pay has no such bill. Raises
        TransferRefused when the bill can no longer be cancelled (it was
        confirmed, failed or cancelled already: ask ``query_transfer``),
        WeChatPayError when asking again later may help."""
        if not OUT_BILL_NO.fullmatch(out_bill_no or ""):
            return None
        code, text = self._call("transfer cancel", self.client.mch_transfer_bills_cancel, out_bill_no=out_bill_no)
        if code != 200:
            err, message = _error_of(code, text)
            if code == 404 or err == "NOT_FOUND":
                return None
            log.warning("wechatpay transfer cancel %s refused: %s %s %s", out_bill_no, code, err, message)
            if 400 <= code < 500 and err in ("INVALID_REQUEST", "PARAM_ERROR"):
                raise TransferRefused("微信支付不能撤销这笔转账", err, message)
            raise WeChatPayError("微信支付暂时无法撤销转账，稍后自动重试", err,
                                 f"transfer cancel {out_bill_no}: {code} {message}")
        bill = self._bill(text, out_bill_no)
        if bill is None:
            raise WeChatPayError("微信支付暂时无法撤销转账，稍后自动重试", "BAD_ANSWER", str(text)[:200])
        log.info("wechatpay transfer %s cancel asked: %s", out_bill_no, bill.state)
        return bill

    @staticmethod
    def _bill(text: Any, out_bill_no: str) -> TransferBill | None:
        try:
            data = json.loads(text)
        except (TypeError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("out_bill_no") != out_bill_no:
            return None
        state, package = data.get("state"), data.get("package_info", "")
        if not isinstance(state, str) or not state or not isinstance(package, str) or len(package) > 512:
            return None
        amount = data.get("transfer_amount")
        return TransferBill(out_bill_no=out_bill_no, state=state,
                            transfer_bill_no=str(data.get("transfer_bill_no") or "")[:64], package_info=package,
                            amount_fen=amount if isinstance(amount, int) and not isinstance(amount, bool) else None,
                            fail_reason=str(data.get("fail_reason") or "")[:64], raw=data)
