"""Distributor pages: apply, application status, centre (with the reach of
their shares), my QR code, my team, and the unit's shared links (the shop's
and a product's) that attribute whoever opens them."""
from __future__ import annotations

from datetime import timedelta

from flask import Response, abort, redirect, render_template, request, url_for

from handlers import (applications, catalogue, commissions, jssdk, notifications, outbox, reach, referrals, settings,
                      team, units)
from handlers.clock import now
from handlers.errors import DomainError
from models import ApplicationStatus, Source

from . import bp
from .auth import current_user, login_required
from .shop import remember_guest_unit, render_product, render_shop, share_context, shop_page, visitor_key


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
                           unit_url=unit_url(distributor.unit), team=team.counts_of(distributor),
                           balance=commissions.balance_of(distributor.id), reach=reach.reach_of(distributor.unit.id),
                           unread=notifications.unread_count(distributor.user))


@bp.get("/qrcode")
@login_required
def qrcode():
    distributor = _distributor_or_apply()
    unit = distributor.unit
    units.ensure_prepared(unit)
    outbox.commit()
    return render_template("qrcode.html", d=distributor, unit=unit, unit_url=unit_url(unit),
                           **share_context(jssdk.unit_share(unit)))


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
    and lands in that shop. An unknown link is the merchant's shop. Query
    values WeChat adds to a shared link (``from``, ``isappinstalled``)
    change nothing."""
    unit, touch = arrive(slug)
    return render_shop(unit, touch)


@bp.get("/u/<slug>/p/<id:product_id>")
@shop_page
def unit_product_link(slug: str, product_id: int):
    """A product shared from a unit: attributes like the unit's link, and
    shows the product."""
    item = catalogue.get_product(product_id)
    unit, touch = arrive(slug, item.id)
    return render_product(item, unit, touch)


def arrive(slug: str, product_id: int | None = None):
    """Someone opened a unit's (or a unit's product's) link: attribute them,
    log the visit; the unit they land in. A guest outside WeChat is
    remembered in their session instead of attributed."""
    user, touch = current_user(), None
    if user is None:
        unit = units.unit_by_slug(slug)
        if unit is None or (unit.distributor is not None and not unit.distributor.is_active):
            unit = units.merchant_unit()
        remember_guest_unit(unit)
    else:
        touch = referrals.attribute_referral(user, Source.LINK, slug)
        unit = touch.unit if touch.unit and touch.outcome.value != "unknown" else units.merchant_unit()
    reach.log_visit(unit, visitor_key(), user, product_id)
    outbox.commit()
    return unit, touch


def unit_url(unit) -> str:
    return settings.page_url(f"u/{unit.slug}")
