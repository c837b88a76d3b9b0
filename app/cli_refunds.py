"""Refunds the merchant must look at, until the management platform exists:
``flask --app wsgi refunds list [--status abnormal]``.

Listed by default: refunds still open (pending, or abnormal — WeChat Pay
could not pay the buyer back, finish it in its merchant console), automatic
refunds that failed (the money is still with the merchant) and partial
refunds made at a gateway (recorded, not applied: the merchant decides)."""
from __future__ import annotations

import click
from flask.cli import AppGroup

from handlers import payments
from handlers.money import yuan
from models import Order, Payment, RefundStatus, db

refunds_cli = AppGroup("refunds", help="Refunds waiting for the merchant.")


def _plain(text: str) -> str:
    return "".join(c if c.isprintable() else " " for c in text or "")


@refunds_cli.command("list")
@click.option("--status", type=click.Choice([s.value for s in RefundStatus]), default=None,
              help="Every refund in this state instead.")
def list_refunds(status: str | None) -> None:
    found = payments.refunds_to_watch(status)
    if not found:
        click.echo("no refunds to look at")
    for r in found:
        order = db.session.get(Order, r.order_id)
        payment = db.session.get(Payment, r.payment_id) if r.payment_id else None
        paid = f"{payment.channel} {payment.transaction_id}{' (second payment)' if payment.duplicate else ''}" \
            if payment else "-"
        kind = r.origin + (" partial" if r.partial else "")
        click.echo(f"{r.out_refund_no}\t{r.status}\t{kind}\t¥{yuan(r.amount_fen)}\torder {order.order_no} "
                   f"({order.status})\t{_plain(paid)}\t{_plain(r.reason)}")
