"""``flask --app wsgi reconcile …``: Reconciliation with the gateways' bills.

``run --date YYYY-MM-DD`` (default yesterday, China time) downloads each
configured gateway's bill of the day and records every difference (the
nightly job does the same for yesterday); ``list`` prints the recent days."""
from __future__ import annotations

from datetime import timedelta

import click
from flask.cli import AppGroup

from handlers import audit, outbox
from handlers import reconcile
from handlers.errors import DomainError
from handlers.money import yuan

reconcile_cli = AppGroup("reconcile", help="Reconciliation with the gateways' bills.")

STATE_WORDS = {"clean": "clean", "differences": "differences", "failed": "FAILED"}


def _fen(value: int | None) -> str:
    return "-" if value is None else f"¥{yuan(value)}"


@reconcile_cli.command("run")
@click.option("--date", "day", default=None, metavar="YYYY-MM-DD", help="The China day (default: yesterday).")
def run(day: str | None) -> None:
    """Reconcile one day's bills of every configured gateway."""
    try:
        chosen = reconcile.parse_day(day) if day is not None else reconcile.today() - timedelta(days=1)
        done = reconcile.run_day(chosen, actor=audit.cli_actor())
        outbox.commit()
    except DomainError as exc:
        outbox.rollback()
        raise click.ClickException(exc.message) from exc
    failed = False
    for r in done:
        click.echo(f"{r.day}\t{r.channel}\t{STATE_WORDS[r.state]}\t{r.differences} difference(s)"
                   + (f"\t{r.message}" if r.message else ""))
        failed = failed or r.state == "failed"
        _, diffs = reconcile.day_detail(r.day)
        for d in diffs:
            if d.channel == r.channel:
                click.echo(f"  {d.kind}\t{d.ref}\t{d.problem}\tgateway {_fen(d.gateway_fen)} {d.gateway_state or '-'}"
                           f"\there {_fen(d.local_fen)} {d.local_state or '-'}"
                           + ("\tresolved" if d.resolved_at else ""))
    if failed:
        raise click.ClickException("a bill could not be had; see the message above")


@reconcile_cli.command("list")
@click.option("--days", type=click.IntRange(1, 366), default=14, show_default=True)
def list_days(days: int) -> None:
    """The recent days: each gateway's state and the unresolved differences."""
    for v in reconcile.overview(days):
        parts = []
        for channel in reconcile.CHANNELS:
            r = v.runs.get(channel)
            parts.append(f"{channel} " + ("not run" if r is None else
                                          f"{STATE_WORDS[r.state]} {r.differences}" if r.state != "failed"
                                          else f"FAILED {r.message}"))
        click.echo(f"{v.day}\t" + "\t".join(parts) + f"\t{v.open_count} unresolved")
