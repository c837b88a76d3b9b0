"""The pages bench/scale.py measures, and the plans behind them.

Each page is requested through the Flask test client with a real session
(an H5 session row as the OAuth callback starts it; the owner logged in
through the admin's form), warmed, then timed ``repeat`` times around the
whole request (routing, session check, queries, Jinja). One more request is
made with SQLAlchemy's ``before_cursor_execute`` listening: every statement
it ran is explained with its parameters — reads with ``EXPLAIN (ANALYZE,
BUFFERS)``, writes with a plain ``EXPLAIN`` (the request already made them) —
each in a transaction rolled back. A plan fails on a ``Seq Scan`` of a table
estimated above ``SEQ_LIMIT`` rows (pg_class.reltuples) or a sort that went
to disk.
"""
from __future__ import annotations

import re
import secrets
import statistics
import time
from dataclasses import dataclass, field
from urllib.parse import urlencode

SEQ_LIMIT = 10_000
H5_TARGET, BOARD_TARGET, ADMIN_TARGET, STATS_TARGET = 30.0, 5.0, 100.0, 200.0


@dataclass
class Page:
    name: str
    endpoint: str
    url: str
    who: str  # the client: "customer", "biggest", "buyer", "admin"
    target: float
    timings: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)  # this process's CPU time per request
    statements: list[tuple[str, object]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    skipped: str = ""
    db_ms: float = 0.0  # the statements' execution times summed (EXPLAIN ANALYZE)

    def pct(self, q: float) -> float:
        values = sorted(self.timings)
        return values[max(0, min(len(values) - 1, int(round(q * len(values))) - 1))]


def pages(facts) -> list[Page]:
    slug, pid, mobile = facts.biggest_slug, facts.product_id, facts.biggest_mobile
    return [
        Page("unit shop page", "h5.unit_link", f"/h5/u/{slug}", "customer", H5_TARGET),
        Page("shop (the 商城 menu)", "h5.shop", "/h5/shop", "customer", H5_TARGET),
        Page("product page", "h5.product", f"/h5/p/{pid}", "customer", H5_TARGET),
        Page("distributor centre (biggest)", "h5.center", "/h5/center", "biggest", H5_TARGET),
        Page("income page (biggest)", "h5.income", "/h5/income", "biggest", H5_TARGET),
        Page("team page (biggest)", "h5.my_team", "/h5/team", "biggest", H5_TARGET),
        Page("my orders (heavy buyer)", "h5.my_orders", "/h5/orders", "buyer", H5_TARGET),
        Page("leaderboard, this week", "h5.leaderboard", "/h5/leaderboard", "biggest", BOARD_TARGET),
        Page("leaderboard, all time", "h5.leaderboard", "/h5/leaderboard?period=all", "biggest", BOARD_TARGET),
        Page("admin applications", "admin.applications", "/admin/applications", "admin", ADMIN_TARGET),
        Page("admin withdrawals", "admin.withdrawals", "/admin/withdrawals", "admin", ADMIN_TARGET),
        Page("admin orders, state = paid", "admin.orders", "/admin/orders?status=paid", "admin", ADMIN_TARGET),
        Page("admin orders, state = refunding", "admin.orders", "/admin/orders?status=refunding", "admin",
             ADMIN_TARGET),
        Page("admin orders, distributor mobile", "admin.orders", f"/admin/orders?distributor={mobile}", "admin",
             ADMIN_TARGET),
        Page("admin orders, distributor name", "admin.orders",
             "/admin/orders?" + urlencode({"distributor": facts.biggest_name}), "admin", ADMIN_TARGET),
        Page("admin distributors", "admin.distributors", "/admin/distributors", "admin", ADMIN_TARGET),
        Page("admin distributor detail (biggest)", "admin.distributor", f"/admin/distributors/{facts.biggest}",
             "admin", ADMIN_TARGET),
        Page("admin statistics (default range)", "admin.stats", "/admin/stats", "admin", STATS_TARGET),
        Page("admin statistics (a year)", "admin.stats",
             "/admin/stats?" + urlencode({"from": facts.year_ago, "to": facts.yesterday}), "admin", STATS_TARGET),
    ]


def h5_client(app, user_id: int):
    """A browser signed in as ``user_id``, as the OAuth callback would leave it."""
    from handlers.clock import now
    from models import db
    from models.h5_session import H5Session

    client = app.test_client()
    record = H5Session(id=secrets.token_urlsafe(32), user_id=user_id, created_at=now(), last_seen_at=now())
    db.session.add(record)
    db.session.commit()
    with client.session_transaction() as session:
        session["sid"] = record.id
        session.permanent = True
    return client


def admin_client(app):
    from handlers import audit, outbox
    from handlers import staff as staff_rules

    client = app.test_client()
    name = f"scale{secrets.token_hex(3)}"  # one per run: --reuse runs again on the same database
    staff_rules.create_staff(name, "owner", "scale bench password 1", audit.SYSTEM)
    outbox.commit()
    page = client.get("/admin/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    res = client.post("/admin/login", data={"csrf_token": csrf, "name": name,
                                            "password": "scale bench password 1", "code": ""})
    assert res.status_code == 302, res.get_data(as_text=True)[:300]
    return client


class Recorder:
    """Statements the engine runs while ``on``."""

    def __init__(self, engine) -> None:
        from sqlalchemy import event

        self.on, self.seen = False, []
        event.listen(engine, "before_cursor_execute", self._record)

    def _record(self, conn, cursor, statement, parameters, context, executemany) -> None:
        if self.on:
            self.seen.append((statement, parameters[0] if executemany and parameters else parameters))


def measure(page: Page, client, repeat: int, recorder: Recorder) -> None:
    """Requests are made with no app context pushed, so that each has its
    own (and its own ``g``), as under a server."""
    for _ in range(3):  # templates compiled, caches and connections warm
        res = client.get(page.url)
    if res.status_code != 200:
        page.skipped = f"FAILED: {page.url} answered {res.status_code} {res.headers.get('Location', '')}".rstrip()
        return
    for _ in range(repeat):
        t, cpu = time.perf_counter(), time.process_time()
        res = client.get(page.url)
        page.timings.append((time.perf_counter() - t) * 1000)
        page.cpu.append((time.process_time() - cpu) * 1000)
        assert res.status_code == 200, (page.url, res.status_code)
    recorder.seen, recorder.on = [], True
    client.get(page.url)
    recorder.on = False
    page.statements = recorder.seen


def explain(dsn: str, statements: list[tuple[str, object]]) -> tuple[list[str], list[tuple[float, str]]]:
    """Problems found in the plans of ``statements`` (distinct ones), and
    each statement's execution time with its first words."""
    import psycopg

    problems, times, done = [], [], set()
    with psycopg.connect(dsn) as conn:
        sizes = dict(conn.execute("SELECT relname, reltuples FROM pg_class WHERE relkind = 'r'").fetchall())
        conn.rollback()
        for sql, params in statements:
            key = (sql, repr(params))
            if key in done or not re.match(r"\s*(SELECT|WITH|INSERT|UPDATE|DELETE)", sql, re.I):
                continue
            done.add(key)
            reads = re.match(r"\s*(SELECT|WITH)", sql, re.I) and " FOR UPDATE" not in sql.upper()
            options = "ANALYZE, BUFFERS, FORMAT JSON" if reads else "FORMAT JSON"
            try:
                plan = conn.execute(f"EXPLAIN ({options}) {sql}", params or None).fetchone()[0][0]
            except psycopg.Error as exc:
                problems.append(f"could not explain ({exc.__class__.__name__}): {short(sql)}")
                conn.rollback()
                continue
            conn.rollback()
            times.append((plan.get("Execution Time", 0.0), short(sql)))
            for node in walk(plan["Plan"]):
                rel = node.get("Relation Name")
                if node["Node Type"] == "Seq Scan" and sizes.get(rel, 0) > SEQ_LIMIT:
                    problems.append(f"Seq Scan on {rel} (~{int(sizes[rel])} rows): {short(sql)}")
                if node.get("Sort Space Type") == "Disk" or "external" in node.get("Sort Method", ""):
                    problems.append(f"sort on disk ({node.get('Sort Method')}): {short(sql)}")
    return problems, times


def walk(node: dict):
    yield node
    for child in node.get("Plans", ()):
        yield from walk(child)


def short(sql: str, width: int = 150) -> str:
    return re.sub(r"\s+", " ", sql).strip()[:width]


def webhook_statements(app, config: dict, scene: str, follower: str, recorder: Recorder) -> list[tuple[str, object]]:
    """A follow by a new user scanning the biggest distributor's code, and a
    scan by an existing user, pushed as WeChat does (sandbox.push)."""
    from sandbox.push import WeChatServer

    server = WeChatServer(webhook_url="", token=config["token"], appid=config["appid"],
                          encoding_aes_key=config["aes_key"], account="gh_fxscalebench1")
    client = app.test_client()
    seen = []
    for i in range(4):
        for fields in (server.subscribe(f"oSCALEWH{i:04d}{secrets.token_hex(6)}", scene),
                       server.scan(follower, scene)):
            params, body = server.signed_request(fields, safe=True)
            recorder.seen, recorder.on = [], True
            res = client.post("/wx?" + urlencode(params), data=body, content_type="text/xml")
            recorder.on = False
            assert res.status_code == 200, res.get_data(as_text=True)[:300]
            if i == 3:  # the first pushes warm caches; the last pair is what a steady webhook runs
                seen += recorder.seen
    return seen


def run(app, dsn: str, facts, config: dict, repeat: int, log, verbose: bool = False) -> int:
    """Measure, explain, print; returns the number of failures."""
    from models import db

    with app.app_context():
        recorder = Recorder(db.engine)
        clients = {"customer": h5_client(app, facts.customer), "biggest": h5_client(app, facts.biggest_user),
                   "buyer": h5_client(app, facts.heavy_buyer), "admin": admin_client(app)}
        db.session.remove()
    measured = []
    for page in pages(facts):
        if page.endpoint not in app.view_functions:
            page.skipped = f"no endpoint {page.endpoint} yet"
            log(f"skipped {page.name}: {page.skipped}")
            measured.append(page)
            continue
        measure(page, clients[page.who], repeat, recorder)
        if page.skipped:
            log(f"{page.name}: {page.skipped}")
            measured.append(page)
            continue
        page.problems, times = explain(dsn, page.statements)
        slowest = max(times, default=(0.0, ""))
        log(f"{page.name}: p50 {statistics.median(page.timings):.1f} ms, p95 {page.pct(0.95):.1f} ms, "
            f"CPU p50 {statistics.median(page.cpu):.1f} ms, {len(page.statements)} statements, "
            f"slowest in the database {slowest[0]:.1f} ms")
        page.db_ms = sum(t for t, _ in times)
        if verbose:
            for took, sql in sorted(times, reverse=True)[:4]:
                log(f"    {took:7.2f} ms  {sql}")
        measured.append(page)
    hook = Page("webhook: subscribe with scene + scan", "wx", "/wx", "wechat", 0)
    hook.statements = webhook_statements(app, config, facts.biggest_scene,
                                         f"oSCALE{facts.customer:010d}{'c' * 12}", recorder)
    hook.problems, _ = explain(dsn, hook.statements)

    failures = 0
    print(f"\n{'page':36} {'p50 ms':>7} {'p95 ms':>7} {'target':>7} {'CPU ms':>7} {'SQL ms':>7} {'SQL':>4}  verdict")
    for page in measured + [hook]:
        if page.skipped:
            failures += page.skipped.startswith("FAILED")
            print(f"{page.name:36} {'-':>7} {'-':>7} {'':>7} {'':>7} {'':>7} {'':>4}  skipped: {page.skipped}")
            continue
        timed = bool(page.timings)
        late = timed and page.pct(0.95) > page.target
        bad = late or page.problems
        failures += bool(bad)
        verdict = "ok" if not bad else "; ".join((["p95 over target"] if late else [])
                                                 + ([f"{len(page.problems)} plan problem(s)"] if page.problems else []))
        cells = (f"{statistics.median(page.timings):7.1f} {page.pct(0.95):7.1f} {page.target:7.0f} "
                 f"{statistics.median(page.cpu):7.1f} {page.db_ms:7.1f}" if timed
                 else f"{'-':>7} {'-':>7} {'-':>7} {'-':>7} {'-':>7}")
        print(f"{page.name:36} {cells} {len(page.statements):4d}  {verdict}")
    for page in measured + [hook]:
        for problem in dict.fromkeys(page.problems):
            print(f"  {page.name}: {problem}")
    return failures
