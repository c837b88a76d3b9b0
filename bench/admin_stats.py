"""Statistics page benchmark: server time of the admin's 统计 page at
millions of orders.

Fills a PostgreSQL database (its name must contain "bench"; it is dropped
and created again) with a year of a busy shop, generated inside PostgreSQL
(INSERT … SELECT generate_series, seeded): ``--orders`` orders (1 000 000
by default) over 365 days up to now, 90 % paid, one line each; 250 000
users (a third bound to a distributor); ``--distributors`` distributors
with their units; refunds of 8 % of paid orders, some days later; commission
rows on every order sold through a distributor (half settled, some clawed
back); 20 000 withdrawals; two visits per order and a bound touch per ten.
Then, through the Flask test client logged in as the owner:

* the first page of the last 30 days on an empty ``daily_stats`` (29 past
  days counted from the rows once, then kept) — one request, timed;
* ``stats rebuild`` of the whole year (handlers.stats.rebuild), timed;
* the page, warm, ``--repeat`` times each: the last 7, 30 and 366 days
  (past days from the table, today live), and a past month only.

Prints p50 and p95 per case (the whole request: routing, login check, the
queries, Jinja, the JSON of the series).

    .venv/bin/python bench/admin_stats.py                       # 1 000 000 orders
    .venv/bin/python bench/admin_stats.py --orders 5000000 --repeat 30
    .venv/bin/python bench/admin_stats.py --keep                # measure again on the filled database

**Drops and recreates the bench database** (default
postgresql+psycopg://postgres@127.0.0.1:5432/fx_bench_stats). Redis is not used.
"""
from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from admin_orders import make_app, recreate_database  # noqa: E402

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/fx_bench_stats"
USERS = 250_000


def log(msg: str) -> None:
    print(f"[admin_stats] {msg}", flush=True)


# Each statement fills one table from generate_series; :n orders, :u users,
# :d distributors. The year ends now (the product's clock, UTC).
SEED = [
    ("products", """
     INSERT INTO products (name, description, images, price_fen, stock, on_sale, sort_order, created_at)
     SELECT '商品' || g, '', '[]', 990 + 1000 * g, 1000000, true, 0, now() - interval '400 days'
     FROM generate_series(1::bigint, 8) g"""),
    ("users", """
     INSERT INTO users (openid, subscription, first_contact, created_at, subscribed_at, source)
     SELECT 'oSTATBENCH' || lpad(g::text, 10, '0'), CASE WHEN g % 5 = 0 THEN 'never' ELSE 'subscribed' END,
            (ARRAY['subscribe', 'scan', 'message', 'oauth', 'oauth'])[1 + g % 5],
            now() - interval '365 days' * (1 - g::float / :u), NULL, 'organic'
     FROM generate_series(1::bigint, :u) g"""),
    ("distributors", """
     INSERT INTO distributors (user_id, level, status, real_name, mobile, approved_at)
     SELECT u.id, 1, 'active', '分销商' || u.id, '137' || lpad(u.id::text, 8, '0'), u.created_at + interval '1 hour'
     FROM users u WHERE u.id % (:u / :d) = 0 ORDER BY u.id LIMIT :d"""),
    ("distributors' users", """
     UPDATE users SET is_distributor = true WHERE id IN (SELECT user_id FROM distributors)"""),
    ("units", """
     INSERT INTO units (distributor_id, name, slug, invite_code, scene, qr_status, poster_version, created_at)
     SELECT d.id, d.real_name || '的小店', 's' || d.id, 'i' || d.id, 'scene' || d.id, 'ready', 0, d.approved_at
     FROM distributors d"""),
    ("users bound", """
     UPDATE users u SET referrer_id = d.user_id, source = 'qr',
            attributed_at = u.created_at + interval '10 minutes'
     FROM distributors d
     WHERE u.id % 3 = 0 AND d.id = 1 + (u.id * 7919) % :d AND u.id <> d.user_id"""),
    ("orders", """
     INSERT INTO orders (order_no, buyer_id, guest_mobile, unit_id, distributor_id, status, goods_fen, total_fen,
                         receiver_name, receiver_mobile, receiver_address, note, holds_stock, created_at,
                         expires_at, paid_at, pay_channel, transaction_id)
     SELECT 'B' || lpad(g::text, 14, '0'),
            CASE WHEN g % 10 < 7 THEN 1 + (g * 104729) % :u END,
            CASE WHEN g % 10 >= 7 THEN '139' || lpad(((g * 7901) % 300000)::text, 8, '0') END,
            un.id, un.distributor_id, CASE WHEN g % 10 = 9 THEN 'cancelled' ELSE 'completed' END,
            990 * (1 + g % 17), 990 * (1 + g % 17), '买家', '13900000000', '浙江省杭州市西湖区文三路 100 号', '',
            true, t, t + interval '30 minutes',
            CASE WHEN g % 10 <> 9 THEN t + interval '2 minutes' END,
            CASE WHEN g % 10 <> 9 THEN 'wechatpay' END, CASE WHEN g % 10 <> 9 THEN 'T' || g END
     FROM (SELECT g, now() - interval '2 minutes' - interval '365 days' * (1 - g::float / :n) AS t,
                  CASE WHEN g % 4 = 0 THEN (SELECT min(id) FROM units WHERE distributor_id IS NULL)
                       ELSE (SELECT min(id) FROM units WHERE distributor_id IS NOT NULL) + (g * 31) % :d END AS unit
           FROM generate_series(1::bigint, :n) g) s
     JOIN units un ON un.id = s.unit"""),
    ("order_lines", """
     INSERT INTO order_lines (order_id, product_id, name, unit_price_fen, quantity, amount_fen, level1_rate_bp)
     SELECT o.id, (SELECT min(id) FROM products), '商品', o.total_fen, 1, o.total_fen, 1000
     FROM orders o"""),
    ("refunds", """
     INSERT INTO refunds (order_id, origin, partial, out_refund_no, amount_fen, reason, status, created_at,
                          finished_at)
     SELECT o.id, 'merchant', o.id % 2 = 0, 'RF' || o.id, CASE WHEN o.id % 2 = 0 THEN o.total_fen / 2
            ELSE o.total_fen END, '退货', 'succeeded', o.paid_at + interval '1 day' * (o.id % 5),
            least(o.paid_at + interval '1 day' * (o.id % 5) + interval '1 minute', now())
     FROM orders o WHERE o.paid_at IS NOT NULL AND o.id % 100 < 8"""),
    ("commission_rows", """
     INSERT INTO commission_rows (distributor_id, order_id, order_line_id, level, kind, base_fen, rate_bp,
                                  amount_fen, state, settle_at, created_at, settled_at)
     SELECT o.distributor_id, o.id, l.id, 1, 'commission', o.total_fen, 1000, o.total_fen / 10,
            CASE WHEN o.paid_at < now() - interval '15 days' THEN 'withdrawable' ELSE 'frozen' END,
            o.paid_at + interval '14 days', o.paid_at,
            CASE WHEN o.paid_at < now() - interval '15 days' THEN o.paid_at + interval '14 days' END
     FROM orders o JOIN order_lines l ON l.order_id = o.id
     WHERE o.distributor_id IS NOT NULL AND o.paid_at IS NOT NULL"""),
    ("clawbacks", """
     INSERT INTO commission_rows (distributor_id, order_id, order_line_id, level, kind, base_fen, rate_bp,
                                  amount_fen, state, settle_at, created_at, settled_at)
     SELECT c.distributor_id, c.order_id, c.order_line_id, 1, 'clawback', c.base_fen, 1000,
            -greatest(1, c.amount_fen / 2), 'withdrawable', c.settle_at, c.settled_at + interval '1 day',
            c.settled_at + interval '1 day'
     FROM commission_rows c
     WHERE c.state = 'withdrawable' AND c.order_id % 100 = 3 AND c.amount_fen > 0
       AND c.settled_at < now() - interval '1 day'"""),
    ("withdrawals", """
     INSERT INTO withdrawals (distributor_id, request_key, amount_fen, fee_fen, status, requested_at, decided_at,
                              method)
     SELECT 1 + (g * 13) % :d + (SELECT min(id) - 1 FROM distributors), 'k' || g, 10000 + g % 5000, 0,
            CASE WHEN g % 10 = 0 THEN 'rejected' ELSE 'paid' END, t, t + interval '3 hours',
            CASE WHEN g % 10 = 0 THEN NULL ELSE 'manual' END
     FROM (SELECT g, now() - interval '4 hours' - interval '360 days' * (1 - g::float / 20000) AS t
           FROM generate_series(1::bigint, 20000) g) s"""),
    ("unit_visits", """
     INSERT INTO unit_visits (unit_id, user_id, visitor, at)
     SELECT (SELECT min(id) FROM units) + (g * 37) % (:d + 1), 1 + (g * 15485863) % :u,
            'u' || (1 + (g * 15485863) % :u), now() - interval '365 days' * (1 - g::float / (2 * :n))
     FROM generate_series(1::bigint, 2 * :n) g"""),
    ("referral_touches", """
     INSERT INTO referral_touches (user_id, unit_id, source, token, outcome, at)
     SELECT 1 + (g * 7907) % :u, (SELECT min(id) FROM units WHERE distributor_id IS NOT NULL) + (g * 31) % :d,
            'qr', 'scene', CASE WHEN g % 3 = 0 THEN 'already' ELSE 'bound' END,
            now() - interval '365 days' * (1 - g::float / (:n / 10))
     FROM generate_series(1::bigint, :n / 10) g"""),
]


def seed(n_orders: int, n_distributors: int) -> None:
    from sqlalchemy import text

    from models import db

    params = {"n": n_orders, "u": USERS, "d": n_distributors}
    for name, sql in SEED:
        t0 = time.perf_counter()
        done = db.session.execute(text(sql), {k: v for k, v in params.items() if f":{k}" in sql})
        db.session.commit()
        log(f"{name}: {done.rowcount} rows in {time.perf_counter() - t0:.1f}s")
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        t0 = time.perf_counter()
        conn.execute(text("VACUUM ANALYZE"))
        log(f"VACUUM ANALYZE in {time.perf_counter() - t0:.1f}s")


def log_in(client, name: str) -> None:
    import re

    from handlers import audit, outbox
    from handlers import staff as staff_rules

    staff_rules.create_staff(name, "owner", "bench password 123", audit.SYSTEM)
    outbox.commit()
    page = client.get("/admin/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    res = client.post("/admin/login", data={"csrf_token": csrf, "name": name, "password": "bench password 123",
                                            "code": ""})
    assert res.status_code == 302, res.get_data(as_text=True)[:300]


def timed(client, url: str) -> float:
    t = time.perf_counter()
    res = client.get(url)
    assert res.status_code == 200, (url, res.status_code, res.get_data(as_text=True)[:300])
    return (time.perf_counter() - t) * 1000


def measure(client, url: str, repeat: int) -> tuple[float, float]:
    for _ in range(3):  # warm: templates compiled, plans cached
        timed(client, url)
    times = sorted(timed(client, url) for _ in range(repeat))
    return statistics.median(times), times[max(0, int(len(times) * 0.95) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--distributors", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--keep", action="store_true", help="reuse the filled database (no drop, no seeding)")
    args = parser.parse_args()
    from sqlalchemy.engine import make_url

    if "bench" not in (make_url(args.database_url).database or ""):
        raise SystemExit("refusing a database whose name has no 'bench' in it (its statistics tables are emptied)")
    if not args.keep:
        recreate_database(args.database_url)
    app = make_app(args.database_url)
    with app.app_context():
        from flask_migrate import upgrade
        from sqlalchemy import delete, func, select

        from handlers import outbox
        from handlers import stats as figures
        from models import DailyStat, DailyUnitStat, MonthlyUnitStat, Order, db

        if not args.keep:
            upgrade()
            logging.disable(logging.ERROR)
            seed(args.orders, args.distributors)
            logging.disable(logging.NOTSET)
        orders = db.session.scalar(select(func.count()).select_from(Order))
        today = figures.today()
        db.session.execute(delete(DailyUnitStat))
        db.session.execute(delete(MonthlyUnitStat))
        db.session.execute(delete(DailyStat))
        db.session.commit()
        client = app.test_client()
        log_in(client, f"bench{int(time.time())}")
        month = f"/admin/stats?from={(today - timedelta(days=29)).isoformat()}&to={today.isoformat()}"
        print(f"\n{orders} orders on PostgreSQL ({figures.today()}, China day); server time per request "
              "(Flask test client)")
        print(f"{'cold: 30 days, 29 counted from rows':44} {timed(client, month):8.1f} ms (once)")
        t0 = time.perf_counter()
        first, last, days = figures.rebuild((today - timedelta(days=365)).isoformat())
        outbox.commit()
        print(f"{'stats rebuild, ' + str(days) + ' days':44} {(time.perf_counter() - t0) * 1000:8.1f} ms (once)")
        cases = [
            ("last 7 days", 6, 0),
            ("last 30 days (the default)", 29, 0),
            ("last 366 days", figures.MAX_DAYS - 1, 0),
            ("a past month (no today)", 59, 30),
        ]
        print(f"{'warm case':44} {'p50 ms':>8} {'p95 ms':>8}   ({args.repeat} requests each)")
        for name, back, end_back in cases:
            url = (f"/admin/stats?from={(today - timedelta(days=back)).isoformat()}"
                   f"&to={(today - timedelta(days=end_back)).isoformat()}")
            p50, p95 = measure(client, url, args.repeat)
            print(f"{name:44} {p50:8.1f} {p95:8.1f}", flush=True)
        t0 = time.perf_counter()
        figures.compute(today, today)
        db.session.rollback()
        print(f"{'(today counted live, alone)':44} {(time.perf_counter() - t0) * 1000:8.1f} ms")
        db.session.remove()
        db.engine.dispose()


if __name__ == "__main__":
    main()
