"""The merchant's side of the money until the management platform exists:
``flask --app wsgi withdrawals …`` and ``flask --app wsgi commissions sweep``."""
from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup

from .cli_support import printable, row, run_handler

from handlers import audit, commissions, withdrawals
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
            d.real_name, d.mobile, d.user.openid, *([f"owes ¥{yuan(owed)} (claw-back)"] if owed else []),
            *([f"awaiting approval (asked by {w.approval_by})"]
              if w.status == WithdrawalStatus.REQUESTED.value and w.approval_by else []))


def _asked(w) -> bool:
    """True when this only asked for the second approval (dual approval)."""
    if w.status == WithdrawalStatus.REQUESTED.value and w.approval_by:
        click.echo(f"withdrawal {w.id}: asked to pay by {w.approval_method} as {printable(w.approval_by)}; "
                   f"another staff member must approve it (`withdrawals approve {w.id}`)")
        return True
    return False


@withdrawals_cli.command("pay")
@click.argument("withdrawal_id", type=int)
@click.option("--reference", required=True, help="The bank transfer or payment reference.")
def pay(withdrawal_id: int, reference: str) -> None:
    """Record a withdrawal paid by hand (above [admin] dual_approval_fen:
    ask for it; another staff member approves)."""
    w = run_handler(withdrawals.pay_manually, withdrawal_id, reference, actor=audit.cli_actor())
    if not _asked(w):
        click.echo(f"withdrawal {withdrawal_id} paid")


def _transfer_said(w) -> None:
    db.session.rollback()
    w = withdrawals.get(w.id)
    if _asked(w):
        return
    if w.package_info and w.status == WithdrawalStatus.TRANSFERRING.value:
        click.echo(f"withdrawal {w.id}: transfer {w.out_bill_no} created, waiting for the distributor to confirm")
    elif w.status == WithdrawalStatus.TRANSFERRING.value:
        click.echo(f"withdrawal {w.id}: transfer {w.out_bill_no} queued")
    else:
        reason = printable(w.reason or "")
        click.echo(f"withdrawal {w.id}: transfer {w.out_bill_no} {w.status}: {reason}".rstrip(": "))


@withdrawals_cli.command("transfer")
@click.argument("withdrawal_id", type=int)
def transfer(withdrawal_id: int) -> None:
    """Pay a withdrawal through a WeChat Pay merchant transfer: the transfer
    bill is created in the background, then the distributor confirms it in
    WeChat (收款). Run again for a withdrawal whose bill is not there yet, to
    ask WeChat Pay once more: it is the same bill, never a second one."""
    if not current_app.config["SETTINGS"]["wechatpay"]["mchid"]:
        raise click.ClickException("WeChat Pay is not configured ([wechatpay] mchid)")
    _transfer_said(run_handler(withdrawals.start_transfer, withdrawal_id, actor=audit.cli_actor()))


@withdrawals_cli.command("approve")
@click.argument("withdrawal_id", type=int)
def approve(withdrawal_id: int) -> None:
    """The second approval of a payment another staff member asked for:
    it is paid (by hand) or its transfer starts now."""
    w = run_handler(withdrawals.approve, withdrawal_id, actor=audit.cli_actor())
    if w.method == "manual":
        click.echo(f"withdrawal {withdrawal_id} approved and paid")
    else:
        _transfer_said(w)


@withdrawals_cli.command("cancel")
@click.argument("withdrawal_id", type=int)
@click.option("--reason", default="", help="Why (kept in the audit log).")
def cancel(withdrawal_id: int, reason: str) -> None:
    """Cancel a WeChat Pay transfer the distributor has not confirmed; the
    money goes back to their balance once WeChat Pay has cancelled it."""
    w = run_handler(withdrawals.cancel_transfer, withdrawal_id, actor=audit.cli_actor(), reason=reason)
    db.session.rollback()
    w = withdrawals.get(w.id)
    click.echo(f"withdrawal {withdrawal_id}: " + ("transfer cancelled, the money is back in the balance"
                                                  if w.status == WithdrawalStatus.FAILED.value else
                                                  "cancel asked, waiting for WeChat Pay"))


@withdrawals_cli.command("reject")
@click.argument("withdrawal_id", type=int)
@click.option("--reason", required=True, help="Shown to the distributor; the money goes back to them.")
def reject(withdrawal_id: int, reason: str) -> None:
    run_handler(withdrawals.reject, withdrawal_id, reason, actor=audit.cli_actor())
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
