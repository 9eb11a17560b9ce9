"""POST /inbox (shared) and POST /users/{name}/inbox: read a bounded body, hand it to
`federation.inbox.receive`, answer 202 — or the 4xx it decided on.

The POSTs are answered by `InboxEndpoints`, a plain ASGI layer just inside `kith.edge.Edge`
(so the NUL refusal and the security headers apply as everywhere), before FastAPI's routing:
the inbox is the hottest path a server has, and FastAPI's routing, request-response wrapper,
exception layers and dependency solving cost 0.17-0.23 ms of a delivery's 1.25-1.7 ms of
CPU, for an endpoint that takes nothing but the body (bench/profile_inbox.py, docs/benchmarks.md).
FastAPI still knows the routes (`router`), so other methods get its 405 and `/inbox/` its
redirect, as before."""

from __future__ import annotations

import logging

from fastapi import APIRouter
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from kith.accounts.models import Account
from kith.errors import KithError
from kith.federation import inbox
from kith.federation.inbox import MAX_INBOX_BYTES, InboxRejected
from kith.federation.signatures import RequestParts
from kith.runtime import runtime_of
from kith.web.deps import runtime

log = logging.getLogger(__name__)
router = APIRouter()

_SHARED = "/inbox"
_PERSONAL_PREFIX, _PERSONAL_SUFFIX = "/users/", "/inbox"


async def read_body(request: Request, limit: int = MAX_INBOX_BYTES) -> bytes:
    """The request body, refusing (413) as soon as it passes `limit` — never reading more."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise InboxRejected(413, f"activities are limited to {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise InboxRejected(413, f"activities are limited to {limit} bytes")
    return bytes(body)


def request_parts(request: Request, body: bytes, https: bool) -> RequestParts:
    """The request exactly as received (raw path and query, every header line)."""
    scope = request.scope
    return RequestParts(
        method=request.method,
        scheme="https" if https else "http",
        authority=request.headers.get("host", ""),
        path=scope.get("raw_path", b"").decode("latin-1").split("?", 1)[0] or scope["path"],
        query=scope.get("query_string", b"").decode("latin-1"),
        headers=tuple(
            (k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope["headers"]
        ),
        body=body,
    )


async def _deliver(request: Request, db: AsyncSession, recipient: Account | None) -> Response:
    try:
        body = await read_body(request)
        parts = request_parts(request, body, runtime_of(db).settings.https)
        await inbox.receive(db, parts, recipient)
    except InboxRejected as exc:
        return _refused(exc)
    return Response(status_code=202)


def _refused(exc: InboxRejected) -> Response:
    log.info("inbox: refused a delivery (%s): %s", exc.status, exc.message)
    return JSONResponse({"error": exc.message}, status_code=exc.status)


@router.post("/inbox", include_in_schema=False)
async def shared_inbox(request: Request) -> Response:
    """POST /inbox (a session only if `inbox.receive_shared` needs one)."""
    rt = runtime(request)
    try:
        body = await read_body(request)
        await inbox.receive_shared(rt, request_parts(request, body, rt.settings.https))
    except InboxRejected as exc:
        return _refused(exc)
    return Response(status_code=202)


@router.post("/users/{username}/inbox", include_in_schema=False)
async def personal_inbox(username: str, request: Request) -> Response:
    """POST /users/{username}/inbox: as the shared inbox, the recipient recorded."""
    async with runtime(request).sessions() as db:
        account = await db.scalar(
            select(Account).where(Account.username_key == username.casefold(), Account.domain == "")
        )
        if account is None:
            return JSONResponse({"error": "no such actor"}, status_code=404)
        if account.deleted_at is not None:  # the sender then forgets it (as its actor's 410)
            return JSONResponse({"error": "this actor was deleted"}, status_code=410)
        return await _deliver(request, db, account)


def inbox_owner(path: str) -> str | None:
    """For an inbox's path: "" for the shared inbox, the user name for a personal one (the
    segment FastAPI's `/users/{username}/inbox` would match); None for any other path."""
    if path == _SHARED:
        return ""
    if path.startswith(_PERSONAL_PREFIX) and path.endswith(_PERSONAL_SUFFIX):
        name = path[len(_PERSONAL_PREFIX) : -len(_PERSONAL_SUFFIX)]
        if name and "/" not in name:
            return name
    return None


class InboxEndpoints:
    """ASGI middleware that answers POSTs to the inboxes itself and passes everything else on
    (see the module docstring). Errors keep their meaning: a client that hangs up mid-body
    gets the app's 400, a KithError its status, anything unexpected the server's 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path = scope["path"]
            root = scope.get("root_path", "")
            if root and path.startswith(root):  # as Starlette's routing sees the path
                path = path[len(root) :]
            owner = inbox_owner(path)
            if owner is not None:
                request = Request(scope, receive)
                try:
                    if owner:
                        response = await personal_inbox(owner, request)
                    else:
                        response = await shared_inbox(request)
                except ClientDisconnect:  # nobody is left to answer; nothing was written
                    response = Response(status_code=400)
                except KithError as exc:
                    response = JSONResponse({"error": exc.message}, status_code=exc.status)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
