"""``flask --app wsgi reconcile …``: Reconciliation with the gateways' bills."""
from __future__ import annotations

from flask.cli import AppGroup

reconcile_cli = AppGroup("reconcile", help="Reconciliation with the gateways' bills.")
