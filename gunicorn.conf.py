"""gunicorn settings shared by `make run` and the systemd unit in README.md.

The access log leaves query strings out: WeChat signs each push in the query
(timestamp, nonce, signature), and a signed query read from a log must not be
replayable, nor OAuth codes and states readable there.
"""
accesslog = "-"
access_log_format = '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms "%(a)s"'


def post_fork(server, worker):
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
