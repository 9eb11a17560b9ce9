"""kith.edge.Edge refuses a NUL character in a path or query for every route, before any
handler runs (PostgreSQL can neither store nor compare one: a 500 otherwise)."""

from __future__ import annotations

from typing import Any

from starlette.types import Receive, Scope, Send

from kith.edge import Edge
from kith.mastodon_api.ratelimit import ApiRateLimiter
from kith.runtime import Runtime
from tests.test_request_sessions import _error_page, _receive, _scope


async def test_a_nul_in_the_path_or_query_is_a_422_before_any_handler(rt: Runtime) -> None:
    reached: list[str] = []

    async def handler(scope: Scope, receive: Receive, send: Send) -> None:
        reached.append(scope["path"])

    edge = Edge(handler, error_page=_error_page, limiter=ApiRateLimiter())
    cases = [
        {"path": "/api/v1/tags/a\x00b", "raw_path": b"/api/v1/tags/a%00b"},
        {"path": "/api/v1/tags/a\x00b"},  # a server that gives no raw_path (it is optional)
        {"path": "/api/v2/search", "raw_path": b"/api/v2/search", "query_string": b"q=a%00b"},
        {"path": "/notes/a\x00", "raw_path": b"/notes/a\x00"},
    ]
    for case in cases:
        scope = _scope(rt) | case
        if "raw_path" not in case:
            del scope["raw_path"]
        sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any], _sent: list[dict[str, Any]] = sent) -> None:
            _sent.append(message)

        await edge(scope, _receive, send)
        assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 422, case
    assert reached == []
    # And an ordinary address reaches its handler
    await edge(_scope(rt), _receive, send)
    assert reached == ["/somewhere"]
