#!/usr/bin/env python
"""Fault run: follows through QR codes keep arriving while Redis, then
PostgreSQL, then WeChat's API fail; afterwards every follow is counted.
See bench/README.md.

    .venv/bin/python bench/faults.py             # about 3 minutes

It runs on servers of its own so nothing else on the machine is disturbed:
a PostgreSQL cluster ``15/fxfaults`` on port 5441 (made with pg_createcluster
when missing; trust auth) and a redis-server on port 6391, both stopped and
started by the run. The product runs under gunicorn with two RQ workers
(`flask --app wsgi worker`); its WeChat API calls go through a small proxy
that the run switches to answering ``errcode -1`` (system busy).

WeChat's side is played as WeChat plays it: each push is signed and
AES-encrypted by sandbox.push.WeChatServer, and a push not answered 200
within 5 s is sent again with the same query and body, three more times.

Verdicts, in the database after the queue has drained:
- lost: a push answered 200 whose follower is missing, unattributed or
  attributed to the wrong distributor, or whose distributor never got the
  new-member notification and its template message;
- duplicates: a follower recorded twice, two touch rows for one push, two
  notifications or two template messages for one new member;
- refused: pushes that got no 200 in four attempts (WeChat gives up: the
  follower is recorded at their next message); reported, with when.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.webhook import APPID, ACCOUNT, BIN, RESULTS, log, new_account, port_free, wait_http  # noqa: E402
from sandbox.push import WeChatServer  # noqa: E402

PG_VERSION = "15"


# ---------------------------------------------------------------- servers of our own
def pg(cluster: str, action: str) -> None:
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", PG_VERSION, cluster, action, *(
        ["-m", "immediate"] if action == "stop" else [])], check=True)


def ensure_pg_cluster(cluster: str, port: int) -> None:
    listed = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True).stdout
    if not any(line.split()[:2] == [PG_VERSION, cluster] for line in listed.splitlines()):
        log(f"creating PostgreSQL cluster {PG_VERSION}/{cluster} on port {port} (trust auth)")
        subprocess.run(["pg_createcluster", PG_VERSION, cluster, "-p", str(port), "--", "-A", "trust"],
                       check=True, stdout=subprocess.DEVNULL)
    status = subprocess.run(["pg_ctlcluster", PG_VERSION, cluster, "status"], capture_output=True)
    if status.returncode != 0:
        pg(cluster, "start")


def start_redis(port: int, workdir: Path) -> None:
    subprocess.run(["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "--port", str(port),
                    "--save", "", "--appendonly", "no", "--dir", str(workdir),
                    "--logfile", str(workdir / "redis.log")], check=True)
    for _ in range(50):
        if not port_free(port):
            return
        time.sleep(0.1)


def stop_redis(port: int) -> None:
    subprocess.run(["redis-cli", "-p", str(port), "shutdown", "nosave"], capture_output=True)


class FaultyWeChatAPI:
    """Forwards the product's WeChat API calls to its sandbox platform, or
    answers ``{"errcode": -1}`` (系统繁忙) while ``failing`` is set."""

    def __init__(self, port: int, target_port: int) -> None:
        self.failing = False
        self.refused = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _relay(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if outer.failing:
                    outer.refused += 1
                    data, status, ctype = b'{"errcode": -1, "errmsg": "system error"}', 200, "application/json"
                else:
                    try:
                        conn = http.client.HTTPConnection("127.0.0.1", target_port, timeout=10)
                        conn.request(self.command, "/sandbox/api" + self.path, body,
                                     {k: v for k, v in self.headers.items() if k.lower() != "host"})
                        res = conn.getresponse()
                        data, status, ctype = res.read(), res.status, res.getheader("Content-Type", "")
                        conn.close()
                    except OSError:
                        data, status, ctype = b"bad gateway", 502, "text/plain"
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _relay

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


# ---------------------------------------------------------------- WeChat's side
class Pusher:
    """Sends subscribe-with-scene pushes at a steady rate, retrying each as
    WeChat does; remembers what became of every push."""

    def __init__(self, port: int, token: str, aes_key: str, scenes: list[str], rate: float, threads: int) -> None:
        self.port, self.token, self.aes_key, self.scenes = port, token, aes_key, scenes
        self.rate, self.threads = rate, threads
        self.results: list[dict] = []
        self.lock = threading.Lock()
        self.next_slot = 0

    def run(self, start: float, duration: float) -> None:
        workers = [threading.Thread(target=self._thread, args=(t, start, start + duration)) for t in range(self.threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()

    def _thread(self, t: int, start: float, end: float) -> None:
        server = WeChatServer(webhook_url="", token=self.token, appid=APPID, encoding_aes_key=self.aes_key,
                              account=ACCOUNT)
        while True:
            with self.lock:
                i = self.next_slot
                self.next_slot += 1
            due = start + i / self.rate
            if due >= end:
                return
            time.sleep(max(0.0, due - time.time()))
            openid = f"oFAULT{i:07d}{secrets.token_hex(4)}"
            scene = self.scenes[i % len(self.scenes)]
            params, body = server.signed_request(server.subscribe(openid, scene), safe=True)
            url = "/wx?" + urlencode(params)
            attempts = []
            for attempt in range(4):  # the push and WeChat's three retries, 5 s apart
                began = time.time()
                status = self._post(url, body)
                attempts.append((round(began - start, 1), status))
                if status == 200:
                    break
                time.sleep(max(0.0, began + 5.0 - time.time()))
            with self.lock:
                self.results.append({"i": i, "openid": openid, "scene": scene, "sent_at": round(due - start, 1),
                                     "attempts": attempts, "acked": attempts[-1][1] == 200})

    def _post(self, url: str, body: bytes) -> int | str:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            conn.request("POST", url, body, {"Content-Type": "text/xml"})
            status = conn.getresponse().status
            conn.close()
            return status
        except OSError as exc:
            return type(exc).__name__


# ---------------------------------------------------------------- the run
def write_config(path: Path, args, token: str, aes_key: str) -> None:
    path.write_text(f"""# written by bench/faults.py
[app]
secret_key = "{secrets.token_hex(16)}"
base_url = "http://127.0.0.1:{args.port}"
database_url = "postgresql+psycopg://postgres@127.0.0.1:{args.pg_port}/fx_faults_bench"
redis_url = "redis://127.0.0.1:{args.redis_port}/0"
log_level = "WARNING"

[wechat]
appid = "{APPID}"
secret = "{secrets.token_hex(16)}"
token = "{token}"
encoding_aes_key = "{aes_key}"
sandbox = true
api_base = "http://127.0.0.1:{args.api_port}"

[distribution]
review = "manual"

[templates]
new_member = "TM_new_member"

[queue]
max_retries = 8
""")


def recreate_database(pg_port: int) -> None:
    host = ["-h", "127.0.0.1", "-p", str(pg_port), "-U", "postgres"]
    subprocess.run(["dropdb", *host, "--if-exists", "--force", "fx_faults_bench"], check=True)
    subprocess.run(["createdb", *host, "fx_faults_bench"], check=True)


def pending_work(env: dict[str, str]) -> int:
    """Rows of the outbox not yet done (-1 when the database cannot say)."""
    out = subprocess.run([str(BIN / "python"), "-c", PENDING_SQL], cwd=ROOT, env=env, capture_output=True,
                         text=True)
    try:
        return int(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return -1


PENDING_SQL = """
from sqlalchemy import text
from app import create_app
from models import db
app = create_app()
with app.app_context():
    print(db.session.execute(text("SELECT count(*) FROM outbox WHERE state = 'pending'")).scalar())
"""

SANDBOX_PEOPLE_SQL = """
from sqlalchemy import text
from app import create_app
from models import db
app = create_app()
with app.app_context():
    db.session.execute(text(
        "INSERT INTO sandbox_users (openid, nickname, subscribed, subscribe_time, subscribe_scene, qr_scene_str, "
        "created_at) SELECT openid, coalesce(nickname, '分销商'), true, now(), 'ADD_SCENE_QR_CODE', '', now() "
        "FROM users WHERE openid LIKE 'oBENCHDIST%'"))
    db.session.commit()
"""

CHECK_SQL = """
import json, sys
from sqlalchemy import text
from app import create_app
from models import db
app = create_app()
q = lambda sql, **kw: db.session.execute(text(sql), kw).all()
with app.app_context():
    out = {
        "users": {r[0]: [r[1], r[2]] for r in q("SELECT u.openid, d.scene, u.source FROM users u LEFT JOIN units d "
                                                "ON d.distributor_id = (SELECT id FROM distributors WHERE user_id = "
                                                "u.referrer_id) WHERE u.openid LIKE 'oFAULT%'")},
        "touches": {r[0]: r[1] for r in q("SELECT u.openid, count(*) FROM referral_touches t JOIN users u "
                                           "ON u.id = t.user_id WHERE u.openid LIKE 'oFAULT%' GROUP BY u.openid")},
        "notices": q("SELECT count(*), count(DISTINCT event_key) FROM notifications WHERE kind = 'new_member'")[0],
        "templates": q("SELECT count(*) FROM sandbox_messages WHERE direction = 'template' "
                       "AND body::text LIKE '%TM_new_member%'")[0][0],
        "outbox": dict(q("SELECT state, count(*) FROM outbox GROUP BY state")),
    }
    print("CHECK " + json.dumps(out, default=list))
"""


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=float, default=8.0, help="follows per second (default 8)")
    p.add_argument("--duration", type=float, default=100.0, help="seconds of pushes (default 100)")
    p.add_argument("--outage", type=float, default=20.0, help="seconds each dependency is down (default 20)")
    p.add_argument("--workers", type=int, default=2, help="RQ worker processes (default 2)")
    p.add_argument("--port", type=int, default=8111)
    p.add_argument("--api-port", type=int, default=8112, help="the failing WeChat API proxy")
    p.add_argument("--pg-cluster", default="fxfaults")
    p.add_argument("--pg-port", type=int, default=5441)
    p.add_argument("--redis-port", type=int, default=6391)
    p.add_argument("--drain", type=float, default=240.0, help="most seconds to wait for the queue to drain")
    args = p.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="fenxiao-faults-"))
    token, aes_key = new_account()
    config = work / "config.toml"
    write_config(config, args, token, aes_key)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FENXIAO_")}
    env.update(FENXIAO_CONFIG=str(config), PYTHONUNBUFFERED="1")
    procs: list[subprocess.Popen] = []
    RESULTS.mkdir(parents=True, exist_ok=True)
    server_log = open(RESULTS / "faults-server.log", "wb")
    try:
        ensure_pg_cluster(args.pg_cluster, args.pg_port)
        recreate_database(args.pg_port)
        stop_redis(args.redis_port)
        start_redis(args.redis_port, work)
        subprocess.run([str(BIN / "flask"), "--app", "wsgi", "db", "upgrade"], cwd=ROOT, env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seeded = subprocess.run([sys.executable, str(ROOT / "bench" / "webhook.py"), "_seed", "5"], cwd=ROOT, env=env,
                                capture_output=True, text=True, check=True).stdout
        scenes = [row["scene"] for row in json.loads(seeded.split("SEED ", 1)[1])]
        # The distributors follow the account on the sandbox platform too, so it accepts their messages.
        subprocess.run([str(BIN / "python"), "-c", SANDBOX_PEOPLE_SQL], cwd=ROOT, env=env, check=True)
        api = FaultyWeChatAPI(args.api_port, args.port)
        if not port_free(args.port):
            raise SystemExit(f"port {args.port} is in use")
        web = subprocess.Popen([str(BIN / "gunicorn"), "-w", "2", "-k", "gthread", "--threads", "8", "-b",
                                f"127.0.0.1:{args.port}", "-c", "gunicorn.conf.py", "--access-logfile", "/dev/null",
                                "wsgi:app"], cwd=ROOT, env=env, stdout=server_log, stderr=subprocess.STDOUT,
                               start_new_session=True)
        procs.append(web)
        wait_http(args.port, "/healthz", 30, web)
        for _ in range(args.workers):
            procs.append(subprocess.Popen([str(BIN / "flask"), "--app", "wsgi", "worker"], cwd=ROOT, env=env,
                                          stdout=server_log, stderr=subprocess.STDOUT, start_new_session=True))

        pusher = Pusher(args.port, token, aes_key, scenes, args.rate, threads=48)
        start = time.time() + 1.0
        o = args.outage
        schedule = [  # (at, what)
            (10.0, "redis down", lambda: stop_redis(args.redis_port)),
            (10.0 + o, "redis back, empty", lambda: start_redis(args.redis_port, work)),
            (20.0 + o, "postgresql down", lambda: pg(args.pg_cluster, "stop")),
            (20.0 + 2 * o, "postgresql back", lambda: pg(args.pg_cluster, "start")),
            (30.0 + 2 * o, "wechat api failing", lambda: setattr(api, "failing", True)),
            (30.0 + 3 * o, "wechat api back", lambda: setattr(api, "failing", False)),
        ]
        timeline = []

        def faults() -> None:
            for at, what, act in schedule:
                time.sleep(max(0.0, start + at - time.time()))
                act()
                timeline.append((round(time.time() - start, 1), what))
                log(f"t={time.time() - start:5.1f}s  {what}")

        injector = threading.Thread(target=faults)
        injector.start()
        log(f"pushing {args.rate:.0f} follows/s for {args.duration:.0f} s")
        pusher.run(start, max(args.duration, 40.0 + 3 * o))
        injector.join()

        log("waiting for the queue to drain")
        deadline, left = time.time() + args.drain, -1
        while time.time() < deadline:
            left = pending_work(env)
            if left == 0:
                break
            time.sleep(3)
        check = subprocess.run([str(BIN / "python"), "-c", CHECK_SQL], cwd=ROOT, env=env, capture_output=True,
                               text=True)
        found = json.loads(check.stdout.split("CHECK ", 1)[1])
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        stop_redis(args.redis_port)
        shutil.rmtree(work, ignore_errors=True)

    results = pusher.results
    acked = [r for r in results if r["acked"]]
    refused = [r for r in results if not r["acked"]]
    users, touches = found["users"], found["touches"]
    lost = [r for r in acked if users.get(r["openid"], [None])[0] != r["scene"]]
    dup_touches = sum(1 for n in touches.values() if n > 1)
    notices, distinct_notices = found["notices"]
    verdict = {
        "pushes": len(results), "acked": len(acked), "refused (WeChat gave up)": len(refused),
        "refused but recorded": sum(1 for r in refused if r["openid"] in users),
        "retried then acked": sum(1 for r in acked if len(r["attempts"]) > 1),
        "lost": len(lost), "duplicate touches": dup_touches,
        "new-member notices": notices, "duplicate notices": notices - distinct_notices,
        "template messages": found["templates"],
        "followers without notice": len(users) - notices,
        "duplicate template messages": max(0, found["templates"] - notices),
        "template messages missing": max(0, notices - found["templates"]),
        "outbox": found["outbox"], "outbox pending at the end": left,
        "wechat api calls refused by the fault": api.refused,
    }
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (RESULTS / f"faults-{stamp}.json").write_text(json.dumps(
        {"verdict": verdict, "timeline": timeline, "refused": refused, "lost": lost}, ensure_ascii=False, indent=1))
    log("timeline: " + "; ".join(f"{at}s {what}" for at, what in timeline))
    for key, value in verdict.items():
        print(f"  {key:32} {value}")
    refused_when = Counter(int(r["sent_at"] // 5 * 5) for r in refused)
    if refused_when:
        print("  refused pushes by send time (s):", dict(sorted(refused_when.items())))
    ok = (not lost and not dup_touches and notices == distinct_notices and found["templates"] == notices
          and notices == len(users) and left == 0)
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
