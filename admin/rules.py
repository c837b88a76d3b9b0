"""The merchant's rules (commission rates, review, withdrawals, order
timings) as versioned settings edited on a page, each version effective
from a time.

Every rule is in handlers.rules; a view parses the form, calls one handler
with the staff member as the actor, and answers."""
from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for

from handlers import outbox
from handlers import rules as rules_
from handlers.clock import CHINA, now
from handlers.errors import DomainError

from . import bp
from .auth import actor, requires
from .exports import button as export_button
from .support import before_arg, keyset, run

STATE_NAMES = {state: (text, {"current": "success", "scheduled": "warning"}.get(state, "info"))
               for state, text in rules_.STATE_TEXT.items()}


def _page(typed: dict[str, str] | None = None, *, error: str | None = None, status: int = 200,
          when: str = "now", effective_at: str = "", reason: str = ""):
    view = rules_.overview()
    values = {row.rule.key: rules_.form_text(row.rule.key, row.value) for _, rows in view.groups for row in rows}
    values.update(typed or {})
    return render_template("admin/rules.html", view=view, values=values, error=error, when=when,
                           effective_at=effective_at, reason=reason, show=rules_.show,
                           review_names=rules_.REVIEW_NAMES, fixed=rules_.FIXED,
                           now_local=view.at.astimezone(CHINA).strftime("%Y-%m-%dT%H:%M")), status


def _revision_seen() -> int | None:
    seen = request.form.get("revision", "")
    return int(seen) if seen.isascii() and seen.isdigit() and len(seen) < 10 else None


@bp.get("/rules")
@requires("rules.view")
def rules():
    return _page()


def _said(saved, review_changed: bool) -> str:
    start = saved[0].effective_from
    changes = "，".join(f"{rules_.RULES[v.key].label} {rules_.show(v.key, v.value)}" for v in saved)
    when = "立即生效" if start <= now() else f"将于 {start.astimezone(CHINA):%Y-%m-%d %H:%M} 生效"
    said = f"已保存：{changes}；{when}"
    if review_changed:
        said += "。已在排队的分销申请不会因此自动通过，请到「分销申请」处理"
    return said


@bp.post("/rules")
@requires("rules.edit")
def rule_save():
    typed = {key: request.form[key] for key in rules_.RULES if key in request.form}
    when = "later" if request.form.get("when") == "later" else "now"
    effective_at, reason = request.form.get("effective_at", ""), request.form.get("reason", "")
    try:
        values = {key: rules_.parse(key, text) for key, text in typed.items()}
        start = rules_.chosen_start(when, effective_at)
        saved = run(rules_.save, values, reason=reason, actor=actor(), effective_from=start,
                    expected_revision=_revision_seen())
    except DomainError as exc:
        outbox.rollback()
        return _page(typed, error=exc.message, status=exc.status, when=when, effective_at=effective_at,
                     reason=reason)
    flash(_said(saved, any(v.key == "review" and v.value != "manual" for v in saved)), "success")
    return redirect(url_for("admin.rules"))


@bp.post("/rules/versions/<id:version_id>/cancel")
@requires("rules.edit")
def rule_cancel(version_id: int):
    try:
        version = run(rules_.cancel, version_id, reason=request.form.get("reason", ""), actor=actor(),
                      expected_revision=_revision_seen())
    except DomainError as exc:
        outbox.rollback()
        if exc.status == 404:
            raise
        flash(exc.message, "error")
        return redirect(url_for("admin.rules"))
    flash(f"已撤销：{rules_.RULES[version.key].label} {rules_.show(version.key, version.value)}"
          f"（原定 {version.effective_from.astimezone(CHINA):%Y-%m-%d %H:%M} 生效）", "success")
    return redirect(url_for("admin.rules"))


@bp.get("/rules/history")
@requires("rules.view")
def rule_history():
    key = request.args.get("key", "")
    key = key if key in rules_.RULES else ""
    found, next_before = keyset(rules_.history(key or None, before_arg()))
    at = now()
    current = rules_.in_effect_ids(at)
    return render_template("admin/rules_history.html", rows=[(v, rules_.state_of(v, current, at)) for v in found],
                           next_before=next_before, args={"key": key} if key else {}, key=key,
                           all_rules=rules_.RULES, show=rules_.show, state_names=STATE_NAMES,
                           export=export_button("rules", {"key": key} if key else {}))
