"""gunicorn settings shared by `make run` and the systemd unit in README.md.

The access log leaves query strings out: WeChat signs each push in the query
(timestamp, nonce, signature), and a signed query read from a log must not be
replayable, nor OAuth codes and states readable there.

A line is rendered by `AccessLog`, which builds only what such a format can
name; and records carry no caller's file and line (the logging HOWTO's
"Optimization" lists the switch).
"""
import logging
import os
import re

from gunicorn.glogging import Logger

accesslog = "-"
access_log_format = '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms "%(a)s"'


class AccessLog(Logger):
    """gunicorn's logger, without the work our access-log format never reads.

    For every request the stock `atoms` adds an entry per request header,
    response header and WSGI environ key (some 60 in all) and the line's
    wrapper copies them, whatever the format names: about 5 % of a worker's
    instructions per WeChat push (bench/webhook_instructions.py). A format
    naming only the plain atoms gets just those, the same values; one that
    names a header or an environ key ({…}i, {…}o, {…}e) gets the stock ones."""

    PLAIN = frozenset("h l u t r s m U q H b B f a T D M L p".split())
    _NAMES = re.compile(r"%\(([^)]*)\)")

    def atoms(self, resp, req, environ, request_time):
        fmt = self.cfg.access_log_format
        if getattr(self, "_plain_for", None) != fmt:
            self._plain_for, self._plain = fmt, set(self._NAMES.findall(fmt)) <= self.PLAIN
        if not self._plain:
            return super().atoms(resp, req, environ, request_time)
        get = environ.get
        status = resp.status
        if isinstance(status, str):
            status = status.split(None, 1)[0]
        sent = getattr(resp, "sent", None)
        seconds, micro = request_time.seconds, request_time.microseconds
        return {
            "h": get("REMOTE_ADDR", "-"), "l": "-", "u": self._get_user(environ) or "-", "t": self.now(),
            "r": f"{environ['REQUEST_METHOD']} {environ['RAW_URI']} {environ['SERVER_PROTOCOL']}",
            "s": status, "m": get("REQUEST_METHOD"), "U": get("PATH_INFO"), "q": get("QUERY_STRING"),
            "H": get("SERVER_PROTOCOL"), "b": "-" if sent is None else str(sent), "B": sent,
            "f": get("HTTP_REFERER", "-"), "a": get("HTTP_USER_AGENT", "-"), "T": seconds,
            "D": seconds * 1000000 + micro, "M": seconds * 1000 + micro // 1000,
            "L": "%d.%06d" % (seconds, micro), "p": f"<{os.getpid()}>",
        }


logger_class = AccessLog


def post_fork(server, worker):
    # No stack walk per record for a caller's file and line (no format of
    # ours or gunicorn's shows them; gunicorn's does show the process id).
    logging._srcfile = None
    _limit_malloc_arenas(server)


def _limit_malloc_arenas(server):
    """Each gthread worker's threads would otherwise get a glibc malloc arena
    apiece, and freed memory scattered over them stays resident: two arenas
    keep a worker near 150 MB under load instead of 165 (bench/memory.py).
    Same as MALLOC_ARENA_MAX=2; nothing on a libc without mallopt."""
    import ctypes
    import ctypes.util

    M_ARENA_MAX = -8
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        if libc is not None and hasattr(libc, "mallopt"):
            libc.mallopt(M_ARENA_MAX, 2)
    except OSError:
        server.log.warning("malloc arenas not limited: no C library found")
