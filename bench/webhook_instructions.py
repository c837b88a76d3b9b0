"""Instructions per follow in a gunicorn worker, counted by valgrind.

The project machine's speed swings by up to 2x within minutes, so CPU
seconds cannot tell two versions of the code apart; instruction counts can
(the same count on a loaded and a quiet machine). ``webhook_cpu.py`` counts
the app alone, through Flask's test client; this counts what a production
worker runs per push, gunicorn's HTTP parsing, thread hand-off and access
log included: it starts ``gunicorn -w 1 -k gthread`` (``gunicorn.conf.py``
read as in production) under ``valgrind --tool=callgrind``, sends warm-up
pushes, zeroes the counters, sends ``--events`` signed and encrypted
subscribe-with-scene pushes one after another over one keep-alive
connection, and reads the worker's instruction count.

    .venv/bin/python bench/webhook_instructions.py                    # the product
    .venv/bin/python bench/webhook_instructions.py --app bare         # the floor (bench/bare_app.py)

Uses the database and distributors ``webhook_cpu.py`` seeded (run that once
first); FLUSHDBs its Redis database. Needs valgrind (Debian package). About
two minutes: valgrind runs Python some 50 times slower.
"""
from __future__ import annotations

import argparse
import http.client
import re
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from webhook import bench_account, flush_redis, signed_follow, subprocess_env, worker_pids  # noqa: E402

APPS = {"product": "wsgi:app", "bare": "bench.bare_app:app"}


def scenes(database_url: str) -> list[str]:
    import psycopg

    url = database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT scene FROM units WHERE scene IS NOT NULL ORDER BY id LIMIT 50").fetchall()
    if not rows:
        raise SystemExit("no distributor in that database: run bench/webhook_cpu.py once first")
    return [r[0] for r in rows]


# callgrind_control cannot reach a forked gunicorn worker (valgrind's gdbserver
# stays with the master), so the worker itself marks the measured part: a
# request to these paths makes it call a C function that nothing else calls,
# before which callgrind zeroes its counters, or dumps them.
ZERO, DUMP = "/__callgrind/zero", "/__callgrind/dump"
HOOKS = f"""
exec(open({str(ROOT / 'gunicorn.conf.py')!r}).read())  # production's settings and hooks first


def pre_request(worker, req):
    import os
    if req.path == {ZERO!r}:
        os.getpgid(0)
    elif req.path == {DUMP!r}:
        os.getsid(0)
"""


def measured_instructions(out_dir: Path, pid: int) -> int:
    """The worker's instruction count between the zero and the dump."""
    for dump in sorted(out_dir.glob(f"cg.{pid}.*")):
        text = dump.read_text(errors="replace")
        match = re.search(r"^totals: (\d+)", text, re.M)  # "summary" counts from the start
        if match and "Trigger: --dump-before=getsid" in text:
            return int(match.group(1))
    raise SystemExit(f"no callgrind dump of worker {pid} in {out_dir}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--app", choices=sorted(APPS), default="product")
    ap.add_argument("--database-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/fx_cpu_bench")
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/10")
    ap.add_argument("--events", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=60)
    ap.add_argument("--port", type=int, default=8197)
    ap.add_argument("--log-level", default="INFO", help="the product's, as in production")
    args = ap.parse_args()

    flush_redis(args.redis_url, force=False)
    config, server = bench_account(args.port, args.database_url, args.redis_url, args.log_level)
    qr = scenes(args.database_url)
    run = secrets.token_hex(3)
    out_dir = Path(tempfile.mkdtemp(prefix="callgrind-"))
    env = subprocess_env(config)
    hooks = out_dir / "gunicorn_hooks.py"
    hooks.write_text(HOOKS)
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_dir}/cg.%p",
           "--zero-before=getpgid", "--dump-before=getsid",
           str(Path(sys.executable).parent / "gunicorn"), "-c", str(hooks),
           "-w", "1", "-k", "gthread", "--threads", "4", "-b", f"127.0.0.1:{args.port}", "--timeout", "600", APPS[args.app]]
    log = open(out_dir / "server.log", "wb")
    master = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        conn = None
        deadline = time.time() + 300
        while conn is None:
            if master.poll() is not None or time.time() > deadline:
                raise SystemExit(f"gunicorn did not start; see {out_dir / 'server.log'}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=120)
                conn.connect()
            except OSError:
                conn = None
                time.sleep(1)

        def push(i: int) -> None:
            url, body = signed_follow(server, f"oINS{run}{i:06d}{secrets.token_hex(4)}", qr[i % len(qr)])
            conn.request("POST", url, body=body, headers={"Content-Type": "text/xml"})
            res = conn.getresponse()
            data = res.read()
            if res.status != 200 or b"xml" not in data:
                raise SystemExit(f"push answered {res.status}: {data[:200]!r}")

        def get(path: str) -> None:
            conn.request("GET", path)
            conn.getresponse().read()

        for i in range(args.warmup):
            push(i)
        (worker,) = worker_pids(master.pid)
        get(ZERO)
        for i in range(args.warmup, args.warmup + args.events):
            push(i)
        get(DUMP)
        time.sleep(1)
        total = measured_instructions(out_dir, worker)
        print(f"{args.app}: {total / args.events / 1e6:.3f} M instructions per follow in the gunicorn worker "
              f"({args.events} pushes, access log and log level {args.log_level} as in production); "
              f"callgrind_annotate {out_dir}/cg.{worker}.1 shows where")
    finally:
        master.terminate()
        try:
            master.wait(60)
        except subprocess.TimeoutExpired:
            master.kill()
        config.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
