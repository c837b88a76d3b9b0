from admin_helpers import PASSWORD, log_in, make_staff, post, staff_browser, token  # noqa: F401


def test_owner_logs_in_sees_dashboard_and_logs_out(app, base, staff_browser):
    b = staff_browser("owner")
    page = b.get(f"{base}/admin/")
    assert page.status_code == 200 and "欢迎" in page.text
    res = post(b, f"{base}/admin/logout")
    assert res.status_code == 302
    assert b.get(f"{base}/admin/", allow_redirects=False).status_code == 302


def test_wrong_password_then_limit(app, base, make_staff):
    import requests
    make_staff("boss")
    b = requests.Session()
    codes = [log_in(b, base, "boss", "wrong password!").status_code for _ in range(6)]
    assert codes[:5] == [401] * 5 and codes[5] == 429, codes
    assert log_in(b, base, "boss").status_code == 429
