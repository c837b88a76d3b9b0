"""The merchant's rules as versions (handlers/rules.py): the TOML gives the
first values, each saved version is in effect from its time (on the sandbox
clock too), bad values are refused with nothing changed, posted commission
keeps its rate, every process follows a change without a restart, and two
staff saving at once leave the versions consistent."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from app.config import SCHEMA
from conftest import needs_postgres, second_product
from distribution_helpers import make_distributor, make_user
from handlers import applications, audit, catalogue, clock, outbox, rules
from handlers.settings import section
from handlers.clock import now
from handlers.errors import Conflict, DomainError
from models import Application, AuditEntry, Product, RuleRevision, RuleVersion, db
from test_ledger import customer_of, earned, paid_order, product

OWNER = audit.Actor("owner1", staff_id=None, role="owner")
GOOD = ("李四", "13912345678", "我有 500 人的宝妈群")


@pytest.fixture(autouse=True)
def real_time_after(app):
    clock.forget()
    rules.forget()
    yield
    outbox.rollback()
    clock.back_to_real_time(actor=audit.SYSTEM)
    outbox.commit()
    clock.forget()
    rules.forget()


def save(values: dict, reason: str = "调整", **kwargs) -> list[RuleVersion]:
    saved = rules.save(values, reason=reason, actor=OWNER, **kwargs)
    outbox.commit()
    return saved


def distribution(key: str):
    return section("distribution")[key]


def count(model) -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(model))


def test_the_ranges_are_the_configuration_s():
    """The page refuses exactly what the TOML file would refuse at start-up."""
    for key, rule in rules.RULES.items():
        check = SCHEMA[rule.section][key].check
        if rule.kind == "review":
            assert all(check(v) is None for v in rules.REVIEW_NAMES) and check("sometimes")
            continue
        assert check(rule.lo) is None and check(rule.hi) is None, key
        assert check(rule.lo - 1) and check(rule.hi + 1), key


def test_the_toml_gives_the_first_values_then_a_version_takes_over(app, settings):
    assert distribution("level1_rate_bp") == settings["distribution"]["level1_rate_bp"] == 1000
    [v] = save({"level1_rate_bp": 1200, "level2_rate_bp": 500}, reason="双十二活动")
    assert (v.key, v.value, v.created_by, v.reason) == ("level1_rate_bp", 1200, "owner1", "双十二活动")
    assert distribution("level1_rate_bp") == 1200 and distribution("level2_rate_bp") == 500
    assert distribution("max_total_rate_bp") == 3000  # the contract stays the file's
    assert section("orders")["max_quantity"] == 99
    assert section("wechat") is settings["wechat"]
    [row] = rules.overview().groups[0][1][:1]
    assert row.value == 1200 and row.version.id == v.id and not row.scheduled


def test_each_change_is_audited_with_who_why_and_when(app):
    save({"withdraw_fee_bp": 100, "freeze_days": 10}, reason="财务要求")
    [entry] = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "rules.set")).all()
    assert entry.actor == "owner1" and entry.reason == "财务要求" and entry.target_type == "rules"
    assert entry.before == {"withdraw_fee_bp": 0, "freeze_days": 7}
    assert entry.after["withdraw_fee_bp"] == 100 and entry.after["freeze_days"] == 10
    assert "effective_from" in entry.after


def test_a_version_for_later_takes_effect_when_its_time_comes_on_the_sandbox_clock(app):
    [v] = save({"auto_confirm_days": 10}, effective_from=now() + timedelta(hours=6))
    assert section("orders")["auto_confirm_days"] == 7
    [row] = [r for _, rows in rules.overview().groups for r in rows if r.rule.key == "auto_confirm_days"]
    assert row.value == 7 and [s.id for s in row.scheduled] == [v.id]
    clock.move_forward(1, actor=audit.SYSTEM)
    outbox.commit()
    clock.forget()
    assert section("orders")["auto_confirm_days"] == 10
    assert rules.state_of(v, rules.in_effect_ids(now()), now()) == "current"


def test_later_times_of_the_same_key_win_and_a_same_time_save_replaces(app):
    soon = now() + timedelta(hours=1)
    save({"freeze_days": 10}, effective_from=soon)
    save({"freeze_days": 3})
    assert distribution("freeze_days") == 3
    clock.move_forward(1, actor=audit.SYSTEM)
    outbox.commit()
    clock.forget()
    assert distribution("freeze_days") == 10
    save({"freeze_days": 5}, reason="改回")
    assert distribution("freeze_days") == 5


def test_a_rate_change_never_alters_commission_already_posted(app):
    d = make_distributor("一级")
    paid_order(customer_of(d), {product(10000).id: 1})
    assert earned(d) == [(1, 1000, 1000)]
    save({"level1_rate_bp": 1500})
    assert earned(d) == [(1, 1000, 1000)]  # the posted row keeps its rate
    paid_order(customer_of(d), {product(20000).id: 1})
    assert earned(d) == [(1, 1000, 1000), (1, 1500, 3000)]


@pytest.mark.parametrize("values, message", [
    ({"level1_rate_bp": 10001}, "0-10000 基点"),
    ({"level2_rate_bp": -1}, "0-10000 基点"),
    ({"level1_rate_bp": True}, "0-10000 基点"),
    ({"level1_rate_bp": 2600}, "一级佣金 26% + 二级佣金 5% = 31%，超过两级佣金合计上限 30%"),
    ({"level1_rate_bp": 2000, "level2_rate_bp": 1500}, "超过两级佣金合计上限 30%"),
    ({"max_total_rate_bp": 5000}, "只能在配置文件中修改"),
    ({"max_quantity": 5}, "只能在配置文件中修改"),
    ({"secret_key": "x"}, "没有名为 secret_key 的规则"),
    ({"review": "sometimes"}, "分销申请审核方式只能是"),
    ({"withdraw_fee_bp": 5001}, "提现手续费需在 0%-50%"),
    ({"withdraw_min_fen": 0}, "最低提现金额需在 ¥0.01"),
    ({"withdraw_min_fen": 3_000_000}, "高于每人每日提现上限 ¥20000.00"),
    ({"pay_timeout_minutes": 0}, "1-1440 分钟之间的整数"),
    ({"auto_confirm_days": 61}, "1-60 天之间的整数"),
    ({"freeze_days": 7}, "没有修改任何规则"),
    ({}, "没有修改任何规则"),
])
def test_bad_values_are_refused_with_a_message_and_change_nothing(app, values, message):
    with pytest.raises(DomainError) as refused:
        rules.save(values, reason="试试", actor=OWNER)
    outbox.rollback()
    assert message in refused.value.message
    assert count(RuleVersion) == 0 and count(AuditEntry) == 0 and rules.revision() == 0


@pytest.mark.parametrize("reason, when, message", [
    ("", None, "请填写修改原因"), ("  ", None, "请填写修改原因"), ("长" * 501, None, "原因最多 500 个字"),
    ("ok", timedelta(minutes=-5), "生效时间不能早于现在"), ("ok", timedelta(days=400), "一年之内"),
])
def test_a_reason_and_a_sensible_time_are_required(app, reason, when, message):
    with pytest.raises(DomainError, match=message):
        rules.save({"freeze_days": 3}, reason=reason, actor=OWNER,
                   effective_from=now() + when if when is not None else None)
    outbox.rollback()
    assert count(RuleVersion) == 0


def test_form_text_is_parsed_in_the_units_people_use():
    assert rules.parse("level1_rate_bp", "12.5") == 1250 and rules.parse("level1_rate_bp", "１０％") == 1000
    assert rules.parse("withdraw_min_fen", "1.5") == 150 and rules.parse("freeze_days", " 10 ") == 10
    for key, text, message in [("level1_rate_bp", "abc", "一级佣金比例请填写"), ("freeze_days", "-1", "请填写整数"),
                               ("freeze_days", "", "请填写佣金冻结天数"), ("withdraw_min_fen", "1.234", "请填写金额"),
                               ("level2_rate_bp", "100.01", "二级佣金比例需在 0%-100% 之间（0-10000 基点）"), ("freeze_days", "366", "0-365")]:
        with pytest.raises(DomainError, match=message):
            rules.parse(key, text)
    assert rules.form_text("level1_rate_bp", 1250) == "12.5" and rules.form_text("withdraw_min_fen", 150) == "1.50"
    assert rules.show("withdraw_min_fen", 150) == "¥1.50" and rules.show("review", "auto") == "自动通过"


def test_a_product_s_own_rate_blocks_a_default_that_would_break_its_cap(app):
    special = catalogue.add_product("精华液", 19900, 10, level1_rate_bp=2400)
    outbox.commit()
    with pytest.raises(DomainError, match="商品「精华液」的一级佣金 24% \\+ 二级佣金 7% = 31%"):
        rules.save({"level2_rate_bp": 700}, reason="加码", actor=OWNER)
    outbox.rollback()
    assert distribution("level2_rate_bp") == 500 and special.level1_rate_bp == 2400
    save({"level2_rate_bp": 600})  # 24% + 6% = the cap: allowed


def test_products_are_held_to_scheduled_rates_too(app):
    save({"level2_rate_bp": 1000}, effective_from=now() + timedelta(days=2))
    catalogue.add_product("面霜", 9900, 10, level1_rate_bp=2000)  # 20% + 10% = 30%: fine
    with pytest.raises(DomainError, match="起（已排定的版本）一级佣金 25% \\+ 二级佣金 10% = 35%"):
        catalogue.add_product("眼霜", 9900, 10, level1_rate_bp=2500)
    outbox.rollback()
    with pytest.raises(DomainError, match="^一级佣金 28% \\+ 二级佣金 5% = 33%"):
        catalogue.add_product("乳液", 9900, 10, level1_rate_bp=2800)
    outbox.rollback()


def test_every_moment_ahead_is_checked_not_only_now(app):
    save({"level1_rate_bp": 2500}, effective_from=now() + timedelta(days=1))
    with pytest.raises(DomainError, match="起（已排定的版本）一级佣金 25% \\+ 二级佣金 10% = 35%"):
        rules.save({"level2_rate_bp": 1000}, reason="加码", actor=OWNER)
    outbox.rollback()
    assert count(RuleVersion) == 1


def test_a_future_version_can_be_cancelled_and_then_never_takes_effect(app):
    [v] = save({"pay_timeout_minutes": 15}, effective_from=now() + timedelta(hours=2))
    cancelled = rules.cancel(v.id, reason="活动取消", actor=OWNER)
    outbox.commit()
    assert cancelled.cancelled_by == "owner1"
    clock.move_forward(1, actor=audit.SYSTEM)
    outbox.commit()
    clock.forget()
    assert section("orders")["pay_timeout_minutes"] == 30
    entry = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "rules.cancel")).one()
    assert entry.target_id == str(v.id) and entry.reason == "活动取消" and entry.before["pay_timeout_minutes"] == 15
    with pytest.raises(Conflict, match="已经撤销过了"):
        rules.cancel(v.id, reason="再撤", actor=OWNER)
    outbox.rollback()


def test_a_version_in_effect_cannot_be_cancelled(app):
    [v] = save({"freeze_days": 3})
    with pytest.raises(Conflict, match="已经生效"):
        rules.cancel(v.id, reason="撤", actor=OWNER)
    outbox.rollback()
    with pytest.raises(DomainError, match="不存在"):
        rules.cancel(v.id + 999, reason="撤", actor=OWNER)
    outbox.rollback()
    assert distribution("freeze_days") == 3


def test_a_cancellation_that_would_break_the_cap_later_is_refused(app):
    [lower] = save({"level1_rate_bp": 500}, effective_from=now() + timedelta(days=1))
    save({"level2_rate_bp": 2500}, effective_from=now() + timedelta(days=2))  # 5% + 25%
    with pytest.raises(DomainError, match="一级佣金 10% \\+ 二级佣金 25% = 35%"):
        rules.cancel(lower.id, reason="撤", actor=OWNER)
    outbox.rollback()
    assert db.session.get(RuleVersion, lower.id).cancelled_at is None


def test_a_save_from_an_outdated_page_is_refused(app):
    seen = rules.revision()
    save({"freeze_days": 3}, expected_revision=seen)
    with pytest.raises(Conflict, match="刚被其他人修改过"):
        rules.save({"freeze_days": 5}, reason="我的", actor=OWNER, expected_revision=seen)
    outbox.rollback()
    assert distribution("freeze_days") == 3 and rules.revision() == seen + 1


def test_switching_to_auto_review_leaves_the_queue_waiting(app):
    waiting = applications.apply_for_distributor(make_user(), *GOOD)
    outbox.commit()
    assert waiting.status == "pending"
    save({"review": "auto"}, reason="招募期")
    db.session.expire_all()
    assert db.session.get(Application, waiting.id).status == "pending"
    newcomer = applications.apply_for_distributor(make_user(), *GOOD)
    outbox.commit()
    assert newcomer.status == "approved" and newcomer.decided_by == "auto"
    save({"review": "threshold", "review_threshold_fen": 0}, reason="满额")
    assert applications.apply_for_distributor(make_user(), *GOOD).decided_by == "threshold"
    outbox.commit()


def test_the_change_reaches_another_process_without_a_restart(app, settings):
    with second_product(settings) as other:
        with other.app_context():
            assert other.extensions is not app.extensions
            assert rules.section("distribution")["withdraw_min_fen"] == 100  # read and kept
        save({"withdraw_min_fen": 500}, reason="减少小额提现")
        with other.app_context():  # its next request (a new context) asks the revision again
            assert rules.section("distribution")["withdraw_min_fen"] == 500
        [v] = save({"withdraw_min_fen": 800}, effective_from=now() + timedelta(hours=3))
        with other.app_context():
            assert rules.section("distribution")["withdraw_min_fen"] == 500
        clock.move_forward(1, actor=audit.SYSTEM)
        outbox.commit()
        with other.app_context():
            clock.forget()
            assert rules.section("distribution")["withdraw_min_fen"] == 800
        assert v.key == "withdraw_min_fen"


def test_without_the_tables_the_file_s_values_stand(app, settings):
    """Before `flask db upgrade` made the tables (a reader that finds none)."""
    with second_product(settings, app={"database_url": "sqlite:///:memory:"}) as other:
        with other.app_context():
            assert rules.section("distribution")["level1_rate_bp"] == 1000
            assert rules.section("orders")["pay_timeout_minutes"] == 30


# -- two staff at once (PostgreSQL) -------------------------------------------------

def _at_once(live, *calls) -> list[str]:
    barrier, results = threading.Barrier(len(calls)), []

    def one(values, expected):
        with live.app_context():
            barrier.wait(timeout=10)
            try:
                rules.save(values, reason="同时保存", actor=OWNER, expected_revision=expected)
                outbox.commit()
                results.append("ok")
            except DomainError as exc:
                outbox.rollback()
                results.append(type(exc).__name__ + ":" + exc.message)

    threads = [threading.Thread(target=one, args=call) for call in calls]
    [t.start() for t in threads]
    [t.join() for t in threads]
    return results


@needs_postgres
def test_two_staff_saving_the_same_page_at_once_one_wins(app, live):
    seen = rules.revision()
    results = _at_once(live, ({"freeze_days": 3}, seen), ({"freeze_days": 5}, seen), ({"freeze_days": 9}, seen))
    assert sorted(r.split(":")[0] for r in results) == ["Conflict", "Conflict", "ok"]
    assert count(RuleVersion) == 1 and rules.revision() == seen + 1
    assert count(AuditEntry) == 1


@needs_postgres
def test_two_rates_raised_at_once_never_pass_the_cap_together(app, live):
    """Each alone is allowed (25% + 5%, 10% + 20%); both together would be 45%."""
    results = _at_once(live, ({"level1_rate_bp": 2500}, None), ({"level2_rate_bp": 2000}, None))
    assert sorted(r.split(":")[0] for r in results) == ["DomainError", "ok"]
    assert any("超过两级佣金合计上限" in r for r in results)
    db.session.rollback()
    rules.forget()
    assert distribution("level1_rate_bp") + distribution("level2_rate_bp") <= 3000
    assert count(RuleVersion) == 1 and db.session.get(RuleRevision, 1).revision == 1


@needs_postgres
def test_many_saves_at_once_get_one_revision_each(app, live):
    results = _at_once(live, *[({"freeze_days": days}, None) for days in (1, 2, 3, 4, 5)])
    assert results == ["ok"] * 5
    db.session.rollback()
    revisions = sorted(db.session.scalars(select(RuleVersion.revision)))
    assert revisions == [1, 2, 3, 4, 5] and rules.revision() == 5
    last = db.session.scalars(select(RuleVersion).order_by(RuleVersion.revision.desc())).first()
    rules.forget()
    assert distribution("freeze_days") == last.value


@needs_postgres
def test_a_product_saved_while_the_rate_changes_is_checked_against_the_winner(app, live):
    special = catalogue.add_product("精华液", 19900, 10)
    outbox.commit()
    barrier, results = threading.Barrier(2), []

    def raise_default():
        with live.app_context():
            barrier.wait(timeout=10)
            try:
                rules.save({"level2_rate_bp": 1000}, reason="加码", actor=OWNER)
                outbox.commit()
                results.append("rules")
            except DomainError:
                outbox.rollback()

    def raise_product():
        with live.app_context():
            barrier.wait(timeout=10)
            try:
                catalogue.update_product(special.id, level1_rate_bp=2500, actor=OWNER)
                outbox.commit()
                results.append("product")
            except DomainError:
                outbox.rollback()

    threads = [threading.Thread(target=raise_default), threading.Thread(target=raise_product)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(results) == 1  # 25% + 10% would pass the cap: only the first of the two stands
    db.session.expire_all()
    rules.forget()
    level1 = db.session.get(Product, special.id).level1_rate_bp or distribution("level1_rate_bp")
    assert level1 + distribution("level2_rate_bp") <= 3000


def test_a_save_never_takes_effect_before_the_one_before_it(app):
    """Another host's clock a few seconds ahead wrote the last save: the next
    one starts no earlier, so the later save is the one that stands."""
    save({"freeze_days": 3})
    head = db.session.get(RuleRevision, 1)
    ahead = head.changed_at + timedelta(seconds=3)
    head.changed_at = ahead
    outbox.commit()
    [v] = save({"freeze_days": 4})
    assert v.effective_from == ahead and v.revision == 2


def test_a_sandbox_clock_moved_back_is_not_taken_for_a_skew(app):
    clock.move_forward(2, actor=audit.SYSTEM)
    outbox.commit()
    clock.forget()
    [future] = save({"freeze_days": 5})  # saved two days ahead
    clock.back_to_real_time(actor=audit.SYSTEM)
    outbox.commit()
    clock.forget()
    [v] = save({"freeze_days": 6})
    assert v.effective_from <= now() and distribution("freeze_days") == 6
    # what was saved in the sandbox's future waits for that time again
    [row] = [r for _, rows in rules.overview().groups for r in rows if r.rule.key == "freeze_days"]
    assert row.value == 6 and [s.id for s in row.scheduled] == [future.id]
