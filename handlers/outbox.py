"""Side effects that run only after the transaction that caused them commits.

A handler calls ``after_commit("wxbot.jobs.fetch_profile", openid)``; the
transport calls ``commit()``, which commits and then enqueues each job on RQ
(inline with the in-process fallback). A rollback drops them: a message the
product decided not to keep is never sent. Jobs are named by dotted path so
that handlers never import the transports that perform them.
"""
from __future__ import annotations

import logging
from typing import Any

from rq.job import JobStatus
from sqlalchemy import event
from sqlalchemy.orm import Session

from app.extensions import db, queue

log = logging.getLogger(__name__)
_KEY = "fenxiao.outbox"
ACTIVE = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED}


def after_commit(job: str, *args: Any, job_id: str | None = None) -> None:
    """Queue ``job(*args)`` to run once the current transaction commits.
    ``job_id`` makes the job itself idempotent: RQ keeps one job per id."""
    session = db.session()
    if not session.in_transaction():
        # Start the transaction now: a rollback before any statement ran
        # must drop this job too (SQLAlchemy fires no rollback event for a
        # session that has not begun).
        session.begin()
    session.info.setdefault(_KEY, []).append((job, args, job_id))


def commit() -> None:
    session = db.session
    pending = session.info.pop(_KEY, [])
    session.commit()
    for job, args, job_id in pending:
        enqueue(job, *args, job_id=job_id)


def rollback() -> None:
    db.session.info.pop(_KEY, None)
    db.session.rollback()


def enqueue(job: str, *args: Any, job_id: str | None = None) -> None:
    q = queue.queue
    if job_id and q.is_async:
        existing = q.fetch_job(job_id)
        # A job waiting or running under this id does the work already; a
        # finished or failed one may be run again (a sweep re-queues it).
        if existing is not None and existing.get_status(refresh=False) in ACTIVE:
            log.info("job %s already queued as %s", job, job_id)
            return
    q.enqueue(job, *args, job_id=job_id, retry=queue.retry(), failure_ttl=7 * 86400)


@event.listens_for(Session, "after_rollback")
def _drop_pending(session: Session) -> None:
    session.info.pop(_KEY, None)
