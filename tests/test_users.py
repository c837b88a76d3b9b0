"""The people who reach the account: recorded once, whatever the door, even
when two first contacts race; followed, unfollowed and followed again; and a
profile WeChat no longer fills in."""
from __future__ import annotations

import secrets
import threading
from dataclasses import replace

import pytest
import requests
from sqlalchemy import select

from app.extensions import db
from models import User


def users_with(openid: str) -> list[User]:
    db.session.rollback()  # read what the server committed
    return db.session.scalars(select(User).where(User.openid == openid)).all()


def the_user(openid: str) -> User:
    (user,) = users_with(openid)
    return user


def all_users() -> list[User]:
    db.session.rollback()
    return db.session.scalars(select(User)).all()


def new_openid() -> str:
    return "o" + secrets.token_urlsafe(20)[:27]


def later(fields: dict, seconds: int) -> dict:
    """The same kind of event a few seconds on: WeChat tells events apart by
    sender + CreateTime + Event, so a real second follow has a later time."""
    return {**fields, "CreateTime": int(fields["CreateTime"]) + seconds}


# Each door a person can come through, and what it should record. (Whether a
# first SCAN/text/click should also mark the person as following is left open:
# only followers can send those, but the product records "never" today.)
DOORS = {
    "subscribe": (lambda w, o: w.subscribe(o), "subscribe", "subscribed"),
    "subscribe via QR code": (lambda w, o: w.subscribe(o, "dist42"), "scan", "subscribed"),
    "SCAN": (lambda w, o: w.scan(o, "dist42"), "scan", None),
    "text": (lambda w, o: w.text(o, "你好"), "message", None),
    "click": (lambda w, o: w.click(o, "SHOP"), "message", None),
}


@pytest.mark.parametrize("door", DOORS)
def test_first_contact_records_the_person_once(app, wechat, door):
    make, first_contact, subscription = DOORS[door]
    openid = new_openid()
    d = wechat.push(make(wechat, openid))
    assert d.status == 200, d.body
    assert d.reply and d.reply["Content"], "a first contact deserves an answer"
    user = the_user(openid)
    assert user.first_contact == first_contact
    if subscription:
        assert user.subscription == subscription
    assert user.last_interaction_at is not None
    # Coming back through every other door adds nobody.
    for other in DOORS.values():
        assert wechat.push(other[0](wechat, openid)).status == 200
    assert len(users_with(openid)) == 1
    assert the_user(openid).first_contact == first_contact  # the first door is remembered
    assert len(all_users()) == 1


def test_two_people_are_two_users(app, wechat):
    a, b = new_openid(), new_openid()
    wechat.push(wechat.subscribe(a))
    wechat.push(wechat.text(b, "帮助"))
    assert sorted(u.openid for u in all_users()) == sorted([a, b])


def test_simultaneous_first_contacts_leave_one_row(app, wechat, jobs, settings):
    """A new person follows and, at the same moment, taps the menu and types:
    the pushes arrive in parallel, and each finds no row for them yet."""
    openid = new_openid()
    pushes = [wechat.subscribe(openid), wechat.click(openid, "SHOP"), wechat.text(openid, "帮助"),
              wechat.text(openid, "商城"), wechat.click(openid, "HELP"), wechat.text(openid, "排行榜")]
    barrier = threading.Barrier(len(pushes))
    results: list = []
    errors: list = []

    def push(fields):
        server = replace(wechat, http=requests.Session())
        try:
            barrier.wait(5)
            results.append(server.push(fields))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            server.http.close()

    threads = [threading.Thread(target=push, args=(f,)) for f in pushes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert not errors, errors
    assert sorted(r.status for r in results) == [200] * len(pushes), [r.body[:200] for r in results]
    assert all(r.reply and r.reply["Content"] for r in results)
    assert len(users_with(openid)) == 1
    assert the_user(openid).is_subscribed
    if not settings.uses_redis_fallback:
        assert jobs.count() == 1  # one profile fetch, not one per racing request


def test_profile_without_nickname_or_avatar(app, wechat, jobs, sandbox_user):
    """user/info no longer returns nickname or avatar (since 2021-12-27): the
    product greets the person with a fallback name and records that it asked."""
    person = sandbox_user("小王")
    d = wechat.push(wechat.subscribe(person.openid))
    expected_name = f"微信用户{person.openid[-4:]}"
    assert d.reply["Content"].startswith(expected_name)
    assert "小王" not in d.reply["Content"]  # we cannot know it, and must not pretend
    jobs.run()
    user = the_user(person.openid)
    assert user.profile_checked_at is not None
    assert user.nickname is None and user.avatar_url is None
    assert user.display_name == expected_name
    # Later replies keep using the fallback name.
    d = wechat.push(wechat.scan(person.openid, "dist42"))
    assert d.reply["Content"].startswith(expected_name)


def test_profile_check_of_someone_wechat_does_not_know(app, wechat, jobs):
    """user/info answers 40003 (invalid openid): nothing to retry, and the
    user is still marked as checked."""
    openid = new_openid()  # not a person of the sandbox platform
    assert wechat.push(wechat.text(openid, "帮助")).status == 200
    jobs.run()
    user = the_user(openid)
    assert user.profile_checked_at is not None
    assert user.nickname is None
    assert jobs.count() == 0


def test_unsubscribe_keeps_the_user_and_resubscribe_follows_again(app, wechat, jobs, sandbox_user):
    person = sandbox_user("小张")
    first = wechat.push(wechat.subscribe(person.openid))
    assert "欢迎关注" in first.reply["Content"]
    followed = the_user(person.openid)
    first_follow_at, user_id = followed.subscribed_at, followed.id
    assert followed.is_subscribed and first_follow_at is not None

    d = wechat.push(later(wechat.event(person.openid, "unsubscribe"), 1))
    assert (d.status, d.body) == (200, b"success")
    gone = the_user(person.openid)
    assert gone.id == user_id, "unfollowing must keep the user and everything they did"
    assert gone.subscription == "unsubscribed" and not gone.is_subscribed
    assert gone.unsubscribed_at is not None

    again = wechat.push(later(wechat.subscribe(person.openid), 2))
    assert "欢迎关注" in again.reply["Content"]
    back = the_user(person.openid)
    assert back.id == user_id and back.is_subscribed
    assert back.subscribed_at > first_follow_at
    assert back.first_contact == "subscribe"
    assert len(all_users()) == 1


def test_unsubscribe_of_someone_never_seen(app, wechat):
    """An unfollow can be the first thing we hear (the follow predates the product)."""
    openid = new_openid()
    d = wechat.push(wechat.event(openid, "unsubscribe"))
    assert (d.status, d.body) == (200, b"success")
    user = the_user(openid)
    assert user.subscription == "unsubscribed"


def test_unsubscribe_retried_after_refollow_does_not_unfollow(app, wechat):
    openid = new_openid()
    wechat.push(wechat.subscribe(openid))
    leave = later(wechat.event(openid, "unsubscribe"), 1)
    wechat.push(leave)
    wechat.push(later(wechat.subscribe(openid, "dist42"), 2))
    assert the_user(openid).is_subscribed
    wechat.push(leave)  # a late retry of the unfollow
    assert the_user(openid).is_subscribed
