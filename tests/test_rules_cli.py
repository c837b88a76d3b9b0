"""``flask --app wsgi rules …``: the same versions as the 规则设置 page from
the command line, each change audited as ``cli:<login>``. (The group is
invoked directly: app/cli.py registers it.)"""
from __future__ import annotations

import getpass
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from app.cli_rules import rules_cli
from handlers import rules
from handlers.clock import CHINA, now
from models import AuditEntry, RuleVersion, db


@pytest.fixture(autouse=True)
def fresh_rules(app):
    rules.forget()
    yield
    rules.forget()


def _cli(app, *args: str):
    result = app.test_cli_runner().invoke(rules_cli, list(args))
    db.session.rollback()
    return result


def test_show_then_set_then_show(app):
    shown = _cli(app, "show")
    assert shown.exit_code == 0, shown.output
    assert "level1_rate_bp\t1000\t10%\tconfig file" in shown.output
    assert "max_total_rate_bp\t3000\t30%\tconfig file (not editable)" in shown.output
    done = _cli(app, "set", "level1_rate_bp=1200", "withdraw_min_fen=500", "--reason", "双十二")
    assert done.exit_code == 0, done.output
    assert "level1_rate_bp\t1200\t12%\tnow" in done.output
    [entry] = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "rules.set")).all()
    assert entry.actor == f"cli:{getpass.getuser()}" and entry.reason == "双十二"
    assert "level1_rate_bp\t1200\t12%\tv1 from" in _cli(app, "show").output
    assert rules.section("distribution")["withdraw_min_fen"] == 500


def test_a_scheduled_version_is_listed_and_can_be_cancelled(app):
    later = (now() + timedelta(days=1)).astimezone(CHINA)
    done = _cli(app, "set", "review=auto", "--reason", "招募期", "--at", f"{later:%Y-%m-%d %H:%M}")
    assert done.exit_code == 0, done.output
    assert f"review\tauto\t自动通过\tfrom {later:%Y-%m-%d %H:%M}" in done.output
    [v] = db.session.scalars(select(RuleVersion)).all()
    assert f"scheduled #{v.id}" in _cli(app, "show").output
    assert "scheduled" in _cli(app, "history").output
    cancelled = _cli(app, "cancel", str(v.id), "--reason", "改期")
    assert cancelled.exit_code == 0 and f"cancelled #{v.id}" in cancelled.output
    assert "cancelled" in _cli(app, "history", "--key", "review").output


@pytest.mark.parametrize("args, message", [
    (("level1_rate_bp=abc",), "a whole number"),
    (("level1_rate_bp=2600",), "超过两级佣金合计上限 30%"),
    (("max_total_rate_bp=5000",), "只能在配置文件中修改"),
    (("review=sometimes",), "分销申请审核方式只能是"),
    (("freeze_days=3", "--at", "2020-01-01 10:00"), "生效时间不能早于现在"),
    (("freeze_days=3", "--at", "soon"), "生效时间的格式应为"),
    (("freeze_days=3", "--reason", " "), "请填写修改原因"),
])
def test_bad_input_is_a_clear_message_and_changes_nothing(app, args, message):
    if "--reason" not in args:
        args = (*args, "--reason", "试试")
    result = _cli(app, "set", *args)
    assert result.exit_code == 1 and message in result.output
    assert db.session.scalar(select(func.count()).select_from(RuleVersion)) == 0


def test_a_malformed_assignment_is_a_usage_error(app):
    result = _cli(app, "set", "level1_rate_bp", "--reason", "x")
    assert result.exit_code == 2 and "expected KEY=VALUE" in result.output
    assert _cli(app, "cancel", "999", "--reason", "x").exit_code == 1
