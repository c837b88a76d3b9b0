"""The audit log (owner and finance): who changed what, newest first, with
filters; one entry's before and after side by side. Read only: no route
edits or deletes an entry."""
from __future__ import annotations

from flask import render_template

from handlers import audit

from . import bp
from .auth import requires
from .exports import button as export_button
from .support import PAGE_SIZE, before_arg, filter_args, keyset

FILTERS = audit.FILTERS


@bp.get("/audit")
@requires("audit.view")
def audit_log():
    args = filter_args(*FILTERS)
    rows = audit.search(args, before_id=before_arg(), limit=PAGE_SIZE + 1)
    shown, next_before = keyset(rows)
    export_args = dict(args)
    if before_arg():
        args["before"] = str(before_arg())
    return render_template("admin/audit.html", entries=shown, next_before=next_before, args=args,
                           actors=audit.actors(), target_types=audit.target_types(),
                           export=export_button("audit", export_args))


@bp.get("/audit/<id:entry_id>")
@requires("audit.view")
def audit_entry(entry_id: int):
    entry = audit.get_entry(entry_id)
    return render_template("admin/audit_entry.html", entry=entry, changes=audit.diff(entry.before, entry.after))
