"""Bad input is refused at the door with a 4xx, before any handler runs.

- Ids in URLs are ``<id:…>``: plain ASCII digits that fit PostgreSQL's
  INTEGER. Werkzeug's ``int:`` matches ``\\d+``, which in Python includes
  other scripts' digits ('١٢' → 12), and passes 2^31 on to the database,
  which answers with an error (a 500); here both simply do not match (404).
- Control characters and NUL bytes (which PostgreSQL refuses in text) and
  lone surrogates in the path, query, form fields and JSON strings are
  refused with a 400 and a message. Tab, CR and LF are ordinary in a
  textarea and in JSON text, and allowed there only. The WeChat webhook's
  body (XML, checked by the webhook) and the payment notifications' bodies
  (signed, kept as received) are not looked at here.
"""
from __future__ import annotations

import json
import re
from typing import Any, Iterable

from flask import request
from werkzeug.exceptions import BadRequest
from werkzeug.routing import BaseConverter, ValidationError

MAX_ID = 2**31 - 1

# C0 controls, DEL, C1 controls and lone surrogates; and the same with tab/CR/LF allowed.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
CONTROL_BUT_LINES = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")

# Form fields that are <textarea>s, by endpoint: line breaks are what people type there.
MULTILINE_FIELDS: dict[str, frozenset[str]] = {
    "h5.apply": frozenset({"reason"}),
    "h5.checkout": frozenset({"address"}),
    "sandbox.text": frozenset({"content"}),  # a chat message may run over lines
    "admin.product_new": frozenset({"description"}),
    "admin.product_save": frozenset({"description"}),
    "admin.withdrawal_reject": frozenset({"reason"}),
}


def raw_body() -> bool:
    """Bodies taken as they come, checked (and signed) by their own endpoint:
    the WeChat push (XML) and the gateways' notifications under /pay/."""
    path = request.path
    return path == "/wx" or (path.startswith("/pay/") and path.endswith("notify"))


class IdConverter(BaseConverter):
    """``<id:name>``: 1-10 ASCII digits, at most 2^31 - 1, else no match (404)."""

    regex = r"[0-9]{1,10}"
    weight = 50  # as specific as werkzeug's int:

    def to_python(self, value: str) -> int:
        number = int(value)
        if number > MAX_ID:
            raise ValidationError()
        return number

    def to_url(self, value: Any) -> str:
        return str(int(value))


class ControlCharacters(BadRequest):
    """400: what was sent holds a control character. ``message`` is for a
    person (the H5 pages), ``description`` says where, for a program."""

    message = "提交的内容含有不允许的控制字符（如空字符），请删除后重新提交"

    def __init__(self, where: str) -> None:
        super().__init__(f"control character in {where}")
        self.where = where


def _strings(value: Any, key: str = "") -> Iterable[tuple[str, str]]:
    """(where, text) for every key and string in a JSON document."""
    if isinstance(value, str):
        yield key or "JSON", value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield "a JSON key", str(k)  # checked before its value: a clean key names the field
            yield from _strings(v, f"JSON field {str(k)[:40]!r}")
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item, key)


def _json_body() -> Any:
    if request.is_json:
        return request.get_json(silent=True)
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return None
    # Some clients (wechatpy, the WeChat Pay v3 SDKs) post JSON without saying so.
    data = request.get_data(cache=True)
    if not data.lstrip()[:1] in (b"{", b"["):
        return None
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None  # not JSON after all: the endpoint answers for its own format


def _name(kind: str, key: str) -> str:
    return f"{kind} {key[:40]!r}" if not CONTROL.search(key) else f"a {kind} name"


def check_request() -> None:
    """``before_request``: raise ControlCharacters for a hostile character anywhere we read."""
    if CONTROL.search(request.path):
        raise ControlCharacters("the address")
    for key, value in request.args.items(multi=True):
        if CONTROL.search(key) or CONTROL.search(value):
            raise ControlCharacters(_name("query parameter", key))
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    if raw_body():
        return
    multiline = MULTILINE_FIELDS.get(request.endpoint or "", frozenset())
    for key, value in request.form.items(multi=True):
        pattern = CONTROL_BUT_LINES if key in multiline else CONTROL
        if CONTROL.search(key) or pattern.search(value):
            raise ControlCharacters(_name("form field", key))
    for key, upload in request.files.items(multi=True):
        if CONTROL.search(key) or CONTROL.search(upload.filename or ""):
            raise ControlCharacters("a file name")
    for where, text in _strings(_json_body()):
        if CONTROL_BUT_LINES.search(text):
            raise ControlCharacters(where)
