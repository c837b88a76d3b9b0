"""A person who has reached the official account, by any door."""
from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, false, text
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, UTCDateTime, utcnow
from .states import check_in


class Subscription(str, enum.Enum):
    NEVER = "never"  # reached us by OAuth or a shared link, never followed
    SUBSCRIBED = "subscribed"
    UNSUBSCRIBED = "unsubscribed"


class FirstContact(str, enum.Enum):
    SUBSCRIBE = "subscribe"
    SCAN = "scan"
    MESSAGE = "message"
    OAUTH = "oauth"


class Source(str, enum.Enum):
    """Where a user came from, for the merchant's statistics: the channel
    through which a distributor first reached them, or organic."""

    ORGANIC = "organic"
    QR = "qr"
    LINK = "link"
    INVITE = "invite"


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(check_in("subscription", Subscription), name="subscription"),
        CheckConstraint(check_in("first_contact", FirstContact), name="first_contact"),
        CheckConstraint(check_in("source", Source), name="source"),
        CheckConstraint("referrer_id IS NULL OR referrer_id <> id", name="not_own_referrer"),
        CheckConstraint("(referrer_id IS NULL) = (source = 'organic')", name="source_matches_referrer"),
        Index("ix_users_referrer_id_id", "referrer_id", "id"),  # a distributor's customers, from the index alone
        # New followers waiting for their profile batch (wxbot.jobs.fetch_profiles), oldest first.
        Index("ix_users_awaiting_profile", "created_at", postgresql_where=text("profile_checked_at IS NULL"),
              sqlite_where=text("profile_checked_at IS NULL")),
        Index("ix_users_referrer_id_attributed_at", "referrer_id", "attributed_at"),  # the team page's newest customers
        # A distributor's recruits, counted without joining every distributor (migration f7d000000023).
        Index("ix_users_referrer_id_recruits", "referrer_id", postgresql_where=text("is_distributor"),
              sqlite_where=text("is_distributor")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    openid: Mapped[str] = mapped_column(String(64), unique=True)
    unionid: Mapped[str | None] = mapped_column(String(64))
    # WeChat stopped giving these to most accounts (user/info, 2021-12-27);
    # only an snsapi_userinfo grant fills them, so both may stay empty.
    nickname: Mapped[str | None] = mapped_column(String(64))
    avatar_url: Mapped[str | None] = mapped_column(String(512))
    subscription: Mapped[str] = mapped_column(String(16), default=Subscription.NEVER.value)
    first_contact: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    subscribed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    unsubscribed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The customer-service message window is 48 h after the user's last message.
    last_interaction_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    profile_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The distributor (their user row) who reached this user first: set once,
    # by a conditional UPDATE, never changed (handlers.referrals).
    referrer_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    source: Mapped[str] = mapped_column(String(16), default=Source.ORGANIC.value)
    attributed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Set when a distributor row is made for this user (models.distributor), never cleared: a
    # distributor is frozen, not removed.
    is_distributor: Mapped[bool] = mapped_column(default=False, server_default=false())

    @property
    def display_name(self) -> str:
        return self.nickname or f"微信用户{self.openid[-4:]}"

    @property
    def is_subscribed(self) -> bool:
        return self.subscription == Subscription.SUBSCRIBED.value

    def __repr__(self) -> str:
        return f"<User {self.id} {self.openid}>"
