"""Bad input and hostile callers get Mastodon-shaped errors, never a 500 or a leak."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import func, select

from kith.app import create_app
from kith.config import Settings
from kith.posts.models import Post, Visibility
from tests.mastodon_api.conftest import bearer, token_for
from tests.world import person, post


async def test_malformed_json__422_with_error_shape(api: httpx.AsyncClient, db) -> None:  # type: ignore[no-untyped-def]
    alice = await person(db, "alice")
    token = await token_for(db, alice)
    r = await api.post(
        "/api/v1/statuses",
        content=b"{not json",
        headers={**bearer(token), "Content-Type": "application/json"},
    )
    assert r.status_code == 422 and "error" in r.json()
    r = await api.post("/api/v1/statuses", json=["a", "list"], headers=bearer(token))
    assert r.status_code == 422


async def test_wrong_types__422_and_nothing_written(api: httpx.AsyncClient, db) -> None:  # type: ignore[no-untyped-def]
    alice = await person(db, "alice")
    token = await token_for(db, alice)
    for body in (
        {"status": "x", "visibility": "everyone"},
        {"status": "x", "sensitive": "maybe"},
        {"status": "x", "poll": {"options": ["a"], "expires_in": 600}},
        {"status": "x", "poll": {"options": ["a", "b"], "expires_in": "soon"}},
        {"status": "x", "poll": "yes"},
        {"status": ["not", "a", "string"]},
        {"status": ""},
        {"status": "x" * 6000},
    ):
        r = await api.post("/api/v1/statuses", json=body, headers=bearer(token))
        assert r.status_code == 422, (body, r.text)
        assert set(r.json()) == {"error"}
    assert await db.scalar(select(func.count()).select_from(Post)) == 0


async def test_unknown_parameters__ignored(api: httpx.AsyncClient, db) -> None:  # type: ignore[no-untyped-def]
    alice = await person(db, "alice")
    token = await token_for(db, alice)
    r = await api.post(
        "/api/v1/statuses", json={"status": "hi", "frobnicate": True}, headers=bearer(token)
    )
    assert r.status_code == 200 and r.json()["content"].startswith("<p>hi")


async def test_huge_limit__is_clamped(api: httpx.AsyncClient, db) -> None:  # type: ignore[no-untyped-def]
    alice = await person(db, "alice")
    for i in range(45):
        await post(db, alice, f"post {i}")
    r = await api.get("/api/v1/timelines/public?limit=100000")
    assert r.status_code == 200 and len(r.json()) == 40
    assert 'rel="next"' in r.headers["link"]


async def test_unknown_and_invisible_ids__404_not_403(api: httpx.AsyncClient, db) -> None:  # type: ignore[no-untyped-def]
    alice, bob = await person(db, "alice"), await person(db, "bob")
    secret = await post(db, alice, "followers only", visibility=Visibility.PRIVATE)
    token = await token_for(db, bob)
    for url in (
        f"/api/v1/statuses/{secret.id}",
        "/api/v1/statuses/123",
        "/api/v1/statuses/not-an-id",
        f"/api/v1/statuses/{secret.id}/context",
        "/api/v1/accounts/999",
    ):
        r = await api.get(url, headers=bearer(token))
        assert r.status_code == 404, url
        assert r.json() == {"error": "Record not found"} or "error" in r.json()
    r = await api.post(f"/api/v1/statuses/{secret.id}/favourite", headers=bearer(token))
    assert r.status_code == 404


async def test_revoked_and_bogus_tokens__401(api: httpx.AsyncClient, db) -> None:  # type: ignore[no-untyped-def]
    alice = await person(db, "alice")
    token = await token_for(db, alice)
    assert (
        await api.get("/api/v1/accounts/verify_credentials", headers=bearer(token))
    ).status_code == 200
    assert (
        await api.get("/api/v1/accounts/verify_credentials", headers=bearer("bogus"))
    ).status_code == 401
    assert (await api.get("/api/v1/accounts/verify_credentials")).status_code == 401
    from kith.oauth.models import OAuthToken

    row = (await db.scalars(select(OAuthToken))).first()
    row.revoked_at = row.created_at
    await db.commit()
    assert (
        await api.get("/api/v1/accounts/verify_credentials", headers=bearer(token))
    ).status_code == 401


async def test_insufficient_scope__403(api: httpx.AsyncClient, db) -> None:  # type: ignore[no-untyped-def]
    alice = await person(db, "alice")
    token = await token_for(db, alice, "read")
    r = await api.post("/api/v1/statuses", json={"status": "hi"}, headers=bearer(token))
    assert r.status_code == 403 and r.json() == {
        "error": "This action is outside the authorized scopes"
    }
    granular = await token_for(db, alice, "read:statuses")
    assert (await api.get("/api/v1/timelines/home", headers=bearer(granular))).status_code == 200
    assert (await api.get("/api/v1/notifications", headers=bearer(granular))).status_code == 403


async def test_idempotency_key__same_body_same_status_other_body_422(
    api: httpx.AsyncClient, db
) -> None:  # type: ignore[no-untyped-def]
    alice = await person(db, "alice")
    token = await token_for(db, alice)
    headers = {**bearer(token), "Idempotency-Key": "abc-123"}
    first = await api.post("/api/v1/statuses", json={"status": "once"}, headers=headers)
    again = await api.post("/api/v1/statuses", json={"status": "once"}, headers=headers)
    assert first.status_code == again.status_code == 200
    assert first.json()["id"] == again.json()["id"]
    other = await api.post("/api/v1/statuses", json={"status": "different"}, headers=headers)
    assert other.status_code == 422
    assert await db.scalar(select(func.count()).select_from(Post)) == 1


async def test_failed_request__frees_its_idempotency_key(api: httpx.AsyncClient, db) -> None:  # type: ignore[no-untyped-def]
    alice = await person(db, "alice")
    token = await token_for(db, alice)
    headers = {**bearer(token), "Idempotency-Key": "k1"}
    bad = await api.post(
        "/api/v1/statuses", json={"status": "x", "in_reply_to_id": "42"}, headers=headers
    )
    assert bad.status_code == 422
    good = await api.post("/api/v1/statuses", json={"status": "x"}, headers=headers)
    assert good.status_code == 200


async def test_rate_limit_headers__present_on_api_responses(api: httpx.AsyncClient, db) -> None:  # type: ignore[no-untyped-def]
    r = await api.get("/api/v1/instance")
    assert r.headers["X-RateLimit-Limit"] == "300"
    assert int(r.headers["X-RateLimit-Remaining"]) < 300
    assert r.headers["X-RateLimit-Reset"].endswith("Z")


async def test_pagination__link_header_and_min_id(api: httpx.AsyncClient, db) -> None:  # type: ignore[no-untyped-def]
    alice = await person(db, "alice")
    posts = [await post(db, alice, f"n{i}") for i in range(5)]
    r = await api.get("/api/v1/timelines/public?limit=2")
    ids = [s["id"] for s in r.json()]
    assert ids == [str(posts[4].id), str(posts[3].id)]
    older = await api.get(f"/api/v1/timelines/public?limit=2&max_id={ids[-1]}")
    assert [s["id"] for s in older.json()] == [str(posts[2].id), str(posts[1].id)]
    newer = await api.get(f"/api/v1/timelines/public?limit=2&min_id={posts[0].id}")
    assert [s["id"] for s in newer.json()] == [str(posts[2].id), str(posts[1].id)]


async def test_blocks_mutes_and_familiar_followers(api: httpx.AsyncClient, db) -> None:  # type: ignore[no-untyped-def]
    from kith.graph import service as graph

    alice, bob, carol = (
        await person(db, "alice"),
        await person(db, "bob"),
        await person(db, "carol"),
    )
    await graph.follow(db, alice.id, bob.id)
    await graph.follow(db, bob.id, carol.id)
    await graph.block(db, alice.id, carol.id)
    await graph.mute(db, alice.id, bob.id)
    token = await token_for(db, alice)
    blocks = (await api.get("/api/v1/blocks", headers=bearer(token))).json()
    mutes = (await api.get("/api/v1/mutes", headers=bearer(token))).json()
    assert [a["username"] for a in blocks] == ["carol"] and [a["username"] for a in mutes] == [
        "bob"
    ]
    dave = await person(db, "dave")
    await graph.follow(db, bob.id, dave.id)
    fam = (
        await api.get(f"/api/v1/accounts/familiar_followers?id[]={dave.id}", headers=bearer(token))
    ).json()
    assert fam == [{"id": str(dave.id), "accounts": [fam[0]["accounts"][0]]}]
    assert fam[0]["accounts"][0]["username"] == "bob"


async def test_update_credentials__partial_update_with_fields_and_avatar(
    api: httpx.AsyncClient, db
) -> None:  # type: ignore[no-untyped-def]
    import io

    from PIL import Image

    alice = await person(db, "alice")
    token = await token_for(db, alice, "read write")
    png = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 10, 10)).save(png, "PNG")
    r = await api.patch(
        "/api/v1/accounts/update_credentials",
        data={
            "display_name": "Alice <b>A</b>",
            "note": "Hello *world*",
            "locked": "true",
            "fields_attributes[0][name]": "site",
            "fields_attributes[0][value]": "https://example.org",
        },
        files={"avatar": ("a.png", png.getvalue(), "image/png")},
        headers=bearer(token),
    )
    assert r.status_code == 200, r.text
    me = r.json()
    assert me["display_name"] == "Alice <b>A</b>"  # plain text, escaped when rendered as HTML
    assert "<em>world</em>" in me["note"] and me["locked"] is True
    assert me["fields"][0]["name"] == "site" and "href" in me["fields"][0]["value"]
    assert "/media/" in me["avatar"]
    # A later partial update leaves the rest alone
    r2 = await api.patch(
        "/api/v1/accounts/update_credentials", json={"locked": False}, headers=bearer(token)
    )
    assert r2.json()["display_name"] == "Alice <b>A</b>" and r2.json()["locked"] is False
    bad = await api.patch(
        "/api/v1/accounts/update_credentials",
        json={"display_name": "x" * 500},
        headers=bearer(token),
    )
    assert bad.status_code == 422


async def test_grouped_notifications__likes_of_one_post_are_one_group(
    api: httpx.AsyncClient, db
) -> None:  # type: ignore[no-untyped-def]
    from kith.posts import service as posts
    from tests.world import viewer

    alice = await person(db, "alice")
    fans = [await person(db, f"fan{i}") for i in range(3)]
    p = await post(db, alice, "like me")
    for f in fans:
        await posts.like(db, viewer(f), p.id)
    await post(db, fans[0], "@alice hi")
    token = await token_for(db, alice)
    body = (await api.get("/api/v2/notifications", headers=bearer(token))).json()
    groups = {g["type"]: g for g in body["notification_groups"]}
    assert groups["favourite"]["notifications_count"] == 3
    assert len(groups["favourite"]["sample_account_ids"]) == 3
    assert groups["mention"]["notifications_count"] == 1
    assert {s["id"] for s in body["statuses"]} >= {str(p.id)}
    assert len(body["accounts"]) == 3


async def test_tag_history__counts_only_public_posts(api: httpx.AsyncClient, db) -> None:  # type: ignore[no-untyped-def]
    alice = await person(db, "alice")
    await post(db, alice, "open #quiet")
    await post(db, alice, "hidden #quiet", visibility=Visibility.PRIVATE)
    await post(db, alice, "hidden too #quiet", visibility=Visibility.DIRECT)
    tag = (await api.get("/api/v1/tags/quiet")).json()
    assert tag["history"][0]["uses"] == "1"


async def test_conversations__unread_read_and_remove(api: httpx.AsyncClient, db) -> None:  # type: ignore[no-untyped-def]
    from kith.mastodon_api.streaming import StreamSession
    from tests.world import viewer

    alice, bob = await person(db, "alice"), await person(db, "bob")
    eve = await person(db, "eve")
    first = await post(db, alice, "@bob psst", visibility=Visibility.DIRECT)
    bob_token = await token_for(db, bob)
    eve_token = await token_for(db, eve)
    convs = (await api.get("/api/v1/conversations", headers=bearer(bob_token))).json()
    assert len(convs) == 1 and convs[0]["unread"] is True
    assert convs[0]["id"] == str(first.id) and convs[0]["accounts"][0]["username"] == "alice"
    assert (await api.get("/api/v1/conversations", headers=bearer(eve_token))).json() == []
    read = await api.post(f"/api/v1/conversations/{first.id}/read", headers=bearer(bob_token))
    assert read.json()["unread"] is False
    # Removing hides it until someone writes again
    await api.delete(f"/api/v1/conversations/{first.id}", headers=bearer(bob_token))
    assert (await api.get("/api/v1/conversations", headers=bearer(bob_token))).json() == []
    reply = await post(db, alice, "@bob still there?", visibility=Visibility.DIRECT, reply_to=first)
    again = (await api.get("/api/v1/conversations", headers=bearer(bob_token))).json()
    assert again[0]["unread"] is True and again[0]["last_status"]["id"] == str(reply.id)
    # eve can't mark someone else's conversation
    assert (
        await api.post(f"/api/v1/conversations/{first.id}/read", headers=bearer(eve_token))
    ).status_code == 404
    # The direct stream carries a Conversation entity
    session = StreamSession(api._transport.app.state.runtime, viewer(bob))  # type: ignore[attr-defined]
    session.subscribe("direct", None)
    out = await session.outgoing(
        {"type": "post.created", "post_id": reply.id, "account_id": alice.id}
    )
    assert out and out[0][1] == "conversation"
    import json

    assert json.loads(out[0][2])["last_status"]["id"] == str(reply.id)


async def test_favourited_and_reblogged_by__list_people_but_not_blocked_ones(
    api: httpx.AsyncClient, db
) -> None:  # type: ignore[no-untyped-def]
    from kith.graph import service as graph
    from kith.posts import service as posts
    from tests.world import viewer

    alice, bob, mallory, reader = [
        await person(db, n) for n in ("alice", "bob", "mallory", "reader")
    ]
    p = await post(db, alice, "likeable")
    for fan in (bob, mallory):
        await posts.like(db, viewer(fan), p.id)
        await posts.boost(db, viewer(fan), p.id)
    await graph.block(db, reader.id, mallory.id)
    token = await token_for(db, reader)
    for path in ("favourited_by", "reblogged_by"):
        names = [
            a["username"]
            for a in (
                await api.get(f"/api/v1/statuses/{p.id}/{path}", headers=bearer(token))
            ).json()
        ]
        assert names == ["bob"], path
        everyone = [
            a["username"] for a in (await api.get(f"/api/v1/statuses/{p.id}/{path}")).json()
        ]
        assert sorted(everyone) == ["bob", "mallory"], path


async def test_a_client_hanging_up_mid_body_is_not_a_server_error(settings: Settings) -> None:
    """The body never arrives (the client disconnected): a quiet 400, no traceback, no 500."""
    app = create_app(settings)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/v1/apps",
        "raw_path": b"/api/v1/apps",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"kith.test"), (b"content-type", b"application/json")],
        "client": ("203.0.113.9", 1234),
        "server": ("kith.test", 80),
    }
    async with app.router.lifespan_context(app):
        scope["app"] = app
        scope["state"] = {}
        await app(scope, receive, send)
    starts = [m for m in sent if m["type"] == "http.response.start"]
    assert starts and starts[0]["status"] == 400


async def test_public_timeline__federated_local_and_remote(api: httpx.AsyncClient, db) -> None:  # type: ignore[no-untyped-def]
    from kith.accounts.models import Account
    from kith.posts.models import Post, Visibility

    alice = await person(db, "alice")
    here = await post(db, alice, "from here")
    far = Account(
        username="bob", username_key="bob", domain="far.example", uri="https://far.example/u/bob"
    )
    db.add(far)
    await db.flush()
    there = Post(account_id=far.id, content_html="<p>from there</p>", uri="https://far.example/1")
    unlisted = Post(
        account_id=far.id,
        content_html="<p>quiet</p>",
        uri="https://far.example/2",
        visibility=Visibility.UNLISTED,
    )
    db.add_all([there, unlisted])
    await db.commit()

    async def ids(query: str) -> list[str]:
        r = await api.get(f"/api/v1/timelines/public{query}")
        assert r.status_code == 200
        return [s["id"] for s in r.json()]

    assert await ids("") == [str(there.id), str(here.id)]
    assert await ids("?local=true") == [str(here.id)]
    assert await ids("?remote=true") == [str(there.id)]
    assert await ids(f"?remote=true&max_id={there.id}") == []


async def test_instance_stats__counted_at_most_once_a_minute(  # type: ignore[no-untyped-def]
    api: httpx.AsyncClient, db, monkeypatch
) -> None:
    from kith.mastodon_api import instance

    alice = await person(db, "alice")
    await post(db, alice, "one")
    first = (await api.get("/api/v1/instance")).json()["stats"]
    assert (first["user_count"], first["status_count"]) == (1, 1)
    # A post made within the minute is not counted yet (the figures are this process's)
    await post(db, alice, "two")
    assert (await api.get("/api/v1/instance")).json()["stats"]["status_count"] == 1
    # A minute later it is, in both versions of the endpoint
    later = instance._clock() + instance.STATS_SECONDS + 1
    monkeypatch.setattr(instance, "_clock", lambda: later)
    assert (await api.get("/api/v1/instance")).json()["stats"]["status_count"] == 2
    v2 = (await api.get("/api/v2/instance")).json()
    assert v2["usage"]["users"]["active_month"] == 1
