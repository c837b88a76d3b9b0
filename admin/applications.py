"""分销申请: the review queue, an application's detail, approve, reject
(a preset or a free reason) and the bulk decision (previewed, then
confirmed). Each view parses the request, calls one handler, renders."""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import render_template, request, url_for

from handlers import application_queue as queue
from handlers import applications as decisions

from . import bp
from .auth import actor, is_htmx, requires
from .exports import button as export_button
from .support import PAGE_SIZE, before_arg, done, keyset, run

LIST = "admin/applications.html"
ROW = "admin/application_row.html"


def _after_arg() -> int | None:
    value = request.args.get("after", "")
    return int(value) if value.isascii() and value.isdigit() and 0 < int(value) < 2**31 else None


def _back(default: str) -> str:
    """Where a plain form returns: the page it came from (the list with its
    filters, or the detail), never outside the applications pages."""
    target = request.form.get("next", "")
    if target.startswith("/admin/applications") and not urlsplit(target).netloc and "\\" not in target:
        return target
    return default


def _common() -> dict:
    return {"presets": decisions.REJECT_PRESETS, "max_reason": decisions.MAX_REJECT_REASON,
            "max_bulk": decisions.MAX_BULK}


@bp.get("/applications")
@requires("applications.view")
def applications():
    filters = queue.parse_filters(request.args)
    rows = queue.list_queue(filters, before=before_arg(), after=_after_arg(), limit=PAGE_SIZE)
    rows, next_cursor = keyset(rows, PAGE_SIZE)
    cursor_name = "after" if filters.order == "oldest" else "before"
    return render_template(LIST, rows=rows, filters=filters, next_cursor=next_cursor, cursor_name=cursor_name,
                           paged=bool(request.args.get("before") or request.args.get("after")),
                           statuses=queue.STATUSES, orders=queue.ORDERS, here=request.full_path,
                           export=export_button("applications", filters.args()), **_common())


@bp.get("/applications/<id:application_id>")
@requires("applications.view")
def application(application_id: int):
    return render_template("admin/application.html", detail=queue.detail(application_id),
                           here=request.path, **_common())


def _decided(application_id: int, message: str):
    """A plain form goes back where it came from; htmx gets the row (or the
    detail's decision card) in its new state."""
    if is_htmx():
        fragment = "admin/application_decision.html" if request.form.get("from") == "detail" else ROW
        return done(message, "", fragment, r=queue.row(application_id), **_common())
    return done(message, _back(url_for("admin.application", application_id=application_id)))


@bp.post("/applications/<id:application_id>/approve")
@requires("applications.act")
def application_approve(application_id: int):
    distributor = run(decisions.approve_application, application_id, actor=actor())
    level = "一" if distributor.level == 1 else "二"
    return _decided(application_id, f"申请 {application_id} 已通过，{distributor.real_name} 成为{level}级分销商")


@bp.post("/applications/<id:application_id>/reject")
@requires("applications.act")
def application_reject(application_id: int):
    run(decisions.reject_application, application_id, request.form.get("reason", ""), actor=actor(),
        preset=request.form.get("preset", ""))
    return _decided(application_id, f"申请 {application_id} 已驳回，申请人会收到通知")


@bp.post("/applications/bulk")
@requires("applications.act")
def applications_bulk():
    """Step 1 (``step=preview``, from the list's checkboxes) shows what would
    happen and changes nothing; step 2 (``step=confirm``) decides each one.
    The result is rendered, not redirected to: it is a per-id report, and
    sending the same confirm again decides nothing twice (each is skipped as
    already decided)."""
    ids, decision = request.form.getlist("ids"), request.form.get("decision", "")
    reason, preset = request.form.get("reason", ""), request.form.get("preset", "")
    if request.form.get("step") == "confirm":
        outcomes = run(decisions.bulk_decide, ids, decision, reason, preset, actor=actor())
        return render_template("admin/applications_bulk_done.html", outcomes=outcomes,
                               decision_name=decisions.DECISIONS[decision],
                               done_count=sum(o.done for o in outcomes))
    return render_template("admin/applications_bulk.html", preview=queue.preview(ids, decision, reason, preset))
