"""Distributors (PRODUCT.md flow 14): the list with their figures, one distributor's team, orders,
ledger, touches and withdrawals; freeze, unfreeze and moving to another referrer.

The rules are in handlers.distributor_admin (actions) and
handlers.distributor_pages (what the pages read); a view parses the form,
calls one handler with the staff member as the actor, and answers."""
from __future__ import annotations

from flask import render_template, request, url_for

from handlers import distributor_admin as actions
from handlers import distributor_pages as pages
from models.order import STATUS_TEXT

from . import bp
from .auth import actor, requires
from .exports import button as export_button
from .support import before_arg, done, filter_args, keyset, run

FILTERS = ("level", "state", "from", "to", "parent", "q")
ACTION_NAMES = {"distributor.freeze": "冻结", "distributor.unfreeze": "解冻", "distributor.move": "调整推荐人"}
TOUCH_NAMES = {"bound": "绑定", "already": "已有归属", "self": "本人", "merchant": "商户链接",
               "distributor": "已是分销商", "unknown": "无效"}
SOURCE_NAMES = {"qr": "二维码", "link": "链接", "invite": "邀请码", "organic": "自然流量"}
STATE_TAGS = {"active": ("正常", "success"), "frozen": ("已冻结", "danger")}
ORDER_STATES = {status.value: text for status, text in STATUS_TEXT.items()}
LEDGER_STATES = {"frozen": "冻结中", "withdrawable": "可提现", "reversed": "已冲回"}
WITHDRAWAL_STATES = {"requested": "待处理", "transferring": "转账中", "paid": "已打款", "rejected": "已驳回",
                     "failed": "转账未成功"}


def _context(**extra):
    return dict(levels=pages.LEVELS, states=pages.STATES, state_tags=STATE_TAGS, action_names=ACTION_NAMES,
                touch_names=TOUCH_NAMES, source_names=SOURCE_NAMES, order_states=ORDER_STATES,
                ledger_states=LEDGER_STATES, withdrawal_states=WITHDRAWAL_STATES, **extra)


@bp.get("/distributors")
@requires("distributors.view")
def distributors():
    args = filter_args(*FILTERS, "before")
    found = pages.listing(args, before_arg())
    rows, next_before = keyset(found.rows)
    return render_template("admin/distributors.html", **_context(rows=rows, next_before=next_before, args=args),
                           export=export_button("distributors", {k: v for k, v in args.items() if k != "before"}))


@bp.get("/distributors/<id:distributor_id>")
@requires("distributors.view")
def distributor(distributor_id: int):
    return render_template("admin/distributor.html", **_context(d=pages.detail(distributor_id)))


def _back(distributor_id: int, message: str):
    return done(message, url_for("admin.distributor", distributor_id=distributor_id))


@bp.post("/distributors/<id:distributor_id>/freeze")
@requires("distributors.act")
def distributor_freeze(distributor_id: int):
    run(actions.freeze, distributor_id, request.form.get("reason", ""), actor=actor())
    return _back(distributor_id, "已冻结：新订单不再产生佣金，不能提现，分销商已收到通知")


@bp.post("/distributors/<id:distributor_id>/unfreeze")
@requires("distributors.act")
def distributor_unfreeze(distributor_id: int):
    run(actions.unfreeze, distributor_id, request.form.get("reason", ""), actor=actor())
    return _back(distributor_id, "已解冻：新订单起照常计算佣金，分销商已收到通知")


@bp.post("/distributors/<id:distributor_id>/move")
@requires("distributors.act")
def distributor_move(distributor_id: int):
    moved = run(actions.move_distributor, distributor_id, request.form.get("target", ""),
                request.form.get("reason", ""), actor=actor(), expected_referrer=request.form.get("was"))
    where = f"二级，上级为 {moved.parent.real_name}（#{moved.parent_id}）" if moved.parent_id else "一级，归商户"
    return _back(distributor_id, f"已调整：现为{where}；已有佣金不变，之后的订单按新关系计算")


@bp.post("/distributors/<id:distributor_id>/customers/move")
@requires("distributors.act")
def distributor_customer_move(distributor_id: int):
    user_id = request.form.get("user_id", "")
    if not (user_id.isascii() and user_id.isdigit() and len(user_id) <= 9):
        user_id = "0"  # no such user: the handler says so
    run(actions.move_customer, int(user_id), request.form.get("target", ""), request.form.get("reason", ""),
        actor=actor(), expected_referrer=request.form.get("was"))
    return _back(distributor_id, "顾客已调整到新推荐人名下；之后的订单在新推荐人的小店成交")
