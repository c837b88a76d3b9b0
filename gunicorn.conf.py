"""gunicorn settings shared by `make run` and the systemd unit in README.md.

The access log leaves query strings out: WeChat signs each push in the query
(timestamp, nonce, signature), and a signed query read from a log must not be
replayable, nor OAuth codes and states readable there.
"""
accesslog = "-"
access_log_format = '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms "%(a)s"'
