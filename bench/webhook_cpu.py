"""The webhook's own CPU per follow, in one process, without the network.

``bench/webhook.py`` measures the whole machine under load; this measures
only the product's Python and its database calls per ``subscribe`` event with
a QR scene (a new follower bound to a distributor), the event a viral poster
brings by the thousand: it seeds distributors, builds signed and encrypted
pushes exactly as WeChat does (``sandbox.push.WeChatServer``), then POSTs them
through the app's WSGI stack (Flask's test client) one after another and
reads ``time.process_time`` (this process: Flask, wechatpy, SQLAlchemy,
psycopg's client side) and PostgreSQL's backend CPU from ``/proc``.

    .venv/bin/python bench/webhook_cpu.py               # 3000 events
    .venv/bin/python bench/webhook_cpu.py --profile     # and the top functions (cProfile)

CPU time on a shared 2-core VM drifts by ±15 % from minute to minute; to
compare two versions of the code, count instructions instead (repeatable):
run under ``valgrind --tool=callgrind`` with ``--reuse --events 100`` and
``--reuse --events 600`` and divide the difference of the totals by 500.

It drops and recreates the database (its name must contain ``bench``) and
FLUSHDBs the Redis database (not 0).
"""
from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import secrets
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from webhook import bench_account, flush_redis, recreate_database, signed_follow  # noqa: E402


def pg_backend_cpu(database: str) -> float:
    """CPU seconds (user + system) of the PostgreSQL backends serving ``database``."""
    import psycopg

    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as conn:
        pids = [r[0] for r in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (database,))]
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def count_statements(app, pushes) -> int:
    """The SQL statements the app sends for these pushes. Counted apart from
    the measured run: an engine with a statement listener pays for looking
    for listeners around every statement, begin and commit."""
    from sqlalchemy import event

    from models import db

    counter = [0]
    with app.app_context():
        engine = db.engine

    def _count(*_args):
        counter[0] += 1

    event.listen(engine, "before_cursor_execute", _count)
    try:
        post_all(app.test_client(), pushes)
    finally:
        event.remove(engine, "before_cursor_execute", _count)
        engine._has_events = False  # as before the listener (the app installs none on PostgreSQL)
    return counter[0]


def post_all(client, pushes) -> None:
    for url, body in pushes:
        res = client.post(url, data=body, content_type="text/xml")
        if res.status_code != 200 or b"xml" not in res.data:
            raise SystemExit(f"push answered {res.status_code}: {res.data[:200]!r}")


def count_redis_calls(app, pushes) -> int:
    """The app's Redis round trips (commands, scripts, pipelines) for these
    pushes, counted apart from the measured run like the statements."""
    from app.extensions import redis_store

    counter = [0]
    with app.app_context():
        conn = redis_store.conn
    real_command, real_pipeline = conn.execute_command, conn.pipeline

    def counted(*args, **kwargs):
        counter[0] += 1
        return real_command(*args, **kwargs)

    def counted_pipeline(*args, **kwargs):  # a pipeline is one round trip, whatever it holds
        pipe = real_pipeline(*args, **kwargs)
        real_execute = pipe.execute

        def execute(*a, **k):
            counter[0] += 1
            return real_execute(*a, **k)

        pipe.execute = execute
        return pipe

    conn.execute_command, conn.pipeline = counted, counted_pipeline
    try:
        post_all(app.test_client(), pushes)
    finally:
        del conn.execute_command, conn.pipeline  # the class's own again
    return counter[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--database-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/fx_cpu_bench")
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/10")
    ap.add_argument("--events", type=int, default=3000)
    ap.add_argument("--distributors", type=int, default=20)
    ap.add_argument("--mode", choices=("safe", "plain"), default="safe")
    ap.add_argument("--profile", action="store_true", help="print the 25 functions with the most own time")
    ap.add_argument("--profile-file", help="also save the profile there (pstats), to read with pstats' browser")
    ap.add_argument("--reuse", action="store_true",
                    help="keep the database of an earlier run (no drop, no migrations): for runs under valgrind, "
                         "where only the difference between two --events counts matters")
    args = ap.parse_args()

    if not args.reuse:
        recreate_database(args.database_url, force=False)
    flush_redis(args.redis_url, force=False)
    config, server = bench_account(8199, args.database_url, args.redis_url, "WARNING", args.mode)
    os.environ["FENXIAO_CONFIG"] = str(config)
    from flask_migrate import upgrade

    from app import create_app
    from handlers import applications, audit, outbox, users
    from models import FirstContact, User, db

    app = create_app()
    try:
        with app.app_context():
            if not args.reuse:
                upgrade(directory=str(ROOT / "migrations"))
            scenes = []
            for i in range(args.distributors):
                user = users.record_contact(f"oCPUDIST{i:04d}{secrets.token_hex(6)}", FirstContact.SUBSCRIBE).user
                outbox.commit()
                application = applications.apply_for_distributor(user, "张三", "13800138000", "压测")
                outbox.commit()
                scenes.append(applications.approve_application(application.id, actor=audit.SYSTEM).unit.scene)
                outbox.commit()
            db.session.remove()

        run = secrets.token_hex(3)  # this run's followers, apart from a reused database's
        pushes = [signed_follow(server, f"oCPU{run}{i:07d}{secrets.token_hex(4)}", scenes[i % len(scenes)],
                                safe=args.mode == "safe") for i in range(args.events + 200)]
        client = app.test_client()
        post_all(client, pushes[:100])  # warm-up: imports, caches, connections
        statements = count_statements(app, pushes[100:150]) / 50
        redis_calls = count_redis_calls(app, pushes[150:200]) / 50
        database = args.database_url.rsplit("/", 1)[1]
        profiler = cProfile.Profile(time.process_time) if args.profile else None  # CPU, not waiting
        pg0, cpu0, wall0 = pg_backend_cpu(database), time.process_time(), time.perf_counter()
        if profiler:
            profiler.enable()
        post_all(client, pushes[200:])
        if profiler:
            profiler.disable()
        cpu, wall, pg = time.process_time() - cpu0, time.perf_counter() - wall0, pg_backend_cpu(database) - pg0
        with app.app_context():
            bound = db.session.query(User).filter(User.openid.like(f"oCPU{run}%"), User.referrer_id.isnot(None)).count()
        n = args.events
        print(f"{n} subscribe events ({args.mode} mode): product CPU {cpu / n * 1000:.3f} ms/event, "
              f"PostgreSQL {pg / n * 1000:.3f} ms/event, wall {wall / n * 1000:.3f} ms/event; "
              f"{bound} of {n + 200} new followers bound; per event {statements:.2f} SQL statements "
              f"(besides BEGIN/COMMIT), {redis_calls:.2f} Redis round trips; load {os.getloadavg()[0]:.1f}")
        if profiler and args.profile_file:
            profiler.dump_stats(args.profile_file)
        if profiler:
            pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(40)
    finally:
        config.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
