"""Secrets never reach a log, at any level.

wechatpy fetches the access token (and the OAuth user token) with the
AppSecret in the query string; urllib3 logs every request's URL at DEBUG,
the development server logs request lines, and a connection error's message
(and so its traceback) carries the URL too. One filter rewrites such records
before any handler writes them: ``secret=…`` and ``access_token=…`` in any
message or traceback, and the configured secret values wherever they appear.

It is installed by ``create_app`` on the root logger's handlers (what the
process writes) and on the loggers that are known to emit URLs or
exceptions, so a handler added later (a test's caplog, an error tracker) gets
redacted records from those too.
"""
from __future__ import annotations

import logging
import re
from typing import Iterable, Mapping

QUERY_SECRET = re.compile(r"(?i)\b((?:app)?secret|access_token)=[^&\s'\"#<>]+")
MASK = "***"
# Third-party loggers that write URLs or exceptions carrying them.
EMITTERS = ("urllib3.connectionpool", "urllib3", "requests", "werkzeug", "wechatpy", "wechatpy.client.base",
            "rq.worker", "rq.job", "rq.queue", "rq.scheduler", "gunicorn.error", "gunicorn.access")
# Our own packages: every logger of theirs that exists when the app is built.
OURS = ("app", "wxbot", "h5", "pay", "handlers", "sandbox", "models")


def redact(text: str, values: Iterable[str] = ()) -> str:
    """``text`` with query-string secrets and the given secret values masked."""
    text = QUERY_SECRET.sub(lambda m: f"{m.group(1)}={MASK}", text)
    for value in values:
        if value in text:
            text = text.replace(value, MASK)
    return text


class RedactSecrets(logging.Filter):
    """Rewrites a record whose message or traceback shows a secret; never drops one."""

    def __init__(self) -> None:
        super().__init__()
        self.values: set[str] = set()
        self._longest_first: tuple[str, ...] = ()

    def remember(self, values: Iterable[str]) -> None:
        # Short values (an empty Redis URL, a 3-letter token) would mask ordinary words.
        self.values.update(v for v in values if isinstance(v, str) and len(v) >= 8)
        self._longest_first = tuple(sorted(self.values, key=len, reverse=True))

    def redact(self, text: str) -> str:
        return redact(text, self._longest_first)

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_redacted", False):  # met at its logger, now at a handler
            return True
        try:
            message = record.getMessage()
        except Exception:  # a broken format string is the handler's to report
            return True
        # The message stays formatted, clean or not: the handler need not format it again.
        record.msg, record.args = self.redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        record._redacted = True
        return True


REDACT = RedactSecrets()


def install(settings: Mapping[str, Mapping[str, object]], secret_keys: Iterable[tuple[str, str]]) -> None:
    """Remember this deployment's secret values; put the filter where records pass.
    Safe to call more than once (tests build several apps)."""
    REDACT.remember(str(settings[section][name]) for section, name in secret_keys)
    for handler in logging.getLogger().handlers:
        handler.addFilter(REDACT)  # addFilter ignores a filter already there
    names = set(EMITTERS) | {name for name in logging.Logger.manager.loggerDict
                             if name.split(".", 1)[0] in OURS}
    for name in names:
        logging.getLogger(name).addFilter(REDACT)
