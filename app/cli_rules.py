"""The merchant's rules from the command line: ``flask --app wsgi rules …``,
the same versions as the admin's 规则设置 page (handlers/rules.py). Values
are in the keys' own units: basis points (``_bp``), fen (``_fen``), hours,
days, minutes; ``review`` is manual, auto or threshold. Every change is
audited as ``cli:<login>``.
"""
from __future__ import annotations

import click
from flask.cli import AppGroup

from handlers import audit
from handlers import rules as rules_
from handlers.clock import CHINA, now
from handlers.errors import DomainError

from .cli_support import row, run_handler

rules_cli = AppGroup("rules", help="The merchant's rules (rates, review, withdrawals, order timings), versioned.")


def _when(moment) -> str:
    return f"{moment.astimezone(CHINA):%Y-%m-%d %H:%M}"


@rules_cli.command("show")
def show() -> None:
    """Each rule in effect now, where it comes from, and what is scheduled."""
    view = rules_.overview()
    for _, rows in view.groups:
        for r in rows:
            source = (f"v{r.version.revision} from {_when(r.version.effective_from)} by {r.version.created_by}"
                      if r.version else "config file")
            row(r.rule.key, r.value, rules_.show(r.rule.key, r.value), source)
            for v in r.scheduled:
                row("", v.value, rules_.show(v.key, v.value), f"scheduled #{v.id} from {_when(v.effective_from)} "
                                                             f"by {v.created_by}")
    row("max_total_rate_bp", view.cap_bp, rules_.show("level1_rate_bp", view.cap_bp), "config file (not editable)")
    click.echo(f"revision {view.revision}, China time {_when(view.at)}")


def _value(key: str, text: str):
    if key in rules_.RULES and rules_.RULES[key].kind == "review":
        return text
    if not (text.isascii() and text.lstrip("-").isdigit()):
        raise DomainError(f"{key}: a whole number in the key's own unit, got {text!r}")
    return int(text)


@rules_cli.command("set")
@click.argument("assignments", nargs=-1, required=True, metavar="KEY=VALUE...")
@click.option("--reason", required=True, help="Why; kept with the version and in the audit log.")
@click.option("--at", "at", default="", metavar="'YYYY-MM-DD HH:MM'",
              help="China time from which the values apply; default now.")
def set_rules(assignments: tuple[str, ...], reason: str, at: str) -> None:
    """New versions of one or several rules: ``rules set level1_rate_bp=1200 --reason …``."""
    values = {}
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        if not sep:
            raise click.BadParameter(f"{assignment!r}: expected KEY=VALUE")
        values[key.strip()] = run_handler(_value, key.strip(), text.strip())
    start = run_handler(rules_.parse_time, at)
    saved = run_handler(rules_.save, values, reason=reason, actor=audit.cli_actor(), effective_from=start)
    for v in saved:
        row(v.key, v.value, rules_.show(v.key, v.value),
            "now" if v.effective_from <= now() else f"from {_when(v.effective_from)}")


@rules_cli.command("cancel")
@click.argument("version_id", type=int)
@click.option("--reason", required=True, help="Why; kept in the audit log.")
def cancel(version_id: int, reason: str) -> None:
    """Withdraw a scheduled version (``rules show`` gives its #id) before it takes effect."""
    v = run_handler(rules_.cancel, version_id, reason=reason, actor=audit.cli_actor())
    click.echo(f"cancelled #{v.id}: {v.key} = {v.value} from {_when(v.effective_from)}")


@rules_cli.command("history")
@click.option("--key", default="", help="Only this rule.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000))
def history(key: str, limit: int) -> None:
    """Every version, newest first."""
    at = now()
    current = rules_.in_effect_ids(at)
    for v in rules_.history(key or None, limit=limit)[:limit]:
        row(f"#{v.id}", f"v{v.revision}", v.key, v.value, _when(v.effective_from),
            rules_.state_of(v, current, at), v.created_by, v.reason)
