"""``flask --app wsgi staff …``: accounts made, listed, disabled and given a
role from the command line, each change audited as ``cli:<login>``."""
from __future__ import annotations

import getpass

import requests
from sqlalchemy import func, select

from admin_helpers import log_in
from models import AuditEntry, Staff, db

SECRET = "a long secret 1"


def _cli(app, *args: str, input: str | None = None):
    result = app.test_cli_runner().invoke(args=["staff", *args], input=input)
    db.session.rollback()
    return result


def _audit(action: str) -> list[AuditEntry]:
    db.session.rollback()
    return list(db.session.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)))


def _count_staff() -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(Staff))


def test_create_with_password_on_stdin_then_log_in(app, base):
    result = _cli(app, "create", "Boss", "--role", "owner", "--password-stdin", input=SECRET + "\n")
    assert result.exit_code == 0, result.output
    assert "staff boss (owner) created" in result.output
    assert SECRET not in result.output
    [entry] = _audit("staff.create")
    assert entry.actor == f"cli:{getpass.getuser()}" and entry.staff_id is None
    assert entry.after == {"name": "boss", "role": "owner"}
    member = db.session.scalars(select(Staff)).one()
    assert member.password_hash.startswith("$argon2id$") and SECRET not in member.password_hash
    assert log_in(requests.Session(), base, "boss", SECRET).status_code == 302


def test_create_prompts_twice_when_no_stdin_flag(app):
    result = _cli(app, "create", "packer", "--role", "shipping", input=f"{SECRET}\n{SECRET}\n")
    assert result.exit_code == 0, result.output
    assert result.output.count("Password") >= 1 and "Repeat" in result.output
    assert SECRET not in result.output  # hidden input
    assert db.session.scalars(select(Staff.role).where(Staff.name == "packer")).one() == "shipping"


def test_prompt_with_two_different_passwords_creates_nothing(app):
    result = _cli(app, "create", "packer", "--role", "shipping", input=f"{SECRET}\nsomething else\n")
    assert result.exit_code != 0
    assert "do not match" in result.output
    assert _count_staff() == 0 and _audit("staff.create") == []


def test_bad_input_is_a_clear_message_and_exit_code_1(app):
    assert _cli(app, "create", "boss", "--role", "owner", "--password-stdin", input=SECRET + "\n").exit_code == 0
    cases = [
        (("create", "carol", "--role", "king", "--password-stdin"), SECRET, "角色只能是 owner, operator, finance, shipping"),
        (("create", "carol", "--role", "owner", "--password-stdin"), "short", "密码至少 10 个字符"),
        (("create", "carol", "--role", "owner", "--password-stdin"), "", "密码至少 10 个字符"),
        (("create", "Boss", "--role", "finance", "--password-stdin"), SECRET, "用户名 boss 已被使用"),
        (("create", "9lives", "--role", "owner", "--password-stdin"), SECRET, "用户名为 3-32 位"),
        (("disable", "nobody"), None, "没有名为 nobody 的员工"),
        (("role", "boss", "emperor"), None, "角色只能是"),
        (("role", "nobody", "owner"), None, "没有名为 nobody 的员工"),
    ]
    for args, password, message in cases:
        result = _cli(app, *args, input=None if password is None else password + "\n")
        assert result.exit_code == 1, (args, result.exit_code, result.output)
        assert message in result.output and "Traceback" not in result.output, (args, result.output)
    assert _count_staff() == 1 and len(_audit("staff.create")) == 1


def test_bad_role_is_refused_before_asking_for_a_password(app):
    result = _cli(app, "create", "carol", "--role", "king", input="")
    assert result.exit_code == 1 and "角色只能是" in result.output and "Password" not in result.output


def test_list_shows_role_2fa_state_and_last_login(app, base):
    _cli(app, "create", "boss", "--role", "owner", "--password-stdin", input=SECRET + "\n")
    _cli(app, "create", "packer", "--role", "shipping", "--password-stdin", input=SECRET + "\n")
    assert log_in(requests.Session(), base, "boss", SECRET).status_code == 302
    _cli(app, "disable", "packer")
    out = _cli(app, "list").output.splitlines()
    assert len(out) == 2
    boss, packer = out
    assert "boss" in boss and "owner" in boss and "active" in boss and "last login" in boss
    assert "packer" in packer and "shipping" in packer and "disabled" in packer and "never logged in" in packer


def test_disable_ends_logins_and_is_audited_enable_reverses(app, base):
    _cli(app, "create", "packer", "--role", "shipping", "--password-stdin", input=SECRET + "\n")
    browser = requests.Session()
    assert log_in(browser, base, "packer", SECRET).status_code == 302
    result = _cli(app, "disable", "packer", "--reason", "离职")
    assert result.exit_code == 0 and "staff packer disabled" in result.output
    assert browser.get(f"{base}/admin/", allow_redirects=False).status_code == 302
    [entry] = _audit("staff.disable")
    assert entry.actor == f"cli:{getpass.getuser()}" and entry.reason == "离职"
    assert _cli(app, "disable", "packer").exit_code == 0 and len(_audit("staff.disable")) == 1  # once
    assert log_in(requests.Session(), base, "packer", SECRET).status_code == 401
    assert _cli(app, "enable", "packer").exit_code == 0
    assert _audit("staff.enable")[0].actor.startswith("cli:")
    assert log_in(requests.Session(), base, "packer", SECRET).status_code == 302


def test_role_change_is_audited(app):
    _cli(app, "create", "amy", "--role", "operator", "--password-stdin", input=SECRET + "\n")
    result = _cli(app, "role", "amy", "finance", "--reason", "调岗")
    assert result.exit_code == 0, result.output
    [entry] = _audit("staff.role")
    assert (entry.before, entry.after, entry.reason) == ({"role": "operator"}, {"role": "finance"}, "调岗")
    assert entry.actor.startswith("cli:")
