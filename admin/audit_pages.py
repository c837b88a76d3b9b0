"""The audit log (owner and finance): who changed what, newest first, with
filters; one entry's before and after side by side. Read only: no route
edits or deletes an entry."""
from __future__ import annotations

from datetime import date, datetime, timedelta

from flask import render_template

from handlers import audit
from handlers.clock import CHINA
from handlers.errors import DomainError

from . import bp
from .auth import requires
from .support import PAGE_SIZE, before_arg, filter_args, keyset

FILTERS = ("actor", "action", "target_type", "target_id", "since", "until")


def _day(value: str, label: str) -> datetime | None:
    """A date typed in China time (YYYY-MM-DD) as the UTC moment its day starts."""
    if not value:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise DomainError(f"{label}的格式应为 年-月-日，例如 2026-12-01") from None
    return datetime(day.year, day.month, day.day, tzinfo=CHINA)


@bp.get("/audit")
@requires("audit.view")
def audit_log():
    args = filter_args(*FILTERS)
    since, until = _day(args.get("since", ""), "开始日期"), _day(args.get("until", ""), "结束日期")
    rows = audit.entries(actor=args.get("actor"), action=args.get("action"), target_type=args.get("target_type"),
                         target_id=args.get("target_id"), since=since,
                         until=until + timedelta(days=1) if until else None,  # the end day is included
                         before_id=before_arg(), limit=PAGE_SIZE + 1)
    shown, next_before = keyset(rows)
    if before_arg():
        args["before"] = str(before_arg())
    return render_template("admin/audit.html", entries=shown, next_before=next_before, args=args,
                           actors=audit.actors(), target_types=audit.target_types())


@bp.get("/audit/<id:entry_id>")
@requires("audit.view")
def audit_entry(entry_id: int):
    entry = audit.get_entry(entry_id)
    return render_template("admin/audit_entry.html", entry=entry, changes=audit.diff(entry.before, entry.after))
