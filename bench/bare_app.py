"""The floor of this stack: a WeChat webhook that does nothing but the
protocol. Same Flask, same gunicorn, same wechatpy as the product, and
nothing else — no database, no Redis, no handlers.

POST /wx: check the signature (sha1, constant-time compare), in safe mode
decrypt with ``WeChatCrypto``, ``wechatpy.parse_message``, answer a text
reply made with ``wechatpy.replies`` (encrypted again in safe mode).

It reads the same TOML as the product (``FENXIAO_CONFIG``), only the
``[wechat]`` token, appid and encoding_aes_key. Run by bench/webhook.py as
``gunicorn … bench.bare_app:app``.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import tomllib

from flask import Flask, Response, request
from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.replies import create_reply
from wechatpy.utils import random_string

with open(os.environ["FENXIAO_CONFIG"], "rb") as f:
    WECHAT = tomllib.load(f)["wechat"]
TOKEN = WECHAT["token"]
CRYPTO = (WeChatCrypto(TOKEN, WECHAT["encoding_aes_key"], WECHAT["appid"])
          if WECHAT.get("encoding_aes_key") else None)

app = Flask(__name__)


def _signed(*parts: str, given: str) -> bool:
    expected = hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()
    return hmac.compare_digest(expected.encode(), given.lower().encode())


@app.post("/wx")
def receive() -> Response:
    args = request.args
    timestamp, nonce = args.get("timestamp", ""), args.get("nonce", "")
    if not _signed(TOKEN, timestamp, nonce, given=args.get("signature", "")):
        return Response("bad signature", 403, mimetype="text/plain")
    body = request.get_data()
    safe = args.get("encrypt_type") == "aes"
    if safe:
        # decrypt_message checks msg_signature itself
        body = CRYPTO.decrypt_message(body, args.get("msg_signature", ""), timestamp, nonce)
    msg = parse_message(body)
    reply = create_reply("收到：" + (getattr(msg, "content", None) or getattr(msg, "event", "")), msg).render()
    if safe:
        reply = CRYPTO.encrypt_message(reply, random_string(16))
    return Response(reply, mimetype="application/xml")
