"""Recording the people who reach the account."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from models import FirstContact, Subscription, User, db
from models.base import insert_ignoring_conflict

from . import outbox
from .clock import now
from .errors import DomainError, NotFound

log = logging.getLogger(__name__)
MAX_OPENID = 64


@dataclass
class Contact:
    user: User
    created: bool


def _check_openid(openid: str) -> None:
    if not openid or len(openid) > MAX_OPENID or not openid.isascii() or not openid.isprintable():
        raise DomainError("无效的用户标识")


def record_contact(openid: str, via: FirstContact, at: datetime | None = None, **first: object) -> Contact:
    """Find or create the user behind ``openid``: exactly one row per openid,
    even when two requests for a new person race (INSERT … ON CONFLICT DO
    NOTHING RETURNING). ``first`` are extra columns for a new row. A new
    user's profile is fetched in the background."""
    _check_openid(openid)
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
    if nickname:
        user.nickname = nickname.strip()[:64]
    if avatar_url and avatar_url.startswith(("http://", "https://")):
        user.avatar_url = avatar_url[:512]
    if unionid:
        user.unionid = unionid[:64]
    user.profile_checked_at = at or now()
    return user


def get_user(openid: str) -> User | None:
    return db.session.scalars(select(User).where(User.openid == openid)).one_or_none()
