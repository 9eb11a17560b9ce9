"""A post's collections: `replies` (the replies anyone may see, the author's own first, paged
by id), `likes` and `shares` (counts only), each shown to exactly those who may see the post."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts.models import Account
from kith.config import Settings
from kith.federation import activitypub as ap
from kith.federation.remote_accounts import fetch_account
from kith.graph import service as graph
from kith.graph.models import Follow
from kith.posts import service as posts
from kith.posts.models import Post, Visibility
from tests.federation.helpers import AS2, BASE, BROWSER, as2, fetch
from tests.federation.inbound import loopback, two_actor_peer
from tests.federation.peer import Peer
from tests.federation.test_signed_fetch import signed_get
from tests.world import person, post, running_app, viewer

ANA = f"{BASE}/users/ana"


def status(p: Post, name: str = "ana") -> str:
    return f"{BASE}/users/{name}/statuses/{p.id}"


async def walk(client: httpx.AsyncClient, url: str) -> list[dict[str, Any]]:
    """Every page of a collection, following `next` from `url` (a page)."""
    pages = []
    while url:
        pages.append(as2(await fetch(client, url.removeprefix(BASE))))
        url = pages[-1].get("next", "")
        assert len(pages) < 20, "the pages never end"
    return pages


async def test_note__links_its_replies_likes_and_shares(
    db: AsyncSession, settings: Settings
) -> None:
    # Given ana's post, liked by bob and boosted by cy
    ana, bob, cy = [await person(db, n) for n in ("ana", "bob", "cy")]
    hello = await post(db, ana, "hello")
    await posts.like(db, viewer(bob), hello.id)
    await posts.boost(db, viewer(cy), hello.id)
    async with running_app(settings) as client:
        # When a server fetches the Note and its likes and shares
        note = as2(await fetch(client, f"/users/ana/statuses/{hello.id}"))
        likes = as2(await fetch(client, f"/users/ana/statuses/{hello.id}/likes"))
        shares = as2(await fetch(client, f"/users/ana/statuses/{hello.id}/shares"))
    # Then the Note names its collections, and likes and shares are counts only
    replies_id = f"{status(hello)}/replies"
    assert note["replies"] == {
        "id": replies_id,
        "type": "OrderedCollection",
        "first": f"{replies_id}?page=true",
    }
    assert note["likes"] == {"id": f"{status(hello)}/likes", "type": "Collection", "totalItems": 1}
    assert note["shares"] == {
        "id": f"{status(hello)}/shares",
        "type": "Collection",
        "totalItems": 1,
    }
    assert likes == {"@context": ap.CONTEXT} | note["likes"]
    assert shares == {"@context": ap.CONTEXT} | note["shares"]


async def test_replies__public_and_unlisted_only__the_authors_own_first(
    db: AsyncSession, settings: Settings
) -> None:
    # Given ana's post with replies from bob (public), then ana (public), cy (unlisted), then
    # cy followers-only, bob direct, and ana again (unlisted)
    ana, bob, cy = [await person(db, n) for n in ("ana", "bob", "cy")]
    await graph.follow(db, ana.id, cy.id)
    hello = await post(db, ana, "hello")
    by_bob = await post(db, bob, "nice", reply_to=hello)
    own_1 = await post(db, ana, "and another thing", reply_to=hello)
    by_cy = await post(db, cy, "quietly", reply_to=hello, visibility=Visibility.UNLISTED)
    await post(db, cy, "friends only", reply_to=hello, visibility=Visibility.PRIVATE)
    await post(db, bob, "@ana psst", reply_to=hello, visibility=Visibility.DIRECT)
    own_2 = await post(db, ana, "last thing", reply_to=hello, visibility=Visibility.UNLISTED)
    async with running_app(settings) as client:
        # When a server reads the replies collection and its first page
        collection = as2(await fetch(client, f"/users/ana/statuses/{hello.id}/replies"))
        page = as2(await fetch(client, collection["first"].removeprefix(BASE)))
    # Then it lists the four replies anyone may see: ana's own first, then the others by id
    replies_id = f"{status(hello)}/replies"
    assert collection["type"] == "OrderedCollection" and collection["id"] == replies_id
    assert collection["totalItems"] == 4
    assert page["type"] == "OrderedCollectionPage" and page["partOf"] == replies_id
    assert page["orderedItems"] == [
        status(own_1),
        status(own_2),
        status(by_bob, "bob"),
        status(by_cy, "cy"),
    ]
    assert "next" not in page


async def test_replies__remote_replies_by_their_id_suspended_authors_left_out(
    db: AsyncSession, settings: Settings
) -> None:
    from kith.moderation import service as moderation
    from tests.federation.local_http import LocalServer
    from tests.federation.remote_world import remote_account, remote_post

    # Given ana's post with a public reply from a remote account, and one from bob, who was
    # then suspended
    ana, bob = await person(db, "ana"), await person(db, "bob")
    hello = await post(db, ana, "hello")
    far = await remote_account(db, LocalServer("far.example", 443), "far")
    reply = await remote_post(db, far, in_reply_to_id=hello.id)
    await post(db, bob, "soon gone", reply_to=hello)
    await moderation.suspend(db, bob)
    async with running_app(settings) as client:
        collection = as2(await fetch(client, f"/users/ana/statuses/{hello.id}/replies"))
        page = as2(await fetch(client, f"/users/ana/statuses/{hello.id}/replies?page=true"))
    # Then the remote reply is listed by its own id, and the suspended author's is not
    assert collection["totalItems"] == 1
    assert page["orderedItems"] == [reply.uri]


async def test_replies__pages_walk_every_reply_once_in_order(
    db: AsyncSession, settings: Settings
) -> None:
    # Given more replies than two pages hold, ana's and bob's interleaved
    ana, bob = await person(db, "ana"), await person(db, "bob")
    hello = await post(db, ana, "hello")
    own, others = [], []
    for i in range(ap.REPLIES_PAGE_SIZE + 7):
        others.append(await post(db, bob, f"bob {i}", reply_to=hello))
        if i % 3 == 0:
            own.append(await post(db, ana, f"ana {i}", reply_to=hello))
    async with running_app(settings) as client:
        # When a server follows the pages from the first
        pages = await walk(client, f"{status(hello)}/replies?page=true")
        bad = await fetch(client, f"/users/ana/statuses/{hello.id}/replies?page=true&min_id=x")
    # Then each reply comes once: ana's first, then bob's, oldest first, and the pages end
    seen = [i for p in pages for i in p["orderedItems"]]
    assert seen == [status(p) for p in own] + [status(p, "bob") for p in others]
    assert [len(p["orderedItems"]) for p in pages] == [ap.REPLIES_PAGE_SIZE, len(seen) - 20]
    assert "only_other_accounts=true" in pages[1]["id"]
    assert bad.status_code == 422 and bad.json() == {"error": "min_id must be a number."}


@pytest.mark.parametrize("collection", ["replies", "replies?page=true", "likes", "shares"])
async def test_collections__of_a_hidden_or_deleted_post__404_like_the_post(
    db: AsyncSession, settings: Settings, collection: str
) -> None:
    # Given ana's followers-only and direct posts, a post of hers since deleted, and a boost
    ana, bob = await person(db, "ana"), await person(db, "bob")
    secret = await post(db, ana, "friends", visibility=Visibility.PRIVATE)
    direct = await post(db, ana, "@bob hi", visibility=Visibility.DIRECT)
    gone = await post(db, ana, "oops")
    await posts.delete_post(db, viewer(ana), gone.id)
    boost = await posts.boost(db, viewer(ana), (await post(db, bob, "bob's")).id)
    public = await post(db, ana, "open")
    async with running_app(settings) as client:
        # When a server asks for their collections, and for the posts, without a signature
        answers = {
            p.id: await fetch(client, f"/users/ana/statuses/{p.id}/{collection}")
            for p in (secret, direct, gone, boost, public)
        }
        objects = {
            p.id: await fetch(client, f"/users/ana/statuses/{p.id}")
            for p in (secret, direct, gone, boost)
        }
        # And for the public post's collection under another author's name
        wrong_name = await fetch(client, f"/users/bob/statuses/{public.id}/{collection}")
    # Then each hidden one answers as the post itself (404; a deleted one 404 or 410 Gone),
    # in JSON, and tells nothing; the public one answers
    for p in (secret, direct, gone, boost):
        answer = answers[p.id]
        assert answer.status_code == objects[p.id].status_code, (p.content_html, answer.text)
        assert answer.status_code in (404, 410)
        assert answer.headers["content-type"].startswith("application/")
    assert answers[secret.id].status_code == answers[direct.id].status_code == 404
    assert "friends" not in str([a.text for a in answers.values()])
    assert answers[public.id].status_code == 200
    assert wrong_name.status_code == 404


async def test_collections__a_browser_is_sent_to_the_post_page(
    db: AsyncSession, settings: Settings
) -> None:
    ana = await person(db, "ana")
    hello = await post(db, ana, "hello")
    async with running_app(settings) as client:
        for kind in ("replies", "likes", "shares"):
            r = await fetch(client, f"/users/ana/statuses/{hello.id}/{kind}", BROWSER)
            assert r.status_code == 302 and r.headers["location"] == f"/@ana/{hello.id}"


# --- signed by a follower's server --------------------------------------------------------


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The peer is on loopback: let Kith fetch its actors."""
    return loopback(settings)


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    async with two_actor_peer() as p:
        yield p


@pytest.mark.usefixtures("rt")
async def test_followers_only_post__its_followers_server_reads_the_collections(
    db: AsyncSession, settings: Settings, peer: Peer
) -> None:
    # Given ana's followers-only post, which the peer's alice follows ana to read, with a
    # public reply by bob and a followers-only reply by ana herself (which alice may read,
    # but not everyone)
    ana, bob = await person(db, "ana"), await person(db, "bob")
    alice: Account = await fetch_account(db, peer.actor_uri("alice"))
    await fetch_account(db, peer.actor_uri("mallory"))
    db.add(Follow(follower_id=alice.id, followee_id=ana.id))
    await db.commit()
    await graph.follow(db, bob.id, ana.id)
    secret = await post(db, ana, "for my followers", visibility=Visibility.PRIVATE)
    by_bob = await post(db, bob, "public answer", reply_to=secret)
    await post(db, ana, "ana's friends only", reply_to=secret, visibility=Visibility.PRIVATE)
    path = f"/users/ana/statuses/{secret.id}/replies"
    async with running_app(settings) as client:
        # When the collection is fetched unsigned, signed by alice, and signed by mallory
        unsigned = await client.get(path, headers={"Accept": AS2})
        by_alice = await client.get(path, headers=signed_get(peer, path))
        page_path = f"{path}?page=true"
        alice_page = await client.get(page_path, headers=signed_get(peer, page_path))
        by_mallory = await client.get(path, headers=signed_get(peer, path, name="mallory"))
    # Then only alice's server gets it, and it lists only the reply anyone may see
    assert unsigned.status_code == 404 and by_mallory.status_code == 404
    assert as2(by_alice)["totalItems"] == 1
    assert as2(alice_page)["orderedItems"] == [status(by_bob, "bob")]
