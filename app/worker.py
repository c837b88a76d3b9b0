"""The background worker: RQ workers that outlive a Redis outage, with the
outbox relay beside them.

One worker process runs an RQ ``SimpleWorker`` (jobs run in the process
itself: no fork per job, so database and HTTP connections are reused) in a
loop that reconnects with backoff when Redis goes away, plus a relay thread
that hands due outbox rows to RQ every few seconds. ``--processes N`` runs N
such processes under RQ's ``WorkerPool``, which respawns any that dies.
"""
from __future__ import annotations

import logging
import signal
import threading
import time
import uuid

import redis
from flask import Flask
from rq import Queue, SimpleWorker
from rq.worker_pool import ForkProcess, WorkerPool

from app.extensions import db, queue, redis_store
from handlers import outbox

log = logging.getLogger("fenxiao.worker")
RELAY_EVERY = 2.0  # seconds between relay passes
PURGE_EVERY = 600.0
MAX_BACKOFF = 30.0


class _Worker(SimpleWorker):
    """Remembers whether it stopped because it was asked to (SIGINT/SIGTERM)
    or because Redis failed under it."""

    asked_to_stop = False
    max_connection_wait_time = 8.0  # RQ's own reconnect loop while idle waits at most this long

    def request_stop(self, signum, frame):
        self.asked_to_stop = True
        super().request_stop(signum, frame)


class Stop:
    def __init__(self) -> None:
        self.event = threading.Event()

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        log.info("worker: %s received, stopping", signal.Signals(signum).name)
        self.event.set()

    def __bool__(self) -> bool:
        return self.event.is_set()


def relay_loop(app: Flask, stop: Stop, every: float = RELAY_EVERY) -> None:
    """Hand due outbox rows to RQ until stopped; an outage of Redis or the
    database is logged and waited out."""
    last_purge, failing = 0.0, False
    with app.app_context():
        while not stop:
            try:
                while outbox.relay() == outbox.RELAY_BATCH:
                    pass
                if time.monotonic() - last_purge > PURGE_EVERY:
                    outbox.purge()
                    db.session.commit()
                    last_purge = time.monotonic()
                if failing:
                    log.warning("relay: working again")
                failing = False
            except Exception as exc:  # noqa: BLE001 - keep relaying once the outage ends
                db.session.rollback()
                if not failing:
                    log.error("relay: %s: %s (retrying every %.0f s)", type(exc).__name__,
                              str(exc).splitlines()[0] if str(exc) else "", every)
                failing = True
            finally:
                db.session.remove()
            stop.event.wait(every)


def serve(app: Flask, burst: bool = False, relay: bool = True) -> None:
    """One worker process: the RQ worker in a reconnecting loop, the relay in
    a thread. Returns when asked to stop (or, with ``burst``, when the queue
    is empty)."""
    stop = Stop()
    stop.install()
    if burst:
        with app.app_context():
            try:
                outbox.relay()  # one pass, then drain what is queued
            except Exception as exc:  # noqa: BLE001 - the worker below says what is wrong
                log.error("relay: %s: %s", type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
                db.session.rollback()
    else:
        threading.Thread(target=relay_loop, args=(app, stop), name="outbox-relay", daemon=True).start()
    backoff = 1.0
    while not stop:
        try:  # even building an RQ worker talks to Redis
            worker = _Worker([Queue(queue.queue.name, connection=redis_store.conn)], connection=redis_store.conn,
                             name=f"fenxiao-{uuid.uuid4().hex[:12]}")
            worker.work(burst=burst, logging_level=logging.getLevelName(log.getEffectiveLevel()) or "INFO")
            if burst or worker.asked_to_stop:
                break
            problem = "the RQ worker stopped (see its log above)"
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            problem = f"Redis unreachable: {exc}"
        except ValueError as exc:  # e.g. a stale registration of the same name
            problem = str(exc)
        if burst:
            raise RuntimeError(problem)
        stop.install()  # the RQ worker had replaced our handlers
        log.error("worker: %s; reconnecting in %.0f s", problem, backoff)
        stop.event.wait(backoff)
        backoff = min(backoff * 2, MAX_BACKOFF)
        if _redis_answers():
            backoff = 1.0
    stop.event.set()


def _redis_answers() -> bool:
    try:
        return bool(redis_store.conn.ping())
    except redis.RedisError:
        return False


class Pool(WorkerPool):
    """RQ's WorkerPool, each process running ``serve`` (our reconnecting
    SimpleWorker with its relay) instead of a plain RQ worker."""

    def __init__(self, app: Flask, num_workers: int) -> None:
        super().__init__([queue.queue.name], connection=redis_store.conn, num_workers=num_workers)
        self.app = app

    def get_worker_process(self, name, burst, _sleep=0, logging_level="INFO"):
        return ForkProcess(target=_serve_forked, args=(self.app, burst), name=f"fenxiao worker {name}")


def _serve_forked(app: Flask, burst: bool) -> None:
    with app.app_context():
        db.engine.dispose(close=False)  # never share the parent's database connections
        serve(app, burst=burst)
