"""The merchant's staff: accounts, roles and what each role may see and do,
logins (password, optional TOTP) and their server-side sessions."""
from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timedelta

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from models import Staff, StaffRole, StaffSession, db

from . import audit, settings
from .audit import Actor
from .clock import real_now as now  # staff sessions and TOTP follow the wall clock, never the sandbox clock
from .errors import Conflict, DomainError, NotFound

NAME = re.compile(r"^[a-z][a-z0-9_.-]{2,31}$")
MIN_PASSWORD = 10
MAX_PASSWORD = 256
# argon2id at one of OWASP's equivalent settings (7 MiB, 5 passes, 1 lane) rather than the library's
# default (64 MiB, 4 lanes): a sign-in then adds 7 MiB to a web worker, not 64 (bench/memory.py).
# Older hashes still verify and are rehashed at the next sign-in (check_needs_rehash).
HASHER = PasswordHasher(time_cost=5, memory_cost=7168, parallelism=1)
_DUMMY_HASH = HASHER.hash(secrets.token_urlsafe(16))  # a wrong name costs what a wrong password costs
ROLE_NAMES = {"owner": "店主", "operator": "运营", "finance": "财务", "shipping": "发货"}
VIEW, ACT = "view", "act"

# Seeing and acting are separate permissions: "orders.view" lets a role open
# the orders, "orders.ship" lets it ship one.
PERMISSIONS: dict[str, frozenset[str]] = {
    "dashboard.view": frozenset({"owner", "operator", "finance", "shipping"}),
    "applications.view": frozenset({"owner", "operator"}),
    "applications.act": frozenset({"owner", "operator"}),
    "distributors.view": frozenset({"owner", "operator", "finance"}),
    "distributors.act": frozenset({"owner", "operator"}),
    "products.view": frozenset({"owner", "operator"}),
    "products.edit": frozenset({"owner", "operator"}),
    "orders.view": frozenset({"owner", "operator", "finance", "shipping"}),
    "orders.ship": frozenset({"owner", "shipping"}),
    "orders.refund": frozenset({"owner", "finance"}),
    "withdrawals.view": frozenset({"owner", "finance"}),
    "withdrawals.pay": frozenset({"owner", "finance"}),
    "exports": frozenset({"owner", "finance"}),
    "stats.view": frozenset({"owner", "operator", "finance"}),
    "rules.view": frozenset({"owner", "operator", "finance"}),
    "rules.edit": frozenset({"owner"}),
    "menu.view": frozenset({"owner", "operator"}),
    "menu.edit": frozenset({"owner", "operator"}),
    "reconcile.view": frozenset({"owner", "finance"}),
    "reconcile.act": frozenset({"owner", "finance"}),
    "audit.view": frozenset({"owner", "finance"}),
    "staff.manage": frozenset({"owner"}),
}
TWO_FACTOR_ROLES = frozenset({"owner", "finance"})


def may(role: str, permission: str) -> bool:
    if permission not in PERMISSIONS:
        raise KeyError(f"unknown permission {permission!r}")
    return role in PERMISSIONS[permission]


def permissions_of(role: str) -> frozenset[str]:
    return frozenset(p for p, roles in PERMISSIONS.items() if role in roles)


def check_role(role: str) -> str:
    if role not in {r.value for r in StaffRole}:
        raise DomainError(f"角色只能是 {', '.join(r.value for r in StaffRole)}")
    return role


def check_password(password: str) -> str:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise DomainError(f"密码至少 {MIN_PASSWORD} 个字符")
    if len(password) > MAX_PASSWORD:
        raise DomainError(f"密码最多 {MAX_PASSWORD} 个字符")
    if password.strip() != password or not password.isprintable():
        raise DomainError("密码不能以空格开头或结尾，也不能含控制字符")
    return password


# -- accounts -------------------------------------------------------------------

def create_staff(name: str, role: str, password: str, actor: Actor, at: datetime | None = None) -> Staff:
    at = at or now()
    name = (name or "").strip().lower()
    if not NAME.match(name):
        raise DomainError("用户名为 3-32 位小写字母、数字、点、横线或下划线，以字母开头")
    check_role(role)
    check_password(password)
    staff = Staff(name=name, role=role, password_hash=HASHER.hash(password), created_at=at,
                  password_changed_at=at)
    try:
        with db.session.begin_nested():
            db.session.add(staff)
    except IntegrityError:
        raise Conflict(f"用户名 {name} 已被使用") from None
    audit.record(actor, "staff.create", "staff", staff.id, after={"name": name, "role": role}, at=at)
    return staff


def get_by_name(name: str, lock: bool = False) -> Staff:
    query = select(Staff).where(Staff.name == (name or "").strip().lower())
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    staff = db.session.scalars(query).one_or_none()
    if staff is None:
        raise NotFound(f"没有名为 {name} 的员工")
    return staff


def get(staff_id: int, lock: bool = False) -> Staff:
    query = select(Staff).where(Staff.id == staff_id)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    staff = db.session.scalars(query).one_or_none()
    if staff is None:
        raise NotFound("员工不存在")
    return staff


def all_staff() -> list[Staff]:
    return list(db.session.scalars(select(Staff).order_by(Staff.id)))


def last_logins() -> dict[int, datetime]:
    """When each staff member last logged in (their newest session), by id."""
    rows = db.session.execute(select(StaffSession.staff_id, func.max(StaffSession.created_at))
                              .group_by(StaffSession.staff_id))
    return {staff_id: at for staff_id, at in rows}


def disable(name: str, actor: Actor, reason: str = "", at: datetime | None = None) -> Staff:
    return _disable(get_by_name(name, lock=True), actor, reason, at)


def disable_id(staff_id: int, actor: Actor, reason: str = "", at: datetime | None = None) -> Staff:
    """``disable`` for the admin's page, which names the account by id."""
    return _disable(get(staff_id, lock=True), actor, reason, at)


def _disable(staff: Staff, actor: Actor, reason: str, at: datetime | None) -> Staff:
    at = at or now()
    if actor.staff_id == staff.id:
        raise Conflict("不能停用自己的账号")
    if not staff.is_active:
        return staff
    staff.disabled_at = at
    revoke_all(staff.id, at)
    audit.record(actor, "staff.disable", "staff", staff.id, before={"active": True}, after={"active": False},
                 reason=reason, at=at)
    return staff


def enable(name: str, actor: Actor, at: datetime | None = None) -> Staff:
    return _enable(get_by_name(name, lock=True), actor, at)


def enable_id(staff_id: int, actor: Actor, at: datetime | None = None) -> Staff:
    return _enable(get(staff_id, lock=True), actor, at)


def _enable(staff: Staff, actor: Actor, at: datetime | None) -> Staff:
    at = at or now()
    if staff.is_active:
        return staff
    staff.disabled_at = None
    audit.record(actor, "staff.enable", "staff", staff.id, before={"active": False}, after={"active": True}, at=at)
    return staff


def change_role(staff_id: int, role: str, actor: Actor, reason: str = "", at: datetime | None = None) -> Staff:
    """A new role takes effect at the next login: the member's open logins end."""
    at = at or now()
    check_role(role)
    staff = get(staff_id, lock=True)
    if actor.staff_id == staff.id:
        raise Conflict("不能修改自己的角色")  # an owner cannot demote the last owner by mistake
    if staff.role == role:
        return staff
    before = staff.role
    staff.role = role
    revoke_all(staff.id, at)
    audit.record(actor, "staff.role", "staff", staff.id, before={"role": before}, after={"role": role},
                 reason=reason, at=at)
    return staff


def change_password(staff_id: int, old: str, new: str, actor: Actor, at: datetime | None = None) -> Staff:
    at = at or now()
    staff = get(staff_id, lock=True)
    if not _verify(staff.password_hash, old or ""):
        raise DomainError("原密码不正确")
    check_password(new)
    staff.password_hash, staff.password_changed_at = HASHER.hash(new), at
    revoke_all(staff.id, at)  # every login ends, this one too: the next page asks to log in again
    audit.record(actor, "staff.password", "staff", staff.id, at=at)
    return staff


def _verify(password_hash: str, password: str) -> bool:
    try:
        return HASHER.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


# -- logging in -----------------------------------------------------------------

def authenticate(name: str, password: str, code: str = "", at: datetime | None = None) -> Staff:
    """The staff member with this name and password (and TOTP code, when they
    have set one up); else one message that does not say which part was wrong."""
    at = at or now()
    wrong = DomainError("用户名或密码错误")
    staff = db.session.scalars(select(Staff).where(Staff.name == (name or "").strip().lower())
                               .with_for_update().execution_options(populate_existing=True)).one_or_none()
    if staff is None:
        _verify(_DUMMY_HASH, password or "")
        raise wrong
    if not _verify(staff.password_hash, password or "") or not staff.is_active:
        raise wrong
    if staff.has_2fa:
        check_totp(staff, code, at)
    if HASHER.check_needs_rehash(staff.password_hash):
        staff.password_hash = HASHER.hash(password)
    return staff


def must_set_up_2fa(staff: Staff) -> bool:
    return (settings.section("admin")["require_2fa"] and staff.role in TWO_FACTOR_ROLES
            and not staff.has_2fa)


def new_totp_secret() -> str:
    return pyotp.random_base32()


def totp_uri(staff: Staff, secret: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=staff.name, issuer_name="Fenxiao 管理后台")


def _matching_step(secret: str, code: str, at: datetime) -> int | None:
    code = re.sub(r"\s", "", code or "")
    if not re.fullmatch(r"\d{6}", code):
        return None
    totp = pyotp.TOTP(secret)
    step = totp.timecode(at)
    for candidate in (step - 1, step, step + 1):  # one step of clock drift either way
        if secrets.compare_digest(totp.generate_otp(candidate), code):
            return candidate
    return None


def check_totp(staff: Staff, code: str, at: datetime) -> None:
    """The staff row is locked by the caller: two logins with one code cannot both pass."""
    step = _matching_step(staff.totp_secret or "", code, at)
    if step is None:
        raise DomainError("动态码不正确" if code else "请输入身份验证器上的 6 位动态码")
    if staff.totp_last_step is not None and step <= staff.totp_last_step:
        raise DomainError("这个动态码已经用过，请等下一个")
    staff.totp_last_step = step


def enable_totp(staff_id: int, secret: str, code: str, actor: Actor, at: datetime | None = None) -> Staff:
    at = at or now()
    staff = get(staff_id, lock=True)
    if not re.fullmatch(r"[A-Z2-7]{16,64}", secret or ""):
        raise DomainError("密钥无效，请刷新页面重新扫码")
    if _matching_step(secret, code, at) is None:
        raise DomainError("动态码不正确，请核对手机时间后重试")
    staff.totp_secret, staff.totp_last_step = secret, _matching_step(secret, code, at)
    audit.record(actor, "staff.2fa_on", "staff", staff.id, at=at)
    return staff


# -- sessions -------------------------------------------------------------------

def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start_session(staff: Staff, ip: str, at: datetime | None = None) -> str:
    """A new login for ``staff``; returns the cookie's token (kept only hashed)."""
    at = at or now()
    token = secrets.token_urlsafe(32)
    db.session.add(StaffSession(id=_digest(token), staff_id=staff.id, created_at=at, last_seen_at=at,
                                expires_at=at + timedelta(hours=settings.section("admin")["session_hours"]),
                                ip=(ip or "")[:64], fully_signed_in=not must_set_up_2fa(staff)))
    db.session.flush()
    return token


SEEN_EVERY = timedelta(minutes=1)


def session_for(token: str, at: datetime | None = None) -> StaffSession | None:
    """The live login behind a cookie's token, or None (unknown, revoked,
    expired, idle too long, or its account disabled)."""
    if not isinstance(token, str) or not 20 <= len(token) <= 100:
        return None
    at = at or now()
    record = db.session.get(StaffSession, _digest(token))
    idle = timedelta(minutes=settings.section("admin")["idle_minutes"])
    if record is None or record.revoked_at is not None or record.expires_at <= at \
            or record.last_seen_at + idle <= at or not record.staff.is_active:
        return None
    if record.last_seen_at + SEEN_EVERY <= at:
        record.last_seen_at = at
    return record


def finish_2fa_setup(record: StaffSession) -> None:
    record.fully_signed_in = True


def revoke(token: str, at: datetime | None = None) -> None:
    if isinstance(token, str) and token:
        db.session.execute(update(StaffSession).where(StaffSession.id == _digest(token),
                                                      StaffSession.revoked_at.is_(None))
                           .values(revoked_at=at or now()))


def revoke_all(staff_id: int, at: datetime | None = None) -> None:
    db.session.execute(update(StaffSession).where(StaffSession.staff_id == staff_id,
                                                  StaffSession.revoked_at.is_(None))
                       .values(revoked_at=at or now()))
