"""Paying, my orders, one order, and the distributor's unit orders and
product selection.

Paying: inside WeChat with WeChat Pay (JSAPI), in any other browser with
Alipay (mobile web pay). Coming back from a gateway proves nothing: the
return page asks the gateway (``sync_with_gateway``). A WeChat user whose
account has no WeChat Pay is shown how to open the order's pay link in the
phone's browser; that link carries a signed token good for paying that one
order and nothing else.
"""
from __future__ import annotations

import logging

from flask import current_app, redirect, render_template, request, url_for
from itsdangerous import BadSignature, URLSafeTimedSerializer

from handlers import catalogue, orders, outbox, payments, settings
from handlers.errors import DomainError
from models import IllegalTransition, Order, OrderStatus, PayChannel

from . import bp
from .auth import current_user, login_required
from .distribution import _distributor_or_apply
from .shop import current_buyer, in_wechat, plain_id, shop_page

log = logging.getLogger(__name__)
S = OrderStatus
TABS = [("all", "全部", ()), ("pending", "待付款", (S.PENDING,)), ("paid", "待发货", (S.PAID,)),
        ("shipped", "待收货", (S.SHIPPED,)), ("completed", "已完成", (S.COMPLETED,)),
        ("refund", "退款", (S.REFUNDING, S.REFUNDED))]
PAY_LINK_SALT, PAY_LINK_HOURS = "fenxiao-pay-link", 24


def _gateway(channel: PayChannel):
    from pay.gateways import gateway_for

    return gateway_for(channel)


def my_order(order_no: str) -> Order:
    """The buyer's own order; anyone else's is "not found". A guest sees
    only orders placed from this browser, not every order of a number."""
    return orders.order_for(current_buyer(), order_no)


def _pay_links() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=PAY_LINK_SALT)


def pay_token(order_no: str) -> str:
    return _pay_links().dumps(order_no)


def _order_by_token(order_no: str, token: str) -> Order | None:
    try:
        if _pay_links().loads(token, max_age=PAY_LINK_HOURS * 3600) != order_no:
            return None
    except BadSignature:
        return None
    return orders.find_order(order_no)


def _payable(order_no: str) -> tuple[Order, str | None]:
    """The order to pay, and the pay-link token when the payer is not its buyer."""
    token = request.args.get("t")
    if token:
        order = _order_by_token(order_no, token)
        if order is not None:
            return order, token
    return my_order(order_no), None


def _configured(section: str, key: str) -> bool:
    return bool(settings.section(section).get(key))


def _return_url(order: Order, channel: PayChannel, token: str | None) -> str:
    # In the path: Alipay appends its own query to return_url and allows none of ours.
    return settings.base_url() + url_for("h5.pay_return", order_no=order.order_no, channel=channel.value,
                                         token=token)


def _unavailable(order: Order, message: str, status: int = 503):
    return render_template("message.html", title="暂时无法支付", message=message,
                           action_url=url_for("h5.order_page", order_no=order.order_no), action_text="查看订单"), status


@bp.get("/orders/<order_no>/pay")
@shop_page
def pay(order_no: str):
    order, token = _payable(order_no)
    orders.settle_due(order)
    outbox.commit()
    if order.status != S.PENDING.value:
        if token:
            return render_template("orders/paid_elsewhere.html", order=order)
        return redirect(url_for("h5.order_page", order_no=order_no))
    user = current_user()
    if in_wechat():
        if not _configured("wechatpay", "mchid") or user is None:
            link = settings.base_url() + url_for("h5.pay", order_no=order_no, t=token or pay_token(order_no))
            return render_template("orders/open_in_browser.html", order=order, link=link)
        return_url = _return_url(order, PayChannel.WECHATPAY, token)
        try:
            gateway = _gateway(PayChannel.WECHATPAY)
            params = gateway.jsapi_params(order, user.openid)
            cashier = gateway.cashier_url(params, return_url)
            outbox.commit()
        except DomainError as exc:  # the gateway refused, with words for the buyer
            outbox.rollback()
            log.warning("WeChat Pay refused order %s: %s", order_no, exc)
            return _unavailable(order, exc.message, exc.status)
        except Exception:  # the gateway is down or unreadable: say so, change nothing
            outbox.rollback()
            log.exception("WeChat Pay could not start for order %s", order_no)
            return _unavailable(order, "微信支付暂时不可用，请稍后再试。")
        return render_template("orders/pay_wechat.html", order=order, params=params, cashier=cashier,
                               return_url=return_url)
    if not _configured("alipay", "app_id"):
        return _unavailable(order, "本店暂未开通支付宝，请在微信中打开本页面，用微信支付。")
    try:
        url = _gateway(PayChannel.ALIPAY).wap_pay_url(order, _return_url(order, PayChannel.ALIPAY, token))
    except DomainError as exc:
        outbox.rollback()
        return _unavailable(order, exc.message, exc.status)
    except Exception:
        outbox.rollback()
        log.exception("Alipay could not start for order %s", order_no)
        return _unavailable(order, "支付宝暂时不可用，请稍后再试。")
    return redirect(url)


@bp.get("/orders/<order_no>/return", defaults={"channel": "", "token": None})
@bp.get("/orders/<order_no>/return/<channel>", defaults={"token": None})
@bp.get("/orders/<order_no>/return/<channel>/<token>")
@shop_page
def pay_return(order_no: str, channel: str, token: str | None):
    """Back from a gateway: ask it, never believe the browser."""
    order = _order_by_token(order_no, token) if token else None
    if order is None:
        order, token = my_order(order_no), None
    try:
        channel = PayChannel(channel)
    except ValueError:
        channel = PayChannel.WECHATPAY if in_wechat() else PayChannel.ALIPAY
    try:
        order = payments.sync_with_gateway(order.order_no, _gateway(channel))
        outbox.commit()
    except Exception:  # the notification will still come; the order page shows what we know
        outbox.rollback()
        log.exception("could not ask %s about order %s", channel.value, order_no)
    if token:
        return render_template("orders/paid_elsewhere.html", order=order)
    return redirect(url_for("h5.order_page", order_no=order_no))


@bp.get("/orders")
@shop_page
def my_orders():
    buyer = current_buyer()
    tab = next((t for t in TABS if t[0] == request.args.get("tab")), TABS[0])
    found = orders.orders_of(buyer) if not tab[2] else [
        o for status in tab[2] for o in orders.orders_of(buyer, status.value)]
    if [order for order in found if orders.settle_due(order)]:
        outbox.commit()  # only then: a commit would expire every order shown, each read again one by one
    found = sorted((o for o in found if not tab[2] or S(o.status) in tab[2]), key=lambda o: o.id, reverse=True)
    return render_template("orders/list.html", orders=found, tabs=TABS, tab=tab[0], guest=buyer.user is None)


@bp.get("/orders/<order_no>")
@shop_page
def order_page(order_no: str, error: str | None = None, status: int = 200):
    order = my_order(order_no)
    orders.settle_due(order)
    outbox.commit()
    return render_template("orders/detail.html", order=order, error=error, S=S,
                           refunds=payments.refunds_of(order.id)), status


def _act(order_no: str, move) -> object:
    buyer = current_buyer()
    my_order(order_no)
    try:
        move(order_no, buyer)
        outbox.commit()
    except IllegalTransition:
        outbox.rollback()
        return order_page(order_no, error="订单状态已变化，不能这样操作。", status=409)
    except DomainError as exc:
        outbox.rollback()
        if exc.status == 404:
            raise
        return order_page(order_no, error=exc.message, status=exc.status)
    return redirect(url_for("h5.order_page", order_no=order_no))


@bp.post("/orders/<order_no>/cancel")
@shop_page
def cancel(order_no: str):
    return _act(order_no, lambda no, buyer: orders.cancel_order(no, "买家取消", buyer=buyer))


@bp.post("/orders/<order_no>/confirm")
@shop_page
def confirm(order_no: str):
    return _act(order_no, lambda no, buyer: orders.confirm_receipt(no, buyer=buyer))


# -- the distributor's side ------------------------------------------------

@bp.get("/unit-orders")
@login_required
def unit_orders():
    distributor = _distributor_or_apply()
    found = orders.orders_of_unit(distributor.unit)
    return render_template("orders/unit.html", unit=distributor.unit, orders=found,
                           masked=orders.unit_order_buyer_name)


@bp.route("/my-products", methods=["GET", "POST"])
@login_required
def my_products():
    unit = _distributor_or_apply().unit
    error, saved, status = None, False, 200
    chosen = catalogue.selection_ids(unit)
    if request.method == "POST":
        ids = [plain_id(r) for r in request.form.getlist("product_id")]
        try:
            if None in ids:
                raise DomainError("所选商品不存在或已下架")
            catalogue.choose_products(unit, ids)
            outbox.commit()
            saved, chosen = True, catalogue.selection_ids(unit)
        except DomainError as exc:
            outbox.rollback()
            error, status = exc.message, exc.status
            chosen = {i for i in ids if i is not None}
    return render_template("orders/my_products.html", unit=unit, products=catalogue.on_sale(), chosen=chosen,
                           error=error, saved=saved), status
