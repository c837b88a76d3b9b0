"""The merchant's side of the money until the management platform exists:
``flask --app wsgi withdrawals …`` and ``flask --app wsgi commissions sweep``."""
from __future__ import annotations

import click
from flask.cli import AppGroup

from handlers import commissions, outbox, withdrawals
from handlers.errors import DomainError
from handlers.money import yuan
from models import Distributor, IllegalTransition, db

withdrawals_cli = AppGroup("withdrawals", help="Distributors' withdrawal requests.")
commissions_cli = AppGroup("commissions", help="The commission ledger.")


def _run(action, *args):
    try:
        result = action(*args)
        outbox.commit()
        return result
    except (DomainError, IllegalTransition) as exc:
        outbox.rollback()
        raise click.ClickException(getattr(exc, "message", str(exc))) from None


@withdrawals_cli.command("list")
def list_waiting() -> None:
    """Requests waiting for the merchant, oldest first."""
    waiting = withdrawals.waiting()
    if not waiting:
        click.echo("no withdrawals waiting")
    for w in waiting:
        d = db.session.get(Distributor, w.distributor_id)
        click.echo(f"{w.id}\t¥{yuan(w.amount_fen)}\tfee ¥{yuan(w.fee_fen)}\tpay ¥{yuan(w.net_fen)}\t"
                   f"{d.real_name}\t{d.mobile}\t{d.user.openid}")


@withdrawals_cli.command("pay")
@click.argument("withdrawal_id", type=int)
@click.option("--reference", required=True, help="The bank transfer or payment reference.")
def pay(withdrawal_id: int, reference: str) -> None:
    """Record a withdrawal paid by hand."""
    _run(withdrawals.pay_manually, withdrawal_id, reference)
    click.echo(f"withdrawal {withdrawal_id} paid")


@withdrawals_cli.command("reject")
@click.argument("withdrawal_id", type=int)
@click.option("--reason", required=True, help="Shown to the distributor; the money goes back to them.")
def reject(withdrawal_id: int, reason: str) -> None:
    _run(withdrawals.reject, withdrawal_id, reason)
    click.echo(f"withdrawal {withdrawal_id} rejected")


@commissions_cli.command("sweep")
def sweep() -> None:
    """Make due commission withdrawable (the delayed jobs do it on time;
    this is the safety net)."""
    click.echo(f"{_run(commissions.sweep)} commission row(s) settled")
