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

Every staff (or CLI) action takes an ``actor`` and writes its audit row in
the same transaction. Above ``[admin] dual_approval_fen`` a payment needs two
people: the first one's pay (by hand, with its reference) or transfer is
kept on the withdrawal as a request, and only a *different* actor's
``approve`` pays it. A WeChat Pay transfer bill is made once per withdrawal:
asking again while it is not final answers the same bill; a bill waiting for
the distributor's confirmation can be cancelled (the notification or
``withdrawals sync`` then returns the money).
"""
from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError

from models import (WITHDRAWAL_STATES, AuditEntry, Balance, Distributor, DistributorStatus, Withdrawal,
                    WithdrawalStatus, db)

from . import audit, notifications, outbox, settings
from .audit import Actor
from .clock import CHINA, now
from .commissions import balance_for_update, balance_of
from .errors import Conflict, DomainError, Forbidden, NotFound
from .money import yuan

log = logging.getLogger(__name__)
W = WithdrawalStatus
REQUEST_KEY = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
LIVE = (W.REQUESTED.value, W.TRANSFERRING.value, W.PAID.value)
WAITING = (W.REQUESTED.value, W.TRANSFERRING.value)
CONFIRM_WINDOW = timedelta(hours=24)  # WeChat Pay cancels a bill nobody confirmed by then
METHOD_NAMES = {"manual": "线下打款", "wechat_transfer": "微信转账"}
# What an audit row keeps of a withdrawal, before and after.
AUDITED = ("status", "method", "reference", "reason", "out_bill_no", "approval_by", "approval_method",
           "approval_reference", "approved_by", "transfer_state")


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
    if _frozen(distributor.id):  # a freeze changes the status holding this lock: read it again now
        raise Conflict("你的分销资格已被冻结，暂不能提现，请联系商家")
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


def _frozen(distributor_id: int) -> bool:
    status = db.session.scalar(select(Distributor.status).where(Distributor.id == distributor_id))
    return status != DistributorStatus.ACTIVE.value


def _check_not_owing(withdrawal: Withdrawal) -> None:
    problem = _owing(balance_for_update(withdrawal.distributor_id))
    if problem:
        raise Conflict(problem)
    if _frozen(withdrawal.distributor_id):  # read after the balance lock, which a freeze takes too
        raise Conflict("该分销商已被冻结，不能打款：可驳回这笔提现（金额回到其余额），或解冻后再付")


def _paid(withdrawal: Withdrawal, at: datetime) -> None:
    balance = balance_for_update(withdrawal.distributor_id)
    withdrawal.status = WITHDRAWAL_STATES.check(withdrawal.status, W.PAID)
    withdrawal.decided_at = at
    balance.reserved_fen -= withdrawal.amount_fen
    balance.withdrawn_fen += withdrawal.amount_fen
    notifications.withdrawal_decided(withdrawal, paid=True, at=at)


def _snap(withdrawal: Withdrawal) -> dict:
    return audit.snapshot(withdrawal, AUDITED)


def _record(actor: Actor, verb: str, withdrawal: Withdrawal, before: dict | None, at: datetime,
            reason: str = "") -> None:
    audit.record(actor, f"withdrawal.{verb}", "withdrawal", withdrawal.id, before=before, after=_snap(withdrawal),
                 reason=reason, at=at)


def _still_requested(withdrawal: Withdrawal) -> None:
    """Only a request still waiting for the merchant can be paid or rejected:
    anything else is refused with what happened to it."""
    status = withdrawal.status
    if status == W.REQUESTED.value:
        return
    if status == W.PAID.value:
        raise Conflict("这笔提现已打款，不能再操作")
    if status == W.REJECTED.value:
        raise Conflict("这笔提现已驳回，金额已退回分销商余额")
    if status == W.FAILED.value:
        raise Conflict("这笔提现的转账已失败或撤销，金额已退回分销商余额")
    raise Conflict("这笔提现正在微信转账中（等待分销商确认收款），不能再打款或驳回；可先撤销转账")


def dual_approval_fen() -> int:
    return int(settings.section("admin")["dual_approval_fen"])


def needs_second_approval(withdrawal: Withdrawal) -> bool:
    """Above [admin] dual_approval_fen (0: never) two people pay it."""
    limit = dual_approval_fen()
    return limit > 0 and withdrawal.amount_fen > limit


def _same_actor(actor: Actor, withdrawal: Withdrawal) -> bool:
    if actor.staff_id is not None and withdrawal.approval_staff_id is not None:
        return actor.staff_id == withdrawal.approval_staff_id
    return actor.name == withdrawal.approval_by  # the CLI is an actor by its name (cli:<login>)


def _ask_second(withdrawal: Withdrawal, method: str, reference: str | None, actor: Actor,
                at: datetime) -> Withdrawal:
    """The first of two people pays: kept as a request for another to confirm."""
    if withdrawal.approval_by:
        if _same_actor(actor, withdrawal):
            raise Conflict(f"你已提交这笔打款（{METHOD_NAMES[withdrawal.approval_method]}），"
                           f"须由另一位员工复核后才会付款")
        raise Conflict(f"{withdrawal.approval_by} 已提交这笔打款（{METHOD_NAMES[withdrawal.approval_method]}），"
                       f"等待复核：请点「复核通过」")
    _check_not_owing(withdrawal)  # say so now rather than at the second approval
    before = _snap(withdrawal)
    withdrawal.approval_by, withdrawal.approval_staff_id = actor.name[:64], actor.staff_id
    withdrawal.approval_method, withdrawal.approval_reference, withdrawal.approval_at = method, reference, at
    _record(actor, "pay_request", withdrawal, before, at)
    log.info("withdrawal %s: %s asks to pay it by %s; waiting for a second approval", withdrawal.id,
             actor.name, method)
    return withdrawal


def _clean_reference(reference: str) -> str:
    reference = " ".join((reference or "").split())
    if not 1 <= len(reference) <= 64:
        raise DomainError("请填写打款凭证号（不超过 64 个字符）")
    return reference


def pay_manually(withdrawal_id: int, reference: str, *, actor: Actor, at: datetime | None = None) -> Withdrawal:
    """The merchant paid by hand (bank transfer, cash) and notes the
    reference. Above the dual-approval amount this only asks: another staff
    member's ``approve`` records the payment."""
    at = at or now()
    reference = _clean_reference(reference)
    withdrawal = _lock(withdrawal_id)
    _still_requested(withdrawal)
    if needs_second_approval(withdrawal):
        return _ask_second(withdrawal, "manual", reference, actor, at)
    _check_not_owing(withdrawal)
    before = _snap(withdrawal)
    withdrawal.method, withdrawal.reference = "manual", reference
    _paid(withdrawal, at)
    _record(actor, "pay", withdrawal, before, at)
    return withdrawal


def reject(withdrawal_id: int, reason: str, *, actor: Actor, at: datetime | None = None) -> Withdrawal:
    """The money goes back to the distributor's balance, and they are told
    why. A payment waiting for its second approval may be rejected too."""
    at = at or now()
    reason = " ".join((reason or "").split())
    if not 1 <= len(reason) <= 200:
        raise DomainError("请写明驳回理由（不超过 200 个字符）")
    withdrawal = _lock(withdrawal_id)
    _still_requested(withdrawal)
    before = _snap(withdrawal)
    _release(withdrawal, W.REJECTED, reason, at)
    _record(actor, "reject", withdrawal, before, at, reason=reason)
    return withdrawal


def _begin_transfer(withdrawal: Withdrawal) -> None:
    """Reserve the bill number; the bill is created at WeChat Pay by a job
    after the commit (``pay.jobs.create_transfer``), with the same number on
    every retry (WeChat Pay treats it as the same bill)."""
    withdrawal.status = WITHDRAWAL_STATES.check(withdrawal.status, W.TRANSFERRING)
    withdrawal.method = "wechat_transfer"
    withdrawal.out_bill_no = f"W{withdrawal.id:09d}{secrets.token_hex(5).upper()}"
    withdrawal.transfer_state = None
    _queue_bill(withdrawal)


def _queue_bill(withdrawal: Withdrawal) -> None:
    # While a row with this key is pending, asking again adds nothing.
    outbox.after_commit("pay.jobs.create_transfer", withdrawal.out_bill_no,
                        job_id=f"transfer-{withdrawal.out_bill_no}")


def start_transfer(withdrawal_id: int, *, actor: Actor, at: datetime | None = None) -> Withdrawal:
    """The merchant pays through a WeChat Pay transfer bill, which the
    distributor then confirms. Never a second bill: for a withdrawal already
    transferring this answers the same one (and asks WeChat Pay again for a
    bill not created yet). Above the dual-approval amount this only asks."""
    at = at or now()
    withdrawal = _lock(withdrawal_id)
    if withdrawal.status == W.TRANSFERRING.value:
        if not withdrawal.package_info and not withdrawal.cancel_requested_at:
            _queue_bill(withdrawal)  # the job may have failed for a passing reason
        return withdrawal
    _still_requested(withdrawal)
    if needs_second_approval(withdrawal):
        return _ask_second(withdrawal, "wechat_transfer", None, actor, at)
    _check_not_owing(withdrawal)
    before = _snap(withdrawal)
    _begin_transfer(withdrawal)
    _record(actor, "transfer", withdrawal, before, at)
    return withdrawal


def approve(withdrawal_id: int, *, actor: Actor, at: datetime | None = None) -> Withdrawal:
    """The second approval: another actor than the one who asked confirms,
    and the payment asked for happens now — recorded by hand with its
    reference, or the transfer started. The balance is checked again here."""
    at = at or now()
    withdrawal = _lock(withdrawal_id)
    _still_requested(withdrawal)
    if not withdrawal.approval_by:
        raise Conflict("这笔提现还没有人提交打款，没有可复核的内容")
    if _same_actor(actor, withdrawal):
        raise Forbidden("不能复核自己提交的打款：须由另一位员工复核")
    _check_not_owing(withdrawal)
    before = _snap(withdrawal)
    withdrawal.approved_by = actor.name[:64]
    if withdrawal.approval_method == "manual":
        withdrawal.method, withdrawal.reference = "manual", withdrawal.approval_reference
        _paid(withdrawal, at)
    else:
        _begin_transfer(withdrawal)
    _record(actor, "approve", withdrawal, before, at)
    return withdrawal


def cancel_transfer(withdrawal_id: int, *, actor: Actor, reason: str = "",
                    at: datetime | None = None) -> Withdrawal:
    """Ask WeChat Pay to cancel a bill the distributor has not confirmed
    (a job after the commit, ``pay.transfer_jobs.cancel_transfer``). The
    withdrawal stays transferring until WeChat Pay says CANCELLED (its
    notification, or ``withdrawals sync``): then the money goes back. Asking
    twice is one request."""
    at = at or now()
    reason = " ".join((reason or "").split())[:200]
    withdrawal = _lock(withdrawal_id)
    if withdrawal.status == W.PAID.value:
        raise Conflict("转账已成功，不能撤销")
    if withdrawal.status != W.TRANSFERRING.value:
        raise Conflict("这笔提现没有进行中的转账，无需撤销")
    if withdrawal.cancel_requested_at:
        return withdrawal
    if not withdrawal.package_info:
        raise Conflict("转账单还在微信支付受理中，请稍后再撤销")
    before = _snap(withdrawal)
    withdrawal.cancel_requested_at = at
    outbox.after_commit("pay.transfer_jobs.cancel_transfer", withdrawal.out_bill_no,
                        job_id=f"transfer-cancel-{withdrawal.out_bill_no}")
    _record(actor, "cancel_transfer", withdrawal, before, at, reason=reason)
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


def transfer_created(out_bill_no: str, package_info: str, at: datetime | None = None) -> Withdrawal:
    """The bill waits for the distributor: from now the 24 hours run."""
    withdrawal = _lock(out_bill_no=out_bill_no)
    withdrawal.package_info = package_info[:512]
    if withdrawal.status == W.TRANSFERRING.value:
        withdrawal.transfer_state = "WAIT_USER_CONFIRM"
        withdrawal.transfer_created_at = withdrawal.transfer_created_at or at or now()
    return withdrawal


def transfer_state_seen(out_bill_no: str, state: str) -> Withdrawal | None:
    """What WeChat Pay said of a bill not final yet (CANCELING…), for the page."""
    withdrawal = db.session.scalars(select(Withdrawal).where(Withdrawal.out_bill_no == out_bill_no)).one_or_none()
    if withdrawal is None or withdrawal.status != W.TRANSFERRING.value or state == withdrawal.transfer_state:
        return withdrawal
    withdrawal = _lock(out_bill_no=out_bill_no)
    if withdrawal.status == W.TRANSFERRING.value:
        withdrawal.transfer_state = state[:24]
    return withdrawal


def transfer_finished(out_bill_no: str, state: str, reason: str = "", at: datetime | None = None,
                      amount_fen: int | None = None) -> Withdrawal:
    """The transfer's final state (notification or query): SUCCESS pays the
    withdrawal; FAIL or CANCELLED returns the money. Idempotent. With
    ``amount_fen`` (what the gateway says it transferred), anything but the
    withdrawal's net amount is refused and changes nothing. Recorded in the
    audit log as the system's doing, for the withdrawal's history."""
    at = at or now()
    withdrawal = _lock(out_bill_no=out_bill_no)
    if amount_fen is not None and amount_fen != withdrawal.net_fen:
        raise Conflict(f"转账金额 {amount_fen} 分与提现应付 {withdrawal.net_fen} 分不符")
    if withdrawal.status != W.TRANSFERRING.value:
        return withdrawal  # told before
    before = _snap(withdrawal)
    if state == "SUCCESS":
        withdrawal.transfer_state = state
        _paid(withdrawal, at)
    elif state in ("FAIL", "CANCELLED"):
        withdrawal.transfer_state = state
        _release(withdrawal, W.FAILED, reason or ("用户未确认收款" if state == "CANCELLED" else "转账失败"), at)
    else:
        return withdrawal
    _record(audit.SYSTEM, "transfer_finished", withdrawal, before, at, reason=withdrawal.reason or "")
    return withdrawal


# -- what the merchant's pages read ------------------------------------------------------------------

@dataclass(frozen=True)
class Row:
    withdrawal: Withdrawal
    distributor: Distributor
    balance: Balance | None

    @property
    def id(self) -> int:  # where the next page starts (admin.support.keyset)
        return self.withdrawal.id


@dataclass(frozen=True)
class Listing:
    rows: list[Row]         # newest first, limit + 1 of them when a next page exists
    waiting_count: int      # requested or transferring, whatever the filters
    waiting_fen: int
    filters: dict[str, str]


FILTER_STATES = {"waiting": "待处理", "approval": "待复核", **{s.value: s.value for s in WithdrawalStatus}}


def _day(text: str | None, name: str) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise DomainError(f"{name}格式应为 2026-12-01") from None


def listing(filters: dict[str, str], before_id: int | None = None, limit: int = 50) -> Listing:
    """Withdrawals for the merchant's list: by state (``waiting``,
    ``approval`` = waiting for a second approval, or a status), a
    distributor's name or mobile (``q``), a request date range (``from``,
    ``to``, China days), newest first; keyset pages by id."""
    state, q = filters.get("state", ""), filters.get("q", "")
    first, last = _day(filters.get("from"), "开始日期"), _day(filters.get("to"), "结束日期")
    if state and state not in FILTER_STATES:
        raise DomainError("没有这个状态")
    query = (select(Withdrawal, Distributor, Balance).join(Distributor, Distributor.id == Withdrawal.distributor_id)
             .outerjoin(Balance, Balance.distributor_id == Withdrawal.distributor_id)
             .order_by(Withdrawal.id.desc()).limit(limit + 1))
    if state == "waiting":
        query = query.where(Withdrawal.status.in_(WAITING))
    elif state == "approval":
        query = query.where(Withdrawal.status == W.REQUESTED.value, Withdrawal.approval_by.is_not(None))
    elif state:
        query = query.where(Withdrawal.status == state)
    if q:
        like = "%" + q.replace("\\", "").replace("%", "").replace("_", "") + "%"
        query = query.where(or_(Distributor.real_name.like(like), Distributor.mobile.like(like)))
    if first:
        query = query.where(Withdrawal.requested_at >= datetime.combine(first, datetime.min.time(), CHINA))
    if last:
        query = query.where(Withdrawal.requested_at < datetime.combine(last + timedelta(days=1),
                                                                       datetime.min.time(), CHINA))
    if before_id:
        query = query.where(Withdrawal.id < before_id)
    rows = [Row(w, d, b) for w, d, b in db.session.execute(query)]
    count, total = db.session.execute(select(func.count(), func.coalesce(func.sum(Withdrawal.amount_fen), 0))
                                      .where(Withdrawal.status.in_(WAITING))).one()
    return Listing(rows, int(count), int(total), filters)


@dataclass(frozen=True)
class Detail:
    withdrawal: Withdrawal
    distributor: Distributor
    balance: Balance | None
    history: list[AuditEntry]      # oldest first
    needs_second: bool
    confirm_by: datetime | None    # when WeChat Pay cancels the unconfirmed bill
    seconds_left: int | None


def detail(withdrawal_id: int, at: datetime | None = None) -> Detail:
    withdrawal = get(withdrawal_id)
    distributor = db.session.get(Distributor, withdrawal.distributor_id)
    history = list(reversed(audit.entries(target_type="withdrawal", target_id=str(withdrawal.id), limit=200)))
    confirm_by = seconds_left = None
    if withdrawal.status == W.TRANSFERRING.value and withdrawal.transfer_created_at is not None:
        confirm_by = withdrawal.transfer_created_at + CONFIRM_WINDOW
        seconds_left = max(0, int((confirm_by - (at or now())).total_seconds()))
    return Detail(withdrawal, distributor, db.session.get(Balance, withdrawal.distributor_id), history,
                  needs_second_approval(withdrawal), confirm_by, seconds_left)


def transfer_view(withdrawal: Withdrawal) -> tuple[str, str] | None:
    """(label, tag kind) of a withdrawal's WeChat Pay transfer, or None."""
    if withdrawal.method != "wechat_transfer":
        return None
    if withdrawal.status == W.TRANSFERRING.value:
        if withdrawal.cancel_requested_at or withdrawal.transfer_state == "CANCELING":
            return "撤销中", "warning"
        if withdrawal.package_info:
            return "待分销商确认收款", "warning"
        return "转账受理中", "info"
    if withdrawal.status == W.PAID.value:
        return "转账成功", "success"
    if withdrawal.transfer_state == "CANCELLED":
        return "已撤销", "info"
    if withdrawal.transfer_state == "FAIL":
        return "转账失败", "danger"
    return "未转账", "danger"


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
