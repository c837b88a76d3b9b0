"""The product starts and answers: a follower is welcomed and helped; the
try-out starts only when asked for."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest


def test_subscribe_then_help(app, wechat, sandbox_user, jobs):
    person = sandbox_user("小王")
    d = wechat.push(wechat.subscribe(person.openid))
    assert d.status == 200, d.body
    assert "欢迎关注" in d.reply["Content"]
    d = wechat.push(wechat.text(person.openid, "帮助"))
    assert "我的二维码" in d.reply["Content"]


@pytest.mark.slow
def test_the_tryout_starts_only_when_asked_for_on_its_own_address(tmp_path, repo_root):
    """What `make run HOST=… PORT=…` does, without make: FENXIAO_TRYOUT=1 and
    its own base URL; without the flag the same command stops."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FENXIAO_")}
    env.update(PYTHONPATH=str(repo_root), FENXIAO_INSTANCE=str(tmp_path / "var"))
    command = [sys.executable, "-m", "flask", "--app", "wsgi", "routes"]
    refused = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "FENXIAO_TRYOUT=1" in refused.stderr + refused.stdout
    env.update(FENXIAO_TRYOUT="1", FENXIAO_APP_BASE_URL="http://127.0.0.1:5099")
    started = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert started.returncode == 0, started.stderr
    assert "/sandbox/" in started.stdout and "/healthz" in started.stdout
    show = subprocess.run([sys.executable, "-c", "from app.config import load; s = load(); "
                           "print(s['wechat']['api_base'], s['wechat']['open_base'])"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert show.stdout.split() == ["http://127.0.0.1:5099/sandbox/api", "http://127.0.0.1:5099/sandbox/open"]
