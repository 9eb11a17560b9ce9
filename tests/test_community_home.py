"""Communities' threads in their members' Home (`Membership.in_home`, a choice per community,
on when one joins): kept as Home feed candidates by the triggers of migration 0007 and decided
by `timelines.home_clause` when read, so the feed, the searched Home, the API, and the `user`
stream all agree, and none shows a post the policy hides."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy
from kith.accounts.models import Account
from kith.communities import moderation
from kith.communities import service as communities
from kith.communities.models import Community, MembershipModel
from kith.config import Settings
from kith.errors import ValidationFailed
from kith.graph import service as graph
from kith.mastodon_api.streaming import StreamSession
from kith.posts.models import Post
from kith.runtime import Runtime
from kith.timelines import feeds
from kith.timelines import service as timelines
from kith.timelines.shapes import ENTITIES
from tests.mastodon_api.conftest import bearer, token_for
from tests.test_community_posts import found, member, write
from tests.world import person, running_app

TOP = 2**63 - 1

VIEWERS = ("on", "off", "left", "banned", "pending", "stranger", "follower")


@dataclass
class Club:
    """A community with a writer's threads in each state, and people standing every way."""

    community: Community
    people: dict[str, Account]
    approved: Post
    waiting: Post
    removed: Post


async def club(db: AsyncSession, model: MembershipModel, *, feeds_first: bool) -> Club:
    """`owner` moderates; `writer` (a plain member, so their threads wait for approval)
    writes three threads: one approved, one still waiting, one removed. `on` keeps the
    community in Home, `off` turned it off, `left` left, `banned` was banned, `pending` asked
    to join (open communities let people in at once: there, `pending` is a stranger),
    `stranger` never came, `follower` follows the writer but is not a member. With
    `feeds_first`, everyone has a Home feed before anything happens (the triggers add the
    entries); otherwise the feeds are made at the end (the build adds them)."""
    names = ("owner", "writer", *VIEWERS)
    people = {n: await person(db, n) for n in names}
    owner = people["owner"]
    if feeds_first:
        for p in people.values():
            await feeds.build(db, p.id)
    c = await found(db, owner, "club", model, post_approval=True)
    for n in ("writer", "on", "off", "left", "banned"):
        await member(db, c, people[n], owner)
    if model != MembershipModel.OPEN:
        await communities.join(db, people["pending"].id, c, answer="please")
    await communities.set_in_home(db, people["off"].id, c, False)
    await graph.follow(db, people["follower"].id, people["writer"].id)
    writer = people["writer"]
    approved = await write(db, writer, "approved thread", c)
    waiting = await write(db, writer, "waiting thread", c)
    removed = await write(db, writer, "removed thread", c)
    await moderation.approve_post(db, owner.id, c, approved.id)
    await moderation.approve_post(db, owner.id, c, removed.id)
    await moderation.remove_post(db, owner.id, c, removed.id, reason="off topic")
    await communities.leave(db, people["left"].id, c)
    await moderation.ban(db, owner.id, c, people["banned"].id, reason="spam")
    if not feeds_first:
        for p in people.values():
            await feeds.build(db, p.id)
    return Club(c, people, approved, waiting, removed)


async def home_of(db: AsyncSession, who: Account) -> set[int]:
    """The post ids of `who`'s Home, read from their feed, after checking that searching
    (no feed) and the live streams' rule (`home_audience`) give the same."""
    me = policy.Viewer(who.id)
    from_feed, floor = await feeds.read(db, me, ceiling=TOP, n=40, shape=ENTITIES)
    assert floor is not None, "no feed"
    searched = await timelines._searched_home(db, me, top=TOP, n=40, shape=ENTITIES)
    assert [p.id for p in from_feed] == [p.id for p in searched]
    ids = {p.id for p in from_feed}
    for post_id in ids:
        assert await timelines.home_audience(db, post_id, [who.id]) == {who.id}
    return ids


def expected(w: Club, who: str, model: MembershipModel) -> set[int]:
    """Only `on` (and the moderating owner, a member too) get the approved thread from the
    community; the follower gets it from following, unless the community is private."""
    if who in ("on", "owner"):
        return {w.approved.id}
    if who == "follower" and model != MembershipModel.PRIVATE:
        return {w.approved.id}
    return set()


MODELS = (MembershipModel.OPEN, MembershipModel.APPROVAL, MembershipModel.PRIVATE)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("feeds_first", (True, False), ids=("triggers", "build"))
async def test_matrix__only_members_who_keep_it_get_approved_threads(
    db: AsyncSession, model: MembershipModel, feeds_first: bool
) -> None:
    # Given a community with threads in every state and people standing every way
    w = await club(db, model, feeds_first=feeds_first)
    community_posts = {w.approved.id, w.waiting.id, w.removed.id}
    # Then each one's Home holds exactly what the setting, the membership and the policy allow
    for who in ("owner", *VIEWERS):
        got = await home_of(db, w.people[who]) & community_posts
        assert got == expected(w, who, model), who
    # And the writer's own Home has all three (their own posts, as always)
    assert await home_of(db, w.people["writer"]) == community_posts


@pytest.mark.parametrize("model", MODELS)
async def test_setting__off_then_on_again_and_rejoining(
    db: AsyncSession, model: MembershipModel
) -> None:
    w = await club(db, model, feeds_first=True)
    on, off, left = w.people["on"], w.people["off"], w.people["left"]
    # When `on` turns it off, the thread leaves their Home; `off` turning it on brings it
    await communities.set_in_home(db, on.id, w.community, False)
    await communities.set_in_home(db, off.id, w.community, True)
    assert w.approved.id not in await home_of(db, on)
    assert w.approved.id in await home_of(db, off)
    assert await communities.in_home(db, on.id, w.community) is False
    assert await communities.in_home(db, off.id, w.community) is True
    # And someone who left and comes back has it again (on: the default when joining)
    await member(db, w.community, left, w.people["owner"])
    assert await communities.in_home(db, left.id, w.community) is True
    assert w.approved.id in await home_of(db, left)


async def test_setting__a_pending_request_approved_brings_the_threads(
    db: AsyncSession,
) -> None:
    w = await club(db, MembershipModel.APPROVAL, feeds_first=True)
    pending = w.people["pending"]
    assert w.approved.id not in await home_of(db, pending)
    await moderation.approve(db, w.people["owner"].id, w.community, pending.id)
    assert w.approved.id in await home_of(db, pending)


async def test_waiting_thread__approved_later_enters_home_without_a_new_entry(
    db: AsyncSession,
) -> None:
    w = await club(db, MembershipModel.PRIVATE, feeds_first=True)
    on = w.people["on"]
    await moderation.approve_post(db, w.people["owner"].id, w.community, w.waiting.id)
    assert w.waiting.id in await home_of(db, on)
    await moderation.restore_post(db, w.people["owner"].id, w.community, w.removed.id)
    assert w.removed.id in await home_of(db, on)


@pytest.mark.parametrize("who", ("stranger", "pending", "banned", "left"))
async def test_setting__refused_to_anyone_not_an_active_member_nothing_written(
    db: AsyncSession, who: str
) -> None:
    w = await club(db, MembershipModel.PRIVATE, feeds_first=True)
    person_ = w.people[who]
    with pytest.raises(ValidationFailed) as err:
        await communities.set_in_home(db, person_.id, w.community, True)
    assert err.value.field == "in_home"
    assert await communities.in_home(db, person_.id, w.community) is None
    assert w.approved.id not in await home_of(db, person_)


async def test_replies__follow_homes_rule_and_cross_posts_show_once(db: AsyncSession) -> None:
    # Given two open communities `me` keeps in Home, and a thread cross-posted to both
    owner, me, ann, bob = [await person(db, n) for n in ("owner", "me", "ann", "bob")]
    await feeds.build(db, me.id)
    one = await found(db, owner, "one")
    two = await found(db, owner, "two")
    for c in (one, two):
        for p in (me, ann, bob):
            await communities.join(db, p.id, c)
    thread = await write(db, ann, "in both", one, two)
    # When bob (whom I don't follow) replies to ann (whom I don't follow) in the thread
    reply = await write(db, bob, "@ann a reply", reply_to=thread)
    # Then the thread is in my Home once, the reply is not (Home shows replies of people I
    # follow only, as without communities)
    home = [
        p.id
        for p in (await timelines.home(db, policy.Viewer(me.id), limit=40, shape=ENTITIES)).posts
    ]
    assert home.count(thread.id) == 1 and reply.id not in home
    # And when I follow bob and ann, the reply is in (Home's usual rule for replies)
    await graph.follow(db, me.id, bob.id)
    await graph.follow(db, me.id, ann.id)
    assert reply.id in await home_of(db, me)


async def api_home(api: httpx.AsyncClient, token: str) -> set[int]:
    r = await api.get("/api/v1/timelines/home?limit=40", headers=bearer(token))
    assert r.status_code == 200, r.text
    return {int(s["id"]) for s in r.json()}


@pytest.mark.parametrize("model", MODELS)
async def test_api__home_timeline_follows_the_same_rule(
    db: AsyncSession, settings: Settings, model: MembershipModel
) -> None:
    w = await club(db, model, feeds_first=False)
    community_posts = {w.approved.id, w.waiting.id, w.removed.id}
    async with running_app(settings) as api:
        for who in ("owner", *VIEWERS):
            token = await token_for(db, w.people[who])
            got = await api_home(api, token) & community_posts
            assert got == expected(w, who, model), who


async def test_stream__a_new_thread_reaches_the_user_streams_of_members_who_keep_it(
    db: AsyncSession, rt: Runtime
) -> None:
    w = await club(db, MembershipModel.PRIVATE, feeds_first=True)
    sessions: dict[str, Any] = {}
    for who in ("on", "off", "stranger", "follower"):
        session = StreamSession(rt, policy.Viewer(w.people[who].id))
        session.subscribe("user", None)
        sessions[who] = session
    post = await write(db, w.people["owner"], "a moderator's thread", w.community)
    event = {"type": "post.created", "post_id": post.id, "account_id": post.account_id}
    sent = {who: await s.outgoing(event) for who, s in sessions.items()}
    assert [name for _, name, _ in sent["on"]] == ["update"]
    assert sent["off"] == sent["stranger"] == sent["follower"] == []
    # The hub's batch for many streams answers the same
    ids = [w.people[n].id for n in sessions]
    assert await timelines.home_audience(db, post.id, ids) == {w.people["on"].id}


async def test_stream__approving_a_waiting_thread_announces_it(
    db: AsyncSession, rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = await club(db, MembershipModel.OPEN, feeds_first=False)
    sent: list[tuple[str, dict[str, Any]]] = []

    async def record(channel: str, event: dict[str, Any]) -> None:
        sent.append((channel, event))

    monkeypatch.setattr(rt.bus, "publish", record)
    await moderation.approve_post(db, w.people["owner"].id, w.community, w.waiting.id)
    posts = [e for ch, e in sent if ch == "posts"]
    assert posts == [
        {"type": "post.created", "post_id": w.waiting.id, "account_id": w.waiting.account_id}
    ]
