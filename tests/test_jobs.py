"""Outbound WeChat calls: outbox rows delivered after the commit that decided
them, never after a rollback, retried with backoff when WeChat (or the
network) fails for now, kept as failed when out of retries, and given up
(done, with the error noted) when WeChat refuses for good."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from app import create_app
from app.config import build
from app.extensions import db, redis_store
from conftest import deliver, needs_redis, second_product
from handlers import outbox
from handlers.clock import now
from models import OutboxRow, SandboxMedia, SandboxMessage, SandboxUser
from wxbot import jobs as wx_jobs

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

def the_row(key: str) -> OutboxRow:
    db.session.rollback()  # see what the worker committed
    return db.session.scalars(select(OutboxRow).where(OutboxRow.key == key).order_by(OutboxRow.id.desc())).first()


@needs_redis
def test_jobs_wait_in_redis_for_a_real_worker(app, sandbox_user, jobs, settings):
    person = sandbox_user()
    outbox.after_commit("wxbot.jobs.send_text", person.openid, "排队中的消息", job_id="queued-1")
    outbox.commit()
    assert jobs.count() == 1
    assert delivered(person.openid) == []  # nothing runs inside the request
    row = the_row("queued-1")
    assert (row.state, row.attempts) == ("pending", 0) and row.enqueued_at is not None
    jobs.run()
    assert jobs.count() == 0
    row = the_row("queued-1")
    assert (row.state, row.attempts, row.last_error) == ("done", 1, None) and row.done_at is not None
    assert [m.body["content"] for m in delivered(person.openid, "custom")] == ["排队中的消息"]


@needs_redis
def test_same_job_id_is_queued_once(app, sandbox_user, jobs):
    person = sandbox_user()
    for _ in range(2):  # e.g. WeChat retrying the event that caused it
        outbox.after_commit("wxbot.jobs.send_text", person.openid, "只发一次", job_id="once-1")
        outbox.commit()
    assert jobs.count() == 1
    assert db.session.scalar(select(func.count()).select_from(OutboxRow)) == 1
    jobs.run()
    assert len(delivered(person.openid, "custom")) == 1


# --- retries --------------------------------------------------------------------

@pytest.fixture
def unreachable_wechat(settings):
    """A second instance of the product on the same database and Redis whose
    WeChat does not answer (a closed port), with three retries."""
    with second_product(settings, wechat={"api_base": "http://127.0.0.1:1/cgi",
                                          "open_base": "http://127.0.0.1:1/open"},
                        queue={"max_retries": 3}) as other:
        yield other


def make_due(key: str) -> None:
    db.session.execute(update(OutboxRow).where(OutboxRow.key == key).values(due_at=now() - timedelta(seconds=1)))
    db.session.commit()


def test_transient_failure_is_retried_with_backoff_then_kept_as_failed(app, unreachable_wechat, sandbox_user):
    person = sandbox_user()
    with unreachable_wechat.app_context():
        outbox.after_commit("wxbot.jobs.send_template", person.openid, TEMPLATE["template_id"], TEMPLATE["data"],
                            job_id="flaky-1")
        outbox.commit()
        db.session.remove()
    deliver(unreachable_wechat)
    row = the_row("flaky-1")
    assert (row.state, row.attempts) == ("pending", 1)
    assert "ConnectionError" in row.last_error
    assert timedelta(seconds=5) < row.due_at - now() <= timedelta(seconds=10)  # the first backoff
    deliver(unreachable_wechat)  # not due yet: nothing runs
    assert the_row("flaky-1").attempts == 1
    for attempt, backoff in [(2, 60), (3, 300)]:
        make_due("flaky-1")
        deliver(unreachable_wechat)
        row = the_row("flaky-1")
        assert (row.state, row.attempts) == ("pending", attempt)
        assert timedelta(seconds=backoff - 30) < row.due_at - now() <= timedelta(seconds=backoff)
    make_due("flaky-1")
    deliver(unreachable_wechat)
    row = the_row("flaky-1")
    assert (row.state, row.attempts) == ("failed", 4)  # [queue] max_retries = 3: four attempts in all
    # Failed rows stay visible and can be run again (here by the product whose WeChat answers).
    listed = app.test_cli_runner().invoke(args=["outbox", "list", "--failed"])
    assert listed.exit_code == 0 and f"{row.id}\tfailed\twxbot.jobs.send_template\tattempts=4" in listed.output
    assert "ConnectionError" in listed.output
    deliver(unreachable_wechat)
    assert the_row("flaky-1").state == "failed"  # nobody retries a failed row by itself
    again = app.test_cli_runner().invoke(args=["outbox", "retry", str(row.id)])
    assert again.exit_code == 0 and "1 row(s) queued again" in again.output
    deliver(app)
    assert the_row("flaky-1").state == "done"
    assert len(delivered(person.openid, "template")) == 1


def test_retry_all_failed_and_bad_input(app, sandbox_user):
    person = sandbox_user()
    for n in range(2):
        db.session.add(OutboxRow(task="wxbot.jobs.send_text", args=[person.openid, f"第{n}条"], key=f"f-{n}",
                                 due_at=now(), state="failed", attempts=3, last_error="ConnectionError: down"))
    db.session.commit()
    cli = app.test_cli_runner()
    assert cli.invoke(args=["outbox", "retry"]).exit_code == 2  # neither an id nor --all-failed
    assert cli.invoke(args=["outbox", "retry", "1", "--all-failed"]).exit_code == 2
    assert cli.invoke(args=["outbox", "retry", "abc"]).exit_code == 2
    assert cli.invoke(args=["outbox", "retry", "-5"]).exit_code == 2
    unknown = cli.invoke(args=["outbox", "retry", "999999999"])
    assert unknown.exit_code == 1 and "no such row" in unknown.output and "Traceback" not in unknown.output
    done = cli.invoke(args=["outbox", "retry", "--all-failed"])
    assert done.exit_code == 0 and "2 row(s) queued again" in done.output
    deliver(app)
    assert sorted(m.body["content"] for m in delivered(person.openid, "custom")) == ["第0条", "第1条"]
    assert "0 row(s)" in cli.invoke(args=["outbox", "list"]).output


def test_no_retries_when_max_retries_is_zero(app, settings, sandbox_user):
    raw = {section: dict(values) for section, values in settings.items()}
    raw["wechat"]["api_base"] = "http://127.0.0.1:1/cgi"
    raw["queue"]["max_retries"] = 0
    other = create_app(build(raw, {}, "test"))
    try:
        with other.app_context():
            outbox.after_commit("wxbot.jobs.send_text", sandbox_user().openid, "一次", job_id="zero-1")
            outbox.commit()
            db.session.remove()
        deliver(other)
        assert (the_row("zero-1").state, the_row("zero-1").attempts) == ("failed", 1)
    finally:
        with other.app_context():
            db.session.remove()
            db.engine.dispose()
            redis_store.conn.close()


# --- permanent refusals -----------------------------------------------------------

def run_job(job_id: str, name: str, *args, jobs) -> OutboxRow:
    outbox.after_commit(name, *args, job_id=job_id)
    outbox.commit()
    jobs.run()
    return the_row(job_id)


def test_window_closed_is_not_retried(app, out_of_window, jobs):
    person = out_of_window()
    row = run_job("closed-1", "wxbot.jobs.send_text", person.openid, "窗口外", jobs=jobs)
    assert row.state == "done"  # given up, not failed or waiting for a retry
    assert "45015" in row.last_error
    assert delivered(person.openid) == []
    assert jobs.count() == 0


def test_not_subscribed_is_not_retried(app, sandbox_user, jobs):
    person = sandbox_user(subscribed=False)
    row = run_job("unsub-1", "wxbot.jobs.send_template", person.openid, TEMPLATE["template_id"],
                  TEMPLATE["data"], jobs=jobs)
    assert (row.state, row.attempts) == ("done", 1)
    assert delivered(person.openid) == []


def test_unknown_openid_is_not_retried(app, jobs):
    row = run_job("nobody-1", "wxbot.jobs.send_text", "o" + "n" * 27, "给不存在的人", jobs=jobs)
    assert (row.state, row.attempts) == ("done", 1) and "40003" in row.last_error


def test_outside_the_window_the_template_is_sent_instead(app, out_of_window, jobs):
    person = out_of_window()
    outbox.after_commit("wxbot.jobs.send_text", person.openid, "你的订单已付款", TEMPLATE)
    outbox.commit()
    jobs.run()
    jobs.run()  # the fallback is a row of its own, queued by the first job's commit
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
