"""The Mastodon media API: upload, describe, attach with media_ids[], read back — and the same
visibility as the post everywhere an attachment can show. Ends with Mastodon.py over HTTP."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import httpx
from mastodon import Mastodon
from PIL import Image
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kith.config import Settings
from kith.graph import service as graph
from kith.posts.models import Post
from tests.live_server import live_server
from tests.mastodon_api.conftest import bearer, token_for
from tests.test_accounts_images import jpeg_with_gps, png
from tests.world import person


async def upload(
    api: httpx.AsyncClient,
    token: str,
    data: bytes | None = None,
    *,
    path: str = "/api/v2/media",
    **fields: str,
) -> httpx.Response:
    return await api.post(
        path,
        headers=bearer(token),
        data=fields,
        files={"file": ("photo.png", data or png(), "image/png")},
    )


async def count_posts(db: AsyncSession) -> int:
    return int(await db.scalar(select(func.count()).select_from(Post)) or 0)


async def test_upload__answers_the_media_attachment_entity(
    api: httpx.AsyncClient, db: AsyncSession
) -> None:
    # Given alice's app
    token = await token_for(db, await person(db, "alice"))
    # When she uploads a phone photo with a description and a focus point
    r = await upload(api, token, jpeg_with_gps((60, 40)), description="A red tile", focus="-0.5,1")
    # Then she gets a ready image (200: images are processed while the upload waits)
    assert r.status_code == 200, r.text
    m = r.json()
    assert m["type"] == "image" and m["description"] == "A red tile"
    assert m["remote_url"] is None and m["blurhash"]
    assert m["meta"]["original"] == {"width": 40, "height": 60, "size": "40x60", "aspect": 0.666667}
    assert m["meta"]["small"]["width"] == 40 and m["meta"]["focus"] == {"x": -0.5, "y": 1.0}
    assert m["url"].startswith("http://kith.test/media/") and m["preview_url"] != m["url"]
    # And the served file carries no GPS
    served = await api.get(m["url"].removeprefix("http://kith.test"))
    assert served.status_code == 200 and b"SpyCam" not in served.content
    assert len(Image.open(io.BytesIO(served.content)).getexif()) == 0
    # And v1 uploads work the same way
    assert (await upload(api, token, path="/api/v1/media")).status_code == 200


async def test_get_and_put__own_upload(api: httpx.AsyncClient, db: AsyncSession) -> None:
    token = await token_for(db, await person(db, "alice"))
    media_id = (await upload(api, token)).json()["id"]
    r = await api.put(
        f"/api/v1/media/{media_id}",
        headers=bearer(token),
        data={"description": "now described", "focus": "0.25,-0.25"},
    )
    assert r.status_code == 200
    got = await api.get(f"/api/v1/media/{media_id}", headers=bearer(token))
    assert got.status_code == 200
    assert got.json()["description"] == "now described"
    assert got.json()["meta"]["focus"] == {"x": 0.25, "y": -0.25}


async def test_upload__refusals_are_422_with_the_field(
    api: httpx.AsyncClient, db: AsyncSession
) -> None:
    token = await token_for(db, await person(db, "alice"))
    not_image = await api.post(
        "/api/v2/media",
        headers=bearer(token),
        files={"file": ("notes.txt", b"just some text", "text/plain")},
    )
    assert not_image.status_code == 422 and "error" in not_image.json()
    no_file = await api.post("/api/v2/media", headers=bearer(token), data={"description": "x"})
    assert no_file.status_code == 422
    too_long = await upload(api, token, description="x" * 1501)
    assert too_long.status_code == 422 and "1500" in too_long.json()["error"]
    bad_focus = await upload(api, token, focus="3,3")
    assert bad_focus.status_code == 422
    media_id = (await upload(api, token)).json()["id"]
    r = await api.put(
        f"/api/v1/media/{media_id}", headers=bearer(token), json={"description": "y" * 1501}
    )
    assert r.status_code == 422


async def test_upload__needs_write_media_scope(api: httpx.AsyncClient, db: AsyncSession) -> None:
    token = await token_for(db, await person(db, "alice"), "read")
    assert (await upload(api, token)).status_code == 403
    assert (await api.post("/api/v2/media", files={"file": ("a.png", png())})).status_code == 401


async def test_followers_only_status__media_hidden_from_who_cannot_see_the_post(
    api: httpx.AsyncClient, db: AsyncSession
) -> None:
    # Given alice posts a followers-only status with a photo; bob follows her, carol doesn't
    alice, bob, carol = [await person(db, n) for n in ("alice", "bob", "carol")]
    await graph.follow(db, bob.id, alice.id)
    a, b, c = [await token_for(db, x) for x in (alice, bob, carol)]
    media_id = (await upload(api, a, description="our garden")).json()["id"]
    r = await api.post(
        "/api/v1/statuses",
        headers=bearer(a),
        data={"status": "friends only", "visibility": "private", "media_ids[]": media_id},
    )
    assert r.status_code == 200, r.text
    status = r.json()
    # Then the status carries the attachment
    [attachment] = status["media_attachments"]
    assert attachment["id"] == media_id and attachment["description"] == "our garden"
    # And bob, a follower, sees it by id and on alice's media tab
    assert (await api.get(f"/api/v1/media/{media_id}", headers=bearer(b))).status_code == 200
    bobs = await api.get(
        f"/api/v1/accounts/{alice.id}/statuses", params={"only_media": "true"}, headers=bearer(b)
    )
    assert [s["id"] for s in bobs.json()] == [status["id"]]
    # But carol gets 404 for the attachment and finds it nowhere
    assert (await api.get(f"/api/v1/media/{media_id}", headers=bearer(c))).status_code == 404
    assert (await api.get(f"/api/v1/statuses/{status['id']}", headers=bearer(c))).status_code == 404
    for url, params in [
        (f"/api/v1/accounts/{alice.id}/statuses", {}),
        (f"/api/v1/accounts/{alice.id}/statuses", {"only_media": "true"}),
        ("/api/v1/timelines/public", {"only_media": "true"}),
        ("/api/v1/timelines/home", {}),
    ]:
        seen = await api.get(url, params=params, headers=bearer(c))
        assert seen.status_code == 200 and media_id not in seen.text, url


async def test_create_status__someone_elses_media__422_and_no_post(
    api: httpx.AsyncClient, db: AsyncSession
) -> None:
    a = await token_for(db, await person(db, "alice"))
    b = await token_for(db, await person(db, "bob"))
    bobs = (await upload(api, b)).json()["id"]
    r = await api.post(
        "/api/v1/statuses", headers=bearer(a), json={"status": "mine?", "media_ids": [bobs]}
    )
    assert r.status_code == 422 and "error" in r.json()
    assert await count_posts(db) == 0
    # And a media id that is not an id at all is refused the same way
    r = await api.post(
        "/api/v1/statuses", headers=bearer(a), json={"status": "x", "media_ids": ["abc"]}
    )
    assert r.status_code == 422 and await count_posts(db) == 0


async def test_create_status__five_attachments__422(
    api: httpx.AsyncClient, db: AsyncSession
) -> None:
    a = await token_for(db, await person(db, "alice"))
    ids = [(await upload(api, a)).json()["id"] for _ in range(5)]
    r = await api.post("/api/v1/statuses", headers=bearer(a), json={"media_ids": ids})
    assert r.status_code == 422 and await count_posts(db) == 0


async def test_create_status__media_only__and_only_media_timeline(
    api: httpx.AsyncClient, db: AsyncSession
) -> None:
    a = await token_for(db, await person(db, "alice"))
    await api.post("/api/v1/statuses", headers=bearer(a), json={"status": "words only"})
    ids = [(await upload(api, a)).json()["id"] for _ in range(2)]
    r = await api.post("/api/v1/statuses", headers=bearer(a), json={"media_ids": ids})
    assert r.status_code == 200, r.text
    assert [m["id"] for m in r.json()["media_attachments"]] == ids
    media_only = await api.get("/api/v1/timelines/public", params={"only_media": "true"})
    assert [s["id"] for s in media_only.json()] == [r.json()["id"]]
    everything = await api.get("/api/v1/timelines/public")
    assert len(everything.json()) == 2


async def test_edit_status__media_attributes_change_alt_text(
    api: httpx.AsyncClient, db: AsyncSession
) -> None:
    a = await token_for(db, await person(db, "alice"))
    media_id = (await upload(api, a, description="old")).json()["id"]
    status = (
        await api.post("/api/v1/statuses", headers=bearer(a), json={"media_ids": [media_id]})
    ).json()
    r = await api.put(
        f"/api/v1/statuses/{status['id']}",
        headers=bearer(a),
        json={
            "status": "now with words",
            "media_ids": [media_id],
            "media_attributes": [{"id": media_id, "description": "new"}],
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["media_attachments"][0]["description"] == "new"
    other = (await upload(api, a)).json()["id"]
    r = await api.put(
        f"/api/v1/statuses/{status['id']}",
        headers=bearer(a),
        json={"status": "more?", "media_ids": [media_id, other]},
    )
    assert r.status_code == 422


def mastodon_py_story(base: str, token: str) -> dict[str, Any]:
    api = Mastodon(access_token=token, api_base_url=base)
    attachment = api.media_post(
        io.BytesIO(png((120, 80))), mime_type="image/png", description="A blue card", focus=(0, 0)
    )
    assert attachment.type == "image" and attachment.url
    status = api.status_post("", media_ids=[attachment])
    fetched = api.status(status.id)
    return {
        "media": attachment.id,
        "attached": [m.id for m in fetched.media_attachments],
        "alt": fetched.media_attachments[0].description,
        "file": httpx.get(fetched.media_attachments[0].url).status_code,
    }


async def test_mastodon_py__media_post_then_status_post(
    settings: Settings, db: AsyncSession
) -> None:
    # Given alice's token and a real server
    token = await token_for(db, await person(db, "alice"))
    # When Mastodon.py uploads an image and posts a status with it
    with live_server(settings) as base:
        got = await asyncio.to_thread(mastodon_py_story, base, token)
    # Then the status carries the image, with its description, and the file is served
    assert got["attached"] == [got["media"]] and got["alt"] == "A blue card"
    assert got["file"] == 200


async def test_scheduled_status_with_media__422_for_now(
    api: httpx.AsyncClient, db: AsyncSession
) -> None:
    # Uploads are forgotten after a day, which a scheduled status may outlive: refused clearly.
    a = await token_for(db, await person(db, "alice"))
    media_id = (await upload(api, a)).json()["id"]
    r = await api.post(
        "/api/v1/statuses",
        headers=bearer(a),
        json={"media_ids": [media_id], "scheduled_at": "2999-01-01T00:00:00Z"},
    )
    assert r.status_code == 422
    assert (await api.get("/api/v1/scheduled_statuses", headers=bearer(a))).json() == []
