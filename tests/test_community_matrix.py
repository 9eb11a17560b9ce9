"""The visibility matrix of community posts: each kind of community post × each kind of
viewer × every service-level surface built so far. Like tests/test_policy_matrix.py, the
tables are written by hand from the product rules (docs/communities.md), never computed by
calling the policy.

Posts (all public, by "author", mentioning every signed-in viewer but the author, #cmatrix):
  open      a thread in an open community
  approval  a thread in a community one must be approved into
  private   a thread in a private community
  queued    a thread waiting in an open community's approval queue
  removed   a thread a moderator removed from an open community (its only one)

Viewers (communities are all owned by "owner", who is not a viewer; every signed-in viewer
follows the author, and so does a remote account, "faraway"):
  anonymous  nobody signed in
  author     a member everywhere, wrote the posts
  member     a member everywhere
  nonmember  signed in, in no community
  pending    asked to join the approval and private communities (a non-member elsewhere)
  banned     was a member everywhere, then banned everywhere
  moderator  a moderator everywhere
  admin      an instance admin in no community (no extra read access)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy
from kith.accounts.models import Account
from kith.communities import feeds, moderation
from kith.communities import service as communities
from kith.communities.models import Community, MembershipModel, Role
from kith.communities.service import CommunityInput
from kith.config import Settings
from kith.db import new_id
from kith.errors import Forbidden, NotFound
from kith.federation import outbound
from kith.federation.models import RemoteActor
from kith.graph import service as graph
from kith.graph.models import Follow
from kith.notifications import service as notifications
from kith.posts import service as posts
from kith.posts.models import Post
from kith.posts.service import PostInput
from kith.runtime import Runtime
from kith.search import service as search
from kith.timelines import service as timelines
from kith.timelines.shapes import ENTITIES
from kith.web import stream
from tests.conftest import _wipe
from tests.world import person

KINDS = ("open", "approval", "private", "queued", "removed")
VIEWERS = ("anonymous", "author", "member", "nonmember", "pending", "banned", "moderator", "admin")
USERNAMES = {"admin": "warden", "moderator": "keeper"}  # both reserved usernames

# Y = sees it here, . = does not, ~ = the surface does not exist for this viewer.
#
#            anonymous author member nonmember pending banned moderator admin
OPENS_BY_LINK = {
    "open": "Y         Y      Y      Y         Y       Y      Y         Y",
    "approval": "Y         Y      Y      Y         Y       Y      Y         Y",
    "private": ".         Y      Y      .         .       .      Y         .",
    "queued": ".         Y      .      .         .       .      Y         .",
    "removed": ".         Y      .      .         .       .      Y         .",
}
# Public, Local and hashtag timelines: gated posts never, not even for members.
IN_PUBLIC_LISTS = {
    "open": "Y         Y      Y      Y         Y       Y      Y         Y",
    "approval": "Y         Y      Y      Y         Y       Y      Y         Y",
    "private": ".         .      .      .         .       .      .         .",
    "queued": ".         .      .      .         .       .      .         .",
    "removed": ".         .      .      .         .       .      .         .",
}
# The community's feed (new): approved threads; a private one's for its members alone.
IN_COMMUNITY_FEED = {
    "open": "Y         Y      Y      Y         Y       Y      Y         Y",
    "approval": "Y         Y      Y      Y         Y       Y      Y         Y",
    "private": ".         Y      Y      .         .       .      Y         .",
    "queued": ".         .      .      .         .       .      .         .",
    "removed": ".         .      .      .         .       .      .         .",
}
# My communities: approved threads of the communities one is an active member of.
IN_MY_COMMUNITIES = {
    "open": "~         Y      Y      .         .       .      Y         .",
    "approval": "~         Y      Y      .         .       .      Y         .",
    "private": "~         Y      Y      .         .       .      Y         .",
    "queued": "~         .      .      .         .       .      .         .",
    "removed": "~         .      .      .         .       .      .         .",
}
# Home (everyone follows the author): the policy's rule, so the community's gate applies.
IN_HOME = {
    "open": "~         Y      Y      Y         Y       Y      Y         Y",
    "approval": "~         Y      Y      Y         Y       Y      Y         Y",
    "private": "~         Y      Y      .         .       .      Y         .",
    "queued": "~         Y      .      .         .       .      Y         .",
    "removed": "~         Y      .      .         .       .      Y         .",
}
# Search: public posts for all; a gated post only for its author.
IN_SEARCH = {
    "open": "Y         Y      Y      Y         Y       Y      Y         Y",
    "approval": "Y         Y      Y      Y         Y       Y      Y         Y",
    "private": ".         Y      .      .         .       .      .         .",
    "queued": ".         Y      .      .         .       .      .         .",
    "removed": ".         Y      .      .         .       .      .         .",
}
# Mention notifications, as listed now: only for those who may see the post now.
NOTIFIED = {
    "open": "~         .      Y      Y         Y       Y      Y         Y",
    "approval": "~         .      Y      Y         Y       Y      Y         Y",
    "private": "~         .      Y      .         .       .      Y         .",
    "queued": "~         .      .      .         .       .      Y         .",
    "removed": "~         .      .      .         .       .      Y         .",
}
# policy.can_see_community (its posts and members), per community.
SEES_COMMUNITY = {
    "open": "Y         Y      Y      Y         Y       Y      Y         Y",
    "approval": "Y         Y      Y      Y         Y       Y      Y         Y",
    "private": ".         Y      Y      .         .       .      Y         .",
}


def expected(table: dict[str, str], kind: str, who: str) -> bool | None:
    cells = table[kind].split()
    assert len(cells) == len(VIEWERS), f"bad row {kind!r}"
    cell = cells[VIEWERS.index(who)]
    return None if cell == "~" else cell == "Y"


@dataclass
class World:
    rt: Runtime
    people: dict[str, Account]
    community: dict[str, Community]  # kind -> the community its post is in
    post: dict[str, Post]  # kind -> the author's thread

    def viewer(self, who: str) -> policy.Viewer:
        if who == "anonymous":
            return policy.ANONYMOUS
        return policy.Viewer(self.people[who].id, is_admin=who == "admin")


async def _build(rt: Runtime) -> World:
    async with rt.sessions() as db:
        admin = await person(db, "warden", admin=True)
        owner = await person(db, "owner")
        people = {"admin": admin}
        for name in VIEWERS[1:-1]:
            people[name] = await person(db, USERNAMES.get(name, name))
        for name, account in people.items():
            if name != "author":
                await graph.follow(db, account.id, people["author"].id)
        await _remote_follower(db, people["author"])
        models = {
            "open": (MembershipModel.OPEN, False),
            "approval": (MembershipModel.APPROVAL, False),
            "private": (MembershipModel.PRIVATE, False),
            "queued": (MembershipModel.OPEN, True),
        }
        community: dict[str, Community] = {}
        for kind, (model, queue) in models.items():
            c = await communities.create_community(
                db,
                owner.id,
                f"c_{kind}",
                CommunityInput(name=kind, membership=model, post_approval=queue),
            )
            community[kind] = c
            for name in ("author", "member", "banned", "moderator"):
                await communities.join(db, people[name].id, c)
                if model != MembershipModel.OPEN:
                    await moderation.approve(db, owner.id, c, people[name].id)
            if model != MembershipModel.OPEN:
                await communities.join(db, people["pending"].id, c)
            await moderation.set_role(db, owner.id, c, people["moderator"].id, Role.MODERATOR)
            await moderation.ban(db, owner.id, c, people["banned"].id)
        community["removed"] = community["open"]
        mentions = " ".join(f"@{USERNAMES.get(n, n)}" for n in VIEWERS[2:])
        post: dict[str, Post] = {}
        for kind in KINDS:
            data = PostInput(
                source=f"Matrix {kind} {mentions} #cmatrix", community_ids=[community[kind].id]
            )
            post[kind] = await posts.create_post(db, people["author"], data)
        await moderation.remove_post(db, owner.id, community["removed"], post["removed"].id)
        return World(rt=rt, people=people, community=community, post=post)


FARAWAY_INBOX = "https://far.example/inbox"


async def _remote_follower(db: AsyncSession, author: Account) -> None:
    """A remote account following the author, as the inbox would have stored it."""
    uri = "https://far.example/users/faraway"
    remote = Account(
        id=new_id(), username="faraway", username_key="faraway", domain="far.example", uri=uri
    )
    db.add(remote)
    await db.flush()
    db.add(
        RemoteActor(account_id=remote.id, inbox_url=f"{uri}/inbox", shared_inbox_url=FARAWAY_INBOX)
    )
    db.add(Follow(follower_id=remote.id, followee_id=author.id))
    await db.commit()


@pytest.fixture(scope="module")
async def world(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[World]:
    settings = Settings(
        database_url=database_url,
        var_dir=Path(tmp_path_factory.mktemp("cmatrix")),
        secret_key="test-secret-key-not-for-production",
        domain="kith.test",
        run_worker=False,
        redis_url="",
    )
    rt = Runtime.from_settings(settings)
    await _wipe(rt)
    yield await _build(rt)
    await rt.close()


async def opens_by_link(w: World, kind: str, who: str) -> bool:
    async with w.rt.sessions() as db:
        try:
            await posts.get_visible_post(db, w.viewer(who), w.post[kind].id)
        except NotFound:
            return False
        return True


async def can_see_post(w: World, kind: str, who: str) -> bool:
    async with w.rt.sessions() as db:
        return await policy.can_see_post(db, w.viewer(who), w.post[kind])


async def public_timeline(w: World, kind: str, who: str) -> bool:
    async with w.rt.sessions() as db:
        page = await timelines.public(db, w.viewer(who), limit=40, shape=ENTITIES)
    return w.post[kind].id in {p.id for p in page.posts}


async def local_timeline(w: World, kind: str, who: str) -> bool:
    async with w.rt.sessions() as db:
        page = await timelines.local(db, w.viewer(who), limit=40)
    return w.post[kind].id in {p.id for p in page.posts}


async def hashtag_timeline(w: World, kind: str, who: str) -> bool:
    async with w.rt.sessions() as db:
        page = await timelines.hashtag(db, w.viewer(who), "cmatrix", limit=40, shape=ENTITIES)
    return w.post[kind].id in {p.id for p in page.posts}


async def community_feed(w: World, kind: str, who: str) -> bool:
    async with w.rt.sessions() as db:
        community = await communities.get_community(db, w.community[kind].id)
        seen = set()
        for sort in ("new", "active", "top"):
            try:
                page = await feeds.community_feed(db, w.viewer(who), community, sort=sort)
            except Forbidden:
                return False
            seen.add(w.post[kind].id in {p.id for p in page.posts})
    assert len(seen) == 1, "the three orders disagree on who sees the post"
    return seen.pop()


async def my_communities(w: World, kind: str, who: str) -> bool:
    async with w.rt.sessions() as db:
        page = await feeds.my_communities(db, w.viewer(who), limit=40)
    return w.post[kind].id in {p.id for p in page.posts}


async def home(w: World, kind: str, who: str) -> bool:
    async with w.rt.sessions() as db:
        page = await timelines.home(db, w.viewer(who), limit=40, shape=ENTITIES)
    return w.post[kind].id in {p.id for p in page.posts}


async def _wants(w: World, kind: str, who: str, feed: str) -> bool:
    event = {"type": "post.created", "post_id": w.post[kind].id, "account_id": 0}
    async with w.rt.sessions() as db:
        return await stream._wants(db, w.viewer(who), feed, event)


async def stream_home(w: World, kind: str, who: str) -> bool:
    return await _wants(w, kind, who, "home")


async def stream_local(w: World, kind: str, who: str) -> bool:
    return await _wants(w, kind, who, "local")


async def search_posts(w: World, kind: str, who: str) -> bool:
    async with w.rt.sessions() as db:
        found = await search.search_posts(db, w.viewer(who), "Matrix", limit=40)
    return w.post[kind].id in {p.id for p in found}


async def mention_notifications(w: World, kind: str, who: str) -> bool:
    async with w.rt.sessions() as db:
        rows = await notifications.list_notifications(
            db, w.viewer(who), types=["mention"], limit=200
        )
    return w.post[kind].id in {n.post_id for n in rows}


SURFACES = {
    "posts.get_visible_post": (opens_by_link, OPENS_BY_LINK),
    "policy.can_see_post": (can_see_post, OPENS_BY_LINK),
    "public timeline": (public_timeline, IN_PUBLIC_LISTS),
    "local timeline": (local_timeline, IN_PUBLIC_LISTS),
    "hashtag timeline": (hashtag_timeline, IN_PUBLIC_LISTS),
    "community feed": (community_feed, IN_COMMUNITY_FEED),
    "my communities": (my_communities, IN_MY_COMMUNITIES),
    "home": (home, IN_HOME),
    "stream home filter": (stream_home, IN_HOME),
    "stream local filter": (stream_local, IN_PUBLIC_LISTS),
    "search": (search_posts, IN_SEARCH),
    "mention notifications": (mention_notifications, NOTIFIED),
}

CASES = [
    pytest.param(surface, kind, who, id=f"{surface}-{kind}-{who}")
    for surface, (_, table) in SURFACES.items()
    for kind in KINDS
    for who in VIEWERS
    if expected(table, kind, who) is not None
]


@pytest.mark.parametrize(("surface", "kind", "who"), CASES)
async def test_community_visibility_matrix(world: World, surface: str, kind: str, who: str) -> None:
    # Given the world above, when `who` looks at `surface`
    check, table = SURFACES[surface]
    seen = await check(world, kind, who)
    # Then they see the post of this kind exactly when the table says so
    want = expected(table, kind, who)
    assert seen == want, f"{who} {'should' if want else 'should not'} see the {kind} post"


@pytest.mark.parametrize(
    ("kind", "who"), [(k, w) for k in SEES_COMMUNITY for w in VIEWERS], ids=lambda x: str(x)
)
async def test_who_sees_a_community(world: World, kind: str, who: str) -> None:
    async with world.rt.sessions() as db:
        community = await communities.get_community(db, world.community[kind].id)
        seen = await policy.can_see_community(db, world.viewer(who), community)
    assert seen == expected(SEES_COMMUNITY, kind, who)


# Viewer-independent surfaces: trends, and federation (the inboxes a post's activities go to).
TRENDABLE = {"open": True, "approval": True, "private": False, "queued": False, "removed": False}
DELIVERED = TRENDABLE


@pytest.mark.parametrize("kind", KINDS)
async def test_trends__count_only_ungated_posts(world: World, kind: str) -> None:
    async with world.rt.sessions() as db:
        found = await db.scalar(
            select(Post.id).where(Post.id == world.post[kind].id, policy.trendable_clause(Post))
        )
    assert (found is not None) == TRENDABLE[kind]


@pytest.mark.parametrize("kind", KINDS)
async def test_federation__a_remote_follower_who_is_no_member_gets_no_gated_post(
    world: World, kind: str
) -> None:
    # Given a remote account following the author (no remote members exist yet)
    async with world.rt.sessions() as db:
        post = await db.get(Post, world.post[kind].id)
        assert post is not None
        # When the post's activities are addressed, then only ungated posts reach its server
        inboxes = await outbound.post_inboxes(db, post)
    assert (FARAWAY_INBOX in inboxes) == DELIVERED[kind]
