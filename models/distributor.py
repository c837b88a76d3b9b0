"""Distributors and their units (交易单元).

Two levels, never three: a level-2 distributor's parent must be a level-1
distributor. The database keeps that itself: ``(parent_id, parent_level)``
references ``(id, level)`` and ``parent_level`` can only be 1, so no code
path can hang anyone under a level-2 distributor.
"""
from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (CheckConstraint, ForeignKey, ForeignKeyConstraint, Index, LargeBinary, SmallInteger,
                        String, UniqueConstraint, event, update)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Mapped, deferred, mapped_column, object_session, relationship
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key
from sqlalchemy.sql.expression import FunctionElement

from .base import Base, UTCDateTime, utcnow
from .states import check_in
from .user import User


class characters(FunctionElement):
    """A text's characters as an array on PostgreSQL (``string_to_array(text, NULL)``),
    the text itself elsewhere: the name index is GIN over the characters on
    PostgreSQL, a plain index on SQLite (which has no arrays)."""

    inherit_cache = True


@compiles(characters, "postgresql")
def _characters_pg(element, compiler, **kw):
    return f"string_to_array({compiler.process(element.clauses, **kw)}, NULL)"


@compiles(characters)
def _characters_elsewhere(element, compiler, **kw):
    return compiler.process(element.clauses, **kw)


class DistributorStatus(str, enum.Enum):
    ACTIVE = "active"
    FROZEN = "frozen"  # by the merchant: earns nothing, keeps their team


class Distributor(Base):
    __tablename__ = "distributors"
    __table_args__ = (
        UniqueConstraint("id", "level", name="uq_distributors_id_level"),
        ForeignKeyConstraint(["parent_id", "parent_level"], ["distributors.id", "distributors.level"],
                             name="fk_distributors_parent"),
        CheckConstraint("level IN (1, 2)", name="level"),
        CheckConstraint("(level = 1 AND parent_id IS NULL AND parent_level IS NULL)"
                        # IS NOT NULL spelled out: a NULL would make the CHECK pass.
                        " OR (level = 2 AND parent_id IS NOT NULL AND parent_level IS NOT NULL"
                        " AND parent_level = 1)", name="two_levels"),
        CheckConstraint(check_in("status", DistributorStatus), name="status"),
        Index("ix_distributors_mobile", "mobile"),  # the staff's order list by a distributor's mobile
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), unique=True)
    level: Mapped[int] = mapped_column(SmallInteger)
    parent_id: Mapped[int | None] = mapped_column(index=True)
    parent_level: Mapped[int | None] = mapped_column(SmallInteger)
    status: Mapped[str] = mapped_column(String(16), default=DistributorStatus.ACTIVE.value)
    real_name: Mapped[str] = mapped_column(String(32))
    mobile: Mapped[str] = mapped_column(String(11))
    approved_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    # Why and when the merchant froze them (empty while active); every freeze,
    # unfreeze and move is in the audit log as well.
    frozen_reason: Mapped[str | None] = mapped_column(String(200))
    frozen_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    user: Mapped[User] = relationship(lazy="joined")
    parent: Mapped["Distributor | None"] = relationship(
        remote_side=[id], foreign_keys=[parent_id], primaryjoin="Distributor.parent_id == Distributor.id")
    unit: Mapped["Unit"] = relationship(back_populates="distributor", uselist=False)

    @property
    def is_active(self) -> bool:
        return self.status == DistributorStatus.ACTIVE.value


@event.listens_for(Distributor, "after_insert")
def _mark_user(_mapper, connection, distributor: Distributor) -> None:
    # Whatever makes a distributor marks their user, in the same flush: the
    # team figures count recruits from that mark (``users.is_distributor``).
    users = User.__table__
    connection.execute(update(users).where(users.c.id == distributor.user_id).values(is_distributor=True))
    session = object_session(distributor)
    user = session.identity_map.get(identity_key(User, distributor.user_id)) if session else None
    if user is not None:
        set_committed_value(user, "is_distributor", True)


# The staff's order list by a part of a distributor's name (handlers.order_search): the names holding
# every character typed, from the index, before the LIKE (migration f5b000000021).
Index("ix_distributors_real_name_chars", characters(Distributor.real_name), postgresql_using="gin")


class QRStatus(str, enum.Enum):
    PENDING = "pending"  # asked of WeChat in the background, retried until it succeeds
    READY = "ready"


class Unit(Base):
    """A shop: the merchant's own (``distributor_id`` empty, the initial link
    for organic users, made by the first migration) or a distributor's.
    ``slug`` (link), ``invite_code`` and ``scene`` (QR) are random and say
    nothing about ids or each other."""

    __tablename__ = "units"
    __table_args__ = (CheckConstraint(check_in("qr_status", QRStatus), name="qr_status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    distributor_id: Mapped[int | None] = mapped_column(ForeignKey("distributors.id"), unique=True)
    name: Mapped[str] = mapped_column(String(64))
    slug: Mapped[str] = mapped_column(String(16), unique=True)
    invite_code: Mapped[str | None] = mapped_column(String(8), unique=True)
    scene: Mapped[str | None] = mapped_column(String(64), unique=True)
    qr_status: Mapped[str] = mapped_column(String(16), default=QRStatus.PENDING.value)
    qr_ticket: Mapped[str | None] = mapped_column(String(255))
    qr_url: Mapped[str | None] = mapped_column(String(255))
    poster_png: Mapped[bytes | None] = deferred(mapped_column(LargeBinary))
    poster_version: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    distributor: Mapped[Distributor | None] = relationship(back_populates="unit")

    @property
    def is_merchant(self) -> bool:
        return self.distributor_id is None
