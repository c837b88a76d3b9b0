"""The bot's side of distribution (issue: referral attribution): QR follows
and scans attribute, invite codes bind, and the commands know who asks."""
from __future__ import annotations

import itertools
import time

from sqlalchemy import func, select

from distribution_helpers import make_distributor
from handlers import applications, outbox
from models import ReferralTouch, SandboxMessage, Unit, User, db


def user_row(openid: str) -> User:
    db.session.rollback()
    return db.session.scalars(select(User).where(User.openid == openid)).one()


_clock = itertools.count(int(time.time()))


def click(wechat, openid: str, key: str) -> dict:
    """A menu tap; each at its own CreateTime, as taps seconds apart are
    (the same user, second and key is WeChat retrying)."""
    return {**wechat.click(openid, key), "CreateTime": next(_clock)}


def reply(delivery) -> str:
    assert delivery.status == 200, delivery.body
    return delivery.reply["Content"]


def test_following_through_a_distributors_qr_code_binds_and_greets_with_their_shop(app, wechat, sandbox_user):
    d = make_distributor("阿强")
    newcomer = sandbox_user("小美", subscribed=False)
    text = reply(wechat.push(wechat.subscribe(newcomer.openid, d.unit.scene)))
    assert "阿强 邀请你来逛逛" in text and f"/h5/u/{d.unit.slug}" in text
    me = user_row(newcomer.openid)
    assert me.referrer_id == d.user_id and me.source == "qr" and me.subscription == "subscribed"


def test_a_retried_qr_follow_is_attributed_and_logged_once(app, wechat, sandbox_user):
    d = make_distributor()
    newcomer = sandbox_user("小美", subscribed=False)
    push = wechat.subscribe(newcomer.openid, d.unit.scene)
    first, again = wechat.push(push), wechat.push(push)
    assert first.reply == again.reply
    assert db.session.scalar(select(func.count()).select_from(ReferralTouch)) == 1


def test_an_existing_follower_scanning_is_bound_by_the_first_distributor_only(app, wechat, sandbox_user):
    first, second = make_distributor("甲"), make_distributor("乙")
    follower = sandbox_user("老粉")
    wechat.push(wechat.subscribe(follower.openid))
    assert user_row(follower.openid).referrer_id is None
    assert "欢迎来到「甲的小店」" in reply(wechat.push(wechat.scan(follower.openid, first.unit.scene)))
    wechat.push(wechat.scan(follower.openid, second.unit.scene))
    assert user_row(follower.openid).referrer_id == first.user_id
    outcomes = db.session.scalars(select(ReferralTouch.outcome).order_by(ReferralTouch.id)).all()
    assert outcomes == ["bound", "already"]


def test_unknown_or_foreign_scenes_are_organic_never_an_error(app, wechat, sandbox_user):
    make_distributor()
    for scene in ("123", "qrscene_", "u" + "A" * 21, "x" * 64, "中文场景"):
        person = sandbox_user("路人", subscribed=False)
        text = reply(wechat.push(wechat.subscribe(person.openid, scene)))
        assert "欢迎关注" in text
        assert user_row(person.openid).source == "organic"
    assert set(db.session.scalars(select(ReferralTouch.outcome)).all()) == {"unknown"}


def test_scanning_your_own_code_binds_nobody(app, wechat, sandbox_user):
    me = sandbox_user("店主")
    d = make_distributor("店主", openid=me.openid)
    assert "你自己的小店二维码" in reply(wechat.push(wechat.scan(me.openid, d.unit.scene)))
    assert user_row(me.openid).referrer_id is None


def test_an_invite_code_sent_as_text_binds_the_sender_and_says_to_whom(app, wechat, sandbox_user):
    d, other = make_distributor("阿强"), make_distributor("阿珍")
    person = sandbox_user("小美")
    text = reply(wechat.push(wechat.text(person.openid, d.unit.invite_code.lower())))
    assert "绑定成功" in text and "阿强" in text and f"/h5/u/{d.unit.slug}" in text
    assert "已经有推荐人" in reply(wechat.push(wechat.text(person.openid, other.unit.invite_code)))
    assert user_row(person.openid).referrer_id == d.user_id
    assert user_row(person.openid).source == "invite"


def test_code_shaped_text_that_is_no_code_is_explained(app, wechat, sandbox_user):
    person = sandbox_user("小美")
    assert "没有找到这个邀请码" in reply(wechat.push(wechat.text(person.openid, "ABCDEF")))
    assert user_row(person.openid).referrer_id is None


def test_apply_command_follows_the_application(app, wechat, sandbox_user, settings):
    person = sandbox_user("小美")
    base = settings["app"]["base_url"]
    assert f'href="{base}/h5/apply"' in reply(wechat.push(click(wechat, person.openid, "APPLY")))
    a = applications.apply_for_distributor(user_row(person.openid), "王小美", "13812345678", "喜欢分享")
    outbox.commit()
    assert "正在审核中" in reply(wechat.push(click(wechat, person.openid, "APPLY")))
    applications.reject_application(a.id, "请补充资料", actor=applications.Actor("merchant"))
    outbox.commit()
    assert "请补充资料" in reply(wechat.push(click(wechat, person.openid, "APPLY")))


def test_the_applicant_is_told_the_decision_in_wechat(app, wechat, sandbox_user, jobs):
    person = sandbox_user("小美")
    wechat.push(wechat.subscribe(person.openid))
    a = applications.apply_for_distributor(user_row(person.openid), "王小美", "13812345678", "喜欢分享")
    outbox.commit()
    applications.reject_application(a.id, "请补充资料", actor=applications.Actor("merchant"))
    outbox.commit()
    jobs.run()
    db.session.rollback()
    told = db.session.scalars(select(SandboxMessage).where(SandboxMessage.openid == person.openid,
                                                          SandboxMessage.direction == "template")).all()
    assert [m.body["template_id"] for m in told] == ["TM_application_rejected"]
    assert told[0].body["data"]["thing1"]["value"] == "请补充资料"
    assert "/h5/apply" in told[0].body["url"]


def test_distributor_commands_lead_to_their_centre(app, wechat, sandbox_user, settings):
    person = sandbox_user("店主")
    d = make_distributor("店主", openid=person.openid)
    base = settings["app"]["base_url"]
    for key in ("APPLY", "CENTER"):
        assert f'href="{base}/h5/center"' in reply(wechat.push(click(wechat, person.openid, key))), key
    income = reply(wechat.push(click(wechat, person.openid, "MY_INCOME")))
    assert "可提现：0.00" in income and "累计收入：0.00" in income and f'href="{base}/h5/income"' in income
    assert "一级分销商" in reply(wechat.push(click(wechat, person.openid, "CENTER")))
    assert d.unit.name in reply(wechat.push(click(wechat, person.openid, "CENTER")))


def test_my_qrcode_sends_the_poster_then_replies_with_it_at_once(app, wechat, sandbox_user, jobs):
    person = sandbox_user("店主")
    wechat.push(wechat.subscribe(person.openid))
    d = make_distributor("店主", openid=person.openid)
    jobs.run()  # the unit's QR code and poster
    first = wechat.push(click(wechat, person.openid, "MY_QRCODE"))
    assert first.reply["MsgType"] == "text" and "正在生成" in first.reply["Content"]
    assert d.unit.invite_code in first.reply["Content"]
    jobs.run()  # upload once, send as a customer-service image
    db.session.rollback()
    sent = db.session.scalars(select(SandboxMessage).where(SandboxMessage.openid == person.openid,
                                                          SandboxMessage.msg_type == "image")).all()
    assert len(sent) == 1
    media_id = sent[0].body["media_id"]
    again = wechat.push(click(wechat, person.openid, "MY_QRCODE"))
    assert again.reply["MsgType"] == "image"
    assert again.reply["Image"][0]["MediaId"] == media_id  # uploaded once, reused


def test_a_scan_in_the_simulator_of_a_real_unit_code_attributes(app, sandbox_user, settings, jobs):
    """The unit's permanent code was made on the (sandbox) platform; scanning
    its ticket in the phone simulator goes through /wx like WeChat does."""
    import requests

    d = make_distributor("阿强")
    jobs.run()
    db.session.rollback()
    unit = db.session.get(Unit, d.unit.id)
    assert unit.qr_status == "ready" and unit.qr_ticket
    base = settings["app"]["base_url"]
    browser = requests.Session()
    browser.post(f"{base}/sandbox/users", data={"nickname": "扫码的人"})
    browser.post(f"{base}/sandbox/scan", data={"ticket": unit.qr_ticket})
    page = browser.get(f"{base}/sandbox/").text
    assert "阿强 邀请你来逛逛" in page
    newest = db.session.scalars(select(User).order_by(User.id.desc())).first()
    assert newest.referrer_id == d.user_id


def test_in_the_simulator_the_reply_comes_before_what_is_sent_after_it(app, settings, jobs):
    import requests

    base = settings["app"]["base_url"]
    browser = requests.Session()
    browser.post(f"{base}/sandbox/users", data={"nickname": "店主"})
    browser.post(f"{base}/sandbox/follow")
    openid = browser.cookies["sandbox_openid"]
    make_distributor("店主", openid=openid)
    jobs.run()
    browser.post(f"{base}/sandbox/click", data={"key": "MY_QRCODE", "name": "我的二维码"})
    jobs.run()
    db.session.rollback()
    chat = db.session.scalars(select(SandboxMessage).where(SandboxMessage.openid == openid)
                              .order_by(SandboxMessage.id)).all()
    kinds = [(m.direction, m.msg_type) for m in chat if m.direction != "user"]
    assert kinds[-2:] == [("reply", "text"), ("custom", "image")]


def test_my_income_shows_the_distributors_figures(app, wechat, sandbox_user):
    from handlers import catalogue, orders, payments
    from handlers.payments import GatewayTrade
    from models import PayChannel

    person = sandbox_user("店主")
    d = make_distributor("店主", openid=person.openid)
    p = catalogue.add_product("礼盒", 12345, 5)
    order = orders.place_order(orders.Buyer(user=d.user), {p.id: 2}, orders.Receiver.checked(
        "张三", "13800138000", "上海市徐汇区漕溪北路 1 号"))
    outbox.commit()
    payments.mark_paid(GatewayTrade(PayChannel.WECHATPAY, order.order_no, True, "t1", order.total_fen))
    outbox.commit()
    text = reply(wechat.push(click(wechat, person.openid, "MY_INCOME")))
    assert "冻结中：24.69" in text and "可提现：0.00" in text  # 24690 × 10 % = 2469 fen
