"""The merchant's rules — commission rates, review, withdrawals, order
timings — as versions staff set on the 规则设置 page (or ``flask rules``).

The TOML file gives the first values; each saved value is a version of its
key, in effect from its time (now, or later) until a later version of that
key takes over. ``settings.section("distribution")`` / ``("orders")`` read
the TOML overlaid with the versions in effect at ``clock.now()``, so every
handler follows a change without knowing about versions, and the sandbox
clock moves rules' times like everything else's.

What was posted stays as posted: a commission row keeps its own rate, an
order its own deadline; a new rate applies to payments from its time on.

Saves and cancellations take the ``rule_revision`` row's lock and are
checked against the whole timeline from their time on (both rates within
the merchant's cap, per product too; the minimum withdrawal within the
daily limit), so two staff saving at once cannot together make what each
alone would have been refused.

Reading: each process keeps the values it read, with the revision they
belong to and the next moment a scheduled version takes effect. Before
using them it reads the revision (one row by primary key, in the caller's
transaction) at most once per request, or once per second outside requests
(workers, the CLI): a change committed by another process is seen by its
next request, by a worker within a second — the price of not reading every
version on every call of the webhook or the shop. The saving process
forgets its copy when the save commits or rolls back.
"""
from __future__ import annotations

import logging
import time
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any, Iterable, Mapping, Sequence

from flask import current_app, g, has_app_context, has_request_context
from sqlalchemy import event, or_, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from models import Product, RuleRevision, RuleVersion, db
from models.base import insert_ignoring_conflict

from . import audit
from .audit import Actor
from .clock import CHINA, now
from .errors import Conflict, DomainError, NotFound

log = logging.getLogger(__name__)

SECTIONS = ("distribution", "orders")
CACHE_SECONDS = 1.0
MAX_AHEAD = timedelta(days=366)
MAX_SKEW = timedelta(seconds=5)      # hosts' clocks may differ by this much
PAST_GRACE = timedelta(minutes=1)   # a time typed for "this minute" is now, not the past
MAX_REASON = audit.MAX_REASON
_CACHE = "fenxiao.rules"
_CHECKED = "fenxiao_rules_checked"
_DIRTY = "fenxiao.rules_changed"


@dataclass(frozen=True)
class Rule:
    key: str
    section: str
    label: str
    kind: str          # "bp" (shown in %), "fen" (shown in yuan), "count", "review"
    lo: int = 0
    hi: int = 0
    unit: str = ""
    help: str = ""


REVIEW_NAMES = {"manual": "人工审核", "auto": "自动通过", "threshold": "累计消费满额自动通过，否则人工审核"}

# The ranges are app/config.py's (tests/test_rules.py holds them to it).
RULES: dict[str, Rule] = {r.key: r for r in (
    Rule("level1_rate_bp", "distribution", "一级佣金比例", "bp", 0, 10000,
         help="直接推荐成交的分销商所得；商品可单独设置比例"),
    Rule("level2_rate_bp", "distribution", "二级佣金比例", "bp", 0, 10000, help="其上级分销商所得"),
    Rule("review", "distribution", "分销申请审核方式", "review"),
    Rule("review_threshold_fen", "distribution", "自动通过的累计消费金额", "fen", 0, 10**10,
         help="审核方式为“累计消费满额自动通过”时使用"),
    Rule("reapply_cooldown_hours", "distribution", "申请被拒后再次申请的等待时间", "count", 0, 24 * 365, "小时"),
    Rule("freeze_days", "distribution", "佣金冻结天数", "count", 0, 365, "天", help="订单完成后经过这些天，佣金才可提现"),
    Rule("withdraw_min_fen", "distribution", "最低提现金额", "fen", 1, 10**9),
    Rule("withdraw_fee_bp", "distribution", "提现手续费", "bp", 0, 5000),
    Rule("withdraw_daily_limit_fen", "distribution", "每人每日提现上限", "fen", 1, 10**10),
    Rule("pay_timeout_minutes", "orders", "未付款订单自动取消", "count", 1, 24 * 60, "分钟"),
    Rule("auto_confirm_days", "orders", "发货后自动确认收货", "count", 1, 60, "天"),
)}
GROUPS = (
    ("佣金比例", ("level1_rate_bp", "level2_rate_bp")),
    ("分销申请审核", ("review", "review_threshold_fen", "reapply_cooldown_hours")),
    ("结算与提现", ("freeze_days", "withdraw_min_fen", "withdraw_fee_bp", "withdraw_daily_limit_fen")),
    ("订单", ("pay_timeout_minutes", "auto_confirm_days")),
)
# The merchant's contract and the shop's limits: kept in the TOML file.
FIXED = {"max_total_rate_bp": "两级佣金合计上限", "max_quantity": "每单每件商品最多购买数量"}


# -- values for people ------------------------------------------------------------

def _percent(rate_bp: int) -> str:
    from .catalogue import percent  # the catalogue imports this module

    return percent(rate_bp)


def show(key: str, value: Any) -> str:
    """A value as the page shows it: 10%, ¥1.00, 72 小时, 人工审核."""
    rule = RULES[key]
    if rule.kind == "bp":
        return _percent(value)
    if rule.kind == "fen":
        from .money import yuan

        return f"¥{yuan(value)}"
    if rule.kind == "review":
        return REVIEW_NAMES.get(value, str(value))
    return f"{value} {rule.unit}"


def form_text(key: str, value: Any) -> str:
    """A value as the form's field holds it: 10, 1.00, 72, manual."""
    rule = RULES[key]
    if rule.kind == "bp":
        from .catalogue import percent_text

        return percent_text(value)
    if rule.kind == "fen":
        from .money import yuan

        return yuan(value)
    return str(value)


def parse(key: str, text: str | None) -> Any:
    """A form field's text as the rule's value, range checked."""
    rule = RULES[key]
    text = unicodedata.normalize("NFKC", text or "").strip()
    if not text:
        raise DomainError(f"请填写{rule.label}")
    if rule.kind == "bp":
        from .catalogue import to_bp

        value = to_bp(text, rule.label)
    elif rule.kind == "fen":
        from .money import to_fen

        try:
            value = to_fen(text)
        except DomainError:
            raise DomainError(f"{rule.label}请填写金额（元，最多两位小数）") from None
    elif rule.kind == "count":
        if not (text.isascii() and text.isdigit()) or len(text) > 12:
            raise DomainError(f"{rule.label}请填写整数（{rule.unit}）")
        value = int(text)
    else:
        value = text
    check_value(key, value)
    return value


def check_value(key: str, value: Any) -> None:
    """One value within its rule's range, or a DomainError saying which."""
    if key in FIXED:
        raise DomainError(f"{FIXED[key]}是商户的约定，只能在配置文件中修改")
    rule = RULES.get(key)
    if rule is None:
        raise DomainError(f"没有名为 {key} 的规则")
    if rule.kind == "review":
        if value not in REVIEW_NAMES:
            raise DomainError(f"{rule.label}只能是：{'、'.join(REVIEW_NAMES.values())}")
        return
    if not isinstance(value, int) or isinstance(value, bool) or not rule.lo <= value <= rule.hi:
        if rule.kind == "bp":
            raise DomainError(f"{rule.label}需在 {_percent(rule.lo)}-{_percent(rule.hi)} 之间"
                              f"（{rule.lo}-{rule.hi} 基点）")
        if rule.kind == "fen":
            raise DomainError(f"{rule.label}需在 {show(key, rule.lo)} 到 {show(key, rule.hi)} 之间")
        raise DomainError(f"{rule.label}需为 {rule.lo}-{rule.hi} {rule.unit}之间的整数")


# -- the timeline -----------------------------------------------------------------

def _toml() -> Mapping[str, Mapping[str, Any]]:
    return current_app.config["SETTINGS"]


def _order(version) -> tuple:
    # At the same moment, the later save wins.
    return version.effective_from, version.revision


def values_at(versions: Iterable, at: datetime) -> dict[str, Any]:
    """Every editable rule's value at ``at``: the TOML's, replaced by the
    last version of its key in effect by then. ``versions``: not cancelled."""
    settings = _toml()
    values = {key: settings[rule.section][key] for key, rule in RULES.items()}
    for version in sorted((v for v in versions if v.effective_from <= at), key=_order):
        if version.key in values:
            values[version.key] = version.value
    return values


def _next_change(versions: Iterable, at: datetime) -> datetime | None:
    later = [v.effective_from for v in versions if v.effective_from > at]
    return min(later) if later else None


# -- reading (every handler, through settings.section) ----------------------------

@dataclass
class _Snapshot:
    base: Any                       # the Settings object it overlays
    stamp: tuple                    # (revision, changed_at) it was read at
    sections: dict[str, Mapping[str, Any]]
    next_change: datetime | None    # when a scheduled version takes effect


def section(name: str) -> Mapping[str, Any]:
    """``[name]`` of the configuration, with the rules in effect now."""
    if name not in SECTIONS:
        return _toml()[name]
    return _snapshot().sections[name]


def _snapshot() -> _Snapshot:
    extensions = current_app.extensions
    snap, base = extensions.get(_CACHE), _toml()
    usable = snap is not None and snap.base is base
    checked = g.get(_CHECKED)
    # Once per request; outside one (a worker, the CLI), once a second. The
    # clock is asked only when a scheduled version is waiting: under a lock a
    # caller should not be sent to read the sandbox clock for nothing.
    if usable and checked is not None and checked[0] is snap and \
            (has_request_context() or time.monotonic() - checked[1] < CACHE_SECONDS) and \
            (snap.next_change is None or now() < snap.next_change):
        return snap
    try:
        # In the caller's session, not a connection of its own: a request
        # holding a lock while it waits for a second connection from a full
        # pool would wait for ever.
        row = db.session.execute(select(RuleRevision.revision, RuleRevision.changed_at)
                                 .where(RuleRevision.id == 1)).one_or_none()
        stamp = tuple(row) if row else (0, None)
        if not (usable and snap.stamp == stamp and (snap.next_change is None or now() < snap.next_change)):
            at = now()
            versions = db.session.execute(select(RuleVersion.key, RuleVersion.value, RuleVersion.effective_from,
                                                 RuleVersion.revision)
                                          .where(RuleVersion.cancelled_at.is_(None))).all()
            snap = _Snapshot(base, stamp, _overlay(base, values_at(versions, at)), _next_change(versions, at))
            extensions[_CACHE] = snap
    except SQLAlchemyError as exc:  # e.g. before `flask db upgrade` made the tables
        log.warning("rule versions unreadable (%s): the last values read, else the configuration's",
                    type(exc).__name__)
        if usable:
            return snap
        return _Snapshot(base, (None, None), {name: base[name] for name in SECTIONS}, None)
    setattr(g, _CHECKED, (snap, time.monotonic()))
    return snap


def _overlay(base, values: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {name: MappingProxyType({**base[name], **{k: v for k, v in values.items() if RULES[k].section == name}})
            for name in SECTIONS}


def forget() -> None:
    """Read the rules again on the next call (this process changed them)."""
    if has_app_context():
        current_app.extensions.pop(_CACHE, None)
        if hasattr(g, _CHECKED):
            delattr(g, _CHECKED)


@event.listens_for(Session, "after_commit")
def _forget_after_commit(session) -> None:
    if session.info.pop(_DIRTY, False):
        forget()


@event.listens_for(Session, "after_rollback")
def _forget_after_rollback(session) -> None:
    # What this transaction read of its own change (never committed) is not kept either.
    if session.info.pop(_DIRTY, False):
        forget()


# -- changing them ----------------------------------------------------------------

def _lock() -> RuleRevision:
    db.session.execute(insert_ignoring_conflict(RuleRevision, {"id": 1, "revision": 0, "changed_at": now()}, ["id"]))
    return db.session.scalars(select(RuleRevision).where(RuleRevision.id == 1).with_for_update()
                              .execution_options(populate_existing=True)).one()


def _live_versions() -> list[RuleVersion]:
    return list(db.session.scalars(select(RuleVersion).where(RuleVersion.cancelled_at.is_(None))
                                   .order_by(RuleVersion.effective_from, RuleVersion.revision)))


def _reason(reason: str | None) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise DomainError("请填写修改原因")
    if len(reason) > MAX_REASON:
        raise DomainError(f"原因最多 {MAX_REASON} 个字")
    return reason


def _start(effective_from: datetime | None, at: datetime) -> datetime:
    if effective_from is None:
        return at
    if effective_from.tzinfo is None:
        raise ValueError("naive datetime given; use handlers.clock.now()")
    if effective_from < at - PAST_GRACE:
        raise DomainError("生效时间不能早于现在")
    if effective_from > at + MAX_AHEAD:
        raise DomainError("生效时间最多设在一年之内")
    return max(effective_from, at)


def parse_time(text: str | None) -> datetime | None:
    """A form's China-time "2026-12-02T10:00" (or with a space); empty: now."""
    text = unicodedata.normalize("NFKC", text or "").strip().replace(" ", "T")
    if not text:
        return None
    try:
        moment = datetime.strptime(text[:16], "%Y-%m-%dT%H:%M")
    except ValueError:
        raise DomainError("生效时间的格式应为 2026-12-02 10:00") from None
    return moment.replace(tzinfo=CHINA)


def chosen_start(when: str, text: str | None) -> datetime | None:
    """The page's choice: "now" (None), or "later" at a China time, which must then be given."""
    if when != "later":
        return None
    start = parse_time(text)
    if start is None:
        raise DomainError("请选择生效时间，或选择立即生效")
    return start


def _when(moment: datetime, since: datetime) -> str:
    return "" if moment <= since else f"{moment.astimezone(CHINA):%Y-%m-%d %H:%M} 起（已排定的版本）"


def _check_timeline(versions: Sequence, since: datetime) -> None:
    """From ``since`` on, at every moment a version takes effect: both rates
    within the cap, per product too; the minimum withdrawal within the daily limit."""
    cap = _toml()["distribution"]["max_total_rate_bp"]
    products = list(db.session.scalars(select(Product).where(
        or_(Product.level1_rate_bp.is_not(None), Product.level2_rate_bp.is_not(None))).order_by(Product.id)))
    for moment in [since] + sorted({v.effective_from for v in versions if v.effective_from > since}):
        values, when = values_at(versions, moment), _when(moment, since)
        level1, level2 = values["level1_rate_bp"], values["level2_rate_bp"]
        if level1 + level2 > cap:
            raise DomainError(f"{when}一级佣金 {_percent(level1)} + 二级佣金 {_percent(level2)} = "
                              f"{_percent(level1 + level2)}，超过两级佣金合计上限 {_percent(cap)}")
        for p in products:
            own1 = level1 if p.level1_rate_bp is None else p.level1_rate_bp
            own2 = level2 if p.level2_rate_bp is None else p.level2_rate_bp
            if own1 + own2 > cap:
                raise DomainError(f"{when}商品「{p.name}」的一级佣金 {_percent(own1)} + 二级佣金 {_percent(own2)} = "
                                  f"{_percent(own1 + own2)}，超过两级佣金合计上限 {_percent(cap)}；"
                                  "请先调整该商品的佣金比例")
        low, high = values["withdraw_min_fen"], values["withdraw_daily_limit_fen"]
        if low > high:
            raise DomainError(f"{when}最低提现金额 {show('withdraw_min_fen', low)} 高于每人每日提现上限 "
                              f"{show('withdraw_daily_limit_fen', high)}")


def _after(head: RuleRevision, at: datetime) -> datetime:
    """Now, but never before the last save: another host's clock a little
    ahead must not make a later save take effect before an earlier one."""
    if head.changed_at is not None and at < head.changed_at <= at + MAX_SKEW:
        return head.changed_at
    return at


def _stale(head: RuleRevision, expected_revision: int | None) -> None:
    if expected_revision is not None and expected_revision != head.revision:
        raise Conflict("规则刚被其他人修改过，本次没有保存；请看页面上的最新值后再修改")


def _changed(head: RuleRevision, at: datetime) -> None:
    head.revision += 1
    head.changed_at = at
    db.session.info[_DIRTY] = True


def save(values: Mapping[str, Any], *, reason: str, actor: Actor, effective_from: datetime | None = None,
         expected_revision: int | None = None) -> list[RuleVersion]:
    """New versions of the rules in ``values`` whose value differs from the
    one in effect now, from ``effective_from`` (None: now). With
    ``expected_revision`` (what the page showed) a save made on an outdated
    page is refused rather than undoing the other person's change."""
    for key, value in values.items():
        check_value(key, value)
    reason = _reason(reason)
    head = _lock()
    at = _after(head, now())
    start = _start(effective_from, at)
    _stale(head, expected_revision)
    versions = _live_versions()
    current = values_at(versions, at)
    changed = {key: value for key, value in values.items() if current[key] != value}
    if not changed:
        raise DomainError("没有修改任何规则")
    _changed(head, at)
    new = [RuleVersion(revision=head.revision, key=key, value=value, effective_from=start,
                       created_by=actor.name[:64], created_by_id=actor.staff_id, reason=reason, created_at=at)
           for key, value in changed.items()]
    _check_timeline(versions + new, start)
    db.session.add_all(new)
    db.session.flush()
    audit.record(actor, "rules.set", "rules", head.revision, before={k: current[k] for k in changed},
                 after={**changed, "effective_from": start.isoformat()}, reason=reason, at=at)
    return new


def cancel(version_id: int, *, reason: str, actor: Actor, expected_revision: int | None = None) -> RuleVersion:
    """Withdraw a version that has not taken effect yet."""
    reason = _reason(reason)
    head = _lock()
    version = db.session.get(RuleVersion, version_id, populate_existing=True)
    if version is None:
        raise NotFound("这个规则版本不存在")
    if version.cancelled_at is not None:
        raise Conflict("这个版本已经撤销过了")
    at = _after(head, now())
    if version.effective_from <= at:
        raise Conflict("这个版本已经生效，不能撤销；如需改回，请设置新的值")
    _stale(head, expected_revision)
    _check_timeline([v for v in _live_versions() if v.id != version.id], version.effective_from)
    version.cancelled_at, version.cancelled_by = at, actor.name[:64]
    _changed(head, at)
    db.session.flush()
    audit.record(actor, "rules.cancel", "rule_version", version.id,
                 before={version.key: version.value, "effective_from": version.effective_from.isoformat()},
                 reason=reason, at=at)
    return version


def check_product_rates(level1_rate_bp: int | None, level2_rate_bp: int | None) -> None:
    """A product's own rates, with the default for the one it leaves empty,
    within the cap now and under every scheduled version. Takes the rules'
    lock, so a product saved while the rates change is checked against the
    rates that win."""
    if level1_rate_bp is None and level2_rate_bp is None:
        return  # the defaults, checked whenever they change
    _lock()
    at = now()
    cap = _toml()["distribution"]["max_total_rate_bp"]
    versions = _live_versions()
    for moment in [at] + sorted({v.effective_from for v in versions if v.effective_from > at}):
        values = values_at(versions, moment)
        level1 = values["level1_rate_bp"] if level1_rate_bp is None else level1_rate_bp
        level2 = values["level2_rate_bp"] if level2_rate_bp is None else level2_rate_bp
        if level1 + level2 > cap:
            raise DomainError(f"{_when(moment, at)}一级佣金 {_percent(level1)} + 二级佣金 {_percent(level2)} = "
                              f"{_percent(level1 + level2)}，超过两级佣金合计上限 {_percent(cap)}")


# -- what the page shows ----------------------------------------------------------

@dataclass(frozen=True)
class Row:
    rule: Rule
    value: Any
    version: RuleVersion | None        # the one in effect; None: the configuration file's value
    scheduled: list[RuleVersion]       # later versions, soonest first


@dataclass(frozen=True)
class Overview:
    groups: list[tuple[str, list[Row]]]
    revision: int
    at: datetime
    cap_bp: int


def revision() -> int:
    return db.session.scalar(select(RuleRevision.revision).where(RuleRevision.id == 1)) or 0


def overview() -> Overview:
    at = now()
    versions = _live_versions()
    values = values_at(versions, at)
    rows = {}
    for key, rule in RULES.items():
        mine = [v for v in versions if v.key == key]
        in_effect = [v for v in mine if v.effective_from <= at]
        rows[key] = Row(rule, values[key], max(in_effect, key=_order) if in_effect else None,
                        sorted((v for v in mine if v.effective_from > at), key=_order))
    return Overview([(title, [rows[k] for k in keys]) for title, keys in GROUPS], revision(), at,
                    _toml()["distribution"]["max_total_rate_bp"])


STATE_TEXT = {"current": "生效中", "scheduled": "待生效", "replaced": "已被替换", "cancelled": "已撤销"}


def history(key: str | None = None, before_id: int | None = None, limit: int = 50) -> list[RuleVersion]:
    """Every version, newest first (``limit + 1`` rows: the extra says a next page exists)."""
    query = select(RuleVersion).order_by(RuleVersion.id.desc()).limit(limit + 1)
    if key:
        query = query.where(RuleVersion.key == key)
    if before_id:
        query = query.where(RuleVersion.id < before_id)
    return list(db.session.scalars(query))


def in_effect_ids(at: datetime | None = None) -> set[int]:
    """The versions in effect now, one per key at most (for the history's labels)."""
    at = at or now()
    latest: dict[str, RuleVersion] = {}
    for version in _live_versions():
        if version.effective_from <= at:
            latest[version.key] = version  # _live_versions is in effect order
    return {v.id for v in latest.values()}


def state_of(version: RuleVersion, current: set[int], at: datetime) -> str:
    """"cancelled", "scheduled", "current" or "replaced"."""
    if version.cancelled_at is not None:
        return "cancelled"
    if version.effective_from > at:
        return "scheduled"
    return "current" if version.id in current else "replaced"
