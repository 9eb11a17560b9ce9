"""Posts as ActivityPub objects: `Note` / `Question` at the post URI and by content negotiation
at the page URL, addressed exactly as their audience says, and never shown to a fetch the
HTML page would refuse."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy
from kith.config import Settings
from kith.federation import activitypub as ap
from kith.federation import service
from kith.graph import service as graph
from kith.media import service as media
from kith.moderation import service as moderation
from kith.posts import presenter
from kith.posts import service as posts
from kith.posts.models import Post, Visibility
from kith.posts.service import PollInput, PostInput
from kith.runtime import runtime_of
from tests.federation.helpers import AS2, BASE, BROWSER, LD_JSON, PUBLIC, as2, fetch
from tests.test_accounts_images import png
from tests.world import browser, person, post, running_app, viewer

ALICE = f"{BASE}/users/alice"
FOLLOWERS = f"{ALICE}/followers"
BOB = f"{BASE}/users/bob"


async def _note_of(db: AsyncSession, p: Post) -> dict[str, Any]:
    """The note the converter makes of a post (as its author would be shown it)."""
    settings = runtime_of(db).settings
    (view,) = await presenter.present(db, policy.ANONYMOUS, [p])
    parts = (await service.note_parts(db, settings, [view]))[p.id]
    return ap.note(settings, view, in_reply_to=parts.in_reply_to, poll_counts=parts.poll_counts)


async def test_note__shape_of_a_public_post(db: AsyncSession, settings: Settings) -> None:
    # Given alice replies publicly to her own post, mentioning bob, with a #tag, a content
    # warning, a language and an image with alt text
    alice = await person(db, "alice")
    await person(db, "bob")
    parent = await post(db, alice, "First")
    upload = await media.upload(db, alice, png(), "image/png", description="A red square")
    p = await posts.create_post(
        db,
        alice,
        PostInput(
            source="Hi @bob about #Gardens",
            spoiler_text="plants",
            language="en",
            in_reply_to_id=parent.id,
            media_ids=[upload.id],
        ),
    )
    async with running_app(settings) as client:
        # When a server fetches the post's URI
        doc = as2(await fetch(client, f"/users/alice/statuses/{p.id}"))
    # Then it is a Note with everything Mastodon reads
    assert doc["id"] == f"{ALICE}/statuses/{p.id}"
    assert doc["type"] == "Note"
    assert doc["attributedTo"] == ALICE
    assert "@context" in doc
    assert "about" in doc["content"] and doc["contentMap"] == {"en": doc["content"]}
    assert doc["summary"] == "plants" and doc["sensitive"] is True
    assert doc["published"].endswith("Z") and "updated" not in doc
    assert doc["inReplyTo"] == f"{ALICE}/statuses/{parent.id}"
    assert doc["url"] == f"{BASE}/@alice/{p.id}"
    assert doc["to"] == [PUBLIC]
    assert doc["cc"] == [FOLLOWERS, BOB]
    assert {"type": "Mention", "href": BOB, "name": "@bob@kith.test"} in doc["tag"]
    assert {"type": "Hashtag", "href": f"{BASE}/tags/gardens", "name": "#gardens"} in doc["tag"]
    (image,) = doc["attachment"]
    assert image["type"] == "Document" and image["mediaType"] == "image/webp"
    assert image["url"].startswith(f"{BASE}/media/") and image["name"] == "A red square"
    assert image["blurhash"] == upload.blurhash


@pytest.mark.parametrize(
    ("visibility", "to", "cc"),
    [
        (Visibility.PUBLIC, [PUBLIC], [FOLLOWERS, BOB]),
        (Visibility.UNLISTED, [FOLLOWERS], [PUBLIC, BOB]),
        (Visibility.PRIVATE, [FOLLOWERS], [BOB]),
        (Visibility.DIRECT, [BOB], []),
    ],
)
async def test_note__addressing_matches_the_audience(
    db: AsyncSession, visibility: Visibility, to: list[str], cc: list[str]
) -> None:
    # Given alice posts to each audience, mentioning bob
    alice = await person(db, "alice")
    await person(db, "bob")
    p = await post(db, alice, "Hello @bob", visibility=visibility)
    # When it becomes a Note, then to/cc say exactly who it is for
    doc = await _note_of(db, p)
    assert (doc["to"], doc["cc"]) == (to, cc)


async def test_note__without_mentions__followers_only_reaches_followers_only(
    db: AsyncSession,
) -> None:
    alice = await person(db, "alice")
    p = await post(db, alice, "For friends", visibility=Visibility.PRIVATE)
    doc = await _note_of(db, p)
    assert doc["to"] == [FOLLOWERS] and doc["cc"] == []
    assert PUBLIC not in str(doc)


@pytest.mark.parametrize("accept", [AS2, LD_JSON])
async def test_page_url__negotiates_note_or_page(
    db: AsyncSession, settings: Settings, accept: str
) -> None:
    alice = await person(db, "alice")
    p = await post(db, alice, "Negotiated")
    async with running_app(settings) as client:
        doc = as2(await fetch(client, f"/@alice/{p.id}", accept))
        assert doc["id"] == f"{ALICE}/statuses/{p.id}"
        page = await fetch(client, f"/@alice/{p.id}", BROWSER)
        assert page.status_code == 200 and "Negotiated" in page.text
        assert page.headers["content-type"].startswith("text/html")
        # A browser opening the object URI is sent to the page
        r = await fetch(client, f"/users/alice/statuses/{p.id}", BROWSER)
        assert r.status_code == 302 and r.headers["location"] == f"/@alice/{p.id}"


@pytest.mark.parametrize("visibility", [Visibility.PRIVATE, Visibility.DIRECT])
async def test_fetch__followers_only_and_direct__404_like_the_page(
    db: AsyncSession, settings: Settings, visibility: Visibility
) -> None:
    # Given alice's post for followers (or bob directly), and bob follows her
    alice, bob = await person(db, "alice"), await person(db, "bob")
    await graph.follow(db, bob.id, alice.id)
    p = await post(db, alice, "Hi @bob", visibility=visibility)
    async with running_app(settings) as client:
        # When an unsigned fetch asks for it, at both URLs and as its activity
        for url in (
            f"/users/alice/statuses/{p.id}",
            f"/@alice/{p.id}",
            f"/users/alice/statuses/{p.id}/activity",
        ):
            r = await fetch(client, url)
            # Then it does not exist, and nothing of it leaks
            assert r.status_code == 404, url
            assert "Hi" not in r.text
        # And the page says the same to an anonymous browser
        assert (await fetch(client, f"/@alice/{p.id}", BROWSER)).status_code == 404


async def test_fetch__session_cookie_is_ignored(db: AsyncSession, settings: Settings) -> None:
    # Given alice's followers-only post, and alice signed in in her browser
    alice = await person(db, "alice")
    p = await post(db, alice, "Only friends", visibility=Visibility.PRIVATE)
    async with browser(settings) as b:
        await b.sign_in("alice")
        # When her browser asks for the AS2 document
        r = await b.client.get(f"/users/alice/statuses/{p.id}", headers={"Accept": AS2})
        # Then it gets what any unsigned fetch gets (a cached copy must never carry her view)
        assert r.status_code == 404
        # while the HTML page, for her, shows it
        assert (await b.client.get(f"/@alice/{p.id}")).status_code == 200


async def test_fetch__suspended_author_blocked_or_wrong_name__404(
    db: AsyncSession, settings: Settings
) -> None:
    alice, bob = await person(db, "alice"), await person(db, "bob")
    p = await post(db, alice, "Soon gone")
    async with running_app(settings) as client:
        # Under another author's name, the post is not there
        assert (await fetch(client, f"/users/bob/statuses/{p.id}")).status_code == 404
        assert (await fetch(client, f"/@bob/{p.id}")).status_code == 404
        assert (await fetch(client, "/users/alice/statuses/12345")).status_code == 404
        await moderation.suspend(db, alice)
        # And once alice is suspended, not at all
        assert (await fetch(client, f"/users/alice/statuses/{p.id}")).status_code == 404
    assert bob.id


async def test_unlisted__served_to_unsigned_fetch(db: AsyncSession, settings: Settings) -> None:
    alice = await person(db, "alice")
    p = await post(db, alice, "Quiet", visibility=Visibility.UNLISTED)
    async with running_app(settings) as client:
        doc = as2(await fetch(client, f"/users/alice/statuses/{p.id}"))
    assert doc["to"] == [FOLLOWERS] and doc["cc"] == [PUBLIC]


async def test_edited_post__has_updated(db: AsyncSession, settings: Settings) -> None:
    alice = await person(db, "alice")
    p = await post(db, alice, "Typo")
    await posts.edit_post(db, viewer(alice), p.id, PostInput(source="Fixed"))
    async with running_app(settings) as client:
        doc = as2(await fetch(client, f"/users/alice/statuses/{p.id}"))
    assert "Fixed" in doc["content"] and doc["updated"] >= doc["published"]


async def test_poll__served_as_question_with_counts(db: AsyncSession, settings: Settings) -> None:
    # Given alice's poll, and bob voted for the second option
    alice, bob = await person(db, "alice"), await person(db, "bob")
    p = await posts.create_post(
        db,
        alice,
        PostInput(source="Tea or coffee?", poll=PollInput(["Tea", "Coffee"], expires_in=3600)),
    )
    await posts.vote(db, viewer(bob), p.id, [1])
    async with running_app(settings) as client:
        doc = as2(await fetch(client, f"/users/alice/statuses/{p.id}"))
    # Then it is a Question with one-of options, their counts, the end time, still open
    assert doc["type"] == "Question"
    assert doc["oneOf"] == [
        {"type": "Note", "name": "Tea", "replies": {"type": "Collection", "totalItems": 0}},
        {"type": "Note", "name": "Coffee", "replies": {"type": "Collection", "totalItems": 1}},
    ]
    assert "anyOf" not in doc and "closed" not in doc
    assert doc["endTime"].endswith("Z") and doc["votersCount"] == 1


async def test_poll__multiple_choice_is_any_of(db: AsyncSession) -> None:
    alice = await person(db, "alice")
    p = await posts.create_post(
        db,
        alice,
        PostInput(source="Pick", poll=PollInput(["A", "B"], expires_in=3600, multiple=True)),
    )
    doc = await _note_of(db, p)
    assert [o["name"] for o in doc["anyOf"]] == ["A", "B"] and "oneOf" not in doc


async def test_boost__no_note_but_an_announce(db: AsyncSession, settings: Settings) -> None:
    # Given bob boosts alice's public post
    alice, bob = await person(db, "alice"), await person(db, "bob")
    p = await post(db, alice, "Boost me")
    boost = await posts.boost(db, viewer(bob), p.id)
    async with running_app(settings) as client:
        # Then the boost is no object
        assert (await fetch(client, f"/users/bob/statuses/{boost.id}")).status_code == 404
        # but its activity is an Announce of alice's note
        doc = as2(await fetch(client, f"/users/bob/statuses/{boost.id}/activity"))
        # and the post's own activity is its Create
        create = as2(await fetch(client, f"/users/alice/statuses/{p.id}/activity"))
    assert doc["type"] == "Announce" and doc["actor"] == BOB
    assert doc["id"] == f"{BOB}/statuses/{boost.id}/activity"
    assert doc["object"] == f"{ALICE}/statuses/{p.id}"
    assert doc["to"] == [PUBLIC] and doc["cc"] == [f"{BOB}/followers", ALICE]
    assert create["type"] == "Create" and create["actor"] == ALICE
    assert create["object"]["id"] == f"{ALICE}/statuses/{p.id}"
    assert "@context" not in create["object"]
    assert (create["to"], create["cc"]) == (create["object"]["to"], create["object"]["cc"])
