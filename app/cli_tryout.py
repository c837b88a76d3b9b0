"""The try-out's demo owner: ``flask --app wsgi tryout owner``.

``make run`` runs it before serving, so a newcomer can open /admin at once
and play the merchant beside the phone simulator's buyers and distributors.
Only in the try-out (FENXIAO_TRYOUT=1): a real deployment makes its first
owner with ``flask --app wsgi staff create NAME --role owner``. The password
is random, made once and kept beside the try-out's other secrets
(var/tryout-admin.json, mode 600), so every restart prints the same login.
"""
from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

import click
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app
from flask.cli import AppGroup

from handlers import audit, outbox
from handlers import staff as staff_rules
from handlers.errors import DomainError, NotFound

tryout_cli = AppGroup("tryout", help="The built-in try-out (FENXIAO_TRYOUT=1).")
DEMO_NAME = "demo"
SECRETS_FILE = "tryout-admin.json"


def secrets_path() -> Path:
    # Where config.load keeps tryout-secrets.json (FENXIAO_INSTANCE, else var/).
    return Path(os.environ.get("FENXIAO_INSTANCE") or current_app.instance_path) / SECRETS_FILE


def _kept_password(path: Path) -> str:
    """The demo owner's password, made once and kept (written before the
    account is made, so a crash in between loses nothing)."""
    try:
        kept = json.loads(path.read_text())
        if isinstance(kept, dict) and isinstance(kept.get("password"), str) and kept["password"]:
            return kept["password"]
    except (OSError, ValueError):
        pass
    password = secrets.token_urlsafe(12)  # 16 characters, above the 10 a password needs
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"name": DEMO_NAME, "password": password}))
    path.chmod(0o600)
    return password


def _password_works(password_hash: str, password: str) -> bool:
    try:
        return staff_rules.HASHER.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@tryout_cli.command("owner")
def owner() -> None:
    """Make the demo owner once (idempotent) and print its login."""
    settings = current_app.config["SETTINGS"]
    if not settings.tryout:
        raise click.ClickException(
            "the demo owner is only for the try-out (FENXIAO_TRYOUT=1); make the first owner of a real "
            "deployment with: flask --app wsgi staff create NAME --role owner --password-stdin")
    password = _kept_password(secrets_path())
    try:
        member = staff_rules.get_by_name(DEMO_NAME)
    except NotFound:
        try:
            member = staff_rules.create_staff(DEMO_NAME, "owner", password, audit.cli_actor())
            outbox.commit()
        except DomainError:  # another `make run` made it just now
            outbox.rollback()
            member = staff_rules.get_by_name(DEMO_NAME)
    login = f"{settings['app']['base_url']}/admin/login"
    if not member.is_active:
        click.echo(f"  The admin (商家后台): {login}    the demo owner {DEMO_NAME} is disabled")
    elif _password_works(member.password_hash, password):
        click.echo(f"  The admin (商家后台): {login}    name: {DEMO_NAME}    password: {password}")
    else:
        click.echo(f"  The admin (商家后台): {login}    name: {DEMO_NAME}    password: the one you changed it to")
    outbox.rollback()  # nothing else to write; end the read transaction
