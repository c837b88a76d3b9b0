"""/wx, WeChat's webhook: verification, plaintext and safe mode, retries,
unknown types, and every kind of request that must change nothing.

Genuine pushes travel over real HTTP through ``WeChatServer`` (an
implementation of WeChat's signing and AES independent of wechatpy); raw and
malformed requests go through the Flask test client."""
from __future__ import annotations

import base64
import os
import random
import re
import secrets
import struct
import threading
import time
from contextlib import contextmanager
from dataclasses import replace

import pytest
import requests
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from sqlalchemy import func, select

from app.extensions import db
from models import User
from sandbox.push import AESBox, WeChatServer, cdata_xml, signature
from conftest import free_port, second_product

ECHO = "echo-5f3a9c"


# -- helpers -------------------------------------------------------------------
def users() -> list[User]:
    db.session.rollback()  # see what the server committed, not a stale snapshot
    return db.session.scalars(select(User).order_by(User.id)).all()


def user_count() -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(User))


def the_user(openid: str) -> User:
    db.session.rollback()
    return db.session.scalars(select(User).where(User.openid == openid)).one()


def new_openid() -> str:
    return "o" + secrets.token_urlsafe(20)[:27]


def post_raw(client, server: WeChatServer, body: bytes, **params):
    """POST ``body`` to /wx with a correct URL signature (unless overridden)."""
    timestamp = params.pop("timestamp", str(int(time.time())))
    nonce = params.pop("nonce", str(secrets.randbelow(10**9)))
    query = {"signature": signature(server.token, timestamp, nonce), "timestamp": timestamp,
             "nonce": nonce, **params}
    return client.post("/wx", query_string=query, data=body, content_type="text/xml")


def post_encrypted(client, server: WeChatServer, encrypted: str, msg_signature: str | None = None,
                   **params):
    """A safe-mode POST whose <Encrypt> is ``encrypted``, signed as WeChat signs it."""
    timestamp, nonce = str(int(time.time())), str(secrets.randbelow(10**9))
    msg_sig = msg_signature or signature(server.token, timestamp, nonce, encrypted)
    body = cdata_xml({"ToUserName": server.account, "Encrypt": encrypted}).encode()
    return post_raw(client, server, body, timestamp=timestamp, nonce=nonce, encrypt_type="aes",
                    msg_signature=msg_sig, **params)


def aes_encrypt_bytes(server: WeChatServer, raw: bytes, appid: str | None = None) -> str:
    """WeChat's framing around arbitrary bytes (AESBox.encrypt takes text)."""
    box = AESBox(server.encoding_aes_key, appid or server.appid)
    plain = os.urandom(16) + struct.pack(">I", len(raw)) + raw + box.appid.encode()
    pad = 32 - len(plain) % 32
    plain += bytes([pad]) * pad
    enc = Cipher(algorithms.AES(box.key), modes.CBC(box.key[:16])).encryptor()
    return base64.b64encode(enc.update(plain) + enc.finalize()).decode()


# -- GET: proving we own the token ----------------------------------------------
def test_verification_echoes_echostr_when_signed_with_our_token(client, wechat):
    ts, nonce = str(int(time.time())), "81234"
    res = client.get("/wx", query_string={"signature": signature(wechat.token, ts, nonce),
                                          "timestamp": ts, "nonce": nonce, "echostr": ECHO})
    assert res.status_code == 200
    assert res.get_data(as_text=True) == ECHO


def test_verification_over_real_http(wechat, settings):
    ts, nonce = str(int(time.time())), "4242"
    res = requests.get(wechat.webhook_url, timeout=5, params={
        "signature": signature(wechat.token, ts, nonce), "timestamp": ts, "nonce": nonce, "echostr": ECHO})
    assert (res.status_code, res.text) == (200, ECHO)


def _verify_query(token: str, **change) -> dict:
    ts, nonce = str(int(time.time())), "99887"
    query = {"signature": signature(token, ts, nonce), "timestamp": ts, "nonce": nonce, "echostr": ECHO}
    query.update(change)
    return {k: v for k, v in query.items() if v is not None}


@pytest.mark.parametrize("case", [
    "wrong token", "tampered nonce", "no signature", "no timestamp", "no nonce",
    "stale timestamp", "future timestamp", "non-numeric timestamp", "non-ascii signature",
])
def test_verification_refused(client, wechat, settings, case):
    window = settings["wechat"]["replay_window_seconds"]
    token = wechat.token
    if case == "wrong token":
        query = _verify_query("someoneelsestoken")
    elif case == "tampered nonce":
        query = {**_verify_query(token), "nonce": "11111"}
    elif case.startswith("no "):
        query = _verify_query(token, **{case[3:]: None})
    elif case in ("stale timestamp", "future timestamp"):
        # Correctly signed, but outside the replay window: a recorded request replayed.
        ts = str(int(time.time()) + (window + 120) * (-1 if case.startswith("stale") else 1))
        query = _verify_query(token, timestamp=ts, signature=signature(token, ts, "99887"))
    elif case == "non-numeric timestamp":
        query = _verify_query(token, timestamp="yesterday", signature=signature(token, "yesterday", "99887"))
    else:
        query = _verify_query(token, signature="ü" * 40)
    res = client.get("/wx", query_string=query)
    assert res.status_code == 403
    assert ECHO not in res.get_data(as_text=True)


def test_timestamp_just_inside_the_window_is_accepted(client, wechat, settings):
    ts = str(int(time.time()) - settings["wechat"]["replay_window_seconds"] + 30)
    res = client.get("/wx", query_string=_verify_query(wechat.token, timestamp=ts,
                                                       signature=signature(wechat.token, ts, "99887")))
    assert (res.status_code, res.get_data(as_text=True)) == (200, ECHO)


# -- POST: plaintext and safe mode ----------------------------------------------
def test_plaintext_message_gets_a_plaintext_reply(app, wechat_plain):
    openid = new_openid()
    d = wechat_plain.push(wechat_plain.text(openid, "帮助"))
    assert d.status == 200, d.body
    assert b"<Encrypt>" not in d.body
    assert d.reply["MsgType"] == "text"
    assert d.reply["ToUserName"] == openid and d.reply["FromUserName"] == wechat_plain.account
    assert "申请分销" in d.reply["Content"]
    assert [u.openid for u in users()] == [openid]


def test_encrypted_message_gets_an_encrypted_reply(app, wechat):
    openid = new_openid()
    d = wechat.push(wechat.text(openid, "帮助"))
    assert d.status == 200, d.body
    # Nothing readable on the wire: only Encrypt + MsgSignature (checked by read_reply).
    assert b"<Encrypt>" in d.body and b"<MsgSignature>" in d.body
    assert "申请分销".encode() not in d.body and openid.encode() not in d.body
    assert d.reply["ToUserName"] == openid
    assert "申请分销" in d.reply["Content"]
    assert [u.openid for u in users()] == [openid]


def test_message_encrypted_for_another_appid_is_refused(app, wechat, client):
    openid = new_openid()
    foreign = aes_encrypt_bytes(wechat, cdata_xml(wechat.text(openid, "帮助")).encode(), appid="wxsomeoneelse000")
    res = post_encrypted(client, wechat, foreign)
    assert 400 <= res.status_code < 500
    assert user_count() == 0
    # The same message for our appid goes through: the refusal was the appid.
    ours = aes_encrypt_bytes(wechat, cdata_xml(wechat.text(openid, "帮助")).encode())
    assert post_encrypted(client, wechat, ours).status_code == 200
    assert user_count() == 1


def test_other_account_over_http_is_refused(app, wechat, settings):
    impostor = WeChatServer(wechat.webhook_url, wechat.token, "wxsomeoneelse000", wechat.encoding_aes_key)
    params, body = impostor.signed_request(impostor.subscribe(new_openid()))
    res = requests.post(wechat.webhook_url, params=params, data=body, timeout=5)
    assert 400 <= res.status_code < 500
    assert "欢迎".encode() not in res.content
    assert user_count() == 0


# -- retries ---------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["wechat", "wechat_plain"], ids=["aes", "plain"])
def test_text_retried_with_same_msgid_is_handled_once(app, request, mode):
    wechat = request.getfixturevalue(mode)
    openid = new_openid()
    msg = wechat.text(openid, "排行榜")
    first = wechat.push(msg)
    assert first.status == 200
    seen = the_user(openid).last_interaction_at
    again = wechat.push(msg)  # WeChat's retry: same MsgId, same everything
    assert again.status == 200
    assert again.reply["Content"] == first.reply["Content"]
    assert "排行榜" in again.reply["Content"]
    assert the_user(openid).last_interaction_at == seen, "the retry did the work a second time"
    # A new message (new MsgId) with the same words is new work.
    wechat.push(wechat.text(openid, "排行榜"))
    assert the_user(openid).last_interaction_at > seen


def test_subscribe_retried_is_done_once(app, wechat, jobs, settings):
    openid = new_openid()
    follow = wechat.subscribe(openid)
    first = wechat.push(follow)
    assert "欢迎关注" in first.reply["Content"]
    queued = jobs.count()
    wechat.push(wechat.event(openid, "unsubscribe"))
    retry = wechat.push(follow)  # WeChat retries the follow it sent earlier
    assert retry.status == 200
    assert retry.reply["Content"] == first.reply["Content"]
    assert user_count() == 1
    # Had the retry been handled, the person would be marked as following again.
    assert the_user(openid).subscription == "unsubscribed"
    assert jobs.count() == queued, "a retried follow queued another profile fetch"
    if not settings.uses_redis_fallback:
        assert queued == 1


def test_different_events_in_the_same_second_are_both_handled(app, wechat):
    openid = new_openid()
    follow = wechat.subscribe(openid)
    wechat.push(follow)
    leave = {**wechat.event(openid, "unsubscribe"), "CreateTime": follow["CreateTime"]}
    assert wechat.push(leave).body == b"success"
    assert the_user(openid).subscription == "unsubscribed"


# -- nothing to say: the literal body "success" ---------------------------------
@pytest.mark.parametrize("kind", ["location", "voice", "image", "link", "unknown-type",
                                  "LOCATION event", "unknown event", "VIEW", "TEMPLATESENDJOBFINISH"])
def test_nothing_to_say_is_the_literal_success(app, wechat, kind):
    openid = new_openid()
    fields = {
        "location": {**wechat.base(openid, "location"), "Location_X": "23.13", "Location_Y": "113.26",
                     "Scale": 15, "Label": "广州", "MsgId": 1234567890123456},
        "voice": {**wechat.base(openid, "voice"), "MediaId": "m" * 20, "Format": "amr", "MsgId": 2234567890123456},
        "image": {**wechat.base(openid, "image"), "PicUrl": "http://x/y.jpg", "MediaId": "m1", "MsgId": 3234567890123},
        "link": {**wechat.base(openid, "link"), "Title": "t", "Description": "d", "Url": "http://x", "MsgId": 4234},
        "unknown-type": {**wechat.base(openid, "hologram"), "MsgId": 5234567890},
        "LOCATION event": wechat.event(openid, "LOCATION", Latitude="23.1", Longitude="113.2", Precision="30"),
        "unknown event": wechat.event(openid, "some_future_event", "k"),
        "VIEW": wechat.event(openid, "VIEW", "http://127.0.0.1/h5/shop"),
        "TEMPLATESENDJOBFINISH": wechat.event(openid, "TEMPLATESENDJOBFINISH", MsgID=200163836, Status="success"),
    }[kind]
    d = wechat.push(fields)
    assert d.status == 200
    assert d.body == b"success"  # the literal body, not a text message saying it


def test_a_location_message_records_its_sender_but_a_delivery_report_does_not(app, wechat):
    person, other = new_openid(), new_openid()
    wechat.push({**wechat.base(person, "location"), "Location_X": "23.13", "Location_Y": "113.26",
                 "Scale": 15, "Label": "广州", "MsgId": 1234567})
    wechat.push(wechat.event(other, "TEMPLATESENDJOBFINISH", MsgID=200163836, Status="failed:user block"))
    wechat.push(wechat.event(other, "some_future_event", "k"))
    assert [u.openid for u in users()] == [person]


# -- requests that must change nothing ------------------------------------------
BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY a "aaaaaaaaaa">'
    b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">'
    b'<!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;"><!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;">]>'
    b"<xml><ToUserName>gh</ToUserName><FromUserName>oLaughs0000000000000000000</FromUserName>"
    b"<CreateTime>1</CreateTime><MsgType>text</MsgType><Content>&e;</Content><MsgId>1</MsgId></xml>"
)
XXE = (
    b'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY who SYSTEM "file:///etc/hostname">]>'
    b"<xml><ToUserName>gh</ToUserName><FromUserName>oXxe&who;</FromUserName>"
    b"<CreateTime>1</CreateTime><MsgType>text</MsgType><Content>&who;</Content><MsgId>2</MsgId></xml>"
)
DTD_ONLY = (
    b'<!DOCTYPE xml SYSTEM "http://127.0.0.1:9/evil.dtd"><xml><ToUserName>gh</ToUserName>'
    b"<FromUserName>oDtd000000000000000000000000</FromUserName><CreateTime>1</CreateTime>"
    b"<MsgType>text</MsgType><Content>hi</Content><MsgId>3</MsgId></xml>"
)


def _good_xml(server: WeChatServer, openid: str = "oGood000000000000000000000000") -> bytes:
    return cdata_xml(server.text(openid, "帮助")).encode()


# Plaintext bodies are refused outright while a key is configured: these cases
# run with the account in plaintext mode, so that each meets the check it names.
PLAINTEXT_CASES = {"wrong signature", "no signature", "stale timestamp", "broken xml", "empty body", "blank body",
                   "oversized body", "billion laughs", "external entity", "external dtd", "root is not xml",
                   "missing MsgType", "missing FromUserName", "encrypt without encrypt_type"}


@pytest.mark.parametrize("case", [
    "wrong signature", "no signature", "stale timestamp", "broken xml", "empty body", "blank body",
    "oversized body", "billion laughs", "external entity", "external dtd", "root is not xml",
    "missing MsgType", "missing FromUserName", "encrypt without encrypt_type",
    "safe mode wrong msg_signature", "safe mode without msg_signature", "safe mode without Encrypt",
    "garbage base64", "truncated ciphertext", "random ciphertext", "empty ciphertext",
])
def test_bad_requests_are_refused_and_change_nothing(app, client, wechat, settings, case, request):
    if case in PLAINTEXT_CASES:
        request.getfixturevalue("wechat_plain")
    limit = settings["wechat"]["max_body_bytes"]
    body = _good_xml(wechat)
    if case == "wrong signature":
        res = client.post("/wx", query_string={"signature": "0" * 40, "timestamp": str(int(time.time())),
                                               "nonce": "1"}, data=body)
    elif case == "no signature":
        res = client.post("/wx", data=body)
    elif case == "stale timestamp":
        res = post_raw(client, wechat, body, timestamp=str(int(time.time()) - 3600))
    elif case == "broken xml":
        res = post_raw(client, wechat, body[:-9])
    elif case == "empty body":
        res = post_raw(client, wechat, b"")
    elif case == "blank body":
        res = post_raw(client, wechat, b"  \r\n\t ")
    elif case == "oversized body":
        padding = "好" * (limit // 3 + 10)  # valid XML, just too large
        res = post_raw(client, wechat, cdata_xml(wechat.text("oBig00000000000000000000000", padding)).encode())
    elif case == "billion laughs":
        res = post_raw(client, wechat, BILLION_LAUGHS)
    elif case == "external entity":
        res = post_raw(client, wechat, XXE)
    elif case == "external dtd":
        res = post_raw(client, wechat, DTD_ONLY)
    elif case == "root is not xml":
        res = post_raw(client, wechat, body.replace(b"<xml>", b"<html>").replace(b"</xml>", b"</html>"))
    elif case == "missing MsgType":
        res = post_raw(client, wechat, body.replace(b"<MsgType><![CDATA[text]]></MsgType>", b""))
    elif case == "missing FromUserName":
        fields = wechat.text("x", "帮助")
        del fields["FromUserName"]
        res = post_raw(client, wechat, cdata_xml(fields).encode())
    elif case == "encrypt without encrypt_type":
        encrypted = AESBox(wechat.encoding_aes_key, wechat.appid).encrypt(body.decode())
        res = post_raw(client, wechat, cdata_xml({"ToUserName": "gh", "Encrypt": encrypted}).encode())
    elif case == "safe mode wrong msg_signature":
        encrypted = AESBox(wechat.encoding_aes_key, wechat.appid).encrypt(body.decode())
        res = post_encrypted(client, wechat, encrypted, msg_signature="1" * 40)
    elif case == "safe mode without msg_signature":
        encrypted = AESBox(wechat.encoding_aes_key, wechat.appid).encrypt(body.decode())
        res = post_raw(client, wechat, cdata_xml({"ToUserName": "gh", "Encrypt": encrypted}).encode(),
                       encrypt_type="aes")
    elif case == "safe mode without Encrypt":
        res = post_raw(client, wechat, body, encrypt_type="aes", msg_signature="1" * 40)
    elif case == "garbage base64":
        res = post_encrypted(client, wechat, "这不是base64!!!***")
    elif case == "truncated ciphertext":
        encrypted = AESBox(wechat.encoding_aes_key, wechat.appid).encrypt(body.decode())
        res = post_encrypted(client, wechat, encrypted[:-10])
    elif case == "random ciphertext":
        res = post_encrypted(client, wechat, base64.b64encode(os.urandom(64)).decode())
    else:
        res = post_encrypted(client, wechat, "====")
    assert 400 <= res.status_code < 500, (res.status_code, res.get_data())
    assert user_count() == 0
    assert b"hostname" not in res.get_data() and b"aaaaaaaaaa" not in res.get_data()


def test_oversized_body_without_content_length_is_refused(app, wechat, settings):
    """A chunked upload announces no length; the limit must still hold."""
    limit = settings["wechat"]["max_body_bytes"]
    params, _ = wechat.signed_request(wechat.text("oChunk000000000000000000000", "x"), safe=False)
    body = cdata_xml(wechat.text("oChunk000000000000000000000", "x" * (limit + 100))).encode()
    chunks = (body[i:i + 4096] for i in range(0, len(body), 4096))
    res = requests.post(wechat.webhook_url, params=params, data=chunks, timeout=5)
    assert 400 <= res.status_code < 500
    assert user_count() == 0


def test_a_body_just_under_the_limit_is_accepted(app, client, wechat_plain, settings):
    limit = settings["wechat"]["max_body_bytes"]
    openid = new_openid()
    fields = wechat_plain.text(openid, "")
    room = limit - len(cdata_xml(fields).encode())
    fields["Content"] = "x" * room
    body = cdata_xml(fields).encode()
    assert len(body) == limit
    res = post_raw(client, wechat_plain, body)
    assert res.status_code == 200
    assert "帮助" in res.get_data(as_text=True)  # "didn't understand; send 帮助"
    assert user_count() == 1


def test_properly_signed_random_ciphertexts_never_break_the_server(app, client, wechat):
    """Whoever holds the token can still send junk; it must be a 4xx, never a 500."""
    rng = random.Random(20240611)
    statuses = set()
    for size in [16, 32, 48, 64, 96, 128, 256] * 6:
        res = post_encrypted(client, wechat, base64.b64encode(rng.randbytes(size)).decode())
        statuses.add(res.status_code)
    assert statuses and all(400 <= s < 500 for s in statuses), statuses
    assert user_count() == 0


# -- fuzz: malformed input never yields a 5xx -----------------------------------
def _fuzz_bodies(server: WeChatServer) -> list[bytes]:
    rng = random.Random(1337)
    good = cdata_xml(server.text("oFuzz0000000000000000000000", "你好")).encode()
    # A fresh sender and MsgId for every body built to reach a handler:
    # otherwise it would be answered as a retry of the one before.
    fresh = (f"oFuzz{n:023d}" for n in range(1, 10**6))

    def fresh_text() -> bytes:
        return cdata_xml(server.text(next(fresh), "你好")).encode()

    event = cdata_xml(server.subscribe("oFuzz1000000000000000000000", "abc")).encode()
    bodies: list[bytes] = [rng.randbytes(rng.randint(1, 400)) for _ in range(25)]
    bodies += [good[:n] for n in range(1, len(good), 7)]  # truncated XML
    bodies += [event[:n] for n in range(1, len(event), 11)]
    bodies += [
        "<xml><FromUserName>o非UTF8</FromUserName><MsgType>text</MsgType><Content>你好</Content></xml>".encode("gbk"),
        b'<?xml version="1.0" encoding="GBK"?>' + "<xml><FromUserName>oGbk</FromUserName>"
        "<MsgType>text</MsgType><Content>你好</Content></xml>".encode("gbk"),
        b'<?xml version="1.0" encoding="ISO-8859-1"?><xml><FromUserName>oLatin\xe9</FromUserName>'
        b"<MsgType>text</MsgType><Content>caf\xe9</Content><MsgId>7</MsgId></xml>",
        "<xml><FromUserName>oUtf16</FromUserName><MsgType>text</MsgType></xml>".encode("utf-16"),
        b"\xef\xbb\xbf" + fresh_text(),  # BOM
        b"<xml/>", b"<xml></xml>", b"<xml><xml></xml></xml>", b"<a><b></a>", b"<<<>>>", b"\x00" * 64,
        b"<xml><FromUserName><x>nested</x></FromUserName><MsgType>text</MsgType></xml>",
    ]
    # Elements where WeChat sends text, holding elements (plus text, to get past "missing").
    for tag in ("FromUserName", "Content", "MsgType", "MsgId", "CreateTime", "ToUserName"):
        nested = f"<{tag}>o1<x>nested</x><y/></{tag}>".encode()
        bodies.append(re.sub(rf"<{tag}>.*?</{tag}>".encode(), nested, fresh_text(), count=1))
        click = cdata_xml(server.click(f"oNest{tag:0>23}", "SHOP")).encode()
        bodies.append(re.sub(rf"<{tag}>.*?</{tag}>".encode(), nested, click, count=1))
    for tag in ("FromUserName", "Content", "MsgType", "MsgId"):  # a field given twice
        bodies.append(re.sub(rf"(<{tag}>.*?</{tag}>)".encode(), rb"\1\1", fresh_text(), count=1))
    for tag in ("Event", "EventKey"):
        click = cdata_xml(server.click(f"oNest{tag:0>23}", "SHOP")).encode()
        bodies.append(re.sub(rf"<{tag}>.*?</{tag}>".encode(), f"<{tag}>CLICK<x>1</x></{tag}>".encode(), click))
    templates = [
        lambda o: server.text(o, "帮助"),
        lambda o: server.subscribe(o, "scene"),
        lambda o: server.scan(o, "scene"),
        lambda o: server.click(o, "SHOP"),
        lambda o: server.event(o, "TEMPLATESENDJOBFINISH", MsgID=1, Status="success"),
        lambda o: server.event(o, "VIEW", "http://x"),
    ]
    for make in templates:
        fields = make(next(fresh))
        for key in list(fields):  # each field missing in turn
            bodies.append(cdata_xml({k: v for k, v in make(next(fresh)).items() if k != key}).encode())
        for key, value in [("CreateTime", "9" * 5000), ("CreateTime", "-1"), ("CreateTime", "1e309"),
                           ("CreateTime", "abc"), ("MsgId", "not-a-number"), ("MsgId", "9" * 400),
                           ("MsgID", "xyz"), ("MsgID", ""), ("Event", ""), ("Event", "subscribe"),
                           ("EventKey", "qrscene_"), ("EventKey", "x" * 5000), ("MsgType", "event"),
                           ("MsgType", ""), ("MsgType", "device_event"), ("Content", ""),
                           ("FromUserName", ""), ("FromUserName", "o" * 5000), ("FromUserName", "о非ascii"),
                           ("FromUserName", "o\x07bell"), ("ToUserName", ""), ("Ticket", "")]:
            bodies.append(cdata_xml({**make(next(fresh)), key: value}).encode())
    return bodies


def test_fuzzed_bodies_never_cause_a_server_error(app, client, wechat_plain):
    wechat = wechat_plain
    bad = []
    for body in _fuzz_bodies(wechat):
        res = post_raw(client, wechat, body)
        if res.status_code >= 500:
            bad.append((res.status_code, body[:120]))
    assert not bad, bad
    recorded = [u.openid for u in users()]
    assert recorded, "no fuzzed variant reached a handler: the fuzz tests nothing"
    assert all(o.isascii() and o.isprintable() and 0 < len(o) <= 64 for o in recorded), recorded


def test_fuzzed_encrypted_bodies_never_cause_a_server_error(app, client, wechat):
    bad = []
    for body in _fuzz_bodies(wechat):
        res = post_encrypted(client, wechat, aes_encrypt_bytes(wechat, body))
        if res.status_code >= 500:
            bad.append((res.status_code, body[:120]))
    assert not bad, bad


@pytest.mark.parametrize("query", [
    {"signature": "é" * 40, "timestamp": "NOW", "nonce": "1"},
    {"signature": "a" * 40, "timestamp": "9" * 5000, "nonce": "1"},
    {"signature": "a" * 40, "timestamp": "1" + "0" * 400, "nonce": "1"},
    {"signature": "a" * 40, "timestamp": "-" + "9" * 400, "nonce": "1"},
    {"signature": "a" * 40, "timestamp": "NaN", "nonce": "1"},
    {"signature": "a" * 40, "timestamp": "١٧٠٠٠٠٠٠٠٠", "nonce": "1"},
    {"signature": "", "timestamp": "", "nonce": ""},
    {"signature": "a" * 5000, "timestamp": "NOW", "nonce": "n" * 5000},
    {"signature": "SIGN", "timestamp": "NOW", "nonce": "1", "encrypt_type": "aes", "msg_signature": "ü"},
    {"signature": "SIGN", "timestamp": "NOW", "nonce": "1", "encrypt_type": "AES"},
    {"signature": "SIGN", "timestamp": "NOW", "nonce": "1", "encrypt_type": "raw"},
])
def test_fuzzed_query_strings_never_cause_a_server_error(app, client, wechat, query):
    query = dict(query)
    if query.get("timestamp") == "NOW":
        query["timestamp"] = str(int(time.time()))
    if query.get("signature") == "SIGN":
        query["signature"] = signature(wechat.token, query["timestamp"], query["nonce"])
    signed = query["signature"] == signature(wechat.token, query["timestamp"], query["nonce"])
    encrypted = AESBox(wechat.encoding_aes_key, wechat.appid).encrypt(_good_xml(wechat).decode())
    plain_body = _good_xml(wechat)
    res = client.post("/wx", query_string=query, data=plain_body)
    # With a key configured no plaintext push is accepted, whatever encrypt_type says.
    assert 400 <= res.status_code < 500, (res.status_code, res.get_data())
    res = client.post("/wx", query_string=query, data=cdata_xml({"ToUserName": "gh", "Encrypt": encrypted}).encode())
    assert 400 <= res.status_code < 500, (res.status_code, res.get_data())
    res = client.get("/wx", query_string={**query, "echostr": ECHO})
    assert res.status_code == (200 if signed else 403)


def test_an_invalid_openid_records_nobody(app, client, wechat_plain):
    for openid in ("o" * 65, "о非ascii", "o\x07bell", " "):
        res = post_raw(client, wechat_plain, cdata_xml(wechat_plain.text(openid, "帮助")).encode())
        assert res.status_code < 500
    assert user_count() == 0


# -- the request path makes no call to WeChat -----------------------------------
@contextmanager
def product_without_wechat_api(settings):
    """A second instance of the product on the same database and Redis whose
    WeChat API address points at a port where nothing listens."""
    dead_port = free_port()  # closed again once found
    with second_product(settings, wechat={"api_base": f"http://127.0.0.1:{dead_port}/cgi"}) as other:
        yield other


def test_reply_does_not_wait_for_the_wechat_api(app, wechat, jobs, settings):
    """The follow is answered and recorded even though every call to WeChat's
    API would fail: fetching the profile is background work, after commit."""
    openid = new_openid()
    with product_without_wechat_api(settings) as other:
        params, body = wechat.signed_request(wechat.subscribe(openid))
        res = other.test_client().post("/wx", query_string=params, data=body)
        assert res.status_code == 200
        reply = wechat.read_reply(res.get_data(), params)
        assert "欢迎关注" in reply["Content"]
    user = the_user(openid)
    assert user.is_subscribed
    assert user.profile_checked_at is None  # not fetched while answering
    if not settings.uses_redis_fallback:
        # Queued, not run: a worker (with WeChat reachable again) does it later.
        assert jobs.count() == 1
        jobs.run()
        assert the_user(openid).profile_checked_at is not None


def test_profile_job_runs_after_the_reply_was_committed(app, wechat, jobs, settings, sandbox_user):
    person = sandbox_user("小李")
    d = wechat.push(wechat.subscribe(person.openid))
    assert d.status == 200
    assert the_user(person.openid).is_subscribed  # committed before any job ran
    if not settings.uses_redis_fallback:
        assert the_user(person.openid).profile_checked_at is None
        assert jobs.count() == 1
    jobs.run()
    assert the_user(person.openid).profile_checked_at is not None
    assert jobs.count() == 0


def test_retries_arriving_while_the_first_attempt_runs_are_answered(app, wechat):
    """WeChat's retry can arrive while the first attempt is still running:
    each copy is answered with the reply or, while another copy works on it,
    with a 503 that makes WeChat retry (never "success" for work not done);
    one person is recorded, and a later retry gets the reply."""
    openid = new_openid()
    msg = wechat.text(openid, "商城")
    barrier = threading.Barrier(4)
    results = []

    def push():
        server = replace(wechat, http=requests.Session())
        barrier.wait()
        try:
            results.append(server.push(msg))
        finally:
            server.http.close()

    threads = [threading.Thread(target=push) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(results) == 4 and {r.status for r in results} <= {200, 503}, [r.status for r in results]
    assert all(r.body == b"" for r in results if r.status == 503)
    answered = [r.reply["Content"] for r in results if r.status == 200]
    assert answered and all("商城" in c for c in answered)
    assert "商城" in wechat.push(msg).reply["Content"]  # WeChat's next retry
    assert user_count() == 1
