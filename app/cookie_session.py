"""Flask's signed-cookie session, without the work most requests do not need.

Flask builds an itsdangerous serializer for every request that opens the
session, which is every request (WeChat's pushes and the payment
notifications too, which carry no cookie). The signer depends only on the
secret key and its fallbacks, so it is kept until they change. A request
without a cookie opens an empty session without parsing cookies, and one
that neither read nor changed its session saves nothing, without first
reading the seven cookie settings Flask reads before it finds that out.
"""
from __future__ import annotations

from flask import Flask
from flask.sessions import SecureCookieSessionInterface
from itsdangerous import URLSafeTimedSerializer


class CookieSessions(SecureCookieSessionInterface):
    def __init__(self) -> None:
        self._signer: tuple[tuple, URLSafeTimedSerializer | None] | None = None

    def open_session(self, app: Flask, request):
        if "HTTP_COOKIE" not in request.environ and app.secret_key:
            return self.session_class()
        return super().open_session(app, request)

    def save_session(self, app: Flask, session, response) -> None:
        if not (session or session.modified or session.accessed):
            return  # Flask's own would end here too, after reading its settings
        super().save_session(app, session, response)

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        keys = (app.secret_key, tuple(app.config["SECRET_KEY_FALLBACKS"] or ()))
        made = self._signer  # one read: another thread may replace it meanwhile, with an equal signer
        if made is None or made[0] != keys:
            made = self._signer = (keys, super().get_signing_serializer(app))
        return made[1]
