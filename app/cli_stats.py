"""``flask --app wsgi stats …``: the statistics page's days (handlers.stats)."""
from __future__ import annotations

import click
from flask.cli import AppGroup

from handlers import stats

from .cli_support import run_handler

stats_cli = AppGroup("stats", help="Statistics: count past days again from the rows.")


@stats_cli.command("rebuild")
@click.option("--from", "first", default=None, help="First China day, YYYY-MM-DD (default: yesterday).")
@click.option("--to", "last", default=None, help="Last China day, YYYY-MM-DD (default: yesterday).")
def rebuild(first, last) -> None:
    """Count the days --from..--to again from orders, refunds, users, the
    ledger, visits and referrals, and store them (idempotent: safe to run
    again; with no option, yesterday: a nightly job after 00:10 China time)."""
    start, end, days = run_handler(stats.rebuild, first, last)
    click.echo(f"{days} day(s) counted again: {start.isoformat()} .. {end.isoformat()}")
