"""The audit log: every change a person makes to the merchant's data is
recorded by the handler making it, in the same transaction.

Handlers that staff (or the CLI) call take an ``actor``; they call
``record`` after the change and before returning, so the audit row and the
change are flushed together and commit or roll back together.
"""
from __future__ import annotations

import getpass
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable

from sqlalchemy import select

from models import AuditEntry, db

from .clock import now

MAX_REASON = 500


@dataclass(frozen=True)
class Actor:
    """Who acts: a staff member (from the admin), the CLI's operator or the system."""

    name: str
    staff_id: int | None = None
    role: str = ""
    ip: str = ""


SYSTEM = Actor("system")


def cli_actor() -> Actor:
    try:
        login = getpass.getuser()
    except (KeyError, OSError):
        login = "unknown"
    return Actor(f"cli:{login}"[:64])


def record(actor: Actor, action: str, target_type: str, target_id: Any, *, before: Any = None,
           after: Any = None, reason: str = "", at: datetime | None = None) -> AuditEntry:
    entry = AuditEntry(at=at or now(), staff_id=actor.staff_id, actor=actor.name[:64], action=action,
                       target_type=target_type, target_id=str(target_id)[:64], before=before, after=after,
                       reason=(reason or "")[:MAX_REASON], ip=actor.ip[:64])
    db.session.add(entry)
    db.session.flush()
    return entry


def snapshot(obj: Any, fields: Iterable[str]) -> dict[str, Any]:
    """The named attributes of a row as JSON-friendly values, for before/after."""
    out: dict[str, Any] = {}
    for name in fields:
        value = getattr(obj, name)
        out[name] = value.isoformat() if isinstance(value, datetime) else value
    return out


def entries(*, action: str | None = None, actor: str | None = None, target_type: str | None = None,
            target_id: str | None = None, before_id: int | None = None, limit: int = 50) -> list[AuditEntry]:
    """Newest first, keyset-paginated by id (``before_id``: the last id of the previous page)."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if action:
        query = query.where(AuditEntry.action.startswith(action))
    if actor:
        query = query.where(AuditEntry.actor == actor)
    if target_type:
        query = query.where(AuditEntry.target_type == target_type)
    if target_id:
        query = query.where(AuditEntry.target_id == target_id)
    if before_id:
        query = query.where(AuditEntry.id < before_id)
    return list(db.session.scalars(query))
