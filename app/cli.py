"""Command-line entry points: ``flask --app wsgi <command>``."""
from __future__ import annotations

import click
import requests
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext

from app.extensions import queue, redis_store

menu_cli = AppGroup("menu", help="The official account's custom menu.")


@menu_cli.command("push")
def menu_push() -> None:
    """Publish wxbot/menu.json to WeChat (menu/create)."""
    from wechatpy.exceptions import WeChatClientException

    from wxbot.client import wechat_client
    from wxbot.commands import COMMANDS
    from wxbot.menu import load_menu, problems

    from .cli_support import printable  # the token URL carries the AppSecret

    menu = load_menu()
    found = problems(menu, set(COMMANDS))
    if found:
        raise click.ClickException("菜单定义有误：\n" + "\n".join(found))
    try:
        wechat_client().menu.create(menu)
    except WeChatClientException as exc:
        raise click.ClickException(f"WeChat refused the menu: {exc.errcode} {exc.errmsg}") from None
    except requests.RequestException as exc:
        raise click.ClickException(f"could not reach WeChat at {printable(exc.request.url) if exc.request else ''}: "
                                   f"{type(exc).__name__}") from None
    click.echo(f"menu published to {current_app.config['SETTINGS']['wechat']['api_base']}")


@click.command("worker")
@click.option("--burst", is_flag=True, help="Run the queued jobs, then exit.")
@with_appcontext
def worker(burst: bool) -> None:
    """Run an RQ worker for the background jobs (with the retry scheduler)."""
    from rq import Worker

    settings = current_app.config["SETTINGS"]
    if settings.uses_redis_fallback:
        raise click.ClickException(
            "[app] redis_url is empty: jobs run inline in the web process; a worker needs Redis."
        )
    w = Worker([queue.queue], connection=redis_store.conn)
    w.work(burst=burst, with_scheduler=True)


def register(app: Flask) -> None:
    from .cli_distribution import applications_cli, units_cli
    from .cli_money import commissions_cli, withdrawals_cli
    from .cli_refunds import refunds_cli
    from .cli_shop import orders_cli, products_cli

    app.cli.add_command(applications_cli)
    app.cli.add_command(units_cli)
    app.cli.add_command(products_cli)
    app.cli.add_command(orders_cli)
    app.cli.add_command(withdrawals_cli)
    app.cli.add_command(commissions_cli)
    app.cli.add_command(menu_cli)
    app.cli.add_command(worker)
    app.cli.add_command(refunds_cli)
