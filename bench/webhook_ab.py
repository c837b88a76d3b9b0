"""Two versions of the webhook timed against each other, in alternating rounds.

On the project machine CPU time per push drifts by 2x within minutes, so two
versions timed one after the other cannot be compared. Here both run at once,
each as ``gunicorn -w 1 -k gthread --threads 4`` from its own checkout (the
same config, database and Redis), and short closed-loop rounds alternate
between them (old-new, new-old, ...): each round's pair met the same machine.
For each round, the worker's CPU (user + system, from /proc) per
subscribe-with-scene push; at the end the medians and the new/old ratio.

    git worktree add /tmp/old <commit>; ln -s "$PWD/.venv" /tmp/old/.venv
    .venv/bin/python bench/webhook_ab.py --old /tmp/old --new . --rounds 16

Uses the database and distributors ``webhook_cpu.py`` seeded (run it once
first); FLUSHDBs its Redis database. The checkouts must share the database's
schema.
"""
from __future__ import annotations

import argparse
import http.client
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from webhook import bench_account, flush_redis, signed_follow, subprocess_env, wait_http, worker_pids  # noqa: E402
from webhook_instructions import scenes  # noqa: E402

from sandbox.push import WeChatServer  # noqa: E402


def worker_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Pushes:
    """Fresh followers through the seeded distributors' codes, signed and encrypted as WeChat does."""

    def __init__(self, server: WeChatServer, qr: list[str]) -> None:
        self.server, self.qr, self.run = server, qr, secrets.token_hex(3)
        self.count, self.lock = 0, threading.Lock()

    def next(self) -> tuple[str, bytes]:
        with self.lock:
            self.count += 1
            i = self.count
        return signed_follow(self.server, f"oAB{self.run}{i:07d}{secrets.token_hex(3)}", self.qr[i % len(self.qr)])


def closed_loop(port: int, pushes: Pushes, seconds: float, connections: int) -> int:
    """Pushes answered in ``seconds`` by ``connections`` keep-alive clients."""
    stop, answered, lock = time.monotonic() + seconds, [0], threading.Lock()

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while time.monotonic() < stop:
            url, body = pushes.next()
            conn.request("POST", url, body=body, headers={"Content-Type": "text/xml"})
            res = conn.getresponse()
            data = res.read()
            if res.status != 200 or b"xml" not in data:
                raise SystemExit(f"port {port} answered {res.status}: {data[:200]!r}")
            with lock:
                answered[0] += 1

    threads = [threading.Thread(target=client) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answered[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", required=True, help="checkout of the old version (with its .venv)")
    ap.add_argument("--new", default=str(ROOT), help="checkout of the new version (default: this one)")
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--seconds", type=float, default=6, help="measured seconds per version per round")
    ap.add_argument("-c", "--connections", type=int, default=4)
    ap.add_argument("--database-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/fx_cpu_bench")
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/10")
    ap.add_argument("--ports", type=int, nargs=2, default=(8111, 8112))
    args = ap.parse_args()

    flush_redis(args.redis_url, force=False)
    config, wechat = bench_account(args.ports[0], args.database_url, args.redis_url)
    env = subprocess_env(config)
    servers: dict[str, tuple[subprocess.Popen, int]] = {}
    try:
        for name, checkout, port in (("old", args.old, args.ports[0]), ("new", args.new, args.ports[1])):
            root = Path(checkout).resolve()
            log = open(Path(tempfile.gettempdir()) / f"webhook_ab_{name}.log", "wb")
            proc = subprocess.Popen([str(root / ".venv" / "bin" / "gunicorn"), "-w", "1", "-k", "gthread",
                                     "--threads", "4", "-b", f"127.0.0.1:{port}", "wsgi:app"], cwd=root, env=env,
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            servers[name] = (proc, port)
            wait_http(port, "/healthz", 60, proc)
        pushes = Pushes(wechat, scenes(args.database_url))
        for _, port in servers.values():
            closed_loop(port, pushes, 3, args.connections)  # warm-up
        per_push: dict[str, list[float]] = {"old": [], "new": []}
        for r in range(args.rounds):
            for name in ("old", "new") if r % 2 == 0 else ("new", "old"):
                proc, port = servers[name]
                (worker,) = worker_pids(proc.pid)
                before = worker_cpu_seconds(worker)
                answered = closed_loop(port, pushes, args.seconds, args.connections)
                per_push[name].append((worker_cpu_seconds(worker) - before) / answered * 1000)
            print(f"round {r + 1}: old {per_push['old'][-1]:.3f} ms, new {per_push['new'][-1]:.3f} ms "
                  "worker CPU per push", flush=True)
    finally:
        for proc, _ in servers.values():
            proc.terminate()
        config.unlink(missing_ok=True)
    ratios = [new / old for old, new in zip(per_push["old"], per_push["new"])]
    print(f"median worker CPU per push: old {statistics.median(per_push['old']):.3f} ms, "
          f"new {statistics.median(per_push['new']):.3f} ms; new/old per round: median "
          f"{statistics.median(ratios):.3f}, mean {statistics.mean(ratios):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
