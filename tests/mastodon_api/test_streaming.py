"""The streaming API over a real WebSocket and SSE: events arrive, and only visible ones."""

from __future__ import annotations

import asyncio
import json

import httpx
import websockets
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy
from kith.runtime import Runtime
from tests.live_server import live_server
from tests.mastodon_api.conftest import token_for
from tests.world import person, post


async def _next_event(ws: websockets.ClientConnection) -> dict[str, object]:
    while True:
        msg = json.loads(await asyncio.wait_for(ws.recv(), 5))
        if "event" in msg:
            return msg  # type: ignore[no-any-return]


async def test_websocket__multiplexed_streams_deliver_only_what_the_viewer_may_see(
    settings, db
) -> None:  # type: ignore[no-untyped-def]
    # Given alice follows bob, and carol is a stranger
    alice, bob = await person(db, "alice"), await person(db, "bob")
    from kith.graph import service as graph

    await graph.follow(db, alice.id, bob.id)
    token_a = await token_for(db, alice)
    token_b = await token_for(db, bob)
    carol = await person(db, "carol")
    token_c = await token_for(db, carol)
    with live_server(settings) as base:
        ws_url = base.replace("http", "ws") + "/api/v1/streaming"
        async with (
            httpx.AsyncClient(base_url=base) as http,
            websockets.connect(ws_url, subprotocols=[token_a]) as ws_a,
            websockets.connect(f"{ws_url}?access_token={token_c}&stream=public:local") as ws_c,
        ):
            # When alice subscribes to her user stream and a hashtag over one socket
            await ws_a.send(json.dumps({"type": "subscribe", "stream": "user"}))
            await ws_a.send(json.dumps({"type": "subscribe", "stream": "hashtag", "tag": "Garden"}))
            await asyncio.sleep(0.3)
            # And bob posts followers-only, then public with a hashtag
            auth_b = {"Authorization": f"Bearer {token_b}"}
            private = (
                await http.post(
                    "/api/v1/statuses",
                    json={"status": "for followers", "visibility": "private"},
                    headers=auth_b,
                )
            ).json()
            public = (
                await http.post(
                    "/api/v1/statuses", json={"status": "tomatoes #garden"}, headers=auth_b
                )
            ).json()
            # Then alice gets both on her user stream, and the public one on the hashtag stream
            got = [await _next_event(ws_a) for _ in range(3)]
            seen = {(tuple(m["stream"]), json.loads(m["payload"])["id"]) for m in got}  # type: ignore[arg-type]
            assert (("user",), private["id"]) in seen
            assert (("user",), public["id"]) in seen
            assert (("hashtag", "garden"), public["id"]) in seen
            # And carol, a stranger on the local stream, gets only the public one
            first = await _next_event(ws_c)
            assert json.loads(first["payload"])["id"] == public["id"]  # type: ignore[arg-type]
            # A bad subscription gets an error message, not a dropped socket
            await ws_c.send(json.dumps({"type": "subscribe", "stream": "nonsense"}))
            err = json.loads(await asyncio.wait_for(ws_c.recv(), 5))
            assert "error" in err
            # Deletions are announced
            await http.delete(f"/api/v1/statuses/{public['id']}", headers=auth_b)
            deleted = await _next_event(ws_c)
            assert deleted["event"] == "delete" and deleted["payload"] == public["id"]


async def test_websocket__bad_token_is_refused(settings, db) -> None:  # type: ignore[no-untyped-def]
    with live_server(settings) as base:
        ws_url = base.replace("http", "ws") + "/api/v1/streaming?access_token=nope&stream=user"
        try:
            async with websockets.connect(ws_url) as ws:
                await asyncio.wait_for(ws.recv(), 5)
            raise AssertionError("a bad token must not get a stream")
        except (websockets.exceptions.InvalidStatus, websockets.exceptions.ConnectionClosed):
            pass


async def test_sse_user_stream__requires_a_user_token(settings, db) -> None:  # type: ignore[no-untyped-def]
    with live_server(settings) as base:
        async with httpx.AsyncClient(base_url=base) as http:
            r = await http.get("/api/v1/streaming/user")
            assert r.status_code == 401
            assert (await http.get("/api/v1/streaming/health")).text == "OK"


async def test_public_streams__local_and_remote_posts_go_to_their_own_streams(
    db: AsyncSession, rt: Runtime
) -> None:
    """Remote posts reach the streams since they are published from the inbox: public and
    public:remote take them, public:local and hashtag:local do not."""
    from kith.accounts.models import Account
    from kith.db import new_id, utcnow
    from kith.mastodon_api.streaming import StreamSession, Subscription
    from kith.posts import service as posts_service
    from kith.posts.models import Post, PostTag, Visibility

    here = await person(db, "ana")
    there = Account(id=new_id(), username="zed", username_key="zed", domain="far.example")
    db.add(there)
    await db.flush()
    mine = await post(db, here, "local #garden")
    theirs = Post(
        id=new_id(),
        account_id=there.id,
        visibility=Visibility.PUBLIC,
        source="",
        content_html="<p>remote #garden</p>",
        created_at=utcnow(),
        uri="https://far.example/notes/1",
    )
    db.add(theirs)
    await db.flush()
    tag_ids = await posts_service.ids_of_tags(db, ["garden"])
    db.add(PostTag(tag_id=tag_ids["garden"], post_id=theirs.id))
    await db.commit()
    session = StreamSession(rt, policy.ANONYMOUS)
    wanted = {
        stream: [
            await session._wants(db, Subscription(stream, param), p)  # noqa: SLF001
            for p in (mine, theirs)
        ]
        for stream, param in (
            ("public", None),
            ("public:local", None),
            ("public:remote", None),
            ("hashtag", "garden"),
            ("hashtag:local", "garden"),
        )
    }
    assert wanted == {
        "public": [True, True],
        "public:local": [True, False],
        "public:remote": [False, True],
        "hashtag": [True, True],
        "hashtag:local": [True, False],
    }
