"""The merchant's side until the management platform exists:
``flask --app wsgi applications list | approve ID | reject ID --reason …``
and ``flask --app wsgi units prepare``."""
from __future__ import annotations

import click
from flask.cli import AppGroup

from .cli_support import row, run_handler

from handlers import applications, outbox, units

applications_cli = AppGroup("applications", help="Review distributor applications.")
units_cli = AppGroup("units", help="Distributors' units (shops, QR codes, posters).")
CST_FORMAT = "%Y-%m-%d %H:%M"


@applications_cli.command("list")
def list_applications() -> None:
    """Applications waiting for review, oldest first."""
    from h5 import china_time

    pending = applications.pending_applications()
    if not pending:
        click.echo("no applications waiting")
    for a in pending:
        row(a.id, china_time(a.created_at, CST_FORMAT), a.real_name, a.mobile, a.user.display_name, a.reason[:60])


@applications_cli.command("approve")
@click.argument("application_id", type=int)
@click.option("--by", default="merchant", help="Who decided (kept on the application).")
def approve(application_id: int, by: str) -> None:
    run_handler(applications.approve_application, application_id, by)
    click.echo(f"application {application_id} approved")


@applications_cli.command("reject")
@click.argument("application_id", type=int)
@click.option("--reason", required=True, help="Shown to the applicant.")
@click.option("--by", default="merchant", help="Who decided (kept on the application).")
def reject(application_id: int, reason: str, by: str) -> None:
    run_handler(applications.reject_application, application_id, reason, by)
    click.echo(f"application {application_id} rejected")


@units_cli.command("prepare")
def prepare() -> None:
    """Queue QR code and poster creation for every unit still missing one
    (safe to run any time, e.g. from cron)."""
    missing = units.units_missing_qr()
    for unit_id in missing:
        outbox.after_commit("wxbot.unit_jobs.prepare_unit", unit_id, job_id=f"prepare-unit-{unit_id}")
    outbox.commit()
    click.echo(f"{len(missing)} unit(s) queued")
