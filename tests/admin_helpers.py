"""Staff for admin tests: accounts of each role and browsers logged in as them."""
from __future__ import annotations

import re

import pytest
import requests

from handlers import audit, outbox
from handlers import staff as staff_rules

ROLES = ("owner", "operator", "finance", "shipping")
PASSWORD = "correct horse battery"


def token(page: str) -> str:
    """The CSRF token of an admin page (meta tag or a form's hidden field)."""
    found = re.search(r'name="csrf-token" content="([^"]+)"', page) or \
        re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)
    assert found, "no CSRF token on the page"
    return found.group(1)


def log_in(browser: requests.Session, base: str, name: str, password: str = PASSWORD, code: str = "",
           **kwargs) -> requests.Response:
    page = browser.get(f"{base}/admin/login")
    return browser.post(f"{base}/admin/login", data={"csrf_token": token(page.text), "name": name,
                                                      "password": password, "code": code},
                        allow_redirects=False, **kwargs)


def post(browser: requests.Session, url: str, data: dict | None = None, htmx: bool = False,
         page: str | None = None, **kwargs) -> requests.Response:
    """A POST from an admin page, carrying its CSRF token as a form would (or
    as htmx does, in the X-CSRFToken header)."""
    base = url.split("/admin", 1)[0]
    csrf = token(browser.get(page or f"{base}/admin/").text)
    headers = {"HX-Request": "true", "X-CSRFToken": csrf} if htmx else {}
    body = dict(data or {})
    if not htmx:
        body["csrf_token"] = csrf
    return browser.post(url, data=body, headers=headers, allow_redirects=False, **kwargs)


@pytest.fixture
def make_staff(app):
    def make(name: str, role: str = "owner", password: str = PASSWORD):
        member = staff_rules.create_staff(name, role, password, audit.SYSTEM)
        outbox.commit()
        return member

    return make


@pytest.fixture
def staff_browser(app, make_staff, base):
    """Creator of browsers logged in to /admin as a new staff member of ``role``."""
    opened = []

    def make(role: str = "owner", name: str | None = None) -> requests.Session:
        name = name or f"{role}{len(opened) + 1}"
        make_staff(name, role)
        browser = requests.Session()
        opened.append(browser)
        res = log_in(browser, base, name)
        assert res.status_code == 302, res.text
        browser.staff_name = name
        return browser

    yield make
    for b in opened:
        b.close()
