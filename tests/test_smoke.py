def test_subscribe_then_help(app, wechat, sandbox_user, jobs):
    person = sandbox_user("小王")
    d = wechat.push(wechat.subscribe(person.openid))
    assert d.status == 200, d.body
    assert "欢迎关注" in d.reply["Content"]
    d = wechat.push(wechat.text(person.openid, "帮助"))
    assert "我的二维码" in d.reply["Content"]
