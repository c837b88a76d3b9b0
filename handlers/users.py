"""Recording the people who reach the account."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import String, bindparam, event, func, select, update
from sqlalchemy.orm import Session

from app.extensions import redis_store
from models import FirstContact, Subscription, User, db
from models.base import insert_ignoring_conflict

from . import outbox
from .clock import now
from .errors import DomainError, NotFound

log = logging.getLogger(__name__)
MAX_OPENID = 64
# New followers through a QR code get their profile (and their distributor
# the new-member notice) from one batch job, ``user/info/batchget``.
PROFILE_BATCH = 100  # WeChat's limit per call
PROFILES_ARMED = "wx:profiles:armed"  # a batch is decided and has not started yet
ARMED_FOR = 30  # seconds: should that batch never start, a later follower decides another
_WAITING = "fenxiao.profiles.waiting"
RECENT = timedelta(days=3)  # older users waiting for a profile are not this job's (no late notices)


@dataclass
class Contact:
    user: User
    created: bool


def check_openid(openid: str) -> None:
    if not openid or len(openid) > MAX_OPENID or not openid.isascii() or not openid.isprintable():
        raise DomainError("无效的用户标识")


def record_contact(openid: str, via: FirstContact, at: datetime | None = None, **first: object) -> Contact:
    """Find or create the user behind ``openid``: exactly one row per openid,
    even when two requests for a new person race (INSERT … ON CONFLICT DO
    NOTHING RETURNING). ``first`` are extra columns for a new row. A new
    user's profile is fetched in the background."""
    check_openid(openid)
    at = at or now()
    values = {"openid": openid, "first_contact": via.value, "created_at": at,
              "subscription": Subscription.NEVER.value, **first}
    user = db.session.scalars(insert_ignoring_conflict(User, values, ["openid"]).returning(User)).one_or_none()
    if user is None:
        user = db.session.scalars(select(User).where(User.openid == openid)).one()
        return Contact(user, False)
    log.info("new user %s via %s", openid, via.value)
    outbox.after_commit("wxbot.jobs.fetch_profile", openid, job_id=f"profile-{openid}")
    return Contact(user, True)


def touch(openid: str, via: FirstContact, at: datetime | None = None) -> Contact:
    """A message or event from the user: record them and open the 48 h
    window. Only followers can send one, so they follow (even if we missed
    or never saw their subscribe event)."""
    at = at or now()
    contact = record_contact(openid, via, at, subscription=Subscription.SUBSCRIBED.value, subscribed_at=at,
                             last_interaction_at=at)
    user = contact.user
    if not contact.created:
        user.last_interaction_at = at
        if user.subscription != Subscription.SUBSCRIBED.value:
            user.subscription = Subscription.SUBSCRIBED.value
            user.subscribed_at = at
    return contact


def subscribe(openid: str, via: FirstContact = FirstContact.SUBSCRIBE, at: datetime | None = None) -> Contact:
    return touch(openid, via, at)


def unsubscribe(openid: str, at: datetime | None = None) -> User:
    """Unfollowing keeps the user and everything they did; only the state changes."""
    at = at or now()
    user = record_contact(openid, FirstContact.SUBSCRIBE, at).user
    if user.subscription != Subscription.UNSUBSCRIBED.value:
        user.subscription = Subscription.UNSUBSCRIBED.value
        user.unsubscribed_at = at
    return user


def update_profile(openid: str, *, nickname: str | None = None, avatar_url: str | None = None,
                   unionid: str | None = None, at: datetime | None = None) -> User:
    """Keep what WeChat told us; an absent field never erases a known one."""
    user = db.session.scalars(select(User).where(User.openid == openid)).one_or_none()
    if user is None:
        raise NotFound("用户不存在")
    nickname, avatar_url, unionid = _cleaned(nickname, avatar_url, unionid)
    if nickname:
        user.nickname = nickname
    if avatar_url:
        user.avatar_url = avatar_url
    if unionid:
        user.unionid = unionid
    user.profile_checked_at = at or now()
    return user


def _cleaned(nickname: str | None, avatar_url: str | None, unionid: str | None
             ) -> tuple[str | None, str | None, str | None]:
    """What of WeChat's profile fields we keep: None for an absent or unusable one."""
    nickname = (nickname or "").strip()[:64] or None
    avatar_url = avatar_url[:512] if avatar_url and avatar_url.startswith(("http://", "https://")) else None
    unionid = (unionid or "")[:64] or None
    return nickname, avatar_url, unionid


def get_user(openid: str) -> User | None:
    return db.session.scalars(select(User).where(User.openid == openid)).one_or_none()


# --- profiles by the hundred ------------------------------------------------------------

def want_profiles() -> None:
    """A new user in this transaction waits for the next profile batch.
    Nothing is asked here: once the transaction has committed, the transport
    asks ``arm_profile_batch`` on the Redis round trip it makes anyway."""
    db.session().info[_WAITING] = True


@event.listens_for(Session, "after_rollback")
def _no_one_waits(session: Session) -> None:
    session.info.pop(_WAITING, None)


def profiles_wanted() -> bool:
    """Whether the transaction just committed made someone wait for a profile (asked once)."""
    return bool(db.session().info.pop(_WAITING, False))


def arm_profile_batch(pipe) -> None:
    """On the caller's Redis pipeline, after the commit: is a batch decided
    and not started yet (``SET NX``)? A batch clears the mark when it starts,
    before it reads who waits, so a batch found armed here will read this
    commit; else this follower decides one (``decide_profile_batch``)."""
    pipe.set(PROFILES_ARMED, b"1", nx=True, ex=ARMED_FOR)


def decide_profile_batch(armed_now: bool) -> None:
    """After the pipeline: the follower who armed the mark (or whose Redis
    could not say) decides a batch, in a transaction of its own. Should that
    fail, the follower waits for the next batch anyone decides."""
    if not armed_now:
        return
    try:
        outbox.after_commit("wxbot.jobs.fetch_profiles")
        outbox.commit()
    except Exception as exc:  # noqa: BLE001 - the follow is committed; a later batch takes them
        outbox.rollback()
        log.warning("profile batch not decided (%s): the next follower's batch will take them", exc)


def profiles_started() -> None:
    """The batch job starts: followers from now on decide the next one."""
    try:
        redis_store.conn.delete(PROFILES_ARMED)
    except Exception as exc:  # noqa: BLE001 - the mark expires by itself
        log.warning("profile batch mark not cleared (%s)", exc)


def awaiting_profile(limit: int = PROFILE_BATCH, at: datetime | None = None) -> list[str]:
    """Openids of recent users whose profile was never asked for, oldest first."""
    since = (at or now()) - RECENT
    return list(db.session.scalars(
        select(User.openid).where(User.profile_checked_at.is_(None), User.created_at >= since)
        .order_by(User.created_at).limit(limit)))


_FILL_PROFILE = (
    update(User.__table__)
    .where(User.__table__.c.openid == bindparam("b_openid"), User.__table__.c.profile_checked_at.is_(None))
    # An absent field never erases a known one (an H5 grant may have given it meanwhile).
    .values(nickname=func.coalesce(bindparam("b_nickname", type_=String), User.__table__.c.nickname),
            avatar_url=func.coalesce(bindparam("b_avatar_url", type_=String), User.__table__.c.avatar_url),
            unionid=func.coalesce(bindparam("b_unionid", type_=String), User.__table__.c.unionid),
            profile_checked_at=bindparam("b_at"))
    .returning(User.__table__.c.id, User.__table__.c.referrer_id, User.__table__.c.attributed_at))


def fill_profiles(infos: dict[str, dict], at: datetime | None = None) -> list[int]:
    """Record what WeChat told us of each openid (an empty dict: nothing, but
    asked) on users not checked yet. Returns the ids of those among them
    bound to a distributor since ``RECENT``, whose notice is the batch's to
    give (a follower new to us is bound as they are created; a binding by
    any later touch notifies at once, and the notice's key keeps it single)."""
    at = at or now()
    since = at - RECENT
    bound = []
    conn = db.session.connection()
    for openid, info in infos.items():
        nickname, avatar_url, unionid = _cleaned(info.get("nickname"), info.get("headimgurl"), info.get("unionid"))
        row = conn.execute(_FILL_PROFILE, {"b_openid": openid, "b_nickname": nickname, "b_avatar_url": avatar_url,
                                           "b_unionid": unionid, "b_at": at}).one_or_none()
        if row is not None and row.referrer_id is not None and row.attributed_at and row.attributed_at >= since:
            bound.append(row.id)
    return bound
