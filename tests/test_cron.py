"""The timetable of background jobs (app/cron.py): each entry names a job
that exists and takes no arguments, at a valid time; ``flask cron`` refuses
to start without Redis instead of pretending to run."""
from __future__ import annotations

import inspect

import pytest
from croniter import croniter

from app.cron import SCHEDULE, resolve
from conftest import second_product


@pytest.mark.parametrize("path,expression,what", SCHEDULE, ids=[p for p, _, _ in SCHEDULE])
def test_each_timetabled_job_exists_and_runs_without_arguments(path, expression, what):
    job = resolve(path)
    assert callable(job) and what
    assert all(p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
               for p in inspect.signature(job).parameters.values())
    assert croniter.is_valid(expression)


def test_cron_refuses_the_try_out_without_redis(app, settings):
    with second_product(settings, app={"redis_url": ""}) as try_out, try_out.app_context():
        result = try_out.test_cli_runner().invoke(args=["cron"])  # the in-process stand-in, as the try-out has
    assert result.exit_code != 0 and "needs Redis" in result.output
