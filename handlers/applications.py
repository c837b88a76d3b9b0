"""Becoming a distributor (PRODUCT.md flows 3 and 4)."""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from models import (APPLICATION_STATES, Application, ApplicationStatus, Distributor, Source, TouchOutcome, User,
                    db)

from . import notifications, referrals, settings, units
from .clock import now
from .errors import Conflict, DomainError, NotFound

log = logging.getLogger(__name__)
MOBILE = re.compile(r"^1[3-9]\d{9}$")
NAME = re.compile(r"^[\u4e00-\u9fffA-Za-z·•. ]{2,20}$")
MAX_REASON = 500
MAX_REJECT_REASON = 200


@dataclass
class Placement:
    level: int
    parent: Distributor | None


def validate_form(real_name: str, mobile: str, reason: str) -> tuple[str, str, str]:
    real_name = " ".join((real_name or "").split())
    mobile = re.sub(r"[\s-]", "", mobile or "")
    if mobile.startswith("+86"):
        mobile = mobile[3:]
    reason = (reason or "").strip()
    if not NAME.match(real_name):
        raise DomainError("请填写真实姓名（2-20 个字）")
    if not MOBILE.match(mobile):
        raise DomainError("请填写正确的 11 位大陆手机号")
    if not reason:
        raise DomainError("请填写申请理由")
    if len(reason) > MAX_REASON:
        raise DomainError(f"申请理由请控制在 {MAX_REASON} 字以内")
    return real_name, mobile, reason


def latest_application(user_id: int) -> Application | None:
    return db.session.scalars(select(Application).where(Application.user_id == user_id)
                              .order_by(Application.id.desc())).first()


def paid_spending_fen(user_id: int) -> int:
    """What the user has paid for, in fen; orders arrive with the shop."""
    return 0


def apply_for_distributor(user: User, real_name: str, mobile: str, reason: str, invite_code: str = "",
                          at: datetime | None = None) -> Application:
    at = at or now()
    real_name, mobile, reason = validate_form(real_name, mobile, reason)
    _lock_user(user.id)
    if referrals.distributor_of(user.id):
        raise Conflict("你已经是分销商了")
    last = latest_application(user.id)
    if last and last.status == ApplicationStatus.PENDING.value:
        raise Conflict("你已有一份申请在审核中，请耐心等待")
    cooldown = timedelta(hours=settings.section("distribution")["reapply_cooldown_hours"])
    if last and last.status == ApplicationStatus.REJECTED.value and last.decided_at + cooldown > at:
        wait = last.decided_at + cooldown - at
        raise Conflict(f"申请未通过后需等待一段时间才能再次申请，约 {_hours(wait)} 小时后可重新提交")
    if invite_code.strip():
        touch = referrals.attribute_referral(user, Source.INVITE, invite_code, at)
        if touch.outcome is TouchOutcome.UNKNOWN:
            raise DomainError("邀请码无效，请核对后再填，或留空")
    application = Application(user_id=user.id, real_name=real_name, mobile=mobile, reason=reason, created_at=at)
    try:
        with db.session.begin_nested():
            db.session.add(application)
    except IntegrityError:
        raise Conflict("你已有一份申请在审核中，请耐心等待") from None
    review = settings.section("distribution")
    if review["review"] == "auto":
        approve_application(application.id, "auto", at)
    elif review["review"] == "threshold" and paid_spending_fen(user.id) >= review["review_threshold_fen"]:
        approve_application(application.id, "threshold", at)
    return application


def _hours(delta: timedelta) -> int:
    return max(1, -(-int(delta.total_seconds()) // 3600))


def _lock_user(user_id: int) -> User:
    return db.session.scalars(select(User).where(User.id == user_id).with_for_update()
                              .execution_options(populate_existing=True)).one()


def _lock_application(application_id: int) -> Application:
    application = db.session.scalars(
        select(Application).where(Application.id == application_id).with_for_update(of=Application)
        .execution_options(populate_existing=True)).one_or_none()
    if application is None:
        raise NotFound(f"申请 {application_id} 不存在")
    return application


def placement_for(user: User) -> Placement:
    """PRODUCT.md flow 4: organic → level 1; brought by a level-1 → level 2
    under them; brought by a level-2 → level 2 under the same level-1."""
    owner = referrals.owner_of(user)
    if owner is None:
        return Placement(1, None)
    if owner.level == 1:
        return Placement(2, owner)
    return Placement(2, owner.parent)


def approve_application(application_id: int, by: str, at: datetime | None = None) -> Distributor:
    at = at or now()
    application = _lock_application(application_id)
    application.status = APPLICATION_STATES.check(application.status, ApplicationStatus.APPROVED)
    user = _lock_user(application.user_id)
    if referrals.distributor_of(user.id):
        raise Conflict("该用户已经是分销商")
    place = placement_for(user)
    distributor = Distributor(user_id=user.id, level=place.level,
                              parent_id=place.parent.id if place.parent else None,
                              parent_level=place.parent.level if place.parent else None,
                              real_name=application.real_name, mobile=application.mobile, approved_at=at)
    db.session.add(distributor)
    db.session.flush()
    application.decided_at, application.decided_by = at, by
    units.create_unit(distributor, units.shop_name(user))
    log.info("application %s approved by %s: distributor %s level %s", application.id, by, distributor.id,
             distributor.level)
    notifications.application_decided(user, application.id, True, distributor.unit.name, at)
    return distributor


def reject_application(application_id: int, reason: str, by: str, at: datetime | None = None) -> Application:
    at = at or now()
    reason = " ".join((reason or "").split())
    if not reason:
        raise DomainError("请写明驳回理由，申请人会看到")
    if len(reason) > MAX_REJECT_REASON:
        raise DomainError(f"驳回理由请控制在 {MAX_REJECT_REASON} 字以内")
    application = _lock_application(application_id)
    application.status = APPLICATION_STATES.check(application.status, ApplicationStatus.REJECTED)
    application.reject_reason, application.decided_at, application.decided_by = reason, at, by
    user = application.user
    notifications.application_decided(user, application.id, False, reason, at)
    return application


def pending_applications() -> list[Application]:
    return list(db.session.scalars(select(Application).where(
        Application.status == ApplicationStatus.PENDING.value).order_by(Application.id)))
