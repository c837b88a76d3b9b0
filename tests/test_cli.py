"""The operator's commands: ``flask --app wsgi menu push``, ``worker`` and
``db upgrade``, and the migrations they run."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from app import create_app
from app.config import build
from app.extensions import db, redis_store
from conftest import DB_URL, REDIS_URL, make_raw_config
from handlers import outbox
from models import SandboxMessage
from test_config import write_toml
from wxbot.client import wechat_client
from wxbot.commands import COMMANDS
from wxbot.menu import MENU_FILE, load_menu, problems

KNOWN = set(COMMANDS)


def flask_cli(*args: str, config: Path, cwd: Path, timeout: int = 120) -> subprocess.CompletedProcess:
    """Run ``flask --app wsgi …`` as an operator would, with only our config file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FENXIAO_")}
    env["FENXIAO_CONFIG"] = str(config)
    return subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def settings_as_raw(settings) -> dict:
    return {section: dict(values) for section, values in settings.items()}


# --- menu ----------------------------------------------------------------------------

def test_menu_push_publishes_menu_json(app):
    result = app.test_cli_runner().invoke(args=["menu", "push"])
    assert result.exit_code == 0, result.output
    assert "menu published" in result.output
    assert wechat_client().menu.get()["menu"] == load_menu()


def test_menu_push_again_replaces_the_menu(app):
    runner = app.test_cli_runner()
    for _ in range(2):
        assert runner.invoke(args=["menu", "push"]).exit_code == 0
    assert wechat_client().menu.get()["menu"] == load_menu()


def test_menu_push_reports_wechat_refusal(app, tmp_path, settings):
    raw = settings_as_raw(settings)
    raw["app"]["database_url"] = f"sqlite:///{tmp_path / 'other.sqlite'}"
    raw["wechat"]["secret"] = "not-the-secret"
    raw["wechat"]["appid"] = "wxsomeoneelse0000"  # its own token cache
    other = create_app(build(raw, {}, "test"))
    with other.app_context():  # the command runs in whichever app's context is current
        try:
            result = other.test_cli_runner().invoke(args=["menu", "push"])
        finally:
            db.engine.dispose()
            redis_store.conn.close()
    assert result.exit_code != 0
    assert "WeChat refused the menu" in result.output
    assert "40013" in result.output  # WeChat's own code, for the operator to look up


def test_shipped_menu_has_no_problems():
    assert problems(load_menu(MENU_FILE), KNOWN) == []


def click(name: str, key: str = "HELP") -> dict:
    return {"type": "click", "name": name, "key": key}


@pytest.mark.parametrize("menu, hint", [
    ({"button": [click("商城"), click("帮助"), click("收入", "MY_INCOME"), click("排行", "LEADERBOARD")]}, "4"),
    ({"button": []}, "0"),
    ({"button": [click("一个很长的菜单")]}, "一个很长的菜单"),
    ({"button": [{"name": "分销", "sub_button": [click("这个子菜单名字太长了")]}]}, "这个子菜单名字太长了"),
    ({"button": [{"name": "分销中心菜单", "sub_button": [click("帮助")]}]}, "分销中心菜单"),
    ({"button": [{"name": "更多", "sub_button": [click(f"帮助{i}") for i in range(6)]}]}, "更多"),
    ({"button": [click("商城", "NO_SUCH_COMMAND")]}, "NO_SUCH_COMMAND"),
    ({"button": [{"type": "view", "name": "商城", "url": "shop.example.com/h5"}]}, "商城"),
    ({"button": [{"type": "view", "name": "商城", "url": "javascript:alert(1)"}]}, "商城"),
    ({"button": [{"type": "scancode_push", "name": "扫码", "key": "SCAN"}]}, "扫码"),
    ({"button": [click("")]}, "1-4"),
])
def test_menu_problems_are_caught(menu, hint):
    found = problems(menu, KNOWN)
    assert found, "WeChat would refuse this menu or it leads nowhere"
    assert any(hint in p for p in found), found


def test_good_menu_with_a_link_passes():
    menu = {"button": [click("帮助"), {"type": "view", "name": "商城", "url": "https://shop.example.com/h5/"},
                       {"name": "分销", "sub_button": [click("我的二维码", "MY_QRCODE")]}]}
    assert problems(menu, KNOWN) == []


# --- worker ---------------------------------------------------------------------------

@pytest.mark.slow
def test_worker_refuses_without_redis(tmp_path, repo_root):
    config = write_toml(tmp_path / "c.toml", make_raw_config(
        "http://127.0.0.1:5999", f"sqlite:///{tmp_path / 'w.sqlite'}", app={"redis_url": ""}))
    done = flask_cli("worker", "--burst", config=config, cwd=repo_root)
    assert done.returncode != 0
    assert "redis_url" in done.stdout + done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
@pytest.mark.skipif(not REDIS_URL, reason="set FENXIAO_TEST_REDIS_URL for a real worker")
def test_worker_burst_runs_queued_jobs(app, settings, sandbox_user, jobs, tmp_path, repo_root):
    person = sandbox_user()
    outbox.after_commit("wxbot.jobs.send_text", person.openid, "来自后台的消息")
    outbox.commit()
    assert jobs.count() == 1
    # The worker is another process with the same configuration as the web app.
    config = write_toml(tmp_path / "c.toml", settings_as_raw(settings))
    done = flask_cli("worker", "--burst", config=config, cwd=repo_root)
    assert done.returncode == 0, done.stderr
    assert jobs.count() == 0
    with db.engine.connect() as conn:
        rows = conn.execute(SandboxMessage.__table__.select().where(
            SandboxMessage.openid == person.openid)).all()
    assert [r.body["content"] for r in rows] == ["来自后台的消息"]


# --- migrations -------------------------------------------------------------------------

@pytest.mark.slow
def test_a_served_worker_leaves_the_migrations_tool_out_and_still_serves(tmp_path, repo_root):
    database = tmp_path / "served.sqlite"
    config = write_toml(tmp_path / "c.toml", make_raw_config(
        "http://127.0.0.1:5999", f"sqlite:///{database}", app={"redis_url": ""}))
    assert flask_cli("db", "upgrade", config=config, cwd=repo_root).returncode == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("FENXIAO_")}
    env["FENXIAO_CONFIG"] = str(config)
    probe = ("import sys, gunicorn, wsgi\n"
             "res = wsgi.app.test_client().get('/healthz')\n"
             "print(res.status_code, 'flask_migrate' in sys.modules, 'migrate' in wsgi.app.extensions)")
    served = subprocess.run([sys.executable, "-c", probe], cwd=repo_root, env=env, capture_output=True, text=True,
                            timeout=120)
    assert served.returncode == 0, served.stderr
    assert served.stdout.split()[-3:] == ["200", "False", "False"]


def test_db_upgrade_builds_the_schema_on_a_fresh_sqlite_file(tmp_path, repo_root):
    database = tmp_path / "fresh.sqlite"
    config = write_toml(tmp_path / "c.toml", make_raw_config(
        "http://127.0.0.1:5999", f"sqlite:///{database}", app={"redis_url": ""}))
    done = flask_cli("db", "upgrade", config=config, cwd=repo_root)
    assert done.returncode == 0, done.stderr
    engine = create_engine(f"sqlite:///{database}")
    try:
        tables = set(inspect(engine).get_table_names())
        with engine.connect() as conn:
            version = MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()
    assert set(db.metadata.tables) <= tables
    assert "alembic_version" in tables
    assert version is not None
    # Running it again is harmless.
    again = flask_cli("db", "upgrade", config=config, cwd=repo_root)
    assert again.returncode == 0, again.stderr


def test_models_match_the_migrated_schema(app):
    """The test database was built by ``upgrade()`` (the live fixture): an
    autogenerate comparison must find nothing to migrate."""
    migrate_opts = app.extensions["migrate"].configure_args
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={
            "compare_type": True,
            "render_as_batch": migrate_opts.get("render_as_batch", False),
        })
        differences = compare_metadata(context, db.metadata)
    assert differences == [], (
        f"models and migrations differ on {'PostgreSQL' if DB_URL else 'SQLite'}: run "
        "`flask --app wsgi db migrate` and review the script")
