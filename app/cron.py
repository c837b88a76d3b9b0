"""Jobs that run on a timetable: ``flask --app wsgi cron`` (one per
deployment, beside the workers) enqueues each on RQ when it falls due, with
RQ's own cron scheduler. Every job here is safe to run twice or late: a
second scheduler or a rerun by hand changes nothing. Times are cron
expressions in UTC (China time minus 8 hours).

In the try-out (no Redis) nothing runs on a timetable; each job has a CLI
command and, where a merchant needs it, a button in /admin.
"""
from __future__ import annotations

import importlib
import logging
from typing import Callable

# (the job's dotted path, cron expression in UTC, what it does)
SCHEDULE: list[tuple[str, str, str]] = [
    ("handlers.leaderboard.nightly_rebuild", "30 19 * * *", "rebuild the leaderboard from SQL (03:30 China time)"),
    ("handlers.reconcile.nightly", "30 2 * * *",
     "reconcile yesterday's gateway bills (10:30 China time, once WeChat Pay's bill is ready)"),
    ("handlers.exports.expire_job", "0 20 * * *", "remove CSV export files older than 7 days (04:00 China time)"),
    ("handlers.stats.nightly", "15 16 * * *", "count yesterday's statistics again from the rows (00:15 China time)"),
]


def resolve(path: str) -> Callable:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def serve(connection, queue_name: str) -> None:
    """Run RQ's cron scheduler in this process until SIGINT or SIGTERM."""
    from rq.cron import CronScheduler

    scheduler = CronScheduler(connection=connection, logging_level=logging.INFO, name="fenxiao-cron")
    for path, expression, _ in SCHEDULE:
        scheduler.register(resolve(path), queue_name=queue_name, cron=expression, name=path)
    scheduler.start()
