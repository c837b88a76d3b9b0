"""Queued jobs of the merchant's transfers that pay/jobs.py does not hold:
cancelling a WeChat Pay transfer bill the distributor has not confirmed."""
from __future__ import annotations

from handlers.outbox import job


@job
def cancel_transfer(out_bill_no: str) -> None:
    """Ask WeChat Pay to cancel the bill (``withdrawals.cancel_transfer``
    queued this after its commit). WeChat Pay answers CANCELING and later
    notifies CANCELLED, which returns the money; if the bill had ended
    meanwhile (confirmed, failed, lapsed), its final state is asked for and
    settles the withdrawal at once. Raises — the job is retried — when
    WeChat Pay could not be asked."""
    import logging

    from handlers import withdrawals
    from models import Withdrawal, WithdrawalStatus, db
    from sqlalchemy import select

    from .wechatpay import TransferRefused, WeChatPayGateway, transfer_failure

    withdrawal = db.session.scalars(select(Withdrawal).where(Withdrawal.out_bill_no == out_bill_no)).one_or_none()
    if withdrawal is None or withdrawal.status != WithdrawalStatus.TRANSFERRING.value:
        return  # finished before the job ran: nothing to cancel
    gateway = WeChatPayGateway.from_settings()
    try:
        bill = gateway.cancel_transfer(out_bill_no)
    except TransferRefused as refused:
        logging.getLogger(__name__).info("transfer %s not cancelled: %s", out_bill_no, refused)
        bill = None
    if bill is not None and not bill.final:
        withdrawals.transfer_state_seen(out_bill_no, bill.state)  # CANCELING: the notification follows
        return
    # Final already (or refused, or unknown): WeChat Pay's own view of the bill decides.
    found = gateway.query_transfer(out_bill_no)
    if found is not None and found.final:
        withdrawals.transfer_finished(out_bill_no, found.state,
                                      transfer_failure(found.fail_reason) if found.state == "FAIL" else "",
                                      amount_fen=found.amount_fen)
    elif found is not None:
        withdrawals.transfer_state_seen(out_bill_no, found.state)
