"""The audit log: every change a person makes to the merchant's data is
recorded by the handler making it, in the same transaction.

Handlers that staff (or the CLI) call take an ``actor``; they call
``record`` after the change and before returning, so the audit row and the
change are flushed together and commit or roll back together.
"""
from __future__ import annotations

import getpass
import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Iterable, Mapping

from sqlalchemy import select

from models import AuditEntry, db

from .clock import CHINA, now
from .errors import DomainError, NotFound

MAX_REASON = 500
FILTERS = ("actor", "action", "target_type", "target_id", "since", "until")  # the log page's query arguments


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
            target_id: str | None = None, since: datetime | None = None, until: datetime | None = None,
            before_id: int | None = None, limit: int = 50) -> list[AuditEntry]:
    """Newest first, keyset-paginated by id (``before_id``: the last id of the
    previous page); ``action`` is a prefix ("staff." finds every staff action),
    ``since`` ≤ at < ``until``."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if action:
        query = query.where(AuditEntry.action.startswith(action, autoescape=True))
    if actor:
        query = query.where(AuditEntry.actor == actor)
    if target_type:
        query = query.where(AuditEntry.target_type == target_type)
    if target_id:
        query = query.where(AuditEntry.target_id == target_id)
    if since:
        query = query.where(AuditEntry.at >= since)
    if until:
        query = query.where(AuditEntry.at < until)
    if before_id:
        query = query.where(AuditEntry.id < before_id)
    return list(db.session.scalars(query))


def _day(value: str, label: str) -> datetime | None:
    """A date typed in China time (YYYY-MM-DD) as the UTC moment its day starts."""
    if not value:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise DomainError(f"{label}的格式应为 年-月-日，例如 2026-12-01") from None
    return datetime(day.year, day.month, day.day, tzinfo=CHINA)


def search(given: Mapping[str, str], before_id: int | None = None, limit: int = 50) -> list[AuditEntry]:
    """The log page's filters (``FILTERS``, already stripped; China days, the
    end day included) as ``entries``: the page and its export share this."""
    since, until = _day(given.get("since", ""), "开始日期"), _day(given.get("until", ""), "结束日期")
    return entries(actor=given.get("actor"), action=given.get("action"), target_type=given.get("target_type"),
                   target_id=given.get("target_id"), since=since, until=until + timedelta(days=1) if until else None,
                   before_id=before_id, limit=limit)


def get_entry(entry_id: int) -> AuditEntry:
    entry = db.session.get(AuditEntry, entry_id)
    if entry is None:
        raise NotFound("这条操作记录不存在")
    return entry


def actors() -> list[str]:
    """Every name that has acted, for the log's filter."""
    return list(db.session.scalars(select(AuditEntry.actor).distinct().order_by(AuditEntry.actor).limit(500)))


def target_types() -> list[str]:
    return list(db.session.scalars(select(AuditEntry.target_type).distinct().order_by(AuditEntry.target_type)))


@dataclass(frozen=True)
class Change:
    """One field of a before/after pair, as the entry page shows it."""

    field: str
    before: str
    after: str
    changed: bool


_ABSENT = object()


def _shown(value: Any) -> str:
    if value is _ABSENT:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return "null" if value is None else str(value)


def diff(before: Any, after: Any) -> list[Change]:
    """Field by field when both sides are objects (or missing); else one row."""
    if isinstance(before, (dict, type(None))) and isinstance(after, (dict, type(None))):
        old, new = before or {}, after or {}
        keys = list(old) + [k for k in new if k not in old]
        return [Change(str(k), _shown(old.get(k, _ABSENT)), _shown(new.get(k, _ABSENT)),
                       old.get(k, _ABSENT) != new.get(k, _ABSENT)) for k in keys]
    return [Change("", _shown(before), _shown(after), before != after)]
