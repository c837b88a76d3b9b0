"""The merchant's view of applications (the admin's review queue): who
applied, how long they have waited, who brought them and through which
door, and what a decision would do. Reading only; the decisions live in
``handlers.applications``.

A page is one query: the applicant, their inviter (the distributor whose
user is the applicant's ``referrer_id``, as ``referrals.owner_of``) and the
inviter's parent (for the level-2 placement) are joined, never loaded row by
row.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Iterable, Mapping

from sqlalchemy import Select, or_, select
from sqlalchemy.orm import aliased

from models import Application, ApplicationStatus, AuditEntry, Distributor, User, db

from .applications import DECISIONS, STATUS_NAMES, check_decision, check_selection, reject_reason
from .clock import CHINA, now
from .errors import DomainError, NotFound

STATUSES = ("pending", "approved", "rejected", "all")
ORDERS = {"oldest": "最早的在前", "newest": "最新的在前"}
SOURCE_NAMES = {"organic": "自然进入", "qr": "扫分销商二维码", "link": "分销商店铺链接", "invite": "邀请码"}
FIRST_CONTACT_NAMES = {"subscribe": "关注公众号", "scan": "扫码关注", "message": "发消息", "oauth": "网页授权"}
MAX_QUERY = 32
EARLIER_SHOWN = 20

Inviter = aliased(Distributor, name="inviter")
InviterParent = aliased(Distributor, name="inviter_parent")


@dataclass(frozen=True)
class Filters:
    status: str = "pending"
    q: str = ""
    date_from: date | None = None
    date_to: date | None = None
    order: str = "oldest"

    def args(self) -> dict[str, str]:
        """The filters as query-string arguments (for links that keep them)."""
        out = {"status": self.status, "q": self.q, "order": self.order,
               "date_from": self.date_from.isoformat() if self.date_from else "",
               "date_to": self.date_to.isoformat() if self.date_to else ""}
        return {k: v for k, v in out.items() if v}


def _date(value: str, label: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise DomainError(f"{label}格式应为 年-月-日，例如 2026-12-01") from None


def parse_filters(args: Mapping[str, str]) -> Filters:
    """The queue's filters from a query string. Waiting applications come
    oldest first (a queue is worked from its head); decided ones newest first."""
    status = (args.get("status") or "pending").strip()
    if status not in STATUSES:
        raise DomainError("状态只能是 待审核 / 已通过 / 已驳回 / 全部")
    q = " ".join((args.get("q") or "").split())
    if len(q) > MAX_QUERY:
        raise DomainError(f"搜索内容请控制在 {MAX_QUERY} 字以内")
    date_from = _date((args.get("date_from") or "").strip(), "开始日期")
    date_to = _date((args.get("date_to") or "").strip(), "结束日期")
    if date_from and date_to and date_from > date_to:
        raise DomainError("开始日期不能晚于结束日期")
    order = (args.get("order") or ("oldest" if status == "pending" else "newest")).strip()
    if order not in ORDERS:
        raise DomainError("排序只能是 最早的在前 / 最新的在前")
    return Filters(status, q, date_from, date_to, order)


def age_text(delta: timedelta) -> str:
    minutes = max(0, int(delta.total_seconds()) // 60)
    if minutes < 60:
        return f"{minutes} 分钟"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} 小时 {minutes} 分"
    days, hours = divmod(hours, 24)
    return f"{days} 天 {hours} 小时"


@dataclass
class Row:
    """An application with what the queue shows beside it."""

    application: Application
    inviter: Distributor | None
    inviter_parent: Distributor | None
    at: datetime = field(default_factory=now)

    @property
    def id(self) -> int:  # support.keyset reads the cursor from here
        return self.application.id

    @property
    def user(self) -> User:
        return self.application.user

    @property
    def pending(self) -> bool:
        return self.application.status == ApplicationStatus.PENDING.value

    @property
    def age(self) -> str:
        """How long it has waited (so far, or until it was decided)."""
        end = self.at if self.pending or not self.application.decided_at else self.application.decided_at
        return age_text(end - self.application.created_at)

    @property
    def status_name(self) -> str:
        return STATUS_NAMES[self.application.status]

    @property
    def source_name(self) -> str:
        return SOURCE_NAMES.get(self.user.source, self.user.source)

    @property
    def first_contact_name(self) -> str:
        return FIRST_CONTACT_NAMES.get(self.user.first_contact, self.user.first_contact)

    @property
    def placement(self) -> str:
        """Where approval would place them (PRODUCT.md flow 4, as
        ``applications.placement_for``)."""
        if self.inviter is None:
            return "一级分销商"
        parent = self.inviter if self.inviter.level == 1 else self.inviter_parent
        return f"二级分销商，上级：{name_of(parent)}"


def name_of(distributor: Distributor | None) -> str:
    if distributor is None:
        return "—"
    return f"{distributor.real_name}（{distributor.user.display_name}）"


def _rows() -> tuple[Select, type[User]]:
    applicant = aliased(User, name="applicant")
    return (select(Application, Inviter, InviterParent)
            .join(applicant, applicant.id == Application.user_id)
            .outerjoin(Inviter, Inviter.user_id == applicant.referrer_id)
            .outerjoin(InviterParent, InviterParent.id == Inviter.parent_id)), applicant


def _wrap(result: Iterable) -> list[Row]:
    at = now()
    return [Row(application, inviter, parent, at) for application, inviter, parent in result]


def list_queue(filters: Filters, before: int | None = None, after: int | None = None,
               limit: int = 50) -> list[Row]:
    """``limit + 1`` rows in the filters' order, for ``support.keyset``: the
    cursor is ``after`` (the last id shown) oldest first, ``before`` newest first."""
    query, applicant = _rows()
    if filters.status != "all":
        query = query.where(Application.status == filters.status)
    if filters.q:
        query = query.where(or_(Application.real_name.icontains(filters.q, autoescape=True),
                                Application.mobile.contains(filters.q, autoescape=True),
                                applicant.nickname.icontains(filters.q, autoescape=True)))
    if filters.date_from:
        query = query.where(Application.created_at >= datetime.combine(filters.date_from, time(), CHINA))
    if filters.date_to:
        query = query.where(Application.created_at <
                            datetime.combine(filters.date_to + timedelta(days=1), time(), CHINA))
    if filters.order == "oldest":
        query = query.order_by(Application.id)
        if after:
            query = query.where(Application.id > after)
    else:
        query = query.order_by(Application.id.desc())
        if before:
            query = query.where(Application.id < before)
    return _wrap(db.session.execute(query.limit(limit + 1)))


def row(application_id: int) -> Row:
    query, _ = _rows()
    found = db.session.execute(query.where(Application.id == application_id)).one_or_none()
    if found is None:
        raise NotFound(f"申请 {application_id} 不存在")
    return _wrap([found])[0]


@dataclass
class Detail:
    row: Row
    earlier: list[Application]
    distributor: Distributor | None  # what approval made
    history: list[AuditEntry]


def detail(application_id: int) -> Detail:
    shown = row(application_id)
    application = shown.application
    earlier = list(db.session.scalars(
        select(Application).where(Application.user_id == application.user_id, Application.id != application.id)
        .order_by(Application.id.desc()).limit(EARLIER_SHOWN)))
    distributor = db.session.scalars(select(Distributor).where(Distributor.user_id == application.user_id)
                                     ).one_or_none()
    history = list(db.session.scalars(
        select(AuditEntry).where(AuditEntry.target_type == "application",
                                 AuditEntry.target_id == str(application.id)).order_by(AuditEntry.id)))
    return Detail(shown, earlier, distributor, history)


# -- the bulk action's preview ------------------------------------------------------

@dataclass
class PreviewLine:
    application_id: int
    row: Row | None
    will_act: bool
    message: str


@dataclass
class Preview:
    decision: str
    reason: str
    lines: list[PreviewLine]

    @property
    def decision_name(self) -> str:
        return DECISIONS[self.decision]

    @property
    def acting(self) -> int:
        return sum(1 for line in self.lines if line.will_act)


def preview(raw_ids: Iterable[str | int], decision: str, reason: str = "", preset: str = "") -> Preview:
    """What a bulk decision would do to each selected application; changes
    nothing. The confirm step decides again from the rows as they are then."""
    ids, decision = check_selection(raw_ids), check_decision(decision)
    reason = reject_reason(reason, preset) if decision == "reject" else ""
    query, applicant = _rows()
    found = {r.id: r for r in _wrap(db.session.execute(query.where(Application.id.in_(ids))))}
    already = set(db.session.scalars(select(Distributor.user_id).where(
        Distributor.user_id.in_([r.application.user_id for r in found.values()]))))
    lines = []
    for application_id in ids:
        shown = found.get(application_id)
        if shown is None:
            lines.append(PreviewLine(application_id, None, False, "申请不存在，将跳过"))
        elif not shown.pending:
            by = f"（{shown.application.decided_by}）" if shown.application.decided_by else ""
            lines.append(PreviewLine(application_id, shown, False, f"{shown.status_name}{by}，将跳过"))
        elif decision == "approve" and shown.application.user_id in already:
            lines.append(PreviewLine(application_id, shown, False, "该用户已经是分销商，将跳过"))
        elif decision == "approve":
            lines.append(PreviewLine(application_id, shown, True, f"将通过，成为{shown.placement}"))
        else:
            lines.append(PreviewLine(application_id, shown, True, f"将驳回，理由：{reason}"))
    return Preview(decision, reason, lines)
