"""Units (交易单元): the merchant's own and one per distributor."""
from __future__ import annotations

import logging

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from models import Distributor, QRStatus, Unit, User, db

from . import codes, outbox
from .errors import NotFound

log = logging.getLogger(__name__)
ATTEMPTS = 8


def merchant_unit() -> Unit:
    return db.session.scalars(select(Unit).where(Unit.distributor_id.is_(None)).order_by(Unit.id)).first()


def unit_by_slug(slug: str) -> Unit | None:
    if not slug or len(slug) > 16:
        return None
    return db.session.scalars(select(Unit).where(Unit.slug == slug)).one_or_none()


def get_unit(unit_id: int) -> Unit:
    unit = db.session.get(Unit, unit_id)
    if unit is None:
        raise NotFound("小店不存在")
    return unit


def ensure_prepared(unit: Unit) -> None:
    """Ask again for a QR code or poster that is still missing (the job is
    idempotent and keyed by unit, so asking twice queues it once)."""
    if not unit.is_merchant and (unit.qr_status != QRStatus.READY.value or not unit.poster_version):
        outbox.after_commit("wxbot.unit_jobs.prepare_unit", unit.id, job_id=f"prepare-unit-{unit.id}")


def create_unit(distributor: Distributor, name: str) -> Unit:
    """A unit with a fresh link, invite code and QR scene; the QR code and the
    poster are made in the background (``wxbot.jobs.prepare_unit``)."""
    for _ in range(ATTEMPTS):
        unit = Unit(distributor_id=distributor.id, name=name[:64], slug=codes.slug(),
                    invite_code=codes.invite_code(), scene=codes.scene())
        try:
            with db.session.begin_nested():  # a collision of random codes: draw again
                db.session.add(unit)
        except IntegrityError:
            log.warning("random unit codes collided; drawing again")
            continue
        ensure_prepared(unit)
        return unit
    raise RuntimeError("could not draw unique unit codes")


def shop_name(user: User) -> str:
    return f"{user.display_name}的小店"


def qr_created(unit_id: int, ticket: str, url: str) -> Unit:
    unit = get_unit(unit_id)
    unit.qr_ticket, unit.qr_url, unit.qr_status = ticket, url, QRStatus.READY.value
    return unit


def poster_rendered(unit_id: int, png: bytes) -> Unit:
    unit = get_unit(unit_id)
    unit.poster_png = png
    unit.poster_version += 1
    return unit


def units_missing_qr() -> list[int]:
    return list(db.session.scalars(select(Unit.id).where(
        Unit.distributor_id.is_not(None),
        (Unit.qr_status != QRStatus.READY.value) | (Unit.poster_version == 0))))


def count_units() -> int:
    return db.session.scalar(select(func.count()).select_from(Unit))
