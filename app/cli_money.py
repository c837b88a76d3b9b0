"""The merchant's side of the money until the management platform exists:
``flask --app wsgi withdrawals …`` and ``flask --app wsgi commissions sweep``."""
from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup

from .cli_support import printable, row, run_handler

from handlers import commissions, outbox, withdrawals
from handlers.errors import DomainError
from handlers.money import yuan
from models import Distributor, WithdrawalStatus, db

withdrawals_cli = AppGroup("withdrawals", help="Distributors' withdrawal requests.")
commissions_cli = AppGroup("commissions", help="The commission ledger.")


@withdrawals_cli.command("list")
def list_waiting() -> None:
    """Requests waiting for the merchant, oldest first."""
    waiting = withdrawals.waiting()
    if not waiting:
        click.echo("no withdrawals waiting")
    for w in waiting:
        d = db.session.get(Distributor, w.distributor_id)
        owed = -min(commissions.balance_of(d.id).withdrawable_fen, 0)  # a claw-back: nothing is paid until made good
        row(w.id, w.status, f"¥{yuan(w.amount_fen)}", f"fee ¥{yuan(w.fee_fen)}", f"pay ¥{yuan(w.net_fen)}",
            d.real_name, d.mobile, d.user.openid, *([f"owes ¥{yuan(owed)} (claw-back)"] if owed else []))


@withdrawals_cli.command("pay")
@click.argument("withdrawal_id", type=int)
@click.option("--reference", required=True, help="The bank transfer or payment reference.")
def pay(withdrawal_id: int, reference: str) -> None:
    """Record a withdrawal paid by hand."""
    run_handler(withdrawals.pay_manually, withdrawal_id, reference)
    click.echo(f"withdrawal {withdrawal_id} paid")


@withdrawals_cli.command("transfer")
@click.argument("withdrawal_id", type=int)
def transfer(withdrawal_id: int) -> None:
    """Pay a withdrawal through a WeChat Pay merchant transfer: the transfer
    bill is created in the background, then the distributor confirms it in
    WeChat (收款). Run again for a withdrawal whose bill is not there yet, to
    ask WeChat Pay once more."""
    if not current_app.config["SETTINGS"]["wechatpay"]["mchid"]:
        raise click.ClickException("WeChat Pay is not configured ([wechatpay] mchid)")
    try:
        w = withdrawals.get(withdrawal_id)
    except DomainError as exc:
        raise click.ClickException(exc.message) from None
    if w.status == WithdrawalStatus.TRANSFERRING.value and w.method == "wechat_transfer":
        if w.package_info:
            click.echo(f"withdrawal {withdrawal_id}: transfer {w.out_bill_no} waits for the distributor to confirm")
            return
        out_bill_no = w.out_bill_no
    else:
        out_bill_no = run_handler(withdrawals.start_transfer, withdrawal_id).out_bill_no
    # The same out_bill_no is the same bill at WeChat Pay: asking again is safe.
    outbox.after_commit("pay.jobs.create_transfer", out_bill_no, job_id=f"transfer-{out_bill_no}")
    outbox.commit()
    db.session.rollback()
    w = withdrawals.get(withdrawal_id)
    if w.package_info:
        click.echo(f"withdrawal {withdrawal_id}: transfer {out_bill_no} created, waiting for the distributor to "
                   f"confirm")
    elif w.status == WithdrawalStatus.TRANSFERRING.value:
        click.echo(f"withdrawal {withdrawal_id}: transfer {out_bill_no} queued")
    else:
        reason = printable(w.reason or "")
        click.echo(f"withdrawal {withdrawal_id}: transfer {out_bill_no} {w.status}: {reason}".rstrip(": "))


@withdrawals_cli.command("reject")
@click.argument("withdrawal_id", type=int)
@click.option("--reason", required=True, help="Shown to the distributor; the money goes back to them.")
def reject(withdrawal_id: int, reason: str) -> None:
    run_handler(withdrawals.reject, withdrawal_id, reason)
    click.echo(f"withdrawal {withdrawal_id} rejected")


@commissions_cli.command("sweep")
def sweep() -> None:
    """Make due commission withdrawable (the delayed jobs do it on time;
    this is the safety net)."""
    click.echo(f"{run_handler(commissions.sweep)} commission row(s) settled")


@withdrawals_cli.command("sync")
def sync() -> None:
    """Ask WeChat Pay about transfers still waiting for their notification."""
    from pay.jobs import sync_transfers

    click.echo(f"{sync_transfers()} transfer(s) finished")
