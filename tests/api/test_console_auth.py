"""The console's session over the API (no browser): the login form and its double-submit token, the HttpOnly,
SameSite=Strict cookie (Secure behind https), the CSRF token every cookie-authenticated action needs, logout, and
no open redirect. The browser tests (tests/browser) cover the same in chromium."""

from __future__ import annotations

from collections.abc import Callable

from api_helpers import Api
from geomill.api.auth import csrf_token


def _login(api: Api, scope: str = "submit", next_url: str = "/ui/jobs") -> str:
    form = api.client.get("/ui/login")
    assert form.status_code == 200
    r = api.client.post("/ui/login", data={"key": api.keys[scope], "next": next_url,
                                           "csrf": api.client.cookies["geomill_login_csrf"]}, follow_redirects=False)
    assert r.status_code == 303, r.text
    return str(r.headers["location"])


def test_pages_redirect_to_the_login_form_until_logged_in(api: Api) -> None:
    for page in ("/ui", "/ui/jobs", "/ui/health", "/ui/submit", "/ui/map", f"/ui/jobs/{'0' * 64}"):
        r = api.client.get(page, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/ui/login?next=/ui"), page
    assert _login(api) == "/ui/jobs"
    assert api.client.get("/ui/jobs").status_code == 200


def test_the_session_cookie_is_httponly_and_strict(api: Api) -> None:
    api.client.get("/ui/login")
    r = api.client.post("/ui/login", data={"key": api.keys["read"], "csrf": api.client.cookies["geomill_login_csrf"]},
                        follow_redirects=False)
    cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("geomill_session="))
    attrs = {a.strip().lower() for a in cookie.split(";")[1:]}
    assert {"httponly", "samesite=strict", "path=/"} <= attrs and "secure" not in attrs


def test_the_cookies_are_secure_over_https(make_api: Callable[..., Api]) -> None:
    api = make_api(public_url="https://geomill.example.org")  # a TLS proxy in front: the public URL says https
    api.client.base_url = "https://testserver"  # type: ignore[assignment]  (Secure cookies come back over https only)
    api.client.get("/ui/login")
    r = api.client.post("/ui/login", data={"key": api.keys["read"], "csrf": api.client.cookies["geomill_login_csrf"]},
                        follow_redirects=False)
    cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("geomill_session="))
    assert "secure" in cookie.lower()


def test_a_login_without_its_form_token_or_with_a_wrong_key_sets_no_session(api: Api) -> None:
    r = api.client.post("/ui/login", data={"key": api.keys["admin"]}, follow_redirects=False)
    assert r.status_code == 403 and "geomill_session" not in r.headers.get("set-cookie", "")
    api.client.get("/ui/login")
    r = api.client.post("/ui/login", data={"key": api.keys["admin"], "csrf": "forged"}, follow_redirects=False)
    assert r.status_code == 403
    r = api.client.post("/ui/login", data={"key": "gm_x_unknown", "csrf": api.client.cookies["geomill_login_csrf"]},
                        follow_redirects=False)
    assert r.status_code == 401 and "unknown or revoked" in r.text


def test_actions_with_the_cookie_need_the_csrf_token(api: Api) -> None:
    _login(api, "submit")
    url = "/api/jobs/submit/fanout"
    assert api.client.post(url, json={"n": 1}).status_code == 403
    wrong = api.client.post(url, json={"n": 1}, headers={"X-CSRF-Token": csrf_token("another key")})
    assert wrong.status_code == 403 and wrong.headers["content-type"] == "application/problem+json"
    right = api.client.post(url, json={"n": 1}, headers={"X-CSRF-Token": csrf_token(api.keys["submit"])})
    assert right.status_code == 202, right.text
    assert api.client.get("/api/jobs").status_code == 200  # reads need no token
    job_id = right.json()["job_id"]
    assert api.client.post(f"/api/jobs/{job_id}/cancel").status_code == 403
    assert api.client.post("/api/jobs/rerun", json={"dry_run": True}).status_code == 403


def test_a_header_key_needs_no_csrf_token_and_wins_over_the_cookie(api: Api) -> None:
    _login(api, "read")
    r = api.client.post("/api/jobs/submit/fanout", json={"n": 1}, headers={"X-API-Key": api.keys["submit"]})
    assert r.status_code == 202


def test_a_read_key_with_a_valid_session_is_refused_actions(api: Api) -> None:
    _login(api, "read")
    r = api.client.post("/api/jobs/rerun", json={"dry_run": True}, headers={"X-CSRF-Token": csrf_token(api.keys["read"])})
    assert r.status_code == 403 and "needs 'submit'" in r.json()["detail"]
    page = api.client.get("/ui/jobs").text
    assert 'id="bulk-rerun"' not in page and "geomill-csrf" in page


def test_logout_needs_the_token_and_ends_the_session(api: Api) -> None:
    _login(api, "read")
    assert api.client.post("/ui/logout", data={"csrf": "wrong"}, follow_redirects=False).status_code == 403
    r = api.client.post("/ui/logout", data={"csrf": csrf_token(api.keys["read"])}, follow_redirects=False)
    assert r.status_code == 303
    assert api.client.get("/ui/jobs", follow_redirects=False).status_code == 303


def test_login_never_redirects_off_the_console(api: Api) -> None:
    for target in ("https://evil.example/", "//evil.example/ui", "/api/jobs"):
        assert _login(api, "read", target) == "/ui"


def test_with_auth_disabled_the_console_needs_no_login(make_api: Callable[..., Api]) -> None:
    api = make_api(auth_disabled=True)
    r = api.client.get("/ui/jobs", follow_redirects=False)
    assert r.status_code == 200 and "Log out" not in r.text
    assert api.client.get("/ui/static/vendor/ol/ol.js").status_code == 200
