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

from sqlalchemy import Integer, String, bindparam, column, exists, insert, select, text, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import joinedload
from sqlalchemy.orm.attributes import set_committed_value

from models import (Distributor, DistributorStatus, FirstContact, ReferralTouch, Source, Subscription, TouchOutcome,
                    Unit, User, db)

from . import notifications, users
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


def _refused(unit: Unit | UnitView | None) -> TouchOutcome | None:
    """What a code that binds nobody says; None when its distributor may bind.
    (The one-statement follow on PostgreSQL spells the same rule in SQL.)"""
    if unit is None:
        return TouchOutcome.UNKNOWN
    if unit.is_merchant:
        return TouchOutcome.MERCHANT
    if not unit.distributor.is_active:
        return TouchOutcome.UNKNOWN
    return None


def _decide(user: User, unit: Unit | None, source: Source, at: datetime) -> TouchOutcome:
    refused = _refused(unit)
    if refused is not None:
        return refused
    owner = unit.distributor
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


# --- a new follower through a QR code: two statements, no ORM ---------------------------
# The event a viral poster brings by the thousand. A person new to us cannot
# be the code's owner, a distributor or anyone's already, so the binding is
# decided before the INSERT that creates them; their profile and their
# distributor's notice follow in a batch (``users.want_profiles``). Anyone
# already known takes the general path (``attribute_referral``).

@dataclass(frozen=True)
class Person:
    """A user as a reply shows them."""
    openid: str
    nickname: str | None = None
    display_name = property(User.display_name.fget)


@dataclass(frozen=True)
class OwnerView:
    id: int
    user_id: int
    status: str
    user: Person

    @property
    def is_active(self) -> bool:
        return self.status == DistributorStatus.ACTIVE.value


@dataclass(frozen=True)
class UnitView:
    """The unit a scene names, read in one statement with its owner."""
    id: int
    name: str
    slug: str
    distributor: OwnerView | None

    @property
    def is_merchant(self) -> bool:
        return self.distributor is None


@dataclass(frozen=True)
class NewFollower:
    user: Person
    touch: Touch


_units, _distributors = Unit.__table__, Distributor.__table__
_users, _touches = User.__table__, ReferralTouch.__table__

_UNIT_BY_SCENE = (
    select(_units.c.id, _units.c.name, _units.c.slug, _units.c.distributor_id,
           _distributors.c.user_id.label("owner_user_id"), _distributors.c.status,
           _users.c.openid.label("owner_openid"), _users.c.nickname.label("owner_nickname"))
    .select_from(_units.outerjoin(_distributors, _distributors.c.id == _units.c.distributor_id)
                 .outerjoin(_users, _users.c.id == _distributors.c.user_id))
    .where(_units.c.scene == bindparam("scene", type_=String)))


_NEW_USER_SQLITE = (
    sqlite.insert(_users)
    .values(openid=bindparam("openid"), first_contact=FirstContact.SCAN.value,
            subscription=Subscription.SUBSCRIBED.value, created_at=bindparam("created_at"),
            subscribed_at=bindparam("subscribed_at"), last_interaction_at=bindparam("interaction_at"),
            referrer_id=bindparam("referrer_id"), source=bindparam("source"), attributed_at=bindparam("attributed_at"))
    .on_conflict_do_nothing(index_elements=["openid"])
    .returning(_users.c.id))
_TOUCH = insert(_touches).values(user_id=bindparam("user_id"), unit_id=bindparam("unit_id"),
                                 source=bindparam("touch_source"), token=bindparam("token"),
                                 outcome=bindparam("outcome"), at=bindparam("touch_at"))
# PostgreSQL: the same in one statement (the unit, the user bound as
# ``_new_user_outcome`` decides, their touch); new_user_id is NULL, and
# nothing written, when the openid is known.
_NEW_FOLLOWER_PG = text("""
WITH unit AS (
    SELECT u.id, u.name, u.slug, u.distributor_id, d.user_id AS owner_user_id, d.status,
           o.openid AS owner_openid, o.nickname AS owner_nickname,
           CASE WHEN u.distributor_id IS NULL THEN 'merchant' WHEN d.status = 'active' THEN 'bound'
                ELSE 'unknown' END AS outcome
    FROM units u LEFT JOIN distributors d ON d.id = u.distributor_id LEFT JOIN users o ON o.id = d.user_id
    WHERE u.scene = :token
), chosen AS (
    SELECT unit.*, COALESCE(unit.outcome, 'unknown') AS decided FROM (VALUES (1)) AS one (x) LEFT JOIN unit ON true
), new_user AS (
    INSERT INTO users (openid, first_contact, subscription, created_at, subscribed_at, last_interaction_at,
                       referrer_id, source, attributed_at)
    SELECT :openid, 'scan', 'subscribed', :at, :at, :at,
           CASE WHEN decided = 'bound' THEN owner_user_id END,
           CASE WHEN decided = 'bound' THEN 'qr' ELSE 'organic' END,
           CASE WHEN decided = 'bound' THEN CAST(:at AS timestamptz) END
    FROM chosen
    ON CONFLICT (openid) DO NOTHING
    RETURNING id
), touch AS (
    INSERT INTO referral_touches (user_id, unit_id, source, token, outcome, at)
    SELECT new_user.id, chosen.id, 'qr', :token, chosen.decided, :at FROM new_user, chosen
)
SELECT chosen.id, chosen.name, chosen.slug, chosen.distributor_id, chosen.owner_user_id, chosen.status,
       chosen.owner_openid, chosen.owner_nickname, chosen.decided, (SELECT id FROM new_user) AS new_user_id
FROM chosen
""").columns(  # typed result columns: SQLAlchemy keeps the result's layout with the cached statement
    column("id", Integer), column("name", String), column("slug", String), column("distributor_id", Integer),
    column("owner_user_id", Integer), column("status", String), column("owner_openid", String),
    column("owner_nickname", String), column("decided", String), column("new_user_id", Integer))


def unit_by_scene(scene: str) -> UnitView | None:
    row = db.session.connection().execute(_UNIT_BY_SCENE, {"scene": scene}).one_or_none()
    return _unit_view(row) if row is not None else None


def _unit_view(row) -> UnitView:
    owner = None
    if row.distributor_id is not None:
        owner = OwnerView(row.distributor_id, row.owner_user_id, row.status,
                          Person(row.owner_openid, row.owner_nickname))
    return UnitView(row.id, row.name, row.slug, owner)


def new_follower_by_scene(openid: str, scene: str, at: datetime | None = None) -> NewFollower | None:
    """A follow through a QR code by someone we have never seen: create them,
    bound to the code's distributor when it may bind, with their touch.
    None when the openid is known: nothing was written."""
    users.check_openid(openid)
    at = at or now()
    token = (scene or "").strip()[:MAX_TOKEN]
    conn = db.session.connection()
    if conn.dialect.name == "postgresql":
        row = conn.execute(_NEW_FOLLOWER_PG, {"openid": openid, "token": token, "at": at}).one()
        if row.new_user_id is None:
            return None
        unit = _unit_view(row) if row.id is not None else None
        outcome, user_id = TouchOutcome(row.decided), row.new_user_id
    else:
        unit = unit_by_scene(token) if token else None
        outcome = _new_user_outcome(unit)
        user_id = _insert_new_follower(conn, openid, token, unit, outcome, at)
        if user_id is None:
            return None
    users.want_profiles()
    if outcome is TouchOutcome.BOUND:
        # DEBUG: a poster brings follows by the hundred a second; their touch
        # rows are the record, and a line each was 4 % of a follow's CPU.
        log.debug("new user %s attributed to distributor %s via qr", user_id, unit.distributor.id)
    return NewFollower(Person(openid), Touch(outcome, unit))


def _insert_new_follower(conn, openid: str, token: str, unit: UnitView | None, outcome: TouchOutcome,
                         at: datetime) -> int | None:
    bound = outcome is TouchOutcome.BOUND
    user_id = conn.execute(_NEW_USER_SQLITE, {
        "openid": openid, "created_at": at, "subscribed_at": at, "interaction_at": at,
        "referrer_id": unit.distributor.user_id if bound else None,
        "source": (Source.QR if bound else Source.ORGANIC).value, "attributed_at": at if bound else None,
    }).scalar_one_or_none()
    if user_id is not None:
        conn.execute(_TOUCH, {"user_id": user_id, "unit_id": unit.id if unit else None, "touch_source": Source.QR.value,
                              "token": token, "outcome": outcome.value, "touch_at": at})
    return user_id


def _new_user_outcome(unit: UnitView | None) -> TouchOutcome:
    refused = _refused(unit)
    return TouchOutcome.BOUND if refused is None else refused


def notify_new_members(member_ids: list[int]) -> None:
    """The distributors' notices for members bound in a follow whose profile
    the batch has just filled (so the notice names them if WeChat did)."""
    if not member_ids:
        return
    members = db.session.scalars(select(User).where(User.id.in_(member_ids))).all()
    owners = {d.user_id: d for d in db.session.scalars(
        select(Distributor).where(Distributor.user_id.in_({m.referrer_id for m in members})))}
    for member in members:
        owner = owners.get(member.referrer_id)
        if owner is not None:
            notifications.new_member(owner, member, member.attributed_at)
