"""The transactional outbox in an outage: nothing decided is lost when Redis
dies after the commit or comes back empty, delayed work waits in the
database, a job that runs twice sends once, and the worker outlives Redis."""
from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import event, select, update
from sqlalchemy.orm import Session

from app.extensions import db, queue, redis_store
from conftest import deliver, free_port, needs_postgres, needs_redis, second_product
from handlers import notifications, outbox, users
from handlers.clock import now
from models import Notification, NotificationKind, OutboxRow, SandboxMessage, User
from test_config import write_toml
from wxbot import jobs as wx_jobs

REDIS_SERVER = shutil.which("redis-server")
needs_redis_server = pytest.mark.skipif(not REDIS_SERVER, reason="needs the redis-server binary to stop and restart")


def delivered(openid: str, direction: str | None = None) -> list[SandboxMessage]:
    with db.engine.connect() as conn:
        q = select(SandboxMessage).where(SandboxMessage.openid == openid).order_by(SandboxMessage.id)
        if direction:
            q = q.where(SandboxMessage.direction == direction)
        return list(conn.execute(q).all())


def the_row(key: str) -> OutboxRow | None:
    db.session.rollback()
    return db.session.scalars(select(OutboxRow).where(OutboxRow.key == key).order_by(OutboxRow.id.desc())).first()


def make_due(key: str) -> None:
    db.session.execute(update(OutboxRow).where(OutboxRow.key == key).values(due_at=now() - timedelta(seconds=1)))
    db.session.commit()


def wait_for(condition, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"gave up waiting for {what}")


class SpareRedis:
    """A redis-server of the test's own on a free port, without persistence:
    stopped and started again, it comes back empty (as after a crash)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        import redis

        self.proc = subprocess.Popen([REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url)

        def answers():
            try:
                return client.ping()
            except redis.RedisError:
                return False

        wait_for(answers, "redis-server to start", 20)
        client.close()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(20)
            self.proc = None


@pytest.fixture
def spare_redis():
    server = SpareRedis()
    yield server
    server.stop()


# --- Redis dies after the commit ------------------------------------------------------------

@needs_redis_server
def test_redis_dying_after_the_commit_loses_nothing(app, wechat, spare_redis, settings, sandbox_user):
    """The follow commits, then Redis dies before the profile fetch is
    queued: the follower is answered (not a 500), the job waits as a row, and
    when Redis comes back empty the relay queues it and it runs."""
    person = sandbox_user("小赵")
    spare_redis.start()
    killed = []

    def kill_redis_after_the_commit(session):
        if session.info.get("fenxiao.outbox.new") and not killed:
            killed.append(True)
            spare_redis.stop()

    with second_product(settings, app={"redis_url": spare_redis.url}) as other:
        event.listen(Session, "after_commit", kill_redis_after_the_commit, insert=True)
        try:
            params, body = wechat.signed_request(wechat.subscribe(person.openid))
            res = other.test_client().post("/wx", query_string=params, data=body)
        finally:
            event.remove(Session, "after_commit", kill_redis_after_the_commit)
        assert killed, "the follow decided no side effect"
        assert res.status_code == 200, res.get_data(as_text=True)[:300]
        assert "欢迎关注" in wechat.read_reply(res.get_data(), params)["Content"]
        row = the_row(f"profile-{person.openid}")
        assert row is not None and row.state == "pending"
        assert row.enqueued_at is None  # the failed hand-over was undone: the relay takes it at once
        assert db.session.scalar(select(User).where(User.openid == person.openid)).is_subscribed

        with other.app_context():
            with pytest.raises(Exception):
                outbox.relay()  # Redis still down: the relay says so and keeps the rows
        spare_redis.start()  # back, and empty
        deliver(other)
    row = the_row(f"profile-{person.openid}")
    assert (row.state, row.attempts) == ("done", 1)
    assert db.session.scalar(select(User).where(User.openid == person.openid)).profile_checked_at is not None


@needs_redis
def test_redis_emptied_after_the_commit_the_relay_queues_again_and_it_runs_once(app, sandbox_user, jobs):
    person = sandbox_user()
    outbox.after_commit("wxbot.jobs.send_text", person.openid, "重启后也送达", job_id="lost-1")
    outbox.commit()
    assert jobs.count() == 1
    redis_store.conn.flushdb()  # Redis restarted empty: the queued job is gone
    assert jobs.count() == 0
    assert outbox.relay() == 0  # handed over a moment ago: still within its lease
    later = now() + outbox.LEASE + timedelta(seconds=1)
    assert outbox.relay(at=later) == 1
    assert jobs.count() == 1
    jobs.run()
    assert [m.body["content"] for m in delivered(person.openid, "custom")] == ["重启后也送达"]
    assert the_row("lost-1").state == "done"
    assert outbox.relay(at=later + outbox.LEASE * 2) == 0  # done rows are never handed over again
    jobs.run()
    assert len(delivered(person.openid, "custom")) == 1


@needs_redis
def test_a_long_backlog_is_not_queued_twice(app, sandbox_user, jobs):
    """A row still waiting in RQ's queue after the lease is a backlog, not a
    loss: the relay renews its lease instead of queueing it again."""
    person = sandbox_user()
    outbox.after_commit("wxbot.jobs.send_text", person.openid, "排长队", job_id="backlog-1")
    outbox.commit()
    assert outbox.relay(at=now() + outbox.LEASE + timedelta(seconds=1)) == 0
    assert jobs.count() == 1
    jobs.run()
    assert len(delivered(person.openid, "custom")) == 1


@needs_redis
def test_under_a_backlog_the_relay_leaves_the_queued_rows_alone(app, sandbox_user, jobs):
    """A queue at least a batch long is a backlog: the relay does not re-read
    and re-stamp the rows waiting in it every round; it looks for lost jobs
    once the queue is short again."""
    person = sandbox_user()
    for i in range(2):
        outbox.after_commit("wxbot.jobs.send_text", person.openid, f"排队{i}", job_id=f"queue-{i}")
    outbox.commit()
    stamped = the_row("queue-0").enqueued_at
    later = now() + outbox.LEASE + timedelta(seconds=1)
    assert outbox.relay(at=later, limit=2) == 0  # 2 queued, batches of 2: a backlog
    assert the_row("queue-0").enqueued_at == stamped
    assert outbox.relay(at=later, limit=3) == 0  # a short queue: looked at, still waiting, lease renewed
    assert the_row("queue-0").enqueued_at > stamped
    jobs.run()
    assert sorted(m.body["content"] for m in delivered(person.openid, "custom")) == ["排队0", "排队1"]


@needs_redis
def test_a_job_abandoned_by_a_dead_worker_runs_again_after_the_lease(app, sandbox_user, jobs):
    from rq.job import Job, JobStatus

    person = sandbox_user()
    outbox.after_commit("wxbot.jobs.send_text", person.openid, "换个工人", job_id="orphan-1")
    outbox.commit()
    # A worker took the job off the queue and was killed before finishing it.
    job_id = redis_store.conn.lpop(queue.queue.key).decode()
    Job.fetch(job_id, connection=redis_store.conn).set_status(JobStatus.STARTED)
    assert jobs.count() == 0
    assert outbox.relay(at=now() + outbox.LEASE + timedelta(seconds=1)) == 1
    jobs.run()
    assert [m.body["content"] for m in delivered(person.openid, "custom")] == ["换个工人"]
    assert the_row("orphan-1").state == "done"


def test_a_rolled_back_decision_leaves_no_row(app, sandbox_user, jobs):
    person = sandbox_user()
    outbox.after_commit("wxbot.jobs.send_text", person.openid, "撤销", job_id="gone-1")
    outbox.rollback()
    assert the_row("gone-1") is None
    assert outbox.relay() == 0


# --- delayed rows -------------------------------------------------------------------------------

def test_a_delayed_row_waits_in_the_table_and_is_delivered_when_due(app, sandbox_user, jobs):
    person = sandbox_user()
    outbox.after_commit_at(now() + timedelta(hours=1), "wxbot.jobs.send_text", person.openid, "一小时后",
                           job_id="later-1")
    outbox.commit()
    assert jobs.count() == 0
    redis_store.conn.flushdb()  # an empty Redis in the meantime loses nothing
    assert outbox.relay() == 0  # not due yet
    assert delivered(person.openid) == []
    make_due("later-1")  # an hour later
    assert outbox.relay() == 1
    jobs.run()
    assert [m.body["content"] for m in delivered(person.openid, "custom")] == ["一小时后"]
    assert the_row("later-1").state == "done"


def test_a_stale_job_never_runs_a_row_before_it_is_due(app, sandbox_user):
    person = sandbox_user()
    outbox.after_commit_at(now() + timedelta(hours=1), "wxbot.jobs.send_text", person.openid, "还没到点",
                           job_id="early-1")
    outbox.commit()
    assert outbox.run(the_row("early-1").id) == "skipped"
    assert delivered(person.openid) == []


def test_tasks_outside_the_product_are_refused(app):
    db.session.add(OutboxRow(task="os.system", args=["true"], key="evil-1", due_at=now(), state="pending",
                             attempts=0))
    db.session.commit()
    assert outbox.run(the_row("evil-1").id) == "retry"
    assert "not a task of this product" in the_row("evil-1").last_error


# --- a job that runs twice sends once -------------------------------------------------------------

def new_member_notification(sandbox_user, run_inline: bool = True) -> tuple[str, OutboxRow]:
    person = sandbox_user()
    users.subscribe(person.openid)
    outbox.commit()
    user = users.get_user(person.openid)
    assert notifications.notify(user, NotificationKind.NEW_MEMBER, f"member:{user.id}", "新成员加入",
                                "小王 通过你的推广加入了你的团队", None, {"thing1": "小王"})
    outbox.commit(run_inline=run_inline)
    return person.openid, the_row(f"template-member-{user.id}")


def test_a_notification_job_running_twice_sends_one_message(app, sandbox_user, jobs):
    openid, row = new_member_notification(sandbox_user)
    jobs.run()
    assert len(delivered(openid, "template")) == 1
    # The same job again (handed over twice, or re-run by hand): nothing more is sent.
    wx_jobs.send_template(*row.args)
    outbox.run(row.id)
    assert len(delivered(openid, "template")) == 1
    db.session.rollback()
    assert db.session.scalar(select(Notification.sent_at).where(Notification.id == row.args[-1])) is not None


@needs_postgres
def test_the_same_notification_job_running_twice_at_once_sends_one_message(app, sandbox_user):
    openid, row = new_member_notification(sandbox_user)
    db.session.execute(update(Notification).where(Notification.id == row.args[-1]).values(sent_at=None))
    db.session.commit()
    before = len(delivered(openid, "template"))
    args, barrier, errors = list(row.args), threading.Barrier(2), []

    def run():
        with app.app_context():
            try:
                barrier.wait(5)
                wx_jobs.send_template(*args)
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert len(delivered(openid, "template")) == before + 1


# --- the worker outlives Redis ---------------------------------------------------------------------

@pytest.mark.slow
@needs_redis_server
def test_the_worker_keeps_running_across_a_redis_outage(app, settings, sandbox_user, spare_redis, tmp_path,
                                                        repo_root):
    person = sandbox_user()
    raw = {section: dict(values) for section, values in settings.items()}
    raw["app"]["redis_url"] = spare_redis.url
    config = write_toml(tmp_path / "c.toml", raw)
    log_path = tmp_path / "worker.log"
    env = {"FENXIAO_CONFIG": str(config), "PATH": "/usr/bin:/bin"}
    with log_path.open("w") as log_file:
        worker = subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", "worker"], cwd=repo_root,
                                  env=env, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        def log_text() -> str:
            return Path(log_path).read_text(errors="replace")

        def add_row(key: str, text: str) -> None:
            db.session.add(OutboxRow(task="wxbot.jobs.send_text", args=[person.openid, text], key=key,
                                     due_at=now(), state="pending", attempts=0))
            db.session.commit()

        wait_for(lambda: "reconnecting" in log_text(), "the worker to report Redis unreachable")
        assert worker.poll() is None, log_text()  # started without Redis: still running
        spare_redis.start()
        add_row("outage-1", "Redis 回来了")
        wait_for(lambda: (r := the_row("outage-1")) and r.state == "done", "the first row to run")

        spare_redis.stop()  # Redis dies under a running worker…
        add_row("outage-2", "又回来了")
        wait_for(lambda: log_text().count("reconnecting") >= 2 or "could not connect" in log_text(),
                 "the worker to notice the outage")
        assert worker.poll() is None, log_text()
        spare_redis.start()  # …and comes back empty
        wait_for(lambda: (r := the_row("outage-2")) and r.state == "done", "the second row to run")
        assert [m.body["content"] for m in delivered(person.openid, "custom")] == ["Redis 回来了", "又回来了"]
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0, log_text()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)


@pytest.mark.slow
@needs_redis_server
def test_several_worker_processes_drain_the_queue(app, settings, sandbox_user, spare_redis, tmp_path, repo_root):
    person = sandbox_user()
    spare_redis.start()
    for n in range(6):
        db.session.add(OutboxRow(task="wxbot.jobs.send_text", args=[person.openid, f"第{n}条"], key=f"pool-{n}",
                                 due_at=now(), state="pending", attempts=0))
    db.session.commit()
    raw = {section: dict(values) for section, values in settings.items()}
    raw["app"]["redis_url"] = spare_redis.url
    config = write_toml(tmp_path / "c.toml", raw)
    env = {"FENXIAO_CONFIG": str(config), "PATH": "/usr/bin:/bin"}
    # The relay hands the rows over once, then the pool of two drains them.
    relay = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "outbox", "relay", "--once"],
                           cwd=repo_root, env=env, capture_output=True, text=True, timeout=120)
    assert relay.returncode == 0 and "6 row(s) handed over" in relay.stdout, relay.stdout + relay.stderr
    done = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "worker", "--processes", "2", "--burst"],
                          cwd=repo_root, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(m.body["content"] for m in delivered(person.openid, "custom")) == [f"第{n}条" for n in range(6)]
    assert all(the_row(f"pool-{n}").state == "done" for n in range(6))


@pytest.mark.slow
def test_a_burst_worker_without_redis_says_so(app, settings, tmp_path, repo_root):
    raw = {section: dict(values) for section, values in settings.items()}
    raw["app"]["redis_url"] = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    config = write_toml(tmp_path / "c.toml", raw)
    done = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "worker", "--burst"], cwd=repo_root,
                          env={"FENXIAO_CONFIG": str(config), "PATH": "/usr/bin:/bin"}, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 1
    assert "Redis unreachable" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_database_failing_after_the_send_does_not_send_twice(app, sandbox_user):
    """PostgreSQL goes away between the template's send and the commit that
    records it (the fault run's one duplicate): the job is retried, finds the
    send marked in Redis, records it and sends nothing more."""
    from sqlalchemy.exc import OperationalError

    openid, row = new_member_notification(sandbox_user, run_inline=False)
    before = len(delivered(openid, "template"))
    failed, job_thread = [], threading.get_ident()  # the sandbox's platform commits in the server's thread

    def database_gone(session):
        if not failed and threading.get_ident() == job_thread:
            failed.append(True)
            raise OperationalError("COMMIT", {}, Exception("server closed the connection unexpectedly"))

    event.listen(Session, "before_commit", database_gone)
    try:
        with pytest.raises(OperationalError):
            outbox.run(row.id)
    finally:
        event.remove(Session, "before_commit", database_gone)
    assert len(delivered(openid, "template")) == before + 1  # it went out; its record did not
    db.session.rollback()
    assert db.session.scalar(select(Notification.sent_at).where(Notification.id == row.args[-1])) is None
    assert outbox.run(row.id) == "done"  # the retry
    assert len(delivered(openid, "template")) == before + 1
    db.session.rollback()
    assert db.session.scalar(select(Notification.sent_at).where(Notification.id == row.args[-1])) is not None
