"""The console's ASGI app, mounted at ``/console`` by ``trackyard.http.app``: sign-in, the guards, pages.

Every page needs the session cookie (else a redirect to the sign-in page), every data
endpoint too (else ``401``), and every change the session's CSRF token as well (else
``403``). Without an admin token the console is off and every page says how to turn it on.
Answers never speak CORS and carry a strict Content-Security-Policy: the pages load only
the package's own files (``static/``), so the console works offline.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qsl, quote, urlsplit

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route, Router
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Receive, Scope, Send

from trackyard.console.session import COOKIE, CSRF_FIELD, CSRF_HEADER, Session, Sessions, csrf_ok
from trackyard.http.answers import error_body

PREFIX: Final = "/console"
#: The most a console form may post (source names, a rate limit, a profile id).
_MAX_FORM_BYTES: Final = 16 * 1024
_SECURITY_HEADERS: Final = [
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; "
        b"base-uri 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]

Form = dict[str, str]
Handler = Callable[[Request, Session], Awaitable[Response]]
ChangeHandler = Callable[[Request, Session, Form], Awaitable[Response]]


def templates() -> Jinja2Templates:
    env = Environment(loader=PackageLoader("trackyard.console"), autoescape=select_autoescape())
    return Jinja2Templates(env=env)


class _Headers:
    """Adds the security headers (and ``no-store``, as pages hold write keys) to every answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        static = scope["path"].startswith("/static/")

        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                extra = [] if static else [(b"cache-control", b"no-store")]
                message = {**message, "headers": [*message.get("headers", []), *_SECURITY_HEADERS, *extra]}
            await send(message)

        await self.app(scope, receive, with_headers)


class Guard:
    """Sessions, sign-in and sign-out, and the wrappers the pages are served through."""

    def __init__(self, admin_token: str | None, views: Jinja2Templates) -> None:
        self.sessions = None if admin_token is None else Sessions(admin_token)
        self.views = views

    def session(self, request: Request) -> Session | None:
        return None if self.sessions is None else self.sessions.check(request.cookies.get(COOKIE))

    def render(
        self, request: Request, name: str, session: Session | None, status: int = 200, **extra: Any
    ) -> Response:
        context = {
            "prefix": PREFIX,
            "csrf": session.csrf if session else "",
            "signed_in": session is not None,
            "page": name.removesuffix(".html"),
            **extra,
        }
        return self.views.TemplateResponse(request, name, context, status)

    def off(self, request: Request) -> Response:
        return self.render(request, "off.html", None, 404)

    def page(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """A page: without a session, a redirect to the sign-in page (and back after it)."""

        async def guarded(request: Request) -> Response:
            if self.sessions is None:
                return self.off(request)
            session = self.session(request)
            if session is None:
                return _to_sign_in(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
            return await handler(request, session)

        return guarded

    def data(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """A data endpoint: without a session, ``401`` (a browser's form post goes to sign in)."""

        async def guarded(request: Request) -> Response:
            if self.sessions is None:
                return _json_error(404, "console_off", "The console is off: start serve with --admin-token.")
            session = self.session(request)
            if session is None:
                if request.method == "POST" and "text/html" in request.headers.get("accept", ""):
                    return _to_sign_in(request.headers.get("referer", ""))  # a session that expired
                return _json_error(401, "not_signed_in", f"Sign in at {PREFIX}/sign-in first.")
            return await handler(request, session)

        return guarded

    def change(self, handler: ChangeHandler) -> Callable[[Request], Awaitable[Response]]:
        async def guarded(request: Request, session: Session) -> Response:
            form = await read_form(request)
            if form is None:
                message = f"A console form is at most {_MAX_FORM_BYTES} bytes."
                return _json_error(413, "form_too_large", message)
            if not csrf_ok(session, request.headers.get(CSRF_HEADER) or form.get(CSRF_FIELD)):
                return self.render(
                    request,
                    "problem.html",
                    session,
                    403,
                    title="Refused",
                    message="This change came without the page's CSRF token; reload the page and try again.",
                )
            return await handler(request, session, form)

        return self.data(guarded)

    # -- sign-in ---------------------------------------------------------------------------

    async def sign_in_page(self, request: Request) -> Response:
        if self.sessions is None:
            return self.off(request)
        target = _next(request.query_params.get("next"))
        if self.session(request) is not None:  # signed in already: on to the page
            return RedirectResponse(target, 303)
        return self.render(request, "sign_in.html", None, next=target)

    async def sign_in(self, request: Request) -> Response:
        if self.sessions is None:
            return self.off(request)
        form = await read_form(request) or {}
        target = _next(form.get("next"))
        if not self.sessions.token_matches(form.get("token", "")):
            return self.render(
                request, "sign_in.html", None, 401, next=target, error="That is not the admin token."
            )
        cookie, session = self.sessions.issue()
        answer = RedirectResponse(target, 303)
        answer.set_cookie(
            COOKIE,
            cookie,
            max_age=session.expires_at - _now(),
            path=PREFIX,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return answer

    async def sign_out(self, request: Request, session: Session, form: Form) -> Response:
        answer = RedirectResponse(f"{PREFIX}/sign-in", 303)
        answer.delete_cookie(COOKIE, path=PREFIX, httponly=True, samesite="strict")
        return answer


def _now() -> int:
    return int(time.time())


def _to_sign_in(then: str) -> Response:
    path = urlsplit(then).path if then.startswith(("http:", "https:")) else then
    return RedirectResponse(f"{PREFIX}/sign-in?next={quote(_next(path))}", 303)


async def _home(request: Request) -> Response:
    return RedirectResponse(f"{PREFIX}/live", 303)


def _next(value: str | None) -> str:
    """Where to go after signing in: a console path only (never another site)."""
    if value and value.startswith(PREFIX + "/") and not value.startswith("//") and "\\" not in value:
        return value
    return f"{PREFIX}/live"


def _json_error(status: int, code: str, message: str) -> Response:
    return Response(error_body(code, message), status_code=status, media_type="application/json")


async def read_form(request: Request) -> Form | None:
    """An urlencoded form body (all console forms are), or ``None`` when it is too large."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_FORM_BYTES:
            return None
    return dict(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))


def console_app(guard: Guard, routes: list[BaseRoute]) -> ASGIApp:
    static = StaticFiles(directory=Path(__file__).parent / "static")
    return _Headers(
        Router(
            routes=[
                Route("/", _home),
                Route("/sign-in", guard.sign_in_page, methods=["GET"]),
                Route("/sign-in", guard.sign_in, methods=["POST"]),
                Route("/sign-out", guard.change(guard.sign_out), methods=["POST"]),
                *routes,
                Mount("/static", app=static),
            ]
        )
    )
