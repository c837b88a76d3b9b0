"""Command-line entry points: ``flask --app wsgi <command>``."""
from __future__ import annotations

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext

from .cli_support import row

menu_cli = AppGroup("menu", help="The official account's custom menu.")


@menu_cli.command("push")
def menu_push() -> None:
    """Publish wxbot/menu.json to WeChat (menu/create), as a menu version
    (the admin's 公众号菜单 page pushes the same way)."""
    from handlers import menu as menu_rules
    from handlers import outbox
    from handlers.audit import cli_actor
    from handlers.errors import DomainError
    from wxbot.menu import load_menu

    try:
        pushed = menu_rules.push(load_menu(), actor=cli_actor())
        outbox.commit()
    except menu_rules.PushFailed as exc:
        outbox.rollback()
        if exc.errcode is None:
            raise click.ClickException(f"could not reach WeChat at "
                                       f"{current_app.config['SETTINGS']['wechat']['api_base']}: {exc.errmsg}") from None
        raise click.ClickException(f"WeChat refused the menu: {exc.errcode} {exc.errmsg}") from None
    except DomainError as exc:
        outbox.rollback()
        raise click.ClickException(exc.message) from None
    click.echo(f"menu published to {current_app.config['SETTINGS']['wechat']['api_base']} (version {pushed.id})")


@click.command("worker")
@click.option("--burst", is_flag=True, help="Relay due outbox rows once, run the queued jobs, then exit.")
@click.option("--processes", "-n", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Worker processes (RQ's WorkerPool; each one reconnects after a Redis outage).")
@with_appcontext
def worker(burst: bool, processes: int) -> None:
    """Run the background jobs: RQ worker(s) and the outbox relay. Survives
    Redis and database outages (logs them and reconnects with backoff)."""
    import logging

    from .worker import Pool, serve

    settings = current_app.config["SETTINGS"]
    if settings.uses_redis_fallback:
        raise click.ClickException(
            "[app] redis_url is empty: jobs run inline in the web process; a worker needs Redis."
        )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    app = current_app._get_current_object()
    if processes == 1:
        try:
            serve(app, burst=burst)
        except RuntimeError as exc:
            raise click.ClickException(str(exc)) from None
    else:
        Pool(app, processes).start(burst=burst)


outbox_cli = AppGroup("outbox", help="Side effects waiting, failed or being delivered (the transactional outbox).")


@outbox_cli.command("list")
@click.option("--failed", is_flag=True, help="Only the rows out of retries.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10000))
def outbox_list(failed: bool, limit: int) -> None:
    """Rows not done yet (pending or failed), newest first."""
    from handlers import outbox

    found = outbox.rows(failed_only=failed, limit=limit)
    for r in found:
        row(r.id, r.state, r.task, f"attempts={r.attempts}", f"due={r.due_at:%Y-%m-%d %H:%M:%S}Z", r.key or "",
            (r.last_error or "").strip().splitlines()[-1][:160] if r.last_error else "")
    click.echo(f"{len(found)} row(s)")


@outbox_cli.command("retry")
@click.argument("row_id", required=False, type=click.IntRange(1, 2**63 - 1))
@click.option("--all-failed", is_flag=True, help="Every failed row.")
def outbox_retry(row_id: int | None, all_failed: bool) -> None:
    """Run a failed (or waiting) row again now, or every failed row."""
    from handlers import outbox

    if (row_id is None) == (not all_failed):
        raise click.UsageError("give a row id or --all-failed (not both)")
    armed = outbox.retry(row_id, all_failed=all_failed)
    outbox.commit()
    if row_id is not None and not armed:
        raise click.ClickException(f"outbox row {row_id}: no such row waiting or failed")
    click.echo(f"{armed} row(s) queued again")


@outbox_cli.command("relay")
@click.option("--once", is_flag=True, help="One pass, then exit (e.g. from cron).")
def outbox_relay(once: bool) -> None:
    """Hand due outbox rows to RQ: never queued, delayed and now due, or
    queued over a minute ago and not done (lost with Redis, or a dead worker).
    ``flask worker`` runs this too; a separate relay is optional."""
    from handlers import outbox

    if not once:
        from .worker import Stop, relay_loop

        stop = Stop()
        stop.install()
        relay_loop(current_app._get_current_object(), stop)
        return
    total = 0
    try:
        while (handed := outbox.relay()) > 0:
            total += handed
            if handed < outbox.RELAY_BATCH:
                break
    except Exception as exc:  # noqa: BLE001 - e.g. Redis down: say so, exit non-zero
        raise click.ClickException(f"relay stopped: {type(exc).__name__}: {exc}") from None
    click.echo(f"{total} row(s) handed over")


@click.command("cron")
@with_appcontext
def cron() -> None:
    """Enqueue the timetabled jobs (app/cron.py) when they fall due; run one
    beside the workers. Needs Redis."""
    from .cron import SCHEDULE, serve
    from .extensions import queue, redis_store

    if current_app.config["SETTINGS"].uses_redis_fallback:
        raise click.ClickException("cron needs Redis ([app] redis_url): the try-out runs these jobs by command")
    for path, expression, what in SCHEDULE:
        click.echo(f"{expression:<14} {path}: {what}")
    serve(redis_store.conn, queue.queue.name)


def register(app: Flask) -> None:
    from .cli_distribution import applications_cli, units_cli
    from .cli_money import commissions_cli, withdrawals_cli
    from .cli_refunds import refunds_cli
    from .cli_orders import orders_cli
    from .cli_products import products_cli
    from .cli_staff import staff_cli
    from .cli_tryout import tryout_cli
    from .cli_leaderboard import leaderboard_cli
    from .cli_reconcile import reconcile_cli
    from .cli_rules import rules_cli
    from .cli_stats import stats_cli

    app.cli.add_command(applications_cli)
    app.cli.add_command(units_cli)
    app.cli.add_command(products_cli)
    app.cli.add_command(orders_cli)
    app.cli.add_command(withdrawals_cli)
    app.cli.add_command(commissions_cli)
    app.cli.add_command(menu_cli)
    app.cli.add_command(worker)
    app.cli.add_command(cron)
    app.cli.add_command(outbox_cli)
    app.cli.add_command(refunds_cli)
    app.cli.add_command(staff_cli)
    app.cli.add_command(tryout_cli)
    app.cli.add_command(leaderboard_cli)
    app.cli.add_command(reconcile_cli)
    app.cli.add_command(rules_cli)
    app.cli.add_command(stats_cli)
