"""Becoming a distributor (PRODUCT.md flows 3-4) and the unit approval makes."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from app import create_app
from app.config import build
from conftest import make_raw_config
from distribution_helpers import make_distributor, make_user
from handlers import applications, outbox, referrals
from handlers.clock import now
from handlers.errors import Conflict, DomainError
from models import Application, Distributor, IllegalTransition, Source, Unit, User, db

GOOD = ("李四", "13912345678", "我有 500 人的宝妈群")


@pytest.fixture
def configured(live):
    """Run handlers under other merchant rules, on the same database."""
    made = []

    def make(**distribution):
        s = live.config["SETTINGS"]
        raw = make_raw_config(s["app"]["base_url"], s["app"]["database_url"], distribution=distribution)
        other = create_app(build(raw, {}, "tests"))
        made.append(other)
        return other.app_context()

    yield make
    for other in made:
        with other.app_context():
            db.engine.dispose()


def count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


def test_manual_review_waits_then_approval_makes_a_level1_with_a_unit(app):
    user = make_user("王五")
    application = applications.apply_for_distributor(user, *GOOD)
    outbox.commit()
    assert application.status == "pending" and referrals.distributor_of(user.id) is None
    assert [a.id for a in applications.pending_applications()] == [application.id]
    d = applications.approve_application(application.id, actor=applications.Actor("merchant"))
    outbox.commit()
    assert (d.level, d.parent_id, d.real_name, d.mobile) == (1, None, "李四", "13912345678")
    assert d.unit.name == "王五的小店" and d.unit.invite_code and d.unit.slug and d.unit.scene
    assert application.status == "approved" and application.decided_by == "merchant"


@pytest.mark.parametrize("name,mobile,reason,message", [
    ("", "13912345678", "理由", "姓名"), ("李", "13912345678", "理由", "姓名"), ("<script>", "13912345678", "x", "姓名"),
    ("李四", "12345678901", "理由", "手机号"), ("李四", "1391234567", "理由", "手机号"),
    ("李四", "139123456789", "理由", "手机号"), ("李四", "abcdefghijk", "理由", "手机号"),
    ("李四", "13912345678", "   ", "理由"), ("李四", "13912345678", "长" * 501, "500"),
])
def test_bad_application_forms_are_refused_and_change_nothing(app, name, mobile, reason, message):
    user = make_user()
    with pytest.raises(DomainError) as exc:
        applications.apply_for_distributor(user, name, mobile, reason)
    outbox.rollback()
    assert message in exc.value.message
    assert count(Application) == 0


def test_mobile_numbers_are_normalised(app):
    user = make_user()
    a = applications.apply_for_distributor(user, "李四", "+86 139-1234-5678", "理由")
    assert a.mobile == "13912345678"


def test_one_open_application_per_user(app):
    user = make_user()
    applications.apply_for_distributor(user, *GOOD)
    outbox.commit()
    with pytest.raises(Conflict):
        applications.apply_for_distributor(user, *GOOD)
    outbox.rollback()
    assert count(Application) == 1


def test_the_database_keeps_one_open_application_too(app):
    user = make_user()
    db.session.add_all([Application(user_id=user.id, real_name="a", mobile="13900000000", reason="r"),
                        Application(user_id=user.id, real_name="b", mobile="13900000000", reason="r")])
    with pytest.raises(IntegrityError):
        db.session.flush()
    db.session.rollback()


def test_concurrent_double_submit_makes_one_application(app, live):
    user_id = make_user().id  # read here: the main thread's session is not for threads
    barrier, results = threading.Barrier(4), []

    def submit():
        with live.app_context():
            me = db.session.get(User, user_id)
            barrier.wait(timeout=10)
            try:
                applications.apply_for_distributor(me, *GOOD)
                outbox.commit()
                results.append("ok")
            except Conflict:
                outbox.rollback()
                results.append("conflict")

    threads = [threading.Thread(target=submit) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sorted(results) == ["conflict"] * 3 + ["ok"]
    assert count(Application) == 1


def test_rejection_keeps_a_customer_tells_why_and_cools_down(app):
    user = make_user()
    a = applications.apply_for_distributor(user, *GOOD)
    outbox.commit()
    applications.reject_application(a.id, "资料不全，请补充社群截图", actor=applications.Actor("merchant"))
    outbox.commit()
    assert a.status == "rejected" and a.reject_reason == "资料不全，请补充社群截图"
    assert referrals.distributor_of(user.id) is None
    with pytest.raises(Conflict) as exc:
        applications.apply_for_distributor(user, *GOOD)
    outbox.rollback()
    assert "小时后" in exc.value.message
    hours = app.config["SETTINGS"]["distribution"]["reapply_cooldown_hours"]
    later = now() + timedelta(hours=hours, minutes=1)
    again = applications.apply_for_distributor(user, *GOOD, at=later)
    outbox.commit()
    assert again.status == "pending" and again.id != a.id


def test_rejection_needs_a_reason(app):
    a = applications.apply_for_distributor(make_user(), *GOOD)
    outbox.commit()
    for reason in ("", "   ", "长" * 201):
        with pytest.raises(DomainError):
            applications.reject_application(a.id, reason, actor=applications.Actor("merchant"))
        outbox.rollback()
    db.session.refresh(a)
    assert a.status == "pending"


def test_decisions_happen_once(app):
    a = applications.apply_for_distributor(make_user(), *GOOD)
    outbox.commit()
    applications.approve_application(a.id, actor=applications.Actor("merchant"))
    outbox.commit()
    with pytest.raises(IllegalTransition):
        applications.approve_application(a.id, actor=applications.Actor("merchant"))
    outbox.rollback()
    with pytest.raises(IllegalTransition):
        applications.reject_application(a.id, "改主意了", actor=applications.Actor("merchant"))
    outbox.rollback()
    assert count(Distributor) == 1 and count(Unit) == 2  # the merchant's and this one


def test_unknown_application_ids_are_a_clear_error(app):
    from handlers.errors import NotFound

    with pytest.raises(NotFound):
        applications.approve_application(999999, actor=applications.Actor("merchant"))
    outbox.rollback()


def test_a_distributor_cannot_apply_again(app):
    d = make_distributor()
    with pytest.raises(Conflict):
        applications.apply_for_distributor(d.user, *GOOD)
    outbox.rollback()


def test_an_unknown_invite_code_on_the_form_changes_nothing(app):
    user = make_user()
    with pytest.raises(DomainError):
        applications.apply_for_distributor(user, *GOOD, invite_code="ZZZZZZ")
    outbox.rollback()
    assert count(Application) == 0


def test_auto_review_approves_at_once(app, configured):
    with configured(review="auto"):
        user = make_user()
        a = applications.apply_for_distributor(user, *GOOD)
        outbox.commit()
        assert a.status == "approved" and a.decided_by == "auto"
        assert referrals.distributor_of(user.id).level == 1


def test_threshold_review_waits_below_the_threshold(app, configured):
    with configured(review="threshold", review_threshold_fen=10000):
        a = applications.apply_for_distributor(make_user(), *GOOD)
        outbox.commit()
        assert a.status == "pending"
    with configured(review="threshold", review_threshold_fen=0):
        a = applications.apply_for_distributor(make_user(), *GOOD)
        outbox.commit()
        assert a.status == "approved" and a.decided_by == "threshold"


# -- levels (PRODUCT.md flow 4) ------------------------------------------

def test_organic_applicant_is_level1(app):
    assert make_distributor().level == 1


def test_recruit_of_a_level1_is_level2_under_them(app):
    top = make_distributor("一级")
    recruit = make_distributor("二级", referrer=top)
    assert (recruit.level, recruit.parent_id) == (2, top.id)


def test_recruit_of_a_level2_is_level2_under_the_same_level1(app):
    top = make_distributor("一级")
    middle = make_distributor("二级", referrer=top)
    bottom = make_distributor("再下一级", referrer=middle)
    assert (bottom.level, bottom.parent_id) == (2, top.id)
    db.session.refresh(bottom.user)
    assert bottom.user.referrer_id == middle.user_id  # who brought them is still known


def test_attribution_by_qr_decides_the_level_too(app):
    top = make_distributor("一级")
    user = make_user()
    referrals.attribute_referral(user, Source.QR, top.unit.scene)
    a = applications.apply_for_distributor(user, *GOOD)
    outbox.commit()
    d = applications.approve_application(a.id, actor=applications.Actor("merchant"))
    outbox.commit()
    assert (d.level, d.parent_id) == (2, top.id)


@pytest.mark.parametrize("level,parent_level", [(3, None), (2, 2), (1, 1), (2, None)])
def test_the_database_refuses_a_third_level(app, level, parent_level):
    top = make_distributor("一级")
    middle = make_distributor("二级", referrer=top)
    parent = {None: None, 1: top, 2: middle}[parent_level]
    db.session.add(Distributor(user_id=make_user().id, level=level,
                               parent_id=parent.id if parent else (middle.id if level == 2 else None),
                               parent_level=parent_level, real_name="x", mobile="13900000000"))
    with pytest.raises(IntegrityError):
        db.session.flush()
    db.session.rollback()


def test_a_level2_parent_claimed_as_level1_is_refused(app):
    """The composite foreign key: parent (id, level) must exist as it claims."""
    top = make_distributor("一级")
    middle = make_distributor("二级", referrer=top)
    db.session.add(Distributor(user_id=make_user().id, level=2, parent_id=middle.id, parent_level=1,
                               real_name="x", mobile="13900000000"))
    with pytest.raises(IntegrityError):
        db.session.flush()
    db.session.rollback()
