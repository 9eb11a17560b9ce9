"""Route matching that skips whole routers whose paths cannot be the request's.

FastAPI (0.165) keeps each included router as one entry of its parent and, for a request, asks
every entry in turn whether it matches; an entry answers by testing each of its routes, and
the router that matched tests them again when it handles the request. Kith's app has ~30 web
routers before the Mastodon API's ~200 routes, so `POST /api/v1/statuses` ran some 400 route
tests (1–1.7 ms of CPU, a fifth of the request) before its handler started.

An indexed router first compares the path with the literal beginnings of its routes (the text
before the first `{`, one C-level `str.startswith` over a tuple) and answers "no match" at
once when none fits. Only then does FastAPI's own matching run, unchanged: which route wins,
405 for a known path with another method, trailing-slash redirects and each router's
dependencies behave exactly as before (tests/test_routing.py compares every route).

The same test runs first in the router's entry in its parent: FastAPI's entry does some
bookkeeping in the request's scope (set a key, ask, restore it) before it asks the router,
~40 times per request, ~5 % of an API timeline request's Python calls.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI
from starlette._utils import get_route_path
from starlette.routing import BaseRoute, Match
from starlette.types import Scope


class IndexedRouter(APIRouter):
    """An APIRouter that rejects, without testing its routes, a path none of them can match."""

    _kith_prefixes: tuple[str, ...] | None = None
    _kith_indexed_count: int = -1

    def prefixes(self) -> tuple[str, ...]:
        """`literal_prefixes` of its routes (again when routes were added since)."""
        prefixes = self._kith_prefixes
        if prefixes is None or self._kith_indexed_count != len(self.routes):
            prefixes = self._kith_prefixes = literal_prefixes(self.routes)
            self._kith_indexed_count = len(self.routes)
        return prefixes

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if not get_route_path(scope).startswith(self.prefixes()):
            return Match.NONE, {}
        return super().matches(scope)


def literal_prefixes(routes: list[BaseRoute]) -> tuple[str, ...]:
    """The text every path one of these routes matches must begin with, one per route
    (`("",)` when a route could match any path, so nothing is ever wrongly skipped)."""
    out: set[str] = set()
    for route in routes:
        router = _router_of(route)
        if router is not None:
            if _include_prefix(route):  # a prefix added at include time: not worth modelling
                return ("",)
            out.update(literal_prefixes(router.routes))
            continue
        path = getattr(route, "path", None)
        if not isinstance(path, str) or getattr(route, "host", None):
            return ("",)
        out.add(path.split("{", 1)[0])
    return tuple(sorted(out))


def index_routers(app: FastAPI) -> int:
    """Make every router included in `app` (at any depth) an IndexedRouter; returns how many.
    Done once, after all routes are registered: the routers keep their routes, dependencies
    and settings, only their `matches` gains the early rejection. A router included with a
    prefix (its routes' paths lack it) and everything below it stay as they are."""
    seen = 0
    pending = list(app.router.routes)
    while pending:
        route = pending.pop()
        router = _router_of(route)
        if router is None or _include_prefix(route):
            continue
        if type(router) is APIRouter:
            router.__class__ = IndexedRouter
            seen += 1
        if isinstance(router, IndexedRouter) and "matches" not in vars(route):
            # (a router made indexed by an earlier app, e.g. in tests, has new entries here)
            _reject_early(route, router)
        pending.extend(router.routes)
    return seen


def _reject_early(entry: Any, router: IndexedRouter) -> None:
    """Give the router's entry in its parent (FastAPI's `_IncludedRouter`) the router's
    prefix test, before the entry's own bookkeeping (see the module)."""
    asked = entry.matches  # the entry's own method, bound

    def matches(scope: Scope) -> tuple[Match, Scope]:
        if not get_route_path(scope).startswith(router.prefixes()):
            return Match.NONE, {}
        return asked(scope)

    entry.matches = matches


def _router_of(route: Any) -> APIRouter | None:
    """The APIRouter behind an included-router entry, else None."""
    router = getattr(route, "original_router", None)
    return router if isinstance(router, APIRouter) else None


def _include_prefix(route: Any) -> str:
    context = getattr(route, "include_context", None)
    return str(getattr(context, "prefix", "") or "")
