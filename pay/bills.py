"""The gateways' daily bills, downloaded and read into rows
(handlers.reconcile compares them with our records).

- WeChat Pay v3: ``GET /v3/bill/tradebill?bill_date&bill_type=ALL&tar_type=GZIP``
  → ``{hash_type SHA1, hash_value, download_url}``; the file at download_url
  (merchant-signed request, unsigned answer) is a gzipped CSV: a header line,
  one row per payment and per refund (trade state REFUND), every value after a
  backquote, then a summary. The SHA1 of the unzipped text must match.
  A day without any trade is ``NO_STATEMENT_EXIST``: an empty bill.
- Alipay: ``alipay.data.dataservice.bill.downloadurl.query`` (python-alipay-sdk
  has no method for it: the SDK's own build_body and verified_sync_response
  sign and verify it) → bill_download_url, a ZIP of GBK CSV files; the
  业务明细 file has one line per payment (业务类型 交易) and refund (退款).
- Transfers: the trade bill does not list merchant transfers, so each
  withdrawal's bill is asked for with the transfer query API.
"""
from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import zipfile
from dataclasses import dataclass
from datetime import date

import requests

from .alipay import AlipayError, AlipayGateway, yuan_to_fen
from .wechatpay import TransferBill, WeChatPayError, WeChatPayGateway

ALIPAY_BILL_METHOD = "alipay.data.dataservice.bill.downloadurl.query"
DOWNLOAD_TIMEOUT = (5, 60)
MAX_BILL_BYTES = 64 * 1024 * 1024


class BillError(Exception):
    """The bill could not be had or read; the message is for the staff page."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.message} {self.detail}".strip()


@dataclass(frozen=True)
class BillRow:
    kind: str          # trade | refund
    ref: str           # out_trade_no of a trade, out_refund_no of a refund
    out_trade_no: str
    gateway_id: str    # the gateway's transaction (or refund) id
    amount_fen: int
    state: str         # trades: SUCCESS or what the bill says; refunds: SUCCESS, PROCESSING, ABNORMAL, CLOSED


def _fen(text: str) -> int:
    """A bill's yuan amount ("19.90", "-19.90") as positive fen."""
    text = text.strip().lstrip("`").strip()
    return yuan_to_fen(text.removeprefix("-"))


# -- WeChat Pay ------------------------------------------------------------------------------

WECHAT_COLUMNS = {"微信订单号", "商户订单号", "交易状态", "订单金额", "微信退款单号", "商户退款单号", "退款金额", "退款状态"}


def _wechat_failed(exc: WeChatPayError) -> BillError:
    said = exc.message if exc.message.startswith("微信支付") else f"微信支付：{exc.message}"
    return BillError(said, f"{exc.code} {exc.detail}")


def parse_wechatpay(text: str) -> list[BillRow]:
    """Rows of a WeChat Pay ALL trade bill; raises BillError on anything
    that is not one."""
    lines = [line for line in text.replace("\r\n", "\n").split("\n") if line.strip()]
    if not lines:
        raise BillError("微信支付账单为空文件")
    header = next(csv.reader([lines[0].lstrip("\ufeff")]))
    if not WECHAT_COLUMNS <= set(header):
        raise BillError("微信支付账单格式无法识别（表头不对）", lines[0][:120])
    at = {name: header.index(name) for name in WECHAT_COLUMNS}
    rows = []
    for number, values in enumerate(csv.reader(lines[1:]), 2):
        if values and values[0].startswith("总交易单数"):
            break  # the summary
        if len(values) != len(header) or not all(v.startswith("`") for v in values):
            raise BillError(f"微信支付账单第 {number} 行格式无法识别", ",".join(values)[:120])
        get = {name: values[i][1:].strip() for name, i in at.items()}
        try:
            if get["交易状态"] == "REFUND":
                rows.append(BillRow("refund", get["商户退款单号"], get["商户订单号"], get["微信退款单号"],
                                    _fen(get["退款金额"]), get["退款状态"]))
            else:
                rows.append(BillRow("trade", get["商户订单号"], get["商户订单号"], get["微信订单号"],
                                    _fen(get["订单金额"]), get["交易状态"]))
        except ValueError as exc:
            raise BillError(f"微信支付账单第 {number} 行金额无法识别", str(exc)) from exc
        if not rows[-1].ref:
            raise BillError(f"微信支付账单第 {number} 行缺少单号")
    return rows


def wechatpay_bill(day: date) -> list[BillRow]:
    try:
        gw = WeChatPayGateway.from_settings()
        code, text = gw._call("tradebill", gw.client.trade_bill, bill_date=day.isoformat(), bill_type="ALL",
                              tar_type="GZIP")
    except WeChatPayError as exc:
        raise _wechat_failed(exc) from exc
    if code != 200:
        try:
            data = json.loads(text)
        except (TypeError, ValueError):
            data = {}
        data = data if isinstance(data, dict) else {}
        if data.get("code") == "NO_STATEMENT_EXIST":
            return []  # no payment or refund that day
        raise BillError(f"微信支付拒绝下载账单：{str(data.get('message') or f'HTTP {code}')[:200]}",
                        str(data.get("code", ""))[:64])
    try:
        data = json.loads(text)
        url, hash_type, hash_value = data["download_url"], data["hash_type"], data["hash_value"]
    except (TypeError, ValueError, KeyError) as exc:
        raise BillError("微信支付账单地址无法识别", str(text)[:200]) from exc
    if not isinstance(url, str) or hash_type != "SHA1" or not isinstance(hash_value, str):
        raise BillError("微信支付账单地址无法识别", str(text)[:200])
    try:
        code, body = gw._call("billdownload", gw.client.download_bill, url)
    except WeChatPayError as exc:
        raise _wechat_failed(exc) from exc
    if code != 200 or not isinstance(body, bytes):
        raise BillError(f"微信支付账单下载失败（HTTP {code}）", str(body)[:200])
    try:
        raw = gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body
    except (OSError, EOFError) as exc:
        raise BillError("微信支付账单文件损坏（无法解压）") from exc
    if hashlib.sha1(raw).hexdigest().lower() != hash_value.lower():
        raise BillError("微信支付账单文件不完整（SHA1 校验不符）")
    try:
        return parse_wechatpay(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise BillError("微信支付账单不是 UTF-8 文本") from exc


def wechatpay_transfer(out_bill_no: str) -> TransferBill | None:
    try:
        return WeChatPayGateway.from_settings().query_transfer(out_bill_no)
    except WeChatPayError as exc:
        raise _wechat_failed(exc) from exc


def wechatpay_configured(settings) -> bool:
    return bool(settings["wechatpay"]["mchid"])


# -- Alipay ------------------------------------------------------------------------------------

ALIPAY_COLUMNS = {"支付宝交易号", "商户订单号", "业务类型", "订单金额（元）", "退款批次号/请求号"}


def parse_alipay(data: bytes) -> list[BillRow]:
    """Rows of an Alipay trade bill ZIP (its 业务明细 file, GBK CSV)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = [n for n in archive.namelist() if n.endswith(".csv") and "汇总" not in n]
            if len(names) != 1:
                raise BillError("支付宝账单压缩包里没有业务明细文件", ", ".join(archive.namelist())[:200])
            raw = archive.read(names[0])
    except (zipfile.BadZipFile, OSError, KeyError) as exc:
        raise BillError("支付宝账单文件损坏（不是 ZIP）") from exc
    try:
        text = raw.decode("gbk")
    except UnicodeDecodeError as exc:
        raise BillError("支付宝账单不是 GBK 文本") from exc
    lines = [line for line in text.replace("\r\n", "\n").split("\n") if line.strip() and not line.startswith("#")]
    if not lines:
        raise BillError("支付宝账单没有表头")
    header = [h.strip() for h in next(csv.reader([lines[0]]))]
    if not ALIPAY_COLUMNS <= set(header):
        raise BillError("支付宝账单格式无法识别（表头不对）", lines[0][:120])
    at = {name: header.index(name) for name in ALIPAY_COLUMNS}
    rows = []
    for number, values in enumerate(csv.reader(lines[1:]), 2):
        if len(values) < len(header):
            raise BillError(f"支付宝账单第 {number} 行格式无法识别", ",".join(values)[:120])
        get = {name: values[i].strip() for name, i in at.items()}
        try:
            amount = _fen(get["订单金额（元）"])
        except ValueError as exc:
            raise BillError(f"支付宝账单第 {number} 行金额无法识别", str(exc)) from exc
        if get["业务类型"] == "交易":
            rows.append(BillRow("trade", get["商户订单号"], get["商户订单号"], get["支付宝交易号"], amount, "SUCCESS"))
        elif get["业务类型"] == "退款":
            ref = get["退款批次号/请求号"] or get["支付宝交易号"]  # no out_request_no: Alipay uses the trade_no
            rows.append(BillRow("refund", ref, get["商户订单号"], get["支付宝交易号"], amount, "SUCCESS"))
        else:
            continue  # other business types (e.g. 收费) are not ours to compare
        if not rows[-1].ref:
            raise BillError(f"支付宝账单第 {number} 行缺少单号")
    return rows


def alipay_bill(day: date) -> list[BillRow]:
    try:
        gw = AlipayGateway.from_settings()
    except AlipayError as exc:
        raise BillError("支付宝未配置", str(exc)) from exc
    client = gw.client
    body = client.build_body(ALIPAY_BILL_METHOD, {"bill_type": "trade", "bill_date": day.isoformat()})
    try:
        resp = gw._call("verified_sync_response", data=body,
                        response_type=ALIPAY_BILL_METHOD.replace(".", "_") + "_response")
    except AlipayError as exc:
        raise BillError("支付宝暂时无法下载账单", str(exc)[:300]) from exc
    if resp.get("code") != "10000":
        raise BillError(f"支付宝拒绝下载账单：{str(resp.get('sub_msg') or resp.get('msg') or '')[:200]}",
                        str(resp.get("sub_code", ""))[:64])
    url = resp.get("bill_download_url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise BillError("支付宝账单地址无法识别", json.dumps(resp, ensure_ascii=False)[:200])
    try:
        got = requests.get(url, timeout=DOWNLOAD_TIMEOUT)
    except requests.RequestException as exc:
        raise BillError("支付宝账单下载失败", repr(exc)[:200]) from exc
    if got.status_code != 200 or len(got.content) > MAX_BILL_BYTES:
        raise BillError(f"支付宝账单下载失败（HTTP {got.status_code}）")
    return parse_alipay(got.content)


def alipay_configured(settings) -> bool:
    return bool(settings["alipay"]["app_id"])
