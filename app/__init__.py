"""Composition: build the Flask app from settings, extensions and blueprints."""
from __future__ import annotations

import functools
import logging
from datetime import timedelta
from pathlib import Path

from flask import Flask
from flask.globals import request_ctx
from flask_limiter import Limiter
from werkzeug.middleware.proxy_fix import ProxyFix

from . import config as config_module
from . import input_guard, pool_ping, redact
from .cookie_session import CookieSessions
from .config import Settings
from .extensions import csrf, db, install_sqlite_habits, limiter, queue, redis_store

ROOT = Path(__file__).resolve().parent.parent


def create_app(settings: Settings | None = None, *, migrations: bool = True) -> Flask:
    """``migrations=False`` leaves Flask-Migrate out (Alembic and Mako, about
    11 MB a process): a web worker never runs the ``db`` command."""
    if settings is None:
        try:
            settings = config_module.load()
        except config_module.ConfigError as exc:
            # Start-up stops here with one line naming the key, not a traceback.
            raise SystemExit(f"fenxiao: configuration error: {exc}") from None
    app = Flask(__name__, instance_path=str(ROOT / "var"), static_folder=None)
    logging.basicConfig(level=settings["app"]["log_level"],
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    https = settings["app"]["base_url"].startswith("https://")
    app.config.update(
        SETTINGS=settings,
        SECRET_KEY=settings["app"]["secret_key"],
        SQLALCHEMY_DATABASE_URI=settings["app"]["database_url"],
        SQLALCHEMY_ENGINE_OPTIONS={"pool_pre_ping": False},  # app.pool_ping: only after idling
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SECURE=https,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_NAME="fx_session",
        PERMANENT_SESSION_LIFETIME=timedelta(days=30),
        PREFERRED_URL_SCHEME="https" if https else "http",
        MAX_CONTENT_LENGTH=2 * 1024 * 1024,
        JSON_AS_ASCII=False,
        WTF_CSRF_TIME_LIMIT=None,  # valid for the session's life; pages stay open in WeChat for long
        RATELIMIT_STORAGE_URI=settings["app"]["redis_url"] or "memory://",
        RATELIMIT_HEADERS_ENABLED=True,
    )
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1)
    app.session_interface = CookieSessions()
    redact.install(settings, [(s, k) for s, keys in config_module.SCHEMA.items() for k, key in keys.items()
                              if key.secret])
    app.url_map.converters["id"] = input_guard.IdConverter  # before any route uses <id:…>
    app.before_request(input_guard.check_request)
    register_extensions(app)
    if migrations:
        register_migrations(app)
    register_blueprints(app, settings)
    redact.install(settings, ())  # again: the blueprints' loggers exist now
    from . import errors
    errors.register(app)
    from . import cli
    cli.register(app)
    return app


def register_migrations(app: Flask) -> None:
    from flask_migrate import Migrate

    Migrate(app, db, directory=str(ROOT / "migrations"), render_as_batch=True, compare_type=True,
            render_item=_render_item)


def register_extensions(app: Flask) -> None:
    db.init_app(app)
    with app.app_context():
        install_sqlite_habits(db.engine)
        pool_ping.install(db.engine)
    redis_store.init_app(app)
    queue.init_app(app)
    csrf.init_app(app)
    limiter.init_app(app)
    import models  # noqa: F401  (tables known to Alembic and the session)


def _render_item(kind, obj, autogen_context):
    """Migrations spell our column types in plain SQLAlchemy, so they never
    import application code."""
    from models.base import UTCDateTime

    if kind == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def register_blueprints(app: Flask, settings: Settings) -> None:
    from admin import bp as admin_bp
    from h5 import bp as h5_bp
    from pay import bp as pay_bp
    from wxbot.webhook import bp as wx_bp

    from .health import bp as health_bp

    app.register_blueprint(health_bp)

    @app.get("/")
    def root():
        from flask import redirect, url_for

        return redirect(url_for("sandbox.home" if settings["wechat"]["sandbox"] else "h5.index"))

    app.register_blueprint(wx_bp)
    csrf.exempt(wx_bp)
    app.register_blueprint(h5_bp)
    app.register_blueprint(pay_bp)
    app.register_blueprint(admin_bp)
    csrf.exempt(pay_bp)  # gateways sign their notifications; they carry no CSRF token
    if settings["wechat"]["sandbox"]:
        from sandbox import register as register_sandbox

        register_sandbox(app, csrf)
    _limit_only_limited_views(app)


def _limit_only_limited_views(app: Flask) -> None:
    """Our only rate limits sit on views (the admin's sign-in), and the
    decorator checks those itself. With no default, application or blueprint
    limit, the limiter's app-wide ``before_request`` finds nothing on every
    request, WeChat's pushes included, at some 0.1 ms each: take it off."""
    manager = limiter.limit_manager
    if manager.default_limits or manager.application_limits or manager._blueprint_limits:
        return
    app.before_request_funcs[None].remove(limiter._check_request_limit)
    # Its after_request (headers, conditional deductions) and teardown then
    # have something to do only where a limited view made the request's
    # limiter context; elsewhere each would make an empty one to look in.
    after = app.after_request_funcs[None]
    after[:] = [_only_where_limited(f) if getattr(f, "func", None) is _INJECT_HEADERS else f for f in after]
    teardown = app.teardown_request_funcs[None]
    teardown[:] = [_only_where_limited(f) if getattr(f, "__func__", None) is _RELEASE_CONTEXT else f
                   for f in teardown]


# Private to Flask-Limiter (pinned): under another version they may be
# missing, and its hooks then simply run as they come.
_INJECT_HEADERS = getattr(Limiter, "_Limiter__inject_headers", object())
_RELEASE_CONTEXT = getattr(Limiter, "_Limiter__release_context", object())


def _only_where_limited(hook):
    @functools.wraps(hook)
    def run(value=None):
        if not hasattr(request_ctx, "_limiter_request_context"):
            return value  # after_request: the response as it was; teardown: ignored
        return hook(value)
    return run
