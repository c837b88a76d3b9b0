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
