"""Content negotiation between HTML pages and ActivityPub documents, and the answers of the
federation routes (AS2 JSON, JSON errors instead of HTML error pages)."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.routing import Match
from starlette.types import Scope

from kith.errors import KithError

AS2_CONTENT_TYPE = "application/activity+json; charset=utf-8"
AS2_PROFILE = "https://www.w3.org/ns/activitystreams"


def _media_ranges(accept: str) -> list[tuple[str, dict[str, str]]]:
    """The media types of an Accept header with their parameters (lowercased, unquoted)."""
    ranges = []
    for part in accept.split(","):
        pieces = [p.strip() for p in part.split(";")]
        params = {}
        for p in pieces[1:]:
            name, _, value = p.partition("=")
            params[name.strip().lower()] = value.strip().strip('"')
        ranges.append((pieces[0].lower(), params))
    return ranges


def wants_activity_json(accept: str) -> bool:
    """Does this Accept header ask for an ActivityPub document?

    `application/activity+json`, or `application/ld+json` with the ActivityStreams profile
    (ActivityPub §3.2); an `application/ld+json` without the profile is taken as the same, as
    servers in the wild send it so. `text/html` and `application/json` never match, so browsers
    and the JSON APIs keep their answers. A media type refused with q=0 doesn't count."""
    for media_type, params in _media_ranges(accept):
        if params.get("q", "1").strip() in ("0", "0.0", "0.00", "0.000"):
            continue
        if media_type in ("application/activity+json", "application/ld+json"):
            return True
    return False


def activity_json(document: dict[str, Any], status: int = 200) -> Response:
    """An ActivityPub answer (`application/activity+json; charset=utf-8`). Caches must keep
    HTML and JSON of the same URL apart, hence `Vary: Accept`."""
    return Response(
        json.dumps(document, ensure_ascii=False, separators=(",", ":")),
        status_code=status,
        media_type=AS2_CONTENT_TYPE,
        headers={"Vary": "Accept"},
    )


def json_error(status: int, message: str) -> Response:
    return Response(
        json.dumps({"error": message}),
        status_code=status,
        media_type="application/json",
        headers={"Vary": "Accept"},
    )


class Gone(KithError):
    """The object was here and is deleted for good: answered `410 Gone` with its `Tombstone`
    (`document`) as ActivityPub JSON, so peers forget it (see `federation.tombstones`)."""

    status = 410

    def __init__(self, document: dict[str, Any]) -> None:
        super().__init__("This object was deleted.")
        self.document = document


class FederationRoute(APIRoute):
    """A route whose refusals are JSON (`{"error": …}`), not the HTML error page: the clients
    of these URLs are servers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except Gone as exc:
                return activity_json(exc.document, exc.status)
            except KithError as exc:
                return json_error(exc.status, exc.message)

        return handle


class ActivityJsonOnlyRoute(FederationRoute):
    """A route that exists only for requests asking for ActivityPub JSON: for any other Accept
    it does not match, and the HTML page registered at the same path answers."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http":
            accept = ""
            for name, value in scope.get("headers", []):
                if name == b"accept":
                    accept += value.decode("latin-1") + ","
            if not wants_activity_json(accept):
                return Match.NONE, {}
        return super().matches(scope)
