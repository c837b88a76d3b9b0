"""Orders list benchmark: server time of the admin's 订单 page at 100 000 orders.

Fills a PostgreSQL database (its name must contain "bench"; it is dropped
and created again) with 100 000 orders — bulk inserts, spread over half a
year, every state, 40 distributors on two levels, 20 000 buyer phones —
then logs in as the owner through the Flask test client and measures the
list page (the whole request: routing, login check, the query, Jinja)
``--repeat`` times for each case: unfiltered, by state, by distributor, by
buyer phone, by a week of dates, and the next page of the unfiltered list.
Prints p50 and p95 per case.

    .venv/bin/python bench/admin_orders.py                   # 100 000 orders, 50 requests per case
    .venv/bin/python bench/admin_orders.py --orders 20000 --repeat 20

**Drops and recreates the bench database** (default
postgresql+psycopg://postgres@127.0.0.1:5432/fx_bench_orders). Redis is not
used (the in-process stand-in): the page does not touch it.
"""
from __future__ import annotations

import argparse
import base64
import logging
import random
import re
import secrets
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from bench.benchdb import recreate_database  # noqa: E402

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/fx_bench_orders"
STATES = [("completed", 45), ("shipped", 15), ("paid", 20), ("pending", 5), ("cancelled", 8), ("refunded", 5),
          ("refunding", 2)]


def log(msg: str) -> None:
    print(f"[admin_orders] {msg}", flush=True)


def make_app(url: str):
    from app import create_app
    from app.config import SCHEMA, build

    raw = {
        "app": {"secret_key": secrets.token_urlsafe(24), "base_url": "http://127.0.0.1:5999", "database_url": url,
                "redis_url": ""},
        "wechat": {"appid": "wxbench000000001", "secret": secrets.token_hex(16), "token": "benchtoken",
                   "encoding_aes_key": base64.b64encode(secrets.token_bytes(32)).decode()[:43], "sandbox": True},
        "templates": {kind: "" for kind in SCHEMA["templates"]},
    }
    return create_app(build(raw, {}, "bench"))


def seed(n_orders: int, rng: random.Random) -> dict:
    """Distributors through the product's own handlers; the orders and their
    lines as bulk inserts (what 100 000 checkouts would have left)."""
    from sqlalchemy import insert, select, text

    from handlers import applications, audit, catalogue, outbox, users
    from handlers.clock import now
    from models import FirstContact, Order, OrderLine, Unit, db

    goods = [catalogue.add_product(f"商品{i}", 990 + 1000 * i, 10**6) for i in range(8)]
    outbox.commit()
    tops, sellers = [], []
    for i in range(40):
        user = users.record_contact(f"oBENCH{i:06d}{'x' * 16}", FirstContact.SUBSCRIBE).user
        parent = rng.choice(tops) if tops and i >= 10 else None
        application = applications.apply_for_distributor(user, "赵钱孙李周吴郑王冯陈"[i % 10] + "伟芳娜敏"[i // 10] + "华", f"137{i:08d}", "想分享好东西",
                                                         parent.unit.invite_code if parent else "")
        outbox.commit()
        made = applications.approve_application(application.id, actor=audit.SYSTEM)
        outbox.commit()
        (tops if parent is None else sellers).append(made)
    merchant_unit = db.session.scalars(select(Unit.id).where(Unit.distributor_id.is_(None))).first()
    phones = [f"139{n:08d}" for n in rng.sample(range(10**8), 20000)]
    weights = [w for _, w in STATES]
    start = now() - timedelta(days=180)
    step = timedelta(days=180) / n_orders
    batch_orders, batch_lines, order_id, line_id = [], [], 0, 0
    t0 = time.perf_counter()
    for k in range(n_orders):
        order_id += 1
        at = start + step * k
        status = rng.choices([s for s, _ in STATES], weights)[0]
        who = rng.random()
        seller = rng.choice(sellers) if who < 0.5 else rng.choice(tops) if who < 0.8 else None
        product = rng.choice(goods)
        qty = rng.randint(1, 3)
        total = product.price_fen * qty
        paid = status not in ("pending", "cancelled")
        shipped = status in ("shipped", "completed", "refunded", "refunding")
        phone = rng.choice(phones)
        batch_orders.append({
            "id": order_id, "order_no": at.strftime("%y%m%d%H") + f"{order_id:012d}", "checkout_key": None,
            "buyer_id": None, "guest_mobile": phone,
            "unit_id": seller.unit.id if seller else merchant_unit,
            "distributor_id": seller.id if seller else None,
            "parent_distributor_id": (seller.parent_id if seller else None),
            "status": status, "goods_fen": total, "total_fen": total, "receiver_name": f"买家{order_id % 997}",
            "receiver_mobile": phone, "receiver_address": "浙江省杭州市西湖区文三路 100 号", "note": "",
            "pay_channel": rng.choice(["wechatpay", "alipay"]) if paid else None,
            "transaction_id": f"T{order_id:020d}" if paid else None,
            "carrier": "顺丰速运" if shipped else None, "tracking_no": f"SF{order_id:012d}" if shipped else None,
            "holds_stock": status not in ("cancelled",), "cancel_reason": "超时未付款" if status == "cancelled" else None,
            "created_at": at, "expires_at": at + timedelta(minutes=30),
            "paid_at": at + timedelta(minutes=2) if paid else None,
            "shipped_at": at + timedelta(days=1) if shipped else None,
            "auto_confirm_at": at + timedelta(days=8) if shipped else None,
            "completed_at": at + timedelta(days=4) if status == "completed" else None,
            "cancelled_at": at + timedelta(minutes=30) if status == "cancelled" else None,
            "refunded_at": at + timedelta(days=5) if status == "refunded" else None,
        })
        line_id += 1
        batch_lines.append({"id": line_id, "order_id": order_id, "product_id": product.id, "name": product.name,
                            "image": None, "unit_price_fen": product.price_fen, "quantity": qty, "amount_fen": total,
                            "level1_rate_bp": None, "level2_rate_bp": None})
        if len(batch_orders) == 5000 or k == n_orders - 1:
            db.session.execute(insert(Order), batch_orders)
            db.session.execute(insert(OrderLine), batch_lines)
            db.session.commit()
            batch_orders, batch_lines = [], []
    for table in ("orders", "order_lines"):
        db.session.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                f"(SELECT max(id) FROM {table}))"))
    db.session.commit()
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE orders"))
        conn.execute(text("VACUUM ANALYZE order_lines"))
    log(f"{n_orders} orders inserted in {time.perf_counter() - t0:.1f}s")
    busiest = max(sellers, key=lambda d: db.session.scalar(
        text("SELECT count(*) FROM orders WHERE distributor_id = :d"), {"d": d.id}))
    return {"phone": phones[7], "distributor": busiest.real_name, "top": tops[0].real_name,
            "day": (now() - timedelta(days=30)).astimezone().date()}


def log_in(client) -> None:
    from handlers import audit, outbox
    from handlers import staff as staff_rules

    staff_rules.create_staff("benchowner", "owner", "bench password 123", audit.SYSTEM)
    outbox.commit()
    page = client.get("/admin/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    res = client.post("/admin/login", data={"csrf_token": csrf, "name": "benchowner",
                                            "password": "bench password 123", "code": ""})
    assert res.status_code == 302, res.get_data(as_text=True)[:300]


def measure(client, url: str, repeat: int) -> tuple[float, float, int]:
    for _ in range(3):  # warm: templates compiled, plans cached
        client.get(url)
    times, rows = [], 0
    for _ in range(repeat):
        t = time.perf_counter()
        res = client.get(url)
        times.append((time.perf_counter() - t) * 1000)
        assert res.status_code == 200, (url, res.status_code)
        rows = res.get_data(as_text=True).count('<tr id="order-')
    times.sort()
    return statistics.median(times), times[max(0, int(len(times) * 0.95) - 1)], rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    recreate_database(args.database_url)
    app = make_app(args.database_url)
    rng = random.Random(10)
    with app.app_context():
        from flask_migrate import upgrade

        upgrade()
        # Approving the distributors queues WeChat jobs (run inline here, with
        # no WeChat to answer them): their failures are noise for this bench.
        logging.disable(logging.ERROR)
        facts = seed(args.orders, rng)
        logging.disable(logging.NOTSET)
        client = app.test_client()
        log_in(client)
        first = client.get("/admin/orders").get_data(as_text=True)
        before = re.search(r"before=(\d+)", first).group(1)
        since = facts["day"].isoformat()
        until = (facts["day"] + timedelta(days=6)).isoformat()
        cases = [
            ("unfiltered", "/admin/orders"),
            ("next page", f"/admin/orders?before={before}"),
            ("state = paid", "/admin/orders?status=paid"),
            ("state = refunding (2%)", "/admin/orders?status=refunding"),
            ("distributor (level 1)", f"/admin/orders?distributor={facts['distributor']}"),
            ("distributor (level 2 too)", f"/admin/orders?distributor={facts['top']}"),
            ("buyer phone", f"/admin/orders?phone={facts['phone']}"),
            ("a week, by paid time", f"/admin/orders?date_field=paid&since={since}&until={until}"),
            ("state + distributor + week", f"/admin/orders?status=completed&distributor={facts['distributor']}"
                                           f"&since={since}&until={until}"),
        ]
        print(f"\n{args.orders} orders on PostgreSQL, {args.repeat} requests each (Flask test client, server time)")
        print(f"{'case':32} {'p50 ms':>8} {'p95 ms':>8} {'rows':>6}")
        for name, url in cases:
            p50, p95, rows = measure(client, url, args.repeat)
            print(f"{name:32} {p50:8.1f} {p95:8.1f} {rows:6d}", flush=True)
        from models import db

        db.session.remove()
        db.engine.dispose()


if __name__ == "__main__":
    main()
