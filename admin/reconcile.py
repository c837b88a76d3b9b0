"""Reconciliation: each day's WeChat Pay and Alipay bills against the payments, refunds and
transfers recorded here; every difference listed and resolved with a note.

The days with each gateway's state, one day's differences, a run for a day
(reconcile.act) and resolving a difference with a note (reconcile.act,
audited). Every rule is in handlers.reconcile."""
from __future__ import annotations

from flask import render_template, request, url_for

from handlers import reconcile as rules

from . import bp
from .auth import actor, requires
from .exports import button as export_button
from .support import done, run

STATE_NAMES = {"clean": ("无差异", "success"), "differences": ("有差异", "danger"), "failed": ("失败", "danger")}


def _context(**extra):
    return dict(channels=rules.CHANNELS, kind_names=rules.KIND_NAMES, problem_names=rules.PROBLEM_NAMES,
                state_names=STATE_NAMES, today=rules.today(), **extra)


@bp.get("/reconcile")
@requires("reconcile.view")
def reconcile():
    return render_template("admin/reconcile.html", **_context(days=rules.overview()))


@bp.get("/reconcile/<day>")
@requires("reconcile.view")
def reconcile_day(day: str):
    chosen = rules.parse_day(day)
    runs, diffs = rules.day_detail(chosen)
    return render_template("admin/reconcile_day.html", **_context(
        day=chosen, runs=runs, diffs=diffs, export=export_button("reconcile", {"day": chosen.isoformat()})))


@bp.post("/reconcile/run")
@requires("reconcile.act")
def reconcile_run():
    day = rules.parse_day(request.form.get("day", ""))
    done_runs = run(rules.run_day, day, actor=actor())
    said = "；".join(f"{rules.CHANNELS[r.channel]}：" + (
        f"失败（{r.message}）" if r.state == "failed" else
        f"{r.differences} 条差异" if r.differences else "无差异") for r in done_runs)
    return done(f"{day.isoformat()} 已对账。{said}", url_for("admin.reconcile_day", day=day.isoformat()))


@bp.post("/reconcile/differences/<id:difference_id>/resolve")
@requires("reconcile.act")
def reconcile_resolve(difference_id: int):
    d = run(rules.resolve, difference_id, request.form.get("note", ""), actor=actor())
    return done("已处理，处理说明已记录", url_for("admin.reconcile_day", day=d.day.isoformat()))
