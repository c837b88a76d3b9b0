"""Becoming a distributor (PRODUCT.md flows 3 and 4)."""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Iterable

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from models import (APPLICATION_STATES, Application, ApplicationStatus, Distributor, IllegalTransition, Source,
                    TouchOutcome, User, db)

from . import audit, notifications, referrals, settings, units
from .audit import Actor
from .clock import CHINA, now
from .errors import Conflict, DomainError, NotFound

log = logging.getLogger(__name__)
MOBILE = re.compile(r"^1[3-9]\d{9}$")
NAME = re.compile(r"^[\u4e00-\u9fffA-Za-z·•. ]{2,20}$")
MAX_REASON = 500
MAX_REJECT_REASON = 200
# Reasons the merchant picks most often; a free reason can follow or replace them.
REJECT_PRESETS = ("资料不完整", "手机号有误", "暂不符合条件", "重复申请")
STATUS_NAMES = {"pending": "待审核", "approved": "已通过", "rejected": "已驳回"}


class AlreadyDecided(Conflict, IllegalTransition):
    """A second decision on a decided application: still the state machine's
    refusal (callers catching IllegalTransition keep working), with a message
    that says who decided it and when (DomainError's page and htmx answer)."""

    def __init__(self, application: Application, wanted: ApplicationStatus) -> None:
        IllegalTransition.__init__(self, "application", application.status, wanted.value)
        when = application.decided_at.astimezone(CHINA).strftime("%m-%d %H:%M") if application.decided_at else ""
        by = f"由 {application.decided_by} " if application.decided_by else ""
        verb = STATUS_NAMES[application.status].removeprefix("已")
        self.message = f"申请 {application.id} 已于 {when} {by}{verb}，未重复处理"


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
        approve_application(application.id, at, actor=audit.SYSTEM, rule="auto")
    elif review["review"] == "threshold" and paid_spending_fen(user.id) >= review["review_threshold_fen"]:
        approve_application(application.id, at, actor=audit.SYSTEM, rule="threshold")
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


def _decide(application_id: int, wanted: ApplicationStatus) -> Application:
    """The application, locked, moved to ``wanted``; a decided one is refused."""
    application = _lock_application(application_id)
    if not APPLICATION_STATES.allows(application.status, wanted):
        raise AlreadyDecided(application, wanted)
    application.status = APPLICATION_STATES.check(application.status, wanted)
    return application


AUTO_RULES = {"auto": "自动审核通过", "threshold": "消费达到门槛，自动通过"}


def approve_application(application_id: int, at: datetime | None = None, *, actor: Actor,
                        rule: str | None = None) -> Distributor:
    """Make the applicant a distributor placed by who brought them (flow 4),
    with a unit; the applicant is told. ``actor`` is the staff member or the
    CLI; an automatic review passes ``audit.SYSTEM`` and the ``rule`` that
    decided ("auto" / "threshold"), which the application keeps as its
    decider."""
    at = at or now()
    application = _decide(application_id, ApplicationStatus.APPROVED)
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
    application.decided_at, application.decided_by = at, (rule or actor.name)[:64]
    units.create_unit(distributor, units.shop_name(user))
    log.info("application %s approved by %s: distributor %s level %s", application.id, actor.name,
             distributor.id, distributor.level)
    notifications.application_decided(user, application.id, True, distributor.unit.name, at)
    audit.record(actor, "application.approve", "application", application.id,
                 before={"status": ApplicationStatus.PENDING.value},
                 after={"status": application.status, "distributor_id": distributor.id,
                        "level": distributor.level, "parent_id": distributor.parent_id},
                 reason=AUTO_RULES.get(rule or "", ""), at=at)
    return distributor


def reject_reason(reason: str, preset: str = "") -> str:
    """The reason the applicant reads: a preset, a free text, or both
    ("资料不完整：请补充社群截图"), within the length the message allows."""
    preset = (preset or "").strip()
    if preset and preset not in REJECT_PRESETS:
        raise DomainError("请从列表中选择驳回理由，或自己填写")
    reason = " ".join((reason or "").split())
    reason = f"{preset}：{reason}" if preset and reason else preset or reason
    if not reason:
        raise DomainError("请选择或写明驳回理由，申请人会看到")
    if len(reason) > MAX_REJECT_REASON:
        raise DomainError(f"驳回理由请控制在 {MAX_REJECT_REASON} 字以内")
    return reason


def reject_application(application_id: int, reason: str, at: datetime | None = None, *, actor: Actor,
                       preset: str = "") -> Application:
    at = at or now()
    reason = reject_reason(reason, preset)
    application = _decide(application_id, ApplicationStatus.REJECTED)
    application.reject_reason, application.decided_at, application.decided_by = reason, at, actor.name[:64]
    user = application.user
    notifications.application_decided(user, application.id, False, reason, at)
    audit.record(actor, "application.reject", "application", application.id,
                 before={"status": ApplicationStatus.PENDING.value}, after={"status": application.status},
                 reason=reason, at=at)
    return application


# -- several at once (the admin's bulk action) ----------------------------------

MAX_BULK = 100
DECISIONS = {"approve": "通过", "reject": "驳回"}


@dataclass
class BulkOutcome:
    application_id: int
    done: bool
    message: str


def check_selection(raw_ids: Iterable[str | int]) -> list[int]:
    """The ticked application ids: numbers, no repeats, ascending (so two
    bulk decisions lock rows in the same order and never deadlock), at most
    ``MAX_BULK``."""
    ids: set[int] = set()
    for raw in raw_ids:
        text = str(raw).strip()
        if not (text.isascii() and text.isdigit() and 0 < int(text) < 2**31):
            raise DomainError("选择的申请编号有误，请刷新页面后重新勾选")
        ids.add(int(text))
    if not ids:
        raise DomainError("请先勾选要处理的申请")
    if len(ids) > MAX_BULK:
        raise DomainError(f"一次最多处理 {MAX_BULK} 份申请，请分批操作")
    return sorted(ids)


def check_decision(decision: str) -> str:
    if decision not in DECISIONS:
        raise DomainError("请选择批量通过或批量驳回")
    return decision


def bulk_decide(raw_ids: Iterable[str | int], decision: str, reason: str = "", preset: str = "",
                at: datetime | None = None, *, actor: Actor) -> list[BulkOutcome]:
    """Decide each selected application in its own savepoint: one refused
    (decided meanwhile, unknown, already a distributor) is reported and the
    others still go through. Each decision writes its own audit row."""
    ids, decision = check_selection(raw_ids), check_decision(decision)
    if decision == "reject":
        reason, preset = reject_reason(reason, preset), ""
    at = at or now()
    outcomes = []
    for application_id in ids:
        try:
            with db.session.begin_nested():
                if decision == "approve":
                    distributor = approve_application(application_id, at, actor=actor)
                    message = f"已通过，成为{'一' if distributor.level == 1 else '二'}级分销商"
                else:
                    reject_application(application_id, reason, at, actor=actor)
                    message = "已驳回"
            outcomes.append(BulkOutcome(application_id, True, message))
        except DomainError as exc:
            outcomes.append(BulkOutcome(application_id, False, exc.message))
        except IllegalTransition:
            outcomes.append(BulkOutcome(application_id, False, "当前状态下不能这样操作"))
    return outcomes


def pending_applications() -> list[Application]:
    return list(db.session.scalars(select(Application).where(
        Application.status == ApplicationStatus.PENDING.value).order_by(Application.id)))
