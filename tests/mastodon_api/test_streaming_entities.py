"""A streamed Status is the Status the REST API answers: the `update` event a WebSocket client
receives equals, byte for byte (fields, their order, the order of mentions, tags and emoji),
what `GET /api/v1/statuses/:id` and the Home timeline give the same viewer — for a post with
mentions, hashtags, a content warning, custom emoji (in the text and in its author's name)
and a poll, and for one with media instead of the poll (as on Mastodon, not both). The first
goes through the per-viewer rendering, the second through the rendering shared by everyone
connected."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import websockets
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy
from kith.config import Settings
from kith.emojis import service as emojis
from kith.graph import service as graph
from tests.live_server import live_server
from tests.mastodon_api.conftest import bearer, token_for
from tests.test_accounts_images import png
from tests.world import person

ADMIN = policy.Viewer(account_id=None, is_admin=True)


async def _next_update(ws: websockets.ClientConnection) -> dict[str, Any]:
    """The next `update` event's Status (other events, e.g. filters_changed, skipped)."""
    while True:
        msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if msg.get("event") == "update":
            return json.loads(msg["payload"])  # type: ignore[no-any-return]


def _same(streamed: dict[str, Any], answered: dict[str, Any]) -> None:
    # As JSON text, so that the order of fields counts too.
    assert json.dumps(streamed) == json.dumps(answered)


async def test_streamed_update__is_the_status_the_api_answers_for_the_same_viewer(
    settings: Settings, db: AsyncSession
) -> None:
    # Given a custom emoji, alice who uses it in her name, and bob and erin who follow her;
    # erin has two "warn" filters on Home that catch alice's hashtags
    await emojis.add_local(db, ADMIN, "blob", png((32, 32)))
    alice = await person(db, "alice")
    alice.display_name = "Alice :blob:"
    await db.commit()
    bob, erin = await person(db, "bob"), await person(db, "erin")
    for mentioned in ("carol", "dave"):
        await person(db, mentioned)
    for reader in (bob, erin):
        await graph.follow(db, reader.id, alice.id)
    token_a, token_b, token_e = [await token_for(db, x) for x in (alice, bob, erin)]
    with live_server(settings) as base:
        ws_url = base.replace("http", "ws") + "/api/v1/streaming?stream=user"
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            for title, keyword in (("Fruit", "apple"), ("Stripes", "zebra")):
                made = await http.post(
                    "/api/v2/filters",
                    json={
                        "title": title,
                        "context": ["home"],
                        "filter_action": "warn",
                        "keywords_attributes": [{"keyword": keyword, "whole_word": True}],
                    },
                    headers=bearer(token_e),
                )
                assert made.status_code == 200, made.text
            async with (
                websockets.connect(ws_url, subprotocols=[token_b]) as ws_b,  # type: ignore[list-item]
                websockets.connect(ws_url, subprotocols=[token_e]) as ws_e,  # type: ignore[list-item]
            ):
                await asyncio.sleep(0.5)  # the server subscribes each socket after accepting it
                for poll in ({"options": ["yes", "no"], "expires_in": 3600}, None):
                    media = await http.post(
                        "/api/v2/media",
                        headers=bearer(token_a),
                        data={"description": "A blue square"},
                        files={"file": ("photo.png", png(), "image/png")},
                    )
                    assert media.status_code == 200, media.text
                    # When alice posts with all of it
                    body: dict[str, Any] = {
                        "status": "Hi @dave and @carol :blob: #Zebra #apple #zebra",
                        "spoiler_text": "fruit talk :blob:",
                    }
                    if poll:  # a post has a poll or attachments, not both (as on Mastodon)
                        body["poll"] = poll
                    else:
                        body["media_ids"] = [media.json()["id"]]
                    r = await http.post("/api/v1/statuses", json=body, headers=bearer(token_a))
                    assert r.status_code == 200, r.text
                    sid = r.json()["id"]
                    # Then what bob's stream carries is what the API answers him
                    streamed_b, streamed_e = await _next_update(ws_b), await _next_update(ws_e)
                    assert streamed_b["id"] == streamed_e["id"] == sid
                    one = await http.get(f"/api/v1/statuses/{sid}", headers=bearer(token_b))
                    _same(streamed_b, one.json())
                    # And erin's (with her filter's verdict) is what her Home answers her
                    home = await http.get(
                        "/api/v1/timelines/home", params={"limit": 1}, headers=bearer(token_e)
                    )
                    _same(streamed_e, home.json()[0])
                    # The post really has every part the comparison is about
                    assert {m["acct"] for m in streamed_b["mentions"]} == {"dave", "carol"}
                    assert {t["name"] for t in streamed_b["tags"]} == {"zebra", "apple"}
                    assert streamed_b["emojis"][0]["shortcode"] == "blob"
                    assert streamed_b["account"]["emojis"][0]["shortcode"] == "blob"
                    assert len(streamed_b["media_attachments"]) == (0 if poll else 1)
                    assert streamed_b["spoiler_text"] == "fruit talk :blob:"
                    assert (streamed_b["poll"] is not None) == bool(poll)
                    assert streamed_b["filtered"] == []
                    titles = [f["filter"]["title"] for f in streamed_e["filtered"]]
                    assert titles == ["Fruit", "Stripes"]
