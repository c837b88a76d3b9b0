"""Money rules (issue 9, item 5): no withdrawal is paid while a claw-back
leaves the distributor owing; commission rates within 0-10 000 bp each and
both levels within ``[distribution] max_total_rate_bp`` (configuration,
catalogue, database, posting); money columns 64-bit; one order at most
¥1,000,000."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from conftest import make_raw_config, needs_postgres
from distribution_helpers import make_distributor
from handlers import audit, catalogue, commissions, orders, outbox, withdrawals
from handlers.errors import Conflict, DomainError
from models import Balance, CommissionRow, Distributor, OrderLine, Product, Withdrawal, db
from sandbox import wechatpay as sandbox_wx
from test_ledger import RECEIVER, T0, complete, customer_of, paid_order, product, refund



def balance(d: Distributor) -> tuple[int, int, int]:
    """(withdrawable, reserved, withdrawn) as committed."""
    db.session.rollback()
    b = commissions.balance_of(d.id)
    return b.withdrawable_fen, b.reserved_fen, b.withdrawn_fen


def fresh(withdrawal_id: int) -> Withdrawal:
    db.session.rollback()
    return db.session.get(Withdrawal, withdrawal_id)


def cli(app, *args: str):
    return app.test_cli_runner().invoke(args=list(args))


def other_app(live, **distribution):
    """The product on the same database with other [distribution] settings."""
    from app import create_app
    from app.config import build

    s = live.config["SETTINGS"]
    return create_app(build(make_raw_config(s["app"]["base_url"], s["app"]["database_url"],
                                            distribution=distribution), {}, "tests"))


# -- a claw-back while a withdrawal waits -------------------------------------------

@pytest.fixture
def owing(app, sandbox_user):
    """A distributor who asked to withdraw all of their ¥100.00, whose
    order was then refunded: the claw-back leaves them owing ¥100.00 while
    the withdrawal is still reserved."""
    who = sandbox_user("小钱")
    d = make_distributor("小钱", openid=who.openid)
    order = paid_order(customer_of(d), {product(100000).id: 1}, at=T0 - timedelta(days=60))
    complete(order, T0 - timedelta(days=60))
    commissions.sweep()
    outbox.commit()
    w = withdrawals.request_withdrawal(d, 10000, withdrawals.new_request_key())
    outbox.commit()
    assert balance(d) == (0, 10000, 0)
    refund(order)
    assert balance(d) == (-10000, 10000, 0)
    return d, w


def test_a_withdrawal_is_not_paid_by_hand_while_a_clawback_is_owed(owing):
    d, w = owing
    with pytest.raises(Conflict) as exc:
        withdrawals.pay_manually(w.id, "网银 0001", actor=audit.SYSTEM)
    outbox.rollback()
    assert "待抵扣" in exc.value.message and "¥100.00" in exc.value.message
    assert fresh(w.id).status == "requested" and balance(d) == (-10000, 10000, 0)
    # Rejecting it puts the reserved money back, which makes the debt good.
    withdrawals.reject(w.id, "佣金已扣回", actor=audit.SYSTEM)
    outbox.commit()
    assert balance(d) == (0, 0, 0)


def test_the_merchants_pay_command_says_why(owing, app):
    d, w = owing
    assert "owes ¥100.00 (claw-back)" in cli(app, "withdrawals", "list").output
    result = cli(app, "withdrawals", "pay", str(w.id), "--reference", "网银 0001")
    assert result.exit_code != 0 and "待抵扣" in result.output
    assert fresh(w.id).status == "requested" and balance(d) == (-10000, 10000, 0)


def test_a_transfer_is_not_started_while_a_clawback_is_owed(owing, app, settings):
    d, w = owing
    result = cli(app, "withdrawals", "transfer", str(w.id))
    assert result.exit_code != 0 and "待抵扣" in result.output
    w = fresh(w.id)
    assert w.status == "requested" and w.out_bill_no is None and balance(d) == (-10000, 10000, 0)


def test_a_clawback_between_start_and_bill_stops_the_transfer(app, sandbox_user, settings):
    """The merchant started the transfer; before the job created the bill at
    WeChat Pay, the order was refunded: no bill, the money back in the
    balance (where it makes the debt good), the distributor told why."""
    from pay.jobs import create_transfer

    who = sandbox_user("小钱")
    d = make_distributor("小钱", openid=who.openid)
    order = paid_order(customer_of(d), {product(100000).id: 1}, at=T0 - timedelta(days=60))
    complete(order, T0 - timedelta(days=60))
    commissions.sweep()
    outbox.commit()
    w = withdrawals.request_withdrawal(d, 3000, withdrawals.new_request_key())
    outbox.commit()
    w = withdrawals.start_transfer(w.id, actor=audit.SYSTEM)
    # Committed with the bill's job still waiting (not run inline): it runs below, after the claw-back.
    outbox.commit(run_inline=False)
    refund(order)
    assert balance(d) == (-3000, 3000, 0)
    create_transfer(w.out_bill_no)
    w = fresh(w.id)
    assert w.status == "failed" and "待抵扣" in w.reason and not w.package_info
    assert sandbox_wx.load_bill(settings["wechatpay"]["mchid"], w.out_bill_no) is None
    assert balance(d) == (0, 0, 0)


def test_the_confirm_page_refuses_while_a_clawback_is_owed(app, sandbox_user, base, jobs):
    """The bill exists and waits for the distributor; a claw-back since
    keeps the confirm button away (the bill lapses, and fails, unconfirmed)."""
    import requests

    from test_h5_auth import log_in

    who = sandbox_user("小钱")
    d = make_distributor("小钱", openid=who.openid)
    order = paid_order(customer_of(d), {product(100000).id: 1}, at=T0 - timedelta(days=60))
    complete(order, T0 - timedelta(days=60))
    commissions.sweep()
    outbox.commit()
    w = withdrawals.request_withdrawal(d, 3000, withdrawals.new_request_key())
    outbox.commit()
    assert cli(app, "withdrawals", "transfer", str(w.id)).exit_code == 0
    jobs.run()
    assert fresh(w.id).package_info
    with requests.Session() as b:
        assert log_in(b, base, d.user.openid).status_code == 302
        assert b.get(f"{base}/h5/withdrawals/{w.id}/confirm").status_code == 200
        refund(order)
        page = b.get(f"{base}/h5/withdrawals/{w.id}/confirm")
        assert page.status_code == 409 and "待抵扣" in page.text and 'id="confirm"' not in page.text


@needs_postgres
def test_paying_and_a_clawback_at_once_never_pay_into_a_debt(app, live, sandbox_user):
    """The merchant pays while the refund lands: either the payment came
    first (then the claw-back leaves a debt on a paid withdrawal), or the
    claw-back did and the payment is refused — never a payment decided on
    a balance the claw-back already made negative."""
    for _ in range(3):
        who = sandbox_user("小钱")
        d = make_distributor("小钱", openid=who.openid)
        order = paid_order(customer_of(d), {product(100000).id: 1}, at=T0 - timedelta(days=60))
        complete(order, T0 - timedelta(days=60))
        commissions.sweep()
        outbox.commit()
        w = withdrawals.request_withdrawal(d, 10000, withdrawals.new_request_key())
        outbox.commit()
        w_id, order_no = w.id, order.order_no
        barrier, outcome = threading.Barrier(2), {}

        def pay():
            with live.app_context():
                barrier.wait(timeout=30)
                try:
                    withdrawals.pay_manually(w_id, "网银 0001", actor=audit.SYSTEM)
                    outbox.commit()
                    outcome["pay"] = "paid"
                except Conflict:
                    outbox.rollback()
                    outcome["pay"] = "refused"
                db.session.remove()

        def take_back():
            with live.app_context():
                barrier.wait(timeout=30)
                refund(orders.find_order(order_no))
                db.session.remove()

        threads = [threading.Thread(target=pay), threading.Thread(target=take_back)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        if outcome["pay"] == "paid":
            assert fresh(w_id).status == "paid" and balance(d) == (-10000, 0, 10000)
        else:
            assert fresh(w_id).status == "requested" and balance(d) == (-10000, 10000, 0)
        totals = commissions.totals_from_rows(d.id)
        assert commissions.balance_of(d.id).lifetime_fen == totals["lifetime"] == 0


# -- commission rates ---------------------------------------------------------------

@pytest.mark.parametrize("l1, l2", [(9000, 5000), (2500, 1000), (3001, None), (None, 2001), (10000, 0)])
def test_a_product_paying_more_than_the_cap_is_refused(app, l1, l2):
    with pytest.raises(DomainError) as exc:
        catalogue.add_product("山茶花洗护礼盒", 1000, 10, level1_rate_bp=l1, level2_rate_bp=l2)
    outbox.rollback()
    assert "超过两级佣金合计上限 30%" in exc.value.message
    assert db.session.scalar(select(Product.id)) is None


@pytest.mark.parametrize("l1, l2", [(-1, None), (10001, None), (None, 20000), ("900", None), (True, None),
                                    (15.5, None)])
def test_rates_that_are_not_basis_points_are_refused(app, l1, l2):
    with pytest.raises(DomainError) as exc:
        catalogue.add_product("山茶花洗护礼盒", 1000, 10, level1_rate_bp=l1, level2_rate_bp=l2)
    outbox.rollback()
    assert "0-10000" in exc.value.message


def test_rates_within_the_cap_are_kept(app):
    p = catalogue.add_product("山茶花洗护礼盒", 1000, 10, level1_rate_bp=2000, level2_rate_bp=1000)
    q = catalogue.add_product("红枣", 1000, 10, level1_rate_bp=2500)  # + the default 500
    outbox.commit()
    assert (p.level1_rate_bp, p.level2_rate_bp, q.level1_rate_bp) == (2000, 1000, 2500)


def test_an_edit_past_the_cap_is_refused_and_changes_nothing(app):
    p = catalogue.add_product("山茶花洗护礼盒", 1000, 10, level1_rate_bp=1500, level2_rate_bp=600)
    outbox.commit()
    with pytest.raises(DomainError):
        catalogue.update_product(p.id, level1_rate_bp=9000, level2_rate_bp=5000, actor=audit.SYSTEM)
    outbox.rollback()
    with pytest.raises(DomainError):
        catalogue.update_product(p.id, level2_rate_bp=1600, actor=audit.SYSTEM)  # 1500 + 1600
    outbox.rollback()
    db.session.expire_all()
    assert (p.level1_rate_bp, p.level2_rate_bp) == (1500, 600)


def test_the_products_command_refuses_a_rate_past_the_cap(app):
    result = cli(app, "products", "add", "--name", "咖啡豆", "--price-fen", "1000", "--stock", "5",
                 "--level1-rate-bp", "9000", "--level2-rate-bp", "5000")
    assert result.exit_code != 0 and "超过两级佣金合计上限" in result.output
    assert "Traceback" not in result.output
    assert db.session.scalar(select(Product.id)) is None


@pytest.mark.parametrize("l1, l2", [(10001, None), (None, -1), (9000, 5000)])
def test_the_database_refuses_rates_out_of_range(app, l1, l2):
    db.session.add(Product(name="绕过检查", price_fen=1000, stock=1, level1_rate_bp=l1, level2_rate_bp=l2))
    with pytest.raises(IntegrityError):
        db.session.flush()
    db.session.rollback()


def test_a_ten_yuan_item_never_pays_more_than_the_cap(app, live):
    """The bug: a ¥10 item paid ¥14 in commission. Even a line whose rates
    were taken before the cap was lowered posts at most the cap, level 1
    first."""
    top = make_distributor("一级")
    d2 = make_distributor("二级", referrer=top)
    buyer = customer_of(d2)
    p = product(1000, l1=2000, l2=1000)  # 30 %: within the default cap
    buyer_id, product_id = buyer.id, p.id
    db.session.close()
    other = other_app(live, level1_rate_bp=1000, level2_rate_bp=500, max_total_rate_bp=2500)
    with other.app_context():
        order = paid_order(db.session.get(type(buyer), buyer_id), {product_id: 1})
        posted = db.session.scalars(select(CommissionRow).where(CommissionRow.order_id == order.id)
                                    .order_by(CommissionRow.level)).all()
        assert [(r.level, r.rate_bp, r.amount_fen) for r in posted] == [(1, 2000, 200), (2, 500, 50)]
        assert sum(r.amount_fen for r in posted) <= 1000 * 2500 // 10000
        db.session.remove()
        db.engine.dispose()


def test_the_cap_holds_for_any_rates(app):
    """line_rates, over every kind of line (its own rates or the default,
    above the cap or not): never more than the cap together, level 1 first."""
    cap = 3000
    for l1 in (None, 0, 1000, 2999, 3000, 5000, 10000):
        for l2 in (None, 0, 1, 500, 2000, 10000):
            level1, level2 = commissions.line_rates(OrderLine(level1_rate_bp=l1, level2_rate_bp=l2))
            assert 0 <= level1 and 0 <= level2 and level1 + level2 <= cap
            assert level1 == min(1000 if l1 is None else l1, cap)
            for amount in (1, 999, 1000, 10**8):
                paid = commissions.commission_of(amount, level1) + commissions.commission_of(amount, level2)
                assert paid <= amount * cap // 10000


def test_the_config_refuses_levels_above_the_cap_naming_the_key():
    from app.config import ConfigError, build

    raw = make_raw_config("http://127.0.0.1:5000", "sqlite://",
                          distribution={"level1_rate_bp": 2500, "level2_rate_bp": 1000})
    with pytest.raises(ConfigError) as exc:
        build(raw, {}, "test")
    assert "[distribution] max_total_rate_bp" in str(exc.value) and "level1_rate_bp" in str(exc.value)
    raw["distribution"]["max_total_rate_bp"] = 3500  # the merchant raised the cap on purpose
    assert build(raw, {}, "test")["distribution"]["max_total_rate_bp"] == 3500
    with pytest.raises(ConfigError, match=r"\[distribution\] max_total_rate_bp"):
        build(raw, {"FENXIAO_DISTRIBUTION_MAX_TOTAL_RATE_BP": "3000"}, "test")
    with pytest.raises(ConfigError, match=r"\[distribution\] max_total_rate_bp must be between 0 and 10000"):
        build(raw, {"FENXIAO_DISTRIBUTION_MAX_TOTAL_RATE_BP": "10001"}, "test")


def test_the_default_rates_fit_the_default_cap():
    from app.config import build

    settings = build(make_raw_config("http://127.0.0.1:5000", "sqlite://"), {}, "test")
    rules = settings["distribution"]
    assert (rules["level1_rate_bp"], rules["level2_rate_bp"], rules["max_total_rate_bp"]) == (1000, 500, 3000)


# -- 64-bit money, and a sane ceiling ---------------------------------------------------

def test_an_amount_above_2_31_fen_round_trips(app):
    """¥21,474,836.48 and more: a 32-bit INTEGER column refused it on PostgreSQL."""
    d = make_distributor()
    big = 2**31 + 7
    b = commissions.balance_for_update(d.id)
    b.withdrawable_fen = b.lifetime_fen = big
    outbox.commit()
    db.session.expire_all()
    assert db.session.get(Balance, d.id).withdrawable_fen == big
    assert db.session.execute(text("SELECT lifetime_fen FROM balances WHERE distributor_id = :d"),
                              {"d": d.id}).scalar() == big


def test_every_money_column_is_64_bit(app):
    from sqlalchemy import BigInteger

    money = [(t.name, c.name) for t in db.metadata.sorted_tables for c in t.columns if c.name.endswith("_fen")]
    assert len(money) >= 16
    for table, column in money:
        assert isinstance(db.metadata.tables[table].c[column].type, BigInteger), (table, column)


def test_an_order_above_a_million_yuan_is_refused_and_takes_no_stock(app):
    from distribution_helpers import make_user

    p = product(60_000_000, stock=10)  # ¥600,000
    buyer = orders.Buyer(user=make_user())
    with pytest.raises(DomainError) as exc:
        orders.place_order(buyer, {p.id: 2}, RECEIVER)
    outbox.rollback()
    assert "1,000,000" in exc.value.message
    db.session.expire_all()
    assert db.session.get(Product, p.id).stock == 10
    order = orders.place_order(buyer, {p.id: 1}, RECEIVER)
    outbox.commit()
    assert order.total_fen == 60_000_000


# -- one order per checkout key, few unpaid orders (the handler) ---------------------------

def test_a_checkout_key_is_one_order_and_only_its_buyers(app):
    from distribution_helpers import make_user

    p = product(1000, stock=10)
    alice, bob = orders.Buyer(user=make_user()), orders.Buyer(user=make_user())
    key = orders.new_checkout_key()
    first = orders.place_order(alice, {p.id: 2}, RECEIVER, checkout_key=key)
    outbox.commit()
    assert orders.place_order(alice, {p.id: 5}, RECEIVER, checkout_key=key).id == first.id
    outbox.commit()
    with pytest.raises(Conflict):
        orders.place_order(bob, {p.id: 1}, RECEIVER, checkout_key=key)
    outbox.rollback()
    guest = orders.Buyer(guest_mobile="13912345678")
    with pytest.raises(Conflict):
        orders.place_order(guest, {p.id: 1}, RECEIVER, checkout_key=key)
    outbox.rollback()
    db.session.expire_all()
    assert db.session.get(Product, p.id).stock == 8


def test_overdue_unpaid_orders_do_not_count_against_the_limit(app):
    """An unpaid order past its time that no job has cancelled yet (no
    worker running) holds nothing the buyer could still pay."""
    from sqlalchemy import update

    from models import Order

    p = product(1000, stock=10)
    guest = orders.Buyer(guest_mobile="13912345678")
    for _ in range(orders.MAX_UNPAID):
        orders.place_order(guest, {p.id: 1}, RECEIVER, at=T0)
        outbox.commit()
    with pytest.raises(Conflict) as exc:
        orders.place_order(guest, {p.id: 1}, RECEIVER, at=T0)
    outbox.rollback()
    assert "3 笔订单还未付款" in exc.value.message
    db.session.execute(update(Order).values(expires_at=T0 - timedelta(seconds=1)))
    outbox.commit()
    orders.place_order(guest, {p.id: 1}, RECEIVER, at=T0)
    outbox.commit()
    other = orders.Buyer(guest_mobile="13912345679")  # another number is another buyer
    orders.place_order(other, {p.id: 1}, RECEIVER, at=T0)
    outbox.commit()
