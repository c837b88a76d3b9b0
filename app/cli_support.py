"""What every merchant command shares: one transaction per command, and a
refused action shown as a clear message instead of a traceback."""
from __future__ import annotations

from typing import Any, Callable

import click

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
        raise click.ClickException(getattr(exc, "message", str(exc))) from None
