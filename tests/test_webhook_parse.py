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


# -- the field reader reads what a hardened ElementTree reads -------------------------------

def _tree_fields(body: bytes):
    """The reader it replaced: defusedxml's ElementTree. (fields, flat), or the
    kind of refusal."""
    import defusedxml.ElementTree as SafeET
    from defusedxml import DefusedXmlException
    from xml.etree.ElementTree import ParseError

    from wxbot.security import TEXT_FIELDS

    try:
        root = SafeET.fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except (ParseError, DefusedXmlException, ValueError, UnicodeError):
        return "unreadable"
    if root.tag != "xml":
        return "root"
    fields, flat = {}, True
    for child in root:
        nested = bool(len(child) or child.attrib) or child.tag in fields
        if nested and child.tag in TEXT_FIELDS:
            return "nested text field"
        flat = flat and not nested
        fields[child.tag] = child.text or ""
    return fields, flat


def _read_fields(body: bytes):
    try:
        fields = parse_xml_fields(body)
    except Refused as refused:
        assert refused.status == 400
        return ("unreadable" if refused.reason.startswith("unreadable XML") else
                "root" if "root element" in refused.reason else "nested text field")
    return dict(fields), fields.flat


ODD_DOCUMENTS = [
    b"<xml><A>1</A><A>2</A></xml>",  # repeated
    b"<xml><A>before<B>in</B>after</A><C/></xml>",  # nested: its text is what comes before the child
    b'<xml><A k="v">x</A></xml>',
    b"<xml><Content>a<!-- note -->b<?pi data?>c</Content></xml>",
    b"<xml><Content>&lt;&#20013;&#x6587;&amp;</Content><MsgType> text </MsgType></xml>",
    b"<xml>\n  <Content>\n  </Content>\n</xml>",
    b'<?xml version="1.0" encoding="UTF-8"?><xml><A>\xe4\xb8\xad</A></xml>',
    b'<?xml version="1.0" encoding="ISO-8859-1"?><xml><A>\xe9</A></xml>',
    b'<?xml version="1.0" encoding="GBK"?><xml><A>\xd6\xd0</A></xml>',
    b'<?xml version="1.0" encoding="UTF-16"?><xml/>',
    "<xml><A>中</A></xml>".encode("utf-16"),
    b"<!DOCTYPE xml><xml><A>1</A></xml>",  # a DTD, even an empty one
    b'<!DOCTYPE xml [<!ENTITY e "x">]><xml><A>&e;</A></xml>',
    b"<xml><A>&undefined;</A></xml>",
    b"<xml><Content><b>bold</b></Content></xml>",
    b"<xml><Event>a</Event><Event>b</Event></xml>",
    b"<xml></xml>", b"<xml/>", b"<html><A>1</A></html>", b"<xml><A>1</A></xml><xml/>",
    b"<xml><A>1</A>", b"", b"   ", b"\x00<xml/>", b"<xml><A>\x00</A></xml>", b"\xff\xfe\x00<", b"<xml><A>1</B></xml>",
    b"<a:xml xmlns:a='urn:x'><A>1</A></a:xml>", b"<xml xmlns='urn:x'><A>1</A></xml>",
]


@pytest.mark.parametrize("body", ODD_DOCUMENTS + [push(p) for p in PUSHES.values()])
def test_the_reader_reads_what_the_element_tree_read(body):
    assert _read_fields(body) == _tree_fields(body)


def test_billion_laughs_are_refused_at_the_dtd_before_any_expansion():
    from test_webhook import BILLION_LAUGHS, DTD_ONLY, XXE

    for body in (BILLION_LAUGHS, XXE, DTD_ONLY):
        with pytest.raises(Refused) as refused:
            parse_xml_fields(body)
        assert refused.value.reason == "unreadable XML: DTDForbidden"


from hypothesis import given, settings, strategies as st  # noqa: E402

_NAMES = st.sampled_from(["ToUserName", "FromUserName", "MsgType", "Content", "Event", "EventKey", "PicList",
                          "item", "Count", "A"])
_TEXT = st.sampled_from(["", "x", " 帮助 ", "&lt;", "&amp;&#65;", "<![CDATA[<b>&]]>", "\n", "a<!--c-->b",
                         "&bad;", "<", "]]>"])


@st.composite
def _documents(draw):
    def element(depth: int) -> str:
        name = draw(_NAMES)
        attrs = ' k="v"' if draw(st.integers(0, 9)) == 0 else ""
        inner = draw(_TEXT)
        if depth < 3 and draw(st.integers(0, 4)) == 0:
            inner += "".join(element(depth + 1) for _ in range(draw(st.integers(1, 2)))) + draw(_TEXT)
        return f"<{name}{attrs}>{inner}</{name}>"

    root = draw(st.sampled_from(["xml", "xml", "xml", "root"]))
    return f"<{root}>{''.join(element(2) for _ in range(draw(st.integers(0, 6))))}</{root}>".encode()


@settings(max_examples=400, deadline=None)
@given(_documents())
def test_any_document_reads_as_the_element_tree_read_it(body):
    ours, theirs = _read_fields(body), _tree_fields(body)
    if isinstance(theirs, str):  # refused by both (with several faults, each may name another first)
        assert isinstance(ours, str), (ours, theirs)
    else:
        assert ours == theirs
