"""Drain benchmark: how fast `flask --app wsgi worker` empties a backlog.

Seeds a backlog of new-member notifications (each one an outbox row whose
job sends a WeChat template message, handed to RQ on commit, as a viral
follow campaign produces them), then runs `flask --app wsgi worker --burst
--processes N` for each N asked and reports jobs/s, measured from the rows'
own ``done_at`` (first to last, so process start-up is left out). The
product's sandbox WeChat platform answers the template calls over real HTTP
(served by gunicorn on the same machine, so its CPU is in the figures too).
Every run checks that each notification was sent exactly once.

    .venv/bin/python bench/drain.py                         # 2000 jobs, 1 2 4 processes
    .venv/bin/python bench/drain.py --jobs 500 --processes 1 2

**Drops and recreates the bench database, FLUSHDBs the Redis database**
(defaults: postgresql+psycopg://postgres@127.0.0.1:5432/fx_b_bench, redis db 11).
"""
from __future__ import annotations

import argparse
import os
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from webhook import flush_redis, recreate_database  # noqa: E402  (the webhook bench's setup helpers)


def log(msg: str) -> None:
    print(f"[drain] {msg}", flush=True)


def env_for(config: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FENXIAO_")}
    env.update(FENXIAO_CONFIG=str(config), PYTHONUNBUFFERED="1")
    return env


def flask(*args: str, config: Path, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", *args], cwd=ROOT, env=env_for(config),
                          check=True, capture_output=True, text=True, **kw)


SEED = r'''
import sys
from app import create_app
from app.extensions import db
from bench.benchdb import sandbox_followers
from handlers import notifications, outbox
from models import NotificationKind

n_jobs, n_people = int(sys.argv[1]), int(sys.argv[2])
app = create_app()
with app.app_context():
    people = sandbox_followers(n_people)
    from models import OutboxRow
    db.session.query(OutboxRow).delete()
    db.session.commit()
    for i in range(n_jobs):
        user = people[i % n_people]
        notifications.notify(user, NotificationKind.NEW_MEMBER, f"bench:{i}", "新成员加入",
                             f"粉丝{i} 加入了你的团队", "team", {"thing1": f"粉丝{i}"})
        outbox.commit()  # handed to RQ at once, as the webhook does
'''

MEASURE = r'''
import json
from sqlalchemy import func, select
from app import create_app
from app.extensions import db, queue
from models import Notification, OutboxRow, SandboxMessage

app = create_app()
with app.app_context():
    first, last, done = db.session.execute(select(func.min(OutboxRow.done_at), func.max(OutboxRow.done_at),
                                                  func.count()).where(OutboxRow.state == "done")).one()
    not_done = db.session.scalar(select(func.count()).select_from(OutboxRow).where(OutboxRow.state != "done"))
    sent = db.session.scalar(select(func.count()).select_from(SandboxMessage)
                             .where(SandboxMessage.direction == "template"))
    unsent = db.session.scalar(select(func.count()).select_from(Notification).where(Notification.sent_at.is_(None)))
    print(json.dumps({"done": done, "not_done": not_done, "sent": sent, "unsent": unsent,
                      "seconds": (last - first).total_seconds() if done > 1 else None,
                      "left_in_redis": queue.queue.count}))
'''


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=2000)
    p.add_argument("--people", type=int, default=200, help="followers the messages go to")
    p.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--database-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/fx_b_bench")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/11")
    p.add_argument("--port", type=int, default=8111, help="gunicorn serving the sandbox platform")
    p.add_argument("--force-drop", action="store_true")
    args = p.parse_args()
    import json

    tmp = Path(tempfile.mkdtemp(prefix="fenxiao-drain-"))
    config = tmp / "config.toml"
    config.write_text(f"""[app]
secret_key = "{secrets.token_hex(16)}"
base_url = "http://127.0.0.1:{args.port}"
database_url = "{args.database_url}"
redis_url = "{args.redis_url}"
log_level = "WARNING"
[wechat]
appid = "wxbench0123456789"
secret = "{secrets.token_hex(16)}"
token = "benchtoken"
sandbox = true
[templates]
new_member = "TM_new_member"
""", encoding="utf-8")
    results = []
    for n in args.processes:
        log(f"--- {n} process(es): recreating the database, flushing Redis, seeding {args.jobs} jobs")
        recreate_database(args.database_url, args.force_drop)
        flush_redis(args.redis_url, args.force_drop)
        flask("db", "upgrade", config=config)
        web = subprocess.Popen([str(ROOT / ".venv/bin/gunicorn"), "-w", "2", "-k", "gthread", "--threads", "4",
                                "-b", f"127.0.0.1:{args.port}", "wsgi:app"], cwd=ROOT, env=env_for(config),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(2)
            subprocess.run([sys.executable, "-c", SEED, str(args.jobs), str(args.people)], cwd=ROOT,
                           env=env_for(config), check=True)
            log(f"backlog queued; running `flask --app wsgi worker --burst --processes {n}`")
            started, cpu_before = time.monotonic(), resource.getrusage(resource.RUSAGE_CHILDREN)
            flask("worker", "--burst", "--processes", str(n), config=config, timeout=3600)
            wall, cpu_after = time.monotonic() - started, resource.getrusage(resource.RUSAGE_CHILDREN)
            worker_cpu = (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime)
            out = subprocess.run([sys.executable, "-c", MEASURE], cwd=ROOT, env=env_for(config), check=True,
                                 capture_output=True, text=True).stdout
        finally:
            web.terminate()
            web.wait(30)
        m = json.loads(out.strip().splitlines()[-1])
        rate = (m["done"] - 1) / m["seconds"] if m["seconds"] else None
        m.update(processes=n, wall_seconds=round(wall, 1), jobs_per_s=round(rate, 1) if rate else None,
                 worker_cpu_ms_per_job=round(worker_cpu * 1000 / max(m["done"], 1), 1),
                 load_avg=round(os.getloadavg()[0], 1))
        results.append(m)
        log(json.dumps(m))
        assert m["not_done"] == 0 and m["sent"] == args.jobs and m["unsent"] == 0, "lost or duplicated messages"
    print("\n| worker processes | jobs | jobs/s (first→last done) | wall s (incl. start-up) | worker CPU ms/job "
          "| load avg | sent once |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for m in results:
        print(f"| {m['processes']} | {m['done']} | {m['jobs_per_s']} | {m['wall_seconds']} | "
              f"{m['worker_cpu_ms_per_job']} | {m['load_avg']} | {'yes' if m['sent'] == m['done'] else 'NO'} |")


if __name__ == "__main__":
    main()
