"""The merchant's shop commands (until the management platform exists)."""
from __future__ import annotations

from sqlalchemy import select

from distribution_helpers import make_user
from handlers import orders, outbox, payments
from handlers.payments import GatewayTrade
from models import Order, PayChannel, Product, Refund, db


def run(app, *args):
    return app.test_cli_runner().invoke(args=list(args))


def test_products_add_list_update_and_refuse_bad_values(app):
    out = run(app, "products", "add", "--name", "山茶花礼盒", "--price-fen", "16800", "--stock", "5",
              "--image", "/h5/static/products/camellia.png", "--level1-rate-bp", "1500")
    assert out.exit_code == 0, out.output
    product = db.session.scalars(select(Product)).one()
    assert (product.price_fen, product.stock, product.level1_rate_bp, product.level2_rate_bp) == (16800, 5, 1500, None)
    listing = run(app, "products", "list").output
    assert "¥168.00" in listing and "stock 5" in listing and "山茶花礼盒" in listing and "1500/default bp" in listing
    assert run(app, "products", "update", str(product.id), "--stock", "9", "--off-sale").exit_code == 0
    db.session.refresh(product)
    assert (product.stock, product.on_sale) == (9, False)
    for bad in (["--price-fen", "0"], ["--stock", "-1"], ["--level1-rate-bp", "10001"]):
        out = run(app, "products", "update", str(product.id), *bad)
        assert out.exit_code != 0 and "Error" in out.output, bad
    assert run(app, "products", "update", "424242", "--stock", "1").exit_code != 0
    db.session.refresh(product)
    assert (product.price_fen, product.stock) == (16800, 9)


def test_seed_fills_only_an_empty_catalogue(app):
    assert "6 product(s) seeded" in run(app, "products", "seed").output
    assert "0 product(s) seeded" in run(app, "products", "seed").output


def test_orders_list_and_refund(app):
    run(app, "products", "seed")
    product = db.session.scalars(select(Product)).first()
    order = orders.place_order(orders.Buyer(user=make_user()), {product.id: 1},
                               orders.Receiver.checked("张三", "13800138000", "上海市徐汇区漕溪北路 1 号"))
    outbox.commit()
    payments.mark_paid(GatewayTrade(PayChannel.WECHATPAY, order.order_no, True, "t-1", order.total_fen))
    outbox.commit()
    assert order.order_no in run(app, "orders", "list", "--status", "paid").output
    assert run(app, "orders", "refund", order.order_no, "--reason", " ").exit_code != 0
    out = run(app, "orders", "refund", order.order_no, "--reason", "缺货")
    assert out.exit_code == 0 and "requested" in out.output
    # The gateway is asked in the background; its answer finishes the refund
    # (walked end to end in test_wechatpay / test_alipay).
    db.session.rollback()
    assert db.session.scalars(select(Refund)).one().amount_fen == order.total_fen
    assert db.session.get(Order, order.id).status in ("refunding", "refunded")
    again = run(app, "orders", "refund", order.order_no, "--reason", "再退")
    assert again.exit_code != 0 and "退款中" in again.output
