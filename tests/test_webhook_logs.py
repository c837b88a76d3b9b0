"""The access log of gunicorn.conf.py leaves the query out (issue 9, item 1):
a /wx query carries a push's signature, and one read from a log must not be
usable again. The line is rendered by gunicorn's own access logger."""
from __future__ import annotations

import runpy
import time
from datetime import timedelta
from types import SimpleNamespace

import pytest
from gunicorn.config import Config
from gunicorn.glogging import Logger
from werkzeug.test import EnvironBuilder

from sandbox.push import signature


def access_line(repo_root, tmp_path, logger_class=None, **override) -> str:
    """What gunicorn, configured by gunicorn.conf.py, writes for one signed
    POST /wx (into a file here instead of stdout), through the logger class
    it configures unless another is given."""
    cfg = Config()
    for name, value in runpy.run_path(str(repo_root / "gunicorn.conf.py")).items():
        if name in cfg.settings:
            cfg.set(name, value)
    log_file = tmp_path / f"access-{'stock' if logger_class else 'configured'}.log"
    cfg.set("accesslog", str(log_file))
    for name, value in override.items():
        cfg.set(name, value)
    ts, nonce = str(int(time.time())), "5550123"
    query = f"signature={signature('tok', ts, nonce)}&timestamp={ts}&nonce={nonce}&openid=oSecret0001"
    environ = EnvironBuilder(path="/wx", query_string=query, method="POST",
                             headers={"User-Agent": "Mozilla/4.0", "Referer": "https://mp.weixin.qq.com/"},
                             environ_base={"REMOTE_ADDR": "203.0.113.9"}).get_environ()
    environ["RAW_URI"] = f"/wx?{query}"
    logger = (logger_class or cfg.logger_class)(cfg)
    logger.now = lambda: "[01/Dec/2026:08:00:00 +0000]"  # the same second for every logger compared
    try:
        logger.access(SimpleNamespace(status="200 OK", sent=7, headers=[("Content-Type", "application/xml")]),
                      SimpleNamespace(headers=[("USER-AGENT", "Mozilla/4.0")]), environ,
                      timedelta(seconds=1, microseconds=234567))
    finally:
        for handler in logger.access_log.handlers:
            handler.close()
    return log_file.read_text()


def test_the_access_log_has_the_path_but_not_the_query(repo_root, tmp_path):
    line = access_line(repo_root, tmp_path)
    assert '"POST /wx HTTP/1.1" 200' in line
    assert "signature" not in line and "5550123" not in line and "oSecret0001" not in line and "?" not in line


def test_gunicorns_default_format_would_have_logged_it(repo_root, tmp_path):
    """The check above can see a query: gunicorn's default line has one."""
    line = access_line(repo_root, tmp_path, access_log_format=Config().access_log_format)
    assert "signature=" in line and "5550123" in line


def test_the_configured_logger_is_the_lean_one(repo_root):
    cfg = Config()
    for name, value in runpy.run_path(str(repo_root / "gunicorn.conf.py")).items():
        if name in cfg.settings:
            cfg.set(name, value)
    assert cfg.logger_class is not Logger and issubclass(cfg.logger_class, Logger)


@pytest.mark.parametrize("access_log_format", [
    None,  # gunicorn.conf.py's own
    Config().access_log_format,  # gunicorn's default
    '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s %(B)s "%(f)s" "%(a)s" %(T)s %(D)s %(M)s %(L)s %(p)s %(m)s %(U)s '
    '%(q)s %(H)s',  # every plain atom
    '%(h)s "%({user-agent}i)s" %({content-type}o)s %({path_info}e)s %(nope)s',  # headers and environ: stock atoms
])
def test_the_lean_logger_writes_what_gunicorns_would(repo_root, tmp_path, access_log_format):
    override = {"access_log_format": access_log_format} if access_log_format else {}
    ours = access_line(repo_root, tmp_path, **override)
    stock = access_line(repo_root, tmp_path, logger_class=Logger, **override)
    assert ours == stock and ours.strip()
    assert "203.0.113.9" in ours


def test_a_forked_workers_own_log_lines_still_format(repo_root, tmp_path):
    """post_fork changes how records are made in a worker: gunicorn's error
    log (which shows the process id) and ours must still write every line."""
    import subprocess
    import sys

    script = f"""
import logging, runpy, types
from gunicorn.config import Config
conf = runpy.run_path({str(repo_root / "gunicorn.conf.py")!r})
cfg = Config()
for name, value in conf.items():
    if name in cfg.settings:
        cfg.set(name, value)
cfg.set("errorlog", {str(tmp_path / "error.log")!r})
logger = cfg.logger_class(cfg)
conf["post_fork"](types.SimpleNamespace(log=logger), None)
logger.info("Worker exiting (pid: %s)", 4242)
try:
    1 / 0
except ZeroDivisionError:
    logger.exception("Error handling request /wx")
logging.basicConfig(filename={str(tmp_path / "app.log")!r}, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
logging.getLogger("handlers.referrals").warning("new user %s attributed", 7)
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and "Logging error" not in run.stderr, run.stderr
    error_log = (tmp_path / "error.log").read_text()
    assert "Worker exiting (pid: 4242)" in error_log and "ZeroDivisionError" in error_log
    assert "[INFO]" in error_log and "] [" in error_log  # gunicorn's "[pid] [level]"
    assert "handlers.referrals: new user 7 attributed" in (tmp_path / "app.log").read_text()
