"""Staff accounts from the command line: ``flask --app wsgi staff …``.

The first owner is made here; later accounts can be made by an owner on the
admin's 员工 page too. Every change is audited as ``cli:<login>``.
"""
from __future__ import annotations

import sys

import click
from flask.cli import AppGroup

from handlers import audit
from handlers import staff as staff_rules

from .cli_support import row, run_handler

staff_cli = AppGroup("staff", help="The merchant's staff accounts for /admin.")


ROLES_HELP = ("owner: everything, staff management; operator: applications, distributors, products; "
              "finance: withdrawals, refunds, exports; shipping: ships orders.")


@staff_cli.command("create")
@click.argument("name")
@click.option("--role", required=True, metavar="|".join(staff_rules.ROLE_NAMES), help=ROLES_HELP)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input (one line).")
def create(name: str, role: str, password_stdin: bool) -> None:
    """Make a staff account that logs in at /admin."""
    run_handler(staff_rules.check_role, role)  # before asking for a password
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    member = run_handler(staff_rules.create_staff, name, role, password, audit.cli_actor())
    click.echo(f"staff {member.name} ({member.role}) created")


@staff_cli.command("list")
def list_staff() -> None:
    """Every account: name, role, 2FA, active or disabled, last login."""
    last = staff_rules.last_logins()
    for member in staff_rules.all_staff():
        row(member.id, member.name, member.role, "2fa" if member.has_2fa else "-",
            "active" if member.is_active else f"disabled {member.disabled_at:%Y-%m-%d %H:%M}Z",
            f"last login {last[member.id]:%Y-%m-%d %H:%M}Z" if member.id in last else "never logged in")


@staff_cli.command("disable")
@click.argument("name")
@click.option("--reason", default="", help="Kept in the audit log.")
def disable(name: str, reason: str) -> None:
    """Stop an account from logging in; its open logins end at once."""
    run_handler(staff_rules.disable, name, audit.cli_actor(), reason)
    click.echo(f"staff {name} disabled")


@staff_cli.command("enable")
@click.argument("name")
def enable(name: str) -> None:
    """Let a disabled account log in again."""
    run_handler(staff_rules.enable, name, audit.cli_actor())
    click.echo(f"staff {name} enabled")


@staff_cli.command("role")
@click.argument("name")
@click.argument("role", metavar="|".join(staff_rules.ROLE_NAMES))
@click.option("--reason", default="", help="Kept in the audit log.")
def change_role(name: str, role: str, reason: str) -> None:
    """Give an account another role; its open logins end."""
    member = run_handler(staff_rules.get_by_name, name)
    run_handler(staff_rules.change_role, member.id, role, audit.cli_actor(), reason)
    click.echo(f"staff {name} is now {role}")
