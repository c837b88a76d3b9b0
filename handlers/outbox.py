"""Side effects as rows: the transactional outbox.

A handler calls ``after_commit("wxbot.jobs.fetch_profile", openid, job_id=…)``.
That INSERTs a row into ``outbox`` in the handler's own transaction: a
rollback drops it, a commit keeps it, whatever Redis does meanwhile. Jobs
are named by dotted path so that handlers never import the transports that
perform them.

Delivery: right after the commit the new rows are handed to RQ (the fast
path); when Redis is down that is logged, never raised — the request that
committed still answers. ``relay()`` (run by ``flask worker`` every few
seconds and by ``flask outbox relay``) hands over every due pending row that
was never handed over, or was handed over longer than ``LEASE`` ago and is
not done (Redis emptied, worker killed). Delayed rows (``after_commit_at``)
wait in the table until due, so they survive an empty Redis too.

The RQ job is ``run(row_id)``: lock the row, run the task, mark the row done
and commit — one transaction. On error the row is retried with backoff up to
``[queue] max_retries`` times, then kept as ``failed`` for ``flask outbox
list --failed`` / ``outbox retry``. With the in-process fallback (no Redis)
due rows run inline right after the commit, as RQ's synchronous mode did.
"""
from __future__ import annotations

import functools
import importlib
import logging
from datetime import datetime, timedelta
from typing import Any, Callable

from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from sqlalchemy import delete, event, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.extensions import db, queue, redis_store
from models.base import utcnow
from models.outbox import NOT_DONE, OutboxRow, OutboxState

log = logging.getLogger(__name__)

PENDING, DONE, FAILED = OutboxState.PENDING.value, OutboxState.DONE.value, OutboxState.FAILED.value
LEASE = timedelta(seconds=60)  # a handed-over row not done by then is handed over again
BACKOFF = [10, 60, 300, 900, 3600]  # seconds before retry n (the last one repeats)
RELAY_BATCH = 500
KEEP_DONE = timedelta(days=7)
TASK_PACKAGES = ("wxbot.", "pay.", "handlers.", "sandbox.")
_NEW = "fenxiao.outbox.new"        # due rows added in the open transaction
_INLINE = "fenxiao.outbox.inline"  # committed rows to run inline (no Redis)
_CURRENT = "fenxiao.outbox.current"
ACTIVE = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED}


# --- deciding: a row in the caller's transaction ---------------------------------------

def after_commit(job: str, *args: Any, job_id: str | None = None) -> None:
    """Run ``job(*args)`` once the current transaction commits. ``job_id``
    is the row's key: while a row with that key is not done, deciding the
    same thing again adds nothing (a failed one is armed again)."""
    _add(job, args, job_id, None)


def after_commit_at(when: datetime, job: str, *args: Any, job_id: str | None = None) -> None:
    """Run ``job(*args)`` at ``when`` (the relay hands it to RQ when due).
    Without Redis nothing waits in the background: the sweep commands and
    the pages that look at a due row do the work instead."""
    _add(job, args, job_id, when)


def _insert():
    return postgresql.insert if db.session.get_bind().dialect.name == "postgresql" else sqlite.insert


def _add(task: str, args: tuple, key: str | None, when: datetime | None) -> None:
    at, is_async = utcnow(), queue.queue.is_async
    # Without Redis a delayed row is left to the sweeps and pages (and the
    # relay), even when already due, as RQ's scheduler-less fallback did.
    due = when is None or (is_async and when <= at)
    # While Redis rests after failing to answer, the row waits for the relay
    # instead of a hand-over after the commit that would time out.
    hand_over = due and not (is_async and redis_store.resting())
    handed = at if hand_over and is_async else None  # optimistic: the fast path follows the commit
    values = {"task": task, "args": list(args), "key": key, "due_at": when or at, "state": PENDING,
              "attempts": 0, "last_error": None, "enqueued_at": handed, "done_at": None, "created_at": at}
    stmt = _insert()(OutboxRow).values(**values)
    if key is not None:
        armed = {k: values[k] for k in ("task", "args", "due_at", "state", "attempts", "enqueued_at")}
        stmt = stmt.on_conflict_do_update(index_elements=["key"], index_where=text(NOT_DONE), set_=armed,
                                          where=OutboxRow.__table__.c.state == FAILED)
    row_id = db.session.scalar(stmt.returning(OutboxRow.id))
    if row_id is None:
        log.info("%s already pending as %s", task, key)
    elif hand_over:
        db.session.info.setdefault(_NEW, []).append(row_id)


# --- the transport's side: commit, rollback --------------------------------------------

def commit(run_inline: bool = True) -> None:
    """Commit; the new rows go to RQ (or run inline without Redis, unless
    ``run_inline`` is false: then they wait for the relay, or for whoever
    runs their work at a moment of their choosing)."""
    session = db.session()
    session.commit()
    held = session.info.pop(_INLINE, [])
    for row_id in held if run_inline else ():
        run(row_id)


def rollback() -> None:
    db.session.rollback()


@event.listens_for(Session, "after_commit")
def _hand_over_new(session: Session) -> None:
    ids = session.info.pop(_NEW, None)
    if not ids:
        return
    if not queue.queue.is_async:
        session.info.setdefault(_INLINE, []).extend(ids)
        return
    try:
        _enqueue(ids)
    except Exception as exc:  # noqa: BLE001 - the commit stands; the relay delivers later
        log.warning("outbox rows %s committed but not queued (%s); the relay will queue them", ids, exc)
        redis_store.failed()
        _unmark(ids)


@event.listens_for(Session, "after_rollback")
def _drop_new(session: Session) -> None:
    session.info.pop(_NEW, None)


def _enqueue(ids: list[int]) -> None:
    q = queue.queue
    q.enqueue_many([Queue.prepare_data("handlers.outbox.run", (row_id,), job_id=f"outbox-{row_id}",
                                       description=f"outbox row {row_id}", result_ttl=0, failure_ttl=7 * 86400)
                    for row_id in ids])


def _unmark(ids: list[int]) -> None:
    """Best effort after a failed hand-over: let the relay take the rows at
    once instead of after the lease."""
    try:
        with db.engine.begin() as conn:
            conn.execute(update(OutboxRow).where(OutboxRow.id.in_(ids), OutboxRow.state == PENDING)
                         .values(enqueued_at=None))
    except Exception as exc:  # noqa: BLE001
        log.warning("outbox rows %s wait for the lease (%s)", ids, exc)


# --- the relay ---------------------------------------------------------------------------

def relay(at: datetime | None = None, limit: int = RELAY_BATCH) -> int:
    """Hand due pending rows to RQ (or run them inline without Redis):
    rows never handed over, and rows handed over more than ``LEASE`` ago
    whose RQ job is gone (looked for while the queue is shorter than a batch). Rows are claimed with SKIP LOCKED on PostgreSQL,
    so several relays and running jobs never take the same row. Returns how
    many rows were handed over (or run)."""
    at = at or utcnow()
    session = db.session
    # A queue at least a batch long is a backlog: the rows handed over long
    # ago wait in it, and a lost one queued again now would wait behind it
    # anyway. Looking for losses only once the queue is short spares
    # re-reading and re-stamping the whole backlog every round.
    backlog = queue.queue.is_async and queue.queue.count >= limit
    claimable = OutboxRow.enqueued_at.is_(None)
    if not backlog:
        claimable = or_(claimable, OutboxRow.enqueued_at < at - LEASE)
    claimed = session.execute(
        select(OutboxRow.id, OutboxRow.enqueued_at)
        .where(OutboxRow.state == PENDING, OutboxRow.due_at <= at, claimable)
        .order_by(OutboxRow.due_at, OutboxRow.id).limit(limit).with_for_update(skip_locked=True)
    ).all()
    if not claimed:
        session.rollback()
        return 0
    ids = [r.id for r in claimed]
    if not queue.queue.is_async:
        session.rollback()
        for row_id in ids:
            run(row_id)
        return len(ids)
    try:
        waiting = _still_queued([r.id for r in claimed if r.enqueued_at is not None])
    except Exception:
        session.rollback()
        raise
    session.execute(update(OutboxRow).where(OutboxRow.id.in_(ids)).values(enqueued_at=at))
    session.commit()
    handed = [i for i in ids if i not in waiting]
    if handed:
        try:
            _enqueue(handed)
        except Exception:
            _unmark(handed)
            raise
        log.info("relay queued %d outbox row(s)", len(handed))
    return len(handed)


def _still_queued(ids: list[int]) -> set[int]:
    """Rows whose RQ job still waits in the queue: a long backlog, not a loss."""
    if not ids:
        return set()
    jobs = Job.fetch_many([f"outbox-{i}" for i in ids], connection=queue.queue.connection)
    return {i for i, job in zip(ids, jobs) if job is not None and job.get_status(refresh=False) == JobStatus.QUEUED}


def purge(at: datetime | None = None, keep: timedelta = KEEP_DONE) -> int:
    """Delete rows done longer than ``keep`` ago (a batch at a time)."""
    at = at or utcnow()
    old = select(OutboxRow.id).where(OutboxRow.state == DONE, OutboxRow.done_at < at - keep).limit(5000)
    return db.session.execute(delete(OutboxRow).where(OutboxRow.id.in_(old))
                              .execution_options(synchronize_session=False)).rowcount


# --- running one row -----------------------------------------------------------------------

def run(row_id: int) -> str:
    """The RQ job: run one outbox row in one transaction. Never raises for
    the task's own error (the row keeps it and is retried with backoff); a
    database outage raises, and the row is handed over again after its lease."""
    try:
        return _run(row_id)
    except Exception:
        db.session.rollback()  # the worker's session serves the next job too
        raise


def _run(row_id: int) -> str:
    session = db.session
    row = session.scalars(select(OutboxRow).where(OutboxRow.id == row_id)
                          .with_for_update(skip_locked=True)).one_or_none()
    if row is None or row.state != PENDING or row.due_at > utcnow():
        session.rollback()  # another runner holds it, or it is done, failed or not yet due
        return "skipped"
    task, args = row.task, list(row.args)
    session.info[_CURRENT] = {"id": row_id, "note": None}
    try:
        _resolve(task)(*args)
    except Exception as exc:  # noqa: BLE001 - kept on the row, retried below
        session.info.pop(_CURRENT, None)
        log.exception("outbox row %s (%s) failed", row_id, task)
        session.rollback()
        return _failed(row_id, exc)
    note = session.info.pop(_CURRENT, {}).get("note")
    session.execute(update(OutboxRow).where(OutboxRow.id == row_id, OutboxRow.state == PENDING)
                    .values(state=DONE, done_at=utcnow(), attempts=OutboxRow.attempts + 1, last_error=note))
    commit()
    return "done"


def note_error(message: str) -> None:
    """Called by a task that gives up for good (an error no retry can fix):
    its row is done, with this message kept as last_error."""
    current = db.session.info.get(_CURRENT)
    if current is not None:
        current["note"] = message[:2000]


def _resolve(task: str) -> Callable[..., Any]:
    if not task.startswith(TASK_PACKAGES):
        raise ValueError(f"not a task of this product: {task}")
    module, _, name = task.rpartition(".")
    fn = getattr(importlib.import_module(module), name)
    return getattr(fn, "outbox_body", fn)  # the body of an @job, without its own commit


def _failed(row_id: int, exc: Exception) -> str:
    from flask import current_app

    session = db.session
    row = session.scalars(select(OutboxRow).where(OutboxRow.id == row_id).with_for_update()).one_or_none()
    if row is None or row.state != PENDING:
        session.rollback()
        return "skipped"
    row.attempts += 1
    row.last_error = f"{type(exc).__name__}: {exc}"[:2000]
    row.enqueued_at = None
    if row.attempts > current_app.config["SETTINGS"]["queue"]["max_retries"]:
        row.state = FAILED
        log.error("outbox row %s (%s) failed for good after %d attempt(s)", row_id, row.task, row.attempts)
    else:
        row.due_at = utcnow() + timedelta(seconds=BACKOFF[min(row.attempts, len(BACKOFF)) - 1])
    session.commit()
    return row.state if row.state == FAILED else "retry"


# --- looking at rows, retrying them ------------------------------------------------------------

def rows(failed_only: bool = False, limit: int = 50) -> list[OutboxRow]:
    """Rows not done (or only the failed ones), newest first."""
    states = [FAILED] if failed_only else [PENDING, FAILED]
    return list(db.session.scalars(select(OutboxRow).where(OutboxRow.state.in_(states))
                                   .order_by(OutboxRow.id.desc()).limit(limit)))


def retry(row_id: int | None = None, all_failed: bool = False) -> int:
    """Arm failed rows again (one by id, or every failed one); a pending row
    given by id is made due now. Delivered after the caller commits."""
    query = update(OutboxRow).where(OutboxRow.state.in_([FAILED, PENDING] if row_id is not None else [FAILED]))
    if row_id is not None:
        query = query.where(OutboxRow.id == row_id)
    elif not all_failed:
        return 0
    at = utcnow()
    ids = list(db.session.scalars(query.values(state=PENDING, attempts=0, due_at=at, enqueued_at=None)
                                  .returning(OutboxRow.id)))
    if ids and queue.queue.is_async:
        db.session.execute(update(OutboxRow).where(OutboxRow.id.in_(ids)).values(enqueued_at=at))
    db.session.info.setdefault(_NEW, []).extend(ids)
    return len(ids)


# --- outside the outbox ----------------------------------------------------------------------

def enqueue(job: str, *args: Any, job_id: str | None = None) -> None:
    """Straight onto RQ, outside any transaction: for the sandbox, which
    plays a third party's own machinery. The product uses after_commit."""
    q = queue.queue
    if job_id and q.is_async:
        try:
            existing = Job.fetch(job_id, connection=q.connection)
        except NoSuchJobError:
            existing = None
        if existing is not None and existing.get_status(refresh=False) in ACTIVE:
            return
    q.enqueue(job, *args, job_id=job_id, retry=queue.retry(), failure_ttl=7 * 86400)


def job(fn):
    """A task. Run from an outbox row, its body runs inside the row's
    transaction (``run``). Called directly it is a transport like a request:
    it commits once on success and rolls back on error."""

    @functools.wraps(fn)
    def run_directly(*args, **kwargs):
        try:
            result = fn(*args, **kwargs)
            commit()
            return result
        except Exception:
            rollback()
            raise

    run_directly.outbox_body = fn
    return run_directly
