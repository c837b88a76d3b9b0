#!/usr/bin/env python
"""Memory benchmark: a gunicorn worker under load stays under 150 MB
resident; the RQ worker draining 100 000 jobs does not grow (issue 13, 5).

    .venv/bin/python bench/memory.py                 # both parts: 3 min of load, then 100 000 jobs
    .venv/bin/python bench/memory.py --part gunicorn # or --part rq
    .venv/bin/python bench/memory.py --small         # 40 s of load, 5 000 jobs: a quick check

gunicorn: the product started as production starts it (``-c gunicorn.conf.py
-k gthread``), a small shop seeded through the handlers and the CLI
(distributors applying and approved, the try-out catalogue, a staff owner),
then a closed-loop mix from separate load-generator processes: WeChat pushes
(follows with a QR scene and text commands, signed and AES-encrypted as
WeChat does), H5 pages of customers who signed in through the (sandbox)
OAuth page, distributors' centre / team / income pages, the leaderboard, and
admin list pages behind a real staff login. Every worker's RSS is sampled
each second: start, peak, end, and the slope over the last half.

rq: a backlog of new-member notifications made through the handlers (each an
outbox row whose job sends a template message to the sandbox WeChat API,
served over HTTP by the product's gunicorn), then ``flask --app wsgi worker``
as production runs it (one long-lived process, RQ's SimpleWorker: no fork
per job). Its RSS after 1 %, 10 %, 50 % and 100 % of the jobs, the drain
rate, and whether every message was sent exactly once.

Sizes are in MiB (2**20 bytes, as ps and top count), labelled MB.

**Drops and recreates the database** (default fx_mem_bench; a name without
"bench" is refused) **and FLUSHDBs the Redis database** (default db 11; db 0
is refused) at the start of each part.
"""
from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from datetime import datetime, timezone
from http.cookies import SimpleCookie
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qsl, urlencode, urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from benchdb import recreate_database  # noqa: E402  (refuses a name without "bench")
from webhook import (APPID, BIN, RESULTS, flush_redis, new_account, port_free, stop, subprocess_env,  # noqa: E402
                     wait_http, worker_pids, write_config)

ACCOUNT = "gh_fxmembench001"
WORKER_TARGET_MB = 150.0
RQ_GROWTH_LIMIT_MB = 5.0
STAFF_NAME, STAFF_PASSWORD = "membench", "memory bench password 1"
WECHAT_UA = "Mozilla/5.0 (iPhone) AppleWebKit/605.1.15 Mobile/15E148 MicroMessenger/8.0.44 NetType/WIFI"


def log(msg: str) -> None:
    print(f"[memory {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------- resident memory
def rss_mb(pid: int) -> float | None:
    """Resident set size in MB (psutil when installed, else /proc)."""
    try:
        import psutil
    except ImportError:
        psutil = None
    try:
        if psutil is not None:
            return psutil.Process(pid).memory_info().rss / 2**20
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except (OSError, Exception):  # noqa: BLE001 - the process is gone
        return None
    return None


def slope_mb_per_min(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MB) points, in MB per minute."""
    if len(points) < 3:
        return 0.0
    n = len(points)
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    var = sum((t - mx) ** 2 for t, _ in points)
    return 0.0 if var == 0 else 60 * sum((t - mx) * (v - my) for t, v in points) / var


def summarise(series: list[tuple[float, float]]) -> dict:
    """Start, peak, end of one process's samples, and how it moved over the
    last half: least-squares slope and the rise of the last half's fit."""
    last_half = series[len(series) // 2:]
    slope = slope_mb_per_min(last_half)
    span_min = (last_half[-1][0] - last_half[0][0]) / 60 if len(last_half) > 1 else 0.0
    rise = slope * span_min
    return {"samples": len(series), "start_mb": round(series[0][1], 1), "peak_mb": round(max(v for _, v in series), 1),
            "end_mb": round(series[-1][1], 1), "last_half_slope_mb_per_min": round(slope, 2),
            "last_half_rise_mb": round(rise, 1), "keeps_growing": rise > 2.0}


# ---------------------------------------------------------------- setup shared by both parts
def prepare(args, port: int, tmp: Path) -> tuple[Path, dict[str, str], dict]:
    """Config TOML (as bench/webhook.py writes it, plus the template ids),
    the database made again by the migrations, Redis flushed."""
    token, aes_key = new_account()
    wechat = {"token": token, "aes_key": aes_key}
    config = tmp / "config.toml"
    write_config(config, SimpleNamespace(product_port=port, database_url=args.database_url,
                                         redis_url=args.redis_url, log_level=args.log_level, mode="safe"),
                 wechat["token"], wechat["aes_key"])
    with config.open("a") as f:
        f.write('\n[templates]\nnew_member = "TM_new_member"\n')
    env = subprocess_env(config)
    log(f"database {args.database_url}: drop and recreate; Redis {args.redis_url}: flush")
    recreate_database(args.database_url)
    flush_redis(args.redis_url, False)
    subprocess.run([str(BIN / "flask"), "--app", "wsgi", "db", "upgrade"], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return config, env, wechat


def start_gunicorn(port: int, workers: int, threads: int, env: dict[str, str], log_path: Path) -> subprocess.Popen:
    """As the systemd unit in README.md starts it."""
    if not port_free(port):
        raise SystemExit(f"port {port} is in use; pick another with --port")
    cmd = [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "-b", f"127.0.0.1:{port}", "-w", str(workers),
           "-k", "gthread", "--threads", str(threads), "--backlog", "2048", "wsgi:app"]
    log("$ " + " ".join(cmd))
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=open(log_path, "ab"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    wait_http(port, "/healthz", 30, proc)
    return proc


def child_script(name: str, *argv: str, env: dict[str, str]) -> str:
    """Run ``memory.py _<name> …`` in its own process (the app's own
    create_app and app context); returns the JSON line it prints."""
    out = subprocess.run([sys.executable, __file__, f"_{name}", *argv], cwd=ROOT, env=env, capture_output=True,
                         text=True)
    line = next((l for l in out.stdout.splitlines() if l.startswith("RESULT ")), None)
    if out.returncode or line is None:
        raise SystemExit(f"{name} failed:\n{out.stderr[-3000:]}")
    return json.loads(line[7:])


def flask_cli(*argv: str, env: dict[str, str], stdin: str | None = None) -> str:
    return subprocess.run([str(BIN / "flask"), "--app", "wsgi", *argv], cwd=ROOT, env=env, check=True,
                          input=stdin, capture_output=True, text=True).stdout


# ---------------------------------------------------------------- seeding (child processes)
def seed_shop(n_distributors: int) -> dict:
    """Distributors as people become them (a sandbox WeChat user follows,
    applies, is approved), so the load generator can sign in as them
    through the sandbox OAuth page."""
    from app import create_app
    from handlers import applications, audit, outbox, users
    from models import FirstContact, Product, db
    from sandbox.people import create_user
    from sqlalchemy import select

    app = create_app()
    rows = []
    with app.app_context():
        for i in range(n_distributors):
            person = create_user(f"分销商{i:02d}")
            person.subscribed = True
            outbox.commit()
            user = users.record_contact(person.openid, FirstContact.SUBSCRIBE).user
            user.nickname = person.nickname
            outbox.commit()
            application = applications.apply_for_distributor(user, "张三", f"138{i:08d}", "内存压测用分销商")
            outbox.commit()
            distributor = applications.approve_application(application.id, actor=audit.SYSTEM)
            outbox.commit()
            rows.append({"openid": person.openid, "scene": distributor.unit.scene, "slug": distributor.unit.slug})
        products = list(db.session.scalars(select(Product.id).where(Product.on_sale.is_(True))))
        db.engine.dispose()
    return {"distributors": rows, "products": products}


def seed_jobs(n_jobs: int, n_people: int, real_every: int) -> dict:
    """A backlog of new-member notifications made by the handlers: each an
    outbox row whose job sends a template message, handed to RQ on commit
    (a commit per 1 000, as a burst of follows would hand them over).
    With ``real_every`` > 1 only every n-th is still to send: the others are
    marked sent, so their job takes the product's already-sent path (a job
    delivered twice): the same RQ and outbox code, no HTTP call."""
    from app import create_app
    from app.extensions import db, queue
    from handlers import notifications, outbox
    from sqlalchemy import func, select, update

    from benchdb import sandbox_followers
    from models import Notification, NotificationKind, OutboxRow

    app = create_app()
    with app.app_context():
        people = sandbox_followers(n_people)
        db.session.query(OutboxRow).delete()  # the profile fetches are not part of the backlog
        db.session.commit()
        queue.queue.empty()
        print("READY", flush=True)
        for i in range(n_jobs):
            user = people[i % n_people]
            notifications.notify(user, NotificationKind.NEW_MEMBER, f"membench:{i}", "新成员加入",
                                 f"粉丝{i} 加入了你的团队", "team", {"thing1": f"粉丝{i}"})
            if (i + 1) % 1000 == 0 or i + 1 == n_jobs:
                if real_every > 1:  # in the same transaction: no job may run before its mark
                    db.session.execute(update(Notification).where(Notification.sent_at.is_(None),
                                                                  Notification.id % real_every != 0)
                                       .values(sent_at=func.now()))
                outbox.commit()
        to_send = db.session.scalar(select(func.count()).select_from(Notification)
                                    .where(Notification.id % real_every == 0))
        queued = queue.queue.count
        db.engine.dispose()
    return {"queued": queued, "to_send": to_send}


def rows_by_state(url: str) -> tuple[int, int]:
    """Outbox rows done, and not done (the jobs' own record of progress)."""
    import psycopg
    from sqlalchemy.engine import make_url

    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn) as conn:
        done, not_done = conn.execute("SELECT count(*) FILTER (WHERE state = 'done'), "
                                      "count(*) FILTER (WHERE state <> 'done') FROM outbox").fetchone()
    return done, not_done


def drain_outcome() -> dict:
    from sqlalchemy import func, select

    from app import create_app
    from app.extensions import db, queue
    from models import Notification, OutboxRow, SandboxMessage

    app = create_app()
    with app.app_context():
        count = lambda q: db.session.scalar(select(func.count()).select_from(q))  # noqa: E731
        out = {"done": count(select(OutboxRow).where(OutboxRow.state == "done").subquery()),
               "not_done": count(select(OutboxRow).where(OutboxRow.state != "done").subquery()),
               "sent": count(select(SandboxMessage).where(SandboxMessage.direction == "template").subquery()),
               "unsent": count(select(Notification).where(Notification.sent_at.is_(None)).subquery()),
               "left_in_redis": queue.queue.count}
        db.engine.dispose()
    return out


# ---------------------------------------------------------------- the load generator
class Browser:
    """One keep-alive connection with a cookie jar, following redirects on
    the same host, as a phone's WeChat browser or a staff member's would."""

    def __init__(self, port: int, user_agent: str = WECHAT_UA, timeout: float = 15.0) -> None:
        self.port, self.user_agent, self.timeout = port, user_agent, timeout
        self.cookies: dict[str, str] = {}
        self.location = ""  # of the last answer
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)

    def close(self) -> None:
        self.conn.close()

    def _once(self, method: str, path: str, body: bytes | None, headers: dict[str, str]):
        for attempt in (1, 2):
            try:
                self.conn.request(method, path, body, headers)
                res = self.conn.getresponse()
                return res, res.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.conn.close()  # an idle keep-alive connection the server closed
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
                if attempt == 2:
                    raise

    def request(self, method: str, path: str, form: dict | None = None, body: bytes | None = None,
                content_type: str | None = None, follow: bool = True) -> tuple[int, str, bytes]:
        """Returns (final status, final path, body)."""
        for _ in range(6):
            headers = {"User-Agent": self.user_agent}
            if self.cookies:
                headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
            if form is not None:
                body, content_type = urlencode(form).encode(), "application/x-www-form-urlencoded"
            if content_type:
                headers["Content-Type"] = content_type
            res, data = self._once(method, path, body, headers)
            for raw in res.headers.get_all("Set-Cookie") or []:
                for name, morsel in SimpleCookie(raw).items():
                    if morsel["max-age"] == "0" or (morsel["expires"] and "1970" in morsel["expires"]):
                        self.cookies.pop(name, None)
                    else:
                        self.cookies[name] = morsel.value
            self.location = res.headers.get("Location", "")
            if not follow or res.status not in (301, 302, 303, 307, 308):
                return res.status, path, data
            parts = urlsplit(self.location)
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            method, form, body, content_type = "GET", None, None, None
        return 599, path, b"too many redirects"


def h5_sign_in(browser: Browser, next_path: str, openid: str | None = None, nickname: str | None = None) -> bool:
    """The H5 OAuth round: our login → the (sandbox) WeChat authorize page,
    where this person picks who they are (a seeded distributor) or makes a
    new WeChat user → our callback → the page asked for."""
    status, _, _ = browser.request("GET", "/h5/auth/login?" + urlencode({"next": next_path}), follow=False)
    if status != 302:
        return False
    authorize = urlsplit(browser.location.split("#", 1)[0])
    fields = dict(parse_qsl(authorize.query))
    fields.update({"openid": openid} if openid else {"nickname": nickname or "顾客"})
    status, landed, _ = browser.request("POST", authorize.path, form=fields)
    return status == 200 and landed.startswith(next_path.split("?", 1)[0])


def admin_sign_in(browser: Browser) -> bool:
    status, _, page = browser.request("GET", "/admin/login")
    found = re.search(rb'name="csrf_token"[^>]*value="([^"]+)"', page)
    if status != 200 or not found:
        return False
    status, landed, _ = browser.request("POST", "/admin/login", form={
        "csrf_token": found.group(1).decode(), "name": STAFF_NAME, "password": STAFF_PASSWORD, "code": ""})
    return status == 200 and not landed.startswith("/admin/login")


CUSTOMER_PAGES = ("/h5/shop", "/h5/p/{product}", "/h5/u/{slug}", "/h5/", "/h5/leaderboard")
DISTRIBUTOR_PAGES = ("/h5/center", "/h5/team", "/h5/income", "/h5/leaderboard", "/h5/leaderboard?period=all")
ADMIN_PAGES = ("/admin/applications", "/admin/withdrawals", "/admin/orders", "/admin/orders?status=paid",
               "/admin/distributors", "/admin/")
MIX = (("wechat", 0.35), ("customer", 0.30), ("distributor", 0.15), ("admin", 0.20))
NEW_CUSTOMER_EVERY = 40  # a thread's customer leaves after this many pages; a new one signs in


def client_process(spec: dict, out_q) -> None:
    try:
        out_q.put(_client(spec))
    except BaseException:  # noqa: BLE001 - report, never hang the parent
        out_q.put({"crash": traceback.format_exc()})


def _client(spec: dict) -> dict:
    from sandbox.push import WeChatServer

    shop = spec["shop"]
    counts, errors, latency = Counter(), Counter(), {kind: [] for kind, _ in MIX}

    def run_thread(t: int) -> None:
        rng = random.Random(f"{spec['proc_id']}:{t}")
        wechat = WeChatServer(webhook_url="", token=spec["token"], appid=APPID, encoding_aes_key=spec["aes_key"],
                              account=ACCOUNT)
        hook = Browser(spec["port"])
        customer, customer_pages = None, 0
        me = shop["distributors"][(spec["proc_id"] * 31 + t) % len(shop["distributors"])]
        distributor = Browser(spec["port"])
        staff = Browser(spec["port"], user_agent="Mozilla/5.0 (Windows NT 10.0) Chrome/120.0")
        # Staff and distributors sign in first, during the warm-up (a staff sign-in's argon2 check is
        # measured on its own, after the load); customers keep arriving through OAuth all along.
        signed_in = {"distributor": h5_sign_in(distributor, "/h5/center", openid=me["openid"]),
                     "admin": admin_sign_in(staff)}
        followers, seq = [], 0
        kinds, weights = zip(*MIX)
        while time.time() < spec["end_at"]:
            kind = rng.choices(kinds, weights)[0]
            started = time.time()
            try:
                if kind == "wechat":
                    if followers and rng.random() < 0.2:
                        seq += 1  # a MsgId of its own: forked load generators share sandbox.push's counter
                        fields = wechat.text(rng.choice(followers), rng.choice(("帮助", "商城", "申请分销")),
                                             msg_id=(spec["proc_id"] * 100 + t + 1) * 10**9 + seq)
                    else:
                        seq += 1
                        openid = f"oMEMBENCH{spec['proc_id']:02d}{t:02d}{seq:08d}"
                        fields = wechat.subscribe(openid, rng.choice(shop["distributors"])["scene"])
                        followers.append(openid)
                    params, body = wechat.signed_request(fields, safe=True)
                    status, _, _ = hook.request("POST", "/wx?" + urlencode(params), body=body,
                                                content_type="text/xml")
                    ok = status == 200
                elif kind == "customer":
                    if customer is None or customer_pages >= NEW_CUSTOMER_EVERY:
                        if customer is not None:
                            customer.close()
                        customer, customer_pages = Browser(spec["port"]), 0
                        unit = rng.choice(shop["distributors"])["slug"]
                        if not h5_sign_in(customer, f"/h5/u/{unit}", nickname=f"顾客{spec['proc_id']}{t}{seq}"):
                            errors["customer sign-in"] += 1
                    page = rng.choice(CUSTOMER_PAGES).format(product=rng.choice(shop["products"]),
                                                             slug=rng.choice(shop["distributors"])["slug"])
                    status, _, _ = customer.request("GET", page)
                    customer_pages += 1
                    ok = status == 200
                elif kind == "distributor":
                    if not signed_in["distributor"]:
                        signed_in["distributor"] = h5_sign_in(distributor, "/h5/center", openid=me["openid"])
                        if not signed_in["distributor"]:
                            errors["distributor sign-in"] += 1
                    page = rng.choice(DISTRIBUTOR_PAGES)
                    status, landed, _ = distributor.request("GET", page)
                    ok = status == 200 and landed == page
                else:
                    if not signed_in["admin"]:
                        signed_in["admin"] = admin_sign_in(staff)
                        if not signed_in["admin"]:
                            errors["admin sign-in"] += 1
                    page = rng.choice(ADMIN_PAGES)
                    status, landed, _ = staff.request("GET", page)
                    ok = status == 200 and landed == page
            except OSError as exc:
                ok, status = False, type(exc).__name__
                for b in (hook, distributor, staff, customer):
                    if b is not None:
                        b.close()
            latency[kind].append(time.time() - started)
            counts[kind] += 1
            if not ok:
                errors[f"{kind} {status}"] += 1

    threads = [threading.Thread(target=run_thread, args=(t,)) for t in range(spec["threads"])]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return {"counts": counts, "errors": errors, "latency": latency}


def pct(values: list[float], q: float) -> float | None:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))] if values else None


# ---------------------------------------------------------------- part 1: gunicorn
def run_gunicorn(args, stamp: str) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="fx-membench-"))
    server = None
    try:
        config, env, wechat = prepare(args, args.port, tmp)
        flask_cli("products", "seed", env=env)
        flask_cli("staff", "create", STAFF_NAME, "--role", "owner", "--password-stdin", env=env,
                  stdin=STAFF_PASSWORD + "\n")
        shop = child_script("seed_shop", str(args.distributors), env=env)
        log(f"seeded {len(shop['distributors'])} distributors, {len(shop['products'])} products, staff "
            f"{STAFF_NAME!r}")
        log_path = RESULTS / f"memory-gunicorn-{stamp}.log"
        server = start_gunicorn(args.port, args.workers, args.threads, env, log_path)
        workers = worker_pids(server.pid)
        log(f"gunicorn master {server.pid}, workers {workers}; RSS at rest: "
            + ", ".join(f"{p}: {rss_mb(p):.1f} MB" for p in workers))
        at_rest = {p: rss_mb(p) for p in workers}

        ctx = mp.get_context("fork")
        q = ctx.Queue()
        end_at = time.time() + args.warmup + args.duration
        procs = []
        for i in range(args.client_procs):
            spec = {"proc_id": i, "threads": args.client_threads, "port": args.port, "end_at": end_at,
                    "shop": shop, "token": wechat["token"], "aes_key": wechat["aes_key"]}
            p = ctx.Process(target=client_process, args=(spec, q), daemon=True)
            p.start()
            procs.append(p)
        log(f"load: {args.client_procs} processes × {args.client_threads} connections, closed loop, "
            f"{args.warmup:.0f} s warm-up + {args.duration:.0f} s; RSS sampled every {args.gunicorn_sample_every:g} s")
        samples: dict[int, list[tuple[float, float]]] = {}
        started = time.time()
        load_at_start = os.getloadavg()
        while time.time() < end_at:
            now = time.time() - started
            for pid in worker_pids(server.pid):
                value = rss_mb(pid)
                if value is not None:
                    samples.setdefault(pid, []).append((now, value))
            time.sleep(max(0.0, args.gunicorn_sample_every - (time.time() - started - now)))
        parts = [q.get(timeout=120) for _ in procs]
        for p in procs:
            p.join(10)
        crashed = [p["crash"] for p in parts if "crash" in p]
        if crashed:
            raise SystemExit("a load-generator process crashed:\n" + crashed[0])
        counts = sum((Counter(p["counts"]) for p in parts), Counter())
        errors = sum((Counter(p["errors"]) for p in parts), Counter())
        latency = {k: [x for p in parts for x in p["latency"][k]] for k, _ in MIX}
        replaced = sorted(set(samples) - set(workers))
        per_worker = {}
        for pid, series in samples.items():
            measured = [(t, v) for t, v in series if t >= args.warmup] or series
            per_worker[str(pid)] = {"at_rest_mb": round(at_rest.get(pid) or 0, 1), **summarise(measured),
                                    "peak_incl_warmup_mb": round(max(v for _, v in series), 1),
                                    "series": [(round(t, 1), round(v, 1)) for t, v in series[::4]]}
        burst = staff_sign_in_burst(args, server.pid)
        total = sum(counts.values())
        result = {
            "part": "gunicorn", "workers": args.workers, "threads": args.threads,
            "clients": args.client_procs * args.client_threads, "duration_s": args.duration,
            "requests": dict(counts), "requests_per_s": round(total / (args.warmup + args.duration), 1),
            "errors": dict(errors), "error_count": sum(errors.values()),
            "p50_ms": {k: round(pct(v, .5) * 1000, 1) for k, v in latency.items() if v},
            "p99_ms": {k: round(pct(v, .99) * 1000, 1) for k, v in latency.items() if v},
            "per_worker": per_worker, "replaced_workers": replaced,
            "master_mb": round(rss_mb(server.pid) or 0, 1), "staff_sign_in_burst": burst,
            "load_avg_start": [round(x, 2) for x in load_at_start],
            "load_avg_end": [round(x, 2) for x in os.getloadavg()],
        }
        peak = max(w["peak_mb"] for w in per_worker.values())
        result["verdict"] = {
            "peak_under_150_mb": peak < WORKER_TARGET_MB,
            "no_worker_keeps_growing": not any(w["keeps_growing"] for w in per_worker.values()),
            "errors_under_1_percent": result["error_count"] <= 0.01 * max(total, 1),
            "staff_sign_in_burst_under_150_mb": burst["peak_mb"] < WORKER_TARGET_MB,
        }
        return result
    finally:
        stop(server)
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


def staff_sign_in_burst(args, master_pid: int) -> dict:
    """As many staff sign-ins at once as the workers have threads (a shift
    starting, or someone guessing passwords), RSS sampled every 20 ms: each
    password check is an argon2 hash, which holds its memory_cost while it runs."""
    pids = worker_pids(master_pid)
    before = {p: rss_mb(p) for p in pids}
    peak = dict(before)
    n = args.workers * args.threads
    oks, done = [], threading.Event()

    def sign_in() -> None:
        browser = Browser(args.port, user_agent="Mozilla/5.0 (Windows NT 10.0) Chrome/120.0")
        oks.append(admin_sign_in(browser))
        browser.close()

    threads = [threading.Thread(target=sign_in) for _ in range(n)]
    for th in threads:
        th.start()
    threading.Thread(target=lambda: ([th.join() for th in threads], done.set()), daemon=True).start()
    while not done.wait(0.02):
        for p in pids:
            peak[p] = max(peak[p] or 0, rss_mb(p) or 0)
    log(f"{n} staff sign-ins at once: {sum(oks)} signed in; worker RSS peak "
        + ", ".join(f"{p}: {before[p]:.1f} → {peak[p]:.1f} MB" for p in pids))
    return {"sign_ins": n, "signed_in": sum(oks), "before_mb": {str(p): round(before[p], 1) for p in pids},
            "peak_by_worker_mb": {str(p): round(peak[p], 1) for p in pids}, "peak_mb": round(max(peak.values()), 1)}


def print_gunicorn(r: dict) -> None:
    print(f"\ngunicorn -c gunicorn.conf.py -w {r['workers']} -k gthread --threads {r['threads']}: "
          f"{sum(r['requests'].values())} requests in {r['duration_s']:.0f} s (+ warm-up) from {r['clients']} "
          f"connections, {r['requests_per_s']} req/s, {r['error_count']} errors; mix "
          + ", ".join(f"{k} {v}" for k, v in r["requests"].items()))
    print("p50 / p99 ms: " + ", ".join(f"{k} {r['p50_ms'][k]} / {r['p99_ms'][k]}" for k in r["p50_ms"]))
    if r["errors"]:
        print("errors: " + ", ".join(f"{k}: {v}" for k, v in r["errors"].items()))
    print(f"\n{'worker':>8} {'at rest':>8} {'start':>8} {'peak':>8} {'end':>8} {'last-half slope':>16} {'rise':>6}")
    for pid, w in r["per_worker"].items():
        print(f"{pid:>8} {w['at_rest_mb']:>8.1f} {w['start_mb']:>8.1f} {w['peak_mb']:>8.1f} {w['end_mb']:>8.1f} "
              f"{w['last_half_slope_mb_per_min']:>10.2f} MB/min {w['last_half_rise_mb']:>5.1f}"
              f"{'  keeps growing' if w['keeps_growing'] else ''}")
    print(f"master {r['master_mb']} MB; load average {r['load_avg_start']} → {r['load_avg_end']}")
    b = r["staff_sign_in_burst"]
    print(f"{b['sign_ins']} staff sign-ins at once (argon2 password checks): worker peak "
          + ", ".join(f"{p}: {b['before_mb'][p]} → {v} MB" for p, v in b["peak_by_worker_mb"].items()))
    v = r["verdict"]
    print(f"peak worker RSS < {WORKER_TARGET_MB:.0f} MB: {'PASS' if v['peak_under_150_mb'] else 'FAIL'}; "
          f"no worker keeps growing: {'PASS' if v['no_worker_keeps_growing'] else 'FAIL'}; "
          f"errors < 1 %: {'PASS' if v['errors_under_1_percent'] else 'FAIL'}; staff sign-in burst < "
          f"{WORKER_TARGET_MB:.0f} MB: {'PASS' if v['staff_sign_in_burst_under_150_mb'] else 'FAIL'}")


# ---------------------------------------------------------------- part 2: the RQ worker
def run_rq(args, stamp: str) -> dict:

    tmp = Path(tempfile.mkdtemp(prefix="fx-membench-"))
    server = worker = None
    try:
        config, env, _ = prepare(args, args.rq_port, tmp)
        server = start_gunicorn(args.rq_port, 2, 4, env, RESULTS / f"memory-sandbox-{stamp}.log")
        log(f"seeding {args.jobs} template-message jobs for {args.people} followers through the handlers"
            + ("; the worker starts once the followers exist and drains while the rest is queued"
               if args.drain_while_seeding else ""))
        t0 = time.time()
        seeder = subprocess.Popen([sys.executable, __file__, "_seed_jobs", str(args.jobs), str(args.people),
                                   str(args.real_every)], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
        seeded = None
        for line in seeder.stdout:
            if line.startswith("RESULT "):
                seeded = json.loads(line[7:])
                break
            if line.startswith("READY") and args.drain_while_seeding:
                break
        if seeded is not None:
            seeder.wait()
            log(f"{args.jobs} jobs queued in {time.time() - t0:.0f} s; {seeded['to_send']} of them send a "
                f"template message over HTTP, the others find it already sent")
        elif seeder.poll() not in (None, 0):
            raise SystemExit("seeding the jobs failed")
        total = args.jobs
        milestones = sorted({max(1, total // 100), max(1, total // 10), max(1, total // 2), total})
        worker_log = RESULTS / f"memory-rq-worker-{stamp}.log"
        worker = subprocess.Popen([str(BIN / "flask"), "--app", "wsgi", "worker"], cwd=ROOT, env=env,
                                  stdout=open(worker_log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)
        log(f"$ flask --app wsgi worker  (pid {worker.pid}); milestones {milestones}")
        started, samples, at, children = time.time(), [], {}, set()
        load_at_start = os.getloadavg()
        last_progress, last_done = time.time(), -1
        while True:
            if worker.poll() is not None:
                raise SystemExit(f"the worker exited with {worker.returncode}; see {worker_log}")
            if seeded is None and seeder.poll() is not None:
                seeded = json.loads(next(l for l in seeder.stdout.read().splitlines() if l.startswith("RESULT "))[7:])
                log(f"all {total} jobs queued after {time.time() - t0:.0f} s; {seeded['to_send']} of them send "
                    f"a template message over HTTP, the others find it already sent")
            done, not_done = rows_by_state(args.database_url)
            now = time.time() - started
            value = rss_mb(worker.pid)
            kids = worker_pids(worker.pid)
            children.update(kids)
            samples.append((now, done, value, sum(rss_mb(k) or 0 for k in kids)))
            for m in milestones:
                if m not in at and done >= m:
                    at[m] = {"seconds": round(now, 1), "rss_mb": round(value, 1)}
                    log(f"{done} jobs done after {now:.0f} s: worker RSS {value:.1f} MB")
            if done != last_done:
                last_progress, last_done = time.time(), done
            if seeded is not None and done >= total and not_done == 0:
                break
            if args.max_minutes and now > args.max_minutes * 60:
                log(f"--max-minutes {args.max_minutes:g} reached with {done} of {total} jobs done: reporting so far")
                at.setdefault(done, {"seconds": round(now, 1), "rss_mb": round(value, 1)})
                break
            if time.time() - last_progress > 180:
                # A job that finds its row locked (by the relay) skips it; the relay hands the row over
                # again once its lease (60 s) is over, so a quiet minute at the end is normal.
                raise SystemExit(f"no job finished for 3 minutes ({done} of {total}, {not_done} rows not done); "
                                 f"see {worker_log}")
            time.sleep(args.sample_every)
        time.sleep(3)  # the last job's commit, then a quiet worker
        end_rss = rss_mb(worker.pid)
        stop(worker)
        if seeded is None:
            seeder.kill()
            seeded = {"to_send": None}
        outcome = child_script("drain_outcome", env=env)
        first_m, last_m = milestones[0], max(at)
        rate = ((last_m - first_m) / (at[last_m]["seconds"] - at[first_m]["seconds"])
                if first_m in at and at[last_m]["seconds"] > at[first_m]["seconds"] else None)
        rss_series = [(t, v) for t, d, v, _ in samples if v is not None and d > 0]  # start-up (imports) left out
        growth = at[last_m]["rss_mb"] - at[milestones[1]]["rss_mb"] if milestones[1] in at else None
        result = {
            "part": "rq", "jobs": total, "job": "handlers.outbox.run → wxbot.jobs.send_template",
            "sending_over_http": seeded["to_send"],
            "already_sent": None if seeded["to_send"] is None else total - seeded["to_send"],
            "worker": "flask --app wsgi worker (SimpleWorker: no fork per job; relay thread beside it)",
            "rss_at": {str(m): at[m] for m in sorted(at)}, "finished": last_m >= total,
            "rss_after_drain_mb": round(end_rss or 0, 1), "peak_mb": round(max(v for _, v in rss_series), 1),
            "child_processes_seen": len(children), "jobs_per_s": round(rate, 1) if rate else None,
            "drain_seconds": at[last_m]["seconds"],
            "growth_10pc_to_100pc_mb": None if growth is None else round(growth, 1),
            "last_half_slope_mb_per_min": round(slope_mb_per_min(rss_series[len(rss_series) // 2:]), 3),
            "outcome": outcome, "load_avg_start": [round(x, 2) for x in load_at_start],
            "load_avg_end": [round(x, 2) for x in os.getloadavg()],
            "samples": [(round(t, 1), d, round(v or 0, 1)) for t, d, v, _ in samples[:: max(1, len(samples) // 400)]],
        }
        result["verdict"] = {
            "growth_under_5_mb": growth is not None and growth < RQ_GROWTH_LIMIT_MB and last_m >= total,
            "sent_exactly_once": outcome["not_done"] == 0 and outcome["sent"] == seeded["to_send"]
            and outcome["unsent"] == 0,
        }
        return result
    finally:
        stop(worker)
        stop(server)
        if "seeder" in locals() and seeder.poll() is None:
            seeder.kill()
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


def print_rq(r: dict) -> None:
    print(f"\nRQ: {r['jobs']} jobs, {r['job']} ({r['sending_over_http']} sending a template message to the sandbox "
          f"over HTTP, {r['already_sent']} finding theirs already sent); {r['worker']}")
    print(f"{'jobs done':>10} {'seconds':>8} {'worker RSS MB':>14}")
    for m, v in r["rss_at"].items():
        print(f"{m:>10} {v['seconds']:>8.0f} {v['rss_mb']:>14.1f}")
    print(f"peak {r['peak_mb']} MB, after the drain {r['rss_after_drain_mb']} MB; child processes seen: "
          f"{r['child_processes_seen']}; drain {r['jobs_per_s']} jobs/s; load average {r['load_avg_start']} → "
          f"{r['load_avg_end']}")
    o = r["outcome"]
    print(f"outbox rows done {o['done']}, not done {o['not_done']}; templates sent {o['sent']}, notifications "
          f"unsent {o['unsent']}")
    v = r["verdict"]
    print(f"growth from {list(r['rss_at'])[1]} to {list(r['rss_at'])[-1]} of {r['jobs']} jobs: "
          f"{r['growth_10pc_to_100pc_mb']} MB "
          f"(< {RQ_GROWTH_LIMIT_MB:.0f} MB): {'PASS' if v['growth_under_5_mb'] else 'FAIL'}; "
          f"each message sent once: {'PASS' if v['sent_exactly_once'] else 'FAIL'}")


# ---------------------------------------------------------------- main
def parse_args(argv: list[str]):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--part", choices=("both", "gunicorn", "rq"), default="both")
    p.add_argument("--small", action="store_true", help="a quick run: 40 s of load, 5 000 jobs")
    p.add_argument("--database-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/fx_mem_bench",
                   help="dropped and recreated (its name must contain 'bench')")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/11", help="FLUSHDB'd (not db 0)")
    p.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                   help="the product's log level (INFO is what production runs)")
    g = p.add_argument_group("gunicorn part")
    g.add_argument("--duration", type=float, default=180, help="measured seconds of load")
    g.add_argument("--warmup", type=float, default=15,
                   help="seconds of load before measuring (staff and distributors sign in then)")
    g.add_argument("-w", "--workers", type=int, default=2)
    g.add_argument("-t", "--threads", type=int, default=4)
    g.add_argument("--client-procs", type=int, default=2, help="load-generator processes")
    g.add_argument("--client-threads", type=int, default=4, help="connections per load-generator process")
    g.add_argument("--distributors", type=int, default=30)
    g.add_argument("--port", type=int, default=8131)
    g.add_argument("--gunicorn-sample-every", type=float, default=0.25, help="seconds between RSS samples")
    r = p.add_argument_group("rq part")
    r.add_argument("--jobs", type=int, default=100_000)
    r.add_argument("--people", type=int, default=200, help="followers the messages go to")
    r.add_argument("--rq-port", type=int, default=8132, help="gunicorn serving the sandbox WeChat API")
    r.add_argument("--sample-every", type=float, default=1.0, help="seconds between samples")
    r.add_argument("--max-minutes", type=float, default=0,
                   help="stop draining after this long and report the milestones reached (0: drain it all)")
    r.add_argument("--drain-while-seeding", action="store_true",
                   help="start the worker as soon as the followers exist (saves the seeding time; the first "
                        "minutes' drain rate then shares the CPU with the seeding)")
    r.add_argument("--real-every", type=int, default=1,
                   help="only every n-th job sends over HTTP; the others find their message already sent "
                        "(a cheaper job through the same worker code: 10 makes a 100 000-job run ~3x shorter)")
    args = p.parse_args(argv)
    if args.small:
        args.duration, args.warmup, args.jobs, args.distributors = 40, 10, 5000, 10
    return args


def main(argv: list[str]) -> int:
    if argv[:1] and argv[0].startswith("_"):
        fn = {"_seed_shop": seed_shop, "_seed_jobs": seed_jobs, "_drain_outcome": drain_outcome}[argv[0]]
        print("RESULT " + json.dumps(fn(*map(int, argv[1:]))), flush=True)
        return 0
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the servers and the worker on the way out
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    report = {"when": stamp, "command": " ".join(["bench/memory.py", *argv]), "cpus": os.cpu_count()}
    if args.part in ("both", "gunicorn"):
        report["gunicorn"] = run_gunicorn(args, stamp)
        print_gunicorn(report["gunicorn"])
    if args.part in ("both", "rq"):
        report["rq"] = run_rq(args, stamp)
        print_rq(report["rq"])
    out = RESULTS / f"memory-{stamp}.json"
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False, default=str))
    print(f"\nresults: {out.relative_to(ROOT)}")
    verdicts = [v for part in ("gunicorn", "rq") if part in report for v in report[part]["verdict"].values()]
    return 0 if all(verdicts) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
