"""A follow through a distributor's QR code (issue 13, item 4): answered in
two statements; the follower's profile and the distributor's new-member
notice come from one batch job, ``user/info/batchget`` for up to 100
followers a call. Without Redis the batch runs inline after each follow."""
from __future__ import annotations

import threading
from dataclasses import replace

import pytest
import requests
from sqlalchemy import func, select
from wechatpy.client.api.user import WeChatUser

from conftest import DB_URL, deliver, needs_redis, second_product
from distribution_helpers import make_distributor
from handlers import outbox
from models import DistributorStatus, Notification, OutboxRow, ReferralTouch, SandboxMessage, User, db
from sandbox.people import create_user


def count(model, *where) -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(model).where(*where))


def the_user(openid: str) -> User | None:
    db.session.rollback()
    return db.session.scalars(select(User).where(User.openid == openid)).one_or_none()


def notices_to(user_id: int) -> list[str]:
    db.session.rollback()
    return list(db.session.scalars(select(Notification.body).where(
        Notification.user_id == user_id, Notification.kind == "new_member").order_by(Notification.id)))


def templates_to(openid: str) -> int:
    db.session.rollback()
    return len([m for m in db.session.scalars(select(SandboxMessage).where(SandboxMessage.openid == openid))
                if m.direction == "template" and m.body.get("template_id") == "TM_new_member"])


@pytest.fixture
def batch_calls(monkeypatch) -> list[list[str]]:
    """The openids of each user/info/batchget call the product makes (wechatpy
    still makes the call: this only listens)."""
    calls: list[list[str]] = []
    real = WeChatUser.get_batch

    def listening(self, user_list):
        calls.append(list(user_list))
        return real(self, user_list)

    monkeypatch.setattr(WeChatUser, "get_batch", listening)
    return calls


@pytest.fixture
def shop(app, sandbox_user):
    owner = sandbox_user("阿强")
    return make_distributor("阿强", openid=owner.openid)


def followers(n: int, subscribed: bool = True) -> list[str]:
    people = [create_user(f"粉丝{i}") for i in range(n)]
    for person in people:
        person.subscribed = subscribed
    db.session.commit()
    return [p.openid for p in people]


def test_a_follow_binds_logs_the_touch_and_welcomes_with_the_shop(app, wechat, shop, jobs, batch_calls):
    openid, = followers(1)
    d = wechat.push(wechat.subscribe(openid, shop.unit.scene))
    assert d.status == 200
    assert d.reply["Content"].startswith(f"微信用户{openid[-4:]}，欢迎关注！")
    assert "阿强 邀请你来逛逛" in d.reply["Content"] and f"/h5/u/{shop.unit.slug}" in d.reply["Content"]
    user = the_user(openid)
    assert (user.referrer_id, user.source, user.first_contact, user.is_subscribed) == (shop.user_id, "qr", "scan", True)
    touch = db.session.scalars(select(ReferralTouch).where(ReferralTouch.user_id == user.id)).one()
    assert (touch.unit_id, touch.source, touch.token, touch.outcome) == (shop.unit.id, "qr", shop.unit.scene, "bound")
    jobs.run()
    assert the_user(openid).profile_checked_at is not None
    assert notices_to(shop.user_id) == [f"微信用户{openid[-4:]} 通过你的推广加入了你的团队"]
    assert templates_to(shop.user.openid) == 1
    assert batch_calls == [[openid]]


@needs_redis
def test_followers_waiting_share_one_batchget_of_at_most_100(app, wechat, shop, jobs, batch_calls):
    openids = followers(130)
    for openid in openids:
        assert wechat.push(wechat.subscribe(openid, shop.unit.scene)).status == 200
    assert batch_calls == []  # nothing asked of WeChat while answering
    assert count(OutboxRow, OutboxRow.task == "wxbot.jobs.fetch_profiles") == 1  # one decided for all of them
    jobs.run()
    assert [len(call) for call in batch_calls] == [100, 30]
    assert sorted(o for call in batch_calls for o in call) == sorted(openids)
    assert count(User, User.openid.in_(openids), User.profile_checked_at.is_(None)) == 0
    assert len(notices_to(shop.user_id)) == 130
    assert templates_to(shop.user.openid) == 130


def test_without_a_queue_each_follow_is_its_own_batch(app, wechat, shop, jobs, batch_calls, settings):
    if not settings.uses_redis_fallback:
        pytest.skip("the in-process fallback only")
    openids = followers(3)
    for openid in openids:
        wechat.push(wechat.subscribe(openid, shop.unit.scene))
        assert the_user(openid).profile_checked_at is not None  # inline, right after the commit
    assert batch_calls == [[o] for o in openids]
    assert len(notices_to(shop.user_id)) == 3


def test_a_follower_whose_batch_question_fails_still_gets_a_batch(app, wechat, shop, jobs, batch_calls, monkeypatch):
    """The batch question rides on the reply's Redis pipeline after the commit;
    when Redis cannot answer it, the follower decides a batch of their own."""
    from handlers import users

    monkeypatch.setattr(users, "arm_profile_batch", lambda pipe: pipe.execute_command("NO-SUCH-COMMAND"))
    openid, = followers(1)
    d = wechat.push(wechat.subscribe(openid, shop.unit.scene))
    assert d.status == 200 and "阿强 邀请你来逛逛" in d.reply["Content"]
    jobs.run()
    assert the_user(openid).profile_checked_at is not None and batch_calls == [[openid]]
    assert len(notices_to(shop.user_id)) == 1


def test_a_follow_whose_batch_failed_is_taken_by_a_later_batch(app, wechat, shop, jobs, settings, batch_calls):
    first, second = followers(2)
    with second_product(settings, wechat={"api_base": "http://127.0.0.1:9/cgi"}) as broken:
        params, body = wechat.signed_request(wechat.subscribe(first, shop.unit.scene))
        res = broken.test_client().post("/wx", query_string=params, data=body)
        assert res.status_code == 200 and "阿强" in wechat.read_reply(res.get_data(), params)["Content"]
        deliver(broken)  # the batch runs where WeChat cannot be reached
    row = db.session.scalars(select(OutboxRow).where(OutboxRow.task == "wxbot.jobs.fetch_profiles")).one()
    assert (row.state, row.attempts) == ("pending", 1) and row.last_error  # to be retried
    assert the_user(first).profile_checked_at is None and notices_to(shop.user_id) == []

    wechat.push(wechat.subscribe(second, shop.unit.scene))
    jobs.run()
    assert {first, second} <= set(batch_calls[-1])  # (with anyone else still waiting, like the owner here)
    assert count(User, User.openid.in_([first, second]), User.profile_checked_at.is_(None)) == 0
    assert len(notices_to(shop.user_id)) == 2

    outbox.retry(row.id)  # the failed row's own retry finds no one waiting: nothing twice
    outbox.commit()
    jobs.run()
    assert len(notices_to(shop.user_id)) == 2 and templates_to(shop.user.openid) == 2


def test_a_repeated_push_changes_nothing(app, wechat, shop, jobs, batch_calls):
    from app.extensions import redis_store

    openid, = followers(1)
    params, body = wechat.signed_request(wechat.subscribe(openid, shop.unit.scene))
    first = wechat.send(params, body)
    jobs.run()
    redis_store.conn.flushdb()  # Redis forgot the push: the database still knows it
    for _ in range(2):
        again = wechat.send(params, body)
        assert again.status == 200 and again.reply["Content"] == first.reply["Content"]
    jobs.run()
    assert count(User, User.openid == openid) == 1
    assert count(ReferralTouch) == 1
    assert len(notices_to(shop.user_id)) == 1 and templates_to(shop.user.openid) == 1
    assert batch_calls == [[openid]]


def test_a_frozen_distributors_code_binds_nobody_and_tells_nobody(app, wechat, shop, jobs):
    shop.status = DistributorStatus.FROZEN.value
    db.session.commit()
    openid, = followers(1)
    d = wechat.push(wechat.subscribe(openid, shop.unit.scene))
    assert "邀请你来逛逛" not in d.reply["Content"] and "欢迎关注" in d.reply["Content"]
    jobs.run()
    user = the_user(openid)
    assert (user.referrer_id, user.source) == (None, "organic")
    assert db.session.scalars(select(ReferralTouch.outcome)).all() == ["unknown"]
    assert notices_to(shop.user_id) == []


def test_the_merchants_code_and_an_unknown_scene_leave_the_follower_organic(app, wechat, jobs):
    from models import Unit

    merchant_scene = "merchant-poster"
    unit = db.session.scalars(select(Unit).where(Unit.distributor_id.is_(None))).first()
    unit.scene = merchant_scene
    db.session.commit()
    a, b = followers(2)
    wechat.push(wechat.subscribe(a, merchant_scene))
    wechat.push(wechat.subscribe(b, "no-such-scene"))
    assert (the_user(a).source, the_user(b).source) == ("organic", "organic")
    outcomes = dict(db.session.execute(select(ReferralTouch.token, ReferralTouch.outcome)).all())
    assert outcomes == {merchant_scene: "merchant", "no-such-scene": "unknown"}


def test_someone_already_known_keeps_their_first_distributor(app, wechat, shop, jobs):
    other = make_distributor("阿珍")
    openid, = followers(1)
    wechat.push(wechat.subscribe(openid, shop.unit.scene))
    wechat.push(wechat.event(openid, "unsubscribe"))
    d = wechat.push(wechat.subscribe(openid, other.unit.scene))
    assert d.status == 200
    assert the_user(openid).referrer_id == shop.user_id  # first touch wins
    assert db.session.scalars(select(ReferralTouch.outcome).order_by(ReferralTouch.id)).all() == ["bound", "already"]


@pytest.mark.skipif(not DB_URL, reason="PostgreSQL: two requests really at once")
def test_two_copies_of_one_push_at_once_make_one_touch_and_one_binding(app, wechat, shop, jobs):
    openid, = followers(1)
    params, body = wechat.signed_request(wechat.subscribe(openid, shop.unit.scene))
    barrier = threading.Barrier(2)
    results: list = []

    def send():
        with requests.Session() as http:
            barrier.wait()
            results.append(replace(wechat, http=http, timeout=30).send(params, body))

    threads = [threading.Thread(target=send) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == 2 and all(r.status in (200, 503) for r in results)
    assert any(r.status == 200 and "阿强" in r.reply["Content"] for r in results)
    assert count(User, User.openid == openid) == 1
    assert count(ReferralTouch) == 1
    assert the_user(openid).referrer_id == shop.user_id
    jobs.run()
    assert len(notices_to(shop.user_id)) == 1 and templates_to(shop.user.openid) == 1


def test_one_openid_wechat_does_not_know_does_not_hold_up_the_others(app, wechat, shop, jobs, batch_calls):
    """batchget refuses the whole call for one bad openid (40003): the batch
    asks one by one, and everyone is checked."""
    from sandbox.state import new_openid

    known, = followers(1)
    stranger = new_openid()  # not a person of the sandbox platform
    for openid in (known, stranger):
        wechat.push(wechat.subscribe(openid, shop.unit.scene))
    jobs.run()
    assert count(User, User.openid.in_([known, stranger]), User.profile_checked_at.is_(None)) == 0
    assert len(notices_to(shop.user_id)) == 2
