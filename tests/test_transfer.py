"""Paying a withdrawal through WeChat Pay's merchant transfer (商家转账, the
2025 user-confirmation flow), end to end over real HTTP: the merchant's CLI
starts the transfer, a job creates the bill on the sandbox gateway with the
product's wechatpayv3 (signed requests, signed answers, the payee's name
RSA-encrypted from 2,000 CNY), the distributor confirms on the sandbox's
确认收款 sheet, and the signed, encrypted MCHTRANSFER.BILL.FINISHED
notification pays the withdrawal — or returns the money. Forged, tampered,
misaddressed and unknown notifications change nothing."""
from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from html import unescape
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import func, select
from wechatpayv3.type import RequestType

from distribution_helpers import make_distributor
from handlers import audit, commissions, outbox, payments, withdrawals
from handlers.errors import Conflict
from models import Distributor, Notification, Withdrawal, db
from pay.wechatpay import TRANSFER_NOTIFY_PATH, TransferRefused, WeChatPayGateway
from sandbox import wechatpay as sandbox_wx
from test_h5_auth import log_in
from test_ledger import T0, complete, customer_of, paid_order, product

SANDBOX = "/sandbox/pay/wechatpay"
BILLS = "/v3/fund-app/mch-transfer/transfer-bills"
_POST = RequestType.POST


# -- helpers -----------------------------------------------------------------------

@pytest.fixture
def gw(app) -> WeChatPayGateway:
    return WeChatPayGateway.from_settings()


@pytest.fixture
def rich(app, sandbox_user):
    """A distributor (a real sandbox WeChat user) with withdrawable money:
    10% of a paid, completed and settled order of a customer of theirs."""
    from datetime import timedelta

    def make(price_fen: int = 100000) -> Distributor:
        who = sandbox_user("小钱")
        d = make_distributor("小钱", openid=who.openid)
        order = paid_order(customer_of(d), {product(price_fen).id: 1}, at=T0 - timedelta(days=60))
        complete(order, T0 - timedelta(days=60))
        commissions.sweep()
        outbox.commit()
        assert balance(d) == (price_fen // 10, 0, 0)
        return d

    return make


@pytest.fixture
def browser(base):
    opened = []

    def make(d: Distributor) -> requests.Session:
        b = requests.Session()
        opened.append(b)
        assert log_in(b, base, d.user.openid).status_code == 302
        return b

    yield make
    for b in opened:
        b.close()


def balance(d: Distributor) -> tuple[int, int, int]:
    """(withdrawable, reserved, withdrawn) as committed."""
    db.session.rollback()
    b = commissions.balance_of(d.id)
    return b.withdrawable_fen, b.reserved_fen, b.withdrawn_fen


def fresh(withdrawal_id: int) -> Withdrawal:
    db.session.rollback()
    return db.session.get(Withdrawal, withdrawal_id)


def ask(d: Distributor, amount_fen: int) -> Withdrawal:
    w = withdrawals.request_withdrawal(d, amount_fen, withdrawals.new_request_key())
    outbox.commit()
    return w


def cli(app, *args: str):
    return app.test_cli_runner().invoke(args=["withdrawals", *args])


def transfer(app, jobs, withdrawal_id: int) -> Withdrawal:
    """The merchant pays by transfer; the background job creates the bill."""
    result = cli(app, "transfer", str(withdrawal_id))
    assert result.exit_code == 0, result.output
    jobs.run()
    return fresh(withdrawal_id)


def bill_of(settings, w: Withdrawal) -> dict:
    return sandbox_wx.load_bill(settings["wechatpay"]["mchid"], w.out_bill_no)


def notices_of(d: Distributor, kind: str) -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(Notification).where(
        Notification.user_id == d.user_id, Notification.kind == kind))


def verdicts(key: str) -> list[str]:
    db.session.rollback()
    return [n.verdict for n in payments.notices(key) if n.kind == "transfer"]


def hidden_form(html: str) -> dict[str, str]:
    return {name: unescape(value) for name, value in
            re.findall(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)">', html)[:2]}


def open_sheet(b: requests.Session, base: str, w: Withdrawal) -> requests.Response:
    """From /h5/withdraw: 确认收款 → our confirm page → WeChat's (sandbox) sheet."""
    page = b.get(f"{base}/h5/withdraw")
    assert page.status_code == 200
    confirm = f"/h5/withdrawals/{w.id}/confirm"
    assert f'href="{confirm}"' in page.text and "确认收款" in page.text
    mine = b.get(base + confirm)
    assert mine.status_code == 200 and "商家向你转账" in mine.text
    href = unescape(re.search(r'id="confirm" href="([^"]+)"', mine.text).group(1))
    parts = urlsplit(href)
    assert parts.path == f"{SANDBOX}/transfer-confirm"
    args = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert args == {"out_bill_no": w.out_bill_no, "back": "/h5/withdraw"}
    sheet = b.get(base + href if href.startswith("/") else href)
    assert sheet.status_code == 200
    return sheet


def press(b: requests.Session, base: str, sheet: requests.Response, action: str) -> requests.Response:
    return b.post(f"{base}{SANDBOX}/transfer-confirm/{action}", data=hidden_form(sheet.text), timeout=60)


def note(bill: dict, key: rsa.RSAPrivateKey | None = None, amount: int | None = None, mchid: str | None = None,
         **header_over) -> tuple[dict[str, str], bytes]:
    body = sandbox_wx.transfer_notification(bill, amount, mchid)
    return {"Content-Type": "application/json", **sandbox_wx.signed_headers(body, key), **header_over}, body.encode()


def post(base: str, n: tuple[dict[str, str], bytes]) -> requests.Response:
    headers, body = n
    return requests.post(base + TRANSFER_NOTIFY_PATH, data=body, headers=headers, timeout=30)


def assert_refused(resp: requests.Response, status: int | None = None) -> None:
    assert 400 <= resp.status_code < 500, (resp.status_code, resp.text)
    if status:
        assert resp.status_code == status, resp.text
    assert resp.json()["code"] == "FAIL" and resp.json()["message"]


@pytest.fixture
def waiting(rich, app, jobs, settings):
    """A ¥30.00 withdrawal whose transfer bill waits for the distributor."""
    d = rich()
    w = transfer(app, jobs, ask(d, 3000).id)
    assert w.status == "transferring" and w.package_info
    return d, w


# -- the whole way ---------------------------------------------------------------------------

def test_the_distributor_confirms_and_is_paid(rich, app, jobs, settings, base, browser):
    d = rich()
    b = browser(d)
    form = b.get(f"{base}/h5/withdraw")
    fields = dict(re.findall(r'name="(csrf_token|request_key)" value="([^"]+)"', form.text))
    asked = b.post(f"{base}/h5/withdraw", data={**fields, "amount": "30.00"})
    assert asked.status_code == 200 and "审核中" in asked.text
    assert balance(d) == (7000, 3000, 0)
    w = db.session.scalars(select(Withdrawal).where(Withdrawal.distributor_id == d.id)).one()

    result = cli(app, "transfer", str(w.id))
    assert result.exit_code == 0, result.output
    jobs.run()
    w = fresh(w.id)
    assert (w.status, w.method) == ("transferring", "wechat_transfer")
    assert re.fullmatch(r"[A-Za-z0-9]{5,32}", w.out_bill_no)
    bill = bill_of(settings, w)
    # What the sandbox gateway received, after checking the merchant's signature.
    assert bill["state"] == "WAIT_USER_CONFIRM" and w.package_info == bill["package_info"]
    assert (bill["openid"], bill["amount"], bill["remark"], bill["scene"]) == (d.user.openid, 3000, "佣金提现", "1005")
    assert {i["info_type"] for i in bill["reports"]} == {"岗位类型", "报酬说明"}
    assert bill["notify_url"] == base + TRANSFER_NOTIFY_PATH and bill["user_name"] == ""
    assert balance(d) == (7000, 3000, 0)

    sheet = open_sheet(b, base, w)
    assert "¥</small>30.00" in sheet.text and "佣金提现" in sheet.text
    done = press(b, base, sheet, "accept")
    assert done.status_code == 200 and urlsplit(done.url).path == "/h5/withdraw", done.text[:300]
    assert "已到账" in done.text
    w = fresh(w.id)
    assert w.status == "paid" and w.decided_at is not None
    assert balance(d) == (7000, 0, 3000)
    assert notices_of(d, "withdrawal_paid") == 1
    assert verdicts(w.out_bill_no) == ["accepted"]
    assert bill_of(settings, w)["state"] == "SUCCESS"
    # The merchant asking again changes nothing.
    again = cli(app, "transfer", str(w.id))
    assert again.exit_code != 0
    assert balance(d) == (7000, 0, 3000)


@pytest.mark.parametrize("action,reason", [("cancel", "用户未确认收款"), ("fail", "收款账户异常")])
def test_cancelled_or_failed_transfers_return_the_money(waiting, base, browser, settings, action, reason):
    d, w = waiting
    b = browser(d)
    assert balance(d) == (7000, 3000, 0)
    done = press(b, base, open_sheet(b, base, w), action)
    assert urlsplit(done.url).path == "/h5/withdraw" and "未成功" in done.text and reason in done.text
    w = fresh(w.id)
    assert w.status == "failed" and reason in w.reason
    assert balance(d) == (10000, 0, 0)
    assert notices_of(d, "withdrawal_rejected") == 1 and notices_of(d, "withdrawal_paid") == 0
    # The money can be asked for again.
    assert ask(d, 10000).status == "requested"


def test_the_sheet_cannot_be_pressed_twice(waiting, base, browser, settings):
    d, w = waiting
    b = browser(d)
    sheet = open_sheet(b, base, w)
    assert press(b, base, sheet, "accept").status_code == 200
    second = press(b, base, sheet, "fail")  # the stale sheet, tapped again
    assert second.status_code == 200 and "已结束" in second.text
    assert fresh(w.id).status == "paid" and balance(d) == (7000, 0, 3000)
    assert bill_of(settings, w)["state"] == "SUCCESS"


def test_the_sandbox_sheet_refuses_other_sites_and_unknown_bills(waiting, base):
    _, w = waiting
    url = f"{base}{SANDBOX}/transfer-confirm"
    for back in ("https://evil.example/", "//evil.example/x", "javascript:alert(1)"):
        page = requests.get(url, params={"out_bill_no": w.out_bill_no, "back": back}, timeout=10)
        assert page.status_code == 400 and "INVALID_RETURN" in page.text
    page = requests.get(url, params={"out_bill_no": "NOSUCHBILL1", "back": "/h5/withdraw"}, timeout=10)
    assert page.status_code == 404
    resp = requests.post(f"{url}/accept", data={"out_bill_no": w.out_bill_no, "back": "https://evil.example/"},
                         timeout=10, allow_redirects=False)
    assert resp.status_code == 400
    assert fresh(w.id).status == "transferring"


# -- notifications ---------------------------------------------------------------------------

def _forged(bill, settings):
    return note({**bill, "state": "SUCCESS"}, key=rsa.generate_private_key(public_exponent=65537, key_size=2048))


def _tampered_amount(bill, settings):
    return note({**bill, "state": "SUCCESS"}, amount=bill["amount"] + 100)


def _wrong_mchid(bill, settings):
    return note({**bill, "state": "SUCCESS"}, mchid="1900000999")


def _unknown_bill(bill, settings):
    return note({**bill, "state": "SUCCESS", "out_bill_no": "W000000999ABCDEF0123"})


def _not_final(bill, settings):
    return note({**bill, "state": "WAIT_USER_CONFIRM"})


def _probe(bill, settings):  # WeChat Pay's own probes carry a bad signature
    return note({**bill, "state": "SUCCESS"}, **{"Wechatpay-Signature": "WECHATPAY/SIGNTEST/" + "A" * 300})


def _wrong_event(bill, settings):
    body = sandbox_wx.notification_body("TRANSACTION.SUCCESS", "支付成功", "mch_payment",
                                        {"mchid": bill["mchid"], "out_bill_no": bill["out_bill_no"],
                                         "state": "SUCCESS", "transfer_amount": bill["amount"]})
    return {"Content-Type": "application/json", **sandbox_wx.signed_headers(body)}, body.encode()


def _tampered_after_signing(bill, settings):
    headers, body = note({**bill, "state": "SUCCESS"})
    return headers, body.replace(b'"MCHTRANSFER.BILL.FINISHED"', b'"MCHTRANSFER.BILL.FINISHED" ')


@pytest.mark.parametrize("attack,status", [
    (_forged, 401), (_tampered_amount, 400), (_wrong_mchid, 400), (_unknown_bill, 404), (_not_final, 400),
    (_probe, 401), (_wrong_event, 400), (_tampered_after_signing, 401)])
def test_bad_transfer_notifications_change_nothing(waiting, settings, base, attack, status):
    d, w = waiting
    bill = bill_of(settings, w)
    assert_refused(post(base, attack(bill, settings)), status)
    assert fresh(w.id).status == "transferring" and balance(d) == (7000, 3000, 0)
    assert notices_of(d, "withdrawal_paid") == 0
    # The genuine one still goes through.
    assert post(base, note({**bill, "state": "SUCCESS"})).status_code == 204
    assert fresh(w.id).status == "paid" and balance(d) == (7000, 0, 3000)


def test_refused_notifications_are_recorded(waiting, settings, base):
    _, w = waiting
    bill = bill_of(settings, w)
    post(base, _tampered_amount(bill, settings))
    db.session.rollback()
    refused = [n for n in payments.notices(w.out_bill_no) if n.kind == "transfer"]
    assert [n.verdict for n in refused] == ["rejected"] and "3100" in refused[0].reason


def test_a_duplicate_success_notification_is_acknowledged_and_pays_once(waiting, settings, base, browser):
    d, w = waiting
    b = browser(d)
    sheet = open_sheet(b, base, w)
    press(b, base, sheet, "accept")
    bill = bill_of(settings, w)
    assert post(base, note(bill)).status_code == 204
    resend = requests.post(f"{base}{SANDBOX}/transfer-confirm/notify", data=hidden_form(sheet.text), timeout=30)
    assert resend.status_code == 200 and "HTTP 204" in resend.text
    assert fresh(w.id).status == "paid" and balance(d) == (7000, 0, 3000)
    assert notices_of(d, "withdrawal_paid") == 1
    assert verdicts(w.out_bill_no) == ["accepted", "duplicate", "duplicate"]
    # A late, contradicting FAIL for a paid withdrawal returns nothing.
    assert post(base, note({**bill, "state": "FAIL", "fail_reason": "TRANSFER_RISK"})).status_code == 204
    assert fresh(w.id).status == "paid" and balance(d) == (7000, 0, 3000)


def test_twenty_duplicate_notifications_at_once_pay_once(waiting, settings, base):
    if not settings["app"]["database_url"].startswith("postgresql"):
        pytest.skip("SQLite takes no row locks; this race is proven on PostgreSQL, which CI (.ci/run) always uses")
    d, w = waiting
    n = note({**bill_of(settings, w), "state": "SUCCESS"})
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda _: post(base, n), range(20)))
    assert all(r.status_code == 204 for r in answers), [r.text for r in answers]
    assert fresh(w.id).status == "paid" and balance(d) == (7000, 0, 3000)
    assert notices_of(d, "withdrawal_paid") == 1
    found = verdicts(w.out_bill_no)
    assert found.count("accepted") == 1 and found.count("duplicate") == 19


def test_success_and_cancel_racing_settle_one_way(waiting, settings, base):
    if not settings["app"]["database_url"].startswith("postgresql"):
        pytest.skip("SQLite takes no row locks; this race is proven on PostgreSQL, which CI (.ci/run) always uses")
    d, w = waiting
    bill = bill_of(settings, w)
    notes = [note({**bill, "state": s}) for s in ("SUCCESS", "CANCELLED") * 10]
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda n: post(base, n), notes))
    assert all(r.status_code == 204 for r in answers), [r.text for r in answers]
    w = fresh(w.id)
    assert balance(d) == ((7000, 0, 3000) if w.status == "paid" else (10000, 0, 0))
    assert notices_of(d, "withdrawal_paid") + notices_of(d, "withdrawal_rejected") == 1


# -- the payee's name from 2,000 CNY -------------------------------------------------------------

def test_a_large_transfer_sends_the_real_name_encrypted(rich, app, jobs, settings, base, browser):
    d = rich(2_500_000)  # ¥2,500.00 withdrawable
    w = transfer(app, jobs, ask(d, 250_000).id)
    bill = bill_of(settings, w)
    assert w.package_info == bill["package_info"] and bill["amount"] == 250_000
    # The sandbox decrypted it with the WeChat Pay private key.
    assert bill["user_name"] == d.real_name == "张三"
    b = browser(d)
    sheet = open_sheet(b, base, w)
    assert 'id="user-name">张*<' in sheet.text
    press(b, base, sheet, "accept")
    assert fresh(w.id).status == "paid" and balance(d) == (0, 0, 250_000)


def test_a_large_transfer_without_a_name_is_refused_on_both_sides(gw, settings):
    w = Withdrawal(out_bill_no="W000000001ABCDE12345", amount_fen=200_000, fee_fen=0)
    with pytest.raises(TransferRefused) as exc:
        gw.create_transfer(w, "oSOMEONE")
    assert "真实姓名" in exc.value.message
    # Straight to the gateway, signed but without user_name, or with one it cannot read.
    data = transfer_body(settings, "W000000001ABCDE12345", 200_000)
    code, text = gw.client._core.request(BILLS, method=_POST, data=data)
    assert code == 400 and "user_name" in text
    code, text = gw.client._core.request(BILLS, method=_POST, data={**data, "user_name": "bm90IGVuY3J5cHRlZA=="})
    assert code == 400 and "user_name" in text
    assert sandbox_wx.load_bill(settings["wechatpay"]["mchid"], "W000000001ABCDE12345") is None


# -- the gateway's checks and answers ----------------------------------------------------------------

def transfer_body(settings, bill_no: str, amount: int, **over) -> dict:
    data = {"appid": settings["wechatpay"]["appid"], "out_bill_no": bill_no, "transfer_scene_id": "1005",
            "openid": "oPAYEE", "transfer_amount": amount, "transfer_remark": "佣金提现",
            "transfer_scene_report_infos": [{"info_type": "岗位类型", "info_content": "分销推广"},
                                            {"info_type": "报酬说明", "info_content": "佣金"}],
            "notify_url": settings["app"]["base_url"] + TRANSFER_NOTIFY_PATH}
    data.update(over)
    return {k: v for k, v in data.items() if v is not None}


@pytest.mark.parametrize("over,message", [
    ({"openid": None}, "openid"), ({"openid": ""}, "openid"), ({"transfer_amount": 9}, "0.1"),
    ({"transfer_amount": "100"}, "transfer_amount"), ({"transfer_remark": "佣" * 33}, "32"),
    ({"transfer_remark": None}, "transfer_remark"), ({"transfer_scene_id": "9999"}, "transfer_scene_id"),
    ({"transfer_scene_report_infos": [{"info_type": "岗位类型", "info_content": "分销推广"}]}, "报酬说明"),
    ({"appid": "wxsomeoneelse00000"}, "appid"), ({"out_bill_no": "W-1"}, "out_bill_no"),
    ({"notify_url": "http://x.example/n?a=1"}, "notify_url")])
def test_the_gateway_refuses_a_bad_transfer(gw, settings, over, message):
    code, text = gw.client._core.request(BILLS, method=_POST, data=transfer_body(settings, "WBAD0001", 100, **over))
    assert code == 400 and message in text, text
    assert sandbox_wx.load_bill(settings["wechatpay"]["mchid"], "WBAD0001") is None


def test_the_same_out_bill_no_is_the_same_bill(gw, settings):
    w = Withdrawal(out_bill_no="WSAME000001", amount_fen=500, fee_fen=0)
    first = gw.create_transfer(w, "oPAYEE")
    again = gw.create_transfer(w, "oPAYEE")
    assert first.state == again.state == "WAIT_USER_CONFIRM" and first.package_info
    assert (first.transfer_bill_no, first.package_info) == (again.transfer_bill_no, again.package_info)
    with pytest.raises(TransferRefused):  # same number, other content
        gw.create_transfer(Withdrawal(out_bill_no="WSAME000001", amount_fen=600, fee_fen=0), "oPAYEE")
    with pytest.raises(TransferRefused):
        gw.create_transfer(w, "oSOMEONEELSE")
    asked = gw.query_transfer("WSAME000001")
    assert (asked.state, asked.amount_fen, asked.transfer_bill_no) == ("WAIT_USER_CONFIRM", 500,
                                                                      first.transfer_bill_no)
    assert gw.query_transfer("WNOSUCHBILL") is None


def test_requests_without_the_merchant_signature_are_refused(base, settings):
    data = transfer_body(settings, "WUNSIGNED01", 100)
    resp = requests.post(f"{base}{SANDBOX}{BILLS}", json=data, timeout=10)
    assert resp.status_code == 401 and resp.json()["code"] == "SIGN_ERROR"
    resp = requests.get(f"{base}{SANDBOX}{BILLS}/out-bill-no/WUNSIGNED01", timeout=10)
    assert resp.status_code == 401
    assert sandbox_wx.load_bill(settings["wechatpay"]["mchid"], "WUNSIGNED01") is None


# -- the merchant's CLI ------------------------------------------------------------------------

def test_the_cli_refuses_what_cannot_be_transferred(rich, app, jobs):
    d = rich()
    assert cli(app, "transfer", "999999").exit_code != 0
    w = ask(d, 2000)
    withdrawals.reject(w.id, "信息有误", actor=audit.SYSTEM)
    outbox.commit()
    result = cli(app, "transfer", str(w.id))
    assert result.exit_code != 0
    assert fresh(w.id).status == "rejected" and balance(d) == (10000, 0, 0)


def test_running_the_cli_again_keeps_one_bill(waiting, app, jobs, settings):
    d, w = waiting
    first = bill_of(settings, w)
    result = cli(app, "transfer", str(w.id))
    assert result.exit_code == 0 and "confirm" in result.output
    jobs.run()
    again = fresh(w.id)
    assert (again.out_bill_no, again.package_info) == (w.out_bill_no, w.package_info)
    assert bill_of(settings, again)["transfer_bill_no"] == first["transfer_bill_no"]
    assert balance(d) == (7000, 3000, 0)


def test_an_unknown_amount_is_refused_by_the_handler(waiting):
    d, w = waiting
    with pytest.raises(Conflict):
        withdrawals.transfer_finished(w.out_bill_no, "SUCCESS", amount_fen=w.net_fen - 1)
    outbox.rollback()
    assert fresh(w.id).status == "transferring" and balance(d) == (7000, 3000, 0)


def test_a_lost_notification_is_made_good_by_sync(waiting, app, settings):
    """WeChat finished the bill (say it cancelled it unconfirmed) but its
    notification never arrived: `withdrawals sync` asks and finishes it."""
    d, w = waiting
    assert "transferring" in cli(app, "list").output
    bill = bill_of(settings, w)
    bill["state"] = "CANCELLED"  # WeChat's side, as its query will tell
    sandbox_wx.save_bill(bill)
    result = cli(app, "sync")
    assert result.exit_code == 0 and "1 transfer(s) finished" in result.output
    assert fresh(w.id).status == "failed"
    assert "0 transfer(s) finished" in cli(app, "sync").output


def test_the_confirm_page_is_only_for_a_waiting_transfer(rich, app, base, browser):
    d = rich()
    w = ask(d, 3000)
    res = browser(d).get(f"{base}/h5/withdrawals/{w.id}/confirm", allow_redirects=False)
    assert res.status_code == 302 and res.headers["Location"].endswith("/h5/withdraw")
