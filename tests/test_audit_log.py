"""The audit log is append-only and written with the change it records; its
page lists newest first, filters, pages by keyset and shows a diff."""
from __future__ import annotations

import re
from datetime import datetime, timezone

import pytest
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.exc import DBAPIError

from admin_helpers import make_staff, post, staff_browser  # noqa: F401
from conftest import DB_URL, needs_postgres
from handlers import audit, outbox
from handlers import staff as staff_rules
from handlers.errors import DomainError
from models import AuditEntry, Staff, db


def _count() -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(AuditEntry))


def _entry(**kw) -> AuditEntry:
    entry = audit.record(audit.Actor("boss", role="owner", ip="10.0.0.1"), kw.pop("action", "staff.create"),
                         kw.pop("target_type", "staff"), kw.pop("target_id", 1), **kw)
    outbox.commit()
    return entry


def test_an_update_through_sqlalchemy_is_refused_by_the_database(app):
    entry = _entry(reason="原因")
    entry.reason = "改过的原因"
    with pytest.raises(DBAPIError, match="append-only"):
        db.session.flush()
    db.session.rollback()
    with pytest.raises(DBAPIError, match="append-only"):
        db.session.execute(update(AuditEntry).values(actor="someone else"))
    db.session.rollback()
    assert db.session.get(AuditEntry, entry.id).reason == "原因"
    assert db.session.scalar(select(AuditEntry.actor)) == "boss"


@needs_postgres
def test_a_delete_is_refused_on_postgresql(app):
    _entry()
    with pytest.raises(DBAPIError, match="append-only"):
        db.session.execute(delete(AuditEntry))
    db.session.rollback()
    with pytest.raises(DBAPIError, match="append-only"):
        db.session.execute(text("DELETE FROM audit_log"))
    db.session.rollback()
    assert _count() == 1


def test_a_change_and_its_audit_row_roll_back_together(app, make_staff):
    """record() flushes in the change's transaction: rolling back leaves neither."""
    make_staff("boss")
    make_staff("victim", "operator")
    before = _count()
    staff_rules.disable("victim", audit.Actor("boss"), "试一下")
    assert db.session.scalars(select(AuditEntry).order_by(AuditEntry.id.desc())).first().action == "staff.disable"
    db.session.rollback()
    assert _count() == before
    assert db.session.scalars(select(Staff).where(Staff.name == "victim")).one().is_active
    # a refused change writes no row
    with pytest.raises(DomainError):
        staff_rules.create_staff("boss", "owner", "a long secret 1", audit.Actor("boss"))
    db.session.rollback()
    assert _count() == before


def test_a_change_made_under_a_savepoint_rolls_back_with_its_audit_row(app, make_staff):
    make_staff("boss")
    before = _count()
    staff_rules.create_staff("temp.user", "shipping", "a long secret 1", audit.Actor("boss"))  # begin_nested inside
    db.session.rollback()
    assert _count() == before
    assert db.session.scalars(select(Staff).where(Staff.name == "temp.user")).first() is None


def test_a_change_whose_audit_row_fails_cannot_commit(app, make_staff):
    """The row is flushed in the change's transaction: if writing it fails,
    the change goes with it (a row too big for its column, say)."""
    member = make_staff("victim", "operator")
    before = _count()
    bad = audit.Actor("x" * 64, staff_id=10**9)  # no such staff: the audit row's foreign key fails
    if not DB_URL:
        db.session.execute(text("PRAGMA foreign_keys=ON"))
    with pytest.raises(DBAPIError):
        staff_rules.disable("victim", bad, "test")
    db.session.rollback()
    assert _count() == before
    assert db.session.get(Staff, member.id).is_active


def test_no_route_edits_or_deletes_an_entry(app):
    rules = [r for r in app.url_map.iter_rules() if r.rule.startswith("/admin/audit")]
    assert rules and all(r.methods <= {"GET", "HEAD", "OPTIONS"} for r in rules), \
        [(r.rule, sorted(r.methods)) for r in rules]


def test_page_lists_newest_first_and_filters(app, base, staff_browser):
    boss = staff_browser("owner", "boss")
    finance = staff_browser("finance", "money")
    _entry(action="withdrawal.pay", target_type="withdrawal", target_id=7, reason="月底付款")
    _entry(action="staff.disable", target_type="staff", target_id=3, reason="离职")
    page = boss.get(f"{base}/admin/audit").text.split("<tbody>")[1]
    assert page.index("staff.disable") < page.index("withdrawal.pay") < page.index("staff.login")
    page = finance.get(f"{base}/admin/audit", params={"action": "withdrawal."}).text
    assert "withdrawal.pay" in page and "staff.disable" not in page and "月底付款" in page
    page = boss.get(f"{base}/admin/audit", params={"target_type": "staff", "target_id": "3"}).text
    assert "离职" in page and "月底付款" not in page
    page = boss.get(f"{base}/admin/audit", params={"actor": "money"}).text
    assert "staff.login" in page and "月底付款" not in page and "staff.disable" not in page
    # a LIKE wildcard is a character, not a pattern
    assert "staff." not in boss.get(f"{base}/admin/audit", params={"action": "%"}).text.split("<tbody>")[1]


def test_date_range_is_china_days(app, base, staff_browser):
    boss = staff_browser("owner", "boss")
    # 2026-03-01 23:30 in China is 15:30 UTC the same day
    _entry(action="old.thing", reason="三月一日晚上", at=datetime(2026, 3, 1, 15, 30, tzinfo=timezone.utc))
    _entry(action="old.thing", reason="三月二日凌晨", at=datetime(2026, 3, 1, 16, 30, tzinfo=timezone.utc))
    page = boss.get(f"{base}/admin/audit", params={"since": "2026-03-01", "until": "2026-03-01"}).text
    assert "三月一日晚上" in page and "三月二日凌晨" not in page
    page = boss.get(f"{base}/admin/audit", params={"since": "2026-03-02"}).text
    assert "三月一日晚上" not in page and "三月二日凌晨" in page
    res = boss.get(f"{base}/admin/audit", params={"since": "yesterday"})
    assert res.status_code == 400 and "开始日期的格式" in res.text


def test_keyset_pages_do_not_skip_or_repeat(app, base, staff_browser):
    boss = staff_browser("owner", "boss")
    for i in range(120):
        audit.record(audit.SYSTEM, "bulk.thing", "thing", i, reason=f"第{i}号")
    outbox.commit()
    seen, url, pages = [], f"{base}/admin/audit?action=bulk.", 0
    while url:
        page = boss.get(url).text
        seen += re.findall(r"thing #(\d+)</a>", page)
        nxt = re.search(r'href="([^"]*before=\d+[^"]*)">下一页', page)
        url = base + nxt.group(1).replace("&amp;", "&") if nxt else None
        pages += 1
    assert pages == 3 and seen == [str(i) for i in range(119, -1, -1)]
    assert boss.get(f"{base}/admin/audit?before=abc").status_code == 200  # ignored, first page


def test_entry_page_shows_before_and_after_as_a_diff(app, base, staff_browser):
    boss = staff_browser("owner", "boss")
    entry = _entry(action="product.edit", target_type="product", target_id=5,
                   before={"price_fen": 1000, "name": "红枣", "on_sale": True},
                   after={"price_fen": 1200, "name": "红枣", "stock": 9})
    page = boss.get(f"{base}/admin/audit/{entry.id}")
    assert page.status_code == 200
    assert "<del>1000</del>" in page.text and "<ins>1200</ins>" in page.text
    assert "<ins>9</ins>" in page.text and "<del>True</del>" in page.text
    assert "红枣" in page.text and "10.0.0.1" in page.text
    assert boss.get(f"{base}/admin/audit/999999").status_code == 404
    assert boss.get(f"{base}/admin/audit/abc").status_code == 404


def test_diff_shapes():
    assert [c.field for c in audit.diff({"a": 1}, {"b": 2})] == ["a", "b"]
    assert [(c.before, c.after, c.changed) for c in audit.diff(None, {"x": [1, 2]})] == [("", "[1, 2]", True)]
    assert audit.diff(None, None) == []
    assert [(c.before, c.after) for c in audit.diff("a", "b")] == [("a", "b")]


def test_operators_and_shipping_cannot_read_the_log(app, base, staff_browser):
    entry = _entry()
    for role in ("operator", "shipping"):
        b = staff_browser(role)
        assert b.get(f"{base}/admin/audit").status_code == 403
        assert b.get(f"{base}/admin/audit/{entry.id}").status_code == 403
