"""The merchant's shop and orders until the management platform exists:
``flask --app wsgi products …`` and ``flask --app wsgi orders …``."""
from __future__ import annotations

import click
from flask.cli import AppGroup

from .cli_support import row, run_handler

from handlers import catalogue, orders, payments

products_cli = AppGroup("products", help="The catalogue.")
orders_cli = AppGroup("orders", help="Orders: list, ship, refund, sweep.")


def _yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


@products_cli.command("list")
def list_products() -> None:
    for p in catalogue.all_products():
        rates = "/".join("default" if r is None else str(r) for r in (p.level1_rate_bp, p.level2_rate_bp)) + " bp"
        row(p.id, "on sale" if p.on_sale else "off sale", f"¥{_yuan(p.price_fen)}", f"stock {p.stock}", rates, p.name)


@products_cli.command("add")
@click.option("--name", required=True)
@click.option("--price-fen", type=int, required=True, help="Price in fen (1 yuan = 100).")
@click.option("--stock", type=int, default=0)
@click.option("--description", default="")
@click.option("--image", "images", multiple=True, help="Image URL; repeat for more, the first is the cover.")
@click.option("--level1-rate-bp", type=int, default=None, help="Commission for the unit's distributor.")
@click.option("--level2-rate-bp", type=int, default=None, help="Commission for their level-1 parent.")
def add(name, price_fen, stock, description, images, level1_rate_bp, level2_rate_bp) -> None:
    product = run_handler(catalogue.add_product, name, price_fen, stock, description, list(images),
                   level1_rate_bp=level1_rate_bp, level2_rate_bp=level2_rate_bp)
    click.echo(f"product {product.id} added")


@products_cli.command("update")
@click.argument("product_id", type=int)
@click.option("--name")
@click.option("--price-fen", type=int)
@click.option("--stock", type=int)
@click.option("--on-sale/--off-sale", default=None)
@click.option("--level1-rate-bp", type=int)
@click.option("--level2-rate-bp", type=int)
def update(product_id, **options) -> None:
    changes = {k: v for k, v in options.items() if v is not None}
    run_handler(catalogue.update_product, product_id, **changes)
    click.echo(f"product {product_id} updated")


@products_cli.command("seed")
def seed() -> None:
    """The try-out's small catalogue (only into an empty one)."""
    click.echo(f"{run_handler(catalogue.seed_tryout_catalogue)} product(s) seeded")


@orders_cli.command("list")
@click.option("--status", default=None)
def list_orders(status) -> None:
    from sqlalchemy import select

    from models import Order, db

    query = select(Order).order_by(Order.id.desc()).limit(100)
    if status:
        query = query.where(Order.status == status)
    for o in db.session.scalars(query):
        row(o.order_no, o.status, f"¥{_yuan(o.total_fen)}", o.receiver_name, o.title)


@orders_cli.command("ship")
@click.argument("order_no")
@click.option("--carrier", required=True, help="e.g. 顺丰速运")
@click.option("--tracking-no", required=True)
def ship(order_no, carrier, tracking_no) -> None:
    run_handler(orders.ship_order, order_no, carrier, tracking_no)
    click.echo(f"order {order_no} shipped")


@orders_cli.command("refund")
@click.argument("order_no")
@click.option("--reason", required=True)
def refund(order_no, reason) -> None:
    """Refund a paid or shipped order in full through its gateway."""
    r = run_handler(payments.start_refund, order_no, reason)
    click.echo(f"refund {r.out_refund_no} requested")


@orders_cli.command("sweep")
def sweep() -> None:
    """Cancel overdue unpaid orders and confirm receipt of those past their
    date (the delayed jobs do this on time; this is the safety net)."""
    expired, confirmed = run_handler(orders.sweep)
    click.echo(f"{expired} order(s) cancelled, {confirmed} confirmed")
    from handlers import pushes  # the webhook's done-push keys: a day is all they are needed for

    click.echo(f"{run_handler(pushes.prune)} webhook push key(s) pruned")
