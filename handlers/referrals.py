"""Attribution: who brought a user (PRODUCT.md flow 2).

The first distributor to reach a user owns them for good. The binding is one
conditional UPDATE (``referrer_id IS NULL``), so two distributors racing for
the same new user leave exactly one owner whatever the interleaving; every
touch, binding or not, is appended to ``referral_touches``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import exists, select, update
from sqlalchemy.orm import joinedload
from sqlalchemy.orm.attributes import set_committed_value

from models import Distributor, ReferralTouch, Source, TouchOutcome, Unit, User, db

from . import notifications
from .clock import now
from .codes import normalise_invite_code

log = logging.getLogger(__name__)
MAX_TOKEN = 64


@dataclass
class Touch:
    outcome: TouchOutcome
    unit: Unit | None  # the unit the token named, if any

    @property
    def bound(self) -> bool:
        return self.outcome is TouchOutcome.BOUND


def find_unit(source: Source, token: str) -> Unit | None:
    """The unit a QR scene, link slug or invite code names; None if none does."""
    if source is Source.QR:
        where = Unit.scene == token
    elif source is Source.LINK:
        where = Unit.slug == token
    elif source is Source.INVITE:
        code = normalise_invite_code(token)
        if code is None:
            return None
        where = Unit.invite_code == code
    else:
        raise ValueError(f"not a referral source: {source}")
    return db.session.scalars(select(Unit).where(where).options(joinedload(Unit.distributor))).one_or_none()


def attribute_referral(user: User, source: Source, token: str, at: datetime | None = None) -> Touch:
    at = at or now()
    token = (token or "").strip()[:MAX_TOKEN]
    unit = find_unit(source, token) if token else None
    outcome = _decide(user, unit, source, at)
    db.session.add(ReferralTouch(user_id=user.id, unit_id=unit.id if unit else None, source=source.value,
                                 token=token, outcome=outcome.value, at=at))
    db.session.flush()
    if outcome is TouchOutcome.UNKNOWN:
        log.info("unknown %s token %r from user %s: treated as organic", source.value, token, user.id)
    return Touch(outcome, unit)


def _decide(user: User, unit: Unit | None, source: Source, at: datetime) -> TouchOutcome:
    if unit is None:
        return TouchOutcome.UNKNOWN
    if unit.is_merchant:
        return TouchOutcome.MERCHANT
    owner = unit.distributor
    if not owner.is_active:
        return TouchOutcome.UNKNOWN
    if owner.user_id == user.id:
        return TouchOutcome.SELF
    bound = db.session.execute(
        update(User)
        .where(User.id == user.id, User.referrer_id.is_(None),
               # A distributor's place was fixed at approval; binding them now
               # could only make a loop or a third level.
               ~exists().where(Distributor.user_id == User.id))
        .values(referrer_id=owner.user_id, source=source.value, attributed_at=at)
        .execution_options(synchronize_session=False)
    ).rowcount == 1
    if not bound:
        return TouchOutcome.DISTRIBUTOR if distributor_of(user.id) else TouchOutcome.ALREADY_OWNED
    for name, value in (("referrer_id", owner.user_id), ("source", source.value), ("attributed_at", at)):
        set_committed_value(user, name, value)  # what the UPDATE wrote, without reading it back
    log.info("user %s attributed to distributor %s via %s", user.id, owner.id, source.value)
    notifications.new_member(owner, user, at)
    return TouchOutcome.BOUND


def distributor_of(user_id: int) -> Distributor | None:
    return db.session.scalars(select(Distributor).where(Distributor.user_id == user_id)).one_or_none()


def owner_of(user: User) -> Distributor | None:
    """The distributor who owns this customer, if any."""
    return distributor_of(user.referrer_id) if user.referrer_id else None
