"""Outbound WeChat calls: queued after the commit that decided them, never
after a rollback, retried when WeChat (or the network) fails for now, and
given up when WeChat refuses for good."""
from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from rq import SimpleWorker
from rq.job import Job, JobStatus
from sqlalchemy import func, select

from app import create_app
from app.config import build
from app.extensions import db, queue, redis_store
from conftest import REDIS_URL, make_raw_config
from handlers import outbox
from handlers.clock import now
from models import SandboxMedia, SandboxMessage, SandboxUser
from wxbot import jobs as wx_jobs

needs_redis = pytest.mark.skipif(not REDIS_URL, reason="set FENXIAO_TEST_REDIS_URL for a real RQ worker")
TEMPLATE = {"template_id": "ORDER_PAID_1", "data": {"first": "订单已付款", "amount": "¥12.00"},
            "url": "https://shop.example.com/h5/orders/1"}
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def delivered(openid: str, direction: str | None = None) -> list[SandboxMessage]:
    """What the sandbox platform has delivered to this person, read on a
    connection of its own (the platform commits in another thread)."""
    with db.engine.connect() as conn:
        q = select(SandboxMessage).where(SandboxMessage.openid == openid).order_by(SandboxMessage.id)
        if direction:
            q = q.where(SandboxMessage.direction == direction)
        return list(conn.execute(q).all())


def media_count() -> int:
    with db.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(SandboxMedia)).scalar_one()


def job_status(job_id: str) -> JobStatus:
    return Job.fetch(job_id, connection=redis_store.conn).get_status()


@pytest.fixture
def out_of_window(sandbox_user):
    """A follower whose last message is older than 48 hours."""

    def make():
        person = sandbox_user("老张")
        user = db.session.get(SandboxUser, person.id)
        user.last_message_at = now() - timedelta(hours=49)
        db.session.commit()
        return user

    return make


# --- after commit, never on rollback ------------------------------------------

def test_outbound_call_runs_only_after_commit(app, sandbox_user, jobs):
    person = sandbox_user()
    outbox.after_commit("wxbot.jobs.send_text", person.openid, "你的订单已发货")
    assert jobs.count() == 0  # decided, not yet committed: nothing may leave
    assert delivered(person.openid) == []
    outbox.commit()
    jobs.run()
    sent = delivered(person.openid, "custom")
    assert [m.body["content"] for m in sent] == ["你的订单已发货"]


def test_rollback_drops_the_outbound_call(app, sandbox_user, jobs):
    person = sandbox_user()
    outbox.after_commit("wxbot.jobs.send_text", person.openid, "不该发出的消息")
    outbox.rollback()
    outbox.commit()  # a later commit in the same session must not resurrect it
    assert jobs.count() == 0
    jobs.run()
    assert delivered(person.openid) == []


def test_plain_session_rollback_after_work_drops_the_outbound_call(app, sandbox_user, jobs):
    person = sandbox_user()
    db.session.get(SandboxUser, person.id).nickname = "改了又撤销"
    db.session.flush()
    outbox.after_commit("wxbot.jobs.send_text", person.openid, "不该发出的消息")
    db.session.rollback()  # e.g. an error page rolling back
    outbox.commit()
    jobs.run()
    assert delivered(person.openid) == []


def test_plain_session_rollback_before_any_work_drops_the_outbound_call(app, sandbox_user, jobs):
    openid = sandbox_user().openid
    db.session.close()  # a fresh request: no statement run yet
    outbox.after_commit("wxbot.jobs.send_text", openid, "不该发出的消息")
    db.session.rollback()
    outbox.commit()
    jobs.run()
    assert delivered(openid) == []


# --- a real queue and worker ----------------------------------------------------

@needs_redis
def test_jobs_wait_in_redis_for_a_real_worker(app, sandbox_user, jobs, settings):
    person = sandbox_user()
    outbox.after_commit("wxbot.jobs.send_text", person.openid, "排队中的消息", job_id="queued-1")
    outbox.commit()
    assert jobs.count() == 1
    assert delivered(person.openid) == []  # nothing runs inside the request
    job = Job.fetch("queued-1", connection=redis_store.conn)
    assert job.retries_left == settings["queue"]["max_retries"]
    jobs.run()
    assert jobs.count() == 0
    assert job_status("queued-1") == JobStatus.FINISHED
    assert [m.body["content"] for m in delivered(person.openid, "custom")] == ["排队中的消息"]


@needs_redis
def test_same_job_id_is_queued_once(app, sandbox_user, jobs):
    person = sandbox_user()
    for _ in range(2):  # e.g. WeChat retrying the event that caused it
        outbox.after_commit("wxbot.jobs.send_text", person.openid, "只发一次", job_id="once-1")
        outbox.commit()
    assert jobs.count() == 1
    jobs.run()
    assert len(delivered(person.openid, "custom")) == 1


# --- retries --------------------------------------------------------------------

@pytest.fixture
def unreachable_wechat(tmp_path):
    """The product configured with a WeChat that does not answer (a closed
    port), three retries, and a queue of its own on the test Redis."""
    raw = make_raw_config("http://127.0.0.1:5999", f"sqlite:///{tmp_path / 'other.sqlite'}",
                          wechat={"api_base": "http://127.0.0.1:1/cgi", "open_base": "http://127.0.0.1:1/open"},
                          queue={"max_retries": 3, "name": f"fenxiao-test-{uuid.uuid4().hex[:8]}"})
    other = create_app(build(raw, {}, "test"))
    with other.app_context():
        yield other
        q = queue.queue
        for registry in (q.scheduled_job_registry, q.failed_job_registry, q.finished_job_registry):
            for job_id in registry.get_job_ids():
                registry.remove(job_id, delete_job=True)
        q.delete(delete_jobs=True)
        db.session.remove()
        db.engine.dispose()
        redis_store.conn.close()


def test_transient_failure_is_retried_per_max_retries(unreachable_wechat):
    outbox.after_commit("wxbot.jobs.send_template", "o" + "x" * 27, TEMPLATE["template_id"], TEMPLATE["data"],
                        job_id="flaky-1")
    outbox.commit()
    job = Job.fetch("flaky-1", connection=redis_store.conn)
    # [queue] max_retries = 3: three more attempts, spaced out.
    assert job.retries_left is not None
    if queue.queue.is_async:
        assert job.retries_left == 3
        assert job.retry_intervals == [10, 60, 300]
        SimpleWorker([queue.queue], connection=redis_store.conn).work(burst=True)
        job.refresh()
        assert job.get_status() == JobStatus.SCHEDULED
        assert job.retries_left == 2
        assert "flaky-1" in queue.queue.scheduled_job_registry.get_job_ids()
    else:  # try-out: ran inline once, failed, kept for inspection
        assert job.get_status() == JobStatus.FAILED


def test_no_retries_when_max_retries_is_zero(tmp_path):
    raw = make_raw_config("http://127.0.0.1:5999", f"sqlite:///{tmp_path / 'z.sqlite'}",
                          queue={"max_retries": 0})
    other = create_app(build(raw, {}, "test"))
    with other.app_context():
        try:
            assert queue.retry() is None
        finally:
            db.engine.dispose()
            redis_store.conn.close()


# --- permanent refusals -----------------------------------------------------------

def run_job(job_id: str, name: str, *args, jobs) -> JobStatus:
    outbox.after_commit(name, *args, job_id=job_id)
    outbox.commit()
    jobs.run()
    return job_status(job_id)


def test_window_closed_is_not_retried(app, out_of_window, jobs):
    person = out_of_window()
    status = run_job("closed-1", "wxbot.jobs.send_text", person.openid, "窗口外", jobs=jobs)
    assert status == JobStatus.FINISHED  # given up, not failed or scheduled for a retry
    assert delivered(person.openid) == []
    assert jobs.count() == 0


def test_not_subscribed_is_not_retried(app, sandbox_user, jobs):
    person = sandbox_user(subscribed=False)
    status = run_job("unsub-1", "wxbot.jobs.send_template", person.openid, TEMPLATE["template_id"],
                     TEMPLATE["data"], jobs=jobs)
    assert status == JobStatus.FINISHED
    assert delivered(person.openid) == []


def test_unknown_openid_is_not_retried(app, jobs):
    status = run_job("nobody-1", "wxbot.jobs.send_text", "o" + "n" * 27, "给不存在的人", jobs=jobs)
    assert status == JobStatus.FINISHED
    assert len(queue.queue.failed_job_registry) == 0


def test_outside_the_window_the_template_is_sent_instead(app, out_of_window, jobs):
    person = out_of_window()
    outbox.after_commit("wxbot.jobs.send_text", person.openid, "你的订单已付款", TEMPLATE)
    outbox.commit()
    jobs.run()
    assert delivered(person.openid, "custom") == []
    sent = delivered(person.openid, "template")
    assert len(sent) == 1
    body = sent[0].body
    assert body["template_id"] == TEMPLATE["template_id"]
    assert body["url"] == TEMPLATE["url"]
    assert body["data"]["first"] == {"value": "订单已付款"}
    assert body["data"]["amount"] == {"value": "¥12.00"}


def test_inside_the_window_the_text_is_sent_not_the_template(app, sandbox_user, jobs):
    person = sandbox_user()
    outbox.after_commit("wxbot.jobs.send_text", person.openid, "你的订单已付款", TEMPLATE)
    outbox.commit()
    jobs.run()
    assert [m.body["content"] for m in delivered(person.openid, "custom")] == ["你的订单已付款"]
    assert delivered(person.openid, "template") == []


# --- media ---------------------------------------------------------------------------

def test_image_is_uploaded_once_and_its_media_id_reused(app, sandbox_user, jobs, tmp_path):
    poster = tmp_path / "poster.png"
    poster.write_bytes(PNG)
    person = sandbox_user()
    for _ in range(2):
        outbox.after_commit("wxbot.jobs.send_image", person.openid, "poster-1", str(poster))
        outbox.commit()
        jobs.run()
    images = delivered(person.openid, "custom")
    assert len(images) == 2
    assert images[0].body["media_id"] == images[1].body["media_id"]
    assert media_count() == 1
    # Another picture is another upload.
    assert wx_jobs.media_id_for("poster-2", str(poster)) != images[0].body["media_id"]
    assert media_count() == 2
