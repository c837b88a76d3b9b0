"""Orders from the command line: ``flask --app wsgi orders …`` (the admin's
订单 page does the same through the same handlers)."""
from __future__ import annotations

import click
from flask.cli import AppGroup

from .cli_support import row, run_handler

from handlers.money import yuan
from handlers import audit, orders, payments

orders_cli = AppGroup("orders", help="Orders: list, ship, refund, sweep.")


@orders_cli.command("list")
@click.option("--status", default=None)
def list_orders(status) -> None:
    from sqlalchemy import select

    from models import Order, db

    query = select(Order).order_by(Order.id.desc()).limit(100)
    if status:
        query = query.where(Order.status == status)
    for o in db.session.scalars(query):
        row(o.order_no, o.status, f"¥{yuan(o.total_fen)}", o.receiver_name, o.title)


@orders_cli.command("ship")
@click.argument("order_no")
@click.option("--carrier", required=True, help="e.g. 顺丰速运")
@click.option("--tracking-no", required=True)
def ship(order_no, carrier, tracking_no) -> None:
    run_handler(orders.ship_order, order_no, carrier, tracking_no, actor=audit.cli_actor())
    click.echo(f"order {order_no} shipped")


@orders_cli.command("refund")
@click.argument("order_no")
@click.option("--reason", required=True)
@click.option("--amount-fen", type=click.IntRange(min=1), default=None,
              help="Refund this much (fen); default: all that is left.")
def refund(order_no, reason, amount_fen) -> None:
    """Refund a paid order through its gateway: all that is left of it, or
    --amount-fen of it (partial refunds take commission back in proportion)."""
    r = run_handler(payments.start_refund, order_no, reason, actor=audit.cli_actor(), amount_fen=amount_fen)
    kind = "partial refund" if r.partial else "refund"
    click.echo(f"{kind} {r.out_refund_no} of ¥{yuan(r.amount_fen)} requested")


@orders_cli.command("sweep")
def sweep() -> None:
    """Cancel overdue unpaid orders and confirm receipt of those past their
    date (the delayed jobs do this on time; this is the safety net)."""
    expired, confirmed = run_handler(orders.sweep)
    click.echo(f"{expired} order(s) cancelled, {confirmed} confirmed")
    from handlers import pushes  # the webhook's done-push keys: a day is all they are needed for

    click.echo(f"{run_handler(pushes.prune)} webhook push key(s) pruned")
