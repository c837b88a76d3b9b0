"""Reconciliation (issue 12, item 6): the sandbox gateways serve their real
bills built from their own records; differences are planted by editing those
records, never by mocking our code."""
from __future__ import annotations

import gzip
import json
import re
import threading
import time
from datetime import datetime, timedelta
from html import unescape

import pytest
import requests
from sqlalchemy import func, select

from admin_helpers import make_staff, post, staff_browser  # noqa: F401
from distribution_helpers import make_user
from conftest import free_port, needs_postgres, second_product
from handlers import catalogue, orders, outbox, payments
from handlers import reconcile as rc
from handlers import staff as staff_rules
from handlers.audit import SYSTEM
from handlers.clock import CHINA, now
from models import AuditEntry, Order, Payment, ReconcileDay, ReconcileDifference, db
from pay import bills
from pay.alipay import AlipayGateway
from pay.wechatpay import WeChatPayGateway
from sandbox import alipay as sandbox_ali
from sandbox import wechatpay as sandbox_wx
from test_transfer import rich  # noqa: F401  (a distributor with money to withdraw)

RECEIVER = ("张三", "13800138000", "上海市徐汇区漕溪北路 1 号")


# -- helpers -------------------------------------------------------------------

@pytest.fixture
def shop(app, base, jobs):
    return Shop(base, jobs)


class Shop:
    """Orders paid at the sandbox cashiers, refunds through the jobs."""

    def __init__(self, base: str, jobs) -> None:
        self.base, self.jobs = base, jobs
        self.wx, self.ali = WeChatPayGateway.from_settings(), AlipayGateway.from_settings()
        self.buyer = make_user("对账买家")

    def order(self, price_fen: int = 1990):
        product = catalogue.add_product("对账测试", price_fen, 100)
        order = orders.place_order(orders.Buyer(user=self.buyer), {product.id: 1}, orders.Receiver.checked(*RECEIVER))
        outbox.commit()
        return order

    def wx_opened(self, price_fen: int = 1990):
        """An order whose WeChat Pay trade is open (prepay), not paid."""
        order = self.order(price_fen)
        url = self.wx.cashier_url(self.wx.jsapi_params(order, self.buyer.openid), self.base + "/h5/orders")
        page = requests.get(url, timeout=30).text
        return order, page

    def wx_paid(self, price_fen: int = 1990) -> str:
        order, page = self.wx_opened(price_fen)
        form = {n: unescape(v) for n, v in re.findall(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)">',
                                                        page)[:2]}
        resp = requests.post(f"{self.base}/sandbox/pay/wechatpay/cashier/pay", data=form, timeout=60,
                             allow_redirects=False)
        assert resp.status_code == 303
        return order.order_no

    def ali_opened(self, price_fen: int = 1990) -> tuple[str, str]:
        order = self.order(price_fen)
        html = requests.get(self.ali.wap_pay_url(order, f"{self.base}/shop/orders/{order.order_no}/alipay-return"),
                            timeout=30).text
        action = unescape(re.search(r'action="([^"]*/cashier/[0-9]+/pay)"', html).group(1))
        return order.order_no, action

    def ali_paid(self, price_fen: int = 1990) -> str:
        order_no, action = self.ali_opened(price_fen)
        assert requests.post(self.base + action, allow_redirects=False, timeout=30).status_code == 303
        return order_no

    def refund(self, order_no: str) -> str:
        db.session.rollback()
        refund = payments.start_refund(order_no, "对账测试退款", actor=SYSTEM)
        out_refund_no = refund.out_refund_no
        outbox.commit()
        self.jobs.run()
        db.session.rollback()
        return out_refund_no


def mchid(settings) -> str:
    return settings["wechatpay"]["mchid"]


def ali_trade(settings, order_no: str) -> dict:
    return sandbox_ali.find_trade(settings["alipay"]["app_id"], order_no)


_DAY: list = []


@pytest.fixture(autouse=True)
def one_china_day():
    """Each test reconciles the China day it started on; one starting in the
    last half minute before China's midnight (16:00 UTC) waits it out, so its
    rows and its runs fall on the same day."""
    left = (datetime.combine(rc.today() + timedelta(days=1), datetime.min.time(), CHINA) - now()).total_seconds()
    if left < 30:
        time.sleep(max(left, 0) + 1)
    _DAY[:] = [rc.today()]
    yield
    _DAY.clear()


def reconcile_day():
    """The day this test reconciles (see ``one_china_day``)."""
    return _DAY[0] if _DAY else rc.today()


def run_today(channels=None) -> dict[str, ReconcileDay]:
    db.session.rollback()
    done = rc.run_day(reconcile_day(), actor=SYSTEM, channels=channels)
    outbox.commit()
    return {r.channel: r for r in done}


def differences(channel: str | None = None) -> set[tuple[str, str, str, str]]:
    db.session.rollback()
    q = select(ReconcileDifference)
    if channel:
        q = q.where(ReconcileDifference.channel == channel)
    return {(d.channel, d.kind, d.ref, d.problem) for d in db.session.scalars(q)}


def now_rfc3339() -> str:
    return sandbox_wx.rfc3339()


# -- a clean day -------------------------------------------------------------------------------

def test_a_clean_day_says_so(shop, staff_browser, base):
    wx_kept, wx_refunded = shop.wx_paid(1990), shop.wx_paid(2500)
    ali_kept, ali_refunded = shop.ali_paid(1200), shop.ali_paid(3300)
    shop.refund(wx_refunded)
    shop.refund(ali_refunded)
    runs = run_today()
    assert {c: (r.state, r.differences) for c, r in runs.items()} == {"wechatpay": ("clean", 0),
                                                                     "alipay": ("clean", 0)}
    assert runs["wechatpay"].gateway_rows == 3 and runs["alipay"].gateway_rows == 3
    assert differences() == set()
    finance = staff_browser("finance")
    page = finance.get(f"{base}/admin/reconcile/{_DAY[0].isoformat()}").text
    assert "全部一致" in page and "没有差异" in page
    overview = finance.get(f"{base}/admin/reconcile").text
    assert overview.count("无差异") >= 2 and "未对账" in overview  # other days not run


def test_the_bills_are_in_the_gateways_formats(shop, settings):
    order_no = shop.wx_paid(1990)
    refund_no = shop.refund(order_no)
    gw = WeChatPayGateway.from_settings()
    code, text = gw.client.trade_bill(bill_date=_DAY[0].isoformat(), bill_type="ALL", tar_type="GZIP")
    assert code == 200
    rows = bills.wechatpay_bill(_DAY[0])
    assert {(r.kind, r.ref, r.amount_fen, r.state) for r in rows} == {("trade", order_no, 1990, "SUCCESS"),
                                                                      ("refund", refund_no, 1990, "SUCCESS")}
    # The file itself: backquoted values, a header, a summary.
    code, body = gw.client.download_bill(json.loads(text)["download_url"])
    csv_text = gzip.decompress(body).decode()
    assert csv_text.startswith("交易时间,公众账号ID,商户号") and f"`{order_no}" in csv_text
    assert "总交易单数" in csv_text
    ali_no = shop.ali_paid(1200)
    ali_rows = bills.alipay_bill(_DAY[0])
    assert [(r.kind, r.ref, r.amount_fen) for r in ali_rows] == [("trade", ali_no, 1200)]


# -- differences ------------------------------------------------------------------------------

def test_every_wechatpay_difference_is_found(shop, settings):
    m = mchid(settings)
    # trades
    missing_here = shop.wx_paid(1000)  # the sandbox forgets it: here only
    sandbox_wx.redis_store.conn.delete(sandbox_wx._trade_key(m, missing_here))
    other_amount = shop.wx_paid(2000)
    trade = sandbox_wx.load_trade(m, other_amount)
    trade["total"] = 2001
    sandbox_wx.save_trade(trade)
    revoked = shop.wx_paid(3000)
    trade = sandbox_wx.load_trade(m, revoked)
    trade["trade_state"] = "REVOKED"
    sandbox_wx.save_trade(trade)
    unheard, _ = shop.wx_opened(4000)  # paid at WeChat Pay, the notification never came
    trade = sandbox_wx.load_trade(m, unheard.order_no)
    trade.update(trade_state="SUCCESS", success_time=now_rfc3339(), transaction_id=sandbox_wx.new_id("4200", 18))
    sandbox_wx.save_trade(trade)
    stranger = {**trade, "out_trade_no": "NOTOURS123456", "transaction_id": sandbox_wx.new_id("4200", 18)}
    sandbox_wx.save_trade(stranger)  # at the gateway only
    # refunds
    refunded = [shop.wx_paid(500 + i) for i in range(3)]
    gone, changed, abnormal = (shop.refund(no) for no in refunded)
    sandbox_wx.redis_store.conn.delete(sandbox_wx._refund_key(m, gone))
    r = sandbox_wx.load_refund(m, changed)
    r["refund"] -= 1
    sandbox_wx.save_refund(r)
    r = sandbox_wx.load_refund(m, abnormal)
    r["status"] = "ABNORMAL"
    sandbox_wx.save_refund(r)
    console = {**r, "out_refund_no": "CONSOLE0001", "refund_id": sandbox_wx.new_id("50", 21), "status": "SUCCESS"}
    sandbox_wx.save_refund(console)

    runs = run_today(["wechatpay"])
    expected = {("wechatpay", "trade", missing_here, "local_only"), ("wechatpay", "trade", other_amount, "amount"),
                ("wechatpay", "trade", revoked, "state"), ("wechatpay", "trade", unheard.order_no, "state"),
                ("wechatpay", "trade", "NOTOURS123456", "gateway_only"),
                ("wechatpay", "refund", gone, "local_only"), ("wechatpay", "refund", changed, "amount"),
                ("wechatpay", "refund", abnormal, "state"), ("wechatpay", "refund", "CONSOLE0001", "gateway_only")}
    assert differences() == expected
    assert runs["wechatpay"].state == "differences" and runs["wechatpay"].differences == len(expected)
    amount = db.session.scalars(select(ReconcileDifference).where(ReconcileDifference.ref == other_amount)).one()
    assert (amount.gateway_fen, amount.local_fen) == (2001, 2000)
    unpaid = db.session.scalars(select(ReconcileDifference).where(ReconcileDifference.ref == unheard.order_no)).one()
    assert (unpaid.gateway_state, unpaid.local_state) == ("SUCCESS", "order:pending")


def test_every_alipay_difference_is_found(shop, settings):
    conn = sandbox_ali.redis_store.conn
    missing_here = shop.ali_paid(1000)
    conn.delete(sandbox_ali._trade_key(ali_trade(settings, missing_here)["trade_no"]))
    other_amount = shop.ali_paid(2000)
    trade = ali_trade(settings, other_amount)
    trade["total_amount"] = "20.01"
    sandbox_ali.save_trade(trade)
    unheard, _ = shop.ali_opened(3000)  # paid at Alipay, the notification never came
    trade = ali_trade(settings, unheard)
    trade.update(status="TRADE_SUCCESS", gmt_payment=sandbox_ali.beijing_now())
    sandbox_ali.save_trade(trade)
    stranger = {**trade, "trade_no": sandbox_ali.new_trade_no(), "out_trade_no": "NOTOURS123456"}
    sandbox_ali.save_trade(stranger)  # at the gateway only
    # refunds
    gone_order, changed_order = shop.ali_paid(600), shop.ali_paid(700)
    gone, changed = shop.refund(gone_order), shop.refund(changed_order)
    trade = ali_trade(settings, gone_order)
    trade["refunds"] = {}
    sandbox_ali.save_trade(trade)
    trade = ali_trade(settings, changed_order)
    trade["refunds"][changed]["amount"] = "6.99"
    sandbox_ali.save_trade(trade)
    # Our refund still pending, Alipay refunded (the answer was lost): state differs.
    pending_order = shop.ali_paid(800)
    db.session.rollback()
    pending = payments.start_refund(pending_order, "答复丢失", actor=SYSTEM).out_refund_no
    outbox.commit(run_inline=False)
    resp = shop.ali.client.api_alipay_trade_refund(refund_amount="8.00", out_trade_no=pending_order,
                                                   out_request_no=pending)
    assert resp["code"] == "10000"
    trade = ali_trade(settings, pending_order)  # at Alipay only: a refund made in Alipay's console
    trade["refunds"]["CONSOLE0001"] = {"amount": "0.01", "gmt_refund_pay": sandbox_ali.beijing_now(), "reason": ""}
    sandbox_ali.save_trade(trade)

    run_today(["alipay"])
    assert differences() == {
        ("alipay", "trade", missing_here, "local_only"), ("alipay", "trade", other_amount, "amount"),
        ("alipay", "trade", unheard, "state"), ("alipay", "trade", "NOTOURS123456", "gateway_only"),
        ("alipay", "refund", gone, "local_only"), ("alipay", "refund", changed, "amount"),
        ("alipay", "refund", pending, "state"), ("alipay", "refund", "CONSOLE0001", "gateway_only")}
    state = db.session.scalars(select(ReconcileDifference).where(ReconcileDifference.ref == pending)).one()
    assert (state.gateway_state, state.local_state) == ("SUCCESS", "PROCESSING")


# -- reruns and resolving ----------------------------------------------------------------------

def test_a_rerun_is_idempotent_and_resolved_stays_resolved(shop, settings, staff_browser, base):
    m = mchid(settings)
    first, second = shop.wx_paid(1000), shop.wx_paid(2000)
    for no in (first, second):
        sandbox_wx.redis_store.conn.delete(sandbox_wx._trade_key(m, no))
    run_today(["wechatpay"])
    run_today(["wechatpay"])
    assert db.session.scalar(select(func.count()).select_from(ReconcileDifference)) == 2
    finance = staff_browser("finance")
    d = db.session.scalars(select(ReconcileDifference).where(ReconcileDifference.ref == first)).one()
    day_page = f"{base}/admin/reconcile/{_DAY[0].isoformat()}"
    resp = post(finance, f"{base}/admin/reconcile/differences/{d.id}/resolve", {"note": "  已与微信支付核实  "},
                page=day_page)
    assert resp.status_code == 302
    # A second resolve (another tab) is refused and changes nothing.
    again = post(finance, f"{base}/admin/reconcile/differences/{d.id}/resolve", {"note": "再来一次"}, page=day_page)
    assert again.status_code == 409 and "已由" in again.text
    db.session.rollback()
    entry = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "reconcile.resolve")).one()
    assert entry.actor == finance.staff_name and entry.reason == "已与微信支付核实"
    assert entry.target_id == str(d.id)
    # Rerun: the same two, the resolved one still resolved with its note.
    run_today(["wechatpay"])
    rows = {x.ref: x for x in db.session.scalars(select(ReconcileDifference))}
    assert set(rows) == {first, second}
    assert rows[first].resolved_by == finance.staff_name and rows[first].note == "已与微信支付核实"
    assert rows[second].resolved_at is None
    # The second is put right at the gateway's side: it goes away, the resolved one stays.
    trade = sandbox_wx.load_trade(m, first)
    assert trade is None
    db.session.rollback()
    pay_row = db.session.scalars(select(Payment).join(Order, Order.id == Payment.order_id)
                                 .where(Order.order_no == second)).one()
    sandbox_wx.save_trade({"mchid": m, "appid": settings["wechatpay"]["appid"], "out_trade_no": second,
                           "description": "对账测试", "total": 2000, "openid": shop.buyer.openid,
                           "trade_state": "SUCCESS", "success_time": now_rfc3339(),
                           "transaction_id": pay_row.transaction_id, "refunded": 0})
    runs = run_today(["wechatpay"])
    assert {x.ref for x in db.session.scalars(select(ReconcileDifference))} == {first}
    assert runs["wechatpay"].differences == 1 and runs["wechatpay"].runs == 4
    page = finance.get(day_page).text
    assert "已与微信支付核实" in page and "已处理" in page


def test_a_day_without_any_trade_is_clean_and_the_nightly_job_does_yesterday(app):
    result = rc.nightly()
    yesterday = _DAY[0] - timedelta(days=1)
    assert result == [f"{yesterday} wechatpay clean 0", f"{yesterday} alipay clean 0"]
    db.session.rollback()
    days = {(r.day, r.channel, r.state, r.run_by) for r in db.session.scalars(select(ReconcileDay))}
    assert days == {(yesterday, "wechatpay", "clean", "system"), (yesterday, "alipay", "clean", "system")}


def test_a_gateway_that_cannot_be_reached_marks_the_day_failed(app, settings, staff_browser, base):
    closed = f"http://127.0.0.1:{free_port()}"
    with second_product(settings, wechatpay={"api_base": closed}) as other:
        with other.app_context():
            runs = {r.channel: r for r in rc.run_day(_DAY[0], actor=SYSTEM)}
            assert runs["wechatpay"].state == "failed" and "微信支付" in runs["wechatpay"].message
            assert runs["alipay"].state == "clean"
            outbox.commit()
    page = staff_browser("finance").get(f"{base}/admin/reconcile").text
    assert "失败" in page and "微信支付暂时无法连接" in page


# -- bad input ------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", ["", "garbage", "2026-13-01", "2026-02-30", "20261201", "２０２６-01-01",
                                 "2026-01-01'--", "9999-12-31"])
def test_bad_days_are_refused_in_words(app, bad):
    with pytest.raises(Exception) as caught:
        rc.run_day(bad, actor=SYSTEM)
    assert "日期" in caught.value.message
    assert db.session.scalar(select(func.count()).select_from(ReconcileDay)) == 0


def test_the_admin_refuses_bad_input_and_changes_nothing(app, staff_browser, base):
    owner = staff_browser("owner")
    tomorrow = (rc.today() + timedelta(days=1)).isoformat()
    resp = post(owner, f"{base}/admin/reconcile/run", {"day": tomorrow}, page=f"{base}/admin/reconcile")
    assert resp.status_code == 400 and "未来" in resp.text
    resp = post(owner, f"{base}/admin/reconcile/run", {"day": "garbage"}, page=f"{base}/admin/reconcile")
    assert resp.status_code == 400 and "日期格式" in resp.text
    assert owner.get(f"{base}/admin/reconcile/garbage").status_code == 400
    assert owner.get(f"{base}/admin/reconcile/{tomorrow}").status_code == 400
    assert post(owner, f"{base}/admin/reconcile/differences/999999/resolve", {"note": "x"},
                page=f"{base}/admin/reconcile").status_code == 404
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(ReconcileDay)) == 0


def test_a_resolve_needs_a_note(shop, settings, staff_browser, base):
    no = shop.wx_paid(1000)
    sandbox_wx.redis_store.conn.delete(sandbox_wx._trade_key(mchid(settings), no))
    run_today(["wechatpay"])
    d = db.session.scalars(select(ReconcileDifference)).one()
    owner = staff_browser("owner")
    for note in ("", "   ", "长" * 501):
        resp = post(owner, f"{base}/admin/reconcile/differences/{d.id}/resolve", {"note": note},
                    page=f"{base}/admin/reconcile")
        assert resp.status_code == 400 and "处理说明" in resp.text
    db.session.rollback()
    assert db.session.get(ReconcileDifference, d.id).resolved_at is None


@pytest.mark.parametrize("garbage", ["", "hello", "交易时间,公众账号ID\n`1,`2", "\x00\x01"])
def test_a_garbled_wechatpay_bill_is_refused_in_words(garbage):
    with pytest.raises(bills.BillError) as caught:
        bills.parse_wechatpay(garbage)
    assert "微信支付账单" in caught.value.message


@pytest.mark.parametrize("garbage", [b"", b"PK\x03\x04garbage", "支付宝".encode()])
def test_a_garbled_alipay_bill_is_refused_in_words(garbage):
    with pytest.raises(bills.BillError) as caught:
        bills.parse_alipay(garbage)
    assert "支付宝账单" in caught.value.message


def _one_row_bill(amount: str) -> str:
    """A one-payment bill as the sandbox writes it, its 订单金额 replaced by ``amount``."""
    text = sandbox_wx.bill_text([["2026-11-30 10:00:00", "wx", "1", "0", "", "42", "N1", "o", "JSAPI", "SUCCESS",
                                  "OTHERS", "CNY", "1.00", "0.00", "0", "0", "0.00", "0.00", "", "", "x", "",
                                  "0.01", "0.60%", "1.00", "0.00", ""]])
    return text.replace("`0.60%,`1.00,", f"`0.60%,`{amount},", 1)


@pytest.mark.parametrize("amount", ["1.005", "1e3", "-", "一元", ""])
def test_a_bad_amount_in_a_bill_is_refused(amount):
    assert [r.amount_fen for r in bills.parse_wechatpay(_one_row_bill("1.00"))] == [100]
    with pytest.raises(bills.BillError) as caught:
        bills.parse_wechatpay(_one_row_bill(amount))
    assert "金额无法识别" in caught.value.message


# -- the command -----------------------------------------------------------------------------------

def test_the_command_runs_a_day_and_lists(app, shop, settings):
    no = shop.wx_paid(1000)
    sandbox_wx.redis_store.conn.delete(sandbox_wx._trade_key(mchid(settings), no))
    runner = app.test_cli_runner()
    result = runner.invoke(args=["reconcile", "run", "--date", _DAY[0].isoformat()])
    assert result.exit_code == 0, result.output
    assert "wechatpay\tdifferences\t1 difference(s)" in result.output and no in result.output
    assert "alipay\tclean" in result.output
    listed = runner.invoke(args=["reconcile", "list", "--days", "2"])
    assert listed.exit_code == 0 and "1 unresolved" in listed.output and "not run" in listed.output
    bad = runner.invoke(args=["reconcile", "run", "--date", "tomorrow"])
    assert bad.exit_code != 0 and "日期格式" in bad.output
    db.session.rollback()
    assert db.session.scalars(select(AuditEntry.actor).where(AuditEntry.action == "reconcile.run")).all() \
        and all(a.startswith("cli:") for a in db.session.scalars(
            select(AuditEntry.actor).where(AuditEntry.action == "reconcile.run")))


# -- roles ---------------------------------------------------------------------------------------------

def test_permissions_and_roles(app, staff_browser, base):
    assert {"reconcile.view", "reconcile.act"} <= set(staff_rules.PERMISSIONS)
    day = _DAY[0].isoformat()
    for role in ("operator", "shipping"):
        b = staff_browser(role)
        assert b.get(f"{base}/admin/reconcile").status_code == 403
        assert b.get(f"{base}/admin/reconcile/{day}").status_code == 403
        assert post(b, f"{base}/admin/reconcile/run", {"day": day}).status_code == 403
    for role in ("owner", "finance"):
        b = staff_browser(role)
        page = b.get(f"{base}/admin/reconcile")
        assert page.status_code == 200 and "对账这一天" in page.text
        resp = post(b, f"{base}/admin/reconcile/run", {"day": day}, page=f"{base}/admin/reconcile")
        assert resp.status_code == 302 and resp.headers["Location"].endswith(f"/admin/reconcile/{day}")
    db.session.rollback()
    assert db.session.scalar(select(ReconcileDay.runs).where(ReconcileDay.channel == "wechatpay")) == 2
    runs = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "reconcile.run")).all()
    assert len(runs) == 4 and all(e.staff_id for e in runs)


# -- transfers ------------------------------------------------------------------------------------------

def test_transfers_are_compared_with_the_transfer_query(app, rich, jobs, settings):
    from test_transfer import ask, bill_of, transfer  # noqa: F811

    d = rich(100000)
    agreed, confirmed, vanished = (transfer(app, jobs, ask(d, 1000 + i).id) for i in range(3))
    assert agreed.status == "transferring" and agreed.transfer_created_at is not None
    runs = run_today(["wechatpay"])
    assert runs["wechatpay"].state == "clean" and runs["wechatpay"].local_rows == 3
    # The payee confirmed, the notification never came: state differs. An amount changed; a bill lost.
    bill = bill_of(settings, confirmed)
    bill.update(state="SUCCESS", amount=bill["amount"] + 1)
    sandbox_wx.save_bill(bill)
    sandbox_wx.redis_store.conn.delete(sandbox_wx._bill_key(mchid(settings), vanished.out_bill_no))
    run_today(["wechatpay"])
    assert differences() == {("wechatpay", "transfer", confirmed.out_bill_no, "state"),
                             ("wechatpay", "transfer", confirmed.out_bill_no, "amount"),
                             ("wechatpay", "transfer", vanished.out_bill_no, "local_only")}
    state = db.session.scalars(select(ReconcileDifference).where(ReconcileDifference.problem == "state")).one()
    assert (state.gateway_state, state.local_state) == ("SUCCESS", "transferring")


# -- at once ---------------------------------------------------------------------------------------------

@needs_postgres
def test_reruns_at_once_make_one_set_of_differences(app, shop, settings):
    m = mchid(settings)
    for price in (1000, 2000):
        sandbox_wx.redis_store.conn.delete(sandbox_wx._trade_key(m, shop.wx_paid(price)))
    db.session.rollback()
    barrier, failures = threading.Barrier(4), []

    def one() -> None:
        with app.app_context():
            try:
                barrier.wait(timeout=30)
                rc.run_day(_DAY[0], actor=SYSTEM, channels=["wechatpay"])
                outbox.commit()
            except Exception as exc:  # noqa: BLE001 - reported below
                failures.append(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(ReconcileDifference)) == 2
    day = db.session.scalars(select(ReconcileDay)).one()
    assert (day.runs, day.differences, day.state) == (4, 2, "differences")


def test_a_days_differences_export_as_listed(shop, settings, staff_browser, base):
    from test_admin_exports import export_form, press_export, table

    m = mchid(settings)
    lost, kept = shop.wx_paid(1000), shop.wx_paid(2500)
    for no in (lost, kept):
        sandbox_wx.redis_store.conn.delete(sandbox_wx._trade_key(m, no))
    run_today(["wechatpay"])
    finance = staff_browser("finance")
    day = _DAY[0].isoformat()
    d = db.session.scalars(select(ReconcileDifference).where(ReconcileDifference.ref == lost)).one()
    post(finance, f"{base}/admin/reconcile/differences/{d.id}/resolve", {"note": "=已核实"},
         page=f"{base}/admin/reconcile/{day}")
    rows = table(press_export(finance, base, f"/admin/reconcile/{day}"))
    assert rows[0][:7] == ["编号", "日期", "渠道", "类型", "单号", "支付平台单号", "差异"]
    by_ref = {row[4]: row for row in rows[1:]}
    assert set(by_ref) == {lost, kept} and {row[1] for row in rows[1:]} == {day}
    assert by_ref[lost][11:14] == ["已处理", "'=已核实", finance.staff_name]  # a note starting with = made inert
    assert by_ref[kept][9] == "25.00" and by_ref[kept][7] == "" and by_ref[kept][11] == "待处理"
    # another day's list is its own; a day that is no day is refused in words
    form = export_form(finance.get(f"{base}/admin/reconcile/{day}").text)
    other = table(post(finance, f"{base}/admin/exports", dict(form, day="2020-01-01")))
    assert other == [rows[0]]
    bad = post(finance, f"{base}/admin/exports", dict(form, day="yesterday"))
    assert bad.status_code == 400
