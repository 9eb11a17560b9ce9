"""A request's database session (`kith.web.deps.get_db`) is closed once the request is
answered, by `kith.edge.Edge`: rolled back when unfinished, its connection back in the pool,
whether the handler answered, failed or was cancelled."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import anyio
import pytest
from fastapi import Request, WebSocket
from fastapi.responses import Response
from sqlalchemy import select, update
from starlette.types import Receive, Scope, Send

from kith.accounts.models import Account
from kith.edge import Edge
from kith.mastodon_api.ratelimit import ApiRateLimiter
from kith.runtime import Runtime
from kith.web.deps import get_db
from tests.world import person


def _scope(rt: Runtime, kind: str = "http") -> dict[str, Any]:
    return {
        "type": kind,
        "path": "/somewhere",
        "raw_path": b"/somewhere",
        "query_string": b"",
        "headers": [],
        "method": "GET",
        "app": SimpleNamespace(state=SimpleNamespace(runtime=rt)),
    }


async def _error_page(request: Request, status: int, message: str) -> Response:
    return Response(message, status_code=status)


async def _receive() -> dict[str, Any]:
    await asyncio.Event().wait()  # never a message: the handlers here read no body
    return {}


async def _sent(message: dict[str, Any]) -> None:
    return None


def _checked_out(rt: Runtime) -> int:
    return rt.engine.sync_engine.pool.checkedout()  # type: ignore[attr-defined]


async def test_sessions_close_after_an_answer_a_failure_and_a_websocket(rt: Runtime) -> None:
    # Given a handler that opens a session, writes without committing, then answers or fails
    async with rt.sessions() as db:
        someone = (await person(db, "someone")).id
    written: list[int] = []

    async def handler(scope: Scope, receive: Receive, send: Send) -> None:
        http = scope["type"] == "http"
        db = await get_db(Request(scope) if http else WebSocket(scope, receive, send))  # type: ignore[arg-type]
        change = update(Account).where(Account.id == someone).values(display_name="unfinished")
        await db.execute(change)
        written.append(someone)
        assert _checked_out(rt) == 1
        if scope["path"].endswith("fail"):
            raise RuntimeError("the handler failed")
        await Response("ok")(scope, receive, send)

    edge = Edge(handler, error_page=_error_page, limiter=ApiRateLimiter())
    # When it answers, when it fails, and for a WebSocket
    await edge(_scope(rt), _receive, _sent)
    failing = _scope(rt) | {"path": "/fail", "raw_path": b"/fail"}
    with pytest.raises(RuntimeError):
        await edge(failing, _receive, _sent)
    await edge(_scope(rt, "websocket"), _receive, _sent)
    # Then every connection is back and nothing unfinished was kept
    assert _checked_out(rt) == 0
    assert len(written) == 3
    async with rt.sessions() as db:
        name = await db.scalar(select(Account.display_name).where(Account.id == someone))
        assert name != "unfinished"


async def test_a_cancelled_request_still_gives_its_connection_back(rt: Runtime) -> None:
    # Given a slow handler holding a connection in a write transaction
    async with rt.sessions() as db:
        someone = (await person(db, "someone")).id
    started = asyncio.Event()

    async def handler(scope: Scope, receive: Receive, send: Send) -> None:
        db = await get_db(Request(scope))
        await db.execute(update(Account).where(Account.id == someone).values(locked=True))
        started.set()
        await asyncio.Event().wait()

    edge = Edge(handler, error_page=_error_page, limiter=ApiRateLimiter())
    # When its client goes away and it is cancelled, as asyncio does (once) and as anyio's
    # cancel scopes do (every wait inside them is cancelled, the closing's too)
    task = asyncio.create_task(edge(_scope(rt), _receive, _sent))
    await started.wait()
    assert _checked_out(rt) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _checked_out(rt) == 0
    started.clear()
    scopes: list[anyio.CancelScope] = []

    async def in_a_cancel_scope() -> None:
        with anyio.CancelScope() as scope:
            scopes.append(scope)
            await edge(_scope(rt), _receive, _sent)

    task = asyncio.create_task(in_a_cancel_scope())
    await started.wait()
    assert _checked_out(rt) == 1
    scopes[0].cancel()
    await task
    # Then its connection is back in the pool, its transaction rolled back
    assert _checked_out(rt) == 0
    async with rt.sessions() as db:
        assert await db.scalar(select(Account.locked).where(Account.id == someone)) is False


async def test_get_db_outside_the_edge_is_refused(rt: Runtime) -> None:
    scope = _scope(rt)
    with pytest.raises(RuntimeError, match="outside kith.edge.Edge"):
        await get_db(Request(scope))
    assert _checked_out(rt) == 0
