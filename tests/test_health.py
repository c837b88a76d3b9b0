"""``GET /healthz``: what a load balancer sees. 200 when the database and
Redis answer, 503 (never 500) when either is down."""
from __future__ import annotations

import pytest

from app import create_app
from app.config import build
from app.extensions import db, redis_store
from conftest import make_raw_config

CLOSED_PORT = 1  # nothing listens on 127.0.0.1:1


@pytest.fixture
def standalone(tmp_path):
    """Creator of extra apps with their own settings; their connections are
    closed afterwards."""
    made = []

    def make(**overrides):
        raw = make_raw_config("http://127.0.0.1:5999", f"sqlite:///{tmp_path / 'other.sqlite'}", **overrides)
        app = create_app(build(raw, {}, "test"))
        made.append(app)
        return app

    yield make
    for app in made:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
            redis_store.conn.close()


def test_healthy(client):
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.json == {"status": "ok", "database": "ok", "redis": "ok"}


def test_redis_unreachable_is_503(standalone):
    app = standalone(app={"redis_url": f"redis://127.0.0.1:{CLOSED_PORT}/0"})
    r = app.test_client().get("/healthz")
    assert r.status_code == 503
    assert r.json["status"] == "unavailable"
    assert r.json["database"] == "ok"
    assert r.json["redis"] != "ok"


def test_database_unreachable_is_503(standalone):
    app = standalone(app={"database_url": f"postgresql+psycopg://postgres@127.0.0.1:{CLOSED_PORT}/x",
                          "redis_url": ""})
    r = app.test_client().get("/healthz")
    assert r.status_code == 503
    assert r.json["database"] != "ok"
    assert r.json["redis"] == "ok"


def test_both_down_is_503_on_every_check(standalone):
    app = standalone(app={"database_url": f"postgresql+psycopg://postgres@127.0.0.1:{CLOSED_PORT}/x",
                          "redis_url": f"redis://127.0.0.1:{CLOSED_PORT}/0"})
    c = app.test_client()
    for _ in range(2):  # a failed check leaves no broken session behind
        r = c.get("/healthz")
        assert r.status_code == 503
        assert r.json["database"] != "ok" and r.json["redis"] != "ok"
