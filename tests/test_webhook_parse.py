"""The webhook builds wechatpy's message from the fields it has already read
(wxbot.security.message_from) instead of parsing the XML a third time: for
every kind of push it must be exactly what ``wechatpy.parse_message`` makes."""
from __future__ import annotations

import pytest
from wechatpy import parse_message

from wxbot.security import Refused, message_from, parse_xml_fields

HEAD = ("<ToUserName><![CDATA[gh_account]]></ToUserName><FromUserName><![CDATA[oUSER1234]]></FromUserName>"
        "<CreateTime>1764576000</CreateTime>")


def push(body: str) -> bytes:
    return f"<xml>{HEAD}{body}</xml>".encode()


PUSHES = {
    "text": "<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[商城]]></Content><MsgId>1234567890</MsgId>",
    "text with spaces and new lines": "<MsgType>text</MsgType><Content>\n  帮助 \n</Content><MsgId>1</MsgId>",
    "empty text": "<MsgType>text</MsgType><Content><![CDATA[]]></Content><MsgId>2</MsgId>",
    "image": "<MsgType>image</MsgType><PicUrl>http://mmbiz/x.jpg</PicUrl><MediaId>m1</MediaId><MsgId>3</MsgId>",
    "follow": "<MsgType>event</MsgType><Event>subscribe</Event><EventKey><![CDATA[]]></EventKey>",
    "follow through a code": "<MsgType>event</MsgType><Event>subscribe</Event>"
                             "<EventKey><![CDATA[qrscene_sc0001]]></EventKey><Ticket>T</Ticket>",
    "follow through a product code": "<MsgType>event</MsgType><Event>subscribe</Event>"
                                     "<EventKey>scanbarcode|EAN13|6901234567892</EventKey>",
    "scan": "<MsgType>event</MsgType><Event>SCAN</Event><EventKey>sc0001</EventKey><Ticket>T</Ticket>",
    "unfollow": "<MsgType>event</MsgType><Event>unsubscribe</Event><EventKey/>",
    "menu click": "<MsgType>event</MsgType><Event>CLICK</Event><EventKey>MY_QRCODE</EventKey>",
    "menu link": "<MsgType>event</MsgType><Event>VIEW</Event><EventKey>https://shop.example/h5/</EventKey>",
    "location": "<MsgType>event</MsgType><Event>LOCATION</Event><Latitude>30.27</Latitude>"
                "<Longitude>120.15</Longitude><Precision>65.0</Precision>",
    "template sent": "<MsgType>event</MsgType><Event>TEMPLATESENDJOBFINISH</Event><MsgID>200163836</MsgID>"
                     "<Status><![CDATA[success]]></Status>",
    "an event no one knows": "<MsgType>event</MsgType><Event>something_new</Event>",
    "a type no one knows": "<MsgType>hologram</MsgType><MsgId>4</MsgId>",
    "nested (pictures sent from the menu)": "<MsgType>event</MsgType><Event>pic_sysphoto</Event>"
                                            "<EventKey>PHOTO</EventKey><SendPicsInfo><Count>1</Count><PicList>"
                                            "<item><PicMd5Sum>abc</PicMd5Sum></item></PicList></SendPicsInfo>",
    "device event": "<MsgType>device_event</MsgType><Event>bind</Event><DeviceType>t</DeviceType>",
}


@pytest.mark.parametrize("name", PUSHES)
def test_the_message_is_what_wechatpy_would_parse(name):
    body = push(PUSHES[name])
    ours, theirs = message_from(parse_xml_fields(body), body), parse_message(body)
    assert type(ours) is type(theirs)
    assert dict(ours._data) == dict(theirs._data)
    assert (ours.type, ours.source, ours.target, ours.time) == (theirs.type, theirs.source, theirs.target,
                                                               theirs.time)
    if ours.type == "event":
        assert ours.event == theirs.event


def test_a_text_field_with_attributes_is_refused():
    body = push('<MsgType>text</MsgType><Content lang="zh">商城</Content><MsgId>5</MsgId>')
    with pytest.raises(Refused) as refused:
        parse_xml_fields(body)
    assert refused.value.status == 400


def _crypto_pair():
    from wechatpy.crypto import WeChatCrypto

    from wxbot.security import SafeModeCrypto

    token, key, appid = "tok3n", "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", "wx0123456789abcdef"
    return SafeModeCrypto(token, key, appid), WeChatCrypto(token, key, appid)


def _open(stock, encrypted: str, nonce: str) -> str:
    fields = parse_xml_fields(encrypted.encode())
    return stock.decrypt_message(encrypted, fields["MsgSignature"], fields["TimeStamp"], nonce)


def test_replies_encrypted_with_one_cipher_open_with_wechatpys_and_never_repeat():
    ours, stock = _crypto_pair()
    reply = "<xml><Content><![CDATA[欢迎关注]]></Content></xml>"
    first, second = ours.encrypt_message(reply, "n1", "1700000000"), ours.encrypt_message(reply, "n1", "1700000000")
    assert _open(stock, first, "n1") == reply == _open(stock, second, "n1")
    assert parse_xml_fields(first.encode())["Encrypt"] != parse_xml_fields(second.encode())["Encrypt"]
    # and what wechatpy encrypts, ours decrypts
    pushed = stock.encrypt_message(reply, "n2", "1700000001")
    fields = parse_xml_fields(pushed.encode())
    assert ours.decrypt_message(pushed, fields["MsgSignature"], "1700000001", "n2") == reply


def test_one_cipher_serves_threads_at_once():
    from concurrent.futures import ThreadPoolExecutor

    ours, stock = _crypto_pair()

    def round_trip(i: int) -> bool:
        text = f"<xml><Content><![CDATA[消息 {i} {'x' * (i % 50)}]]></Content></xml>"
        sealed = ours.encrypt_message(text, f"n{i}", "1700000000")
        fields = parse_xml_fields(sealed.encode())
        return (_open(stock, sealed, f"n{i}") == text
                and ours.decrypt_message(sealed, fields["MsgSignature"], "1700000000", f"n{i}") == text)

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(round_trip, range(400)))
