"""Fixtures. The suite runs against PostgreSQL and Redis when
FENXIAO_TEST_DATABASE_URL / FENXIAO_TEST_REDIS_URL are set (CI), else against
a SQLite file and the in-process Redis stand-in. The product under test is
served over real HTTP on a free port, because the sandbox WeChat platform it
talks to is part of it."""
from __future__ import annotations

import base64
from contextlib import contextmanager
import os
import secrets
import socket
import tempfile
import threading
from pathlib import Path

import pytest
from sqlalchemy import text
from werkzeug.serving import make_server

from app import create_app
from app.config import SCHEMA, build
from app.extensions import db, limiter, queue, redis_store
from sandbox.push import WeChatServer

DB_URL = os.environ.get("FENXIAO_TEST_DATABASE_URL", "")
REDIS_URL = os.environ.get("FENXIAO_TEST_REDIS_URL", "")
# Under pytest-xdist (``make test`` runs two workers) each worker empties and
# migrates a database of its own, and flushes a Redis database of its own.
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")


def _own_database(url: str, worker: str) -> str:
    """``…/test`` → ``…/test_gw1``, made when missing."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    shared = make_url(url)
    own = shared.set(database=f"{shared.database}_{worker}")
    engine = create_engine(shared, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        if conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": own.database}) is None:
            conn.execute(text(f'CREATE DATABASE "{own.database}"'))
    engine.dispose()
    return own.render_as_string(hide_password=False)


def _own_redis(url: str, worker: str) -> str:
    """``redis://host:port/15`` → ``…/14`` for the second worker: counting down from the one given."""
    head, _, number = url.rstrip("/").rpartition("/")
    index = int(worker.removeprefix("gw"))
    if not number.isdigit() or int(number) - index < 1:
        raise SystemExit(f"FENXIAO_TEST_REDIS_URL {url!r}: name a database number above the worker count")
    return f"{head}/{int(number) - index}"


if WORKER and DB_URL:
    DB_URL = _own_database(DB_URL, WORKER)
if WORKER and REDIS_URL:
    REDIS_URL = _own_redis(REDIS_URL, WORKER)
APPID = "wxtest0123456789"


def pytest_report_header(config):
    return [
        f"fenxiao database: {DB_URL or 'SQLite file (set FENXIAO_TEST_DATABASE_URL for PostgreSQL)'}",
        f"fenxiao redis: {REDIS_URL or 'in-process fallback (set FENXIAO_TEST_REDIS_URL for Redis)'}",
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PAY_KEYS_DIR = Path(tempfile.mkdtemp(prefix="fenxiao-paykeys-"))


def make_raw_config(base_url: str, database_url: str, **overrides) -> dict:
    from sandbox.paykeys import ensure, payment_config

    raw = {
        **payment_config(ensure(PAY_KEYS_DIR), base_url),
        "app": {"secret_key": secrets.token_urlsafe(24), "base_url": base_url,
                "database_url": database_url, "redis_url": REDIS_URL},
        "wechat": {"appid": APPID, "secret": secrets.token_hex(16), "token": "fenxiaotesttoken",
                   "encoding_aes_key": base64.b64encode(secrets.token_bytes(32)).decode()[:43],
                   "sandbox": True},
        "queue": {"max_retries": 2},
        "templates": {kind: f"TM_{kind}" for kind in SCHEMA["templates"]},
    }
    for section, values in overrides.items():
        raw.setdefault(section, {}).update(values)
    return raw


@pytest.fixture(scope="session")
def live(tmp_path_factory):
    """The product, migrated and listening on 127.0.0.1:<port>."""
    port = free_port()
    database_url = DB_URL or f"sqlite:///{tmp_path_factory.mktemp('db') / 'fenxiao.sqlite'}"
    settings = build(make_raw_config(f"http://127.0.0.1:{port}", database_url), {}, "tests")
    app = create_app(settings)
    with app.app_context():
        from flask_migrate import upgrade

        if DB_URL:  # the machine's shared database: start from nothing
            db.reflect()
            db.drop_all()
            db.session.execute(text("DROP TABLE IF EXISTS alembic_version"))
            db.session.execute(text("DROP FUNCTION IF EXISTS audit_log_append_only() CASCADE"))
            db.session.commit()
        upgrade()
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield app
    server.shutdown()
    server.server_close()
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
        redis_store.conn.close()


@pytest.fixture
def app(live):
    """A clean product for each test: empty tables, empty Redis."""
    with live.app_context():
        redis_store.conn.flushdb()
        # Flask-Limiter keeps one storage per process, set by the last init_app:
        # a second product made by a test (another Redis) must not keep it.
        limiter.init_app(live)
        limiter.reset()
        for table in reversed(db.metadata.sorted_tables):
            if table.name == "audit_log" and DB_URL:  # append-only: a trigger refuses DELETE, not TRUNCATE
                db.session.execute(text("TRUNCATE audit_log"))
                continue
            delete = table.delete()
            if table.name == "units":  # the merchant's unit comes with the schema
                delete = delete.where(table.c.distributor_id.is_not(None))
            db.session.execute(delete)
        db.session.commit()
        yield live
        db.session.rollback()
        db.session.remove()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def settings(app):
    return app.config["SETTINGS"]


@pytest.fixture
def wechat(settings) -> WeChatServer:
    """WeChat's servers, pushing to /wx in safe mode (AES)."""
    w = settings["wechat"]
    return WeChatServer(f"{settings['app']['base_url']}/wx", w["token"], w["appid"], w["encoding_aes_key"])


@pytest.fixture
def wechat_plain(app, settings) -> WeChatServer:
    """The same, with the account in plaintext mode: for this test the product
    has no EncodingAESKey (with one, it takes encrypted pushes only)."""
    raw = {section: dict(values) for section, values in settings.items()}
    raw["wechat"]["encoding_aes_key"] = ""
    app.config["SETTINGS"] = build(raw, {}, "tests")
    w = settings["wechat"]
    yield WeChatServer(f"{settings['app']['base_url']}/wx", w["token"], w["appid"], "")
    app.config["SETTINGS"] = settings


class Jobs:
    """Background work: inline with the in-process fallback; with Redis, a
    real RQ worker drains the queue when a test asks."""

    def __init__(self, app):
        self.app = app

    def run(self) -> None:
        from rq import SimpleWorker

        q = queue.queue
        if q.is_async:
            SimpleWorker([q], connection=redis_store.conn).work(burst=True)

    def count(self) -> int:
        return queue.queue.count


@pytest.fixture
def jobs(app) -> Jobs:
    return Jobs(app)


@pytest.fixture
def sandbox_user(app):
    """Creator of people on the sandbox platform (WeChat's user list)."""
    from sandbox.people import create_user

    def make(nickname: str = "小王", subscribed: bool = True):
        from handlers.clock import now

        user = create_user(nickname)
        user.subscribed = subscribed
        user.subscribe_time = now() if subscribed else None
        user.last_message_at = now() if subscribed else None
        db.session.commit()
        return user

    return make


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


@pytest.fixture
def base(settings) -> str:
    return settings["app"]["base_url"]


@pytest.fixture
def person(sandbox_user, base):
    """Creator of WeChat users (followers) with a browser logged in to the H5
    pages through the sandbox's OAuth, profile granted (snsapi_userinfo)."""
    import requests

    from test_h5_auth import log_in

    opened = []

    def make(nickname: str, subscribed: bool = True) -> requests.Session:
        who = sandbox_user(nickname, subscribed=subscribed)
        browser = requests.Session()
        opened.append(browser)
        assert log_in(browser, base, who.openid, scope="snsapi_userinfo").status_code == 302
        browser.openid = who.openid
        return browser

    yield make
    for b in opened:
        b.close()


# Tests that need a real server say so; CI (.ci/run) sets both URLs, so none is skipped there.
needs_postgres = pytest.mark.skipif(not DB_URL, reason="concurrency is tested on PostgreSQL "
                                    "(FENXIAO_TEST_DATABASE_URL): SQLite takes no row locks")
needs_redis = pytest.mark.skipif(not REDIS_URL, reason="set FENXIAO_TEST_REDIS_URL for a real Redis and RQ worker")


@contextmanager
def second_product(settings, **sections):
    """Another instance of the product on the same database, with some
    settings changed: ``second_product(settings, wechat={"api_base": …})``."""
    raw = {section: dict(values) for section, values in settings.items()}
    for section, values in sections.items():
        raw[section].update(values)
    other = create_app(build(raw, {}, "tests"))
    try:
        yield other
    finally:
        with other.app_context():
            db.session.remove()
            db.engine.dispose()
            redis_store.conn.close()


def deliver(product) -> None:
    """What the worker (or, without Redis, the relay inline) does, for ``product``."""
    from rq import SimpleWorker

    from handlers import outbox

    with product.app_context():
        outbox.relay()
        if queue.queue.is_async:
            SimpleWorker([queue.queue], connection=redis_store.conn).work(burst=True)
        db.session.remove()
