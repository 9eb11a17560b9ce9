"""What every HTTP request passes through before its route: a NUL in the address refused,
the API's rate limits counted (with Mastodon's headers), security headers on every answer;
and, for every request and WebSocket, its database sessions closed once it is answered
(`kith.web.deps.get_db`).

One plain ASGI layer: Starlette's `@app.middleware("http")` wraps each request in a task and
a streamed response, which cost ~0.4 ms of CPU per layer per request (three layers were
~10 % of an API timeline request's CPU: bench/profile_api.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kith.mastodon_api.ratelimit import ApiRateLimiter
from kith.web.deps import REQUEST_SESSIONS, close_sessions

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
}

ErrorPage = Callable[[Request, int, str], Awaitable[Response]]


class Edge:
    """The ASGI middleware (see the module's docstring)."""

    def __init__(self, app: ASGIApp, *, error_page: ErrorPage, limiter: ApiRateLimiter) -> None:
        self.app, self.error_page, self.limiter = app, error_page, limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        opened: list[AsyncSession] = []
        scope[REQUEST_SESSIONS] = opened
        try:
            if scope["type"] == "http":
                await self._http(scope, receive, send)
            else:
                await self.app(scope, receive, send)
        finally:
            await close_sessions(opened)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        extra: dict[str, str] = {}

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                headers.update(extra)
            await send(message)

        # A NUL in a path or query would reach the database as text PostgreSQL refuses.
        path = scope.get("raw_path") or scope["path"].encode()  # (raw_path is optional in ASGI)
        raw = path + b"?" + scope.get("query_string", b"")
        if b"%00" in raw or b"\x00" in raw:
            message = "The address must not contain NUL characters."
            response = await self.error_page(Request(scope), 422, message)
            await response(scope, receive, send_with_headers)
            return
        if scope["path"].startswith("/api/"):
            counted, refused = await self.limiter.check(Request(scope))
            extra.update(counted)
            if refused:
                response = JSONResponse({"error": "Too many requests"}, status_code=429)
                await response(scope, receive, send_with_headers)
                return
        await self.app(scope, receive, send_with_headers)
