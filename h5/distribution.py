"""Distributor pages: apply, application status, centre, my QR code, my team,
and the unit link that attributes whoever opens it."""
from __future__ import annotations

from datetime import timedelta

from flask import Response, abort, redirect, render_template, request, url_for

from handlers import applications, commissions, notifications, outbox, referrals, settings, team, units
from handlers.clock import now
from handlers.errors import DomainError
from models import ApplicationStatus, Source

from . import bp
from .auth import current_user, login_required
from .shop import remember_guest_unit, render_shop, shop_page


def _distributor_or_apply():
    distributor = referrals.distributor_of(current_user().id)
    if distributor is None:
        abort(redirect(url_for("h5.apply")))
    return distributor


@bp.route("/apply", methods=["GET", "POST"])
@login_required(profile=True)  # the shop is named after the applicant, the poster shows their avatar
def apply():
    user = current_user()
    if referrals.distributor_of(user.id):
        return redirect(url_for("h5.center"))
    error, form = None, {}
    if request.method == "POST":
        form = request.form
        try:
            applications.apply_for_distributor(user, form.get("real_name", ""), form.get("mobile", ""),
                                               form.get("reason", ""), form.get("invite_code", ""))
            outbox.commit()
            return redirect(url_for("h5.apply"))
        except DomainError as exc:
            outbox.rollback()
            error = exc.message
    latest = applications.latest_application(user.id)
    cooldown = timedelta(hours=settings.section("distribution")["reapply_cooldown_hours"])
    can_apply = latest is None or (latest.status == ApplicationStatus.REJECTED.value
                                   and latest.decided_at + cooldown <= now())
    return render_template("apply.html", user=user, latest=latest, can_apply=can_apply, error=error, form=form,
                           reapply_at=latest.decided_at + cooldown if latest and latest.decided_at else None,
                           owner=referrals.owner_of(user)), 400 if error else 200


@bp.get("/center")
@login_required
def center():
    distributor = _distributor_or_apply()
    return render_template("center.html", d=distributor, unit=distributor.unit,
                           unit_url=unit_url(distributor.unit), team=team.team_of(distributor),
                           balance=commissions.balance_of(distributor.id),
                           unread=notifications.unread_count(distributor.user))


@bp.get("/qrcode")
@login_required
def qrcode():
    distributor = _distributor_or_apply()
    unit = distributor.unit
    units.ensure_prepared(unit)
    outbox.commit()
    return render_template("qrcode.html", d=distributor, unit=unit, unit_url=unit_url(unit))


@bp.get("/qrcode/poster.png")
@login_required
def poster():
    unit = _distributor_or_apply().unit
    if not unit.poster_version:
        abort(404)
    return Response(unit.poster_png, mimetype="image/png", headers={"Cache-Control": "private, max-age=300"})


@bp.get("/team")
@login_required
def my_team():
    distributor = _distributor_or_apply()
    return render_template("team.html", d=distributor, team=team.team_of(distributor))


@bp.get("/u/<slug>")
@shop_page
def unit_link(slug: str):
    """A shared unit link: whoever opens it is attributed (first touch wins),
    and lands in that shop. An unknown link is the merchant's shop. A guest
    outside WeChat is remembered in their session instead."""
    user = current_user()
    if user is None:
        unit = units.unit_by_slug(slug)
        if unit is None or (unit.distributor is not None and not unit.distributor.is_active):
            unit = units.merchant_unit()
        remember_guest_unit(unit)
        return render_shop(unit)
    touch = referrals.attribute_referral(user, Source.LINK, slug)
    outbox.commit()
    unit = touch.unit if touch.unit and touch.outcome.value != "unknown" else units.merchant_unit()
    return render_shop(unit, touch)


def unit_url(unit) -> str:
    return settings.page_url(f"u/{unit.slug}")
