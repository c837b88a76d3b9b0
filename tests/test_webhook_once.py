"""/wx never answers "success" for work not done, and never does a push's
work twice (issue 9, item 2): a push another attempt holds is answered 503 so
WeChat retries; that hold is a short lease, so a first attempt that died
leaves the push to a retry; and the push's key is unique in the database,
written with the work, so a replay after Redis lost its keys — or a twin
running at the same moment — does nothing twice and gets the first reply."""
from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import timedelta

import pytest
import requests
from sqlalchemy import func, select

from app.extensions import redis_store
from distribution_helpers import make_distributor
from handlers import outbox, pushes
from handlers.clock import now
from models import Notification, ReferralTouch, SandboxMessage, User, WxPush, db
from models.base import insert_ignoring_conflict
from wxbot.security import query_key
from wxbot.webhook import PENDING, PENDING_LEASE


def count(model) -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(model))


def user_row(openid: str) -> User | None:
    db.session.rollback()
    return db.session.scalars(select(User).where(User.openid == openid)).one_or_none()


def new_member_messages(openid: str) -> int:
    db.session.rollback()
    return len([m for m in db.session.scalars(select(SandboxMessage).where(
        SandboxMessage.openid == openid, SandboxMessage.direction == "template"))
        if m.body.get("template_id") == "TM_new_member"])


def seen_keys() -> list[bytes]:
    return list(redis_store.conn.scan_iter("wx:seen:*"))


def seen_key(event: dict) -> str:
    """The webhook's dedupe key for an event: WeChat repeats sender, time,
    event and key in a retry (written out here to leave a key behind)."""
    return f"wx:seen:evt:{event['FromUserName']}:{event['CreateTime']}:{event['Event']}:{event['EventKey']}"


@pytest.fixture
def qr_follow(app, wechat, sandbox_user):
    """A distributor (a real sandbox user, so messages reach them) and a
    newcomer's follow through their QR code, prepared as WeChat sends it."""
    owner = sandbox_user("阿强")
    d = make_distributor("阿强", openid=owner.openid)
    newcomer = sandbox_user("小美", subscribed=False)
    event = wechat.subscribe(newcomer.openid, d.unit.scene)
    params, body = wechat.signed_request(event)
    return d, newcomer, event, params, body


def parallel(n: int, fn) -> list:
    barrier = threading.Barrier(n)
    results: list = []

    def run():
        barrier.wait()
        results.append(fn())

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


def sender(wechat, params, body):
    """One of WeChat's connections, sending the same push again."""
    def send():
        with requests.Session() as http:
            return replace(wechat, http=http, timeout=30).send(params, body)

    return send


def hold_new_user(openid: str):
    """Another transaction inserting the same person, not committed: the
    webhook's work on them waits for it (a row lock on PostgreSQL, the write
    lock on SQLite), as it would wait on any lock held too long."""
    conn = db.engine.connect()
    conn.execute(insert_ignoring_conflict(User, {
        "openid": openid, "first_contact": "subscribe", "created_at": now(), "subscription": "never"},
        ["openid"]))
    return conn


# -- a push held by another attempt ----------------------------------------------
def test_a_push_held_by_a_dead_attempt_is_retried_not_answered_success(app, wechat, qr_follow):
    """The first attempt took the push and died (worker killed) before its
    commit: its key stays pending. A retry must not hear "success"."""
    d, newcomer, event, params, body = qr_follow
    redis_store.conn.set(seen_key(event), PENDING, ex=PENDING_LEASE)  # what the dead attempt left

    retry = wechat.send(params, body)
    assert retry.status == 503 and retry.body == b""  # WeChat retries a failed answer
    assert user_row(newcomer.openid) is None
    assert 0 < redis_store.conn.ttl(seen_key(event)) <= PENDING_LEASE  # a lease, shorter than WeChat's retries

    redis_store.conn.delete(seen_key(event))  # the lease runs out (fast-forwarded)
    later = wechat.send(params, body)
    assert later.status == 200 and "阿强" in later.reply["Content"]
    assert user_row(newcomer.openid).referrer_id == d.user_id
    assert count(ReferralTouch) == 1


def test_a_retry_while_the_first_attempt_is_stuck_is_told_to_retry(app, wechat, qr_follow):
    d, newcomer, event, params, body = qr_follow
    blocker = hold_new_user(newcomer.openid)
    results: list = []
    try:
        first = threading.Thread(target=lambda: results.append(sender(wechat, params, body)()))
        first.start()
        while not seen_keys():  # the first attempt holds the push
            time.sleep(0.01)
        retry = wechat.send(params, body)
        assert (retry.status, retry.body) == (503, b"")  # not "success": that attempt may yet die
    finally:
        blocker.rollback()
        blocker.close()
    first.join(30)
    assert results[0].status == 200 and "阿强" in results[0].reply["Content"]
    last = wechat.send(params, body)
    assert last.reply["Content"] == results[0].reply["Content"]
    assert user_row(newcomer.openid).referrer_id == d.user_id
    assert count(ReferralTouch) == 1


# -- the database keeps the push single -------------------------------------------
def test_a_replay_after_redis_lost_its_keys_does_no_second_work(app, wechat, jobs, qr_follow):
    d, newcomer, event, params, body = qr_follow
    first = wechat.send(params, body)
    assert first.status == 200 and "阿强" in first.reply["Content"]
    jobs.run()
    assert (count(ReferralTouch), count(Notification), new_member_messages(d.user.openid)) == (1, 2, 1)
    assert count(WxPush) >= 1

    redis_store.conn.flushdb()  # Redis restarted empty: no dedupe key, no used query
    again = wechat.send(params, body)
    assert again.status == 200
    assert again.reply["Content"] == first.reply["Content"]
    jobs.run()
    assert (count(ReferralTouch), count(Notification), new_member_messages(d.user.openid)) == (1, 2, 1)
    # And Redis knows it again: the next retry is answered from there.
    assert wechat.send(params, body).reply["Content"] == first.reply["Content"]


def test_concurrent_identical_pushes_do_the_work_once(app, wechat, qr_follow):
    d, newcomer, event, params, body = qr_follow
    results = parallel(6, sender(wechat, params, body))
    assert len(results) == 6 and {r.status for r in results} <= {200, 503}, [r.status for r in results]
    replies = {r.reply["Content"] for r in results if r.status == 200}
    assert len(replies) == 1 and "阿强" in replies.pop()
    assert wechat.send(params, body).status == 200
    assert count(ReferralTouch) == 1
    assert user_row(newcomer.openid).referrer_id == d.user_id


def test_concurrent_replays_after_redis_lost_its_keys_do_the_work_once(app, wechat, qr_follow):
    d, newcomer, event, params, body = qr_follow
    first = wechat.send(params, body)
    redis_store.conn.flushdb()
    results = parallel(6, sender(wechat, params, body))
    assert {r.status for r in results} <= {200, 503}, [r.status for r in results]
    assert {r.reply["Content"] for r in results if r.status == 200} == {first.reply["Content"]}
    assert count(ReferralTouch) == 1


def test_a_twin_committing_the_same_push_wins_and_its_reply_is_answered(app, wechat, qr_follow):
    """Two attempts past Redis at once (a lease ran out, or Redis forgot):
    the one whose push row commits first did the work; the other, which
    finds that row, throws its own work away and answers the twin's reply."""
    d, newcomer, event, params, body = qr_follow
    twin_reply = (f"<xml><ToUserName><![CDATA[{newcomer.openid}]]></ToUserName><FromUserName><![CDATA[gh]]>"
                  "</FromUserName><CreateTime>1</CreateTime><MsgType><![CDATA[text]]></MsgType>"
                  "<Content><![CDATA[twin's welcome]]></Content></xml>")
    twin = db.engine.connect()  # the twin, about to commit its work and its push row
    results: list = []
    try:
        twin.execute(insert_ignoring_conflict(WxPush, {
            "key": pushes.key_of(seen_key(event)), "reply": twin_reply, "created_at": now(),
            "query_key": query_key(params["signature"], params["timestamp"], params["nonce"])}, ["key"]))
        attempt = threading.Thread(target=lambda: results.append(sender(wechat, params, body)()))
        attempt.start()
        twin.commit()  # before or after the attempt reaches its own INSERT: the same outcome
        attempt.join(30)
    finally:
        twin.close()
    assert results[0].status == 200
    assert results[0].reply["Content"] == "twin's welcome"
    assert count(ReferralTouch) == 0  # the attempt's own work was rolled back
    assert user_row(newcomer.openid) is None


# -- old keys ---------------------------------------------------------------------
def test_old_push_keys_are_pruned_by_the_orders_sweep(app, wechat, sandbox_user):
    person = sandbox_user("小李")
    assert wechat.push(wechat.text(person.openid, "帮助")).status == 200
    db.session.add(WxPush(key="0" * 64, query_key="1" * 64, reply="", created_at=now() - timedelta(days=2)))
    outbox.commit()
    assert count(WxPush) == 2
    assert pushes.prune() == 1
    outbox.commit()
    assert count(WxPush) == 1  # today's stays
    result = app.test_cli_runner().invoke(args=["orders", "sweep"])
    assert result.exit_code == 0, result.output
    assert "push key" in result.output
