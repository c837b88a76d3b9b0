"""The try-out's demo owner: `make run` makes it once and prints its login
(/admin/login, name, password) in the start banner; the password is random,
kept in the instance folder, the same at every restart; a real deployment
gets no demo owner."""
from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from contextlib import contextmanager

import pytest
import requests
from sqlalchemy import func, select

from admin_helpers import log_in
from app.config import build
from handlers import audit, outbox
from handlers import staff as staff_rules
from models import AuditEntry, Staff, db

LOGIN = re.compile(r"The admin \(商家后台\): (\S+)/admin/login\s+name: demo\s+password: (\S+)")


@contextmanager
def as_tryout(app):
    """This product, its settings marked as the try-out's (what FENXIAO_TRYOUT=1 gives)."""
    settings = app.config["SETTINGS"]
    app.config["SETTINGS"] = build({s: dict(v) for s, v in settings.items()}, {}, "try-out defaults")
    try:
        yield
    finally:
        app.config["SETTINGS"] = settings


@pytest.fixture
def instance(tmp_path, monkeypatch):
    monkeypatch.setenv("FENXIAO_INSTANCE", str(tmp_path))
    return tmp_path


def owner_command(app) -> str:
    result = app.test_cli_runner().invoke(args=["tryout", "owner"])
    assert result.exit_code == 0, result.output
    return result.output


def demo_rows() -> list[Staff]:
    db.session.expire_all()
    return db.session.scalars(select(Staff).where(Staff.name == "demo")).all()


def test_the_demo_owner_is_made_once_and_logs_in(app, base, instance):
    with as_tryout(app):
        first, again = owner_command(app), owner_command(app)
        found = LOGIN.search(first)
        assert found, first
        assert found.group(1) == base and again == first  # a restart prints the same login
        password = found.group(2)
        assert [(m.role, m.is_active) for m in demo_rows()] == [("owner", True)]
        assert db.session.scalar(select(func.count()).select_from(AuditEntry)
                                 .where(AuditEntry.action == "staff.create")) == 1
        kept = instance / "tryout-admin.json"
        assert json.loads(kept.read_text()) == {"name": "demo", "password": password}
        assert stat.S_IMODE(kept.stat().st_mode) == 0o600
        browser = requests.Session()
        assert log_in(browser, base, "demo", password).status_code == 302
        assert "欢迎，demo" in browser.get(f"{base}/admin/").text


def test_a_fresh_database_gets_the_kept_password_again(app, instance):
    with as_tryout(app):
        password = LOGIN.search(owner_command(app)).group(2)
        db.session.execute(Staff.__table__.delete().where(Staff.name == "demo"))  # var/fenxiao.sqlite removed
        db.session.commit()
        assert LOGIN.search(owner_command(app)).group(2) == password
        assert len(demo_rows()) == 1


def test_a_changed_password_is_not_printed(app, instance):
    with as_tryout(app):
        old = LOGIN.search(owner_command(app)).group(2)
        staff_rules.change_password(demo_rows()[0].id, old, "a new password 42", audit.SYSTEM)
        outbox.commit()
        output = owner_command(app)
        assert old not in output and "password: the one you changed it to" in output


def test_a_real_deployment_gets_no_demo_owner(app, instance):
    result = app.test_cli_runner().invoke(args=["tryout", "owner"])
    assert result.exit_code != 0
    assert "only for the try-out" in result.output and "staff create NAME --role owner" in result.output
    assert demo_rows() == [] and not (instance / "tryout-admin.json").exists()


@pytest.mark.slow
def test_make_run_prints_the_login_in_its_banner(tmp_path, repo_root):
    """The banner line `make run` prints comes from the command it runs:
    run that command as make does (the try-out's environment), twice."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FENXIAO_")}
    plan = subprocess.run(["make", "-n", "run", "HOST=127.0.0.1", "PORT=5099"], cwd=repo_root, env=env,
                          capture_output=True, text=True, timeout=60)
    assert plan.returncode == 0, plan.stderr
    lines = plan.stdout.splitlines()
    command = next(line for line in lines if "tryout owner" in line)
    assert "FENXIAO_TRYOUT=1" in command and "FENXIAO_APP_BASE_URL=http://127.0.0.1:5099" in command
    assert lines.index(command) < next(i for i, line in enumerate(lines) if "gunicorn" in line)

    env.update(PYTHONPATH=str(repo_root), FENXIAO_INSTANCE=str(tmp_path / "var"), FENXIAO_TRYOUT="1",
               FENXIAO_APP_BASE_URL="http://127.0.0.1:5099")

    def flask(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)

    assert flask("db", "upgrade").returncode == 0
    first, again = flask("tryout", "owner"), flask("tryout", "owner")
    assert first.returncode == 0 and again.returncode == 0, first.stderr + again.stderr
    found = LOGIN.search(first.stdout)
    assert found and found.group(1) == "http://127.0.0.1:5099" and again.stdout == first.stdout
    check = subprocess.run(
        [sys.executable, "-c", "import sys; from app import create_app; from handlers import staff; "
         "app = create_app()\nwith app.app_context(): print(staff.authenticate('demo', sys.argv[1]).role)",
         found.group(2)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert check.stdout.strip() == "owner", check.stderr
