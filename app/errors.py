"""One error page: domain errors and HTTP errors rendered for who asked
(HTML for pages, JSON for AJAX, plain text for WeChat), rollback on 500."""
from __future__ import annotations

import logging

from flask import Flask, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from handlers import outbox
from flask_wtf.csrf import CSRFError

from handlers.errors import DomainError
from models import IllegalTransition

from .input_guard import ControlCharacters

log = logging.getLogger(__name__)


def _wants_json() -> bool:
    return request.accept_mimetypes.best == "application/json" or request.path.startswith(
        ("/sandbox/api/", "/pay/", "/sandbox/pay/wechatpay/v3/")
    )


def _for_a_page() -> bool:
    return not request.path.startswith("/wx") and not _wants_json()


def _render(status: int, message: str):
    if request.path.startswith("/wx"):
        return message, status, {"Content-Type": "text/plain; charset=utf-8"}
    if _wants_json():
        return jsonify(error=message), status
    if request.path.startswith("/admin"):
        if request.headers.get("HX-Request") == "true":  # shown in the page's message bar (admin.js)
            return render_template("admin/_alert.html", message=message, kind="error"), status
        return render_template("admin/error.html", status=status, message=message), status
    return render_template("error.html", status=status, message=message), status


def register(app: Flask) -> None:
    @app.errorhandler(DomainError)
    def domain_error(exc: DomainError):
        outbox.rollback()
        return _render(exc.status, exc.message)

    @app.errorhandler(IllegalTransition)
    def illegal_transition(exc: IllegalTransition):
        outbox.rollback()
        return _render(409, "当前状态下不能这样操作，请刷新后重试")

    @app.errorhandler(CSRFError)
    def csrf_error(exc: CSRFError):
        return _render(400, "页面已过期，请返回刷新后再提交")

    @app.errorhandler(ControlCharacters)
    def control_characters(exc: ControlCharacters):
        # Nothing ran yet (a before_request check); a page gets words, a program gets where.
        return _render(400, exc.message if _for_a_page() else exc.description)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        messages = {404: "页面不存在", 405: "不支持的请求方式", 413: "提交的内容太大", 400: "请求有误",
                    403: "没有权限", 429: "尝试次数过多，请稍后再试"}
        return _render(exc.code or 400, messages.get(exc.code, exc.description or "请求有误"))

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        outbox.rollback()
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _render(500, "服务器开小差了，请稍后再试")
