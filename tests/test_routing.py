"""Indexed routers (kith.routing) skip only what could never have matched: for every route of
the real app, and paths near them, each router answers as FastAPI's own matching does."""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from starlette.routing import Match

from kith.app import create_app
from kith.config import Settings
from kith.routing import IndexedRouter, literal_prefixes

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    var = tmp_path_factory.mktemp("routing")
    return create_app(
        Settings(database_url=f"sqlite+aiosqlite:///{var}/k.db", var_dir=var, run_worker=False)
    )


def _entries(app: FastAPI) -> list[Any]:
    """Every included-router entry of the app, at any depth."""
    out, pending = [], list(app.router.routes)
    while pending:
        route = pending.pop()
        router = getattr(route, "original_router", None)
        if router is not None:
            out.append(route)
            pending.extend(router.routes)
    return out


def _sample_paths(app: FastAPI) -> list[str]:
    """A concrete path for each route (parameters filled in), with and without a trailing
    slash, and near misses."""
    paths = {"/", "/nope", "/api", "/api/v1", "/api/v1/nope", "/api/v1/statuses/1/nope", "/@"}
    for entry in _entries(app):
        for route in entry.original_router.routes:
            path = getattr(route, "path", None)
            if not path:
                continue
            concrete = re.sub(r"\{[^}:]+:path\}", "a/b", path)
            concrete = re.sub(r"\{[^}]+\}", "123", concrete)
            paths.update({concrete, concrete.rstrip("/") + "/", concrete + "x"})
    return sorted(paths)


def _answer(entry: Any, scope: dict[str, Any], indexed: bool) -> tuple[Match, Any]:
    """The entry's answer as the app asks it (indexed: its early rejection and the router's)
    or as FastAPI alone would give it."""
    router = entry.original_router
    router.__class__ = IndexedRouter if indexed else APIRouter
    try:
        ask = entry.matches if indexed else partial(type(entry).matches, entry)
        match, child = ask(dict(scope))
        return match, sorted(child.items(), key=lambda kv: kv[0]) if child else None
    finally:
        router.__class__ = IndexedRouter


def test_every_router_in_the_app_is_indexed(app: FastAPI) -> None:
    entries = _entries(app)
    assert len(entries) > 20
    assert all(type(e.original_router) is IndexedRouter for e in entries)
    assert all("matches" in vars(e) for e in entries)  # each entry rejects early too


def test_a_second_app_over_the_same_routers_rejects_early_too(app: FastAPI, tmp_path: Path) -> None:
    # (the routers are the modules' own, made indexed by the first app; the entries are new)
    second = create_app(
        Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/k.db", var_dir=tmp_path)
    )
    entries = _entries(second)
    assert entries and all("matches" in vars(e) for e in entries)


def test_indexed_routers_answer_every_path_as_fastapi_does(app: FastAPI) -> None:
    # Given every route's path and its near misses, for every method and for WebSockets
    checked = 0
    for path in _sample_paths(app):
        scopes = [{"type": "http", "method": m} for m in METHODS] + [{"type": "websocket"}]
        for base in scopes:
            scope = {**base, "path": path, "root_path": "", "headers": [], "query_string": b""}
            for entry in _entries(app):
                # When each router is asked with and without its index
                # Then the answers (match kind and path parameters) are the same
                assert _answer(entry, scope, True) == _answer(entry, scope, False), (path, base)
                checked += 1
    assert checked > 10_000


def test_literal_prefixes__a_route_that_matches_anything_disables_skipping() -> None:
    router = APIRouter()

    @router.get("/{anything:path}")
    async def anything() -> None: ...

    @router.get("/api/v1/things/{thing_id}")
    async def thing() -> None: ...

    assert literal_prefixes(router.routes) == ("/", "/api/v1/things/")
    assert "/whatever".startswith(literal_prefixes(router.routes))
