"""/wx while Redis is down (issue 13; the fault run's refused pushes): the
push's row in PostgreSQL alone keeps each push's work single and each
signed query to its one message, so WeChat's pushes are answered, not
refused until WeChat gives up, and nothing is done twice."""
from __future__ import annotations

import socket
import threading
import time

import pytest
from sqlalchemy import func, select

from app.extensions import redis_store
from conftest import deliver, needs_postgres, second_product
from distribution_helpers import make_distributor
from models import OutboxRow, ReferralTouch, User, WxPush, db
from test_outbox import SpareRedis, needs_redis_server


@pytest.fixture
def redis_gone(settings):
    """A second product whose Redis has stopped (it comes back empty when started)."""
    spare = SpareRedis()
    spare.start()
    try:
        with second_product(settings, app={"redis_url": spare.url}) as other:
            spare.stop()
            yield other, spare
    finally:
        spare.stop()


def _count(model, *where) -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(model).where(*where))


@needs_redis_server
def test_follows_are_answered_and_done_once_while_redis_is_down(app, wechat, sandbox_user, redis_gone):
    other, spare = redis_gone
    owner = sandbox_user("阿强")
    d = make_distributor("阿强", openid=owner.openid)
    newcomer = sandbox_user("小美", subscribed=False)
    ts, nonce = str(int(time.time())), "20261201"
    params, body = wechat.signed_request(wechat.subscribe(newcomer.openid, d.unit.scene), timestamp=ts, nonce=nonce)
    client = other.test_client()

    first = client.post("/wx", query_string=params, data=body)
    assert first.status_code == 200, first.get_data(as_text=True)[:300]
    reply = wechat.read_reply(first.get_data(), params)
    assert "阿强" in reply["Content"]
    user = db.session.scalars(select(User).where(User.openid == newcomer.openid)).one()
    assert user.referrer_id == d.user_id
    # WeChat's retry, Redis still down: the first reply again, from the push's row; nothing twice.
    again = client.post("/wx", query_string=params, data=body)
    assert again.status_code == 200 and wechat.read_reply(again.get_data(), params)["Content"] == reply["Content"]
    assert _count(ReferralTouch, ReferralTouch.user_id == user.id) == 1
    assert _count(WxPush) == 1
    # The same signed query with another message is a replay: refused, even without Redis.
    replay = wechat.signed_request(wechat.text(newcomer.openid, "帮助"), timestamp=ts, nonce=nonce)
    assert client.post("/wx", query_string=replay[0], data=replay[1]).status_code == 403
    assert _count(WxPush) == 1
    # The profile batch waits as an outbox row for the relay (no hand-over tried while Redis rests),
    # and runs once Redis is back (empty).
    assert _count(OutboxRow, OutboxRow.task == "wxbot.jobs.fetch_profiles", OutboxRow.state == "pending",
                  OutboxRow.enqueued_at.is_(None)) >= 1
    spare.start()
    deliver(other)
    db.session.rollback()
    assert db.session.get(User, user.id).profile_checked_at is not None


@needs_redis_server
def test_a_text_message_is_answered_while_redis_is_down(app, wechat, sandbox_user, redis_gone):
    other, _ = redis_gone
    person = sandbox_user("小王")
    client = other.test_client()
    params, body = wechat.signed_request(wechat.text(person.openid, "帮助"))
    res = client.post("/wx", query_string=params, data=body)
    assert res.status_code == 200 and "分销" in wechat.read_reply(res.get_data(), params)["Content"]
    # Within the rest after the first failure, Redis is not asked again: the next push is as quick.
    with other.app_context():
        assert redis_store.resting()
    with app.app_context():
        assert not redis_store.resting()  # another app's Redis is not this one's
    started = time.perf_counter()
    params, body = wechat.signed_request(wechat.text(person.openid, "商城"))
    assert client.post("/wx", query_string=params, data=body).status_code == 200
    assert time.perf_counter() - started < 2  # not a connect timeout (2 s) per push


@needs_postgres
@needs_redis_server
def test_identical_pushes_at_once_without_redis_do_the_work_once(app, wechat, sandbox_user, redis_gone):
    """No lease to make the others wait: the push's row (its INSERT waits for
    a twin's commit, then finds the key taken) keeps the follow single."""
    other, _ = redis_gone
    d = make_distributor("阿强", openid=sandbox_user("阿强").openid)
    newcomer = sandbox_user("小美", subscribed=False)
    params, body = wechat.signed_request(wechat.subscribe(newcomer.openid, d.unit.scene))
    barrier, answers = threading.Barrier(6), []

    def send() -> None:
        client = other.test_client()
        barrier.wait(timeout=30)
        res = client.post("/wx", query_string=params, data=body)
        answers.append((res.status_code, res.get_data()))

    threads = [threading.Thread(target=send) for _ in range(6)]
    [t.start() for t in threads]
    [t.join(60) for t in threads]
    assert len(answers) == 6 and {status for status, _ in answers} <= {200, 503}, answers
    replies = {wechat.read_reply(data, params)["Content"] for status, data in answers if status == 200}
    assert len(replies) == 1 and "阿强" in replies.pop()
    user = db.session.scalars(select(User).where(User.openid == newcomer.openid)).one()
    assert user.referrer_id == d.user_id
    assert _count(ReferralTouch, ReferralTouch.user_id == user.id) == 1 and _count(WxPush) == 1


@pytest.fixture
def redis_silent(settings):
    """A second product whose Redis takes connections and never answers (a hung
    server, a black-holed host): every command waits for the socket timeout."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)  # never accepted: the handshake completes, no reply ever comes
    try:
        with second_product(settings, app={"redis_url": f"redis://127.0.0.1:{silent.getsockname()[1]}/0"}) as other:
            yield other
    finally:
        silent.close()


@needs_redis_server
def test_a_silent_redis_costs_one_timeout_not_one_per_push(app, wechat, sandbox_user, redis_silent):
    d = make_distributor("阿强", openid=sandbox_user("阿强").openid)
    client = redis_silent.test_client()

    def follow(nickname: str) -> float:
        newcomer = sandbox_user(nickname, subscribed=False)
        params, body = wechat.signed_request(wechat.subscribe(newcomer.openid, d.unit.scene))
        started = time.perf_counter()
        res = client.post("/wx", query_string=params, data=body)
        assert res.status_code == 200 and "阿强" in wechat.read_reply(res.get_data(), params)["Content"]
        return time.perf_counter() - started

    follow("小美")  # meets the timeout, then goes on without Redis
    # The next follow asks Redis nothing: neither the push's claim nor the hand-over of its profile batch.
    assert follow("小丽") < 2
    assert _count(User, User.referrer_id == d.user_id) == 2
