"""The merchant's withdrawals pages (/admin/withdrawals), over real HTTP as
staff: paying by hand, by WeChat Pay transfer (on the sandbox gateway),
cancelling a transfer, the second approval above [admin]
dual_approval_fen, rejecting — each with its audit row — and what is refused."""
from __future__ import annotations

import html
import re
import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from admin_helpers import make_staff, post, staff_browser  # noqa: F401
from app.config import build
from conftest import needs_postgres
from models import AuditEntry, Withdrawal, db
from sandbox import wechatpay as sandbox_wx
from test_money_rules import owing  # noqa: F401
from test_transfer import ask, balance, bill_of, fresh, notices_of, rich  # noqa: F401


def audit_rows(w_id: int, action: str) -> list[AuditEntry]:
    db.session.rollback()
    return list(db.session.scalars(select(AuditEntry).where(AuditEntry.target_type == "withdrawal",
                                                            AuditEntry.target_id == str(w_id),
                                                            AuditEntry.action == action)))


@pytest.fixture
def dual(app, settings):
    """[admin] dual_approval_fen = ¥20.00 for this test."""
    raw = {section: dict(values) for section, values in settings.items()}
    raw["admin"]["dual_approval_fen"] = 2000
    app.config["SETTINGS"] = build(raw, {}, "tests")
    yield
    app.config["SETTINGS"] = settings


def url(base: str, w_id: int, action: str = "") -> str:
    return f"{base}/admin/withdrawals/{w_id}" + (f"/{action}" if action else "")


def test_the_list_shows_amounts_balance_and_the_total_waiting(rich, base, staff_browser):
    d = rich()
    w1, w2 = ask(d, 3000), ask(d, 1000)
    b = staff_browser("finance")
    page = b.get(f"{base}/admin/withdrawals")
    assert page.status_code == 200
    assert f'id="wd-{w1.id}"' in page.text and f'id="wd-{w2.id}"' in page.text
    assert "2 笔" in page.text and "¥40.00" in page.text and d.real_name in page.text
    assert "可提现 ¥60.00" in page.text and "提现中 ¥40.00" in page.text
    only = b.get(f"{base}/admin/withdrawals", params={"q": "nobody-like-this"})
    assert f'id="wd-{w1.id}"' not in only.text and "没有符合条件的提现" in only.text
    by_mobile = b.get(f"{base}/admin/withdrawals", params={"q": d.mobile[:7], "state": "requested"})
    assert f'id="wd-{w1.id}"' in by_mobile.text
    bad = b.get(f"{base}/admin/withdrawals", params={"from": "yesterday"})
    assert bad.status_code == 400 and "日期格式" in bad.text
    paged = b.get(f"{base}/admin/withdrawals", params={"before": w2.id})
    assert f'id="wd-{w1.id}"' in paged.text and f'id="wd-{w2.id}"' not in paged.text


def test_more_than_a_page_of_withdrawals_pages_on(rich, base, staff_browser):
    d = rich()
    asked = [ask(d, 100).id for _ in range(52)]  # ¥1 each: more than a page of 50
    b = staff_browser("finance")
    first = b.get(f"{base}/admin/withdrawals")
    assert first.status_code == 200 and len(re.findall(r'id="wd-(\d+)"', first.text)) == 50
    more = re.search(r'href="([^"]+)">下一页', first.text)
    assert more, "no link to the next page"
    second = b.get(base + html.unescape(more.group(1)))
    assert second.status_code == 200
    shown = re.findall(r'id="wd-(\d+)"', first.text + second.text)
    assert sorted(map(int, shown)) == sorted(asked)


def test_pay_by_hand_from_the_page(rich, base, staff_browser):
    d = rich()
    w = ask(d, 3000)
    b = staff_browser("finance")
    res = post(b, url(base, w.id, "pay"), {"reference": "网银 0001"})
    assert res.status_code == 302
    assert fresh(w.id).status == "paid" and fresh(w.id).reference == "网银 0001"
    assert balance(d) == (7000, 0, 3000) and notices_of(d, "withdrawal_paid") == 1
    [row] = audit_rows(w.id, "withdrawal.pay")
    assert row.actor == b.staff_name and row.before["status"] == "requested" and row.after["status"] == "paid"
    page = b.get(url(base, w.id))
    assert "已打款" in page.text and "线下打款" in page.text and b.staff_name in page.text
    again = post(b, url(base, w.id, "pay"), {"reference": "网银 0002"}, htmx=True)
    assert again.status_code == 409 and "已打款" in again.text
    assert len(audit_rows(w.id, "withdrawal.pay")) == 1 and balance(d) == (7000, 0, 3000)


def test_reject_with_a_reason_htmx(rich, base, staff_browser):
    d = rich()
    w = ask(d, 3000)
    b = staff_browser("owner")
    res = post(b, url(base, w.id, "reject"), {"reason": "收款信息有误"}, htmx=True)
    assert res.status_code == 200 and "已驳回" in res.text and 'id="wd-history"' in res.text
    assert fresh(w.id).status == "rejected" and balance(d) == (10000, 0, 0)
    assert notices_of(d, "withdrawal_rejected") == 1
    [row] = audit_rows(w.id, "withdrawal.reject")
    assert row.reason == "收款信息有误"


@pytest.mark.parametrize("action,data,status,words", [
    ("pay", {"reference": "  "}, 400, "凭证"), ("reject", {"reason": ""}, 400, "驳回理由"),
    ("approve", {}, 409, "没有人提交"), ("cancel-transfer", {}, 409, "没有进行中的转账")])
def test_bad_input_changes_nothing(rich, base, staff_browser, action, data, status, words):
    d = rich()
    w = ask(d, 3000)
    b = staff_browser("finance")
    res = post(b, url(base, w.id, action), data, htmx=True)
    assert res.status_code == status and words in res.text, res.text
    assert fresh(w.id).status == "requested" and balance(d) == (7000, 3000, 0)
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(AuditEntry).where(
        AuditEntry.target_type == "withdrawal")) == 0


def test_unknown_ids_and_roles(rich, base, staff_browser):
    w = ask(rich(), 3000)
    finance = staff_browser("finance")
    assert finance.get(url(base, 999999)).status_code == 404
    assert post(finance, url(base, 999999, "pay"), {"reference": "x1"}).status_code == 404
    for role in ("operator", "shipping"):
        b = staff_browser(role)
        assert b.get(f"{base}/admin/withdrawals").status_code == 403
        assert post(b, url(base, w.id, "pay"), {"reference": "网银 1"}).status_code == 403
    assert fresh(w.id).status == "requested"


def test_a_claw_back_owed_refuses_paying_from_the_admin(owing, base, staff_browser):
    d, w = owing
    b = staff_browser("finance")
    page = b.get(url(base, w.id))
    assert 'id="wd-owed"' in page.text and "¥100.00" in page.text
    for action, data in (("pay", {"reference": "网银 0001"}), ("transfer", {})):
        res = post(b, url(base, w.id, action), data, htmx=True)
        assert res.status_code == 409 and "待抵扣" in res.text
    assert fresh(w.id).status == "requested" and balance(d) == (-10000, 10000, 0)


def test_dual_approval_needs_a_second_staff_member(rich, base, staff_browser, dual):
    d = rich()
    w = ask(d, 3000)  # above ¥20.00
    first, second = staff_browser("finance"), staff_browser("owner")
    res = post(first, url(base, w.id, "pay"), {"reference": "网银 0009"})
    assert res.status_code == 302
    w = fresh(w.id)
    assert w.status == "requested" and w.approval_by == first.staff_name and balance(d) == (7000, 3000, 0)
    assert notices_of(d, "withdrawal_paid") == 0
    page = first.get(url(base, w.id))
    assert "待复核" in page.text and first.staff_name in page.text and "不能由你复核" in page.text
    refused = post(first, url(base, w.id, "approve"), htmx=True)
    assert refused.status_code == 403 and "另一位员工" in refused.text
    again = post(first, url(base, w.id, "pay"), {"reference": "网银 0010"}, htmx=True)
    assert again.status_code == 409 and "另一位员工复核" in again.text
    assert fresh(w.id).status == "requested"
    ok = post(second, url(base, w.id, "approve"), htmx=True)
    assert ok.status_code == 200 and "复核通过" in ok.text
    w = fresh(w.id)
    assert (w.status, w.reference, w.approved_by) == ("paid", "网银 0009", second.staff_name)
    assert balance(d) == (7000, 0, 3000) and notices_of(d, "withdrawal_paid") == 1
    assert [r.actor for r in audit_rows(w.id, "withdrawal.pay_request")] == [first.staff_name]
    assert [r.actor for r in audit_rows(w.id, "withdrawal.approve")] == [second.staff_name]
    # Below the threshold one person is enough.
    small = ask(d, 1000)
    assert post(first, url(base, small.id, "pay"), {"reference": "网银 0011"}).status_code == 302
    assert fresh(small.id).status == "paid"


def test_the_cli_is_an_actor_like_any_other(rich, app, base, staff_browser, dual):
    d = rich()
    w = ask(d, 3000)
    runner = app.test_cli_runner()
    out = runner.invoke(args=["withdrawals", "pay", str(w.id), "--reference", "网银 7"])
    assert out.exit_code == 0 and "approve" in out.output
    same = runner.invoke(args=["withdrawals", "approve", str(w.id)])
    assert same.exit_code != 0 and "另一位员工" in same.output
    b = staff_browser("finance")
    assert post(b, url(base, w.id, "approve")).status_code == 302
    assert fresh(w.id).status == "paid" and audit_rows(w.id, "withdrawal.pay_request")[0].actor.startswith("cli:")


def test_transfer_state_countdown_and_cancel(rich, base, staff_browser, jobs, settings):
    d = rich()
    w = ask(d, 3000)
    b = staff_browser("finance")
    res = post(b, url(base, w.id, "transfer"), htmx=True)
    assert res.status_code == 200
    jobs.run()
    w = fresh(w.id)
    assert w.status == "transferring" and w.package_info and w.transfer_state == "WAIT_USER_CONFIRM"
    page = b.get(url(base, w.id))
    assert "待分销商确认收款" in page.text and 'id="wd-countdown"' in page.text and "剩余 23 小时" in page.text
    # A second click: the same bill, no new one.
    again = post(b, url(base, w.id, "transfer"), htmx=True)
    assert again.status_code == 200 and "等待分销商确认收款" in again.text
    jobs.run()
    assert fresh(w.id).out_bill_no == w.out_bill_no and len(audit_rows(w.id, "withdrawal.transfer")) == 1
    # Cancel: WeChat Pay cancels (CANCELING → CANCELLED) and notifies; the money comes back.
    res = post(b, url(base, w.id, "cancel-transfer"), {"reason": "分销商要求改线下"}, htmx=True)
    assert res.status_code == 200
    jobs.run()
    w = fresh(w.id)
    assert (w.status, w.transfer_state) == ("failed", "CANCELLED") and balance(d) == (10000, 0, 0)
    assert bill_of(settings, w)["state"] == "CANCELLED"
    assert notices_of(d, "withdrawal_rejected") == 1
    assert len(audit_rows(w.id, "withdrawal.cancel_transfer")) == 1
    page = b.get(url(base, w.id))
    assert "已撤销" in page.text and "请求撤销转账" in page.text
    late = post(b, url(base, w.id, "cancel-transfer"), htmx=True)
    assert late.status_code == 409


def test_a_bill_left_unconfirmed_for_24_hours_is_cancelled_when_asked(rich, app, base, staff_browser, jobs,
                                                                     settings):
    d = rich()
    w = ask(d, 3000)
    b = staff_browser("finance")
    post(b, url(base, w.id, "transfer"))
    jobs.run()
    w = fresh(w.id)
    bill = bill_of(settings, w)
    bill["create_time"] = sandbox_wx.rfc3339(sandbox_wx.clock.now() - timedelta(hours=25))
    sandbox_wx.save_bill(bill)
    out = app.test_cli_runner().invoke(args=["withdrawals", "sync"])
    assert out.exit_code == 0, out.output
    jobs.run()
    w = fresh(w.id)
    assert (w.status, w.transfer_state) == ("failed", "CANCELLED") and balance(d) == (10000, 0, 0)
    assert bill_of(settings, w)["state"] == "CANCELLED"


@needs_postgres
def test_two_staff_paying_at_once_pay_once(rich, base, staff_browser):
    d = rich()
    w = ask(d, 3000)
    browsers = [staff_browser("finance"), staff_browser("owner")]
    barrier, codes, target = threading.Barrier(2), [], url(base, w.id, "pay")  # no ORM access in the threads

    def pay(b):
        barrier.wait(timeout=30)
        codes.append(post(b, target, {"reference": f"网银 {b.staff_name}"}, htmx=True).status_code)

    threads = [threading.Thread(target=pay, args=(b,)) for b in browsers]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sorted(codes) == [200, 409], codes
    assert fresh(w.id).status == "paid" and balance(d) == (7000, 0, 3000)
    assert len(audit_rows(w.id, "withdrawal.pay")) == 1 and notices_of(d, "withdrawal_paid") == 1


@needs_postgres
def test_transfer_clicked_twice_at_once_is_one_bill(rich, base, staff_browser, jobs):
    d = rich()
    w = ask(d, 3000)
    browsers = [staff_browser("finance"), staff_browser("owner")]
    barrier, codes, target = threading.Barrier(2), [], url(base, w.id, "transfer")

    def click(b):
        barrier.wait(timeout=30)
        codes.append(post(b, target, htmx=True).status_code)

    threads = [threading.Thread(target=click, args=(b,)) for b in browsers]
    [t.start() for t in threads]
    [t.join() for t in threads]
    jobs.run()
    assert codes == [200, 200]
    w = fresh(w.id)
    assert w.status == "transferring" and len(audit_rows(w.id, "withdrawal.transfer")) == 1
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(Withdrawal).where(
        Withdrawal.out_bill_no.is_not(None))) == 1
    assert balance(d) == (7000, 3000, 0)
