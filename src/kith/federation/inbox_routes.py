"""POST /inbox (shared) and POST /users/{name}/inbox: read a bounded body, hand it to
`federation.inbox.receive`, answer 202 — or the 4xx it decided on."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts.models import Account
from kith.federation import inbox
from kith.federation.inbox import MAX_INBOX_BYTES, InboxRejected
from kith.federation.signatures import RequestParts
from kith.runtime import runtime_of
from kith.web.deps import runtime

log = logging.getLogger(__name__)
router = APIRouter()


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
        log.info("inbox: refused a delivery (%s): %s", exc.status, exc.message)
        return JSONResponse({"error": exc.message}, status_code=exc.status)
    return Response(status_code=202)


# The session is opened here rather than by `Depends(get_db)`: FastAPI's dependency machinery
# for a yielding dependency was ~5 % of a delivery's CPU (bench/profile_inbox.py).


@router.post("/inbox", include_in_schema=False)
async def shared_inbox(request: Request) -> Response:
    async with runtime(request).sessions() as db:
        return await _deliver(request, db, None)


@router.post("/users/{username}/inbox", include_in_schema=False)
async def personal_inbox(username: str, request: Request) -> Response:
    async with runtime(request).sessions() as db:
        account = await db.scalar(
            select(Account).where(Account.username_key == username.casefold(), Account.domain == "")
        )
        if account is None:
            return JSONResponse({"error": "no such actor"}, status_code=404)
        return await _deliver(request, db, account)
