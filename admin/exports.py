"""Exports: every list as CSV (UTF-8 with a BOM, cells made inert), large ones as background
jobs with a download page; each export audited. The rules are in handlers.exports; a list
page shows the 导出 CSV button with ``button(name, filters)`` in its context."""
from __future__ import annotations

from urllib.parse import quote

from flask import Response, flash, redirect, render_template, request, send_file, url_for

from handlers import exports as rules

from . import bp
from .auth import actor, requires
from .support import run


def button(name: str, filters: dict[str, str]) -> dict:
    """What the list template's export form carries: the list, its current filters, a one-time key."""
    return {"list": name, "filters": dict(filters), "key": rules.new_request_key()}


def _attachment(name: str) -> str:
    # The ASCII fallback for old clients, the Chinese name as RFC 6266's filename*.
    return f"attachment; filename=\"export.csv\"; filename*=UTF-8''{quote(name)}"


@bp.post("/exports")
@requires("exports")
def export_start():
    result = run(rules.export, request.form.get("export_list", ""), request.form, actor(),
                 request.form.get("request_key", ""))
    if isinstance(result, rules.Small):
        return Response(rules.lines(result.source.headers, result.rows), mimetype="text/csv",
                        headers={"Content-Disposition": _attachment(result.file_name)})
    flash("数据较多，正在后台生成文件；完成后可在此下载（保留 7 天）", "success")
    return redirect(url_for("admin.export", export_id=result.id))


@bp.get("/exports")
@requires("exports")
def exports():
    run(rules.expire)
    return render_template("admin/exports.html", jobs=rules.mine(actor()), title_of=rules.title_of,
                           state_names=rules.STATE_NAMES, keep_days=rules.KEEP.days)


@bp.get("/exports/<id:export_id>")
@requires("exports")
def export(export_id: int):
    job = rules.get_mine(export_id, actor())
    template = "admin/export_state.html" if request.headers.get("HX-Request") == "true" else "admin/export.html"
    return render_template(template, job=job, title=rules.title_of(job.source), state_names=rules.STATE_NAMES,
                           keep_days=rules.KEEP.days)


@bp.get("/exports/<id:export_id>/download")
@requires("exports")
def export_download(export_id: int):
    path, name = run(rules.download, export_id, actor())
    answer = send_file(path, mimetype="text/csv", max_age=0)
    answer.headers["Content-Disposition"] = _attachment(name)
    return answer
