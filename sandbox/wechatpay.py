"""api.mch.weixin.qq.com (WeChat Pay API v3), played by the sandbox over real HTTP.

Written from WeChat Pay's documentation, not with wechatpayv3, so that the
product's SDK-based code is checked against an independent implementation:
- every request must carry the merchant's ``Authorization:
  WECHATPAY2-SHA256-RSA2048 mchid="…",nonce_str="…",signature="…",
  timestamp="…",serial_no="…"``, an RSA-SHA256 signature over
  ``METHOD\\nURL\\nTIMESTAMP\\nNONCE\\nBODY\\n`` checked with the merchant's
  public key; otherwise 401 SIGN_ERROR;
- every answer is signed with the WeChat Pay (platform) private key:
  ``Wechatpay-Timestamp/-Nonce/-Signature/-Serial (= public_key_id)/
  -Signature-Type`` over ``TIMESTAMP\\nNONCE\\nBODY\\n`` — the SDK refuses
  an unsigned answer;
- errors are ``{"code": "PARAM_ERROR", "message": "…"}`` with 400/401/403/404;
- notifications are POSTed as WeChat Pay sends them: JSON with the resource
  encrypted AEAD_AES_256_GCM under the APIv3 key, signed like an answer.

The cashier page (``/cashier?prepay_id=…``) stands in for WeChat's payment
sheet: it checks paySign like the WeChat client, pays (sending a genuine
TRANSACTION.SUCCESS notification), or sends a forged or tampered one to watch
the product refuse it. State lives in Redis (``sandbox:wxpay:*``), like the
gateway's own, apart from the product's database.
"""
from __future__ import annotations

import base64
import csv
import gzip
import hashlib
import io
import json
import re
import secrets
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from flask import Blueprint, Response, abort, current_app, redirect, render_template, request

from app.extensions import redis_store
from handlers import clock

from . import paykeys

bp = Blueprint("sandbox_wechatpay", __name__, url_prefix="/sandbox/pay/wechatpay", template_folder="templates")

BEIJING = timezone(timedelta(hours=8))
TTL = 7 * 86400
NOTIFY_TIMEOUT = 10
CLOCK_SKEW = 300  # seconds WeChat Pay tolerates between the request's timestamp and its clock
MAX_BODY = 64 * 1024
SIGNATURE_TYPE = "WECHATPAY2-SHA256-RSA2048"
NOTPAY, SUCCESS, CLOSED, REFUND = "NOTPAY", "SUCCESS", "CLOSED", "REFUND"
STATE_DESC = {NOTPAY: "订单未支付", SUCCESS: "支付成功", CLOSED: "订单已关闭", REFUND: "转入退款"}
OUT_TRADE_NO = re.compile(r"[A-Za-z0-9_\-|*]{6,32}", re.ASCII)
OUT_REFUND_NO = re.compile(r"[A-Za-z0-9_\-|*@]{1,64}", re.ASCII)
AUTH_FIELD = re.compile(r'(\w+)="([^"]*)"')
MAX_FEN = 100_000_000 * 100


# -- keys and signatures ----------------------------------------------------

def conf() -> dict[str, Any]:
    return current_app.config["SETTINGS"]["wechatpay"]


def platform_key() -> rsa.RSAPrivateKey:
    return serialization.load_pem_private_key(paykeys.private_half(conf()["public_key_path"]), None)


def merchant_public_key() -> rsa.RSAPublicKey:
    return serialization.load_pem_public_key(paykeys.merchant_public_half(conf()["private_key_path"]))


def rsa_sign(message: str, key: rsa.RSAPrivateKey) -> str:
    return base64.b64encode(key.sign(message.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()


def rsa_verify(message: str, signature: str, key: rsa.RSAPublicKey) -> bool:
    try:
        key.verify(base64.b64decode(signature, validate=True), message.encode(), padding.PKCS1v15(),
                   hashes.SHA256())
        return True
    except (InvalidSignature, ValueError):
        return False


def signed_headers(body: str, key: rsa.RSAPrivateKey | None = None) -> dict[str, str]:
    """WeChat Pay's signature headers over ``body`` (answers and notifications)."""
    timestamp, nonce = str(int(time.time())), secrets.token_hex(16).upper()
    return {"Wechatpay-Timestamp": timestamp, "Wechatpay-Nonce": nonce,
            "Wechatpay-Signature": rsa_sign(f"{timestamp}\n{nonce}\n{body}\n", key or platform_key()),
            "Wechatpay-Serial": conf()["public_key_id"], "Wechatpay-Signature-Type": SIGNATURE_TYPE,
            "Request-ID": str(uuid.uuid4())}


def answer(data: dict[str, Any] | None, status: int = 200) -> Response:
    body = "" if data is None else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    resp = Response(body, status, content_type="application/json; charset=utf-8")
    resp.headers.update(signed_headers(body))
    return resp


def error(status: int, code: str, message: str, **detail: Any) -> Response:
    data: dict[str, Any] = {"code": code, "message": message}
    if detail:
        data["detail"] = detail
    return answer(data, status)


# -- money and time ------------------------------------------------------------

def rfc3339(at: datetime | None = None) -> str:
    return (at or datetime.now(BEIJING)).astimezone(BEIJING).isoformat(timespec="seconds")


def parse_rfc3339(text: Any) -> datetime | None:
    if not isinstance(text, str) or not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?([+-]\d\d:\d\d|Z)",
                                                     text):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def expired(trade: dict[str, Any]) -> bool:
    until = parse_rfc3339(trade.get("time_expire"))
    return until is not None and until < datetime.now(BEIJING)


def to_yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def fen(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_FEN else None


# -- state in Redis ------------------------------------------------------------------

def _trade_key(mchid: str, out_trade_no: str) -> str:
    return f"sandbox:wxpay:trade:{mchid}:{out_trade_no}"


def _prepay_key(prepay_id: str) -> str:
    return f"sandbox:wxpay:prepay:{prepay_id}"


def _refund_key(mchid: str, out_refund_no: str) -> str:
    return f"sandbox:wxpay:refund:{mchid}:{out_refund_no}"


def _load(key: str) -> dict[str, Any] | None:
    raw = redis_store.conn.get(key)
    return json.loads(raw) if raw else None


def _save(key: str, value: dict[str, Any]) -> None:
    redis_store.conn.set(key, json.dumps(value, ensure_ascii=False), ex=TTL)


def load_trade(mchid: str, out_trade_no: str) -> dict[str, Any] | None:
    return _load(_trade_key(mchid, out_trade_no))


def save_trade(trade: dict[str, Any]) -> None:
    _save(_trade_key(trade["mchid"], trade["out_trade_no"]), trade)


def trade_by_prepay(prepay_id: str) -> dict[str, Any] | None:
    if not re.fullmatch(r"wx[0-9A-Za-z]{10,62}", prepay_id or ""):
        return None
    where = redis_store.conn.get(_prepay_key(prepay_id))
    if not where:
        return None
    mchid, out_trade_no = where.decode().split(":", 1)
    return load_trade(mchid, out_trade_no)


def load_refund(mchid: str, out_refund_no: str) -> dict[str, Any] | None:
    return _load(_refund_key(mchid, out_refund_no))


def save_refund(refund: dict[str, Any]) -> None:
    _save(_refund_key(refund["mchid"], refund["out_refund_no"]), refund)


def lock(mchid: str, no: str):
    return redis_store.conn.lock(f"sandbox:wxpay:lock:{mchid}:{no}", timeout=30, blocking_timeout=30)


def new_id(prefix: str, digits: int) -> str:
    return prefix + datetime.now(BEIJING).strftime("%Y%m%d") + f"{secrets.randbelow(10**digits):0{digits}d}"


# -- the merchant's signature -------------------------------------------------------

@bp.before_request
def only_in_sandbox():
    if not conf()["sandbox"] or not conf()["mchid"]:
        abort(404)


def authenticated_mchid() -> tuple[str | None, Response | None]:
    """The merchant whose Authorization signs this request, or an error answer."""
    auth = request.headers.get("Authorization", "")
    scheme, _, rest = auth.partition(" ")
    if scheme != SIGNATURE_TYPE:
        return None, error(401, "SIGN_ERROR", "Authorization 缺失或认证类型不是 WECHATPAY2-SHA256-RSA2048")
    fields = dict(AUTH_FIELD.findall(rest))
    if not all(fields.get(k) for k in ("mchid", "nonce_str", "signature", "timestamp", "serial_no")):
        return None, error(401, "SIGN_ERROR", "Authorization 缺少 mchid、nonce_str、signature、timestamp 或 serial_no")
    if fields["mchid"] != conf()["mchid"]:
        return None, error(401, "SIGN_ERROR", "商户号不存在或未开通 API v3")
    if fields["serial_no"] != conf()["cert_serial_no"]:
        return None, error(401, "SIGN_ERROR", "商户证书序列号有误，请检查 serial_no")
    if not fields["timestamp"].isdigit() or abs(int(fields["timestamp"]) - time.time()) > CLOCK_SKEW:
        return None, error(401, "SIGN_ERROR", "timestamp 与系统时间相差超过 5 分钟")
    # The URL as sent, without the gateway's address: path (from /v3) and query.
    raw_uri = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI") or request.full_path
    url = raw_uri[raw_uri.index("/v3/"):] if "/v3/" in raw_uri else raw_uri
    url = url.rstrip("?")
    body = request.get_data(as_text=True)
    message = f"{request.method}\n{url}\n{fields['timestamp']}\n{fields['nonce_str']}\n{body}\n"
    if not rsa_verify(message, fields["signature"], merchant_public_key()):
        return None, error(401, "SIGN_ERROR", "签名错误，请检查签名串和商户私钥",
                           detail=f"验签串：{message[:200]!r}")
    return fields["mchid"], None


def signed_json() -> tuple[str | None, dict[str, Any] | None, Response | None]:
    """A merchant-signed request with a JSON body: (mchid, body, None), or an error answer."""
    mchid, problem = authenticated_mchid()
    if problem:
        return None, None, problem
    data, problem = json_body()
    return mchid, data, problem


def json_body() -> tuple[dict[str, Any] | None, Response | None]:
    if (request.content_length or 0) > MAX_BODY:
        return None, error(400, "PARAM_ERROR", "请求体过大")
    try:
        data = json.loads(request.get_data(as_text=True) or "null")
    except ValueError:
        return None, error(400, "PARAM_ERROR", "请求体不是合法的 JSON")
    if not isinstance(data, dict):
        return None, error(400, "PARAM_ERROR", "请求体应为 JSON 对象")
    return data, None


def url_ok(url: Any) -> bool:
    """notify_url: an absolute http(s) address with no query (WeChat Pay asks
    for https; the sandbox also takes the try-out's http)."""
    if not isinstance(url, str) or not 1 <= len(url) <= 255:
        return False
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc) and not parts.query and not parts.fragment


# -- JSAPI order, query, close ----------------------------------------------------------

def jsapi_problem(data: dict[str, Any], mchid: str) -> Response | None:
    if data.get("mchid") != mchid:
        return error(400, "PARAM_ERROR" if not data.get("mchid") else "MCH_NOT_EXISTS",
                     "mchid 缺失或与请求签名的商户号不一致")
    if data.get("appid") != conf()["appid"]:
        return error(400, "APPID_MCHID_NOT_MATCH" if data.get("appid") else "PARAM_ERROR",
                     "appid 缺失或与 mchid 不匹配")
    description = data.get("description")
    if not isinstance(description, str) or not 1 <= len(description) <= 127:
        return error(400, "PARAM_ERROR", "description 应为 1 至 127 个字符")
    if not isinstance(data.get("out_trade_no"), str) or not OUT_TRADE_NO.fullmatch(data["out_trade_no"]):
        return error(400, "PARAM_ERROR", "out_trade_no 应为 6 至 32 个字符，只能是数字、大小写字母和 _-|*")
    if not url_ok(data.get("notify_url")):
        return error(400, "PARAM_ERROR", "notify_url 应为不带参数的 http(s) 地址")
    amount = data.get("amount")
    if not isinstance(amount, dict) or fen(amount.get("total")) is None:
        return error(400, "PARAM_ERROR", "amount.total 应为正整数（单位：分）")
    if amount.get("currency", "CNY") != "CNY":
        return error(400, "PARAM_ERROR", "amount.currency 只能是 CNY")
    payer = data.get("payer")
    if not isinstance(payer, dict) or not isinstance(payer.get("openid"), str) \
            or not 1 <= len(payer["openid"]) <= 128:
        return error(400, "PARAM_ERROR", "JSAPI 下单 payer.openid 必填")
    if "time_expire" in data and parse_rfc3339(data["time_expire"]) is None:
        return error(400, "PARAM_ERROR", "time_expire 应为 RFC 3339 格式，如 2018-06-08T10:34:56+08:00")
    return None


def content_of(data: dict[str, Any]) -> dict[str, Any]:
    """What must match when the same out_trade_no is ordered again."""
    return {"appid": data["appid"], "description": data["description"], "total": data["amount"]["total"],
            "openid": data["payer"]["openid"], "attach": data.get("attach", "")}


@bp.post("/v3/pay/transactions/jsapi")
def jsapi():
    mchid, data, problem = signed_json()
    if problem:
        return problem
    problem = jsapi_problem(data, mchid)
    if problem:
        return problem
    out_trade_no = data["out_trade_no"]
    with lock(mchid, out_trade_no):
        trade = load_trade(mchid, out_trade_no)
        if trade is not None:
            if trade["trade_state"] in (SUCCESS, REFUND):
                return error(400, "ORDERPAID", "该订单已支付")
            if trade["trade_state"] == CLOSED:
                return error(400, "ORDER_CLOSED", "订单已关闭")
            if trade["content"] != content_of(data):
                return error(400, "INVALID_REQUEST", "订单号重复")
            trade["notify_url"] = data["notify_url"]
            trade["time_expire"] = data.get("time_expire", trade["time_expire"])
            save_trade(trade)
            return answer({"prepay_id": trade["prepay_id"]})
        prepay_id = "wx" + datetime.now(BEIJING).strftime("%d%H%M%S") + secrets.token_hex(13)
        trade = {"mchid": mchid, "appid": data["appid"], "out_trade_no": out_trade_no,
                 "description": data["description"], "total": data["amount"]["total"],
                 "openid": data["payer"]["openid"], "attach": data.get("attach", ""),
                 "notify_url": data["notify_url"], "time_expire": data.get("time_expire", ""),
                 "content": content_of(data), "prepay_id": prepay_id, "trade_state": NOTPAY,
                 "transaction_id": "", "success_time": "", "refunded": 0, "created": rfc3339()}
        save_trade(trade)
        redis_store.conn.set(_prepay_key(prepay_id), f"{mchid}:{out_trade_no}", ex=2 * 3600)
    return answer({"prepay_id": prepay_id})


def transaction(trade: dict[str, Any], amount_total: int | None = None) -> dict[str, Any]:
    """The transaction as query answers and notifications describe it."""
    paid = trade["trade_state"] in (SUCCESS, REFUND)
    total = trade["total"] if amount_total is None else amount_total
    data: dict[str, Any] = {
        "appid": trade["appid"], "mchid": trade["mchid"], "out_trade_no": trade["out_trade_no"],
        "trade_type": "JSAPI", "trade_state": trade["trade_state"],
        "trade_state_desc": STATE_DESC[trade["trade_state"]], "attach": trade.get("attach", ""),
        "payer": {"openid": trade["openid"]},
        "amount": {"total": total, "currency": "CNY", "payer_currency": "CNY"},
    }
    if paid:
        data.update(transaction_id=trade["transaction_id"], bank_type="OTHERS", success_time=trade["success_time"])
        data["amount"]["payer_total"] = total
    return data


@bp.get("/v3/pay/transactions/out-trade-no/<out_trade_no>")
def query(out_trade_no: str):
    mchid, problem = authenticated_mchid()
    if problem:
        return problem
    if request.args.get("mchid") != mchid:
        return error(400, "PARAM_ERROR", "mchid 缺失或与请求签名的商户号不一致")
    trade = load_trade(mchid, out_trade_no) if OUT_TRADE_NO.fullmatch(out_trade_no) else None
    if trade is None:
        return error(404, "ORDER_NOT_EXIST", "订单不存在")
    return answer(transaction(trade))


@bp.post("/v3/pay/transactions/out-trade-no/<out_trade_no>/close")
def close(out_trade_no: str):
    mchid, data, problem = signed_json()
    if problem:
        return problem
    if data.get("mchid") != mchid:
        return error(400, "PARAM_ERROR", "mchid 缺失或与请求签名的商户号不一致")
    if not OUT_TRADE_NO.fullmatch(out_trade_no) or load_trade(mchid, out_trade_no) is None:
        return error(404, "ORDER_NOT_EXIST", "订单不存在")
    with lock(mchid, out_trade_no):
        trade = load_trade(mchid, out_trade_no)
        if trade["trade_state"] in (SUCCESS, REFUND):
            return error(400, "ORDERPAID", "订单已支付，不能关闭")
        trade["trade_state"] = CLOSED
        save_trade(trade)
    return answer(None, 204)


# -- refunds --------------------------------------------------------------------------------

def refund_view(refund: dict[str, Any]) -> dict[str, Any]:
    data = {"refund_id": refund["refund_id"], "out_refund_no": refund["out_refund_no"],
            "transaction_id": refund["transaction_id"], "out_trade_no": refund["out_trade_no"],
            "channel": "ORIGINAL", "user_received_account": "支付用户零钱", "create_time": refund["create_time"],
            "status": refund["status"], "funds_account": "AVAILABLE",
            "amount": {"total": refund["total"], "refund": refund["refund"], "payer_total": refund["total"],
                       "payer_refund": refund["refund"], "settlement_total": refund["total"],
                       "settlement_refund": refund["refund"], "discount_refund": 0, "currency": "CNY",
                       "refund_fee": 0}}
    if refund.get("success_time"):
        data["success_time"] = refund["success_time"]
    return data


@bp.post("/v3/refund/domestic/refunds")
def create_refund():
    mchid, data, problem = signed_json()
    if problem:
        return problem
    out_refund_no = data.get("out_refund_no")
    if not isinstance(out_refund_no, str) or not OUT_REFUND_NO.fullmatch(out_refund_no):
        return error(400, "PARAM_ERROR", "out_refund_no 应为 1 至 64 个字符，只能是数字、大小写字母和 _-|*@")
    out_trade_no = data.get("out_trade_no")
    if not isinstance(out_trade_no, str) or not OUT_TRADE_NO.fullmatch(out_trade_no):
        return error(400, "PARAM_ERROR", "out_trade_no 无效（本沙箱只支持按商户订单号退款）")
    amount = data.get("amount")
    if not isinstance(amount, dict) or fen(amount.get("refund")) is None or fen(amount.get("total")) is None:
        return error(400, "PARAM_ERROR", "amount.refund 与 amount.total 应为正整数（单位：分）")
    if amount.get("currency") != "CNY":
        return error(400, "PARAM_ERROR", "amount.currency 必填，只能是 CNY")
    if "notify_url" in data and not url_ok(data["notify_url"]):
        return error(400, "PARAM_ERROR", "notify_url 应为不带参数的 http(s) 地址")
    if "reason" in data and (not isinstance(data["reason"], str) or len(data["reason"]) > 80):
        return error(400, "PARAM_ERROR", "reason 不超过 80 个字符")
    with lock(mchid, out_trade_no):
        trade = load_trade(mchid, out_trade_no)
        if trade is None:
            return error(404, "RESOURCE_NOT_EXISTS", "订单不存在")
        existing = load_refund(mchid, out_refund_no)
        if existing is not None:  # the same out_refund_no is the same refund
            if (existing["out_trade_no"], existing["refund"]) != (out_trade_no, amount["refund"]):
                return error(400, "INVALID_REQUEST", "退款单号已存在，且与之前的退款信息不一致")
            if existing["status"] == "PROCESSING":
                schedule_refund_notice(mchid, out_refund_no)
            return answer(refund_view(existing))
        if trade["trade_state"] not in (SUCCESS, REFUND):
            return error(400, "INVALID_REQUEST", "订单未支付，不能退款")
        if amount["total"] != trade["total"]:
            return error(400, "INVALID_REQUEST", "订单金额 amount.total 与原订单不一致")
        if trade["refunded"] + amount["refund"] > trade["total"]:
            return error(400, "INVALID_REQUEST", "申请退款金额超过订单可退金额")
        refund = {"mchid": mchid, "out_refund_no": out_refund_no, "refund_id": new_id("50", 21),
                  "out_trade_no": out_trade_no, "transaction_id": trade["transaction_id"],
                  "refund": amount["refund"], "total": trade["total"], "reason": data.get("reason", ""),
                  "notify_url": data.get("notify_url", ""), "status": "PROCESSING",
                  "create_time": rfc3339(), "success_time": ""}
        trade["refunded"] += amount["refund"]
        trade["trade_state"] = REFUND
        save_trade(trade)
        save_refund(refund)
    schedule_refund_notice(mchid, out_refund_no)
    return answer(refund_view(refund))


def schedule_refund_notice(mchid: str, out_refund_no: str) -> None:
    """WeChat Pay finishes a refund a moment after answering, then notifies.
    Here a queued job does both: on RQ when Redis is there (a test drains
    it with the worker), inline with the in-process fallback."""
    from handlers.outbox import enqueue

    enqueue("sandbox.wechatpay.finish_refund", mchid, out_refund_no,
            job_id=f"sandbox-wxpay-refund-{mchid}-{out_refund_no}")


def finish_refund(mchid: str, out_refund_no: str) -> str:
    """The job: the refund succeeds — or ends ABNORMAL when the console said
    the trade's refunds should (the buyer's card is closed…) — and its
    REFUND.* notification goes to the merchant's notify_url; the merchant's
    answer is returned (and logged)."""
    with lock(mchid, out_refund_no):
        refund = load_refund(mchid, out_refund_no)
        if refund is None:
            return "unknown refund"
        if refund["status"] == "PROCESSING":
            trade = load_trade(mchid, refund["out_trade_no"]) or {}
            outcome = trade.get("refund_outcome") or "SUCCESS"
            refund["status"] = outcome
            refund["success_time"] = rfc3339() if outcome == "SUCCESS" else ""
            save_refund(refund)
    return notify_refund(refund)


# -- the merchant console (商户平台): what a person does there ------------------------------------
# Sandbox-only doors for what WeChat Pay's web console lets the merchant do:
# refund a trade by hand (its notification carries an out_refund_no the
# product never made), decide how the refunds of a trade end (ABNORMAL: the
# money cannot reach the buyer), and finish an abnormal refund.

CONSOLE_OUTCOMES = ("SUCCESS", "ABNORMAL", "CLOSED")


def _console_form() -> dict[str, Any]:
    if request.is_json:
        data = request.get_json(silent=True)
        return data if isinstance(data, dict) else {}
    return request.form.to_dict()


@bp.post("/console/refund")
def console_refund():
    """Refund ``refund`` fen of trade ``out_trade_no`` (default: what is
    left), as a person does in the console. The refund notification goes to
    ``notify_url`` (default: the shop's refund notification address, as
    configured in the console) once the refund job has run."""
    data = _console_form()
    mchid, out_trade_no = conf()["mchid"], str(data.get("out_trade_no", ""))
    notify_url = data.get("notify_url") or (current_app.config["SETTINGS"]["app"]["base_url"].rstrip("/")
                                            + "/pay/wechatpay/refund-notify")
    if not OUT_TRADE_NO.fullmatch(out_trade_no) or not url_ok(notify_url):
        return error(400, "PARAM_ERROR", "out_trade_no 或 notify_url 无效")
    with lock(mchid, out_trade_no):
        trade = load_trade(mchid, out_trade_no)
        if trade is None:
            return error(404, "RESOURCE_NOT_EXISTS", "订单不存在")
        if trade["trade_state"] not in (SUCCESS, REFUND):
            return error(400, "INVALID_REQUEST", "订单未支付，不能退款")
        left = trade["total"] - trade["refunded"]
        amount = data.get("refund", left)
        amount = int(amount) if isinstance(amount, (int, str)) and str(amount).isdigit() else None
        if amount is None or not 1 <= amount <= left:
            return error(400, "INVALID_REQUEST", f"退款金额应在 1 至 {left} 分之间")
        refund = {"mchid": mchid, "out_refund_no": new_id("", 14), "refund_id": new_id("50", 21),
                  "out_trade_no": out_trade_no, "transaction_id": trade["transaction_id"], "refund": amount,
                  "total": trade["total"], "reason": "商户平台退款", "notify_url": notify_url,
                  "status": "PROCESSING", "create_time": rfc3339(), "success_time": ""}
        trade["refunded"] += amount
        trade["trade_state"] = REFUND
        save_trade(trade)
        save_refund(refund)
    schedule_refund_notice(mchid, refund["out_refund_no"])
    return answer(refund_view(refund))


@bp.post("/console/refund-outcome")
def console_refund_outcome():
    """How the trade's refunds still processing end: SUCCESS (the default)
    or ABNORMAL, or CLOSED."""
    data = _console_form()
    mchid, out_trade_no, outcome = conf()["mchid"], str(data.get("out_trade_no", "")), data.get("outcome")
    if outcome not in CONSOLE_OUTCOMES:
        return error(400, "PARAM_ERROR", "outcome 应为 SUCCESS、ABNORMAL 或 CLOSED")
    with lock(mchid, out_trade_no):
        trade = load_trade(mchid, out_trade_no) if OUT_TRADE_NO.fullmatch(out_trade_no) else None
        if trade is None:
            return error(404, "RESOURCE_NOT_EXISTS", "订单不存在")
        trade["refund_outcome"] = outcome
        save_trade(trade)
    return answer(None, 204)


@bp.post("/console/refunds/<out_refund_no>/finish")
def console_finish_refund(out_refund_no: str):
    """An abnormal refund handled in the console (退款到其他账户): it ends
    SUCCESS (or CLOSED) and WeChat Pay notifies again."""
    data = _console_form()
    mchid, status = conf()["mchid"], data.get("status", "SUCCESS")
    if status not in ("SUCCESS", "CLOSED"):
        return error(400, "PARAM_ERROR", "status 应为 SUCCESS 或 CLOSED")
    with lock(mchid, out_refund_no):
        refund = load_refund(mchid, out_refund_no) if OUT_REFUND_NO.fullmatch(out_refund_no) else None
        if refund is None:
            return error(404, "RESOURCE_NOT_EXISTS", "退款单不存在")
        if refund["status"] != "ABNORMAL":
            return error(400, "INVALID_REQUEST", "只有异常的退款可以在这里处理")
        refund["status"] = status
        refund["success_time"] = rfc3339() if status == "SUCCESS" else ""
        save_refund(refund)
    said = notify_refund(refund)
    return answer({**refund_view(refund), "merchant_answer": said})


def refund_resource(refund: dict[str, Any]) -> dict[str, Any]:
    return {"mchid": refund["mchid"], "out_trade_no": refund["out_trade_no"],
            "transaction_id": refund["transaction_id"], "out_refund_no": refund["out_refund_no"],
            "refund_id": refund["refund_id"], "refund_status": refund["status"],
            "success_time": refund.get("success_time", ""), "user_received_account": "支付用户零钱",
            "amount": {"total": refund["total"], "refund": refund["refund"], "payer_total": refund["total"],
                       "payer_refund": refund["refund"]}}


def notify_refund(refund: dict[str, Any], key: rsa.RSAPrivateKey | None = None) -> str:
    event = {"SUCCESS": "REFUND.SUCCESS", "ABNORMAL": "REFUND.ABNORMAL", "CLOSED": "REFUND.CLOSED"}
    if refund["status"] not in event:
        return "（退款处理中，尚无通知）"
    summary = {"SUCCESS": "退款成功", "ABNORMAL": "退款异常", "CLOSED": "退款关闭"}[refund["status"]]
    body = notification_body(event[refund["status"]], summary, "refund", refund_resource(refund))
    return post_notification(refund["notify_url"], body, f"refund:{refund['mchid']}:{refund['out_refund_no']}",
                             key)


# -- notifications -------------------------------------------------------------------------------

def encrypt_resource(resource: dict[str, Any], original_type: str, apiv3_key: str | None = None) -> dict[str, str]:
    """AEAD_AES_256_GCM under the APIv3 key, as WeChat Pay encrypts a resource."""
    plaintext = json.dumps(resource, ensure_ascii=False, separators=(",", ":"))
    nonce = secrets.token_urlsafe(9)[:12]
    associated = original_type
    key = (apiv3_key or conf()["apiv3_key"]).encode()
    ciphertext = AESGCM(key).encrypt(nonce.encode(), plaintext.encode(), associated.encode())
    return {"original_type": original_type, "algorithm": "AEAD_AES_256_GCM",
            "ciphertext": base64.b64encode(ciphertext).decode(), "associated_data": associated, "nonce": nonce}


def notification_body(event_type: str, summary: str, original_type: str, resource: dict[str, Any]) -> str:
    return json.dumps({"id": str(uuid.uuid4()), "create_time": rfc3339(), "resource_type": "encrypt-resource",
                       "event_type": event_type, "summary": summary,
                       "resource": encrypt_resource(resource, original_type)},
                      ensure_ascii=False, separators=(",", ":"))


def post_notification(url: str, body: str, log_as: str, key: rsa.RSAPrivateKey | None = None) -> str:
    """POST a notification as WeChat Pay does; the merchant's answer as text
    ("204" for an accepted one), also kept in a short log for the cashier."""
    if not url:
        return "（未提供 notify_url，没有发送通知）"
    headers = {"Content-Type": "application/json", "User-Agent": "Mozilla/4.0", **signed_headers(body, key)}
    try:
        resp = requests.post(url, data=body.encode(), headers=headers, timeout=NOTIFY_TIMEOUT)
        said = f"HTTP {resp.status_code}" + (f" {resp.text.strip()[:200]}" if resp.text.strip() else "")
    except requests.RequestException as exc:
        said = f"（发送失败：{type(exc).__name__}）"
    conn = redis_store.conn
    log_key = f"sandbox:wxpay:notify-log:{log_as}"
    conn.lpush(log_key, json.dumps({"at": rfc3339(), "answer": said}, ensure_ascii=False))
    conn.ltrim(log_key, 0, 19)
    conn.expire(log_key, TTL)
    return said


def pay_notification(trade: dict[str, Any], amount_total: int | None = None) -> str:
    return notification_body("TRANSACTION.SUCCESS", "支付成功", "transaction", transaction(trade, amount_total))


def notify_paid(trade: dict[str, Any]) -> str:
    return post_notification(trade["notify_url"], pay_notification(trade),
                             f"trade:{trade['mchid']}:{trade['out_trade_no']}")


def notify_log(trade: dict[str, Any]) -> list[dict[str, str]]:
    key = f"sandbox:wxpay:notify-log:trade:{trade['mchid']}:{trade['out_trade_no']}"
    return [json.loads(x) for x in redis_store.conn.lrange(key, 0, 9)]


# -- the cashier (WeChat's payment sheet) --------------------------------------------------------------

def same_site(url: str) -> bool:
    """Only back to this site: a path, or an absolute URL on this host."""
    if not url or any(c in url for c in "\\\r\n\t") or len(url) > 2000:
        return False
    parts = urlsplit(url)
    if not parts.scheme and not parts.netloc:
        return url.startswith("/") and not url.startswith("//")
    hosts = {request.host, urlsplit(current_app.config["SETTINGS"]["app"]["base_url"]).netloc}
    return parts.scheme in ("http", "https") and parts.netloc in hosts


def error_page(code: str, message: str, status: int = 400):
    return render_template("sandbox/wechatpay_error.html", code=code, message=message), status


def check_pay_sign(trade: dict[str, Any], args) -> str | None:
    """What the WeChat client checks before showing its sheet: the appId and
    the merchant's paySign over appId\\ntimeStamp\\nnonceStr\\npackage\\n."""
    app_id, stamp, nonce = args.get("appId", ""), args.get("timeStamp", ""), args.get("nonceStr", "")
    package, sign = args.get("package", ""), args.get("paySign", "")
    if app_id != trade["appid"]:
        return "appId 与下单时的 appid 不一致"
    if package != "prepay_id=" + trade["prepay_id"]:
        return "package 应为 prepay_id=<下单返回的 prepay_id>"
    if args.get("signType") != "RSA":
        return "signType 应为 RSA"
    if not stamp.isdigit() or not nonce or len(nonce) > 32:
        return "timeStamp 或 nonceStr 无效"
    if not rsa_verify(f"{app_id}\n{stamp}\n{nonce}\n{package}\n", sign, merchant_public_key()):
        return "支付验证签名失败（paySign 不是商户私钥对 appId、timeStamp、nonceStr、package 的签名）"
    return None


def cashier_trade(prepay_id: str) -> tuple[dict[str, Any] | None, Any]:
    trade = trade_by_prepay(prepay_id)
    if trade is None:
        return None, error_page("PREPAY_ID_INVALID", "prepay_id 无效或已过期（有效期 2 小时）", 404)
    return trade, None


def cashier_page(trade: dict[str, Any], back: str, message: str = "", ok: bool = False, status: int = 200):
    return render_template("sandbox/wechatpay_cashier.html", trade=trade, yuan=to_yuan(trade["total"]), back=back,
                           message=message, ok=ok, log=notify_log(trade)), status


@bp.get("/cashier")
def cashier():
    back = request.args.get("return", "")
    if not same_site(back):
        return error_page("INVALID_RETURN", "return 只能是本站地址")
    trade, page = cashier_trade(request.args.get("prepay_id", ""))
    if trade is None:
        return page
    problem = check_pay_sign(trade, request.args)
    if problem:
        return error_page("SIGN_ERROR", problem)
    if trade["trade_state"] in (SUCCESS, REFUND):
        return cashier_page(trade, back, "该订单已支付", ok=True)
    if trade["trade_state"] == CLOSED or expired(trade):
        return error_page("ORDER_CLOSED", "订单已关闭或已过期，不能支付")
    return cashier_page(trade, back)


def _posted() -> tuple[dict[str, Any] | None, str, Any]:
    back = request.form.get("return", "")
    if not same_site(back):
        return None, "", error_page("INVALID_RETURN", "return 只能是本站地址")
    trade, page = cashier_trade(request.form.get("prepay_id", ""))
    return trade, back, page


@bp.post("/cashier/pay")
def pay():
    trade, back, page = _posted()
    if trade is None:
        return page
    with lock(trade["mchid"], trade["out_trade_no"]):
        trade = load_trade(trade["mchid"], trade["out_trade_no"])
        if trade["trade_state"] in (SUCCESS, REFUND):  # a second tap: paid already, nothing is charged again
            return redirect(back, 303)
        if trade["trade_state"] == CLOSED or expired(trade):
            return error_page("ORDER_CLOSED", "订单已关闭或已过期，不能支付")
        trade["trade_state"], trade["success_time"] = SUCCESS, rfc3339()
        trade["transaction_id"] = new_id("4200", 18)
        save_trade(trade)
    said = notify_paid(trade)
    if said.startswith("HTTP 2"):
        return redirect(back, 303)
    return cashier_page(trade, back, f"已付款；商户对支付通知的回答：{said}（微信支付会在 24 小时内重试）")


@bp.post("/cashier/notify")
def resend():
    """WeChat Pay retries until it hears 2xx; here a person presses the button."""
    trade, back, page = _posted()
    if trade is None:
        return page
    if trade["trade_state"] not in (SUCCESS, REFUND):
        return cashier_page(trade, back, "订单尚未支付，没有可重发的通知")
    said = notify_paid(trade)
    return cashier_page(trade, back, f"已重发支付通知，商户回答：{said}", ok=said.startswith("HTTP 2"))


@bp.post("/cashier/forge")
def forge():
    """A paid-trade notification signed with a key that is not WeChat Pay's."""
    trade, back, page = _posted()
    if trade is None:
        return page
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    fake = {**trade, "trade_state": SUCCESS, "success_time": rfc3339(), "transaction_id": new_id("4200", 18)}
    said = post_notification(trade["notify_url"], pay_notification(fake),
                             f"trade:{trade['mchid']}:{trade['out_trade_no']}", stranger)
    return cashier_page(trade, back, f"已发送伪造签名的支付通知，商户回答：{said}", ok=said.startswith("HTTP 2"))


@bp.post("/cashier/tamper")
def tamper():
    """A paid-trade notification for another amount, correctly encrypted and
    signed: only the product's own amount check can refuse it."""
    trade, back, page = _posted()
    if trade is None:
        return page
    other = 1 if trade["total"] != 1 else trade["total"] + 100
    fake = {**trade, "trade_state": SUCCESS, "success_time": rfc3339(), "transaction_id": new_id("4200", 18)}
    said = post_notification(trade["notify_url"], pay_notification(fake, other),
                             f"trade:{trade['mchid']}:{trade['out_trade_no']}")
    return cashier_page(trade, back, f"已发送金额被改为 {to_yuan(other)} 元的支付通知（签名有效），商户回答：{said}",
                        ok=said.startswith("HTTP 2"))


# -- merchant transfer (商家转账, user-confirmation mode) ------------------------------------------
# POST /v3/fund-app/mch-transfer/transfer-bills creates a bill in
# WAIT_USER_CONFIRM with a package_info; the payee confirms it in WeChat
# (requestMerchantTransfer — here the /transfer-confirm sheet); the final
# state (SUCCESS, FAIL, CANCELLED) is notified as MCHTRANSFER.BILL.FINISHED.

OUT_BILL_NO = re.compile(r"[A-Za-z0-9]{5,32}", re.ASCII)
TRANSFER_MIN_FEN = 10            # 0.1 CNY
TRANSFER_NAME_FROM_FEN = 200_000  # from 2,000 CNY the payee's name is required
WAIT_USER_CONFIRM, TRANSFER_FINAL = "WAIT_USER_CONFIRM", ("SUCCESS", "FAIL", "CANCELLED")
CANCELING, CANCELLED = "CANCELING", "CANCELLED"
CONFIRM_WINDOW = timedelta(hours=24)  # a bill nobody confirmed is cancelled by WeChat Pay after this
# The report items each scene asks for (1000 现金营销, 1005 佣金报酬).
SCENE_REPORTS = {"1000": {"活动名称", "奖励说明"}, "1005": {"岗位类型", "报酬说明"}}
BILL_STATE_DESC = {WAIT_USER_CONFIRM: "待收款用户确认", "SUCCESS": "已到账", "FAIL": "转账失败",
                   CANCELING: "撤销中", CANCELLED: "已撤销"}


def _bill_key(mchid: str, out_bill_no: str) -> str:
    return f"sandbox:wxpay:bill:{mchid}:{out_bill_no}"


def load_bill(mchid: str, out_bill_no: str) -> dict[str, Any] | None:
    return _load(_bill_key(mchid, out_bill_no))


def save_bill(bill: dict[str, Any]) -> None:
    _save(_bill_key(bill["mchid"], bill["out_bill_no"]), bill)


def decrypt_name(ciphertext: Any) -> str | None:
    """user_name as WeChat Pay reads it: RSA-OAEP (SHA-1) under the WeChat
    Pay public key, decrypted with the platform private key."""
    if not isinstance(ciphertext, str) or not 1 <= len(ciphertext) <= 2048:
        return None
    try:
        plain = platform_key().decrypt(base64.b64decode(ciphertext, validate=True),
                                       padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA1()),
                                                    algorithm=hashes.SHA1(), label=None))
        name = plain.decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    return name if 1 <= len(name) <= 64 else None


def transfer_problem(data: dict[str, Any]) -> tuple[Response | None, str]:
    """(error answer, decrypted user_name)."""
    if data.get("appid") != conf()["appid"]:
        return error(400, "PARAM_ERROR" if not data.get("appid") else "APPID_MCHID_NOT_MATCH",
                     "appid 缺失或与 mchid 不匹配"), ""
    if not isinstance(data.get("out_bill_no"), str) or not OUT_BILL_NO.fullmatch(data["out_bill_no"]):
        return error(400, "PARAM_ERROR", "out_bill_no 应为 5 至 32 个字符，只能是数字和大小写字母"), ""
    scene = data.get("transfer_scene_id")
    if scene not in SCENE_REPORTS:
        return error(400, "PARAM_ERROR", "transfer_scene_id 无效或商户未开通该转账场景"), ""
    openid = data.get("openid")
    if not isinstance(openid, str) or not 1 <= len(openid) <= 128:
        return error(400, "PARAM_ERROR", "openid 必填"), ""
    amount = fen(data.get("transfer_amount"))
    if amount is None or amount < TRANSFER_MIN_FEN:
        return error(400, "PARAM_ERROR", "transfer_amount 应为整数（单位：分），且不少于 0.1 元"), ""
    remark = data.get("transfer_remark")
    if not isinstance(remark, str) or not 1 <= len(remark) <= 32:
        return error(400, "PARAM_ERROR", "transfer_remark 必填，不超过 32 个字符"), ""
    infos = data.get("transfer_scene_report_infos")
    if not isinstance(infos, list) or not all(isinstance(i, dict) and isinstance(i.get("info_type"), str)
                                              and isinstance(i.get("info_content"), str)
                                              and 1 <= len(i["info_content"]) <= 32 for i in infos):
        return error(400, "PARAM_ERROR", "transfer_scene_report_infos 应为 [{info_type, info_content}] 列表"), ""
    missing = SCENE_REPORTS[scene] - {i["info_type"] for i in infos}
    if missing:
        return error(400, "PARAM_ERROR", f"转账场景 {scene} 须报备：{'、'.join(sorted(missing))}"), ""
    if "notify_url" in data and not url_ok(data["notify_url"]):
        return error(400, "PARAM_ERROR", "notify_url 应为不带参数的 http(s) 地址"), ""
    name = ""
    if "user_name" in data:
        if request.headers.get("Wechatpay-Serial") != conf()["public_key_id"]:
            return error(400, "PARAM_ERROR", "加密了敏感信息，须在 Wechatpay-Serial 中写明所用微信支付公钥的 ID"), ""
        name = decrypt_name(data["user_name"]) or ""
        if not name:
            return error(400, "PARAM_ERROR", "user_name 解密失败：须用微信支付公钥以 RSA-OAEP 加密"), ""
    elif amount >= TRANSFER_NAME_FROM_FEN:
        return error(400, "PARAM_ERROR", "转账金额满 2000 元时 user_name 必填"), ""
    return None, name


def bill_content(data: dict[str, Any], name: str) -> dict[str, Any]:
    """What must match when the same out_bill_no is asked for again."""
    return {"appid": data["appid"], "scene": data["transfer_scene_id"], "openid": data["openid"],
            "amount": data["transfer_amount"], "remark": data["transfer_remark"], "user_name": name}


def bill_answer(bill: dict[str, Any]) -> dict[str, Any]:
    data = {"out_bill_no": bill["out_bill_no"], "transfer_bill_no": bill["transfer_bill_no"],
            "create_time": bill["create_time"], "state": bill["state"]}
    if bill["state"] == WAIT_USER_CONFIRM:
        data["package_info"] = bill["package_info"]
    return data


def bill_view(bill: dict[str, Any], amount: int | None = None) -> dict[str, Any]:
    """The bill as the query answers it (amount: a tampered one, for the forge buttons)."""
    data = {"mch_id": bill["mchid"], "out_bill_no": bill["out_bill_no"],
            "transfer_bill_no": bill["transfer_bill_no"], "appid": bill["appid"], "state": bill["state"],
            "transfer_amount": bill["amount"] if amount is None else amount, "transfer_remark": bill["remark"],
            "openid": bill["openid"], "create_time": bill["create_time"], "update_time": bill["update_time"]}
    if bill.get("fail_reason"):
        data["fail_reason"] = bill["fail_reason"]
    return data


@bp.post("/v3/fund-app/mch-transfer/transfer-bills")
def create_transfer_bill():
    mchid, data, problem = signed_json()
    if problem:
        return problem
    problem, name = transfer_problem(data)
    if problem:
        return problem
    out_bill_no = data["out_bill_no"]
    with lock(mchid, f"bill-{out_bill_no}"):
        bill = load_bill(mchid, out_bill_no)
        if bill is not None:
            if bill["content"] != bill_content(data, name):
                return error(400, "INVALID_REQUEST", "商户单号重复，且与之前的转账信息不一致")
            return answer(bill_answer(bill))
        created = rfc3339(clock.now())  # the product's clock: the try-out can move it past the 24 hours
        bill = {"mchid": mchid, "appid": data["appid"], "out_bill_no": out_bill_no,
                "transfer_bill_no": "1330" + f"{secrets.randbelow(10**36):036d}", "openid": data["openid"],
                "amount": data["transfer_amount"], "remark": data["transfer_remark"], "user_name": name,
                "scene": data["transfer_scene_id"], "reports": data["transfer_scene_report_infos"],
                "notify_url": data.get("notify_url", ""), "state": WAIT_USER_CONFIRM,
                "package_info": "ABBQO+oYAAABAAAAAAB" + base64.b64encode(secrets.token_bytes(48)).decode(),
                "content": bill_content(data, name), "fail_reason": "", "create_time": created,
                "update_time": created}
        save_bill(bill)
    return answer(bill_answer(bill))


@bp.get("/v3/fund-app/mch-transfer/transfer-bills/out-bill-no/<out_bill_no>")
def query_transfer_bill(out_bill_no: str):
    mchid, problem = authenticated_mchid()
    if problem:
        return problem
    bill = load_bill(mchid, out_bill_no) if OUT_BILL_NO.fullmatch(out_bill_no) else None
    if bill is None:
        return error(404, "NOT_FOUND", "记录不存在")
    return answer(bill_view(lapse_if_due(bill)))


def lapse_if_due(bill: dict[str, Any]) -> dict[str, Any]:
    """WeChat Pay cancels a bill left unconfirmed for 24 hours. The sandbox
    does it when the bill is next looked at (queried, opened, cancelled),
    by the product's clock (handlers.clock.now: the try-out can move it
    forward), and then notifies like any other finish."""
    created = parse_rfc3339(bill.get("create_time"))
    if bill["state"] != WAIT_USER_CONFIRM or created is None or clock.now() - created < CONFIRM_WINDOW:
        return bill
    with lock(bill["mchid"], f"bill-{bill['out_bill_no']}"):
        bill = load_bill(bill["mchid"], bill["out_bill_no"])
        if bill["state"] != WAIT_USER_CONFIRM:
            return bill
        bill["state"], bill["fail_reason"], bill["update_time"] = CANCELLED, "", rfc3339(clock.now())
        save_bill(bill)
    schedule_transfer_notice(bill["mchid"], bill["out_bill_no"])
    return bill


@bp.post("/v3/fund-app/mch-transfer/transfer-bills/out-bill-no/<out_bill_no>/cancel")
def cancel_transfer_bill(out_bill_no: str):
    """撤销转账: before the payee confirms, the merchant takes the bill back.
    The answer is CANCELING (the request is taken); a moment later the bill
    is CANCELLED and MCHTRANSFER.BILL.FINISHED is sent. Asking again answers
    the bill's state; a bill already confirmed or failed cannot be cancelled."""
    mchid, problem = authenticated_mchid()
    if problem:
        return problem
    bill = load_bill(mchid, out_bill_no) if OUT_BILL_NO.fullmatch(out_bill_no) else None
    if bill is None:
        return error(404, "NOT_FOUND", "记录不存在")
    bill = lapse_if_due(bill)
    with lock(mchid, f"bill-{out_bill_no}"):
        bill = load_bill(mchid, out_bill_no)
        if bill["state"] in ("SUCCESS", "FAIL"):
            return error(400, "INVALID_REQUEST", f"转账单据状态为 {bill['state']}，不允许撤销")
        fresh = bill["state"] == WAIT_USER_CONFIRM
        if fresh:
            bill["state"], bill["update_time"] = CANCELING, rfc3339(clock.now())
            save_bill(bill)
    if fresh:
        schedule_transfer_notice(mchid, out_bill_no)
    return answer({"out_bill_no": out_bill_no, "transfer_bill_no": bill["transfer_bill_no"],
                   "state": bill["state"], "update_time": bill["update_time"]})


def schedule_transfer_notice(mchid: str, out_bill_no: str) -> None:
    """WeChat Pay finishes a cancellation a moment after answering, then
    notifies: a queued job (on RQ with Redis, inline without) does both."""
    from handlers.outbox import enqueue

    enqueue("sandbox.wechatpay.finish_bill", mchid, out_bill_no,
            job_id=f"sandbox-wxpay-bill-{mchid}-{out_bill_no}")


def finish_bill(mchid: str, out_bill_no: str) -> str:
    """The job: a CANCELING bill becomes CANCELLED; the final state is
    notified to the merchant, whose answer is returned (and logged)."""
    with lock(mchid, f"bill-{out_bill_no}"):
        bill = load_bill(mchid, out_bill_no)
        if bill is None:
            return "unknown bill"
        if bill["state"] == CANCELING:
            bill["state"], bill["update_time"] = CANCELLED, rfc3339(clock.now())
            save_bill(bill)
    if bill["state"] not in TRANSFER_FINAL:
        return f"bill {bill['state']}"
    return notify_transfer(bill)


def transfer_notification(bill: dict[str, Any], amount: int | None = None, mchid: str | None = None) -> str:
    resource = {"mchid": mchid or bill["mchid"], "out_bill_no": bill["out_bill_no"],
                "transfer_bill_no": bill["transfer_bill_no"], "state": bill["state"],
                "transfer_amount": bill["amount"] if amount is None else amount, "openid": bill["openid"],
                "create_time": bill["create_time"], "update_time": bill["update_time"]}
    if bill.get("fail_reason"):
        resource["fail_reason"] = bill["fail_reason"]
    return notification_body("MCHTRANSFER.BILL.FINISHED", "商家转账单据终态通知", "mch_payment", resource)


def notify_transfer(bill: dict[str, Any]) -> str:
    return post_notification(bill["notify_url"], transfer_notification(bill),
                             f"bill:{bill['mchid']}:{bill['out_bill_no']}")


def bill_log(bill: dict[str, Any]) -> list[dict[str, str]]:
    key = f"sandbox:wxpay:notify-log:bill:{bill['mchid']}:{bill['out_bill_no']}"
    return [json.loads(x) for x in redis_store.conn.lrange(key, 0, 9)]


# -- the payee's 确认收款 sheet (requestMerchantTransfer) ------------------------------------------

def transfer_page(bill: dict[str, Any], back: str, message: str = "", ok: bool = False, status: int = 200):
    return render_template("sandbox/wechatpay_transfer.html", bill=bill, yuan=to_yuan(bill["amount"]), back=back,
                           desc=BILL_STATE_DESC.get(bill["state"], bill["state"]), message=message, ok=ok,
                           log=bill_log(bill)), status


def _bill_of(args) -> tuple[dict[str, Any] | None, str, Any]:
    back = args.get("back", "")
    if not same_site(back):
        return None, "", error_page("INVALID_RETURN", "back 只能是本站地址")
    out_bill_no = args.get("out_bill_no", "")
    bill = load_bill(conf()["mchid"], out_bill_no) if OUT_BILL_NO.fullmatch(out_bill_no) else None
    if bill is None:
        return None, back, error_page("NOT_FOUND", "转账单不存在或已过期", 404)
    return bill, back, None


@bp.get("/transfer-confirm")
def transfer_confirm():
    """What WeChat shows on requestMerchantTransfer: the amount, the remark,
    and 确认收款."""
    bill, back, page = _bill_of(request.args)
    if bill is None:
        return page
    return transfer_page(lapse_if_due(bill), back)


# The three ways a bill in WAIT_USER_CONFIRM ends from the payee's sheet.
ENDINGS = {"accept": ("SUCCESS", ""), "cancel": ("CANCELLED", ""), "fail": ("FAIL", "PAYEE_ACCOUNT_ABNORMAL")}


@bp.post("/transfer-confirm/<action>")
def transfer_decide(action: str):
    if action not in ENDINGS:
        abort(404)
    bill, back, page = _bill_of(request.form)
    if bill is None:
        return page
    state, fail_reason = ENDINGS[action]
    lapse_if_due(bill)  # 24 hours gone: too late to confirm
    with lock(bill["mchid"], f"bill-{bill['out_bill_no']}"):
        bill = load_bill(bill["mchid"], bill["out_bill_no"])
        if bill["state"] != WAIT_USER_CONFIRM:  # a second tap: ended already, nothing moves twice
            return transfer_page(bill, back, f"该转账已结束（{BILL_STATE_DESC.get(bill['state'])}）", ok=True)
        bill["state"], bill["fail_reason"], bill["update_time"] = state, fail_reason, rfc3339()
        save_bill(bill)
    said = notify_transfer(bill)
    if said.startswith("HTTP 2"):
        return redirect(back, 303)
    return transfer_page(bill, back, f"{BILL_STATE_DESC[state]}；商户对通知的回答：{said}（微信支付会重试）")


@bp.post("/transfer-confirm/notify")
def transfer_resend():
    """WeChat Pay retries until it hears 2xx; here a person presses the button."""
    bill, back, page = _bill_of(request.form)
    if bill is None:
        return page
    if bill["state"] not in TRANSFER_FINAL:
        return transfer_page(bill, back, "转账尚未结束，没有可重发的通知")
    said = notify_transfer(bill)
    return transfer_page(bill, back, f"已重发通知，商户回答：{said}", ok=said.startswith("HTTP 2"))


# -- the trade bill (交易账单) ---------------------------------------------------------------------
# GET /v3/bill/tradebill?bill_date=…&bill_type=ALL|SUCCESS|REFUND[&tar_type=GZIP] answers
# {hash_type SHA1, hash_value, download_url}; GET download_url (merchant-signed,
# answer not signed) gives the CSV (gzipped when asked): a header line, one row
# per payment and per refund of the day, each field prefixed with a backquote,
# then the summary's header and its line. Built from the sandbox's own trades
# and refunds: a payment on the day of its success_time, a refund on the day
# of its create_time. The sandbox also serves today's bill so far (WeChat Pay
# serves a day's bill from 10:00 the next day).

BILL_HEADER = ("交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,"
               "货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,"
               "商户数据包,手续费,费率,订单金额,申请退款金额,费率备注")
BILL_SUMMARY_HEADER = "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额"
BILL_TYPES = ("ALL", "SUCCESS", "REFUND")
BILL_FILE_TTL = 30  # seconds a download_url works
FEE_PER_MILLE = 6   # 0.60%


def _scan(prefix: str) -> list[dict[str, Any]]:
    conn = redis_store.conn
    found = []
    for key in conn.scan_iter(match=prefix + "*", count=500):
        raw = conn.get(key)
        if raw:
            found.append(json.loads(raw))
    return found


def _day_of(stamp: Any) -> str:
    at = parse_rfc3339(stamp)
    return at.astimezone(BEIJING).strftime("%Y-%m-%d") if at else ""


def _bill_time(stamp: str) -> str:
    return parse_rfc3339(stamp).astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S")


def _fee(fen_: int) -> int:
    return (fen_ * FEE_PER_MILLE + 500) // 1000


def bill_rows(mchid: str, day: str, bill_type: str = "ALL") -> list[list[str]]:
    """The day's rows, oldest first: paid trades (SUCCESS, or whatever
    ``trade_state`` a test wrote into a paid trade) and refunds."""
    rows: list[tuple[str, list[str]]] = []
    if bill_type in ("ALL", "SUCCESS"):
        for t in _scan(f"sandbox:wxpay:trade:{mchid}:"):
            if not t.get("success_time") or _day_of(t["success_time"]) != day:
                continue
            state = SUCCESS if t["trade_state"] in (SUCCESS, REFUND) else t["trade_state"]
            total = to_yuan(t["total"])
            rows.append((t["success_time"], [
                _bill_time(t["success_time"]), t["appid"], mchid, "0", "", t["transaction_id"], t["out_trade_no"],
                t["openid"], "JSAPI", state, "OTHERS", "CNY", total, "0.00", "0", "0", "0.00", "0.00", "", "",
                t["description"], t.get("attach", ""), to_yuan(_fee(t["total"])), "0.60%", total, "0.00", ""]))
    if bill_type in ("ALL", "REFUND"):
        trades = {t["out_trade_no"]: t for t in _scan(f"sandbox:wxpay:trade:{mchid}:")}
        for r in _scan(f"sandbox:wxpay:refund:{mchid}:"):
            if _day_of(r.get("create_time")) != day:
                continue
            trade = trades.get(r["out_trade_no"], {})
            rows.append((r["create_time"], [
                _bill_time(r["create_time"]), trade.get("appid", conf()["appid"]), mchid, "0", "",
                r["transaction_id"], r["out_trade_no"], trade.get("openid", ""), "JSAPI", REFUND, "OTHERS", "CNY",
                "0.00", "0.00", r["refund_id"], r["out_refund_no"], to_yuan(r["refund"]), "0.00", "ORIGINAL",
                r["status"], trade.get("description", ""), trade.get("attach", ""), "-" + to_yuan(_fee(r["refund"])),
                "0.60%", "0.00", to_yuan(r["refund"]), ""]))
    rows.sort(key=lambda pair: pair[0])
    return [row for _, row in rows]


def bill_text(rows: list[list[str]]) -> str:
    """The CSV as WeChat Pay writes it: every value after a backquote."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    out.write(BILL_HEADER + "\r\n")
    for row in rows:
        writer.writerow(["`" + value for value in row])
    paid = [r for r in rows if r[9] != REFUND]
    refunds = [r for r in rows if r[9] == REFUND]

    def total(values: list[str]) -> int:
        return sum(int(v.lstrip("-").replace(".", "")) * (-1 if v.startswith("-") else 1) for v in values)

    out.write(BILL_SUMMARY_HEADER + "\r\n")
    writer.writerow(["`" + v for v in (
        str(len(rows)), to_yuan(total([r[12] for r in paid])), to_yuan(total([r[16] for r in refunds])), "0.00",
        to_yuan(max(0, total([r[22] for r in rows]))), to_yuan(total([r[24] for r in paid])),
        to_yuan(total([r[25] for r in refunds])))])
    return out.getvalue()


@bp.get("/v3/bill/tradebill")
def trade_bill():
    mchid, problem = authenticated_mchid()
    if problem:
        return problem
    bill_date, bill_type = request.args.get("bill_date", ""), request.args.get("bill_type", "ALL")
    tar_type = request.args.get("tar_type", "")
    try:
        day = datetime.strptime(bill_date, "%Y-%m-%d").date() if re.fullmatch(r"\d{4}-\d\d-\d\d", bill_date) \
            else None
    except ValueError:
        day = None
    if day is None:
        return error(400, "PARAM_ERROR", "bill_date 格式应为 YYYY-MM-DD")
    if bill_type not in BILL_TYPES or tar_type not in ("", "GZIP"):
        return error(400, "PARAM_ERROR", "bill_type 只能是 ALL、SUCCESS 或 REFUND，tar_type 只能是 GZIP")
    if day > clock.now().astimezone(BEIJING).date():
        return error(400, "PARAM_ERROR", "bill_date 不能晚于今天")
    rows = bill_rows(mchid, bill_date, bill_type)
    if not rows:
        return error(400, "NO_STATEMENT_EXIST", "账单文件不存在")
    text = bill_text(rows).encode("utf-8")
    token = secrets.token_urlsafe(24)
    redis_store.conn.set(f"sandbox:wxpay:billfile:{token}",
                         json.dumps({"mchid": mchid, "gzip": tar_type == "GZIP", "text": text.decode()}),
                         ex=BILL_FILE_TTL)
    return answer({"hash_type": "SHA1", "hash_value": hashlib.sha1(text).hexdigest(),
                   "download_url": f"{conf()['api_base'].rstrip('/')}/v3/billdownload/file?token={token}"})


@bp.get("/v3/billdownload/file")
def download_bill():
    mchid, problem = authenticated_mchid()
    if problem:
        return problem
    token = request.args.get("token", "")
    found = _load(f"sandbox:wxpay:billfile:{token}") if re.fullmatch(r"[A-Za-z0-9_-]{16,64}", token) else None
    if found is None or found["mchid"] != mchid:
        return error(400, "INVALID_REQUEST", "下载链接无效或已过期（有效期 30 秒）")
    body = found["text"].encode("utf-8")
    if found["gzip"]:
        body = gzip.compress(body)
    return Response(body, 200, content_type="application/octet-stream")
