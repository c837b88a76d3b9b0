"""The distributor's pages and the staff's lists as rewritten for a brand's
size (issue 13): the same figures as the plain definitions they replace —
a team counted as everyone brought less those who became distributors, a
month's income summed by China day in the database, orders found by any
part of a distributor's name."""
from __future__ import annotations

import threading
from datetime import datetime, timezone

from sqlalchemy import select, update

from handlers import audit, commissions, distributor_pages, order_search, outbox, payments, team
from conftest import needs_postgres
from models import CommissionRow, CommissionState, Distributor, Order, PayChannel, User, db
from test_admin_orders import customer_of, distributor, paid, placed, product


def plain_team(d: Distributor) -> tuple[set[int], set[int]]:
    """The definitions, in Python: who ``d`` brought and is not a distributor, and who is."""
    distributor_users = set(db.session.scalars(select(Distributor.user_id)))
    brought = set(db.session.scalars(select(User.id).where(User.referrer_id == d.user_id)))
    return brought - distributor_users, brought & distributor_users


def test_the_team_counts_everyone_brought_less_those_who_became_distributors(app, monkeypatch):
    top = distributor("王上级")
    other = distributor("赵另一家")
    customers = [customer_of(top, f"顾客{i}") for i in range(3)]
    customer_of(other, "别家的顾客")
    recruit = distributor("李二级", referrer=top)
    # A customer who applies later stops being a customer and is counted as a recruit.
    turned = distributor_from(customers[0], top)
    recruits_customer = customer_of(recruit, "二级的顾客")

    shown = team.team_of(top)
    plain_customers, plain_recruits = plain_team(top)
    assert (shown.customer_count, shown.distributor_count, shown.level2_count) == (2, 2, 2)
    assert {u.id for u in shown.customers} == plain_customers == {customers[1].id, customers[2].id}
    assert {d.id for d in shown.distributors} == {recruit.id, turned.id}
    assert {d.user_id for d in shown.distributors} == plain_recruits
    assert [d.id for d in shown.distributors] == [turned.id, recruit.id]  # newest first
    assert [u.id for u in shown.customers] == [customers[2].id, customers[1].id]
    figures = team.counts_of(top)
    assert (figures.customer_count, figures.distributor_count, figures.level2_count) == (2, 2, 2)
    monkeypatch.setattr(team, "MAX_IDS", 1)  # more recruits than are listed by their ids: the same list
    assert [d.id for d in team.team_of(top).distributors] == [turned.id, recruit.id]

    # A level 2's team: their own customer, no level-2 count.
    second = team.team_of(db.session.get(Distributor, recruit.id))
    assert (second.customer_count, second.distributor_count, second.level2_count) == (1, 0, 0)
    assert [u.id for u in second.customers] == [recruits_customer.id] and second.distributors == []
    alone = team.counts_of(db.session.get(Distributor, other.id))
    assert (alone.customer_count, alone.distributor_count, alone.level2_count) == (1, 0, 0)
    # The staff's pages count and list the same customers, the newest first, at most ``each`` per distributor.
    assert distributor_pages.figures_of([top])[top.id].customers == len(plain_customers)
    shown_by, counts = distributor_pages.customers_of([top.user_id, recruit.user_id, other.user_id], each=1)
    assert counts == {top.user_id: 2, recruit.user_id: 1, other.user_id: 1}
    assert [u.id for u in shown_by[top.user_id]] == [customers[2].id]
    assert [u.id for u in shown_by[recruit.user_id]] == [recruits_customer.id]
    # The mark the counts rely on is on exactly the distributors' users.
    db.session.expire_all()
    assert set(db.session.scalars(select(User.id).where(User.is_distributor))) == \
        set(db.session.scalars(select(Distributor.user_id)))


def test_a_distributor_made_any_way_marks_their_user(app):
    """Not only an approved application: a row added directly (a fix by hand, a test) marks its user too,
    in the session's copy as well as in the database."""
    person = customer_of(distributor("孙上级"), "周直接")
    assert not person.is_distributor
    db.session.add(Distributor(user_id=person.id, level=1, real_name="周直接", mobile="13900000002"))
    db.session.flush()
    assert person.is_distributor
    db.session.commit()
    db.session.expire_all()
    assert db.session.get(User, person.id).is_distributor


def distributor_from(user: User, referrer: Distributor) -> Distributor:
    from handlers import applications

    application = applications.apply_for_distributor(user, "钱转正", "13900000001", "想分享好东西")
    outbox.commit()
    made = applications.approve_application(application.id, actor=audit.SYSTEM)
    outbox.commit()
    assert made.parent_id == referrer.id
    return made


def test_a_months_income_is_summed_by_china_day_in_the_database(app):
    seller = distributor("李小店")
    item = product(10000)
    for i in range(4):
        paid(customer_of(seller, f"买家{i}"), {item.id: 1})
    rows = list(db.session.scalars(select(CommissionRow).where(CommissionRow.distributor_id == seller.id)
                                   .order_by(CommissionRow.id)))
    assert len(rows) == 4 and all(r.amount_fen == rows[0].amount_fen for r in rows)
    each = rows[0].amount_fen
    at = datetime(2026, 12, 1, 4, 0, tzinfo=timezone.utc)  # 12:00 on 12-01 in China
    placed_at = [datetime(2026, 11, 30, 15, 59, 59, tzinfo=timezone.utc),  # 23:59:59 on 11-30 in China
                 datetime(2026, 11, 30, 16, 0, 0, tzinfo=timezone.utc),    # midnight of 12-01 in China
                 datetime(2026, 12, 1, 3, 0, 0, tzinfo=timezone.utc),      # 11:00 on 12-01, refunded
                 datetime(2026, 11, 1, 15, 59, 59, tzinfo=timezone.utc)]   # 11-01 in China: 31 days ago
    for row, created in zip(rows, placed_at):
        db.session.execute(update(CommissionRow).where(CommissionRow.id == row.id).values(created_at=created))
    db.session.execute(update(CommissionRow).where(CommissionRow.id == rows[2].id)
                       .values(state=CommissionState.REVERSED.value))
    db.session.commit()

    days = commissions.income_by_day(seller.id, at=at)
    assert len(days) == 30 and days[0][0] == "11-02" and days[-1][0] == "12-01"
    assert dict(days)["11-30"] == each and dict(days)["12-01"] == each
    assert sum(amount for _, amount in days) == 2 * each


def test_orders_are_found_by_any_part_of_a_distributors_name(app):
    names = ["欧阳小明", "王小明", "Ann Lee", "Ann·Wu"]
    sellers = {name: distributor(name) for name in names}
    item = product(10000)
    order_of = {name: paid(customer_of(d, f"{name}的顾客"), {item.id: 1}).order_no for name, d in sellers.items()}

    def found(text: str) -> set[str]:
        filters = order_search.parse_filters({"distributor": text})
        return {row.order.order_no for row in order_search.search(filters)}

    assert found("小明") == {order_of["欧阳小明"], order_of["王小明"]}
    assert found("欧") == {order_of["欧阳小明"]}
    assert found("明王") == set()  # every character is there, not in that order
    assert found("阳小明") == {order_of["欧阳小明"]}
    assert found("n L") == {order_of["Ann Lee"]}
    assert found("Ann") == {order_of["Ann Lee"], order_of["Ann·Wu"]}
    assert found("%") == set() and found("A_n") == set()  # typed characters, not wildcards
    assert found("王小明x") == set()


def test_the_distributors_list_nets_every_succeeded_refund_of_their_orders(app):
    seller = distributor("李小店")
    other = distributor("赵另一家")
    item = product(10000)
    first = paid(customer_of(seller, "买家一"), {item.id: 2})
    second = paid(customer_of(seller, "买家二"), {item.id: 1})
    placed(customer_of(seller, "没付款"), {item.id: 1})  # not paid: not sales
    paid(customer_of(other, "别家买家"), {item.id: 1})
    for order, amount, succeeded in ((first, 2500, True), (first, 1000, True), (second, 3000, False)):
        refund = payments.start_refund(order.order_no, "少发配件", actor=audit.SYSTEM, amount_fen=amount)
        outbox.commit()
        assert payments.finish_refund(PayChannel.WECHATPAY, refund.out_refund_no, succeeded, amount).ok
        outbox.commit()

    both = [db.session.get(Distributor, seller.id), db.session.get(Distributor, other.id)]
    figures = distributor_pages.figures_of(both)
    assert (figures[seller.id].gross_fen, figures[seller.id].net_fen) == (30000, 30000 - 3500)
    assert (figures[other.id].gross_fen, figures[other.id].net_fen) == (10000, 10000)
    assert (figures[seller.id].customers, figures[other.id].customers) == (3, 1)


@needs_postgres
def test_partial_refunds_landing_at_once_all_count_in_net_sales(app):
    """Refunds made in the gateway's console, notified at the same moment: each adds to the
    order's refunded sum under the order's lock, none is lost."""
    seller = distributor("钱同时")
    order = paid(customer_of(seller, "买家"), {product(10000).id: 3})
    transaction_id = db.session.get(Order, order.id).transaction_id
    barrier, answers = threading.Barrier(4), []

    def land(amount: int) -> None:
        with app.app_context():
            barrier.wait(timeout=30)
            answers.append(payments.refunded_at_gateway(PayChannel.WECHATPAY, order.order_no, transaction_id,
                                                        amount_fen=amount, out_refund_no=f"C{amount}").ok)
            outbox.commit()

    threads = [threading.Thread(target=land, args=(amount,)) for amount in (1000, 2000, 3000, 4000)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert answers == [True] * 4
    db.session.expire_all()
    assert db.session.get(Order, order.id).refunded_fen == 10000
    figures = distributor_pages.figures_of([db.session.get(Distributor, seller.id)])[seller.id]
    assert (figures.gross_fen, figures.net_fen) == (30000, 20000)
