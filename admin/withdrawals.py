"""Withdrawals (PRODUCT.md flow 14): the list, one withdrawal with its
distributor's balance, history and transfer, and the actions — pay by hand,
pay by WeChat Pay transfer, cancel a transfer, the second approval, reject.

Every rule is in handlers.withdrawals; a view parses the form, calls one
handler with the staff member as the actor, and answers (the detail's body
for htmx, a redirect for a plain form)."""
from __future__ import annotations

from datetime import datetime

from flask import render_template, request, url_for

from handlers import withdrawals as rules
from handlers.clock import now

from . import bp
from .auth import actor, is_htmx, requires
from .exports import button as export_button
from .support import before_arg, done, filter_args, keyset, run

BODY = "admin/withdrawal_body.html"
STATUS_NAMES = {"requested": ("待处理", "warning"), "transferring": ("转账中", "warning"), "paid": ("已打款", "success"),
                "rejected": ("已驳回", "info"), "failed": ("转账未成功", "danger")}
ACTION_NAMES = {"withdrawal.pay": "线下打款", "withdrawal.pay_request": "提交打款（待复核）",
                "withdrawal.approve": "复核通过", "withdrawal.transfer": "发起微信转账",
                "withdrawal.cancel_transfer": "请求撤销转账", "withdrawal.reject": "驳回",
                "withdrawal.transfer_finished": "微信转账结束"}


@bp.app_template_filter("wd_age")
def age(value: datetime | None) -> str:
    """How long ago, in the largest unit that fits: 3 天, 5 小时, 12 分钟."""
    if value is None:
        return ""
    seconds = max(0, int((now() - value).total_seconds()))
    if seconds >= 86400:
        return f"{seconds // 86400} 天"
    if seconds >= 3600:
        return f"{seconds // 3600} 小时"
    return f"{max(1, seconds // 60)} 分钟"


@bp.app_template_filter("wd_left")
def left(seconds: int | None) -> str:
    """The confirmation window's countdown: 23 小时 59 分."""
    if seconds is None:
        return ""
    if seconds <= 0:
        return "已超过 24 小时"
    return f"{seconds // 3600} 小时 {seconds % 3600 // 60} 分"


def _context(**extra):
    return dict(status_names=STATUS_NAMES, action_names=ACTION_NAMES, transfer_view=rules.transfer_view,
                method_names=rules.METHOD_NAMES, **extra)


@bp.get("/withdrawals")
@requires("withdrawals.view")
def withdrawals():
    args = filter_args("state", "q", "from", "to", "before")
    found = rules.listing(args, before_arg())
    rows, next_before = keyset(found.rows)
    return render_template("admin/withdrawals.html", **_context(
        found=found, rows=rows, next_before=next_before, args=args, filter_states=rules.FILTER_STATES,
        threshold=rules.dual_approval_fen(),
        export=export_button("withdrawals", {k: v for k, v in args.items() if k != "before"})))


@bp.get("/withdrawals/<id:withdrawal_id>")
@requires("withdrawals.view")
def withdrawal(withdrawal_id: int):
    return render_template("admin/withdrawal.html", **_context(d=rules.detail(withdrawal_id),
                                                               threshold=rules.dual_approval_fen()))


def _answer(withdrawal_id: int, message: str):
    """htmx: the detail's body again, with the message; a form: back to the page."""
    back = url_for("admin.withdrawal", withdrawal_id=withdrawal_id)
    if is_htmx():
        return done(message, back, BODY, **_context(d=rules.detail(withdrawal_id), threshold=rules.dual_approval_fen()))
    return done(message, back)


def _said(w) -> str:
    """What the staff member is told after paying or transferring."""
    if w.status == "requested" and w.approval_by:
        return f"已提交，等待另一位员工复核（{rules.METHOD_NAMES[w.approval_method]}）"
    if w.status == "paid":
        return "已记录打款，分销商已收到通知"
    if w.status == "transferring":
        if w.package_info:
            return "微信转账已发起，等待分销商确认收款"
        return "微信转账已提交，正在创建转账单"
    if w.status == "failed":
        return f"转账未成功：{w.reason or ''}，金额已退回分销商余额"
    return "已处理"


@bp.post("/withdrawals/<id:withdrawal_id>/pay")
@requires("withdrawals.pay")
def withdrawal_pay(withdrawal_id: int):
    w = run(rules.pay_manually, withdrawal_id, request.form.get("reference", ""), actor=actor())
    return _answer(withdrawal_id, _said(w))


@bp.post("/withdrawals/<id:withdrawal_id>/transfer")
@requires("withdrawals.pay")
def withdrawal_transfer(withdrawal_id: int):
    w = run(rules.start_transfer, withdrawal_id, actor=actor())
    return _answer(withdrawal_id, _said(w))


@bp.post("/withdrawals/<id:withdrawal_id>/approve")
@requires("withdrawals.pay")
def withdrawal_approve(withdrawal_id: int):
    w = run(rules.approve, withdrawal_id, actor=actor())
    return _answer(withdrawal_id, "复核通过。" + _said(w))


@bp.post("/withdrawals/<id:withdrawal_id>/cancel-transfer")
@requires("withdrawals.pay")
def withdrawal_cancel_transfer(withdrawal_id: int):
    w = run(rules.cancel_transfer, withdrawal_id, actor=actor(), reason=request.form.get("reason", ""))
    if w.status == "failed":
        message = "转账已撤销，金额已退回分销商余额"
    elif w.status == "paid":
        message = "分销商已先确认收款，转账已成功，未能撤销"
    else:
        message = "已请求微信支付撤销转账；撤销完成后金额退回分销商余额"
    return _answer(withdrawal_id, message)


@bp.post("/withdrawals/<id:withdrawal_id>/reject")
@requires("withdrawals.pay")
def withdrawal_reject(withdrawal_id: int):
    run(rules.reject, withdrawal_id, request.form.get("reason", ""), actor=actor())
    return _answer(withdrawal_id, "已驳回，金额已退回分销商余额，分销商已收到通知")
