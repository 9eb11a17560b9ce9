"""Custom emoji over ActivityPub: our Notes and Persons carry `Emoji` tags for the local emoji
they use; other servers' `Emoji` tags are remembered under the sender's own domain, their
images fetched through the SSRF-safe client (a loopback or oversized image is refused) and
shown from here."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy
from kith.accounts.models import Account
from kith.config import Settings
from kith.emojis import remote as remote_emojis
from kith.emojis import service as emojis
from kith.emojis.activitypub import EmojiTag
from kith.emojis.models import CustomEmoji
from kith.federation import uris
from kith.graph.models import Follow
from kith.moderation import service as moderation
from kith.posts.models import Post
from kith.runtime import Runtime
from tests.federation.helpers import BASE, as2, fetch
from tests.federation.inbound import deliver, loopback, two_actor_peer
from tests.federation.local_http import LocalServer, local_server, respond
from tests.federation.peer import Peer
from tests.federation.remote_inbox import run_jobs
from tests.test_accounts_images import png
from tests.world import person, post, running_app

pytestmark = pytest.mark.usefixtures("rt")
ADMIN = policy.Viewer(account_id=None, is_admin=True)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The scripted peers run on loopback: let Kith reach them (one test takes it back)."""
    return loopback(settings)


async def local_emoji(db: AsyncSession, code: str = "blob") -> CustomEmoji:
    return await emojis.add_local(db, ADMIN, code, png())


def tag_of(emoji: CustomEmoji) -> dict[str, Any]:
    return {
        "id": f"{BASE}/emojis/{emoji.id}",
        "type": "Emoji",
        "name": f":{emoji.shortcode}:",
        "updated": emoji.updated_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "icon": {"type": "Image", "mediaType": "image/png", "url": f"{BASE}/emojis/{emoji.id}.png"},
    }


# --- out ----------------------------------------------------------------------------------


async def test_note_and_person__carry_emoji_tags_for_the_local_emoji_they_use(
    db: AsyncSession, settings: Settings
) -> None:
    # Given :blob: and :cat:, ana named "Ana :cat:", and her post using :blob: and :nope:
    blob, cat = await local_emoji(db, "blob"), await local_emoji(db, "cat")
    ana = await person(db, "ana")
    ana.display_name = "Ana :cat:"
    await db.commit()
    hello = await post(db, ana, "Fresh :blob: bread :nope:")
    async with running_app(settings) as client:
        # When a server fetches the Note, the Person and the emoji's id
        note = as2(await fetch(client, f"/users/ana/statuses/{hello.id}"))
        actor = as2(await fetch(client, "/users/ana"))
        emoji_doc = as2(await fetch(client, f"/emojis/{blob.id}"))
        picture = await client.get(f"/emojis/{blob.id}.png")
    # Then each carries the Emoji tag of what its text uses, in Mastodon's shape
    emoji_tags = [t for t in note["tag"] if t["type"] == "Emoji"]
    assert emoji_tags == [tag_of(blob)]
    assert note["content"] == "<p>Fresh :blob: bread :nope:</p>"
    assert actor["tag"] == [tag_of(cat)]
    assert note["@context"][2]["Emoji"] == "toot:Emoji"
    assert {k: v for k, v in emoji_doc.items() if k != "@context"} == tag_of(blob)
    assert picture.status_code == 200 and picture.headers["content-type"] == "image/png"


async def test_suspended_person__stub_carries_no_emoji(
    db: AsyncSession, settings: Settings
) -> None:
    await local_emoji(db, "cat")
    ana = await person(db, "ana")
    ana.display_name = "Ana :cat:"
    await db.commit()
    await moderation.suspend(db, ana)
    async with running_app(settings) as client:
        actor = as2(await fetch(client, "/users/ana"))
    assert actor["suspended"] is True and actor["tag"] == []


# --- in -----------------------------------------------------------------------------------


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    async with two_actor_peer() as p:
        yield p


def emoji_note(peer: Peer, text: str, tags: list[dict[str, Any]]) -> dict[str, Any]:
    note = peer.note("alice", text)
    note["tag"] = tags
    return peer.activity("alice", "Create", note)


def remote_tag(peer: Peer, code: str, path: str) -> dict[str, Any]:
    return {
        "id": f"{peer.base}/emojis/{code}",
        "type": "Emoji",
        "name": f":{code}:",
        "updated": "2024-01-01T00:00:00Z",
        "icon": {"type": "Image", "mediaType": "image/png", "url": f"{peer.base}{path}"},
    }


async def followed_alice(db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer) -> Account:
    """bo, following the peer's alice (so her posts are stored here); returns alice."""
    bo = await person(db, "bo")
    mine = await post(db, bo, "hi")
    await deliver(
        settings, rt, peer, peer.activity("alice", "Like", uris.post_uri(settings, "bo", mine.id))
    )
    alice = await db.scalar(select(Account).where(Account.uri == peer.actor_uri("alice")))
    assert alice is not None
    db.add(Follow(follower_id=bo.id, followee_id=alice.id))
    await db.commit()
    return alice


async def test_remote_emoji__fetched_cleaned_and_shown_from_here(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    # Given alice's server serves the picture of its :blobcat:
    alice = await followed_alice(db, settings, rt, peer)
    peer.server.routes["/emoji/blobcat.png"] = respond(
        200, png((300, 300)), {"Content-Type": "image/png"}
    )
    # When her post using it arrives (and the jobs run)
    activity = emoji_note(
        peer, "<p>hello :blobcat:</p>", [remote_tag(peer, "blobcat", "/emoji/blobcat.png")]
    )
    assert (await deliver(settings, rt, peer, activity)).startswith("stored")
    await run_jobs(rt)
    stored = await db.scalar(select(Post).where(Post.uri == activity["object"]["id"]))
    emoji = await db.scalar(select(CustomEmoji).execution_options(populate_existing=True))
    assert stored is not None and emoji is not None
    # Then it is kept under her domain, cleaned, and shown from here in the API and pages
    assert (emoji.domain, emoji.shortcode, emoji.failed) == (alice.domain, "blobcat", False)
    assert emoji.image_path and emoji.image_path.startswith("cache/emoji/")
    async with running_app(settings) as client:
        status = (await client.get(f"/api/v1/statuses/{stored.id}")).json()
        picture = await client.get(f"/emojis/{emoji.id}.png")
        listed = (await client.get("/api/v1/custom_emojis")).json()
    url = f"{BASE}/emojis/{emoji.id}.png"
    assert status["emojis"] == [
        {"shortcode": "blobcat", "url": url, "static_url": url, "visible_in_picker": False}
    ]
    assert picture.status_code == 200
    with Image.open(io.BytesIO(picture.content)) as img:
        assert img.format == "PNG" and img.size == (128, 128)
    assert listed == []  # other servers' emoji are not ours to offer


async def test_remote_emoji__another_server_cannot_redefine_it(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    # Given alice's :blobcat:, stored under her domain
    alice = await followed_alice(db, settings, rt, peer)
    first = emoji_note(peer, "<p>:blobcat:</p>", [remote_tag(peer, "blobcat", "/a.png")])
    await deliver(settings, rt, peer, first)
    # When a post from another server declares a :blobcat: of its own
    async with local_server("127.0.0.1") as other_server:
        other = Peer(other_server)
        other.add_actor("eve", key=1)
        await remote_emojis.remember(
            db, other_server.authority, [EmojiTag("blobcat", f"{other.base}/evil.png", None, None)]
        )
        await db.commit()
    # Then each server's emoji is its own: alice's is unchanged
    rows = (
        await db.scalars(
            select(CustomEmoji)
            .order_by(CustomEmoji.domain)
            .execution_options(populate_existing=True)
        )
    ).all()
    by_domain = {e.domain: e.remote_url for e in rows}
    assert by_domain[alice.domain] == f"{peer.base}/a.png"
    assert len(by_domain) == 2


async def test_remote_emoji__changed_picture_is_fetched_again_older_copy_ignored(
    db: AsyncSession, settings: Settings, rt: Runtime
) -> None:
    from datetime import UTC, datetime

    when = datetime(2024, 1, 1, tzinfo=UTC)
    await remote_emojis.remember(
        db, "far.example", [EmojiTag("cat", "https://far.example/1.png", None, when)]
    )
    newer = EmojiTag("cat", "https://far.example/2.png", None, datetime(2024, 2, 1, tzinfo=UTC))
    await remote_emojis.remember(db, "far.example", [newer])
    older = EmojiTag("cat", "https://far.example/0.png", None, datetime(2023, 1, 1, tzinfo=UTC))
    await remote_emojis.remember(db, "far.example", [older])
    await db.commit()
    emoji = await db.scalar(select(CustomEmoji))
    assert emoji is not None and emoji.remote_url == "https://far.example/2.png"


# --- the hostile peer ---------------------------------------------------------------------


@pytest.fixture
async def server() -> AsyncIterator[LocalServer]:
    async with local_server("127.0.0.1") as s:
        yield s


async def test_attack__emoji_image_on_a_loopback_address__refused_by_the_fetcher(
    settings: Settings, server: LocalServer
) -> None:
    # Given (with private addresses not allowed, as in production) a peer's emoji whose image
    # URL points at a service on this machine
    strict = settings.model_copy(update={"federation_allow_private": False})
    runtime = Runtime.from_settings(strict)
    server.routes["/internal.png"] = respond(200, png(), {"Content-Type": "image/png"})
    try:
        async with runtime.sessions() as db:
            tag = EmojiTag("blob", f"{server.base}/internal.png", None, None)
            await remote_emojis.remember(db, "evil.example", [tag])
            await db.commit()
        # When the fetch job runs, and someone asks for the picture
        await run_jobs(runtime)
        async with running_app(strict) as client, runtime.sessions() as db:
            emoji = await db.scalar(select(CustomEmoji))
            assert emoji is not None
            picture = await client.get(f"/emojis/{emoji.id}.png")
            unlisted = await emojis.lookup(db, {"evil.example": {"blob"}})
    finally:
        await runtime.close()
    # Then nothing was requested from loopback, nothing stored, and it stays refused
    assert server.requests == []
    assert emoji.failed is True and emoji.image_path is None
    assert picture.status_code == 404
    assert unlisted == {}


async def test_attack__oversized_or_non_image_emoji__refused(
    db: AsyncSession, rt: Runtime, server: LocalServer
) -> None:
    # Given a server whose emoji are a file over 256 KB and an HTML page
    server.routes["/huge.png"] = respond(
        200, png() + b"\0" * (emojis.MAX_EMOJI_BYTES + 1), {"Content-Type": "image/png"}
    )
    server.routes["/page.png"] = respond(200, b"<html>", {"Content-Type": "text/html"})
    tags = [
        EmojiTag("huge", f"{server.base}/huge.png", None, None),
        EmojiTag("page", f"{server.base}/page.png", None, None),
    ]
    await remote_emojis.remember(db, server.authority, tags)
    await db.commit()
    # When the fetch jobs run, then both are refused and nothing is stored
    await run_jobs(rt)
    rows = (
        await db.scalars(
            select(CustomEmoji)
            .order_by(CustomEmoji.shortcode)
            .execution_options(populate_existing=True)
        )
    ).all()
    assert [(e.shortcode, e.failed, e.image_path) for e in rows] == [
        ("huge", True, None),
        ("page", True, None),
    ]
    assert len(server.requests) == 2


async def test_attack__malformed_emoji_tags_are_ignored(db: AsyncSession) -> None:
    from kith.emojis.activitypub import parse_emoji_tags

    tags = [
        {"type": "Emoji", "name": ":ok:", "icon": {"url": "https://x.example/ok.png"}},
        {"type": "Emoji", "name": ":bad-name:", "icon": {"url": "https://x.example/b.png"}},
        {"type": "Emoji", "name": ":nourl:", "icon": {"url": "javascript:alert(1)"}},
        {"type": "Emoji", "name": ":ok:", "icon": {"url": "https://x.example/second.png"}},
        {"type": "Emoji", "name": 7, "icon": "https://x.example/n.png"},
        {"type": "Hashtag", "name": "#ok"},
        "Emoji",
    ] + [
        {"type": "Emoji", "name": f":e{i}:", "icon": f"https://x.example/{i}.png"}
        for i in range(80)
    ]
    parsed = parse_emoji_tags(tags)
    assert parsed[0] == EmojiTag("ok", "https://x.example/ok.png", None, None)
    assert len(parsed) == 50 and {"bad-name", "nourl"}.isdisjoint(t.shortcode for t in parsed)
