"""Collections: the outbox (public and unlisted activity only), followers and following
(counts always, members only when the account shows its network), featured (pinned posts)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts.models import Account
from kith.config import Settings
from kith.federation import activitypub as ap
from kith.graph import service as graph
from kith.posts import service as posts
from kith.posts.models import Visibility
from tests.federation.helpers import BASE, as2, fetch
from tests.world import person, post, running_app, viewer

ALICE = f"{BASE}/users/alice"


async def test_outbox__public_and_unlisted_creates_and_announces_only(
    db: AsyncSession, settings: Settings
) -> None:
    # Given alice posts to each audience and boosts bob's public post and carol's private one
    # can't be boosted; bob's followers-only post stays out of reach
    alice, bob = await person(db, "alice"), await person(db, "bob")
    await graph.follow(db, alice.id, bob.id)
    made = {v: await post(db, alice, f"To {v}", visibility=v) for v in Visibility}
    bobs = await post(db, bob, "Bob's news")
    boost = await posts.boost(db, viewer(alice), bobs.id)
    async with running_app(settings) as client:
        # When a server reads her outbox
        outbox = as2(await fetch(client, "/users/alice/outbox"))
        page = as2(await fetch(client, outbox["first"].removeprefix(BASE)))
    # Then it counts and lists the public and unlisted posts and the boost, nothing else
    assert outbox["type"] == "OrderedCollection" and outbox["id"] == f"{ALICE}/outbox"
    assert outbox["totalItems"] == 3
    assert page["type"] == "OrderedCollectionPage" and page["partOf"] == f"{ALICE}/outbox"
    items = page["orderedItems"]
    assert [i["type"] for i in items] == ["Announce", "Create", "Create"]
    assert items[0]["object"] == f"{BASE}/users/bob/statuses/{bobs.id}"
    assert items[0]["id"] == f"{ALICE}/statuses/{boost.id}/activity"
    assert [i["object"]["id"] for i in items[1:]] == [
        f"{ALICE}/statuses/{made[Visibility.UNLISTED].id}",
        f"{ALICE}/statuses/{made[Visibility.PUBLIC].id}",
    ]
    text = str(page)
    assert "To private" not in text and "To direct" not in text
    assert "next" not in page


async def test_outbox__pages_by_id_without_gaps(db: AsyncSession, settings: Settings) -> None:
    alice = await person(db, "alice")
    made = [await post(db, alice, f"Post {i}") for i in range(ap.OUTBOX_PAGE_SIZE + 5)]
    async with running_app(settings) as client:
        first = as2(await fetch(client, "/users/alice/outbox?page=true"))
        second = as2(await fetch(client, first["next"].removeprefix(BASE)))
        bad = await fetch(client, "/users/alice/outbox?page=true&max_id=abc")
    seen = [i["object"]["id"] for i in first["orderedItems"] + second["orderedItems"]]
    assert seen == [f"{ALICE}/statuses/{p.id}" for p in reversed(made)]
    assert "next" not in second
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("application/json")


async def test_outbox__boost_of_a_post_that_became_hidden__left_out(
    db: AsyncSession, settings: Settings
) -> None:
    # Given alice boosted bob's post, and bob was then suspended
    from kith.moderation import service as moderation

    alice, bob = await person(db, "alice"), await person(db, "bob")
    await posts.boost(db, viewer(alice), (await post(db, bob, "Bob's")).id)
    await moderation.suspend(db, bob)
    async with running_app(settings) as client:
        outbox = as2(await fetch(client, "/users/alice/outbox"))
        page = as2(await fetch(client, "/users/alice/outbox?page=true"))
    assert outbox["totalItems"] == 0 and page["orderedItems"] == []


async def test_followers_and_following__list_actor_ids(
    db: AsyncSession, settings: Settings
) -> None:
    # Given alice follows bob and carol (on another server); bob and dave follow alice
    from kith.moderation import service as moderation

    alice, bob, dave = [await person(db, n) for n in ("alice", "bob", "dave")]
    carol = Account(
        username="carol",
        username_key="carol",
        domain="elsewhere.example",
        uri="https://elsewhere.example/users/carol",
    )
    db.add(carol)
    await db.commit()
    await graph.follow(db, alice.id, bob.id)
    await graph.follow(db, alice.id, carol.id)  # a request, until carol's server accepts
    assert await graph.accept_outgoing(db, alice.id, carol.id)
    await db.commit()
    await graph.follow(db, bob.id, alice.id)
    await graph.follow(db, dave.id, alice.id)
    eve = await person(db, "eve")
    await graph.follow(db, eve.id, alice.id)
    await moderation.suspend(db, eve)
    async with running_app(settings) as client:
        followers = as2(await fetch(client, "/users/alice/followers"))
        followers_page = as2(await fetch(client, followers["first"].removeprefix(BASE)))
        following = as2(await fetch(client, "/users/alice/following"))
        following_page = as2(await fetch(client, "/users/alice/following?page=true"))
    # Then the collections count and list them by actor id, newest first
    assert followers["id"] == f"{ALICE}/followers" and followers["totalItems"] == 3
    assert followers_page["orderedItems"] == [f"{BASE}/users/dave", f"{BASE}/users/bob"]
    assert following["totalItems"] == 2
    assert following_page["orderedItems"] == [
        "https://elsewhere.example/users/carol",
        f"{BASE}/users/bob",
    ]


async def test_followers__hidden_network__count_only_and_pages_refused(
    db: AsyncSession, settings: Settings
) -> None:
    # Given alice hides her network, and bob follows her
    alice, bob = await person(db, "alice"), await person(db, "bob")
    alice.hide_network = True
    await db.commit()
    await graph.follow(db, bob.id, alice.id)
    await graph.follow(db, alice.id, bob.id)
    async with running_app(settings) as client:
        for kind in ("followers", "following"):
            # When a server reads her collections
            doc = as2(await fetch(client, f"/users/alice/{kind}"))
            # Then it learns how many, not who
            assert doc["totalItems"] == 1 and "first" not in doc and "orderedItems" not in doc
            r = await fetch(client, f"/users/alice/{kind}?page=true")
            assert r.status_code == 403 and "bob" not in r.text


async def test_featured__pinned_public_and_unlisted_notes_only(
    db: AsyncSession, settings: Settings
) -> None:
    # Given alice pinned a public, an unlisted and a followers-only post
    alice = await person(db, "alice")
    pinned = {}
    for v in (Visibility.PUBLIC, Visibility.UNLISTED, Visibility.PRIVATE):
        pinned[v] = await post(db, alice, f"Pinned {v}", visibility=v)
        await posts.pin(db, viewer(alice), pinned[v].id)
    await post(db, alice, "Not pinned")
    async with running_app(settings) as client:
        doc = as2(await fetch(client, "/users/alice/collections/featured"))
    # Then the collection holds the notes a stranger may see, most recently pinned first
    assert doc["id"] == f"{ALICE}/collections/featured" and doc["type"] == "OrderedCollection"
    assert doc["totalItems"] == 2
    assert [n["id"] for n in doc["orderedItems"]] == [
        f"{ALICE}/statuses/{pinned[Visibility.UNLISTED].id}",
        f"{ALICE}/statuses/{pinned[Visibility.PUBLIC].id}",
    ]
    assert all(n["type"] == "Note" and "@context" not in n for n in doc["orderedItems"])


async def test_collections__unknown_account__404(db: AsyncSession, settings: Settings) -> None:
    async with running_app(settings) as client:
        for c in ("outbox", "followers", "following", "collections/featured"):
            assert (await fetch(client, f"/users/nobody/{c}")).status_code == 404
