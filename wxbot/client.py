"""WeChat API access through wechatpy, with configurable addresses and one
access token shared by every process through Redis.

wechatpy's own refresh takes no lock, and each fetch of a new token makes the
previous one expire shortly after: two gunicorn workers refreshing at once
would keep invalidating each other. Here a refresh happens under a Redis lock,
and a process that waited for the lock uses the token the winner stored. The
JS-SDK ticket (``wx.config`` on the H5 pages) is kept and refreshed the same way.
"""
from __future__ import annotations

import logging
import time

import requests
from flask import current_app
from wechatpy import WeChatClient, WeChatOAuth
from wechatpy.session.redisstorage import RedisStorage
from wechatpy.utils import random_string

from app.extensions import redis_store

log = logging.getLogger(__name__)
TIMEOUT = 5
# Keep our copy shorter-lived than WeChat's so we never hand out a dead token.
TOKEN_MARGIN = 300
TICKET_REFRESH_EVERY = 60


class TimeoutSession(requests.Session):
    """wechatpy fetches the token with no timeout: a hung WeChat would hang
    the worker while it holds the refresh lock."""

    def request(self, *args, **kwargs):
        kwargs.setdefault("timeout", TIMEOUT)
        return super().request(*args, **kwargs)


class SharedTokenClient(WeChatClient):
    def __init__(self, appid: str, secret: str, api_base: str, redis) -> None:
        super().__init__(appid, secret, session=RedisStorage(redis, prefix="wechat"), timeout=TIMEOUT)
        self._http = TimeoutSession()
        self.API_BASE_URL = f"{api_base}/cgi-bin/"
        self.api_base = api_base
        self.redis = redis

    @property
    def access_token(self) -> str:
        return self.session.get(self.access_token_key) or self._refresh(stale=None)

    def fetch_access_token(self):
        # wechatpy calls this after 40001/42001: the token we used is stale.
        self._refresh(stale=self.session.get(self.access_token_key))
        return {"access_token": self.session.get(self.access_token_key)}

    def _refresh(self, stale: str | None) -> str:
        with self.redis.lock(f"wechat:{self.appid}:token-lock", timeout=15, blocking_timeout=15):
            current = self.session.get(self.access_token_key)
            if current and current != stale:
                return current  # another process refreshed while we waited
            result = self._fetch_access_token(
                url=f"{self.api_base}/cgi-bin/token",
                params={"grant_type": "client_credential", "appid": self.appid, "secret": self.secret},
            )
            ttl = max(60, int(result.get("expires_in", 7200)) - TOKEN_MARGIN)
            self.session.set(self.access_token_key, result["access_token"], ttl)
            log.info("fetched a new WeChat access token (valid %ss here)", ttl)
            return result["access_token"]

    def jsapi_ticket(self, refresh: bool = False) -> str:
        """The JS-SDK ticket, shared like the token. ``refresh``: a page's
        signature was refused (the ticket may be dead): fetch a new one, at
        most once a minute whoever asks (getticket is limited per day)."""
        key = f"{self.appid}_jsapi_ticket"
        ticket = self.session.get(key)
        if ticket and not refresh:
            return ticket
        with self.redis.lock(f"wechat:{self.appid}:ticket-lock", timeout=15, blocking_timeout=15):
            current = self.session.get(key)
            if current and current != ticket:
                return current  # another process fetched one while we waited
            if current and not self.redis.set(f"wechat:{self.appid}:ticket-refreshed", 1, nx=True,
                                              ex=TICKET_REFRESH_EVERY):
                return current
            result = self.jsapi.get_ticket("jsapi")
            ticket = result["ticket"]
            self.session.set(key, ticket, max(60, int(result.get("expires_in", 7200)) - TOKEN_MARGIN))
            log.info("fetched a new JS-SDK ticket")
            return ticket

    def jsapi_config(self, url: str, refresh: bool = False) -> dict:
        """Parameters for ``wx.config`` on the page at ``url`` (no fragment)."""
        from handlers.jssdk import sign

        nonce, timestamp = random_string(16), int(time.time())
        url = url.split("#", 1)[0]
        return {"appId": self.appid, "timestamp": timestamp, "nonceStr": nonce,
                "signature": sign(self.jsapi_ticket(refresh), nonce, timestamp, url)}


def wechat_client() -> SharedTokenClient:
    """A client for this app's account. Cheap: the token lives in Redis."""
    wechat = current_app.config["SETTINGS"]["wechat"]
    return SharedTokenClient(wechat["appid"], wechat["secret"], wechat["api_base"], redis_store.conn)


class TimedOAuth(WeChatOAuth):
    def _request(self, method, url_or_endpoint, **kwargs):
        kwargs.setdefault("timeout", TIMEOUT)
        return super()._request(method, url_or_endpoint, **kwargs)


def oauth_client(redirect_uri: str, scope: str, state: str) -> WeChatOAuth:
    """wechatpy's OAuth object holds per-user state: one per request."""
    wechat = current_app.config["SETTINGS"]["wechat"]
    oauth = TimedOAuth(wechat["appid"], wechat["secret"], redirect_uri, scope=scope, state=state)
    oauth.API_BASE_URL = f"{wechat['api_base']}/"
    oauth.OAUTH_BASE_URL = f"{wechat['open_base']}/connect/"
    return oauth
