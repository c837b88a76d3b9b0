#!/usr/bin/env python
"""Webhook benchmark: the product's /wx under gunicorn against the floor of
the same stack (bench/bare_app.py: signature, wechatpy parse, reply — nothing
else), same workers and threads. See bench/README.md.

    .venv/bin/python bench/webhook.py            # defaults: under 2 minutes

Phases, each with a short warm-up that is not measured:
  1. closed loop at concurrency C against the bare endpoint → its max events/s
  2. closed loop at concurrency C against the product      → its max events/s
  3. open loop (constant arrival rate) at half the product's max rate, against
     the product and then the bare endpoint → p50 / p99 latency, measured from
     the moment each request was due (no coordinated omission)
Then it checks in the database that every subscribe-with-scene sent to the
product made exactly one user attributed to the intended distributor.

Every push is built, signed (and in safe mode AES-encrypted) by
sandbox.push.WeChatServer, exactly as WeChat's servers do.
"""
from __future__ import annotations

import argparse
import base64
import http.client
import json
import multiprocessing as mp
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sandbox.push import WeChatServer  # noqa: E402  (the repo's own WeChat side)

TEXT_COMMANDS = ("帮助", "商城", "申请分销")
APPID = "wxbench00000000a1"
ACCOUNT = "gh_fxbench00001"
RESULTS = ROOT / "bench" / "results"
BIN = Path(sys.executable).parent
PRODUCT_CPU_MS, POSTGRES_CPU_MS = 1.5, 0.6  # per subscribe-with-scene event, at saturation (issue 13)


# ---------------------------------------------------------------- helpers
def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def pct(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(round(q * (len(sorted_values) - 1))))]


def ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:.1f}"


def subprocess_env(config_path: Path) -> dict[str, str]:
    # Only the bench's TOML configures the product: no stray FENXIAO_* overrides.
    env = {k: v for k, v in os.environ.items() if not k.startswith("FENXIAO_")}
    env["FENXIAO_CONFIG"] = str(config_path)
    env["PYTHONUNBUFFERED"] = "1"
    return env


# ---------------------------------------------------------------- setup
def recreate_database(url: str, force: bool) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    target = make_url(url)
    name = target.database
    if "bench" not in (name or "") and not force:
        raise SystemExit(f"refusing to drop database {name!r}: its name has no 'bench' in it "
                         "(pass --force-drop if you mean it)")
    admin = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        # Fall back to the client tools (e.g. no access to the postgres database).
        log(f"dropping/creating via SQL failed ({type(exc).__name__}); trying dropdb/createdb")
        host = ["-h", target.host or "127.0.0.1", "-p", str(target.port or 5432), "-U", target.username or "postgres"]
        subprocess.run(["dropdb", *host, "--if-exists", "--force", name], check=False)
        subprocess.run(["createdb", *host, name], check=True)
    finally:
        admin.dispose()


def flush_redis(url: str, force: bool) -> None:
    import redis

    conn = redis.Redis.from_url(url)
    db_index = conn.connection_pool.connection_kwargs.get("db", 0)
    if db_index == 0 and not force:
        raise SystemExit("refusing to FLUSHDB Redis database 0; use another index (default /9) or --force-drop")
    conn.flushdb()
    conn.close()


def new_account() -> tuple[str, str]:
    """A token and an EncodingAESKey (43 characters of base64) for one run's account."""
    return secrets.token_hex(8), base64.b64encode(secrets.token_bytes(32)).decode()[:43]


def write_config(path: Path, args, token: str, aes_key: str) -> None:
    path.write_text(f"""# written by bench/webhook.py; removed at the end of the run
[app]
secret_key = "{secrets.token_hex(16)}"
base_url = "http://127.0.0.1:{args.product_port}"
database_url = "{args.database_url}"
redis_url = "{args.redis_url}"
log_level = "{args.log_level}"

[wechat]
appid = "{APPID}"
secret = "{secrets.token_hex(16)}"
token = "{token}"
encoding_aes_key = "{aes_key if args.mode == 'safe' else ''}"
sandbox = true

[distribution]
review = "manual"

[queue]
name = "fenxiao"
""")


def bench_account(port: int, database_url: str, redis_url: str, log_level: str = "INFO",
                  mode: str = "safe") -> tuple[Path, WeChatServer]:
    """A new account for a bench that drives a product of its own: its config
    TOML in a temporary file (the caller removes it), and the WeChat side
    that signs and encrypts its pushes."""
    token, aes_key = new_account()
    config = Path(tempfile.mkstemp(suffix=".toml")[1])
    write_config(config, SimpleNamespace(product_port=port, database_url=database_url, redis_url=redis_url,
                                         log_level=log_level, mode=mode), token, aes_key)
    return config, WeChatServer(webhook_url="", token=token, appid=APPID, encoding_aes_key=aes_key, account=ACCOUNT)


def signed_follow(server: WeChatServer, openid: str, scene: str, safe: bool = True) -> tuple[str, bytes]:
    """A follow through a QR code as WeChat posts it: the path with its signed query, and the body."""
    params, body = server.signed_request(server.subscribe(openid, scene), safe=safe)
    return "/wx?" + urlencode(params), body


def seed(n: int) -> None:
    """Runs in its own process (``webhook.py _seed N``, FENXIAO_CONFIG set):
    N distributors made through the product's handlers, like a person would
    (contact → application → approval), committed. Prints their scenes."""
    from app import create_app
    from handlers import applications, audit, outbox, users
    from models import FirstContact, db

    flask_app = create_app()
    rows = []
    with flask_app.app_context():
        for i in range(n):
            user = users.record_contact(f"oBENCHDIST{i:04d}{secrets.token_hex(7)}", FirstContact.SUBSCRIBE).user
            user.nickname = f"分销商{i:02d}"
            outbox.commit()
            application = applications.apply_for_distributor(user, "张三", "13800138000", "压测用分销商")
            outbox.commit()
            distributor = applications.approve_application(application.id, actor=audit.SYSTEM)
            outbox.commit()
            rows.append({"user_id": user.id, "distributor_id": distributor.id, "scene": distributor.unit.scene,
                         "unit": distributor.unit.name})
        db.engine.dispose()
    print("SEED " + json.dumps(rows), flush=True)


def wait_http(port: int, path: str, timeout: float, proc: subprocess.Popen) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server on port {port} exited with {proc.returncode}; see its log")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            status = conn.getresponse().status
            conn.close()
            if status < 500:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"server on port {port} did not answer {path} within {timeout:.0f} s")


def port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def gunicorn(app_spec: str, port: int, args, env: dict[str, str], log_path: Path) -> subprocess.Popen:
    if not port_free(port):
        raise SystemExit(f"port {port} is in use; pick another with --product-port / --bare-port")
    cmd = [str(BIN / "gunicorn"), "-w", str(args.workers), "-k", "gthread", "--threads", str(args.threads),
           "-b", f"127.0.0.1:{port}", "--backlog", "2048", app_spec]
    log("$ " + " ".join(cmd))
    out = open(log_path, "ab")
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def worker_pids(master_pid: int) -> list[int]:
    try:
        out = subprocess.run(["pgrep", "-P", str(master_pid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]
    except FileNotFoundError:
        return []


def cpu_snapshot(groups: dict[str, set[int]], database: str) -> dict[str, float] | None:
    """CPU seconds used so far (user + system) by each group of processes:
    the given pid sets (with their children), PostgreSQL (its background
    processes and the backends serving ``database``) and Redis; the rest is
    "other" (a busy machine shows there)."""
    if not os.path.isdir("/proc"):
        return None
    hz = os.sysconf("SC_CLK_TCK")
    stats = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                raw = f.read()
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        fields = raw[raw.rfind(")") + 2:].split()
        own, reaped = int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14])
        stats[int(pid)] = (int(fields[1]), own / hz, reaped / hz, cmd)
    out = {name: 0.0 for name in (*groups, "postgres", "redis", "other")}
    for pid, (ppid, cpu, reaped, cmd) in stats.items():
        name = next((g for g, pids in groups.items() if pid in pids or ppid in pids), None)
        if name is not None and pid in groups[name]:
            cpu += reaped  # children that already exited (RQ's work horses, replaced workers)
        if name is None:
            if cmd.startswith("postgres"):
                # "postgres: 15/main: user db host(port) state" for a client backend
                name = "postgres" if "(" not in cmd or f" {database} " in cmd else "other"
                if "(" not in cmd:
                    cpu += reaped  # the postmaster: backends that already exited
            else:
                name = "redis" if "redis-server" in cmd else "other"
        out[name] += cpu
    return out


# ---------------------------------------------------------------- load generator
def client_process(spec: dict, out_q) -> None:
    """One load-generating process: ``threads`` keep-alive connections.
    closed loop: each thread sends its next push as soon as the last is answered.
    open loop: pushes are due at a fixed rate; a thread takes the next due
    slot, waits for it, sends; latency counts from the due time."""
    try:
        out_q.put(_client(spec))
    except BaseException:  # noqa: BLE001 — report, never hang the parent
        out_q.put({"crash": traceback.format_exc()})


def _client(spec: dict) -> dict:
    scenes: list[str] = spec["scenes"]
    known: list[str] = list(spec["known"])  # subscribed openids (text senders)
    proc_id, tag = spec["proc_id"], spec["tag"]
    measure_from, end_at = spec["measure_from"], spec["end_at"]
    open_loop = spec["mode"] == "open"
    interval = 1.0 / spec["rate"] if open_loop else 0.0
    slot_lock = threading.Lock()
    slot = [0]
    msg_ids = iter(range(spec["msg_id_base"], spec["msg_id_base"] + 10**9))
    results = []  # per thread

    def run_thread(t: int) -> None:
        rng = random.Random(f"{spec['seed']}:{proc_id}:{t}")
        server = WeChatServer(webhook_url="", token=spec["token"], appid=APPID,
                              encoding_aes_key=spec["aes_key"], account=ACCOUNT)
        conn = http.client.HTTPConnection("127.0.0.1", spec["port"], timeout=spec["timeout"])
        lat, service, subs, errors = [], [], [], Counter()
        counts = Counter()
        seq = 0
        max_lag = 0.0
        while True:
            if open_loop:
                with slot_lock:
                    i = slot[0]
                    slot[0] += 1
                due = spec["start_at"] + spec["offset"] + i * interval
                if due >= end_at:
                    break
                wait = due - time.time()
                if wait > 0:
                    time.sleep(wait)
                else:
                    max_lag = max(max_lag, -wait)
            else:
                due = time.time()
                if due >= end_at:
                    break
            if known and rng.random() < spec["text_ratio"]:
                kind, openid = "text", rng.choice(known)
                fields = server.text(openid, rng.choice(TEXT_COMMANDS), msg_id=next(msg_ids))
                scene_index = None
            else:
                kind = "subscribe"
                seq += 1
                openid = f"oBENCH{tag}{proc_id:02d}{t:02d}{seq:07d}"
                scene_index = rng.randrange(len(scenes))
                fields = server.subscribe(openid, scenes[scene_index])
            params, body = server.signed_request(fields, safe=spec["safe"])
            url = "/wx?" + urlencode(params)
            started = time.time()
            status, reason = None, ""
            for attempt in (1, 2):
                try:
                    conn.request("POST", url, body, {"Content-Type": "text/xml"})
                    res = conn.getresponse()
                    data = res.read()
                    status = res.status
                    if status != 200:
                        reason = data[:120].decode(errors="replace")
                    break
                except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                    # An idle keep-alive connection the server closed: reconnect once.
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", spec["port"], timeout=spec["timeout"])
                    counts["reconnects"] += 1
                    reason = type(exc).__name__
                except OSError as exc:
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", spec["port"], timeout=spec["timeout"])
                    reason = type(exc).__name__
                    break
            finished = time.time()
            if status != 200:
                errors[f"{status or 'no answer'} {reason}".strip()] += 1
            if kind == "subscribe":
                subs.append((openid, scene_index, status))
                if status == 200:
                    known.append(openid)
            if started >= measure_from and finished <= end_at:
                counts["measured"] += 1
                counts[kind] += 1
                lat.append(finished - due)
                service.append(finished - started)
        conn.close()
        results.append({"lat": lat, "service": service, "subs": subs, "errors": errors, "counts": counts,
                        "max_lag": max_lag})

    threads = [threading.Thread(target=run_thread, args=(t,)) for t in range(spec["threads"])]
    # Wait for the common start so all processes begin together.
    time.sleep(max(0.0, spec["start_at"] - time.time()))
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    merged = {"lat": [], "service": [], "subs": [], "errors": Counter(), "counts": Counter(), "max_lag": 0.0,
              "known_sample": known[-2000:]}
    for r in results:
        merged["lat"] += r["lat"]
        merged["service"] += r["service"]
        merged["subs"] += r["subs"]
        merged["errors"] += r["errors"]
        merged["counts"] += r["counts"]
        merged["max_lag"] = max(merged["max_lag"], r["max_lag"])
    return merged


class Load:
    """Runs one phase over several processes and folds their results."""

    phase_no = 0

    def __init__(self, args, token: str, aes_key: str, scenes: list[str], servers: dict[str, int]) -> None:
        self.args, self.token, self.aes_key, self.scenes = args, token, aes_key, scenes
        self.servers = servers  # name → gunicorn master pid, for the CPU accounting
        from sqlalchemy.engine import make_url

        self.database = make_url(args.database_url).database
        self.known: dict[int, list[str]] = {}  # per port: subscribed openids, for text commands
        self.sent: list[tuple[str, int, int | None]] = []  # product subscribes: openid, scene index, status
        self.ctx = mp.get_context("fork")

    def run(self, name: str, port: int, mode: str, duration: float, warmup: float, concurrency: int,
            rate: float = 0.0, on_start=None) -> dict:
        Load.phase_no += 1
        procs_n = max(1, min(self.args.client_procs, concurrency))
        per_proc = [concurrency // procs_n + (1 if i < concurrency % procs_n else 0) for i in range(procs_n)]
        start_at = time.time() + 1.0 + 0.15 * procs_n
        measure_from = start_at + warmup
        end_at = measure_from + duration
        known = self.known.get(port, [])
        q = self.ctx.Queue()
        procs = []
        for i in range(procs_n):
            spec = {
                "proc_id": i, "tag": f"{Load.phase_no:02d}{'P' if port == self.args.product_port else 'B'}",
                "port": port, "mode": mode, "threads": per_proc[i], "rate": rate / procs_n if rate else 0.0,
                "offset": i * (1.0 / rate) if rate else 0.0, "start_at": start_at, "measure_from": measure_from,
                "end_at": end_at, "scenes": self.scenes, "known": known[i::procs_n][-1000:],
                "text_ratio": self.args.text_ratio, "token": self.token, "aes_key": self.aes_key,
                "safe": self.args.mode == "safe", "timeout": 10.0, "seed": self.args.seed,
                "msg_id_base": (Load.phase_no * 100 + i) * 10**9,
            }
            p = self.ctx.Process(target=client_process, args=(spec, q), daemon=True)
            p.start()
            procs.append(p)
        label = f"{mode} loop, {'C=' + str(concurrency) if mode == 'closed' else f'{rate:.0f}/s'}"
        log(f"{name}: {label}, {procs_n} client processes, {warmup:.0f} s warm-up + {duration:.0f} s measured")
        if on_start:
            threading.Timer(max(0.0, measure_from - time.time()), on_start).start()
        groups = {n: {pid} for n, pid in self.servers.items()}
        groups["load generator"] = {p.pid for p in procs}
        cpu: list = []
        timers = [threading.Timer(max(0.0, at - time.time()), lambda: cpu.append(cpu_snapshot(groups, self.database)))
                  for at in (measure_from, end_at)]
        for timer in timers:
            timer.start()
        parts = [q.get(timeout=end_at - time.time() + 60) for _ in procs]
        for timer in timers:
            timer.join()
        for p in procs:
            p.join(10)
        crashed = [p["crash"] for p in parts if "crash" in p]
        if crashed:
            raise SystemExit("a client process crashed:\n" + crashed[0])
        lat = sorted(x for p in parts for x in p["lat"])
        service = sorted(x for p in parts for x in p["service"])
        counts = sum((p["counts"] for p in parts), Counter())
        errors = sum((p["errors"] for p in parts), Counter())
        subs = [s for p in parts for s in p["subs"]]
        if port == self.args.product_port:
            self.sent += subs
        self.known[port] = [o for p in parts for o in p["known_sample"]]
        result = {
            "endpoint": name, "mode": mode, "concurrency": concurrency if mode == "closed" else None,
            "target_rate": rate or None, "duration_s": duration,
            "events_per_s": counts["measured"] / duration,
            "measured": counts["measured"], "subscribe": counts["subscribe"], "text": counts["text"],
            "p50_ms": None if not lat else pct(lat, 0.50) * 1000, "p90_ms": None if not lat else pct(lat, 0.90) * 1000,
            "p99_ms": None if not lat else pct(lat, 0.99) * 1000, "max_ms": None if not lat else lat[-1] * 1000,
            "service_p50_ms": None if not service else pct(service, 0.50) * 1000,
            "service_p99_ms": None if not service else pct(service, 0.99) * 1000,
            "errors": dict(errors), "error_count": sum(errors.values()),
            "reconnects": counts["reconnects"], "client_max_lag_ms": max(p["max_lag"] for p in parts) * 1000,
            "subscribes_sent_incl_warmup": len(subs),
        }
        if len(cpu) == 2 and all(cpu) and counts["measured"]:
            used = {k: cpu[1][k] - cpu[0][k] for k in cpu[0]}
            result["cpu_cores_used"] = {k: round(v / duration, 2) for k, v in used.items() if v > 0}
            result["cpu_ms_per_event"] = {k: round(v * 1000 / counts["measured"], 2) for k, v in used.items() if v > 0}
        log(f"  → {result['events_per_s']:.1f} events/s, p50 {ms(pct(lat, .5))} ms, p99 {ms(pct(lat, .99))} ms, "
            f"errors {result['error_count']}")
        if "cpu_ms_per_event" in result:
            log("    CPU ms/event: " + ", ".join(f"{k} {v}" for k, v in result["cpu_ms_per_event"].items()))
        return result


# ---------------------------------------------------------------- checks
def smoke(args, token: str, aes_key: str, seeded: list[dict], load: Load) -> dict:
    """A few pushes with their replies read and decrypted: the product welcomes
    the new user with the distributor's shop; the bare endpoint answers."""
    product = WeChatServer(f"http://127.0.0.1:{args.product_port}/wx", token, APPID, aes_key, ACCOUNT)
    bare = WeChatServer(f"http://127.0.0.1:{args.bare_port}/wx", token, APPID, aes_key, ACCOUNT)
    safe = args.mode == "safe"
    problems = []
    for i in range(5):
        d = i % len(seeded)
        openid = f"oBENCHsmoke{i:03d}{secrets.token_hex(6)}"
        got = product.push(product.subscribe(openid, seeded[d]["scene"]), safe=safe)
        load.sent.append((openid, d, got.status))
        content = str((got.reply or {}).get("Content", ""))
        if got.status != 200 or seeded[d]["unit"] not in content:
            problems.append(f"product subscribe {openid}: HTTP {got.status}, reply {content[:80]!r}")
        got = product.push(product.text(openid, "帮助"), safe=safe)
        if got.status != 200 or "帮助" not in str((got.reply or {}).get("Content", "")):
            problems.append(f"product text 帮助: HTTP {got.status}")
        if args.skip_bare:
            continue
        got = bare.push(bare.subscribe(openid, seeded[d]["scene"]), safe=safe)
        if got.status != 200 or not got.reply:
            problems.append(f"bare subscribe: HTTP {got.status}")
    return {"ok": not problems, "problems": problems}


def verify(args, seeded: list[dict], sent: list[tuple[str, int, int | None]]) -> dict:
    """Every subscribe-with-scene sent to the product: exactly one user, with
    referrer_id = that distributor's user id, exactly one bound touch."""
    from sqlalchemy import create_engine, text

    engine = create_engine(args.database_url)
    with engine.connect() as conn:
        users = conn.execute(text(
            "SELECT openid, referrer_id, source FROM users WHERE openid LIKE 'oBENCH%' "
            "AND openid NOT LIKE 'oBENCHDIST%'")).all()
        dup_openids = conn.execute(text(
            "SELECT count(*) FROM (SELECT openid FROM users GROUP BY openid HAVING count(*) > 1) d")).scalar()
        touches = conn.execute(text(
            "SELECT u.openid, count(*), sum(CASE WHEN t.outcome = 'bound' THEN 1 ELSE 0 END) "
            "FROM referral_touches t JOIN users u ON u.id = t.user_id WHERE u.openid LIKE 'oBENCH%' "
            "GROUP BY u.openid")).all()
        per_referrer = dict(conn.execute(text(
            "SELECT referrer_id, count(*) FROM users WHERE referrer_id IS NOT NULL "
            "AND openid LIKE 'oBENCH%' GROUP BY referrer_id")).all())
    engine.dispose()

    by_openid = {}
    for openid, referrer_id, source in users:
        by_openid.setdefault(openid, []).append((referrer_id, source))
    touch_by = {o: (n, bound) for o, n, bound in touches}
    expected_openids = Counter(o for o, _, _ in sent)
    lost, wrong, dup, multi_touch = [], [], [], []
    expected_per = Counter()
    answered_not_200 = sum(1 for _, _, s in sent if s != 200)
    for openid, d, status in sent:
        want = seeded[d]["user_id"]
        expected_per[want] += 1
        rows = by_openid.get(openid, [])
        if not rows:
            lost.append((openid, status))
        elif len(rows) > 1:
            dup.append(openid)
        elif rows[0][0] != want or rows[0][1] != "qr":
            wrong.append((openid, want, rows[0]))
        n, bound = touch_by.get(openid, (0, 0))
        if rows and (n != 1 or bound != 1):
            multi_touch.append((openid, n, bound))
    strangers = [o for o in by_openid if o not in expected_openids]
    per_mismatch = {uid: (expected_per[uid], per_referrer.get(uid, 0)) for uid in
                    set(expected_per) | set(per_referrer) if expected_per[uid] != per_referrer.get(uid, 0)}
    reused = [o for o, n in expected_openids.items() if n > 1]
    ok = not (lost or wrong or dup or multi_touch or strangers or per_mismatch or reused or dup_openids)
    return {
        "pass": ok, "subscribes_sent": len(sent), "users_found": len(by_openid),
        "distributors": len(seeded), "distributors_with_customers": len(per_referrer),
        "lost": len(lost), "wrong_referrer": len(wrong), "duplicate_users": len(dup) + (dup_openids or 0),
        "touches_not_exactly_one_bound": len(multi_touch), "unexpected_users": len(strangers),
        "per_distributor_mismatch": len(per_mismatch), "answered_not_200": answered_not_200,
        "examples": {"lost": lost[:5], "wrong": [list(map(str, w)) for w in wrong[:5]],
                     "touches": multi_touch[:5], "per_distributor": list(per_mismatch.items())[:5]},
    }


def rq_counts(redis_url: str) -> dict[str, int] | None:
    """Background jobs on the product's queue: still queued, finished, failed."""
    try:
        import redis

        conn = redis.Redis.from_url(redis_url)
        counts = {"queued": conn.llen("rq:queue:fenxiao"), "finished": conn.zcard("rq:finished:fenxiao"),
                  "failed": conn.zcard("rq:failed:fenxiao")}
        conn.close()
        return counts
    except Exception:  # noqa: BLE001
        return None


# ---------------------------------------------------------------- main
def parse_args(argv: list[str]):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--duration", type=float, default=20, help="seconds measured per open-loop (latency) phase")
    p.add_argument("--max-duration", type=float, default=20, help="seconds measured per closed-loop (max) phase")
    p.add_argument("--warmup", type=float, default=3, help="unmeasured seconds before each phase")
    p.add_argument("-c", "--concurrency", type=int, default=16, help="connections in the closed-loop phases")
    p.add_argument("-w", "--workers", type=int, default=2, help="gunicorn workers (both endpoints)")
    p.add_argument("-t", "--threads", type=int, default=4, help="gunicorn gthread threads per worker (both)")
    p.add_argument("--client-procs", type=int, default=2, help="load-generator processes")
    p.add_argument("--open-threads", type=int, default=16,
                   help="connections in the open-loop phases (enough that a slow answer never delays the next push)")
    p.add_argument("--rate-fraction", type=float, default=0.5, help="open-loop rate as a fraction of the product's max")
    p.add_argument("--rate", type=float, default=0, help="open-loop rate in events/s (overrides --rate-fraction)")
    p.add_argument("--mode", choices=("safe", "plain"), default="safe",
                   help="safe: AES-encrypted pushes and replies (WeChatCrypto); plain: plaintext mode")
    p.add_argument("--text-ratio", type=float, default=0.2, help="share of pushes that are text commands")
    p.add_argument("--distributors", type=int, default=50, help="distributors seeded through the handlers")
    p.add_argument("--database-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/fx_bench",
                   help="dropped and recreated at the start (its name must contain 'bench')")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/9", help="FLUSHDB'd at the start (not db 0)")
    p.add_argument("--force-drop", action="store_true", help="allow dropping a database / Redis db not named for the bench")
    p.add_argument("--product-port", type=int, default=8101)
    p.add_argument("--bare-port", type=int, default=8102)
    p.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                   help="the product's [app] log_level (INFO is what production runs)")
    p.add_argument("--rq-worker", action="store_true",
                   help="also run one RQ worker (flask --app wsgi worker) during the measured run; "
                        "by default none runs and the profile-fetch jobs stay queued")
    p.add_argument("--profile", action="store_true",
                   help="py-spy record (--gil: where the CPU goes) one product worker during the product's "
                        "closed-loop phase (needs py-spy on PATH or in the venv); writes "
                        "bench/results/profile-*.txt, read it with bench/profile_summary.py")
    p.add_argument("--skip-bare", action="store_true", help="measure the product only")
    p.add_argument("--seed", default="fenxiao", help="random seed for the choice of distributors and commands")
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    if argv[:1] == ["_seed"]:
        seed(int(argv[1]))
        return 0
    args = parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    tmp = Path(tempfile.mkdtemp(prefix="fx-bench-"))
    config_path = tmp / "config.toml"
    token, aes_key = new_account()
    write_config(config_path, args, token, aes_key)
    env = subprocess_env(config_path)
    logs = {"product": RESULTS / f"product-{stamp}.log", "bare": RESULTS / f"bare-{stamp}.log"}
    procs: dict[str, subprocess.Popen] = {}
    t_begin = time.time()
    try:
        log(f"database {args.database_url}: drop and recreate; Redis {args.redis_url}: flush")
        recreate_database(args.database_url, args.force_drop)
        flush_redis(args.redis_url, args.force_drop)
        subprocess.run([str(BIN / "flask"), "--app", "wsgi", "db", "upgrade"], cwd=ROOT, env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        log("migrated; seeding distributors through handlers")
        out = subprocess.run([sys.executable, __file__, "_seed", str(args.distributors)], cwd=ROOT, env=env,
                             capture_output=True, text=True)
        line = next((l for l in out.stdout.splitlines() if l.startswith("SEED ")), None)
        if out.returncode or not line:
            raise SystemExit(f"seeding failed:\n{out.stderr[-3000:]}")
        seeded = json.loads(line[5:])
        log(f"seeded {len(seeded)} distributors (approved, each with a unit and a QR scene)")
        procs["product"] = gunicorn("wsgi:app", args.product_port, args, env, logs["product"])
        if not args.skip_bare:
            procs["bare"] = gunicorn("bench.bare_app:app", args.bare_port, args, env, logs["bare"])
        wait_http(args.product_port, "/healthz", 30, procs["product"])
        if not args.skip_bare:
            wait_http(args.bare_port, "/", 30, procs["bare"])
        if args.rq_worker:
            procs["rq"] = subprocess.Popen([str(BIN / "flask"), "--app", "wsgi", "worker"], cwd=ROOT, env=env,
                                           stdout=open(tmp / "rq.log", "ab"), stderr=subprocess.STDOUT,
                                           start_new_session=True)

        load = Load(args, token, aes_key, [d["scene"] for d in seeded],
                    {label: procs[name].pid for name, label in (("product", "gunicorn product"),
                     ("bare", "gunicorn bare"), ("rq", "rq worker")) if name in procs})
        smoke_result = smoke(args, token, aes_key, seeded, load)
        if not smoke_result["ok"]:
            log("smoke check FAILED: " + "; ".join(smoke_result["problems"][:3]))
        else:
            log("smoke check: product welcomes with the distributor's shop; bare endpoint answers")

        phases = []
        if not args.skip_bare:
            phases.append(load.run("bare", args.bare_port, "closed", args.max_duration, args.warmup, args.concurrency))
        profile_file = None
        on_start = None
        if args.profile:
            spy = shutil.which("py-spy") or (str(BIN / "py-spy") if (BIN / "py-spy").exists() else None)
            pids = worker_pids(procs["product"].pid)
            if spy and pids:
                profile_file = RESULTS / f"profile-{stamp}.txt"

                def on_start():
                    subprocess.Popen([spy, "record", "--pid", str(pids[0]), "--duration",
                                      str(int(args.max_duration)), "--format", "raw", "--nonblocking", "--gil",
                                      "--rate", "400",
                                      "--output", str(profile_file)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
            else:
                log("--profile: py-spy not found (or no worker pid); not profiling")
        product_max = load.run("product", args.product_port, "closed", args.max_duration, args.warmup,
                               args.concurrency, on_start=on_start)
        phases.append(product_max)
        rate = args.rate or max(1.0, product_max["events_per_s"] * args.rate_fraction)
        half = load.run("product", args.product_port, "open", args.duration, args.warmup, args.open_threads, rate)
        phases.append(half)
        if not args.skip_bare:
            phases.append(load.run("bare", args.bare_port, "open", args.duration, args.warmup, args.open_threads, rate))

        log("verifying attribution in the database")
        attribution = verify(args, seeded, load.sent)
        jobs = rq_counts(args.redis_url)
        bare_max = next((p for p in phases if p["endpoint"] == "bare" and p["mode"] == "closed"), None)
        ratio = product_max["events_per_s"] / bare_max["events_per_s"] if bare_max else None
        cpu = product_max.get("cpu_ms_per_event", {})
        # Issue 13's targets, at saturation: the product's own CPU and
        # PostgreSQL's per event. They replaced issue 4's "60 % of bare", which
        # no product that stores the event can reach on 2 shared cores; the
        # ratio is still reported.
        targets = {
            "product_cpu_le_1.5ms": _at_most(cpu.get("gunicorn product"), PRODUCT_CPU_MS),
            "postgres_cpu_le_0.6ms": _at_most(cpu.get("postgres"), POSTGRES_CPU_MS),
            "p99_at_half_rate_lt_50ms": half["p99_ms"] is not None and half["p99_ms"] < 50
            and half["error_count"] == 0,
            "attribution_exact": attribution["pass"],
        }
        report = {
            "when": stamp, "command": " ".join([Path(sys.executable).name, "bench/webhook.py", *argv]),
            "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
            "config": {k: getattr(args, k) for k in ("workers", "threads", "concurrency", "client_procs",
                                                       "open_threads", "mode", "text_ratio", "distributors",
                                                       "database_url", "redis_url", "log_level", "rq_worker")},
            "rq_worker": "running during the measured run" if args.rq_worker
            else "not running (background jobs only queued)",
            "jobs": jobs, "smoke": smoke_result, "phases": phases, "ratio": ratio,
            "open_rate": rate, "attribution": attribution, "targets": targets,
            "profile": str(profile_file) if profile_file else None,
            "wall_seconds": round(time.time() - t_begin, 1),
        }
        out_file = RESULTS / f"webhook-{stamp}.json"
        out_file.write_text(json.dumps(report, indent=2, ensure_ascii=False, default=str))
        print_report(report, out_file)
        return 0 if all(v is not False for v in targets.values()) and smoke_result["ok"] else 1
    finally:
        for name in ("rq", "bare", "product"):
            stop(procs.get(name))
        shutil.rmtree(tmp, ignore_errors=True)


def _at_most(measured: float | None, target: float) -> bool | None:
    return None if measured is None else measured <= target  # not measured: no verdict, not a pass


def print_report(r: dict, out_file: Path) -> None:
    c = r["config"]
    print()
    print(f"Fenxiao webhook benchmark — {r['machine']['cpus']} CPUs, gunicorn -w {c['workers']} -k gthread "
          f"--threads {c['threads']}, {c['mode']} mode, {int(c['text_ratio'] * 100)} % text commands, "
          f"{c['distributors']} distributors")
    jobs = r["jobs"] or {}
    print(f"RQ worker: {r['rq_worker']}; background jobs at the end: {jobs.get('queued')} queued, "
          f"{jobs.get('finished')} finished, {jobs.get('failed')} failed")
    print()
    print(f"{'endpoint':<9} {'phase':<22} {'events/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}"
          f"   CPU ms/event: {'app':>5} {'pg':>5} {'redis':>5} {'client':>6} {'rq':>5}")
    noisy = []
    for p in r["phases"]:
        phase = f"max, closed C={p['concurrency']}" if p["mode"] == "closed" else f"open @ {p['target_rate']:.0f}/s"
        cpu = p.get("cpu_ms_per_event", {})
        print(f"{p['endpoint']:<9} {phase:<22} {p['events_per_s']:>9.1f} {p['p50_ms']:>8.1f} {p['p99_ms']:>8.1f} "
              f"{p['error_count']:>7}                 {cpu.get('gunicorn ' + p['endpoint'], 0):>5.2f} "
              f"{cpu.get('postgres', 0):>5.2f} {cpu.get('redis', 0):>5.2f} {cpu.get('load generator', 0):>6.2f} "
              f"{cpu.get('rq worker', 0):>5.2f}")
        if p.get("cpu_cores_used", {}).get("other", 0) > 0.15:
            noisy.append(f"{p['endpoint']} {p['mode']}: {p['cpu_cores_used']['other']:.2f} cores")
    if noisy:
        print("WARNING: the machine was not quiet — other processes used CPU during " + "; ".join(noisy))
    print()
    t = r["targets"]
    verdict = lambda ok: "n/a" if ok is None else ("PASS" if ok else "FAIL")  # noqa: E731
    product_max = next(p for p in r["phases"] if p["endpoint"] == "product" and p["mode"] == "closed")
    cpu = product_max.get("cpu_ms_per_event", {})
    print(f"product CPU per event at saturation: {cpu.get('gunicorn product', float('nan')):.2f} ms  "
          f"(target ≤ {PRODUCT_CPU_MS} ms)   {verdict(t['product_cpu_le_1.5ms'])}")
    print(f"PostgreSQL CPU per event at saturation: {cpu.get('postgres', float('nan')):.2f} ms  "
          f"(target ≤ {POSTGRES_CPU_MS} ms)   {verdict(t['postgres_cpu_le_0.6ms'])}")
    if r["ratio"] is not None:
        print(f"throughput product/bare: {r['ratio'] * 100:.0f} %  (no target: about 30 % expected on 2 cores, "
              f"which PostgreSQL, Redis and the load generator share)")
    half = next(p for p in r["phases"] if p["endpoint"] == "product" and p["mode"] == "open")
    print(f"product p99 at {half['target_rate']:.0f}/s (half max): {half['p99_ms']:.1f} ms  (target < 50 ms)   "
          f"{verdict(t['p99_at_half_rate_lt_50ms'])}")
    a = r["attribution"]
    print(f"attribution: {a['subscribes_sent']} subscribes sent, {a['users_found']} users, lost {a['lost']}, "
          f"wrong {a['wrong_referrer']}, duplicate {a['duplicate_users']}, touches≠1 "
          f"{a['touches_not_exactly_one_bound']}, per-distributor mismatches {a['per_distributor_mismatch']} "
          f"over {a['distributors']} distributors   {verdict(a['pass'])}")
    if not r["smoke"]["ok"]:
        print("smoke check FAILED: " + "; ".join(r["smoke"]["problems"][:3]))
    if r["profile"]:
        print(f"profile: {r['profile']}")
    print(f"results: {out_file.relative_to(ROOT)}   ({r['wall_seconds']} s)")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
