"""The admin's 分销申请 pages (issue 10): the queue, the detail, approve,
reject with a preset or free reason, bulk decisions previewed first, and two
staff deciding at once. Real HTTP against the live server, as staff browsers."""
from __future__ import annotations

import re
import threading
from datetime import datetime, timedelta

import pytest
from sqlalchemy import event, func, select

from admin_helpers import log_in, make_staff, post, staff_browser, token  # noqa: F401
from conftest import needs_postgres
from distribution_helpers import make_distributor, make_user
from handlers import applications, audit, outbox, referrals
from handlers.clock import CHINA, now
from models import Application, AuditEntry, Distributor, Notification, Source, db

FORM = ("李四", "13912345678", "我有 500 人的宝妈群")


def applied(nickname: str = "申请人", real_name: str = "李四", mobile: str = "13912345678",
            invite_code: str = "", at: datetime | None = None, qr_of: Distributor | None = None) -> Application:
    user = make_user(nickname)
    if qr_of is not None:
        referrals.attribute_referral(user, Source.QR, qr_of.unit.scene)
    application = applications.apply_for_distributor(user, real_name, mobile, "想分享好东西", invite_code, at=at)
    outbox.commit()
    return application


def row_ids(page: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr id="application-(\d+)"', page)]


def row_html(page: str, application_id: int) -> str:
    found = re.search(rf'<tr id="application-{application_id}">(.*?)</tr>', page, re.S)
    assert found, f"no row for application {application_id}"
    return found.group(1)


def fresh(application_id: int) -> Application:
    db.session.rollback()
    return db.session.get(Application, application_id)


def count(model, *where) -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(model).where(*where))


def audits(application_id: int) -> list[AuditEntry]:
    db.session.rollback()
    return list(db.session.scalars(select(AuditEntry).where(
        AuditEntry.target_type == "application", AuditEntry.target_id == str(application_id))
        .order_by(AuditEntry.id)))


def notices(user_id: int) -> list[Notification]:
    db.session.rollback()
    return list(db.session.scalars(select(Notification).where(
        Notification.user_id == user_id, Notification.kind.like("application_%"))))


# -- the queue ---------------------------------------------------------------------------

def test_queue_shows_waiting_applications_oldest_first_with_inviter_and_source(app, base, staff_browser):
    top = make_distributor("推荐人小红")
    organic = applied("自然来的")
    invited = applied("被邀请的", invite_code=top.unit.invite_code)
    scanned = applied("扫码来的", qr_of=top)
    done = applied("已处理的")
    applications.reject_application(done.id, "资料不完整", actor=audit.SYSTEM)
    outbox.commit()

    page = staff_browser("operator").get(f"{base}/admin/applications")
    assert page.status_code == 200 and "分销申请" in page.text
    assert row_ids(page.text) == [organic.id, invited.id, scanned.id]  # the queue's head first
    assert "自然进入" in row_html(page.text, organic.id) and "无" in row_html(page.text, organic.id)
    assert "邀请码" in row_html(page.text, invited.id) and "张三" in row_html(page.text, invited.id)
    assert "推荐人小红" in row_html(page.text, scanned.id) and "扫分销商二维码" in row_html(page.text, scanned.id)
    assert "已等待" in row_html(page.text, organic.id) and "13912345678" in row_html(page.text, organic.id)
    assert 'data-check-all="ids"' in page.text and 'form="bulk-form"' in page.text


def test_filters_status_search_and_dates(app, base, staff_browser):
    b = staff_browser("owner")
    old = applied("老王", real_name="王大锤", mobile="13700001111", at=now() - timedelta(days=10))
    mid = applied("Lucy_小美", real_name="赵小美", mobile="13800002222", at=now() - timedelta(days=3))
    new = applied("阿强", real_name="钱强", mobile="13900003333")
    applications.approve_application(mid.id, actor=audit.SYSTEM)
    outbox.commit()

    def ids(**args) -> list[int]:
        page = b.get(f"{base}/admin/applications", params=args)
        assert page.status_code == 200, page.text
        return row_ids(page.text)

    assert ids() == [old.id, new.id]
    assert ids(status="approved") == [mid.id]
    assert ids(status="rejected") == []
    assert ids(status="all") == [new.id, mid.id, old.id]  # decided lists come newest first
    assert ids(status="all", order="oldest") == [old.id, mid.id, new.id]
    assert ids(status="all", q="大锤") == [old.id]       # real name
    assert ids(status="all", q="0000222") == [mid.id]    # part of a mobile
    assert ids(status="all", q="lucy") == [mid.id]       # nickname, any case
    assert ids(status="all", q="%") == []                # a wildcard is a character
    day = lambda d: (now() - timedelta(days=d)).astimezone(CHINA).date().isoformat()  # noqa: E731
    assert ids(status="all", date_from=day(4)) == [new.id, mid.id]
    assert ids(status="all", date_from=day(11), date_to=day(5)) == [old.id]
    assert ids(status="all", date_to=day(3)) == [mid.id, old.id]


@pytest.mark.parametrize("args,message", [
    ({"status": "bogus"}, "状态只能是"), ({"date_from": "2026-13-01"}, "开始日期格式"),
    ({"date_to": "yesterday"}, "结束日期格式"), ({"date_from": "2026-12-02", "date_to": "2026-12-01"}, "不能晚于"),
    ({"order": "random"}, "排序只能是"), ({"q": "长" * 40}, "搜索内容"),
])
def test_bad_filters_get_a_clear_message(app, base, staff_browser, args, message):
    page = staff_browser("operator").get(f"{base}/admin/applications", params=args)
    assert page.status_code == 400 and message in page.text


def test_pages_of_fifty_both_ways(app, base, staff_browser):
    b = staff_browser("operator")
    made = [applied(f"用户{i}").id for i in range(53)]
    first = b.get(f"{base}/admin/applications")
    assert row_ids(first.text) == made[:50]
    later = re.search(r'href="([^"]*after=(\d+)[^"]*)"', first.text)
    assert later and int(later.group(2)) == made[49]
    second = b.get(base + later.group(1).replace("&amp;", "&"))
    assert row_ids(second.text) == made[50:] and "下一页" not in second.text and "回到第一页" in second.text
    newest = b.get(f"{base}/admin/applications", params={"order": "newest"})
    assert row_ids(newest.text) == made[::-1][:50]
    older = re.search(r'href="([^"]*before=(\d+)[^"]*)"', newest.text)
    assert older and int(older.group(2)) == made[3]
    assert row_ids(b.get(base + older.group(1).replace("&amp;", "&")).text) == made[2::-1]
    for cursor in ({"after": "abc"}, {"before": "-1"}, {"after": "99999999999"}):  # ignored, not a 5xx
        assert b.get(f"{base}/admin/applications", params=cursor).status_code == 200


def test_a_page_of_fifty_takes_no_more_queries_than_a_page_of_two(app, base, staff_browser):
    b = staff_browser("operator")
    top = make_distributor("上级")
    middle = make_distributor("中间", referrer=top)
    for i in range(2):
        applied(f"少{i}", invite_code=middle.unit.invite_code)
    statements: list[str] = []

    def counted(*args) -> None:
        # What the page reads about applicants and inviters (the staff
        # session's queries, and any other thread's, are not the point).
        if re.search(r"\b(applications|distributors|users|units|referral_touches)\b", args[2]):
            statements.append(args[2])

    def queries() -> int:
        statements.clear()
        event.listen(db.engine, "before_cursor_execute", counted)
        try:
            assert b.get(f"{base}/admin/applications").status_code == 200
        finally:
            event.remove(db.engine, "before_cursor_execute", counted)
        return len(statements)

    few = queries()
    for i in range(48):
        applied(f"多{i}", invite_code=(top if i % 2 else middle).unit.invite_code)
    assert queries() == few <= 2, statements


def test_detail_shows_the_form_history_inviter_and_decision(app, base, staff_browser):
    top = make_distributor("介绍人")
    first = applied("回头客", invite_code=top.unit.invite_code)
    applications.reject_application(first.id, "资料不完整", actor=audit.Actor("店长"))
    outbox.commit()
    second = applications.apply_for_distributor(first.user, *FORM, at=now() + timedelta(days=30))
    outbox.commit()
    b = staff_browser("operator")
    page = b.get(f"{base}/admin/applications/{second.id}")
    assert page.status_code == 200
    for text in ("李四", "13912345678", "我有 500 人的宝妈群", "介绍人", "邀请码", f"#{first.id}", "资料不完整",
                 "二级分销商，上级：张三", "通过", "驳回"):
        assert text in page.text, text
    old = b.get(f"{base}/admin/applications/{first.id}")
    assert "店长" in old.text and "已驳回" in old.text and "操作记录" in old.text


@pytest.mark.parametrize("path", ["0", "abc", "-1", "1.0", "%EF%BC%91", "99999999999", "424242"])
def test_other_id_forms_are_404(app, base, staff_browser, path):
    b = staff_browser("owner")
    assert b.get(f"{base}/admin/applications/{path}").status_code == 404
    assert post(b, f"{base}/admin/applications/{path}/approve").status_code == 404
    assert post(b, f"{base}/admin/applications/{path}/reject", {"reason": "x"}).status_code == 404


# -- deciding one --------------------------------------------------------------------------

def test_approve_from_the_list_tells_the_applicant_and_is_audited(app, base, staff_browser):
    a = applied("小新")
    b = staff_browser("operator", name="xiaoli")
    back = "/admin/applications?status=pending"
    res = post(b, f"{base}/admin/applications/{a.id}/approve", {"next": back})
    assert res.status_code == 302 and res.headers["Location"].endswith(back)
    assert "已通过" in b.get(base + back).text  # the flashed message
    assert fresh(a.id).status == "approved" and fresh(a.id).decided_by == "xiaoli"
    assert count(Distributor, Distributor.user_id == a.user_id) == 1
    assert [n.kind for n in notices(a.user_id)] == ["application_approved"]
    [entry] = audits(a.id)
    assert (entry.action, entry.actor, entry.ip) == ("application.approve", "xiaoli", "127.0.0.1")
    assert entry.staff_id is not None and entry.before == {"status": "pending"}
    assert entry.after["status"] == "approved" and entry.after["level"] == 1


def test_htmx_approve_replaces_the_row_and_a_second_click_is_one_effect(app, base, staff_browser):
    a = applied()
    b = staff_browser("owner")
    res = post(b, f"{base}/admin/applications/{a.id}/approve", htmx=True)
    assert res.status_code == 200 and f'<tr id="application-{a.id}">' in res.text
    assert "已通过" in res.text and "/approve" not in res.text  # no buttons left on the row
    again = post(b, f"{base}/admin/applications/{a.id}/approve", htmx=True)
    assert again.status_code == 409 and "ad-alert" in again.text and "未重复处理" in again.text
    late_reject = post(b, f"{base}/admin/applications/{a.id}/reject", {"preset": "资料不完整"})
    assert late_reject.status_code == 409 and "已于" in late_reject.text and "通过" in late_reject.text
    assert len(audits(a.id)) == 1 and len(notices(a.user_id)) == 1
    assert count(Distributor, Distributor.user_id == a.user_id) == 1


@pytest.mark.parametrize("preset,reason,told", [
    ("手机号有误", "", "手机号有误"),
    ("", "请补充社群截图", "请补充社群截图"),
    ("资料不完整", "  请补充   社群截图 ", "资料不完整：请补充 社群截图"),
])
def test_reject_with_a_preset_or_free_reason(app, base, staff_browser, preset, reason, told):
    a = applied()
    b = staff_browser("operator", name="reviewer")
    res = post(b, f"{base}/admin/applications/{a.id}/reject", {"preset": preset, "reason": reason}, htmx=True)
    assert res.status_code == 200 and "已驳回" in res.text and told in res.text
    assert fresh(a.id).status == "rejected" and fresh(a.id).reject_reason == told
    [notice] = notices(a.user_id)
    assert notice.kind == "application_rejected" and told in notice.body
    [entry] = audits(a.id)
    assert (entry.action, entry.actor, entry.reason) == ("application.reject", "reviewer", told)
    assert (entry.before, entry.after) == ({"status": "pending"}, {"status": "rejected"})


def test_reject_from_the_detail_page_answers_its_decision_card(app, base, staff_browser):
    a = applied()
    b = staff_browser("owner")
    res = post(b, f"{base}/admin/applications/{a.id}/reject", {"preset": "暂不符合条件", "from": "detail"},
               htmx=True)
    assert res.status_code == 200 and 'id="application-decision"' in res.text and "暂不符合条件" in res.text
    plain = post(b, f"{base}/admin/applications/{applied('二号').id}/approve",
                 {"next": "https://evil.example.com/admin/applications"})
    assert plain.status_code == 302 and plain.headers["Location"].startswith("/admin/applications/")


@pytest.mark.parametrize("data,message", [
    ({"reason": ""}, "驳回理由"), ({"reason": "    "}, "驳回理由"), ({"reason": "长" * 201}, "200 字"),
    ({"preset": "资料不完整", "reason": "长" * 200}, "200 字"), ({"preset": "看不顺眼"}, "列表中选择"),
])
def test_bad_reasons_change_nothing(app, base, staff_browser, data, message):
    a = applied()
    b = staff_browser("operator")
    for htmx in (False, True):
        res = post(b, f"{base}/admin/applications/{a.id}/reject", data, htmx=htmx)
        assert res.status_code == 400 and message in res.text
    assert fresh(a.id).status == "pending" and audits(a.id) == [] and notices(a.user_id) == []


def test_a_forged_or_missing_csrf_token_changes_nothing(app, base, staff_browser):
    a = applied()
    b = staff_browser("owner")
    for body, headers in (({}, {}), ({"csrf_token": "forged"}, {}), ({}, {"HX-Request": "true", "X-CSRFToken": "x"})):
        res = b.post(f"{base}/admin/applications/{a.id}/approve", data=body, headers=headers, allow_redirects=False)
        assert res.status_code == 400 and "页面已过期" in res.text
    assert fresh(a.id).status == "pending" and audits(a.id) == []


@pytest.mark.parametrize("role", ["finance", "shipping"])
def test_roles_without_the_permission_get_403_and_change_nothing(app, base, staff_browser, role):
    a = applied()
    b = staff_browser(role)
    assert b.get(f"{base}/admin/applications").status_code == 403
    assert b.get(f"{base}/admin/applications/{a.id}").status_code == 403
    assert post(b, f"{base}/admin/applications/{a.id}/approve").status_code == 403
    assert post(b, f"{base}/admin/applications/{a.id}/reject", {"preset": "资料不完整"}).status_code == 403
    for step in ("preview", "confirm"):
        res = post(b, f"{base}/admin/applications/bulk", {"ids": [a.id], "decision": "approve", "step": step})
        assert res.status_code == 403
    assert fresh(a.id).status == "pending" and audits(a.id) == [] and notices(a.user_id) == []


def test_logged_out_is_sent_to_login(app, base):
    import requests

    res = requests.get(f"{base}/admin/applications", allow_redirects=False)
    assert res.status_code == 302 and "/admin/login" in res.headers["Location"]


# -- bulk -------------------------------------------------------------------------------------

def test_bulk_preview_changes_nothing_and_confirm_decides_each_once(app, base, staff_browser):
    top = make_distributor("一级甲")
    organic = applied("自然")
    recruit = applied("下线", invite_code=top.unit.invite_code)
    decided = applied("早处理了")
    applications.reject_application(decided.id, "重复申请", actor=audit.Actor("别人"))
    outbox.commit()
    b = staff_browser("operator", name="bulker")
    selection = [organic.id, recruit.id, decided.id, 987654]
    before = count(AuditEntry)

    preview = post(b, f"{base}/admin/applications/bulk", {"ids": selection, "decision": "approve",
                                                          "step": "preview"})
    assert preview.status_code == 200
    assert "将通过，成为一级分销商" in preview.text and "将通过，成为二级分销商，上级：张三" in preview.text
    assert "已驳回（别人），将跳过" in preview.text and "申请不存在，将跳过" in preview.text
    assert "确认通过 2 份" in preview.text
    assert fresh(organic.id).status == "pending" and count(AuditEntry) == before

    confirm = {"ids": re.findall(r'name="ids" value="(\d+)"', preview.text), "decision": "approve",
               "reason": "", "step": "confirm"}
    assert sorted(map(int, confirm["ids"])) == sorted(selection)
    done = post(b, f"{base}/admin/applications/bulk", confirm)
    assert done.status_code == 200 and "完成 2 份，未处理 2 份" in done.text
    outcome = dict(re.findall(r'data-id="(\d+)" data-done="(\w+)"', done.text))
    assert outcome == {str(organic.id): "yes", str(recruit.id): "yes", str(decided.id): "no", "987654": "no"}
    assert "申请 987654 不存在" in done.text and "由 别人 驳回，未重复处理" in done.text
    assert fresh(recruit.id).status == "approved" and fresh(decided.id).status == "rejected"
    assert db.session.scalars(select(Distributor).where(Distributor.user_id == recruit.user_id)).one().level == 2
    assert [e.actor for e in audits(organic.id)] == ["bulker"] and len(audits(decided.id)) == 1

    again = post(b, f"{base}/admin/applications/bulk", confirm)  # the same confirm sent twice
    assert again.status_code == 200 and "完成 0 份" in again.text
    assert len(audits(organic.id)) == 1 and len(notices(organic.user_id)) == 1


def test_bulk_reject_with_a_preset_tells_each_applicant(app, base, staff_browser):
    chosen = [applied(f"驳回{i}") for i in range(3)]
    b = staff_browser("owner")
    ids = [a.id for a in chosen]
    preview = post(b, f"{base}/admin/applications/bulk", {"ids": ids, "decision": "reject", "preset": "资料不完整",
                                                          "reason": "请补充", "step": "preview"})
    assert preview.status_code == 200 and preview.text.count("将驳回，理由：资料不完整：请补充") == 3
    assert all(fresh(i).status == "pending" for i in ids)
    done = post(b, f"{base}/admin/applications/bulk", {"ids": ids, "decision": "reject", "step": "confirm",
                                                       "reason": "资料不完整：请补充"})
    assert done.status_code == 200 and "完成 3 份" in done.text
    for a in chosen:
        assert fresh(a.id).reject_reason == "资料不完整：请补充"
        assert "资料不完整：请补充" in notices(a.user_id)[0].body
        assert audits(a.id)[0].reason == "资料不完整：请补充"


@pytest.mark.parametrize("data,message", [
    ({"decision": "approve"}, "请先勾选"),
    ({"ids": ["1", "x"], "decision": "approve"}, "编号有误"),
    ({"ids": [str(i) for i in range(1, 102)], "decision": "approve"}, "最多处理 100 份"),
    ({"ids": ["1"], "decision": "delete"}, "批量通过或批量驳回"),
    ({"ids": ["1"], "decision": "reject"}, "驳回理由"),
    ({"ids": ["1"], "decision": "reject", "reason": "长" * 201}, "200 字"),
])
def test_bulk_bad_input_changes_nothing(app, base, staff_browser, data, message):
    a = applied()
    b = staff_browser("operator")
    for step in ("preview", "confirm"):
        res = post(b, f"{base}/admin/applications/bulk", {**data, "step": step})
        assert res.status_code == 400 and message in res.text, res.text
    assert fresh(a.id).status == "pending" and count(AuditEntry, AuditEntry.target_type == "application") == 0


# -- the CLI and automatic review are audited too ------------------------------------------

def test_cli_decisions_are_audited_as_the_operator(app):
    a, r = applied("命令行一"), applied("命令行二")
    runner = app.test_cli_runner()
    assert runner.invoke(args=["applications", "approve", str(a.id)]).exit_code == 0
    assert runner.invoke(args=["applications", "reject", str(r.id), "--reason", "暂不符合条件"]).exit_code == 0
    [approved], [rejected] = audits(a.id), audits(r.id)
    assert approved.actor.startswith("cli:") and approved.action == "application.approve"
    assert rejected.reason == "暂不符合条件" and fresh(r.id).decided_by == rejected.actor


# -- races (PostgreSQL) -------------------------------------------------------------------------

def _at_once(*calls):
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def run(i, call):
        barrier.wait()
        results[i] = call()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    return results


def _poster(b, base):
    csrf = token(b.get(f"{base}/admin/applications").text)

    def send(path: str, data: dict, htmx: bool = False):
        headers = {"HX-Request": "true", "X-CSRFToken": csrf} if htmx else {}
        return lambda: b.post(f"{base}{path}", data={**data, "csrf_token": csrf}, headers=headers,
                              allow_redirects=False)

    return send


@needs_postgres
def test_approve_and_reject_at_once_give_one_outcome(app, base, staff_browser):
    one, two = _poster(staff_browser("owner"), base), _poster(staff_browser("operator"), base)
    for i in range(5):
        a = applied(f"并发{i}")
        approve = one(f"/admin/applications/{a.id}/approve", {}, htmx=bool(i % 2))
        reject = two(f"/admin/applications/{a.id}/reject", {"preset": "资料不完整"}, htmx=bool(i % 2))
        results = _at_once(approve, reject)
        codes = sorted(r.status_code for r in results)
        assert codes in ([200, 409], [302, 409]), [(r.status_code, r.text[:200]) for r in results]
        assert "未重复处理" in next(r.text for r in results if r.status_code == 409)
        status = fresh(a.id).status
        [entry] = audits(a.id)
        assert entry.action == {"approved": "application.approve", "rejected": "application.reject"}[status]
        assert len(notices(a.user_id)) == 1
        assert count(Distributor, Distributor.user_id == a.user_id) == (1 if status == "approved" else 0)


@needs_postgres
def test_two_bulk_confirms_of_one_selection_decide_each_once(app, base, staff_browser):
    chosen = [applied(f"批量并发{i}").id for i in range(12)]
    one, two = _poster(staff_browser("owner"), base), _poster(staff_browser("operator"), base)
    data = {"ids": chosen, "decision": "approve", "step": "confirm"}
    first, second = _at_once(one("/admin/applications/bulk", data), two("/admin/applications/bulk", data))
    assert first.status_code == second.status_code == 200, (first.text[:300], second.text[:300])
    done = [dict(re.findall(r'data-id="(\d+)" data-done="(\w+)"', r.text)) for r in (first, second)]
    for application_id in map(str, chosen):
        assert sorted(d[application_id] for d in done) == ["no", "yes"]
    assert count(AuditEntry, AuditEntry.action == "application.approve") == len(chosen)
    assert count(Distributor) == len(chosen)
    assert count(Notification, Notification.kind == "application_approved") == len(chosen)


def test_automatic_approval_is_audited_as_the_system(live, app):
    from app import create_app
    from app.config import build
    from conftest import make_raw_config

    s = live.config["SETTINGS"]
    other = create_app(build(make_raw_config(s["app"]["base_url"], s["app"]["database_url"],
                                             distribution={"review": "auto"}), {}, "tests"))
    try:
        with other.app_context():
            a = applied("自动通过")
            [entry] = audits(a.id)
            assert (entry.actor, entry.staff_id, entry.action) == ("system", None, "application.approve")
            assert entry.reason == "自动审核通过" and fresh(a.id).decided_by == "auto"
    finally:
        with other.app_context():
            db.engine.dispose()
