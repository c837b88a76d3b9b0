"""The signed-cookie session keeps its signer between requests, and makes a
new one when the secret key changes: a rotated key (the old one kept as a
fallback) still reads the cookies people have, and a dropped key does not.
Its shortcuts (no cookie parsing without a cookie, no save for an untouched
session) answer as Flask's own session interface does, request for request."""
from __future__ import annotations

from flask.sessions import SecureCookieSessionInterface

from app.cookie_session import CookieSessions


def _opened(app, cookie: str) -> dict:
    name = app.config["SESSION_COOKIE_NAME"]
    with app.test_request_context("/h5/", headers={"Cookie": f"{name}={cookie}"}) as ctx:
        return dict(app.session_interface.open_session(app, ctx.request))


def test_a_cookie_follows_the_secret_key_as_it_is_rotated(app):
    sessions = app.session_interface
    key, fallbacks = app.secret_key, app.config["SECRET_KEY_FALLBACKS"]
    cookie = sessions.get_signing_serializer(app).dumps({"sid": "是我"})
    try:
        assert _opened(app, cookie) == {"sid": "是我"}
        assert sessions.get_signing_serializer(app) is sessions.get_signing_serializer(app)  # made once
        app.secret_key, app.config["SECRET_KEY_FALLBACKS"] = "a new key, rotated in", [key]
        assert _opened(app, cookie) == {"sid": "是我"}  # the old key, kept as a fallback, still reads it
        app.config["SECRET_KEY_FALLBACKS"] = []
        assert _opened(app, cookie) == {}  # dropped: the cookie is nobody's
        assert _opened(app, cookie + "x") == {}
    finally:
        app.secret_key, app.config["SECRET_KEY_FALLBACKS"] = key, fallbacks


def _walk(app, interface) -> list[tuple]:
    """A visitor's requests, and what each answer says about the session cookie."""
    before = app.session_interface
    app.session_interface = interface
    name, seen = app.config["SESSION_COOKIE_NAME"], []
    try:
        client = app.test_client()

        def step(path: str) -> None:
            with app.app_context():  # a request's own `g`, as in production (the fixture holds one open)
                res = client.get(path)
            cookie = client.get_cookie(name)
            seen.append((path, res.status_code, name in res.headers.get("Set-Cookie", ""),
                         "Cookie" in res.vary, cookie is not None and bool(cookie.value)))

        step("/healthz")          # no cookie, session untouched
        step("/admin/login")      # no cookie, the form's CSRF secret written into the session
        step("/admin/login")      # the cookie read back: nothing new to write
        step("/healthz")          # a cookie, session untouched
        with client.session_transaction() as session:
            session["seen"] = 1   # changed between requests
        step("/admin/login")
        with client.session_transaction() as session:
            session.clear()       # emptied: the cookie goes
        step("/healthz")
        step("/admin/login")      # and a new one is made
    finally:
        app.session_interface = before
    return seen


def test_our_session_answers_as_flasks_own(app):
    flasks, ours = _walk(app, SecureCookieSessionInterface()), _walk(app, CookieSessions())
    assert ours == flasks
    # What both say, so that the walk cannot pass by saying nothing.
    assert [s[2] for s in ours] == [False, True, False, False, False, False, True]
    assert [s[4] for s in ours] == [False, True, True, True, True, False, True]


def test_a_request_without_a_cookie_that_leaves_the_session_alone_gets_none(client):
    res = client.get("/healthz")
    assert res.status_code == 200
    assert "Set-Cookie" not in res.headers and "Cookie" not in res.vary
