"""Leaderboard benchmark: server time of the H5 销售排行榜 page (top 50 and my
rank) at 100 000 distributors, and of a rebuild from SQL.

Fills a PostgreSQL database (its name must contain "bench"; it is dropped
and created again) with ``--distributors`` distributors and their units
(bulk inserts, level 1, 100 of them frozen — some near the top), and
``--payments`` paid orders spread over the last 40 days in their units, 5 %
partly refunded; FLUSHes the Redis database, rebuilds the leaderboard from
SQL (timed), then, logged in as a distributor in the middle of the board,
measures ``GET /h5/leaderboard?period=…`` through the Flask test client
(the whole request: session check, Redis, the names' query, Jinja) and the
handler alone (``handlers.leaderboard.board``), ``--repeat`` times per
period. Prints p50 and p95.

    .venv/bin/python bench/leaderboard.py                      # 100 000 distributors, 300 000 payments
    .venv/bin/python bench/leaderboard.py --distributors 20000 --payments 50000 --repeat 50

**Drops and recreates the bench database** (default
postgresql+psycopg://postgres@127.0.0.1:5432/fx_bench_leaderboard) and
**FLUSHDBs the Redis database** (default redis://127.0.0.1:6379/1; database
0 is refused).
"""
from __future__ import annotations

import argparse
import base64
import logging
import random
import secrets
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from bench.benchdb import recreate_database  # noqa: E402

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/fx_bench_leaderboard"
DEFAULT_REDIS = "redis://127.0.0.1:6379/1"
SURNAMES = "赵钱孙李周吴郑王冯陈褚卫蒋沈韩杨朱秦尤许何吕施张"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂"


def log(msg: str) -> None:
    print(f"[leaderboard] {msg}", flush=True)


def make_app(url: str, redis_url: str):
    from app import create_app
    from app.config import SCHEMA, build

    raw = {
        "app": {"secret_key": secrets.token_urlsafe(24), "base_url": "http://127.0.0.1:5999", "database_url": url,
                "redis_url": redis_url},
        "wechat": {"appid": "wxbench000000001", "secret": secrets.token_hex(16), "token": "benchtoken",
                   "encoding_aes_key": base64.b64encode(secrets.token_bytes(32)).decode()[:43], "sandbox": True},
        "templates": {kind: "" for kind in SCHEMA["templates"]},
    }
    return create_app(build(raw, {}, "bench"))


def _batched(table, rows: list[dict], size: int = 5000) -> None:
    from sqlalchemy import insert

    from models import db

    for i in range(0, len(rows), size):
        db.session.execute(insert(table), rows[i:i + size])
    db.session.commit()


def seed(n_distributors: int, n_payments: int, rng: random.Random) -> None:
    """Users, distributors, units, orders, payments and refunds as bulk
    inserts (what that many applications and checkouts would have left).
    """
    from sqlalchemy import text

    from handlers.clock import now
    from models import Distributor, Order, Payment, Refund, Unit, User, db

    at = now()
    t0 = time.perf_counter()
    users, distributors, units = [], [], []
    for i in range(1, n_distributors + 1):
        users.append({"id": i, "openid": f"oBENCH{i:08d}{'x' * 14}", "nickname": f"用户{i}",
                      "avatar_url": f"https://thirdwx.qlogo.cn/mmopen/bench{i}/132" if i % 3 else None,
                      "subscription": "subscribed", "first_contact": "subscribe", "created_at": at,
                      "source": "organic", "is_distributor": True})
        distributors.append({"id": i, "user_id": i, "level": 1, "status": "frozen" if i % 1000 == 7 else "active",
                             "real_name": rng.choice(SURNAMES) + "".join(rng.choices(GIVEN, k=rng.randint(1, 2))),
                             "mobile": f"137{i:08d}", "approved_at": at})
        units.append({"distributor_id": i, "name": f"小店{i}", "slug": f"b{i:09d}", "invite_code": f"I{i:07d}",
                      "scene": f"s{i:09d}", "qr_status": "ready", "poster_version": 0, "created_at": at})
    _batched(User, users)
    _batched(Distributor, distributors)
    _batched(Unit, units)
    unit_ids = [u for (u,) in db.session.execute(text("SELECT id FROM units WHERE distributor_id IS NOT NULL"))]
    log(f"{n_distributors} distributors inserted in {time.perf_counter() - t0:.1f}s")
    t0 = time.perf_counter()
    # A few sell a lot, most a little: a long tail, many equal amounts.
    weights = [1 / (k + 1) ** 0.8 for k in range(len(unit_ids))]
    sellers = rng.choices(unit_ids, weights, k=n_payments)
    orders, pays, refunds = [], [], []
    for k, unit in enumerate(sellers, start=1):
        paid = at - timedelta(seconds=rng.randrange(40 * 86400))
        total = rng.choice([990, 1990, 2990, 4990, 9900, 19900])
        orders.append({"id": k, "order_no": f"B{k:019d}", "guest_mobile": "13900000000", "unit_id": unit,
                       "status": "paid", "goods_fen": total,
                       "total_fen": total, "receiver_name": "买家", "receiver_mobile": "13900000000",
                       "receiver_address": "浙江省杭州市西湖区文三路 100 号", "note": "", "pay_channel": "wechatpay",
                       "transaction_id": f"T{k:020d}", "holds_stock": True, "created_at": paid,
                       "expires_at": paid + timedelta(minutes=30), "paid_at": paid})
        pays.append({"id": k, "order_id": k, "duplicate": False, "channel": "wechatpay", "transaction_id": f"T{k:020d}",
                     "amount_fen": total, "raw": {}, "paid_at": paid})
        if k % 20 == 0:
            refunds.append({"order_id": k, "payment_id": k, "origin": "merchant", "partial": True,
                            "out_refund_no": f"RB{k:019d}", "amount_fen": total // 2, "reason": "退货",
                            "status": "succeeded", "created_at": paid + timedelta(hours=2),
                            "finished_at": min(at, paid + timedelta(days=1))})
    _batched(Order, orders)
    _batched(Payment, pays)
    _batched(Refund, refunds)
    for table in ("users", "distributors", "orders", "payments"):
        db.session.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                f"(SELECT max(id) FROM {table}))"))
    db.session.commit()
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for table in ("users", "distributors", "units", "orders", "payments", "refunds"):
            conn.execute(text(f"VACUUM ANALYZE {table}"))
    log(f"{n_payments} paid orders and {len(refunds)} refunds inserted in {time.perf_counter() - t0:.1f}s")


def log_in(client, user_id: int) -> None:
    """An H5 session for the user, as the OAuth callback would start it."""
    from handlers.clock import now
    from models import db
    from models.h5_session import H5Session

    record = H5Session(id=secrets.token_urlsafe(32), user_id=user_id, created_at=now(), last_seen_at=now())
    db.session.add(record)
    db.session.commit()
    with client.session_transaction() as session:
        session["sid"] = record.id
        session.permanent = True


def timed(fn, repeat: int) -> tuple[float, float, float]:
    """p50 and p95 of wall time, and p50 of this process's CPU time, in ms."""
    for _ in range(5):  # warm: templates compiled, plans cached, connections open
        fn()
    times, cpu = [], []
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        fn()
        times.append((time.perf_counter() - t) * 1000)
        cpu.append((time.process_time() - c) * 1000)
    times.sort()
    return statistics.median(times), times[max(0, int(len(times) * 0.95) - 1)], statistics.median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS)
    parser.add_argument("--distributors", type=int, default=100_000)
    parser.add_argument("--payments", type=int, default=300_000)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--reuse", action="store_true", help="measure the database of the last run again")
    args = parser.parse_args()
    if args.redis_url.rstrip("/").endswith("/0"):
        raise SystemExit("refusing to FLUSHDB Redis database 0: give another --redis-url")
    if not args.reuse:
        recreate_database(args.database_url)
    app = make_app(args.database_url, args.redis_url)
    rng = random.Random(11)
    with app.app_context():
        from flask_migrate import upgrade
        from sqlalchemy import text

        from app.extensions import redis_store
        from handlers import leaderboard
        from models import Unit, db

        logging.disable(logging.WARNING)
        upgrade()
        redis_store.conn.flushdb()
        if not args.reuse:
            seed(args.distributors, args.payments, rng)
        t0 = time.perf_counter()
        counts = leaderboard.rebuild()
        log(f"rebuilt {len(counts)} keys from SQL in {time.perf_counter() - t0:.1f}s "
            f"({counts.get('lb:all', 0)} units on the all-time board)")
        middle = int(redis_store.conn.zrevrange("lb:all", counts["lb:all"] // 2, counts["lb:all"] // 2)[0])
        user_id = db.session.get(Unit, middle).distributor.user_id
        client = app.test_client()
        log_in(client, user_id)
        page = client.get("/h5/leaderboard?period=all").get_data(as_text=True)
        assert "我的排名" in page and page.count("weui-cell fx-lb-row") == 50, page[:500]
        db.session.remove()
        print(f"\n{args.distributors} distributors, {args.payments} payments; PostgreSQL + Redis; "
              f"{args.repeat} requests each (server time, Flask test client)")
        def select_one():
            db.session.execute(text("SELECT 1"))
            db.session.remove()

        floor = timed(select_one, args.repeat)[0], timed(redis_store.conn.ping, args.repeat)[0]
        print(f"floor: a PostgreSQL round trip (session, SELECT 1) {floor[0]:.2f} ms, a Redis PING {floor[1]:.2f} ms")
        print(f"{'period':8} {'members':>8} {'page p50':>9} {'page p95':>9} {'page cpu':>9} "
              f"{'board p50':>10} {'board p95':>10}  ms")
        for name in leaderboard.PERIODS:
            members = redis_store.conn.zcard(leaderboard.period(name).key)

            def request(name=name):
                res = client.get(f"/h5/leaderboard?period={name}")
                assert res.status_code == 200

            def board(name=name):
                leaderboard.board(name, middle)
                db.session.remove()

            page50, page95, page_cpu = timed(request, args.repeat)
            board50, board95, _ = timed(board, args.repeat)
            print(f"{name:8} {members:8d} {page50:9.2f} {page95:9.2f} {page_cpu:9.2f} {board50:10.2f} {board95:10.2f}",
                  flush=True)
        db.session.remove()
        db.engine.dispose()


if __name__ == "__main__":
    main()
