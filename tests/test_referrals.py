"""Attribution (PRODUCT.md flow 2): first distributor wins, for good."""
from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from distribution_helpers import make_distributor, make_user
from handlers import codes, outbox, referrals, units
from handlers.codes import INVITE_ALPHABET
from models import ReferralTouch, Source, TouchOutcome, User, db


def touches(user: User) -> list[ReferralTouch]:
    return list(db.session.scalars(select(ReferralTouch).where(ReferralTouch.user_id == user.id)
                                   .order_by(ReferralTouch.id)))


@pytest.mark.parametrize("source", [Source.QR, Source.LINK, Source.INVITE])
def test_first_touch_binds_from_every_source(app, source):
    d = make_distributor("阿强")
    customer = make_user("小红")
    token = {Source.QR: d.unit.scene, Source.LINK: d.unit.slug, Source.INVITE: d.unit.invite_code}[source]
    touch = referrals.attribute_referral(customer, source, token)
    outbox.commit()
    assert touch.outcome is TouchOutcome.BOUND
    db.session.refresh(customer)
    assert customer.referrer_id == d.user_id
    assert customer.source == source.value
    assert referrals.owner_of(customer).id == d.id


def test_later_touches_are_logged_and_never_rebind(app):
    first, second = make_distributor("甲"), make_distributor("乙")
    customer = make_user()
    referrals.attribute_referral(customer, Source.QR, first.unit.scene)
    again = referrals.attribute_referral(customer, Source.LINK, second.unit.slug)
    outbox.commit()
    assert again.outcome is TouchOutcome.ALREADY_OWNED
    db.session.refresh(customer)
    assert customer.referrer_id == first.user_id and customer.source == "qr"
    logged = touches(customer)
    assert [(t.source, t.outcome, t.unit_id) for t in logged] == [
        ("qr", "bound", first.unit.id), ("link", "already", second.unit.id)]


def test_invite_code_is_read_forgivingly(app):
    d = make_distributor()
    customer = make_user()
    typed = " ".join(d.unit.invite_code.lower())
    assert referrals.attribute_referral(customer, Source.INVITE, typed).bound


def test_nobody_is_attributed_to_themselves(app):
    d = make_distributor()
    touch = referrals.attribute_referral(d.user, Source.QR, d.unit.scene)
    outbox.commit()
    assert touch.outcome is TouchOutcome.SELF
    assert d.user.referrer_id is None


def test_a_distributor_is_never_rebound_so_no_cycle_forms(app):
    top = make_distributor("一级")
    recruit = make_distributor("二级", referrer=top)
    assert recruit.level == 2
    # The level-1 scans their own recruit's code: binding would make a loop.
    touch = referrals.attribute_referral(top.user, Source.QR, recruit.unit.scene)
    outbox.commit()
    assert touch.outcome is TouchOutcome.DISTRIBUTOR
    db.session.refresh(top.user)
    assert top.user.referrer_id is None


def test_the_database_refuses_self_attribution(app):
    from sqlalchemy.exc import IntegrityError

    user = make_user()
    user.referrer_id, user.source = user.id, "qr"
    with pytest.raises(IntegrityError):
        db.session.flush()
    db.session.rollback()


@pytest.mark.parametrize("source,token", [
    (Source.QR, "u-no-such-scene"), (Source.QR, "1"), (Source.LINK, "zzzzzzzzzz"),
    (Source.INVITE, "AAAAAA"), (Source.INVITE, "not a code"), (Source.QR, "x" * 500), (Source.LINK, ""),
])
def test_unknown_tokens_are_organic_and_logged(app, source, token):
    make_distributor()
    customer = make_user()
    touch = referrals.attribute_referral(customer, source, token)
    outbox.commit()
    assert touch.outcome is TouchOutcome.UNKNOWN
    db.session.refresh(customer)
    assert customer.referrer_id is None and customer.source == "organic"
    assert touches(customer)[0].outcome == "unknown"


def test_the_merchants_own_link_keeps_a_user_organic(app):
    customer = make_user()
    touch = referrals.attribute_referral(customer, Source.LINK, units.merchant_unit().slug)
    outbox.commit()
    assert touch.outcome is TouchOutcome.MERCHANT
    assert customer.referrer_id is None


def test_a_frozen_distributors_code_binds_nobody(app):
    d = make_distributor()
    d.status = "frozen"
    outbox.commit()
    customer = make_user()
    assert referrals.attribute_referral(customer, Source.QR, d.unit.scene).outcome is TouchOutcome.UNKNOWN


def test_codes_are_opaque_and_unrelated(app):
    made = [make_distributor(f"d{i}") for i in range(5)]
    for d in made:
        u = d.unit
        assert len(u.scene) >= 20 and len(u.slug) == 10
        assert 6 <= len(u.invite_code) <= 8 and set(u.invite_code) <= set(INVITE_ALPHABET)
        assert not set(u.invite_code) & set("0O1IL")
    assert len({d.unit.scene for d in made}) == len({d.unit.slug for d in made}) == 5
    assert len({d.unit.invite_code for d in made}) == 5


def test_merchant_unit_exists_from_the_first_migration(app):
    merchant = units.merchant_unit()
    assert merchant is not None and merchant.is_merchant and merchant.slug


def test_two_distributors_racing_for_one_new_user_leave_one_owner(app, live):
    """Concurrently, each thread in its own session and transaction (on
    PostgreSQL in CI: real row-level races)."""
    contenders = [make_distributor(f"抢{i}") for i in range(6)]
    scenes = [d.unit.scene for d in contenders]
    for round_ in range(5):
        customer = make_user(f"客{round_}")
        barrier = threading.Barrier(len(scenes))
        outcomes, errors = [], []

        def grab(scene: str, user_id: int = customer.id) -> None:
            try:
                with live.app_context():
                    user = db.session.get(User, user_id)
                    barrier.wait(timeout=10)
                    outcomes.append(referrals.attribute_referral(user, Source.QR, scene).outcome)
                    outbox.commit()
            except Exception as exc:  # surfaced below
                errors.append(exc)

        threads = [threading.Thread(target=grab, args=(s,)) for s in scenes]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        assert outcomes.count(TouchOutcome.BOUND) == 1
        assert outcomes.count(TouchOutcome.ALREADY_OWNED) == len(scenes) - 1
        db.session.expire_all()
        owner = db.session.get(User, customer.id).referrer_id
        assert owner in {d.user_id for d in contenders}
        assert db.session.scalar(select(func.count()).select_from(ReferralTouch)
                                 .where(ReferralTouch.user_id == customer.id)) == len(scenes)


def test_an_invite_code_is_never_all_digits(monkeypatch):
    # Staff type a distributor's number or invite code in one box: a code of
    # digits only would be read as a number. The first draw here is 222222.
    draws = iter("222222" + "2A2222")
    monkeypatch.setattr(codes.secrets, "choice", lambda alphabet: next(draws))
    assert codes.invite_code() == "2A2222"
