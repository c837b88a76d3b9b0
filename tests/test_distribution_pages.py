"""The distributor's H5 pages, walked by a browser against the live server,
logged in through the sandbox's WeChat OAuth; the merchant reviews with the
CLI."""
from __future__ import annotations

import re

import pytest
import requests
from sqlalchemy import func, select

from handlers import referrals, units
from models import Application, Unit, User, db
from test_h5_auth import log_in

GOOD = {"real_name": "赵六", "mobile": "13700001111", "reason": "朋友多，爱分享"}


def csrf(page: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def apply(browser, base, **fields) -> requests.Response:
    page = browser.get(f"{base}/h5/apply")
    return browser.post(f"{base}/h5/apply", data={"csrf_token": csrf(page.text), **GOOD, **fields},
                        allow_redirects=False)


def user_of(browser) -> User:
    db.session.rollback()
    return db.session.scalars(select(User).where(User.openid == browser.openid)).one()


def approve_all(app, jobs) -> None:
    runner = app.test_cli_runner()
    for a in db.session.scalars(select(Application).where(Application.status == "pending")).all():
        result = runner.invoke(args=["applications", "approve", str(a.id)])
        assert result.exit_code == 0, result.output
    jobs.run()
    db.session.rollback()


def test_apply_page_is_a_real_form(person, base):
    page = person("小周").get(f"{base}/h5/apply")
    assert page.status_code == 200
    for text in ("申请成为分销商", "真实姓名", "手机号", "邀请码", "提交申请", 'name="csrf_token"'):
        assert text in page.text


def test_a_form_without_its_csrf_token_is_refused(person, base):
    browser = person("小周")
    res = browser.post(f"{base}/h5/apply", data=GOOD)
    assert res.status_code == 400 and "页面已过期" in res.text
    assert db.session.scalar(select(func.count()).select_from(Application)) == 0


@pytest.mark.parametrize("fields,message", [
    ({"mobile": "1234"}, "手机号"), ({"real_name": ""}, "姓名"), ({"reason": ""}, "理由"),
    ({"invite_code": "ZZZZZZ"}, "邀请码无效"),
])
def test_bad_applications_are_explained_on_the_page(person, base, fields, message):
    res = apply(person("小周"), base, **fields)
    assert res.status_code == 400 and message in res.text
    assert GOOD["reason"] in res.text or not fields.get("reason", True)  # what was typed is kept
    assert db.session.scalar(select(func.count()).select_from(Application)) == 0


def test_apply_wait_approve_then_centre_qrcode_and_poster(app, person, base, jobs):
    browser = person("小周")
    res = apply(browser, base)
    assert res.status_code == 302
    status = browser.get(f"{base}/h5/apply").text
    assert "申请审核中" in status
    assert browser.get(f"{base}/h5/center", allow_redirects=False).status_code == 302  # not yet

    list_out = app.test_cli_runner().invoke(args=["applications", "list"]).output
    assert "赵六" in list_out and "13700001111" in list_out
    approve_all(app, jobs)

    centre = browser.get(f"{base}/h5/center")
    assert centre.status_code == 200 and "一级分销商" in centre.text
    distributor = referrals.distributor_of(user_of(browser).id)
    unit = distributor.unit
    assert unit.invite_code in centre.text
    qr = browser.get(f"{base}/h5/qrcode")
    assert qr.status_code == 200
    assert unit.invite_code in qr.text and f"/h5/u/{unit.slug}" in qr.text and "长按图片" in qr.text
    poster = browser.get(f"{base}/h5/qrcode/poster.png")
    assert poster.status_code == 200 and poster.headers["Content-Type"] == "image/png"
    assert poster.content.startswith(b"\x89PNG") and unit.qr_status == "ready"
    # Already a distributor: the apply page leads to the centre.
    assert browser.get(f"{base}/h5/apply", allow_redirects=False).headers["Location"].endswith("/h5/center")


def test_rejected_applicant_sees_why_and_when_to_retry(app, person, base):
    browser = person("小吴")
    apply(browser, base)
    a = db.session.scalars(select(Application)).one()
    out = app.test_cli_runner().invoke(args=["applications", "reject", str(a.id), "--reason", "请补充社群截图"])
    assert out.exit_code == 0, out.output
    page = browser.get(f"{base}/h5/apply").text
    assert "上次申请未通过：请补充社群截图" in page and "后可重新申请" in page and "提交申请" not in page


def test_cli_refuses_bad_decisions_clearly(app, person, base):
    runner = app.test_cli_runner()
    assert "no applications waiting" in runner.invoke(args=["applications", "list"]).output
    missing = runner.invoke(args=["applications", "approve", "424242"])
    assert missing.exit_code != 0 and "不存在" in missing.output
    apply(person("小郑"), base)
    a = db.session.scalars(select(Application)).one()
    no_reason = runner.invoke(args=["applications", "reject", str(a.id), "--reason", " "])
    assert no_reason.exit_code != 0 and "理由" in no_reason.output
    assert runner.invoke(args=["applications", "approve", str(a.id)]).exit_code == 0
    twice = runner.invoke(args=["applications", "reject", str(a.id), "--reason", "晚了"])
    assert twice.exit_code != 0 and "not allowed" in twice.output


def test_a_shared_unit_link_attributes_the_visitor_and_fills_the_team(app, person, base, jobs):
    owner = person("店主")
    apply(owner, base)
    approve_all(app, jobs)
    unit = referrals.distributor_of(user_of(owner).id).unit

    friend = person("朋友")
    page = friend.get(f"{base}/h5/u/{unit.slug}")
    assert page.status_code == 200 and unit.name in page.text and "为你推荐" in page.text
    assert user_of(friend).referrer_id == user_of(owner).id and user_of(friend).source == "link"

    team = owner.get(f"{base}/h5/team").text
    assert "朋友" in team and "链接" in team
    # The friend applies (no invite code field: already attributed) and becomes level 2.
    assert 'name="invite_code"' not in friend.get(f"{base}/h5/apply").text
    apply(friend, base)
    approve_all(app, jobs)
    recruit = referrals.distributor_of(user_of(friend).id)
    assert (recruit.level, recruit.parent.user.openid) == (2, owner.openid)
    assert "朋友" in owner.get(f"{base}/h5/team").text


def test_an_unknown_unit_link_is_the_merchants_shop(person, base):
    page = person("路人").get(f"{base}/h5/u/nosuchslug")
    assert page.status_code == 200 and units.merchant_unit().name in page.text


def test_customers_are_sent_to_apply_from_distributor_pages(person, base):
    browser = person("顾客")
    for path in ("center", "qrcode", "qrcode/poster.png", "team"):
        res = browser.get(f"{base}/h5/{path}", allow_redirects=False)
        assert res.status_code == 302 and res.headers["Location"].endswith("/h5/apply"), path


def test_unit_prepare_sweep_requeues_units_missing_a_code(app, person, base, jobs):
    owner = person("店主")
    apply(owner, base)
    runner = app.test_cli_runner()
    a = db.session.scalars(select(Application)).one()
    runner.invoke(args=["applications", "approve", str(a.id)])
    jobs.run()
    db.session.rollback()
    assert "0 unit(s) queued" in runner.invoke(args=["units", "prepare"]).output
    unit = db.session.scalars(select(Unit).where(Unit.distributor_id.is_not(None))).one()
    unit.qr_status, unit.poster_version = "pending", 0
    db.session.commit()
    assert "1 unit(s) queued" in runner.invoke(args=["units", "prepare"]).output
    jobs.run()
    db.session.rollback()
    assert db.session.get(Unit, unit.id).qr_status == "ready"


def test_the_apply_page_asks_for_the_profile_only_when_it_is_missing(sandbox_user, base):
    who = sandbox_user("小新")
    browser = requests.Session()
    log_in(browser, base, who.openid)  # snsapi_base: silent, no nickname
    res = browser.get(f"{base}/h5/apply", allow_redirects=False)
    assert res.status_code == 302 and "scope=snsapi_userinfo" in res.headers["Location"]
    assert browser.get(f"{base}/h5/shop", allow_redirects=False).status_code == 200  # others don't ask
    log_in(browser, base, who.openid, scope="snsapi_userinfo")
    assert browser.get(f"{base}/h5/apply", allow_redirects=False).status_code == 200


def test_the_me_page_renders_for_a_distributor_and_links_to_their_pages(app, person, base, jobs):
    owner = person("店主")
    apply(owner, base)
    approve_all(app, jobs)
    page = owner.get(f"{base}/h5/")
    assert page.status_code == 200 and "一级分销商" in page.text
    for path in ("/h5/center", "/h5/qrcode", "/h5/team", "/h5/income"):
        assert f'href="{path}"' in page.text, path
        assert owner.get(f"{base}{path}").status_code == 200, path
    customer = person("顾客").get(f"{base}/h5/")
    assert customer.status_code == 200 and 'href="/h5/apply"' in customer.text and 'href="/h5/team"' not in customer.text


@pytest.mark.parametrize("scope", ["snsapi_base", "snsapi_userinfo"])
def test_opening_a_unit_link_then_following_tells_the_distributor_once_with_the_customers_name(
        app, person, sandbox_user, base, jobs, wechat, scope):
    from handlers.clock import now
    from models import Notification, SandboxMessage, SandboxUser

    owner = person("店主")
    apply(owner, base)
    approve_all(app, jobs)
    unit = referrals.distributor_of(user_of(owner).id).unit
    stranger = sandbox_user("新朋友", subscribed=False)
    friend = requests.Session()
    log_in(friend, base, stranger.openid, scope=scope)  # as a link opened in WeChat does
    friend.openid = stranger.openid
    assert friend.get(f"{base}/h5/u/{unit.slug}").status_code == 200
    following = db.session.get(SandboxUser, stranger.id)
    following.subscribed, following.subscribe_time, following.last_message_at = True, now(), now()
    db.session.commit()
    assert wechat.push(wechat.subscribe(stranger.openid)).status == 200
    jobs.run()

    customer = user_of(friend)
    name = "新朋友" if scope == "snsapi_userinfo" else customer.display_name
    assert (customer.referrer_id, customer.source, customer.is_subscribed) == (user_of(owner).id, "link", True)
    told = db.session.scalars(select(Notification).where(Notification.kind == "new_member")).all()
    assert [(n.user_id, n.body) for n in told] == [(user_of(owner).id, f"{name} 通过你的推广加入了你的团队")]
    messages = db.session.scalars(select(SandboxMessage).where(SandboxMessage.openid == owner.openid,
                                                               SandboxMessage.msg_type == "template")).all()
    assert [m.body["data"]["thing1"]["value"] for m in messages
            if m.body["template_id"] == "TM_new_member"] == [name]
    assert name in owner.get(f"{base}/h5/team").text
    assert name in owner.get(f"{base}/h5/notifications").text
