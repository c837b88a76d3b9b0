"""What the merchant does to a distributor (PRODUCT.md flow 14): freeze,
unfreeze, and move a distributor or a customer to another referrer.

A frozen distributor earns nothing on orders paid from then on
(``commissions.post_for_order``), cannot ask for a withdrawal and is not
paid one (``handlers.withdrawals``), and their links and codes bind nobody;
their team and the commission they had stay theirs. A freeze takes the
distributor's balance lock before changing the status, the lock a
withdrawal request holds while it checks the status, so no request slips
between the two.

A move changes where the person stands from now on: orders placed later
trade in the unit and pay the parent the move gave them; an order placed
before keeps its distributor and parent, and commission already posted
never changes. Two rules decide what may move where (flow 4):
- two levels, never three: a distributor with level-2s under them cannot
  become level 2 (the database refuses it as well);
- no cycle: nobody can go under someone they brought, directly or not.
Moving under a level-2 distributor places one as level 2 under that
distributor's level-1, as their recruits are. Moves run one at a time
(PostgreSQL: a transaction-scoped advisory lock), so two moves at once can
never close a cycle that neither saw. Each form says whom the person stood
under when the page was drawn: if another staff member moved them since,
the move is refused rather than made on what nobody saw.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select

from models import Distributor, DistributorStatus, Source, User, db

from . import audit, notifications, referrals
from .audit import Actor
from .clock import now
from .codes import normalise_invite_code
from .commissions import balance_for_update
from .errors import Conflict, DomainError, NotFound

MAX_REASON = 200
MOVE_LOCK = 0x44495354  # "DIST": the advisory lock's key
MERCHANT = ("0", "商户", "商家")
ACTIVE, FROZEN = DistributorStatus.ACTIVE.value, DistributorStatus.FROZEN.value
AUDITED = ("status", "frozen_reason", "level", "parent_id")


def clean_reason(reason: str | None, what: str) -> str:
    reason = " ".join((reason or "").split())
    if not reason:
        raise DomainError(f"请写明{what}原因")
    if len(reason) > MAX_REASON:
        raise DomainError(f"{what}原因请控制在 {MAX_REASON} 字以内")
    return reason


def _lock(distributor_id: int, *, keys: bool = False) -> Distributor:
    """The distributor's row, locked. ``keys``: the level changes too (a
    move), which rows referencing (id, level) must wait for; otherwise the
    lock leaves foreign-key checks of new orders and rows alone."""
    found = db.session.scalars(select(Distributor).where(Distributor.id == distributor_id)
                               .with_for_update(of=Distributor, key_share=not keys)
                               .execution_options(populate_existing=True)).one_or_none()
    if found is None:
        raise NotFound("分销商不存在")
    return found


def _snap(distributor: Distributor) -> dict:
    return {**audit.snapshot(distributor, AUDITED), "referrer_user_id": distributor.user.referrer_id}


def freeze(distributor_id: int, reason: str, *, actor: Actor, at: datetime | None = None) -> Distributor:
    at = at or now()
    reason = clean_reason(reason, "冻结")
    balance_for_update(distributor_id)  # first, as a withdrawal request takes it (module doc)
    distributor = _lock(distributor_id)
    if distributor.status == FROZEN:
        raise Conflict(f"该分销商已被冻结（原因：{distributor.frozen_reason or '未写明'}）")
    before = _snap(distributor)
    distributor.status, distributor.frozen_reason, distributor.frozen_at = FROZEN, reason, at
    entry = audit.record(actor, "distributor.freeze", "distributor", distributor.id, before=before,
                         after=_snap(distributor), reason=reason, at=at)
    notifications.distributor_status_changed(distributor, True, reason, entry.id, at)
    return distributor


def unfreeze(distributor_id: int, reason: str, *, actor: Actor, at: datetime | None = None) -> Distributor:
    at = at or now()
    reason = clean_reason(reason, "解冻")
    balance_for_update(distributor_id)
    distributor = _lock(distributor_id)
    if distributor.status != FROZEN:
        raise Conflict("该分销商没有被冻结，无需解冻")
    before = _snap(distributor)
    distributor.status, distributor.frozen_reason, distributor.frozen_at = ACTIVE, None, None
    entry = audit.record(actor, "distributor.unfreeze", "distributor", distributor.id, before=before,
                         after=_snap(distributor), reason=reason, at=at)
    notifications.distributor_status_changed(distributor, False, reason, entry.id, at)
    return distributor


def find_target(text: str | None) -> Distributor | None:
    """The distributor a staff member named by number or invite code; None
    for the merchant ("0"). Anything else is refused in words."""
    text = (text or "").strip()
    if not text:
        raise DomainError("请填写新推荐人：分销商编号或邀请码，归商户（自然流量）填 0")
    if text in MERCHANT:
        return None
    if text.isascii() and text.isdigit():
        found = db.session.get(Distributor, int(text)) if len(text) <= 9 else None
        if found is not None:
            return found
        unit = referrals.find_unit(Source.INVITE, text)  # an all-digit code made before they were refused
        if unit is None or unit.distributor is None:
            raise NotFound(f"没有编号或邀请码为 {text[:12]} 的分销商")
        return unit.distributor
    code = normalise_invite_code(text)
    found = referrals.find_unit(Source.INVITE, code) if code else None
    if found is None or found.distributor is None:
        raise NotFound("没有这个邀请码的分销商，请填写分销商编号或邀请码")
    return found.distributor


def _one_move_at_a_time() -> None:
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(select(func.pg_advisory_xact_lock(MOVE_LOCK)))


def _expected(user: User, expected_referrer: str | None) -> None:
    """The page said whom this person stood under ("0": the merchant)."""
    if expected_referrer is None:
        return
    if expected_referrer != str(user.referrer_id or 0):
        raise Conflict("推荐人刚被其他员工修改过，请刷新页面后再操作")


def _usable_target(target: Distributor | None) -> None:
    if target is not None and target.status != ACTIVE:
        raise Conflict("新推荐人已被冻结，不能把人移到其名下")


def _brought_by(user_id: int, ancestor_user_id: int) -> bool:
    """Whether ``ancestor`` brought ``user``, directly or through others."""
    seen: set[int] = set()
    current: int | None = user_id
    while current is not None and current not in seen:
        if current == ancestor_user_id:
            return True
        seen.add(current)
        current = db.session.scalar(select(User.referrer_id).where(User.id == current))
    return False


def _bind(user: User, referrer: Distributor | None, at: datetime) -> None:
    """The user's referrer from now on. ``source`` says through which door a
    distributor first reached them: kept when they had one; an organic user
    given a referrer by hand counts as invited (the code a staff member typed)."""
    if referrer is None:
        user.referrer_id, user.source, user.attributed_at = None, Source.ORGANIC.value, None
        return
    user.referrer_id, user.attributed_at = referrer.user_id, at
    if user.source == Source.ORGANIC.value:
        user.source = Source.INVITE.value


def move_distributor(distributor_id: int, target: str, reason: str, *, actor: Actor,
                     expected_referrer: str | None = None, at: datetime | None = None) -> Distributor:
    """Place the distributor under ``target`` (a number or invite code, "0"
    for the merchant): under a level-1 they become level 2 under them; under
    a level-2, level 2 under the same level-1; under the merchant, level 1."""
    at = at or now()
    reason = clean_reason(reason, "调整")
    new_referrer = find_target(target)
    _one_move_at_a_time()
    ids = sorted({distributor_id} | ({new_referrer.id} if new_referrer else set()))
    locked = {i: _lock(i, keys=True) for i in ids}  # in id order, as every move takes them
    distributor = locked[distributor_id]
    new_referrer = locked[new_referrer.id] if new_referrer else None
    user = db.session.scalars(select(User).where(User.id == distributor.user_id).with_for_update()
                              .execution_options(populate_existing=True)).one()
    _expected(user, expected_referrer)
    if new_referrer is not None and new_referrer.id == distributor.id:
        raise DomainError("不能把分销商移到自己名下")
    _usable_target(new_referrer)
    parent = None if new_referrer is None else new_referrer if new_referrer.level == 1 else new_referrer.parent
    if user.referrer_id == (new_referrer.user_id if new_referrer else None) and \
            distributor.parent_id == (parent.id if parent else None):
        raise Conflict("该分销商已在这位推荐人名下，无需调整")
    if new_referrer is not None and (new_referrer.parent_id == distributor.id
                                     or _brought_by(new_referrer.user_id, distributor.user_id)):
        raise Conflict("不能移到自己发展的下级名下：会形成循环推荐")
    if parent is not None and distributor.level == 1:
        under = db.session.scalar(select(func.count()).select_from(Distributor)
                                  .where(Distributor.parent_id == distributor.id))
        if under:
            raise Conflict(f"该分销商名下有 {under} 位二级分销商，移到其他分销商名下会形成三级分销，"
                           f"不允许；请先调整其二级分销商")
    before = _snap(distributor)
    distributor.level = 2 if parent else 1
    distributor.parent_id = parent.id if parent else None
    distributor.parent_level = 1 if parent else None
    _bind(user, new_referrer, at)
    db.session.flush()
    audit.record(actor, "distributor.move", "distributor", distributor.id, before=before, after=_snap(distributor),
                 reason=reason, at=at)
    return distributor


def move_customer(user_id: int, target: str, reason: str, *, actor: Actor, expected_referrer: str | None = None,
                  at: datetime | None = None) -> User:
    """The customer belongs to ``target`` from now on ("0": to nobody, the
    merchant's own). Their later orders trade in that distributor's unit."""
    at = at or now()
    reason = clean_reason(reason, "调整")
    new_referrer = find_target(target)
    user = db.session.scalars(select(User).where(User.id == user_id).with_for_update()
                              .execution_options(populate_existing=True)).one_or_none()
    if user is None:
        raise NotFound("顾客不存在")
    if referrals.distributor_of(user.id) is not None:  # approval locks the user too: no race with it
        raise Conflict("这位用户已是分销商，请在其分销商页面调整")
    _expected(user, expected_referrer)
    _usable_target(new_referrer)
    if user.referrer_id == (new_referrer.user_id if new_referrer else None):
        raise Conflict("这位顾客已在这位推荐人名下，无需调整")
    before = {"referrer_user_id": user.referrer_id, "source": user.source}
    _bind(user, new_referrer, at)
    db.session.flush()
    audit.record(actor, "customer.move", "user", user.id, before=before,
                 after={"referrer_user_id": user.referrer_id, "source": user.source,
                        "distributor_id": new_referrer.id if new_referrer else None}, reason=reason, at=at)
    return user
