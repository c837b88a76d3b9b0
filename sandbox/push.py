"""WeChat's side of the webhook: build, sign, encrypt and POST a push to
``/wx`` exactly as WeChat's servers do, and read the reply.

Written from the protocol (PROTOCOLS.md), not with wechatpy, so that the
simulator and the tests check the product's wechatpy-based webhook against
an independent implementation of the same algorithms.
"""
from __future__ import annotations

import base64
import hashlib
import os
import secrets
import struct
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from itertools import count

import requests
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK = 32
_msg_ids = count(int(time.time() * 1000) * 1000 + secrets.randbelow(1000))


def signature(*parts: str) -> str:
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


def cdata_xml(fields: dict[str, object]) -> str:
    out = ["<xml>"]
    for key, value in fields.items():
        if isinstance(value, int):
            out.append(f"<{key}>{value}</{key}>")
        else:
            text = str(value).replace("]]>", "]]]]><![CDATA[>")
            out.append(f"<{key}><![CDATA[{text}]]></{key}>")
    out.append("</xml>")
    return "".join(out)


def read_xml(body: bytes | str) -> dict[str, object]:
    """Top-level fields; nested ones (news Articles) as lists of dicts."""
    root = ET.fromstring(body)
    fields: dict[str, object] = {}
    for child in root:
        if len(child):
            fields[child.tag] = [
                {leaf.tag: (leaf.text or "") for leaf in item} if len(item) else {item.tag: item.text}
                for item in child
            ]
        else:
            fields[child.tag] = child.text or ""
    return fields


class AESBox:
    """WeChat's message encryption: AES-256-CBC, IV = key[:16], PKCS#7 to 32."""

    def __init__(self, encoding_aes_key: str, appid: str) -> None:
        self.key = base64.b64decode(encoding_aes_key + "=")
        self.appid = appid

    def encrypt(self, text: str, random16: bytes | None = None) -> str:
        raw = text.encode()
        plain = (random16 or os.urandom(16)) + struct.pack(">I", len(raw)) + raw + self.appid.encode()
        pad = BLOCK - len(plain) % BLOCK
        plain += bytes([pad]) * pad
        enc = Cipher(algorithms.AES(self.key), modes.CBC(self.key[:16])).encryptor()
        return base64.b64encode(enc.update(plain) + enc.finalize()).decode()

    def decrypt(self, encrypted: str) -> str:
        dec = Cipher(algorithms.AES(self.key), modes.CBC(self.key[:16])).decryptor()
        plain = dec.update(base64.b64decode(encrypted)) + dec.finalize()
        plain = plain[: -plain[-1]]
        length = struct.unpack(">I", plain[16:20])[0]
        text, appid = plain[20 : 20 + length], plain[20 + length :]
        if appid.decode() != self.appid:
            raise ValueError("reply encrypted for another appid")
        return text.decode()


@dataclass
class Delivery:
    status: int
    body: bytes
    reply: dict[str, object] | None = None  # the decoded passive reply, if any
    request_fields: dict[str, object] = field(default_factory=dict)


@dataclass
class WeChatServer:
    """One official account as WeChat's servers see it."""

    webhook_url: str
    token: str
    appid: str
    encoding_aes_key: str = ""
    account: str = "gh_fenxiao0001"
    http: requests.Session = field(default_factory=requests.Session)
    timeout: float = 5.0

    @property
    def safe_mode(self) -> bool:
        return bool(self.encoding_aes_key)

    # -- building pushes ------------------------------------------------
    def base(self, openid: str, msg_type: str, at: int | None = None) -> dict[str, object]:
        return {"ToUserName": self.account, "FromUserName": openid,
                "CreateTime": at or int(time.time()), "MsgType": msg_type}

    def text(self, openid: str, content: str, msg_id: int | None = None) -> dict[str, object]:
        return {**self.base(openid, "text"), "Content": content, "MsgId": msg_id or next(_msg_ids)}

    def event(self, openid: str, event: str, key: str | None = None, **extra: object) -> dict[str, object]:
        fields = {**self.base(openid, "event"), "Event": event}
        if key is not None:
            fields["EventKey"] = key
        fields.update(extra)
        return fields

    def subscribe(self, openid: str, scene: str | None = None) -> dict[str, object]:
        if scene is None:
            return self.event(openid, "subscribe", "")
        return self.event(openid, "subscribe", f"qrscene_{scene}", Ticket="gQ" + secrets.token_hex(20))

    def scan(self, openid: str, scene: str) -> dict[str, object]:
        return self.event(openid, "SCAN", scene, Ticket="gQ" + secrets.token_hex(20))

    def click(self, openid: str, key: str) -> dict[str, object]:
        return self.event(openid, "CLICK", key)

    # -- sending --------------------------------------------------------
    def signed_request(self, fields: dict[str, object], safe: bool | None = None,
                       timestamp: str | None = None, nonce: str | None = None,
                       compatible: bool = False) -> tuple[dict[str, str], bytes]:
        """The query and body of one push. Each push gets a fresh nonce, as
        WeChat's do: the webhook takes a signed query for one message only.
        ``compatible``: compatible mode, the plaintext fields beside <Encrypt>."""
        safe = self.safe_mode if safe is None else safe
        timestamp = timestamp or str(int(time.time()))
        nonce = nonce or str(secrets.randbelow(10**10))
        params = {"signature": signature(self.token, timestamp, nonce), "timestamp": timestamp,
                  "nonce": nonce, "openid": str(fields.get("FromUserName", ""))}
        xml = cdata_xml(fields)
        if not safe:
            return params, xml.encode()
        encrypted = AESBox(self.encoding_aes_key, self.appid).encrypt(xml)
        params.update(encrypt_type="aes", msg_signature=signature(self.token, timestamp, nonce, encrypted))
        outer = dict(fields) if compatible else {"ToUserName": fields.get("ToUserName", self.account)}
        return params, cdata_xml({**outer, "Encrypt": encrypted}).encode()

    def push(self, fields: dict[str, object], safe: bool | None = None, compatible: bool = False) -> Delivery:
        params, body = self.signed_request(fields, safe, compatible=compatible)
        return self.send(params, body, fields)

    def send(self, params: dict[str, str], body: bytes, fields: dict[str, object] | None = None) -> Delivery:
        """POST a prepared push: WeChat's retry sends the same query and body again."""
        res = self.http.post(self.webhook_url, params=params, data=body, timeout=self.timeout,
                             headers={"Content-Type": "text/xml"})
        return Delivery(res.status_code, res.content, self.read_reply(res.content, params), fields or {})

    def read_reply(self, body: bytes, params: dict[str, str]) -> dict[str, object] | None:
        if not body.strip() or body.strip() == b"success" or not body.lstrip().startswith(b"<"):
            return None  # nothing to say, or a refusal (a 4xx's reason, a 503's empty body)
        fields = read_xml(body)
        if "Encrypt" in fields:
            expected = signature(self.token, str(fields["TimeStamp"]), str(fields["Nonce"]), str(fields["Encrypt"]))
            if expected != fields.get("MsgSignature"):
                raise ValueError("reply MsgSignature does not match")
            fields = read_xml(AESBox(self.encoding_aes_key, self.appid).decrypt(str(fields["Encrypt"])))
        return fields
