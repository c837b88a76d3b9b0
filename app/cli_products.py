"""The catalogue from the command line: ``flask --app wsgi products …``
(the admin's 商品 page does the same through the same handlers)."""
from __future__ import annotations

import click
from flask.cli import AppGroup

from .cli_support import row, run_handler

from handlers.money import yuan
from handlers import audit, catalogue

products_cli = AppGroup("products", help="The catalogue.")


@products_cli.command("list")
def list_products() -> None:
    for p in catalogue.all_products():
        rates = "/".join("default" if r is None else str(r) for r in (p.level1_rate_bp, p.level2_rate_bp)) + " bp"
        row(p.id, "on sale" if p.on_sale else "off sale", f"¥{yuan(p.price_fen)}", f"stock {p.stock}", rates,
            f"order {p.sort_order}", p.name)


@products_cli.command("add")
@click.option("--name", required=True)
@click.option("--price-fen", type=int, required=True, help="Price in fen (1 yuan = 100).")
@click.option("--stock", type=int, default=0)
@click.option("--description", default="")
@click.option("--image", "images", multiple=True, help="Image URL; repeat for more, the first is the cover.")
@click.option("--level1-rate-bp", type=int, default=None, help="Commission for the unit's distributor.")
@click.option("--level2-rate-bp", type=int, default=None, help="Commission for their level-1 parent.")
@click.option("--sort-order", type=int, default=0, help="Display order in the shop: smaller first.")
@click.option("--off-sale", is_flag=True, help="Create it off the shelf.")
def add(name, price_fen, stock, description, images, level1_rate_bp, level2_rate_bp, sort_order, off_sale) -> None:
    product = run_handler(catalogue.add_product, name, price_fen, stock, description, list(images),
                          on_sale=not off_sale, level1_rate_bp=level1_rate_bp, level2_rate_bp=level2_rate_bp,
                          sort_order=sort_order, actor=audit.cli_actor())
    click.echo(f"product {product.id} added")


@products_cli.command("update")
@click.argument("product_id", type=int)
@click.option("--name")
@click.option("--price-fen", type=int)
@click.option("--stock", type=int)
@click.option("--on-sale/--off-sale", default=None)
@click.option("--level1-rate-bp", type=int)
@click.option("--level2-rate-bp", type=int)
@click.option("--sort-order", type=int, help="Display order in the shop: smaller first.")
@click.option("--description")
def update(product_id, **options) -> None:
    changes = {k: v for k, v in options.items() if v is not None}
    run_handler(catalogue.update_product, product_id, actor=audit.cli_actor(), **changes)
    click.echo(f"product {product_id} updated")


@products_cli.command("seed")
def seed() -> None:
    """The try-out's small catalogue (only into an empty one)."""
    click.echo(f"{run_handler(catalogue.seed_tryout_catalogue)} product(s) seeded")
