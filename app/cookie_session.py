"""Flask's signed-cookie session, with its signer made once per set of keys.

Flask builds an itsdangerous serializer for every request that opens the
session, which is every request (WeChat's pushes and the payment
notifications too, which carry no cookie). The signer depends only on the
secret key and its fallbacks, so it is kept until they change.
"""
from __future__ import annotations

from flask import Flask
from flask.sessions import SecureCookieSessionInterface
from itsdangerous import URLSafeTimedSerializer


class CookieSessions(SecureCookieSessionInterface):
    def __init__(self) -> None:
        self._signer: tuple[tuple, URLSafeTimedSerializer | None] | None = None

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        keys = (app.secret_key, tuple(app.config["SECRET_KEY_FALLBACKS"] or ()))
        made = self._signer  # one read: another thread may replace it meanwhile, with an equal signer
        if made is None or made[0] != keys:
            made = self._signer = (keys, super().get_signing_serializer(app))
        return made[1]
