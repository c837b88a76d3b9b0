"""Withdrawals (PRODUCT.md flow 9): asked for by the distributor, reserved at
once, paid or rejected by the merchant.

A request locks the distributor's balance row, checks the amount against
the withdrawable balance, the minimum and the daily limit, and moves the
amount from withdrawable to reserved, all in one transaction: a hundred
requests at once can never reserve more than the balance. The form's
one-time key is unique per distributor, so a double tap is one request.
Rejected, failed or cancelled money goes back to withdrawable.

A refund after settlement claws commission back and may take the
withdrawable balance below zero while a withdrawal is already reserved: the
distributor then owes the merchant, so nothing is paid out — by hand or by a
WeChat Pay transfer — until that is made good. It is checked at the moment
of paying, on the locked balance row: when the merchant records a manual
payment, when a transfer is started, and again when the transfer bill is
about to be created at WeChat Pay (the job that runs after the start).
"""
from __future__ import annotations

import logging
import re
import secrets
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from models import WITHDRAWAL_STATES, Distributor, Withdrawal, WithdrawalStatus, db

from . import notifications, settings
from .clock import CHINA, now
from .commissions import balance_for_update, balance_of
from .errors import Conflict, DomainError, NotFound
from .money import yuan

log = logging.getLogger(__name__)
W = WithdrawalStatus
REQUEST_KEY = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
LIVE = (W.REQUESTED.value, W.TRANSFERRING.value, W.PAID.value)


def fee_of(amount_fen: int) -> int:
    """The merchant's fee, rounded down to the fen (in the distributor's favour)."""
    return amount_fen * settings.section("distribution")["withdraw_fee_bp"] // 10000


def new_request_key() -> str:
    return secrets.token_urlsafe(16)


def requested_today(distributor_id: int, at: datetime) -> int:
    local = at.astimezone(CHINA)
    start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return int(db.session.scalar(select(func.coalesce(func.sum(Withdrawal.amount_fen), 0)).where(  # NUMERIC on PG
        Withdrawal.distributor_id == distributor_id, Withdrawal.requested_at >= start,
        Withdrawal.status.in_(LIVE))))


def request_withdrawal(distributor: Distributor, amount_fen: int, request_key: str,
                       at: datetime | None = None) -> Withdrawal:
    at = at or now()
    rules = settings.section("distribution")
    if not REQUEST_KEY.match(request_key or ""):
        raise DomainError("页面已过期，请刷新后再提交")
    if not isinstance(amount_fen, int) or isinstance(amount_fen, bool) or amount_fen <= 0:
        raise DomainError("请填写提现金额")
    if not distributor.is_active:
        raise Conflict("你的分销资格已被冻结，暂不能提现，请联系商家")
    balance = balance_for_update(distributor.id)  # one request per distributor at a time from here
    earlier = db.session.scalars(select(Withdrawal).where(Withdrawal.distributor_id == distributor.id,
                                                          Withdrawal.request_key == request_key)).one_or_none()
    if earlier is not None:
        return earlier  # the same form submitted twice
    if amount_fen < rules["withdraw_min_fen"]:
        raise DomainError(f"单笔提现至少 ¥{yuan(rules['withdraw_min_fen'])}")
    if balance.withdrawable_fen < 0:
        raise Conflict(f"有退款扣回的佣金 ¥{yuan(-balance.withdrawable_fen)} 待抵扣，暂不能提现")
    if amount_fen > balance.withdrawable_fen:
        raise Conflict(f"可提现余额不足（¥{yuan(balance.withdrawable_fen)}）")
    if requested_today(distributor.id, at) + amount_fen > rules["withdraw_daily_limit_fen"]:
        raise Conflict(f"超过每日提现额度 ¥{yuan(rules['withdraw_daily_limit_fen'])}")
    fee = fee_of(amount_fen)
    if fee >= amount_fen:
        raise DomainError("提现金额太小，不足以支付手续费")
    withdrawal = Withdrawal(distributor_id=distributor.id, request_key=request_key, amount_fen=amount_fen,
                            fee_fen=fee, requested_at=at)
    try:
        with db.session.begin_nested():
            db.session.add(withdrawal)
    except IntegrityError:  # unreachable under the balance lock; kept as the database's word
        raise Conflict("请勿重复提交") from None
    balance.withdrawable_fen -= amount_fen
    balance.reserved_fen += amount_fen
    log.info("withdrawal %s: distributor %s asks %s fen", withdrawal.id, distributor.id, amount_fen)
    return withdrawal


def _lock(withdrawal_id: int | None = None, out_bill_no: str | None = None) -> Withdrawal:
    query = select(Withdrawal).with_for_update().execution_options(populate_existing=True)
    query = query.where(Withdrawal.id == withdrawal_id) if withdrawal_id is not None else \
        query.where(Withdrawal.out_bill_no == out_bill_no)
    withdrawal = db.session.scalars(query).one_or_none()
    if withdrawal is None:
        raise NotFound("提现申请不存在")
    return withdrawal


def _release(withdrawal: Withdrawal, status: WithdrawalStatus, reason: str, at: datetime) -> None:
    balance = balance_for_update(withdrawal.distributor_id)
    withdrawal.status = WITHDRAWAL_STATES.check(withdrawal.status, status)
    withdrawal.reason, withdrawal.decided_at = reason[:200], at
    balance.reserved_fen -= withdrawal.amount_fen
    balance.withdrawable_fen += withdrawal.amount_fen
    notifications.withdrawal_decided(withdrawal, paid=False, at=at)


def _owing(balance) -> str | None:
    """Why nothing may be paid out to this balance's owner now, if so."""
    if balance.withdrawable_fen < 0:
        return (f"有退款扣回的佣金 ¥{yuan(-balance.withdrawable_fen)} 待抵扣（可提现余额 "
                f"¥{yuan(balance.withdrawable_fen)}），暂不能打款：可驳回这笔提现，金额回到余额抵扣；"
                f"或等新的佣金抵扣后再付")
    return None


def _check_not_owing(withdrawal: Withdrawal) -> None:
    problem = _owing(balance_for_update(withdrawal.distributor_id))
    if problem:
        raise Conflict(problem)


def _paid(withdrawal: Withdrawal, at: datetime) -> None:
    balance = balance_for_update(withdrawal.distributor_id)
    withdrawal.status = WITHDRAWAL_STATES.check(withdrawal.status, W.PAID)
    withdrawal.decided_at = at
    balance.reserved_fen -= withdrawal.amount_fen
    balance.withdrawn_fen += withdrawal.amount_fen
    notifications.withdrawal_decided(withdrawal, paid=True, at=at)


def pay_manually(withdrawal_id: int, reference: str, at: datetime | None = None) -> Withdrawal:
    """The merchant paid by hand (bank transfer, cash) and notes the reference."""
    reference = " ".join((reference or "").split())
    if not 1 <= len(reference) <= 64:
        raise DomainError("请填写打款凭证号")
    withdrawal = _lock(withdrawal_id)
    WITHDRAWAL_STATES.check(withdrawal.status, W.PAID)  # a paid or rejected one says so first
    _check_not_owing(withdrawal)
    withdrawal.method, withdrawal.reference = "manual", reference
    _paid(withdrawal, at or now())
    return withdrawal


def reject(withdrawal_id: int, reason: str, at: datetime | None = None) -> Withdrawal:
    reason = " ".join((reason or "").split())
    if not 1 <= len(reason) <= 200:
        raise DomainError("请写明驳回理由")
    withdrawal = _lock(withdrawal_id)
    _release(withdrawal, W.REJECTED, reason, at or now())
    return withdrawal


def start_transfer(withdrawal_id: int, at: datetime | None = None) -> Withdrawal:
    """The merchant pays through a WeChat Pay transfer bill: this reserves the
    bill number; the gateway call comes after the commit
    (``pay.jobs.create_transfer``), and the distributor then confirms it."""
    withdrawal = _lock(withdrawal_id)
    new_status = WITHDRAWAL_STATES.check(withdrawal.status, W.TRANSFERRING)
    _check_not_owing(withdrawal)
    withdrawal.status = new_status
    withdrawal.method = "wechat_transfer"
    withdrawal.out_bill_no = f"W{withdrawal.id:09d}{secrets.token_hex(5).upper()}"
    return withdrawal


def before_creating_transfer(out_bill_no: str, at: datetime | None = None) -> Withdrawal:
    """Called by the job about to create the transfer bill at WeChat Pay:
    if a claw-back since ``start_transfer`` left the distributor owing, the
    bill is not created; the withdrawal fails and its money goes back to
    the balance (where it makes the debt good), and the distributor is told
    why. Any other withdrawal is returned as it is. Locks are taken only to
    fail it, so none is held through the gateway call that follows."""
    withdrawal = db.session.scalars(select(Withdrawal).where(Withdrawal.out_bill_no == out_bill_no)).one_or_none()
    if withdrawal is None or _owing(balance_of(withdrawal.distributor_id)) is None:
        return withdrawal
    withdrawal = _lock(out_bill_no=out_bill_no)
    if withdrawal.status != W.TRANSFERRING.value or withdrawal.package_info:
        return withdrawal
    if _owing(balance_for_update(withdrawal.distributor_id)):
        log.warning("withdrawal %s: not transferred, the distributor owes a claw-back", withdrawal.id)
        _release(withdrawal, W.FAILED, "退款扣回的佣金待抵扣，未转账", at or now())
    return withdrawal


def may_confirm(withdrawal: Withdrawal) -> bool:
    """Whether the distributor may confirm (receive) a transfer now: not
    while they owe a claw-back (the bill then waits, or lapses and fails)."""
    return _owing(balance_of(withdrawal.distributor_id)) is None


def transfer_created(out_bill_no: str, package_info: str) -> Withdrawal:
    withdrawal = _lock(out_bill_no=out_bill_no)
    withdrawal.package_info = package_info[:512]
    return withdrawal


def transfer_finished(out_bill_no: str, state: str, reason: str = "", at: datetime | None = None,
                      amount_fen: int | None = None) -> Withdrawal:
    """The transfer's final state (notification or query): SUCCESS pays the
    withdrawal; FAIL or CANCELLED returns the money. Idempotent. With
    ``amount_fen`` (what the gateway says it transferred), anything but the
    withdrawal's net amount is refused and changes nothing."""
    at = at or now()
    withdrawal = _lock(out_bill_no=out_bill_no)
    if amount_fen is not None and amount_fen != withdrawal.net_fen:
        raise Conflict(f"转账金额 {amount_fen} 分与提现应付 {withdrawal.net_fen} 分不符")
    if withdrawal.status != W.TRANSFERRING.value:
        return withdrawal  # told before
    if state == "SUCCESS":
        _paid(withdrawal, at)
    elif state in ("FAIL", "CANCELLED"):
        _release(withdrawal, W.FAILED, reason or ("用户未确认收款" if state == "CANCELLED" else "转账失败"), at)
    return withdrawal


def of_distributor(distributor_id: int, limit: int = 50) -> list[Withdrawal]:
    return list(db.session.scalars(select(Withdrawal).where(Withdrawal.distributor_id == distributor_id)
                                   .order_by(Withdrawal.id.desc()).limit(limit)))


def transferring() -> list[Withdrawal]:
    return list(db.session.scalars(select(Withdrawal).where(Withdrawal.status == W.TRANSFERRING.value)
                                   .order_by(Withdrawal.id)))


def waiting() -> list[Withdrawal]:
    """What the merchant still has to act on or wait for."""
    return list(db.session.scalars(select(Withdrawal).where(
        Withdrawal.status.in_((W.REQUESTED.value, W.TRANSFERRING.value))).order_by(Withdrawal.id)))


def get(withdrawal_id: int) -> Withdrawal:
    withdrawal = db.session.get(Withdrawal, withdrawal_id)
    if withdrawal is None:
        raise NotFound("提现申请不存在")
    return withdrawal
