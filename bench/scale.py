"""Brand-sized data set: a year of a busy brand in PostgreSQL, the pages timed at that size, and no
sequential scan behind them.

1. Drops and recreates the database (its name must contain "bench"), writes
   a temporary config TOML (FENXIAO_CONFIG), makes the schema with the
   app's migrations, then streams ``--users`` users, ``--distributors``
   distributors (a tenth of them level 2) and ``--orders`` orders with
   their lines, payments, refunds, commission rows, balances, withdrawals,
   applications, referral touches and unit visits through COPY (see
   bench/scale_load.py for the shape and the skew), ANALYZEs, sets the
   sequences past the ids, counts the statistics' past days and rebuilds
   the leaderboard as the nightly jobs would.
2. Times each page ``--repeat`` times through the Flask test client (server
   time: the whole request in-process, no network) and prints p50 and p95
   against the targets: H5 pages 30 ms, leaderboard 5 ms, admin lists
   100 ms, statistics 200 ms.
3. EXPLAINs every statement behind each page and a webhook follow/scan
   (bench/scale_pages.py): a Seq Scan of a table over 10 000 rows or a sort
   on disk fails.
Exit status 0 only when every page meets its target and every plan passes.

    .venv/bin/python bench/scale.py                  # 1M users, 100k distributors, 5M orders
    .venv/bin/python bench/scale.py --small          # 50k users, 5k distributors, 250k orders: ready in about a minute
    .venv/bin/python bench/scale.py --reuse          # measure again without loading

**Drops and recreates the bench database** (default
postgresql+psycopg://postgres@127.0.0.1:5432/fx_scale_bench) and **FLUSHDBs
the Redis database** (default redis://127.0.0.1:6379/12; database 0 is refused).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import sys
import tempfile
import threading
import time
from dataclasses import asdict
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from bench.benchdb import recreate_database  # noqa: E402

from bench.scale_load import Facts, Sizes, load  # noqa: E402

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/fx_scale_bench"
DEFAULT_REDIS = "redis://127.0.0.1:6379/12"


def log(msg: str) -> None:
    print(f"[scale {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def write_config(url: str, redis_url: str) -> tuple[Path, dict]:
    wechat = {"appid": "wxscalebench00001", "token": secrets.token_hex(8),
              "aes_key": secrets.token_urlsafe(32)[:43].replace("-", "a").replace("_", "b")}
    path = Path(tempfile.mkstemp(prefix="fx-scale-", suffix=".toml")[1])
    path.write_text(f"""# written by bench/scale.py; removed at the end of the run
[app]
secret_key = "{secrets.token_hex(16)}"
base_url = "http://127.0.0.1:5999"
database_url = "{url}"
redis_url = "{redis_url}"
log_level = "WARNING"

[wechat]
appid = "{wechat['appid']}"
secret = "{secrets.token_hex(16)}"
token = "{wechat['token']}"
encoding_aes_key = "{wechat['aes_key']}"
sandbox = true

[distribution]
review = "manual"
""")
    return path, wechat


def libpq_dsn(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def nightly_jobs(app, facts: Facts) -> None:
    """What the nightly jobs leave behind: the statistics' past days counted
    (a year of them) and the leaderboard rebuilt from SQL — side by side
    (one mostly PostgreSQL's work, the other mostly Python's), each timed."""
    from handlers import leaderboard, stats
    from models import db

    today = stats.today()
    facts.yesterday = (today - timedelta(days=1)).isoformat()
    facts.year_ago = (today - timedelta(days=365)).isoformat()
    done: dict[str, object] = {}

    def board() -> None:
        with app.app_context():
            t0 = time.perf_counter()
            try:
                counts = leaderboard.rebuild()
                log(f"leaderboard: rebuilt from SQL in {time.perf_counter() - t0:.0f}s "
                    f"({counts.get('lb:all', 0)} units on the all-time board)")
            except BaseException as exc:  # noqa: BLE001 - raised in the main thread
                done["error"] = exc

    thread = threading.Thread(target=board)
    thread.start()
    t0 = time.perf_counter()
    days = stats.recompute(today - timedelta(days=366), today - timedelta(days=1))
    db.session.commit()
    log(f"statistics: {days} past days counted in {time.perf_counter() - t0:.0f}s")
    thread.join()
    if "error" in done:
        raise done["error"]
    db.session.remove()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--distributors", type=int, default=100_000)
    parser.add_argument("--orders", type=int, default=5_000_000)
    parser.add_argument("--small", action="store_true", help="50 000 users, 5 000 distributors, 250 000 orders")
    parser.add_argument("--repeat", type=int, default=30, help="timed requests per page")
    parser.add_argument("--reuse", action="store_true", help="keep the database loaded by an earlier run")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--verbose", action="store_true", help="each page's slowest statements")
    args = parser.parse_args()
    if args.small:
        args.users, args.distributors, args.orders = 50_000, 5_000, 250_000
    if args.redis_url.rstrip("/").endswith("/0"):
        raise SystemExit("refusing to FLUSHDB Redis database 0: give another --redis-url")
    sizes = Sizes(args.users, args.distributors, args.orders)
    sizes.check()

    config, wechat = write_config(args.database_url, args.redis_url)
    os.environ["FENXIAO_CONFIG"] = str(config)
    dsn = libpq_dsn(args.database_url)
    try:
        from app import create_app

        if not args.reuse:
            recreate_database(args.database_url)
        app = create_app()
        with app.app_context():
            from flask_migrate import upgrade
            from sqlalchemy import text

            from app.extensions import redis_store
            from bench import scale_pages
            from models import db

            logging.disable(logging.CRITICAL)  # the pages that fail are reported in the table
            if args.reuse:
                t0 = time.perf_counter()
                before = db.session.scalar(text("SELECT version_num FROM alembic_version"))
                db.session.remove()
                upgrade(directory=str(ROOT / "migrations"))  # indexes added since the load
                log(f"migrations up to date in {time.perf_counter() - t0:.0f}s")
                if db.session.scalar(text("SELECT version_num FROM alembic_version")) != before:
                    # A migration that rewrote rows leaves index-only scans visiting the heap until
                    # autovacuum gets round to it; a production database gets there on its own.
                    t0 = time.perf_counter()
                    db.session.remove()
                    with db.engine.connect() as conn:
                        conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE"))
                    log(f"VACUUM ANALYZE after the migrations in {time.perf_counter() - t0:.0f}s")
                facts = Facts(**json.loads(db.session.scalar(text("SELECT facts FROM scale_bench_facts"))))
                facts.now = datetime.fromisoformat(facts.now)
            else:
                t0 = time.perf_counter()
                upgrade(directory=str(ROOT / "migrations"))
                db.session.remove()
                log(f"schema made by the migrations in {time.perf_counter() - t0:.0f}s; loading "
                    f"{sizes.users} users, {sizes.distributors} distributors, {sizes.orders} orders")
                facts = load(dsn, sizes, args.seed, log)
                log(f"loaded in {time.perf_counter() - t0:.0f}s: "
                    + ", ".join(f"{k} {v}" for k, v in facts.counts.items()))
                redis_store.conn.flushdb()
                nightly_jobs(app, facts)
                # The statistics' year of rows came after the load's VACUUM: until autovacuum
                # visits them, their index-only scans read the heap too (the year's statistics
                # page measured 5× slower). In production a night adds one day's rows to tables
                # that are mostly all-visible.
                t1 = time.perf_counter()
                db.session.remove()
                with db.engine.connect() as conn:
                    conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE"))
                log(f"VACUUM ANALYZE after the nightly jobs in {time.perf_counter() - t1:.0f}s")
                log(f"data set ready {time.perf_counter() - t0:.0f}s after the start")
                with db.engine.begin() as conn:
                    conn.execute(text("CREATE TABLE scale_bench_facts (facts text)"))
                    conn.execute(text("INSERT INTO scale_bench_facts VALUES (:f)"),
                                 {"f": json.dumps(asdict(facts), default=str)})
            print(f"\n{datetime.now():%Y-%m-%d %H:%M} — {facts.counts.get('users')} users, "
                  f"{facts.counts.get('distributors')} distributors, {facts.counts.get('orders')} orders; "
                  f"the biggest distributor has {facts.counts.get('customers_of_biggest')} customers. "
                  f"{args.repeat} requests per page, Flask test client, PostgreSQL {db.session.scalar(text('SHOW server_version'))}")
            db.session.remove()
        failures = scale_pages.run(app, dsn, facts, wechat, args.repeat, log, args.verbose)
        print(f"\n{'all pass' if not failures else f'{failures} page(s) fail'}")
        return 1 if failures else 0
    finally:
        config.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
