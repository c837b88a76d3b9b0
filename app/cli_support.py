"""What every merchant command shares: one transaction per command, a
refused action shown as a clear message instead of a traceback, and what
people typed (nicknames, names, reasons) printed as plain text: a nickname
holding terminal escape codes must not reach the merchant's terminal raw."""
from __future__ import annotations

import re
from typing import Any, Callable

import click

from .redact import redact

from handlers import outbox
from handlers.errors import DomainError
from models import IllegalTransition


def run_handler(action: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        result = action(*args, **kwargs)
        outbox.commit()
        return result
    except (DomainError, IllegalTransition) as exc:
        outbox.rollback()
        raise click.ClickException(printable(getattr(exc, "message", str(exc)))) from None


# ANSI/VT escape sequences (CSI … final byte, OSC … BEL/ST, and two-byte ESC x),
# then any control character left, and the bidirectional overrides that
# reorder what a terminal shows.
ESCAPE_SEQUENCE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]|\x9b[0-?]*[ -/]*[@-~]")
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(value: object) -> str:
    """One field of a command's output: no control characters (a tab or a
    line break inside a field becomes a space), no secret in a URL."""
    text = ESCAPE_SEQUENCE.sub("", str(value if value is not None else ""))
    text = re.sub(r"[\t\n\r]+", " ", text)
    return redact(CONTROL.sub("", text))


def row(*fields: object) -> None:
    """One tab-separated line of a listing, each field made printable."""
    click.echo("\t".join(printable(f) for f in fields))
