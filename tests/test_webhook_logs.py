"""The access log of gunicorn.conf.py leaves the query out (issue 9, item 1):
a /wx query carries a push's signature, and one read from a log must not be
usable again. The line is rendered by gunicorn's own access logger."""
from __future__ import annotations

import runpy
import time
from datetime import timedelta
from types import SimpleNamespace

from gunicorn.config import Config
from gunicorn.glogging import Logger
from werkzeug.test import EnvironBuilder

from sandbox.push import signature


def access_line(repo_root, tmp_path, **override) -> str:
    """What gunicorn, configured by gunicorn.conf.py, writes for one signed
    POST /wx (into a file here instead of stdout)."""
    cfg = Config()
    for name, value in runpy.run_path(str(repo_root / "gunicorn.conf.py")).items():
        if name in cfg.settings:
            cfg.set(name, value)
    log_file = tmp_path / "access.log"
    cfg.set("accesslog", str(log_file))
    for name, value in override.items():
        cfg.set(name, value)
    ts, nonce = str(int(time.time())), "5550123"
    query = f"signature={signature('tok', ts, nonce)}&timestamp={ts}&nonce={nonce}&openid=oSecret0001"
    environ = EnvironBuilder(path="/wx", query_string=query, method="POST",
                             headers={"User-Agent": "Mozilla/4.0"}).get_environ()
    environ["RAW_URI"] = f"/wx?{query}"
    logger = Logger(cfg)
    try:
        logger.access(SimpleNamespace(status="200 OK", sent=7, headers=[]), SimpleNamespace(headers=[]),
                      environ, timedelta(milliseconds=3))
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
