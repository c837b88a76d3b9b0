"""The signed-cookie session keeps its signer between requests, and makes a
new one when the secret key changes: a rotated key (the old one kept as a
fallback) still reads the cookies people have, and a dropped key does not."""
from __future__ import annotations


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
