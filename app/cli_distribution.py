"""The merchant's side from the command line (scripts; /admin does the same):
``flask --app wsgi applications list | approve ID | reject ID --reason …``
and ``flask --app wsgi units prepare``."""
from __future__ import annotations

import click
from flask.cli import AppGroup

from .cli_support import row, run_handler

from handlers import applications, audit, outbox, units
from handlers.errors import Conflict

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


def _decide(action, *args, **kwargs):
    """A second decision says who decided first, and (for scripts that
    look for it) the state machine's own words."""
    try:
        return action(*args, **kwargs)
    except applications.AlreadyDecided as exc:
        raise Conflict(f"{exc.message} ({Exception.__str__(exc)})") from None


@applications_cli.command("approve")
@click.argument("application_id", type=int)
def approve(application_id: int) -> None:
    """Approve: the applicant becomes a distributor (audited as cli:<login>)."""
    run_handler(_decide, applications.approve_application, application_id, actor=audit.cli_actor())
    click.echo(f"application {application_id} approved")


@applications_cli.command("reject")
@click.argument("application_id", type=int)
@click.option("--reason", required=True, help="Shown to the applicant.")
def reject(application_id: int, reason: str) -> None:
    """Reject with a reason the applicant reads (audited as cli:<login>)."""
    run_handler(_decide, applications.reject_application, application_id, reason, actor=audit.cli_actor())
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
