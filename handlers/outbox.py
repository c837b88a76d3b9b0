"""Side effects that run only after the transaction that caused them commits.

A handler calls ``after_commit("wxbot.jobs.fetch_profile", openid)``; the
transport calls ``commit()``, which commits and then enqueues each job on RQ
(inline with the in-process fallback). A rollback drops them: a message the
product decided not to keep is never sent. Jobs are named by dotted path so
that handlers never import the transports that perform them.
"""
from __future__ import annotations

import functools
import logging
from datetime import datetime
from typing import Any

from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from sqlalchemy import event
from sqlalchemy.orm import Session

from app.extensions import db, queue

log = logging.getLogger(__name__)
_KEY = "fenxiao.outbox"
ACTIVE = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED}


def after_commit(job: str, *args: Any, job_id: str | None = None) -> None:
    """Queue ``job(*args)`` to run once the current transaction commits.
    ``job_id`` makes the job itself idempotent: RQ keeps one job per id."""
    _pending().append((job, args, job_id, None))


def after_commit_at(when: datetime, job: str, *args: Any, job_id: str | None = None) -> None:
    """Queue ``job(*args)`` to run at ``when`` (RQ's scheduler; the worker
    runs with it). Without Redis nothing waits in the background: the sweep
    commands and the pages that look at a due row do the work instead."""
    _pending().append((job, args, job_id, when))


def _pending() -> list:
    session = db.session()
    if not session.in_transaction():
        # Start the transaction now: a rollback before any statement ran
        # must drop the job too (SQLAlchemy fires no rollback event for a
        # session that has not begun).
        session.begin()
    return session.info.setdefault(_KEY, [])


def commit() -> None:
    session = db.session
    pending = session.info.pop(_KEY, [])
    session.commit()
    for job, args, job_id, when in pending:
        if when:
            enqueue_at(when, job, *args, job_id=job_id)
        else:
            enqueue(job, *args, job_id=job_id)


def rollback() -> None:
    db.session.info.pop(_KEY, None)
    db.session.rollback()


def enqueue(job: str, *args: Any, job_id: str | None = None) -> None:
    q = queue.queue
    if job_id and q.is_async:
        # A job waiting or running under this id does the work already; a
        # finished or failed one may be run again (a sweep re-queues it).
        # Job.fetch, not Queue.fetch_job: the latter LREMs a missing id from
        # the whole queue list, which grows with the backlog.
        try:
            existing = Job.fetch(job_id, connection=q.connection)
        except NoSuchJobError:
            existing = None
        if existing is not None and existing.get_status(refresh=False) in ACTIVE:
            log.info("job %s already queued as %s", job, job_id)
            return
    q.enqueue(job, *args, job_id=job_id, retry=queue.retry(), failure_ttl=7 * 86400)


@event.listens_for(Session, "after_rollback")
def _drop_pending(session: Session) -> None:
    session.info.pop(_KEY, None)


def enqueue_at(when: datetime, job: str, *args: Any, job_id: str | None = None) -> None:
    q = queue.queue
    if not q.is_async:
        return
    q.enqueue_at(when, job, *args, job_id=job_id, retry=queue.retry(), failure_ttl=7 * 86400)


def job(fn):
    """A queued job is a transport like a request: it commits once on
    success and rolls back on error (raising lets RQ retry it)."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        try:
            result = fn(*args, **kwargs)
            commit()
            return result
        except Exception:
            rollback()
            raise

    return run
