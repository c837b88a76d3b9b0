"""Proving a request comes from WeChat, and reading its XML safely.

wechatpy compares signatures with ``!=`` and ignores the timestamp's age; we
compare digests in constant time and refuse stale timestamps first, then let
wechatpy's crypto decrypt. A signed query is good for one message only: in
plaintext mode the signature covers the query, not the body, so a query read
from a log would otherwise carry any body for the whole replay window.
"""
from __future__ import annotations

import binascii
import hashlib
import hmac
import secrets
import struct
import time

from xml.parsers import expat

from wechatpy import parse_message
from wechatpy.crypto import PrpCrypto, WeChatCrypto
from wechatpy.events import EVENT_TYPES
from wechatpy.exceptions import InvalidAppIdException
from wechatpy.messages import MESSAGE_TYPES, UnknownMessage


class _Prp(PrpCrypto):
    def get_random_string(self) -> str:
        # The 16 bytes before each reply's XML: wechatpy draws them from
        # ``random``; a cryptographic source costs no more.
        return secrets.token_hex(8)


class SafeModeCrypto(WeChatCrypto):
    """wechatpy's message crypto, with one AES cipher for the account's key
    made once: wechatpy builds it (and checks the key) for every message,
    in and out. The cipher keeps no state between messages; each use makes
    its own encryptor or decryptor, so threads share it."""

    def __init__(self, token: str, encoding_aes_key: str, app_id: str) -> None:
        super().__init__(token, encoding_aes_key, app_id)
        prp = _Prp(self.key)
        self._prp = lambda _key: prp

    def encrypt_message(self, msg, nonce, timestamp=None):
        return self._encrypt_message(msg, nonce, timestamp, self._prp)

    def decrypt_message(self, msg, signature, timestamp, nonce):
        return self._decrypt_message(msg, signature, timestamp, nonce, self._prp)

    def open(self, encrypted: str) -> str:
        """The plaintext of an <Encrypt> whose msg_signature the caller has
        checked (``check_signature``, in constant time): wechatpy's
        ``decrypt_message`` would compute it again."""
        return self._prp(None).decrypt(encrypted, self._id)


class Refused(Exception):
    """The request is not a genuine, well-formed WeChat push; nothing is done."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def sha1_signature(*parts: str) -> str:
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


def check_signature(token: str, signature: str, timestamp: str, nonce: str, *extra: str,
                    window: int, now: float | None = None) -> None:
    if not (signature and timestamp and nonce):
        raise Refused(403, "missing signature parameters")
    try:
        age = abs((now or time.time()) - int(timestamp))
    except (ValueError, OverflowError):  # OverflowError: too large to compare with a float
        raise Refused(403, "timestamp is not a number") from None
    if age > window:
        raise Refused(403, "timestamp outside the replay window")
    expected = sha1_signature(token, timestamp, nonce, *extra)
    # Bytes: compare_digest refuses str with non-ASCII characters (TypeError).
    if not hmac.compare_digest(expected.encode(), signature.lower().encode()):
        raise Refused(403, "bad signature")


QUERY_PREFIX = "wx:query:"


def query_key(signature: str, timestamp: str, nonce: str) -> str:
    """The identity of a signed query (hex case does not make a signature new)."""
    triple = f"{timestamp}\n{nonce}\n{signature.lower()}".encode("utf-8", "surrogatepass")
    return hashlib.sha256(triple).hexdigest()


# Fields WeChat always sends as plain text (other events nest, e.g. SendPicsInfo).
TEXT_FIELDS = frozenset({"ToUserName", "FromUserName", "CreateTime", "MsgType", "MsgId", "MsgID",
                         "Content", "Event", "EventKey", "Ticket", "Encrypt"})


class Fields(dict):
    """The top-level fields of a WeChat XML document, as text; ``flat`` when
    no element has children or attributes and none repeats."""
    __slots__ = ("flat",)


class _DTDRefused(Exception):
    pass


def _refuse_dtd(*_args) -> None:
    raise _DTDRefused()


class _FieldReader:
    """Reads the fields as expat meets them. Expat itself, not a tree: the
    hardened ElementTree of defusedxml runs its parser's callbacks in Python
    and builds a tree we never use, 4× the time, twice per push in safe mode."""
    __slots__ = ("fields", "depth", "name", "text", "nested", "before_child")

    def __init__(self) -> None:
        self.fields, self.depth, self.name, self.text = Fields(), 0, "", []
        self.nested = self.before_child = False
        self.fields.flat = True

    def start(self, tag: str, attributes: dict) -> None:
        if "}" in tag:  # a namespace, named as ElementTree names it (so <xml> in one is not ours)
            tag = "{" + tag
        self.depth += 1
        if self.depth == 2:
            self.name, self.text, self.before_child = tag, [], True
            self.nested = bool(attributes) or tag in self.fields
        elif self.depth == 3:
            self.nested, self.before_child = True, False
        elif self.depth == 1 and tag != "xml":
            raise Refused(400, "root element is not <xml>")

    def end(self, _tag: str) -> None:
        if self.depth == 2:
            name, nested = self.name, self.nested
            # wechatpy would hand our handlers a dict (nested) or a list (repeated)
            # where they expect text.
            if nested and name in TEXT_FIELDS:
                raise Refused(400, f"<{name}> is not a single text field")
            self.fields.flat = self.fields.flat and not nested
            self.fields[name] = "".join(self.text)
        self.depth -= 1

    def data(self, text: str) -> None:
        if self.depth == 2 and self.before_child:  # as ElementTree's text: up to the first child
            self.text.append(text)


def parse_xml_fields(body: bytes) -> Fields:
    """The top-level fields of a WeChat XML document. No DTD, so no entity
    is declared, expanded or fetched: a document with one is refused."""
    reader, parser = _FieldReader(), expat.ParserCreate(None, "}")
    parser.buffer_text = True
    parser.StartElementHandler, parser.EndElementHandler = reader.start, reader.end
    parser.CharacterDataHandler = reader.data
    parser.StartDoctypeDeclHandler = parser.EntityDeclHandler = _refuse_dtd
    parser.UnparsedEntityDeclHandler = parser.ExternalEntityRefHandler = _refuse_dtd
    try:
        parser.Parse(body, True)
    except (expat.ExpatError, _DTDRefused, ValueError, UnicodeError) as exc:
        reason = "DTDForbidden" if isinstance(exc, _DTDRefused) else type(exc).__name__
        raise Refused(400, f"unreadable XML: {reason}") from None
    return reader.fields


def message_from(fields: Fields, body: bytes):
    """wechatpy's message object for a push. A flat document (every message
    and event the account acts on) goes to wechatpy's classes as the dict its
    own parser (xmltodict) makes, text stripped and empty as None, without
    reading the XML a third time; anything else is left to ``parse_message``."""
    kind = fields["MsgType"].lower()
    if not fields.flat or kind.startswith("device_"):
        return parse_message(body)
    data = {name: value.strip() or None for name, value in fields.items()}
    if kind != "event":
        return MESSAGE_TYPES.get(kind, UnknownMessage)(data)
    event, key = (data.get("Event") or "").lower(), data.get("EventKey") or ""
    if event == "subscribe" and key.startswith(("scanbarcode|", "scanimage|")):
        return parse_message(body)
    if event == "subscribe" and key.startswith("qrscene_"):  # as parse_message names a follow through a code
        event = data["Event"] = "subscribe_scan"
        data["EventKey"] = key[len("qrscene_"):]
    return EVENT_TYPES.get(event, UnknownMessage)(data)


def decrypt(crypto: SafeModeCrypto, fields: dict[str, str], msg_signature: str, timestamp: str,
            nonce: str, token: str, window: int) -> bytes:
    encrypted = fields.get("Encrypt")
    if not encrypted:
        raise Refused(400, "safe mode request without <Encrypt>")
    check_signature(token, msg_signature, timestamp, nonce, encrypted, window=window)
    try:
        plain = crypto.open(encrypted)
    except InvalidAppIdException:
        raise Refused(403, "message encrypted for another appid") from None
    except (ValueError, binascii.Error, UnicodeError, IndexError, TypeError,
            struct.error) as exc:  # struct.error: plaintext shorter than its length prefix
        raise Refused(400, f"cannot decrypt: {type(exc).__name__}") from None
    return plain.encode() if isinstance(plain, str) else plain
