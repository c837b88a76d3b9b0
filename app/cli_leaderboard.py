"""``flask --app wsgi leaderboard …``: The sales leaderboard: rebuild from SQL.

``rebuild`` makes every live Redis key again from payments and refunds (the
nightly job does the same); ``show --period week`` prints a board as the
pages see it (from SQL without Redis)."""
from __future__ import annotations

import click
from flask.cli import AppGroup

from handlers import leaderboard
from handlers.errors import DomainError
from handlers.money import yuan

leaderboard_cli = AppGroup("leaderboard", help="The sales leaderboard: rebuild from SQL.")


def _plain(text: str) -> str:
    return "".join(c if c.isprintable() else " " for c in text or "")


@leaderboard_cli.command("rebuild")
def rebuild() -> None:
    """Rebuild every leaderboard key in Redis from SQL."""
    try:
        counts = leaderboard.rebuild()
    except DomainError as exc:
        raise click.ClickException(exc.message) from exc
    for key, members in sorted(counts.items()):
        click.echo(f"{key}\t{members} unit(s)")
    click.echo(f"rebuilt {len(counts)} key(s)")


@leaderboard_cli.command("show")
@click.option("--period", type=click.Choice(list(leaderboard.PERIODS)), default="week", show_default=True)
@click.option("--top", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--source", type=click.Choice(["redis", "sql"]), default=None,
              help="Where to read (default: Redis, or SQL without Redis).")
def show(period: str, top: int, source: str | None) -> None:
    """Print a board: rank, unit id, distributor, net sales."""
    board = leaderboard.board(period, top=top, source=source)
    click.echo(f"{leaderboard.PERIODS[period]} ({board.period.key})")
    if not board.rows:
        click.echo("no sales yet")
    for r in board.rows:
        click.echo(f"{r.rank}\tunit {r.unit_id}\t{_plain(r.name)}\t¥{yuan(r.fen)}")
