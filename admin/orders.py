"""订单: the list (filters, keyset pages), one order's story (a timeline),
ship and refund. Each view parses the request, calls one handler, renders."""
from __future__ import annotations

from flask import render_template, request, url_for

from handlers import order_search, order_story, payments
from handlers import orders as order_moves
from handlers.errors import DomainError
from handlers.money import to_fen, yuan
from models import OrderStatus
from models.order import STATUS_TEXT

from . import bp
from .auth import actor, requires
from .exports import button as export_button
from .support import PAGE_SIZE, before_arg, done, keyset, run

OTHER = "其他"


@bp.get("/orders")
@requires("orders.view")
def orders():
    filters = order_search.parse_filters(request.args)
    rows, next_before = keyset(order_search.search(filters, before=before_arg(), limit=PAGE_SIZE + 1))
    args = dict(filters.given)
    if before_arg():
        args["before"] = str(before_arg())
    return render_template("admin/orders.html", rows=rows, next_before=next_before, args=args, filters=filters,
                           statuses=[(s.value, STATUS_TEXT[s]) for s in OrderStatus],
                           date_fields=order_search.DATE_FIELDS, channels=order_story.CHANNELS,
                           status_tags=order_story.STATUS_TAGS, export=export_button("orders", filters.given),
                           status_text={s.value: text for s, text in STATUS_TEXT.items()},
                           # one url_for, not fifty: each row appends its number
                           detail_url=url_for("admin.order", order_no="0").removesuffix("0"))


@bp.get("/orders/<order_no>")
@requires("orders.view")
def order(order_no: str):
    return render_template("admin/order.html", s=order_story.story(order_no), carriers=order_moves.CARRIERS,
                           other=OTHER, refund_key=payments.new_refund_key(), yuan=yuan)


@bp.post("/orders/<order_no>/ship")
@requires("orders.ship")
def order_ship(order_no: str):
    carrier = request.form.get("carrier", "").strip()
    if carrier == OTHER or not carrier:
        carrier = request.form.get("carrier_other", "").strip()
    shipped = run(order_moves.ship_order, order_no, carrier, request.form.get("tracking_no", ""), actor=actor())
    return done(f"订单 {order_no} 已发货：{shipped.carrier} {shipped.tracking_no}，买家会收到通知",
                url_for("admin.order", order_no=order_no))


@bp.post("/orders/<order_no>/refund")
@requires("orders.refund")
def order_refund(order_no: str):
    text = request.form.get("amount", "").strip()
    if not text:
        raise DomainError("请填写退款金额")
    refund = run(payments.start_refund, order_no, request.form.get("reason", ""), actor=actor(),
                 amount_fen=to_fen(text), request_key=request.form.get("request_key") or None)
    kind = "部分退款" if refund.partial else "退款"
    return done(f"订单 {order_no} 的{kind} ¥{yuan(refund.amount_fen)} 已提交支付平台（退款单号 {refund.out_refund_no}），"
                "成功后买家会收到通知", url_for("admin.order", order_no=order_no))
