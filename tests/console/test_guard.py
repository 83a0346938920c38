"""Sign-in, sessions, CSRF and the console being off, against a real server over real HTTP."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.conftest import Server, start_server
from tests.console.conftest import TOKEN, csrf_of, signed_in
from trackyard.console.session import Sessions, csrf_ok


def test_pages_redirect_to_sign_in_and_data_is_refused_without_the_cookie(console_server: Server) -> None:
    with httpx.Client(base_url=console_server.url) as client:
        page = client.get("/console/sources")
        assert page.status_code == 303
        assert page.headers["location"] == "/console/sign-in?next=/console/sources"
        stream = client.get("/console/live/stream")
        assert stream.status_code == 401
        assert stream.json()["code"] == "not_signed_in"
        # A change without a session is refused before its CSRF token is even looked at.
        assert client.post("/console/sources", data={"name": "x"}).status_code == 401
        # A browser's form post after its session expired goes to sign in, and back.
        expired = client.post(
            "/console/sources",
            data={"name": "x"},
            headers={"Accept": "text/html", "Referer": f"{console_server.url}/console/sources"},
        )
        assert expired.status_code == 303
        assert expired.headers["location"] == "/console/sign-in?next=/console/sources"
    with httpx.Client(base_url=console_server.url, cookies={"trackyard_console": "e30.0000"}) as forged:
        assert forged.get("/console/sources").status_code == 303


def test_sign_in_sets_a_strict_http_only_cookie_and_a_wrong_token_is_refused(console_server: Server) -> None:
    with httpx.Client(base_url=console_server.url) as client:
        wrong = client.post("/console/sign-in", data={"token": "not-it"})
        assert wrong.status_code == 401 and "not the admin token" in wrong.text
        assert "set-cookie" not in wrong.headers
        right = client.post("/console/sign-in", data={"token": TOKEN, "next": "https://evil.example/"})
        assert right.status_code == 303
        assert right.headers["location"] == "/console/live"  # never off-site
        cookie = right.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/console" in cookie
        assert "secure" not in cookie  # plain http here; https gets Secure
        assert client.get("/console/sources").status_code == 200
        again = client.get("/console/sign-in?next=/console/profiles")
        assert again.status_code == 303 and again.headers["location"] == "/console/profiles"
        # Behind a TLS-terminating proxy on this machine, the cookie is Secure.
        proxied = client.post(
            "/console/sign-in", data={"token": TOKEN}, headers={"X-Forwarded-Proto": "https"}
        )
        assert "secure" in proxied.headers["set-cookie"].lower()


def test_a_change_without_the_csrf_token_is_refused(console_server: Server) -> None:
    with signed_in(console_server) as client:
        page = client.get("/console/sources")
        token = csrf_of(page.text)
        refused = client.post("/console/sources", data={"name": "csrf-less"})
        assert refused.status_code == 403 and "CSRF" in refused.text
        wrong = client.post("/console/sources", data={"name": "csrf-less", "csrf_token": token + "x"})
        assert wrong.status_code == 403
        assert "csrf-less" not in client.get("/console/sources").text
        made = client.post("/console/sources", data={"name": "csrf-ok", "csrf_token": token})
        assert made.status_code == 200 and "csrf-ok" in made.text
        # htmx sends the token as a header instead of a field.
        header = client.post("/console/sources/csrf-ok/disable", headers={"X-CSRF-Token": token})
        assert header.status_code == 200 and "disabled" in header.text


def test_sign_out_ends_the_session(console_server: Server) -> None:
    with signed_in(console_server) as client:
        token = csrf_of(client.get("/console/sources").text)
        out = client.post("/console/sign-out", data={"csrf_token": token})
        assert out.status_code == 303 and out.headers["location"] == "/console/sign-in"
        assert client.get("/console/sources").status_code == 303


def test_no_cors_and_strict_headers(console_server: Server) -> None:
    with signed_in(console_server) as client:
        page = client.get("/console/sources", headers={"Origin": "https://elsewhere.example"})
        assert "access-control-allow-origin" not in page.headers
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert page.headers["cache-control"] == "no-store"
        preflight = client.options("/console/sources", headers={"Origin": "https://elsewhere.example"})
        assert "access-control-allow-origin" not in preflight.headers
        htmx = client.get("/console/static/htmx.min.js")
        assert htmx.status_code == 200 and "htmx" in htmx.text[:2000]


def test_the_console_is_off_without_an_admin_token(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data")
    try:
        for path in ("/console/live", "/console/sign-in", "/console/live/stream"):
            answer = httpx.get(server.url + path)
            assert answer.status_code == 404
            assert "--admin-token" in answer.text
    finally:
        server.stop()


def test_sessions_are_signed_and_expire() -> None:
    sessions = Sessions("token-a")
    cookie, session = sessions.issue()
    assert sessions.check(cookie) == session
    assert Sessions("token-b").check(cookie) is None  # a new admin token signs everyone out
    payload, _, signature = cookie.partition(".")
    assert sessions.check(payload + "x." + signature) is None
    expired, _ = Sessions("token-a", seconds=-1).issue()
    assert sessions.check(expired) is None
    assert csrf_ok(session, session.csrf) and not csrf_ok(session, None) and not csrf_ok(session, "x")


def test_a_session_holds_in_every_worker(tmp_path: Path) -> None:
    """Sessions live in the signed cookie, not in a process: new connections may reach either worker."""
    server = start_server(tmp_path / "data", "--admin-token", TOKEN, "--workers", "2")
    try:
        signed = httpx.post(f"{server.url}/console/sign-in", data={"token": TOKEN})
        cookies = {"trackyard_console": signed.cookies["trackyard_console"]}
        for _ in range(12):  # a fresh connection each time
            with httpx.Client(base_url=server.url, cookies=cookies) as client:
                page = client.get("/console/sources")
                assert page.status_code == 200 and "Create a source" in page.text
    finally:
        server.stop()
