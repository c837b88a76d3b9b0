"""/wx cannot be forged or replayed (issue 9, item 1): with an EncodingAESKey
only encrypted pushes count; a signed query (timestamp, nonce, signature) is
good for the one message it came with, so a query read from a log cannot
carry another body; WeChat's own retry (same query, same body) still gets its
answer; and the query of /wx is never written to our logs."""
from __future__ import annotations

import logging
import time

from sqlalchemy import func, select

from app.extensions import redis_store
from distribution_helpers import make_distributor
from models import ReferralTouch, User, db
from sandbox.push import AESBox, cdata_xml, read_xml, signature


def user_row(openid: str) -> User | None:
    db.session.rollback()
    return db.session.scalars(select(User).where(User.openid == openid)).one_or_none()


def touch_count() -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(ReferralTouch))


# -- plaintext while a key is configured --------------------------------------
def test_a_plaintext_push_is_refused_while_a_key_is_configured(app, wechat, sandbox_user):
    """Whoever holds one signed query could otherwise write any plaintext body."""
    d = make_distributor("阿强")
    newcomer = sandbox_user("小美", subscribed=False)
    d_plain = wechat.push(wechat.subscribe(newcomer.openid, d.unit.scene), safe=False)
    assert 400 <= d_plain.status < 500
    assert user_row(newcomer.openid) is None and touch_count() == 0
    # The same follow, encrypted as WeChat sends it, is taken.
    assert wechat.push(wechat.subscribe(newcomer.openid, d.unit.scene)).status == 200
    assert user_row(newcomer.openid).referrer_id == d.user_id


def test_compatible_mode_is_taken_and_only_the_encrypted_message_counts(app, wechat, sandbox_user):
    """Compatible mode sends the plaintext fields beside <Encrypt>; the
    plaintext ones are not signed, so they are never read."""
    d = make_distributor("阿强")
    newcomer, bystander = sandbox_user("小美", subscribed=False), sandbox_user("路人", subscribed=False)
    delivery = wechat.push(wechat.subscribe(newcomer.openid, d.unit.scene), compatible=True)
    assert delivery.status == 200 and "阿强" in delivery.reply["Content"]
    assert user_row(newcomer.openid).referrer_id == d.user_id

    # Plaintext fields that say something else than the encrypted message.
    params, body = wechat.signed_request(wechat.text(bystander.openid, "帮助"))
    forged_outer = cdata_xml({**wechat.subscribe(newcomer.openid, "nothing"), "FromUserName": bystander.openid,
                              "Encrypt": read_xml(body)["Encrypt"]}).encode()
    delivery = wechat.send(params, forged_outer)
    assert delivery.status == 200 and "申请分销" in delivery.reply["Content"]  # the 帮助 answer
    assert user_row(bystander.openid).referrer_id is None


def test_without_a_key_plaintext_pushes_work_as_before(app, wechat_plain, sandbox_user):
    d = make_distributor("阿强")
    newcomer = sandbox_user("小美", subscribed=False)
    delivery = wechat_plain.push(wechat_plain.subscribe(newcomer.openid, d.unit.scene))
    assert delivery.status == 200 and "阿强" in delivery.reply["Content"]
    assert user_row(newcomer.openid).referrer_id == d.user_id


# -- a signed query is good for one message ------------------------------------
def test_a_logged_query_replayed_with_another_body_binds_nobody(app, wechat_plain, sandbox_user):
    """The attack: take one signed /wx query from a log, post a forged follow
    through the attacker's QR code for any user, within the replay window."""
    attacker = make_distributor("黑产")
    victim = sandbox_user("受害者")
    params, body = wechat_plain.signed_request(wechat_plain.text(victim.openid, "帮助"))
    genuine = wechat_plain.send(params, body)
    assert genuine.status == 200
    forged = cdata_xml(wechat_plain.scan(victim.openid, attacker.unit.scene)).encode()
    replayed = wechat_plain.send(params, forged)
    assert replayed.status == 403
    assert user_row(victim.openid).referrer_id is None
    assert touch_count() == 0
    # Hex case does not make a signature new.
    again = wechat_plain.send({**params, "signature": params["signature"].upper()}, forged)
    assert again.status == 403 and touch_count() == 0
    # The forged body itself is a valid push: under a fresh signed query it binds.
    assert wechat_plain.push(wechat_plain.scan(victim.openid, attacker.unit.scene)).status == 200
    assert user_row(victim.openid).referrer_id == attacker.user_id


def test_a_logged_query_stays_used_after_redis_lost_its_keys(app, wechat_plain, sandbox_user):
    """Redis restarted empty inside the replay window: the push's row in the
    database still knows which message the query brought."""
    attacker = make_distributor("黑产")
    victim = sandbox_user("受害者")
    params, body = wechat_plain.signed_request(wechat_plain.text(victim.openid, "帮助"))
    assert wechat_plain.send(params, body).status == 200
    redis_store.conn.flushdb()
    forged = cdata_xml(wechat_plain.scan(victim.openid, attacker.unit.scene)).encode()
    assert wechat_plain.send(params, forged).status == 403
    assert user_row(victim.openid).referrer_id is None and touch_count() == 0
    # WeChat's retry of the genuine push is still answered.
    assert "申请分销" in wechat_plain.send(params, body).reply["Content"]


def test_in_safe_mode_a_query_is_good_for_one_message_too(app, wechat, sandbox_user):
    """Even signed with the token, a second message under a used
    (timestamp, nonce, signature) is refused."""
    d = make_distributor()
    person = sandbox_user("小李")
    ts, nonce = str(int(time.time())), "246813579"
    params, body = wechat.signed_request(wechat.text(person.openid, "帮助"), timestamp=ts, nonce=nonce)
    assert wechat.send(params, body).status == 200
    params2, body2 = wechat.signed_request(wechat.scan(person.openid, d.unit.scene), timestamp=ts, nonce=nonce)
    assert params2["signature"] == params["signature"]
    assert wechat.send(params2, body2).status == 403
    assert user_row(person.openid).referrer_id is None and touch_count() == 0


def test_wechats_retry_with_the_same_query_and_body_gets_the_same_answer(app, wechat, sandbox_user):
    d = make_distributor("阿强")
    newcomer = sandbox_user("小美", subscribed=False)
    params, body = wechat.signed_request(wechat.subscribe(newcomer.openid, d.unit.scene))
    first, retry = wechat.send(params, body), wechat.send(params, body)
    assert (first.status, retry.status) == (200, 200)
    assert retry.reply["Content"] == first.reply["Content"] and "阿强" in first.reply["Content"]
    assert touch_count() == 1


def test_a_retry_reencrypted_under_the_same_query_is_still_the_same_message(app, wechat, sandbox_user):
    """Identity is the message, not its ciphertext (which has a random prefix)."""
    person = sandbox_user("小李")
    msg = wechat.text(person.openid, "帮助")
    ts, nonce = str(int(time.time())), "135792468"
    first = wechat.send(*wechat.signed_request(msg, timestamp=ts, nonce=nonce))
    again = wechat.send(*wechat.signed_request(msg, timestamp=ts, nonce=nonce))
    assert (first.status, again.status) == (200, 200)
    assert again.reply["Content"] == first.reply["Content"]


def test_a_replayed_verification_query_is_harmless_and_still_answers(client, wechat):
    ts, nonce = str(int(time.time())), "777"
    query = {"signature": signature(wechat.token, ts, nonce), "timestamp": ts, "nonce": nonce, "echostr": "e1"}
    assert [client.get("/wx", query_string=query).get_data(as_text=True) for _ in range(2)] == ["e1", "e1"]


# -- the query of /wx stays out of our logs ------------------------------------
def test_our_log_lines_never_carry_the_wx_query(app, client, wechat, caplog):
    """The Flask test client: no server access log here, only the product's
    own lines (refusals, retries, errors)."""
    caplog.set_level(logging.DEBUG)
    openid = "oLogs" + "0" * 23
    ts, nonce = str(int(time.time())), "918273645"
    params, body = wechat.signed_request(wechat.text(openid, "帮助"), timestamp=ts, nonce=nonce)
    secrets_in_query = [params["signature"], params["msg_signature"], nonce]
    client.post("/wx", query_string=params, data=body)  # done
    client.post("/wx", query_string=params, data=body)  # a retry
    other = wechat.signed_request(wechat.text(openid, "商城"), timestamp=ts, nonce=nonce)
    client.post("/wx", query_string=other[0], data=other[1])  # a replay: another message
    client.post("/wx", query_string={**params, "encrypt_type": ""}, data=cdata_xml(wechat.text(openid, "x")))
    client.post("/wx", query_string={**params, "signature": "0" * 40}, data=body)
    enc = AESBox(wechat.encoding_aes_key, wechat.appid).encrypt("<xml>")
    client.post("/wx", query_string={**params, "msg_signature": "1" * 40}, data=cdata_xml({"Encrypt": enc}))
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "refused /wx" in logged  # the refusals were logged, without the query
    assert not [s for s in secrets_in_query if s in logged]
