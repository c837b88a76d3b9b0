"""The commission ledger, balances and withdrawals (PRODUCT.md flows 8-9):
posting for every role, the frozen → withdrawable life with a frozen clock,
refunds before and after, and withdrawals refused for every reason."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from distribution_helpers import make_distributor, make_user
from handlers.audit import SYSTEM
from handlers import audit, catalogue, commissions, orders, outbox, payments, referrals, withdrawals
from handlers.clock import now
from handlers.errors import Conflict, DomainError
from handlers.payments import GatewayTrade
from models import (Balance, CommissionRow, Distributor, Notification, PayChannel, Refund, Source, Withdrawal,
                    db)

RECEIVER = orders.Receiver.checked("张三", "13800138000", "上海市徐汇区漕溪北路 1 号")
T0 = now().replace(microsecond=0)
_txn = iter(range(10**6, 10**7))


def product(price=10000, l1=None, l2=None, stock=1000):
    p = catalogue.add_product(f"商品{price}", price, stock, level1_rate_bp=l1, level2_rate_bp=l2)
    outbox.commit()
    return p


def customer_of(d: Distributor):
    user = make_user()
    referrals.attribute_referral(user, Source.QR, d.unit.scene)
    outbox.commit()
    return user


def paid_order(user, items, at=T0):
    order = orders.place_order(orders.Buyer(user=user), items, RECEIVER, at=at)
    outbox.commit()
    outcome = payments.mark_paid(GatewayTrade(PayChannel.WECHATPAY, order.order_no, True, str(next(_txn)),
                                              order.total_fen), at=at)
    outbox.commit()
    assert outcome.ok
    return order


def complete(order, at):
    orders.ship_order(order.order_no, "顺丰速运", "SF1234567890", at=at, actor=SYSTEM)
    orders.confirm_receipt(order.order_no, at=at)
    outbox.commit()


def rows(**where):
    query = select(CommissionRow).order_by(CommissionRow.id)
    for key, value in where.items():
        query = query.where(getattr(CommissionRow, key) == value)
    return db.session.scalars(query).all()


def balance(d: Distributor) -> Balance:
    db.session.expire_all()
    return commissions.balance_of(d.id)


def earned(d: Distributor) -> list[tuple[int, int, int]]:
    return [(r.level, r.rate_bp, r.amount_fen) for r in rows(distributor_id=d.id)]


def test_the_rounding_rule_is_down_to_the_fen():
    assert commissions.commission_of(1990, 1500) == 298  # 298.5
    assert commissions.commission_of(1, 9999) == 0
    assert commissions.commission_of(10000, 1000) == 1000


# -- posting for every role (PRODUCT.md flow 7) --------------------------

def test_a_level1_buying_in_their_own_unit_earns_level1(app, settings):
    d = make_distributor("一级")
    paid_order(d.user, {product().id: 1})
    assert earned(d) == [(1, settings["distribution"]["level1_rate_bp"], 1000)]


def test_a_level2_buying_earns_level1_and_their_parent_level2(app, settings):
    top = make_distributor("一级")
    d2 = make_distributor("二级", referrer=top)
    paid_order(d2.user, {product().id: 1})
    assert earned(d2) == [(1, 1000, 1000)] and earned(top) == [(2, 500, 500)]


def test_a_customer_of_a_level1_earns_their_distributor_level1(app):
    d = make_distributor()
    paid_order(customer_of(d), {product().id: 2})
    assert earned(d) == [(1, 1000, 2000)]


def test_a_customer_of_a_level2_pays_two_levels_and_never_a_third(app):
    top = make_distributor("一级")
    d2 = make_distributor("二级", referrer=top)
    d3 = make_distributor("也是二级", referrer=d2)  # recruited by a level 2: level 2 under the same level 1
    paid_order(customer_of(d3), {product().id: 1})
    assert earned(d3) == [(1, 1000, 1000)] and earned(top) == [(2, 500, 500)] and earned(d2) == []


def test_an_organic_order_posts_nothing(app):
    paid_order(make_user(), {product().id: 1})
    assert rows() == []


def test_a_frozen_distributor_earns_nothing(app):
    top = make_distributor("一级")
    d2 = make_distributor("二级", referrer=top)
    buyer = customer_of(d2)
    top.status = "frozen"
    outbox.commit()
    paid_order(buyer, {product().id: 1})
    assert earned(d2) == [(1, 1000, 1000)] and earned(top) == []


def test_per_product_rates_win_over_the_default_and_are_snapshotted(app):
    top = make_distributor("一级")
    d2 = make_distributor("二级", referrer=top)
    special, plain = product(1990, l1=1500, l2=600), product(5000)
    order = paid_order(customer_of(d2), {special.id: 1, plain.id: 1})
    assert sorted(earned(d2)) == [(1, 1000, 500), (1, 1500, 298)]
    assert sorted(earned(top)) == [(2, 500, 250), (2, 600, 119)]
    catalogue.update_product(special.id, level1_rate_bp=2400, actor=audit.SYSTEM)
    outbox.commit()
    assert all(r.base_fen in (1990, 5000) for r in rows(order_id=order.id))
    assert sorted(earned(d2)) == [(1, 1000, 500), (1, 1500, 298)]


def test_a_retried_posting_never_posts_twice(app):
    d = make_distributor()
    order = paid_order(customer_of(d), {product().id: 1})
    assert commissions.post_for_order(order) == []
    outbox.commit()
    assert len(rows()) == 1 and balance(d).frozen_fen == 1000


def test_one_row_per_line_and_level_is_kept_by_the_database(app):
    from sqlalchemy.exc import IntegrityError

    d = make_distributor()
    order = paid_order(customer_of(d), {product().id: 1})
    row = rows()[0]
    db.session.add(CommissionRow(distributor_id=d.id, order_id=order.id, order_line_id=row.order_line_id, level=1,
                                 base_fen=1, rate_bp=1, amount_fen=0))
    with pytest.raises(IntegrityError):
        db.session.flush()
    db.session.rollback()


# -- the life of commission, with a frozen clock ------------------------

def test_frozen_until_completed_plus_freeze_days_then_withdrawable(app, settings):
    d = make_distributor()
    order = paid_order(customer_of(d), {product().id: 1}, at=T0)
    assert (balance(d).frozen_fen, balance(d).withdrawable_fen) == (1000, 0)
    assert commissions.sweep(at=T0 + timedelta(days=365)) == 0  # not completed: stays frozen
    done = T0 + timedelta(days=2)
    complete(order, done)
    settle = done + timedelta(days=settings["distribution"]["freeze_days"])
    assert commissions.sweep(at=settle - timedelta(seconds=1)) == 0
    assert commissions.sweep(at=settle) == 1
    outbox.commit()
    b = balance(d)
    assert (b.frozen_fen, b.withdrawable_fen, b.lifetime_fen) == (0, 1000, 1000)
    assert commissions.sweep(at=settle + timedelta(days=1)) == 0  # idempotent
    assert rows()[0].state == "withdrawable"


def test_settlement_is_scheduled_as_a_delayed_job(app, settings):
    from models import OutboxRow

    d = make_distributor()
    order = paid_order(customer_of(d), {product().id: 1})
    complete(order, now())
    row = db.session.scalars(select(OutboxRow).where(OutboxRow.key == f"settle-{order.id}")).one()
    assert (row.task, row.args, row.state) == ("pay.jobs.settle_order", [order.id], "pending")
    assert row.due_at > now()  # waits in the database, not in Redis, until the freeze window ends


def test_a_refund_before_settlement_reverses(app):
    d = make_distributor()
    order = paid_order(customer_of(d), {product().id: 1})
    refund(order)
    assert rows()[0].state == "reversed"
    b = balance(d)
    assert (b.frozen_fen, b.withdrawable_fen, b.lifetime_fen) == (0, 0, 0)


def refund(order):
    payments.start_refund(order.order_no, "质量问题", actor=SYSTEM)
    outbox.commit()
    r = db.session.scalars(select(Refund).where(Refund.order_id == order.id, Refund.status == "pending")).one()
    assert payments.finish_refund(PayChannel.WECHATPAY, r.out_refund_no, True, r.amount_fen).ok
    outbox.commit()


def test_a_refund_after_settlement_claws_back_and_blocks_withdrawal(app, settings):
    d = make_distributor()
    buyer = customer_of(d)
    first = paid_order(buyer, {product().id: 1}, at=T0)
    complete(first, T0)
    commissions.sweep(at=T0 + timedelta(days=30))
    outbox.commit()
    key = withdrawals.new_request_key()
    withdrawals.request_withdrawal(d, 1000, key)
    outbox.commit()
    w = db.session.scalars(select(Withdrawal)).one()
    withdrawals.pay_manually(w.id, "银行流水 20261125001", actor=audit.SYSTEM)
    outbox.commit()
    # The order is returned after the money was paid out: take it back.
    payments.start_refund(first.order_no, "退货", actor=SYSTEM)  # shipped orders can be refunded
    outbox.commit()
    r = db.session.scalars(select(Refund)).one()
    payments.finish_refund(PayChannel.WECHATPAY, r.out_refund_no, True, r.amount_fen)
    outbox.commit()
    clawback = rows(kind="clawback")
    assert [(c.amount_fen, c.state) for c in clawback] == [(-1000, "withdrawable")]
    b = balance(d)
    assert (b.withdrawable_fen, b.withdrawn_fen, b.lifetime_fen) == (-1000, 1000, 0)
    with pytest.raises(Conflict) as exc:
        withdrawals.request_withdrawal(d, 100, withdrawals.new_request_key())
    outbox.rollback()
    assert "待抵扣" in exc.value.message
    # New income makes it good.
    second = paid_order(buyer, {product(30000).id: 1}, at=T0 + timedelta(days=40))
    complete(second, T0 + timedelta(days=40))
    commissions.sweep(at=T0 + timedelta(days=60))
    outbox.commit()
    assert balance(d).withdrawable_fen == 2000
    withdrawals.request_withdrawal(d, 2000, withdrawals.new_request_key())
    outbox.commit()


# -- withdrawals ----------------------------------------------------------

@pytest.fixture
def rich(app):
    """A distributor with ¥100.00 withdrawable."""
    d = make_distributor()
    order = paid_order(customer_of(d), {product(100000).id: 1}, at=T0 - timedelta(days=60))
    complete(order, T0 - timedelta(days=60))
    commissions.sweep()
    outbox.commit()
    assert balance(d).withdrawable_fen == 10000
    return d


@pytest.mark.parametrize("amount,key,message", [
    (99, None, "至少"), (10001, None, "余额不足"), (0, None, "金额"), (-5, None, "金额"), ("100", None, "金额"),
    (True, None, "金额"), (1000, "", "过期"), (1000, "short", "过期"), (1000, "bad key with spaces!", "过期"),
])
def test_refused_withdrawals_change_nothing(rich, amount, key, message):
    with pytest.raises(DomainError) as exc:
        withdrawals.request_withdrawal(rich, amount, withdrawals.new_request_key() if key is None else key)
    outbox.rollback()
    assert message in exc.value.message
    b = balance(rich)
    assert (b.withdrawable_fen, b.reserved_fen) == (10000, 0)
    assert db.session.scalar(select(func.count()).select_from(Withdrawal)) == 0


def test_the_daily_limit(rich, live):
    from app import create_app
    from app.config import build
    from conftest import make_raw_config

    s = live.config["SETTINGS"]
    raw = make_raw_config(s["app"]["base_url"], s["app"]["database_url"],
                          distribution={"withdraw_daily_limit_fen": 5000, "withdraw_fee_bp": 100})
    other = create_app(build(raw, {}, "tests"))
    with other.app_context():
        d = db.session.get(Distributor, rich.id)
        w = withdrawals.request_withdrawal(d, 3000, withdrawals.new_request_key())
        outbox.commit()
        assert (w.amount_fen, w.fee_fen, w.net_fen) == (3000, 30, 2970)
        with pytest.raises(Conflict) as exc:
            withdrawals.request_withdrawal(d, 2001, withdrawals.new_request_key())
        outbox.rollback()
        assert "每日" in exc.value.message
        withdrawals.reject(w.id, "信息有误", actor=audit.SYSTEM)  # rejected money no longer counts against today
        outbox.commit()
        withdrawals.request_withdrawal(d, 5000, withdrawals.new_request_key())
        outbox.commit()
        db.engine.dispose()


def test_a_frozen_distributor_cannot_withdraw(rich):
    rich.status = "frozen"
    outbox.commit()
    with pytest.raises(Conflict):
        withdrawals.request_withdrawal(rich, 1000, withdrawals.new_request_key())
    outbox.rollback()


def test_a_double_tap_is_one_request(rich):
    key = withdrawals.new_request_key()
    first = withdrawals.request_withdrawal(rich, 3000, key)
    outbox.commit()
    again = withdrawals.request_withdrawal(rich, 3000, key)
    outbox.commit()
    assert again.id == first.id
    b = balance(rich)
    assert (b.withdrawable_fen, b.reserved_fen) == (7000, 3000)


def test_a_hundred_requests_at_once_never_reserve_more_than_the_balance(rich, live):
    d_id, barrier, results = rich.id, threading.Barrier(100), []

    def ask():
        with live.app_context():
            d = db.session.get(Distributor, d_id)
            db.session.commit()  # give the connection back while waiting: 100 threads, a pool of 15
            barrier.wait(timeout=30)
            try:
                withdrawals.request_withdrawal(d, 300, withdrawals.new_request_key())
                outbox.commit()
                results.append("ok")
            except Conflict:
                outbox.rollback()
                results.append("refused")

    threads = [threading.Thread(target=ask) for _ in range(100)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert results.count("ok") == 33 and results.count("refused") == 67  # 33 × 300 ≤ 10000 < 34 × 300
    b = balance(rich)
    assert (b.withdrawable_fen, b.reserved_fen) == (100, 9900)


def test_paying_rejecting_and_transfers(rich):
    ask = lambda amount: withdrawals.request_withdrawal(rich, amount, withdrawals.new_request_key())  # noqa: E731
    paid, rejected, failed, cancelled, ok = ask(1000), ask(1000), ask(1000), ask(1000), ask(1000)
    outbox.commit()
    withdrawals.pay_manually(paid.id, "网银 0001", actor=audit.SYSTEM)
    withdrawals.reject(rejected.id, "账户信息不符", actor=audit.SYSTEM)
    for w in (failed, cancelled, ok):
        withdrawals.start_transfer(w.id, actor=audit.SYSTEM)
    outbox.commit()
    withdrawals.transfer_finished(failed.out_bill_no, "FAIL")
    withdrawals.transfer_finished(cancelled.out_bill_no, "CANCELLED")
    withdrawals.transfer_finished(ok.out_bill_no, "SUCCESS")
    withdrawals.transfer_finished(ok.out_bill_no, "SUCCESS")  # told twice
    outbox.commit()
    b = balance(rich)
    assert (b.withdrawable_fen, b.reserved_fen, b.withdrawn_fen) == (8000, 0, 2000)
    for w in (paid, rejected):
        with pytest.raises(Exception):
            withdrawals.reject(w.id, "再来一次", actor=audit.SYSTEM)
        outbox.rollback()
    kinds = db.session.scalars(select(Notification.kind).where(Notification.kind.like("withdrawal%"))).all()
    assert sorted(kinds) == ["withdrawal_paid", "withdrawal_paid", "withdrawal_rejected", "withdrawal_rejected",
                             "withdrawal_rejected"]


# -- notifications ---------------------------------------------------------

def test_every_event_notifies_once(app, jobs):
    from handlers import notifications
    from models import SandboxMessage

    d = make_distributor()
    buyer = customer_of(d)
    order = paid_order(buyer, {product().id: 1})
    payments.mark_paid(GatewayTrade(PayChannel.WECHATPAY, order.order_no, True, order.transaction_id,
                                    order.total_fen))  # the gateway retries
    outbox.commit()
    complete(order, T0 - timedelta(days=30))
    commissions.sweep()
    commissions.sweep()
    outbox.commit()
    kinds = sorted(db.session.scalars(select(Notification.kind).where(Notification.user_id == d.user_id)))
    assert kinds == ["application_approved", "commission_settled", "new_member", "new_order"]
    assert notifications.unread_count(d.user) == 4
    first = notifications.list_for(d.user)[-1]
    assert notifications.mark_read(d.user, first.id) == 1 and notifications.unread_count(d.user) == 3
    assert notifications.mark_read(d.user) == 3 and notifications.unread_count(d.user) == 0
    stranger = make_user()
    assert notifications.mark_read(stranger, first.id) == 0
    outbox.commit()
    jobs.run()
    db.session.rollback()
    # Template messages went to WeChat (here the sandbox) once per event,
    # for distributors who follow; these test users are not sandbox followers.
    assert db.session.scalar(select(func.count()).select_from(SandboxMessage)) == 0
