"""What admin views share: running a handler as one transaction, answering
an htmx request or a plain form alike, keyset pages and filter arguments."""
from __future__ import annotations

from typing import Any, Callable, Sequence

from flask import flash, redirect, render_template, request

from handlers import outbox

from . import bp
from .auth import is_htmx

PAGE_SIZE = 50


def run(action: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call a handler and commit what it did (its audit row included). A
    refused action raises DomainError, which app/errors.py answers with its
    message after rolling back."""
    result = action(*args, **kwargs)
    outbox.commit()
    return result


def done(message: str, back: str, fragment: str | None = None, **context: Any):
    """After an action: htmx gets ``fragment`` (the changed row) or the
    message; a plain form is sent ``back`` with the message flashed."""
    if is_htmx():
        if fragment:
            return render_template(fragment, message=message, **context)
        return render_template("admin/_alert.html", message=message, kind="success")
    flash(message, "success")
    return redirect(back)


def keyset(rows: Sequence[Any], limit: int = PAGE_SIZE) -> tuple[list[Any], int | None]:
    """Handlers fetch ``limit + 1`` rows newest first: the extra row says a
    next page exists, and the last id shown is where it starts."""
    rows = list(rows)
    if len(rows) > limit:
        return rows[:limit], rows[limit - 1].id
    return rows, None


def before_arg() -> int | None:
    value = request.args.get("before", "")
    return int(value) if value.isascii() and value.isdigit() and 0 < int(value) < 2**31 else None


def filter_args(*names: str) -> dict[str, str]:
    """The filters given in the query string, stripped, empty ones left out."""
    return {name: request.args.get(name, "").strip()[:64] for name in names if request.args.get(name, "").strip()}


@bp.app_template_filter("dict_without")
def dict_without(args: dict, *names: str) -> dict:
    return {k: v for k, v in args.items() if k not in names}
