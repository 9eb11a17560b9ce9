"""What the federation tests share: the Accept headers servers send, and a JSON GET."""

from __future__ import annotations

from typing import Any

import httpx

AS2 = "application/activity+json"
LD_JSON = 'application/ld+json; profile="https://www.w3.org/ns/activitystreams"'
BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
PUBLIC = "https://www.w3.org/ns/activitystreams#Public"
BASE = "http://kith.test"


async def fetch(client: httpx.AsyncClient, url: str, accept: str = AS2) -> httpx.Response:
    """GET as another server would (no cookies of its own, AS2 Accept)."""
    return await client.get(url, headers={"Accept": accept})


def as2(r: httpx.Response) -> dict[str, Any]:
    """The body of a successful ActivityPub answer (checks status and content type)."""
    assert r.status_code == 200, (r.status_code, r.text)
    assert r.headers["content-type"] == "application/activity+json; charset=utf-8"
    body: dict[str, Any] = r.json()
    return body
