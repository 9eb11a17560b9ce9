"""Local posts that mention `@user@host`: the remote account is found through WebFinger (before
anything is written), linked as a Mention with the right href, and the post is delivered to
it; a handle that cannot be resolved stays plain text; a post without one asks no one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts.models import Account
from kith.config import Settings
from kith.federation.models import OutboundActivity
from kith.posts import service as posts
from kith.posts.models import Mention, Visibility
from tests.federation.inbound import count, loopback, two_actor_peer
from tests.federation.local_http import json_document
from tests.federation.peer import Peer
from tests.world import person

pytestmark = pytest.mark.usefixtures("rt")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return loopback(settings)


def serve_webfinger(peer: Peer, *names: str) -> None:
    """The peer's WebFinger answers for `names` (the others are 404)."""

    async def route(request: Any, writer: Any) -> None:
        resource = request.target.split("resource=", 1)[-1].replace("%40", "@")
        name = resource.removeprefix("acct:").split("@", 1)[0]
        if name not in names:
            await json_document({"error": "no"}, status=404)(request, writer)
            return
        jrd = {
            "subject": f"acct:{name}@{peer.server.authority}",
            "links": [
                {"rel": "self", "type": "application/activity+json", "href": peer.actor_uri(name)}
            ],
        }
        await json_document(jrd)(request, writer)

    peer.server.routes["/.well-known/webfinger"] = route


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    async with two_actor_peer() as p:
        p.add_actor("alice", key=0, url=f"{p.base}/@alice")
        serve_webfinger(p, "alice")
        yield p


async def sent_creates(db: AsyncSession) -> list[dict[str, Any]]:
    rows = await db.scalars(
        select(OutboundActivity.document).execution_options(populate_existing=True)
    )
    return [d for d in rows.all() if d.get("type") == "Create"]


async def test_remote_mention__links_the_account_and_delivers_to_it(
    db: AsyncSession, peer: Peer
) -> None:
    # Given a local author and a remote person nobody here has seen
    ana = await person(db, "ana")
    handle = f"@alice@{peer.server.authority}"
    # When ana mentions her in a direct post
    post = await posts.create_post(
        db, ana, posts.PostInput(f"Hi {handle}!", visibility=Visibility.DIRECT)
    )
    # Then alice is known here, mentioned, and linked to her profile page
    alice = await db.scalar(select(Account).where(Account.uri == peer.actor_uri("alice")))
    assert alice is not None
    assert await count(db, Mention, Mention.post_id == post.id, Mention.account_id == alice.id)
    assert f'href="{peer.base}/@alice"' in post.content_html
    assert 'class="u-url mention"' in post.content_html
    # And the Create goes to her server, with the Mention tag naming her actor
    [create] = await sent_creates(db)
    assert create["object"]["to"] == [peer.actor_uri("alice")]
    [tag] = [t for t in create["object"]["tag"] if t["type"] == "Mention"]
    assert tag["href"] == peer.actor_uri("alice")
    assert tag["name"] == f"@alice@{peer.server.authority}"


async def test_remote_mention__unknown_handle_stays_plain_text(
    db: AsyncSession, peer: Peer
) -> None:
    # Given a handle the remote server does not know, and one on a host that does not answer
    ana = await person(db, "ana")
    source = f"Hi @nobody@{peer.server.authority} and @ghost@127.0.0.9:9"
    # When ana posts it
    post = await posts.create_post(db, ana, posts.PostInput(source))
    # Then the post is there, with no mention, no link and no delivery
    assert await count(db, Mention, Mention.post_id == post.id) == 0
    assert "<a" not in post.content_html and "@nobody@" in post.content_html
    assert await sent_creates(db) == []


async def test_remote_mention__known_account_is_not_fetched_again(
    db: AsyncSession, peer: Peer
) -> None:
    # Given alice was mentioned once already
    ana = await person(db, "ana")
    handle = f"@alice@{peer.server.authority}"
    await posts.create_post(db, ana, posts.PostInput(f"Hi {handle}"))
    asked = len(peer.server.requests)
    # When ana mentions her again, and edits a post to mention her
    second = await posts.create_post(db, ana, posts.PostInput(f"Again {handle}"))
    plain = await posts.create_post(db, ana, posts.PostInput("No one yet"))
    edited = await posts.edit_post(
        db, posts.policy.Viewer(ana.id), plain.id, posts.PostInput(f"Now {handle}")
    )
    # Then no request went out, and both posts mention her
    assert len(peer.server.requests) == asked
    for p in (second, edited):
        assert await count(db, Mention, Mention.post_id == p.id) == 1


async def test_remote_mention__bounded_per_post(
    db: AsyncSession, peer: Peer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a post naming more remote handles than are looked up
    monkeypatch.setattr(posts, "MAX_REMOTE_MENTIONS", 2)
    ana = await person(db, "ana")
    host = peer.server.authority
    source = " ".join(f"@n{i}@{host}" for i in range(5))
    # When ana posts it
    await posts.create_post(db, ana, posts.PostInput(source))
    # Then only the first two handles were asked for
    webfingers = [r for r in peer.server.requests if r.target.startswith("/.well-known/")]
    assert len(webfingers) == 2


async def test_post_without_remote_mention__asks_no_server(db: AsyncSession, peer: Peer) -> None:
    # Given a post with local mentions, an e-mail-like text and a hashtag
    ana = await person(db, "ana")
    await person(db, "lu")
    # When ana posts it
    post = await posts.create_post(db, ana, posts.PostInput("@lu write to me at a@b #news"))
    # Then lu is mentioned and no request went out
    assert await count(db, Mention, Mention.post_id == post.id) == 1
    assert peer.server.requests == []
