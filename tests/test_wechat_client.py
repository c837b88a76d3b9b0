"""The WeChat client: one access token for every process (shared through
Redis, refreshed under a lock), recovery from a revoked token, the JS-SDK
ticket cached and the wx.config signature WeChat expects."""
from __future__ import annotations

import hashlib
import threading
from concurrent.futures import ThreadPoolExecutor

from app.extensions import redis_store
from sandbox import state
from wxbot.client import SharedTokenClient, wechat_client


def new_client(settings) -> SharedTokenClient:
    """What another gunicorn worker or RQ worker would build."""
    w = settings["wechat"]
    return SharedTokenClient(w["appid"], w["secret"], w["api_base"], redis_store.conn)


def tokens_issued() -> int:
    """Access tokens the sandbox platform has handed out (each stays on
    record for the grace period after the next one is issued)."""
    return sum(1 for _ in redis_store.conn.scan_iter("sandbox:token:*"))


def platform_token(appid: str) -> str | None:
    value = redis_store.conn.get(f"sandbox:current-token:{appid}")
    return value.decode() if value else None


def test_token_is_fetched_once_and_shared_between_clients(app, settings):
    first, second = new_client(settings), new_client(settings)
    token = first.access_token
    assert second.access_token == token
    assert wechat_client().access_token == token
    assert tokens_issued() == 1
    assert platform_token(settings["wechat"]["appid"]) == token  # the one WeChat considers current


def test_twenty_workers_at_once_cause_one_fetch(app, settings):
    clients = [new_client(settings) for _ in range(20)]
    start = threading.Barrier(20)

    def ask(client):
        start.wait()  # all of them find the cache empty together
        return client.access_token

    with ThreadPoolExecutor(max_workers=20) as pool:
        tokens = set(pool.map(ask, clients))
    assert len(tokens) == 1
    assert tokens_issued() == 1
    assert tokens == {platform_token(settings["wechat"]["appid"])}


def test_revoked_token_is_refreshed_once_and_the_call_succeeds(app, settings, sandbox_user):
    person = sandbox_user("小李")
    client = new_client(settings)
    old = client.access_token
    state.revoke_tokens(settings["wechat"]["appid"])  # WeChat now answers 40001 to it

    info = client.user.get(person.openid)

    assert info["openid"] == person.openid
    new = new_client(settings).access_token
    assert new != old
    assert new == platform_token(settings["wechat"]["appid"])
    assert tokens_issued() == 1  # a second refresh would have left the first new token on record


def test_stale_token_in_another_process_does_not_refresh_again(app, settings, sandbox_user):
    person = sandbox_user()
    a, b = new_client(settings), new_client(settings)
    a.access_token
    state.revoke_tokens(settings["wechat"]["appid"])
    a.user.get(person.openid)  # a refreshes
    refreshed = platform_token(settings["wechat"]["appid"])
    b.user.get(person.openid)  # b reads the shared, fresh token: no new fetch
    assert platform_token(settings["wechat"]["appid"]) == refreshed
    assert tokens_issued() == 1


def test_jsapi_ticket_is_cached_and_shared(app, settings):
    ticket = new_client(settings).jsapi_ticket()
    assert ticket
    # The sandbox hands out a new random ticket on every getticket call.
    assert new_client(settings).jsapi_ticket() == ticket
    assert wechat_client().jsapi_ticket() == ticket


def test_jsapi_config_signature(app, settings):
    client = wechat_client()
    url = "https://shop.example.com/h5/product/7?from=share&x=1#section-2"
    config = client.jsapi_config(url)
    ticket = client.jsapi_ticket()
    plain = (f"jsapi_ticket={ticket}&noncestr={config['nonceStr']}"
             f"&timestamp={config['timestamp']}&url=https://shop.example.com/h5/product/7?from=share&x=1")
    assert config["signature"] == hashlib.sha1(plain.encode()).hexdigest()
    assert config["appId"] == settings["wechat"]["appid"]
    assert isinstance(config["timestamp"], int)
    assert len(config["nonceStr"]) >= 8


def test_jsapi_config_nonce_differs_per_page_view(app):
    client = wechat_client()
    a = client.jsapi_config("https://shop.example.com/h5/")
    b = client.jsapi_config("https://shop.example.com/h5/")
    assert a["nonceStr"] != b["nonceStr"]
