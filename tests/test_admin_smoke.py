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
    answers = [log_in(b, base, "boss", "wrong password!") for _ in range(6)]
    codes = [res.status_code for res in answers]
    assert codes[:5] == [401] * 5 and codes[5] == 429, codes
    assert log_in(b, base, "boss").status_code == 429
    # The limited sign-in says how many tries are left; pages without a limit carry no such header.
    remaining = [res.headers.get("X-RateLimit-Remaining") for res in answers]
    assert remaining[0] is not None and int(remaining[0]) > int(remaining[4]), remaining
    assert "Retry-After" in answers[5].headers
    assert "X-RateLimit-Remaining" not in b.get(f"{base}/admin/login").headers
