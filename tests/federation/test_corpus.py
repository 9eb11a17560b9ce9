"""The compatibility corpus: activities shaped like what Mastodon, Pleroma/Akkoma, Misskey,
Lemmy, PeerTube and Pixelfed send (tests/federation/corpus/*.json, written from their public
documentation, each file naming its source). Each goes through the real inbox, signed by the
scripted peer, and the job; the test checks what was stored against the file's `expect`.

Placeholders in the files: {peer} the peer's base URL, {actor} its actor alice, {kith} this
instance, {bo_post} a local post of bo's (for replies), {group} the peer's Group `baking`. bo
follows alice in every case, so a post is wanted here even when it names nobody. A file with
`serve` is an Announce by the Group (bo is in its community): the peer serves those
documents at their paths, and `expect.post` names the post that must be stored."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts.models import Account
from kith.communities.models import CommunityPost, Membership, MemberState
from kith.config import Settings
from kith.emojis.models import CustomEmoji
from kith.federation import remote_groups, uris
from kith.graph.models import Follow
from kith.media.models import MediaAttachment
from kith.posts.models import Mention, Poll, Post, PostTag, Tag
from kith.runtime import Runtime
from tests.federation.inbound import deliver, local, loopback, two_actor_peer
from tests.federation.local_http import json_document
from tests.federation.peer import Peer
from tests.world import person
from tests.world import post as local_post

pytestmark = pytest.mark.usefixtures("rt")
CORPUS = Path(__file__).parent / "corpus"
CASES = sorted(p.name for p in CORPUS.glob("*.json"))


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return loopback(settings)


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    async with two_actor_peer() as p:
        yield p


def load(name: str, values: dict[str, str]) -> dict[str, Any]:
    raw = (CORPUS / name).read_text()
    for key, value in values.items():
        raw = raw.replace("{" + key + "}", value)
    case: dict[str, Any] = json.loads(raw)
    return case


def test_corpus__covers_every_platform_the_issue_names() -> None:
    platforms = " ".join(json.loads((CORPUS / n).read_text())["platform"] for n in CASES)
    for name in ("Mastodon", "Pleroma", "Akkoma", "Misskey", "Lemmy", "PeerTube", "Pixelfed"):
        assert name in platforms
    for n in CASES:
        case = json.loads((CORPUS / n).read_text())
        assert case["written_from"].startswith("http"), n


@pytest.mark.parametrize("name", CASES)
async def test_corpus__activity_is_understood(
    name: str, db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    # Given bo, a post of his, and remote alice whom he follows
    bo = await person(db, "bo")
    bo_post = await local_post(db, bo, "Fresh bread today")
    like = peer.activity("alice", "Like", uris.post_uri(settings, "bo", bo_post.id))
    await deliver(settings, rt, peer, like)
    alice_uri = peer.actor_uri("alice")
    alice = await db.scalar(select(Account).where(Account.uri == alice_uri))
    assert alice is not None
    db.add(Follow(follower_id=bo.id, followee_id=alice.id))
    await db.commit()
    case = load(
        name,
        {
            "peer": peer.base,
            "actor": alice_uri,
            "group": peer.actor_uri("baking"),
            "kith": local("bo").rsplit("/users/", 1)[0],
            "bo_post": uris.post_uri(settings, "bo", bo_post.id),
        },
    )
    expect = case["expect"]
    if "serve" in case:  # a remote community's Group passes posts on: bo is in it
        await joined_remote_group(db, peer, bo, case["serve"])
    # When it arrives through the inbox
    outcome = await deliver(settings, rt, peer, case["activity"])
    # Then the outcome and what was stored are as expected
    assert outcome.startswith(expect["outcome"]), outcome
    if expect["outcome"] != "stored":
        return
    post_uri = expect.get("post") or case["activity"]["object"]["id"]
    stored = await db.scalar(select(Post).where(Post.uri == post_uri))
    assert stored is not None
    assert stored.account_id == alice.id
    if "serve" in case:  # in the community, and no boost by its Group
        assert await db.scalar(select(CommunityPost).where(CommunityPost.post_id == stored.id))
        assert stored.reblog_of_id is None
    await check(db, stored, expect, bo_post.id, bo.id)


async def joined_remote_group(
    db: AsyncSession, peer: Peer, bo: Account, serve: dict[str, dict[str, Any]]
) -> None:
    """The peer runs the Group `baking` (a Lemmy community) and serves the posts it will
    announce (the content of an Announce is never trusted: it is fetched); bo is a member."""
    peer.add_actor("baking", key=2, type="Group")
    for path, doc in serve.items():
        peer.server.routes[path] = json_document(doc)
    community = await remote_groups.find_or_resolve(db, peer.actor_uri("baking"))
    assert community is not None
    db.add(Membership(community_id=community.id, account_id=bo.id, state=MemberState.ACTIVE))
    await db.commit()


async def check(
    db: AsyncSession, stored: Post, expect: dict[str, Any], bo_post_id: int, bo_id: int
) -> None:
    if "visibility" in expect:
        assert stored.visibility == expect["visibility"]
    if "language" in expect:
        assert stored.language == expect["language"]
    for fragment in expect.get("content_contains", []):
        assert fragment in stored.content_html, stored.content_html
    for fragment in expect.get("content_excludes", []):
        assert fragment not in stored.content_html, stored.content_html
    assert "<script" not in stored.content_html
    if "spoiler_text" in expect:
        assert stored.spoiler_text == expect["spoiler_text"]
    if "sensitive" in expect:
        assert stored.sensitive is expect["sensitive"]
    if "tags" in expect:
        names = await db.scalars(
            select(Tag.name)
            .join(PostTag, PostTag.tag_id == Tag.id)
            .where(PostTag.post_id == stored.id)
        )
        assert sorted(names.all()) == sorted(expect["tags"])
    if expect.get("mentions_bo"):
        mention = await db.scalar(
            select(Mention).where(Mention.post_id == stored.id, Mention.account_id == bo_id)
        )
        assert mention is not None
    if expect.get("reply_to_bo"):
        assert stored.in_reply_to_id == bo_post_id
    if "attachments" in expect:
        rows = await db.scalars(
            select(MediaAttachment)
            .where(MediaAttachment.post_id == stored.id)
            .order_by(MediaAttachment.position)
        )
        got = [{"type": str(m.type), "description": m.description} for m in rows.all()]
        assert got == expect["attachments"]
    if "emojis" in expect:
        # Remembered under the author's domain, their images fetched by a job (the scripted
        # peer serves none: each is refused, and stays out of entities)
        author = await db.get(Account, stored.account_id)
        assert author is not None
        rows = await db.scalars(
            select(CustomEmoji)
            .where(CustomEmoji.domain == author.domain)
            .execution_options(populate_existing=True)
        )
        got = [{"shortcode": e.shortcode, "url": e.remote_url, "uri": e.uri} for e in rows]
        assert got == expect["emojis"]
    if "poll_options" in expect:
        poll = await db.scalar(select(Poll).where(Poll.post_id == stored.id))
        assert poll is not None and poll.options == expect["poll_options"]
