"""openapi.alipay.com/gateway.do, played by the sandbox over real HTTP.

Written from Alipay's documentation, not with python-alipay-sdk, so that the
product's SDK-based code is checked against an independent implementation:
- requests are checked like Alipay checks them: app_id, RSA2 signature with
  the app's public key over the sorted ``key=value`` string of every
  non-empty parameter but ``sign``;
- synchronous answers are ``{"<method>_response": {...}, "sign": "..."}``,
  the signature over the exact JSON text of the inner object, with the
  gateway's private key; gateway-level errors (40002) come unsigned;
- notifications and return parameters are signed over the sorted
  ``key=value`` string of every field but ``sign`` and ``sign_type``.

``GET gateway.do?method=alipay.trade.wap.pay&…`` opens the cashier, where a
person pays (or sends a forged or tampered notification to watch it
refused). Trades live in Redis (``sandbox:alipay:*``), like the gateway's
own state, apart from the product's database.
"""
from __future__ import annotations

import base64
import csv
import io
import json
import zipfile
import re
import secrets
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode

import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from flask import Blueprint, Response, abort, current_app, redirect, render_template, request

from app.extensions import redis_store

from . import paykeys

bp = Blueprint("sandbox_alipay", __name__, url_prefix="/sandbox/pay/alipay", template_folder="templates")

BEIJING = timezone(timedelta(hours=8))
TTL = 7 * 86400
NOTIFY_TIMEOUT = 10
WAIT, SUCCESS, FINISHED, CLOSED = "WAIT_BUYER_PAY", "TRADE_SUCCESS", "TRADE_FINISHED", "TRADE_CLOSED"
SERVER_METHODS = ("alipay.trade.query", "alipay.trade.refund", "alipay.trade.close",
                  "alipay.trade.fastpay.refund.query", "alipay.data.dataservice.bill.downloadurl.query")
BILL_METHOD = "alipay.data.dataservice.bill.downloadurl.query"
OUT_TRADE_NO = re.compile(r"[A-Za-z0-9_]{1,64}", re.ASCII)
YUAN = re.compile(r"(0|[1-9][0-9]{0,8})(?:\.([0-9]{1,2}))?", re.ASCII)
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
MAX_FEN = 100_000_000 * 100


# -- keys and signatures ----------------------------------------------------

def conf() -> dict[str, Any]:
    return current_app.config["SETTINGS"]["alipay"]


def gateway_key() -> rsa.RSAPrivateKey:
    return serialization.load_pem_private_key(paykeys.private_half(conf()["alipay_public_key_path"]), None)


def app_public_key() -> rsa.RSAPublicKey:
    return serialization.load_pem_public_key(paykeys.merchant_public_half(conf()["app_private_key_path"]))


def rsa2_sign(message: str, key: rsa.RSAPrivateKey) -> str:
    return base64.b64encode(key.sign(message.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()


def rsa2_verify(message: str, sign: str, key: rsa.RSAPublicKey) -> bool:
    try:
        key.verify(base64.b64decode(sign, validate=True), message.encode(), padding.PKCS1v15(), hashes.SHA256())
        return True
    except (InvalidSignature, ValueError):
        return False


def content_to_sign(params: dict[str, str], leave_out: tuple[str, ...]) -> str:
    return "&".join(f"{k}={v}" for k, v in sorted(params.items()) if k not in leave_out and v != "")


def signed_fields(fields: dict[str, str], key: rsa.RSAPrivateKey | None = None) -> dict[str, str]:
    """Notification or return parameters as Alipay signs them."""
    fields = {k: v for k, v in fields.items() if v != ""}
    fields["sign_type"] = "RSA2"
    fields["sign"] = rsa2_sign(content_to_sign(fields, ("sign", "sign_type")), key or gateway_key())
    return fields


def signed_response(method: str, inner: dict[str, Any]) -> Response:
    name = method.replace(".", "_") + "_response"
    text = json.dumps(inner, ensure_ascii=False, separators=(",", ":"))
    body = f'{{"{name}":{text},"sign":"{rsa2_sign(text, gateway_key())}"}}'
    return Response(body, 200, content_type="application/json; charset=utf-8")


def unsigned_error(method: str, sub_code: str, sub_msg: str, code: str = "40002",
                   msg: str = "Invalid Arguments") -> Response:
    name = method.replace(".", "_") + "_response" if method in SERVER_METHODS else "error_response"
    body = json.dumps({name: {"code": code, "msg": msg, "sub_code": sub_code, "sub_msg": sub_msg}},
                      ensure_ascii=False, separators=(",", ":"))
    return Response(body, 200, content_type="application/json; charset=utf-8")


def business_error(method: str, sub_code: str, sub_msg: str, **extra: str) -> Response:
    return signed_response(method, {"code": "40004", "msg": "Business Failed", "sub_code": sub_code,
                                    "sub_msg": sub_msg, **extra})


# -- money and time ------------------------------------------------------------

def to_fen(text: Any) -> int | None:
    match = YUAN.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        return None
    return int(match.group(1)) * 100 + int((match.group(2) or "0").ljust(2, "0"))


def to_yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def beijing_now() -> str:
    return datetime.now(BEIJING).strftime(TIME_FORMAT)


def expired(trade: dict[str, Any]) -> bool:
    return bool(trade.get("time_expire")) and trade["time_expire"] < beijing_now()


# -- trades in Redis ---------------------------------------------------------

def _trade_key(trade_no: str) -> str:
    return f"sandbox:alipay:trade:{trade_no}"


def _index_key(app_id: str, out_trade_no: str) -> str:
    return f"sandbox:alipay:out:{app_id}:{out_trade_no}"


def load_trade(trade_no: str) -> dict[str, Any] | None:
    raw = redis_store.conn.get(_trade_key(trade_no)) if re.fullmatch(r"[0-9]{28}", trade_no or "") else None
    return json.loads(raw) if raw else None


def find_trade(app_id: str, out_trade_no: str = "", trade_no: str = "") -> dict[str, Any] | None:
    if out_trade_no:
        found = redis_store.conn.get(_index_key(app_id, out_trade_no))
        trade = load_trade(found.decode()) if found else None
    else:
        trade = load_trade(trade_no)
    if trade is None or trade["app_id"] != app_id or (trade_no and trade["trade_no"] != trade_no):
        return None
    return trade


def save_trade(trade: dict[str, Any]) -> None:
    redis_store.conn.set(_trade_key(trade["trade_no"]), json.dumps(trade), ex=TTL)


def trade_lock(trade_no: str):
    return redis_store.conn.lock(f"sandbox:alipay:lock:{trade_no}", timeout=30, blocking_timeout=30)


def new_trade_no() -> str:
    return datetime.now(BEIJING).strftime("%Y%m%d") + "2200" + f"{secrets.randbelow(10**16):016d}"


def open_trade(app_id: str, biz: dict[str, Any], params: dict[str, str]) -> tuple[dict[str, Any] | None, str]:
    """The trade for this wap.pay request: created once per out_trade_no,
    reopened while unpaid, refused when its amount or subject changed."""
    conn = redis_store.conn
    trade_no = new_trade_no()
    if conn.set(_index_key(app_id, biz["out_trade_no"]), trade_no, nx=True, ex=TTL):
        trade = {"trade_no": trade_no, "app_id": app_id, "seller_id": conf()["seller_id"] or "2088000000000001",
                 "out_trade_no": biz["out_trade_no"], "total_amount": biz["total_amount"],
                 "subject": biz["subject"], "body": str(biz.get("body", ""))[:128], "status": WAIT,
                 "time_expire": str(biz.get("time_expire", "")), "gmt_create": beijing_now(), "gmt_payment": "",
                 "buyer_id": "2088" + f"{secrets.randbelow(10**12):012d}", "buyer_logon_id": "138******00",
                 "notify_url": params.get("notify_url", ""), "return_url": params.get("return_url", ""),
                 "refunds": {}, "refunded_fen": 0}
        save_trade(trade)
        return trade, ""
    with trade_lock(conn.get(_index_key(app_id, biz["out_trade_no"])).decode()):
        trade = find_trade(app_id, biz["out_trade_no"])
        if trade is None:
            return None, "ACQ.SYSTEM_ERROR"
        if (trade["total_amount"], trade["subject"]) != (biz["total_amount"], biz["subject"]):
            return None, "ACQ.CONTEXT_INCONSISTENT"
        if trade["status"] in (SUCCESS, FINISHED):
            return None, "ACQ.TRADE_HAS_SUCCESS"
        if trade["status"] == CLOSED:
            return None, "ACQ.TRADE_HAS_CLOSE"
        trade["notify_url"] = params.get("notify_url", "")
        trade["return_url"] = params.get("return_url", "")
        trade["time_expire"] = str(biz.get("time_expire", "")) or trade["time_expire"]
        save_trade(trade)
        return trade, ""


# -- the gateway ----------------------------------------------------------------

WAP_ERRORS = {
    "ACQ.CONTEXT_INCONSISTENT": "交易信息被篡改：同一订单号的金额或标题与之前不同",
    "ACQ.TRADE_HAS_SUCCESS": "该订单已支付，请勿重复付款",
    "ACQ.TRADE_HAS_CLOSE": "交易已关闭（订单已超时或已撤销）",
    "ACQ.SYSTEM_ERROR": "系统繁忙，请稍后再试",
}


@bp.before_request
def only_in_sandbox():
    if not conf()["sandbox"]:
        abort(404)


def check_request(params: dict[str, str]) -> tuple[str, str] | None:
    """Alipay's gateway checks, in its order: (sub_code, sub_msg) of the first failure."""
    if not params.get("app_id"):
        return "isv.missing-app-id", "缺少AppID参数"
    if params["app_id"] != conf()["app_id"]:
        return "isv.invalid-app-id", "无效的AppID参数"
    if not params.get("method"):
        return "isv.missing-method", "缺少方法名参数"
    if params.get("charset", "utf-8").lower() != "utf-8":
        return "isv.invalid-charset", "字符集错误"
    if params.get("version") != "1.0":
        return "isv.invalid-version", "版本号错误"
    try:
        datetime.strptime(params.get("timestamp", ""), TIME_FORMAT)
    except ValueError:
        return "isv.invalid-timestamp", "非法的时间戳参数"
    if not params.get("sign"):
        return "isv.missing-signature", "缺少签名参数"
    if params.get("sign_type") != "RSA2":
        return "isv.invalid-signature-type", "无效的签名类型"
    if not rsa2_verify(content_to_sign(params, ("sign",)), params["sign"], app_public_key()):
        return "isv.invalid-signature", "验签出错，建议检查签名字符串或签名私钥与应用公钥是否匹配"
    return None


def biz_of(params: dict[str, str]) -> dict[str, Any] | None:
    try:
        biz = json.loads(params.get("biz_content") or "{}")
    except ValueError:
        return None
    return biz if isinstance(biz, dict) else None


@bp.route("/gateway.do", methods=["GET", "POST"])
def gateway():
    lists = request.values.to_dict(flat=False)
    params = {k: v[0] for k, v in lists.items()}
    method = params.get("method", "")
    wap = method == "alipay.trade.wap.pay"
    if any(len(v) > 1 for v in lists.values()):
        problem: tuple[str, str] | None = ("isv.invalid-parameter", "参数重复")
    else:
        problem = check_request(params)
    biz = biz_of(params)
    if problem is None and biz is None:
        problem = ("isv.invalid-parameter", "biz_content 不是 JSON 对象")
    if problem is not None:
        if wap:
            return error_page(*problem)
        return unsigned_error(method, *problem)
    if wap:
        return wap_pay(params, biz)
    if method not in SERVER_METHODS:
        return unsigned_error(method, "isv.invalid-method", "不存在的方法名")
    if method == BILL_METHOD:
        return bill_download_url(method, biz)
    out_trade_no, trade_no = str(biz.get("out_trade_no", "")), str(biz.get("trade_no", ""))
    if not out_trade_no and not trade_no:
        return business_error(method, "ACQ.INVALID_PARAMETER", "参数无效：out_trade_no 与 trade_no 不能同时为空")
    trade = find_trade(params["app_id"], out_trade_no, trade_no)
    if trade is None:
        return business_error(method, "ACQ.TRADE_NOT_EXIST", "交易不存在", out_trade_no=out_trade_no)
    with trade_lock(trade["trade_no"]):
        trade = load_trade(trade["trade_no"])
        if method == "alipay.trade.query":
            return trade_query(method, trade)
        if method == "alipay.trade.close":
            return trade_close(method, trade)
        if method == "alipay.trade.fastpay.refund.query":
            return refund_query(method, trade, biz)
        return trade_refund(method, trade, biz)


def error_page(sub_code: str, sub_msg: str):
    return render_template("sandbox/alipay_error.html", sub_code=sub_code, sub_msg=sub_msg), 400


def wap_pay(params: dict[str, str], biz: dict[str, Any]):
    out_trade_no, subject = biz.get("out_trade_no"), biz.get("subject")
    fen = to_fen(biz.get("total_amount"))
    if not isinstance(out_trade_no, str) or not OUT_TRADE_NO.fullmatch(out_trade_no):
        return error_page("ACQ.INVALID_PARAMETER", "商户订单号 out_trade_no 无效")
    if fen is None or not 1 <= fen <= MAX_FEN:
        return error_page("ACQ.INVALID_PARAMETER", "订单金额 total_amount 无效，应在 0.01 至 100000000 元之间")
    if not isinstance(subject, str) or not 1 <= len(subject) <= 256 or re.search(r"[/=&]", subject):
        return error_page("ACQ.INVALID_PARAMETER", "订单标题 subject 无效")
    if biz.get("product_code") != "QUICK_WAP_PAY":
        return error_page("ACQ.INVALID_PARAMETER", "product_code 应为 QUICK_WAP_PAY")
    time_expire = biz.get("time_expire", "")
    if time_expire:
        try:
            datetime.strptime(str(time_expire), TIME_FORMAT)
        except ValueError:
            return error_page("ACQ.INVALID_PARAMETER", "time_expire 格式应为 yyyy-MM-dd HH:mm:ss")
    for key in ("notify_url", "return_url"):
        if params.get(key) and (not re.match(r"https?://", params[key]) or "?" in params[key]):
            return error_page("isv.invalid-parameter", f"{key} 须为不带参数的 http(s) 地址")
    trade, problem = open_trade(params["app_id"], biz, params)
    if trade is None:
        return error_page(problem, WAP_ERRORS[problem])
    if expired(trade):
        return error_page("ACQ.TRADE_HAS_CLOSE", WAP_ERRORS["ACQ.TRADE_HAS_CLOSE"])
    return cashier_page(trade)


def cashier_page(trade: dict[str, Any], message: str = "", status: int = 200):
    return render_template("sandbox/alipay_cashier.html", trade=trade, message=message,
                           app_id=trade["app_id"]), status


# -- server APIs ------------------------------------------------------------------

def trade_query(method: str, trade: dict[str, Any]) -> Response:
    paid = trade["status"] in (SUCCESS, FINISHED) or trade["refunded_fen"]
    fields = {"code": "10000", "msg": "Success", "trade_no": trade["trade_no"],
              "out_trade_no": trade["out_trade_no"], "buyer_logon_id": trade["buyer_logon_id"],
              "trade_status": trade["status"], "total_amount": trade["total_amount"],
              "buyer_pay_amount": trade["total_amount"] if paid else "0.00", "point_amount": "0.00",
              "invoice_amount": trade["total_amount"] if paid else "0.00",
              "receipt_amount": trade["total_amount"] if paid else "0.00", "buyer_user_id": trade["buyer_id"]}
    if paid:
        fields["send_pay_date"] = trade["gmt_payment"]
    return signed_response(method, fields)


def trade_close(method: str, trade: dict[str, Any]) -> Response:
    if trade["status"] in (SUCCESS, FINISHED):
        return business_error(method, "ACQ.TRADE_STATUS_ERROR", "交易状态不合法：交易已支付")
    trade["status"] = CLOSED
    save_trade(trade)
    return signed_response(method, {"code": "10000", "msg": "Success", "trade_no": trade["trade_no"],
                                    "out_trade_no": trade["out_trade_no"]})


def refund_query(method: str, trade: dict[str, Any], biz: dict[str, Any]) -> Response:
    request_no = str(biz.get("out_request_no") or trade["trade_no"])[:64]
    answer = {"code": "10000", "msg": "Success", "trade_no": trade["trade_no"],
              "out_trade_no": trade["out_trade_no"], "out_request_no": request_no}
    done = trade["refunds"].get(request_no)
    if done is not None:  # an unknown request number answers Success with no refund fields
        answer.update(total_amount=trade["total_amount"], refund_amount=done["amount"],
                      refund_status="REFUND_SUCCESS", gmt_refund_pay=done["gmt_refund_pay"])
    return signed_response(method, answer)


def trade_refund(method: str, trade: dict[str, Any], biz: dict[str, Any]) -> Response:
    request_no = str(biz.get("out_request_no") or trade["trade_no"])[:64]
    fen = to_fen(biz.get("refund_amount"))
    if fen is None or fen < 1:
        return business_error(method, "ACQ.INVALID_PARAMETER", "参数无效：refund_amount")
    answer = {"code": "10000", "msg": "Success", "trade_no": trade["trade_no"],
              "out_trade_no": trade["out_trade_no"], "buyer_logon_id": trade["buyer_logon_id"],
              "buyer_user_id": trade["buyer_id"]}
    done = trade["refunds"].get(request_no)
    if done is not None:  # the same out_request_no: the same refund, no money moves again
        if done["amount"] != to_yuan(fen):
            return business_error(method, "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "同一退款请求号的退款金额与之前不一致")
        return signed_response(method, {**answer, "fund_change": "N", "refund_fee": to_yuan(trade["refunded_fen"]),
                                        "gmt_refund_pay": done["gmt_refund_pay"], "send_back_fee": "0.00"})
    if trade["status"] != SUCCESS:
        return business_error(method, "ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
    total = to_fen(trade["total_amount"])
    if trade["refunded_fen"] + fen > total:
        return business_error(method, "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "退款金额超限")
    at = beijing_now()
    trade["refunds"][request_no] = {"amount": to_yuan(fen), "gmt_refund_pay": at,
                                    "reason": str(biz.get("refund_reason", ""))[:256]}
    trade["refunded_fen"] += fen
    if trade["refunded_fen"] == total:
        trade["status"] = CLOSED
    save_trade(trade)
    return signed_response(method, {**answer, "fund_change": "Y", "refund_fee": to_yuan(trade["refunded_fen"]),
                                    "gmt_refund_pay": at, "send_back_fee": to_yuan(fen)})


# -- the cashier --------------------------------------------------------------------

def notification(trade: dict[str, Any]) -> dict[str, str]:
    """The unsigned fields of the asynchronous notification for the trade now."""
    paid = trade["status"] in (SUCCESS, FINISHED)
    amount = trade["total_amount"] if paid else "0.00"
    return {
        "notify_time": beijing_now(), "notify_type": "trade_status_sync", "notify_id": secrets.token_hex(17),
        "app_id": trade["app_id"], "auth_app_id": trade["app_id"], "charset": "utf-8", "version": "1.0",
        "trade_no": trade["trade_no"], "out_trade_no": trade["out_trade_no"], "buyer_id": trade["buyer_id"],
        "buyer_logon_id": trade["buyer_logon_id"], "seller_id": trade["seller_id"],
        "trade_status": trade["status"], "total_amount": trade["total_amount"], "receipt_amount": amount,
        "invoice_amount": amount, "buyer_pay_amount": amount, "point_amount": "0.00",
        "subject": trade["subject"], "body": trade.get("body", ""), "gmt_create": trade["gmt_create"],
        "gmt_payment": trade["gmt_payment"],
        "fund_bill_list": json.dumps([{"amount": amount, "fundChannel": "ALIPAYACCOUNT"}], separators=(",", ":")),
    }


def post_notification(trade: dict[str, Any], form: dict[str, str]) -> str:
    """POST the form to the trade's notify_url as Alipay does; the answer as text."""
    if not trade.get("notify_url"):
        return "（未提供 notify_url，没有发送通知）"
    try:
        resp = requests.post(trade["notify_url"], data=form, timeout=NOTIFY_TIMEOUT,
                             headers={"User-Agent": "Mozilla/4.0", "Content-Type":
                                      "application/x-www-form-urlencoded; charset=utf-8"})
        answer = resp.text.strip()[:200] or f"（空回答，HTTP {resp.status_code}）"
    except requests.RequestException as exc:
        answer = f"（发送失败：{type(exc).__name__}）"
    conn = redis_store.conn
    log_key = f"sandbox:alipay:notify-log:{trade['trade_no']}"
    conn.lpush(log_key, json.dumps({"at": beijing_now(), "status": form.get("trade_status", ""),
                                    "answer": answer}, ensure_ascii=False))
    conn.ltrim(log_key, 0, 19)
    conn.expire(log_key, TTL)
    return answer


def notify(trade: dict[str, Any]) -> str:
    return post_notification(trade, signed_fields(notification(trade)))


def return_url_for(trade: dict[str, Any]) -> str:
    """The merchant's return_url with the signed synchronous return parameters."""
    url = trade.get("return_url", "")
    if not url:
        return ""
    params = signed_fields({"charset": "utf-8", "out_trade_no": trade["out_trade_no"],
                            "method": "alipay.trade.wap.pay.return", "total_amount": trade["total_amount"],
                            "trade_no": trade["trade_no"], "auth_app_id": trade["app_id"], "version": "1.0",
                            "app_id": trade["app_id"], "seller_id": trade["seller_id"],
                            "timestamp": beijing_now()})
    return url + ("&" if "?" in url else "?") + urlencode(params)


def notify_log(trade: dict[str, Any]) -> list[dict[str, str]]:
    return [json.loads(x) for x in redis_store.conn.lrange(f"sandbox:alipay:notify-log:{trade['trade_no']}", 0, 9)]


def result_page(trade: dict[str, Any], answer: str = ""):
    return render_template("sandbox/alipay_result.html", trade=trade, answer=answer,
                           back=return_url_for(trade), log=notify_log(trade))


@bp.post("/cashier/<trade_no>/pay")
def pay(trade_no: str):
    trade = load_trade(trade_no)
    if trade is None:
        abort(404)
    with trade_lock(trade_no):
        trade = load_trade(trade_no)
        if trade["status"] in (SUCCESS, FINISHED):  # a second tap: paid already
            return result_page(trade)
        if trade["status"] == CLOSED or expired(trade):
            return error_page("ACQ.TRADE_HAS_CLOSE", WAP_ERRORS["ACQ.TRADE_HAS_CLOSE"])
        trade["status"], trade["gmt_payment"] = SUCCESS, beijing_now()
        save_trade(trade)
    answer = notify(trade)
    if answer == "success" and trade.get("return_url"):
        return redirect(return_url_for(trade), 303)
    return result_page(trade, answer)


@bp.post("/cashier/<trade_no>/notify")
def resend(trade_no: str):
    """Alipay retries until it hears ``success``; here a person presses the button."""
    trade = load_trade(trade_no)
    if trade is None:
        abort(404)
    return result_page(trade, notify(trade))


@bp.post("/cashier/<trade_no>/forge")
def forge(trade_no: str):
    """A paid-trade notification signed with a key that is not Alipay's."""
    trade = load_trade(trade_no)
    if trade is None:
        abort(404)
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    fake = {**trade, "status": SUCCESS, "gmt_payment": beijing_now()}
    answer = post_notification(trade, signed_fields(notification(fake), stranger))
    return cashier_page(trade, f"已发送伪造签名的付款通知，商户回答：{answer}")


@bp.post("/cashier/<trade_no>/tamper")
def tamper(trade_no: str):
    """A genuine paid-trade notification whose amount was changed on the way."""
    trade = load_trade(trade_no)
    if trade is None:
        abort(404)
    fake = {**trade, "status": SUCCESS, "gmt_payment": beijing_now()}
    form = signed_fields(notification(fake))
    form["total_amount"] = "0.01" if form["total_amount"] != "0.01" else "100.00"
    answer = post_notification(trade, form)
    return cashier_page(trade, f"已发送金额被改为 {form['total_amount']} 元的付款通知，商户回答：{answer}")


# -- the merchant console (商家平台): a refund made by hand ------------------------------------------

@bp.post("/console/refund")
def console_refund():
    """Refund ``refund_amount`` yuan of trade ``out_trade_no`` (default: what
    is left) as a person does in Alipay's console. Alipay then notifies the
    trade's notify_url: TRADE_CLOSED once all of it is refunded, else
    TRADE_SUCCESS, with ``refund_fee`` the refunded total so far, ``gmt_refund``
    and ``out_biz_no`` (the refund's request number, Alipay's own here)."""
    app_id = conf()["app_id"]
    trade = find_trade(app_id, request.values.get("out_trade_no", "")[:64])
    if trade is None:
        return business_error("alipay.trade.refund", "ACQ.TRADE_NOT_EXIST", "交易不存在")
    with trade_lock(trade["trade_no"]):
        trade = load_trade(trade["trade_no"])
        total = to_fen(trade["total_amount"])
        left = total - trade["refunded_fen"]
        fen = to_fen(request.values.get("refund_amount", to_yuan(left)))
        if trade["status"] not in (SUCCESS, FINISHED) or fen is None or not 1 <= fen <= left:
            return business_error("alipay.trade.refund", "ACQ.TRADE_STATUS_ERROR", "交易状态不合法或退款金额超限")
        at, request_no = beijing_now(), "HZ" + f"{secrets.randbelow(10**18):018d}"
        trade["refunds"][request_no] = {"amount": to_yuan(fen), "gmt_refund_pay": at, "reason": "商家平台退款"}
        trade["refunded_fen"] += fen
        if trade["refunded_fen"] == total:
            trade["status"] = CLOSED
        save_trade(trade)
    said = notify_refund(trade, request_no)
    return signed_response("alipay.trade.refund", {"code": "10000", "msg": "Success", "trade_no": trade["trade_no"],
                                                   "out_trade_no": trade["out_trade_no"], "out_biz_no": request_no,
                                                   "refund_fee": to_yuan(trade["refunded_fen"]),
                                                   "merchant_answer": said})


def refund_notification(trade: dict[str, Any], request_no: str) -> dict[str, str]:
    """The trade's notification after a refund (unsigned fields)."""
    done = trade["refunds"][request_no]
    fields = notification(trade)
    fields.update(refund_fee=to_yuan(trade["refunded_fen"]), gmt_refund=done["gmt_refund_pay"],
                  out_biz_no=request_no, gmt_close=done["gmt_refund_pay"] if trade["status"] == CLOSED else "")
    if trade["status"] == CLOSED:  # the amounts paid are still told
        amount = trade["total_amount"]
        fields.update(receipt_amount=amount, invoice_amount=amount, buyer_pay_amount=amount)
    return fields


def notify_refund(trade: dict[str, Any], request_no: str) -> str:
    return post_notification(trade, signed_fields(refund_notification(trade, request_no)))



# -- the bill (对账单) --------------------------------------------------------------------
# alipay.data.dataservice.bill.downloadurl.query (bill_type trade, bill_date
# YYYY-MM-DD) answers bill_download_url, valid 30 seconds: a ZIP of two GBK CSV
# files, 业务明细 (one line per payment and per refund of the day, with
# commented lines before and after) and 业务明细(汇总). Built from the sandbox's
# own trades: a payment on the day of its gmt_payment, a refund on the day of
# its gmt_refund_pay. The sandbox also serves today's bill so far.

BILL_FILE_TTL = 30
BILL_COLUMNS = ("支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,对方账户,"
                "订单金额（元）,商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,商家优惠（元）,券核销金额（元）,券名称,"
                "商家红包消费金额（元）,卡消费金额（元）,退款批次号/请求号,服务费（元）,分润（元）,备注")
FEE_PER_MILLE = 6


def _fee(fen: int) -> int:
    return (fen * FEE_PER_MILLE + 500) // 1000


def _all_trades() -> list[dict[str, Any]]:
    conn = redis_store.conn
    found = []
    for key in conn.scan_iter(match="sandbox:alipay:trade:*", count=500):
        raw = conn.get(key)
        if raw:
            found.append(json.loads(raw))
    return found


def bill_rows(app_id: str, day: str) -> list[list[str]]:
    """The day's 业务明细 lines, oldest first."""
    rows: list[tuple[str, list[str]]] = []
    blank = ["", "", "", ""]
    for t in _all_trades():
        if t["app_id"] != app_id:
            continue
        if t.get("gmt_payment", "").startswith(day):
            fen = to_fen(t["total_amount"]) or 0
            rows.append((t["gmt_payment"], [t["trade_no"], t["out_trade_no"], "交易", t["subject"], t["gmt_create"],
                                            t["gmt_payment"], *blank, t["buyer_logon_id"], t["total_amount"],
                                            t["total_amount"], "0.00", "0.00", "0.00", "0.00", "", "", "0.00", "0.00",
                                            "", "-" + to_yuan(_fee(fen)), "0.00", ""]))
        for request_no, r in t.get("refunds", {}).items():
            if not r["gmt_refund_pay"].startswith(day):
                continue
            fen = to_fen(r["amount"]) or 0
            rows.append((r["gmt_refund_pay"], [t["trade_no"], t["out_trade_no"], "退款", t["subject"],
                                               t["gmt_create"], r["gmt_refund_pay"], *blank, t["buyer_logon_id"],
                                               "-" + r["amount"], "-" + r["amount"], "0.00", "0.00", "0.00", "0.00",
                                               "", "", "0.00", "0.00", request_no, to_yuan(_fee(fen)), "0.00",
                                               r.get("reason", "")]))
    rows.sort(key=lambda pair: pair[0])
    return [row for _, row in rows]


def bill_zip(app_id: str, day: str) -> bytes:
    rows = bill_rows(app_id, day)
    pid = conf()["seller_id"] or "2088000000000001"
    stamp = day.replace("-", "")
    start = datetime.strptime(day, "%Y-%m-%d")
    span = (f"#起始日期：[{start:%Y年%m月%d日} 00:00:00]   "
            f"终止日期：[{start + timedelta(days=1):%Y年%m月%d日} 00:00:00]")
    exported = f"#导出时间：[{datetime.now(BEIJING):%Y年%m月%d日 %H:%M:%S}]"
    trades = [r for r in rows if r[2] == "交易"]
    refunds = [r for r in rows if r[2] == "退款"]

    def total(values: list[str]) -> str:
        fen = sum((to_fen(v.lstrip("-")) or 0) * (-1 if v.startswith("-") else 1) for v in values)
        return ("-" if fen < 0 else "") + to_yuan(abs(fen))

    details = io.StringIO()
    details.write(f"#支付宝业务明细查询\r\n#账号：[{pid}0156]\r\n{span}\r\n")
    details.write("#-----------------------------------------业务明细列表----------------------------------------\r\n")
    details.write(BILL_COLUMNS + "\r\n")
    writer = csv.writer(details, lineterminator="\r\n")
    for row in rows:
        writer.writerow([value + "\t" if value else value for value in row])  # Alipay pads with tabs
    details.write("#-----------------------------------------业务明细列表结束------------------------------------\r\n")
    details.write(f"#交易合计：{len(trades)}笔，商家实收：{total([r[12] for r in trades])}元，商家优惠：0.00元\r\n")
    details.write(f"#退款合计：{len(refunds)}笔，商家实收：{total([r[12] for r in refunds])}元，商家优惠：0.00元\r\n")
    details.write(exported + "\r\n")
    summary = io.StringIO()
    summary.write(f"#支付宝业务汇总查询\r\n#账号：[{pid}0156]\r\n{span}\r\n")
    summary.write("#-----------------------------------------业务汇总列表----------------------------------------\r\n")
    summary.write("门店编号,门店名称,交易订单总笔数,退款订单总笔数,订单金额（元）,商家实收（元）,服务费（元）,实收净额（元）\r\n")
    summary.write(f"合计,,{len(trades)},{len(refunds)},{total([r[11] for r in rows])},{total([r[12] for r in rows])},"
                  f"{total([r[22] for r in rows])},{total([r[12] for r in rows] + [r[22] for r in rows])}\r\n")
    summary.write("#-----------------------------------------业务汇总列表结束------------------------------------\r\n")
    summary.write(exported + "\r\n")
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{pid}0156_{stamp}_业务明细.csv", details.getvalue().encode("gbk"))
        archive.writestr(f"{pid}0156_{stamp}_业务明细(汇总).csv", summary.getvalue().encode("gbk"))
    return out.getvalue()


def bill_download_url(method: str, biz: dict[str, Any]) -> Response:
    bill_type, bill_date = str(biz.get("bill_type", "")), str(biz.get("bill_date", ""))
    if bill_type not in ("trade", "signcustomer"):
        return business_error(method, "isv.invalid-arguments", "bill_type 只能是 trade 或 signcustomer")
    try:
        day = datetime.strptime(bill_date, "%Y-%m-%d") if re.fullmatch(r"\d{4}-\d\d-\d\d", bill_date) else None
    except ValueError:
        day = None
    if day is None:
        return business_error(method, "isv.invalid-arguments", "bill_date 格式应为 yyyy-MM-dd")
    if day.date() > datetime.now(BEIJING).date():
        return business_error(method, "isp.bill_not_exist", "账单不存在")
    token = secrets.token_urlsafe(24)
    data = bill_zip(conf()["app_id"], bill_date)
    redis_store.conn.set(f"sandbox:alipay:billfile:{token}", base64.b64encode(data), ex=BILL_FILE_TTL)
    url = f"{request.host_url.rstrip('/')}{bp.url_prefix}/bill/download?token={token}"
    return signed_response(method, {"code": "10000", "msg": "Success", "bill_download_url": url})


@bp.get("/bill/download")
def download_bill():
    token = request.args.get("token", "")
    raw = redis_store.conn.get(f"sandbox:alipay:billfile:{token}") \
        if re.fullmatch(r"[A-Za-z0-9_-]{16,64}", token) else None
    if raw is None:
        return Response("下载链接无效或已过期", 404, content_type="text/plain; charset=utf-8")
    return Response(base64.b64decode(raw), 200, content_type="application/oct-stream",
                    headers={"Content-Disposition": "attachment; filename=bill.csv.zip"})
