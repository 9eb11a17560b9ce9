"""Posting into a community by mentioning it (`@bikes`, `@bikes@our.domain`, `!bikes`,
`!bikes@our.domain`): the same rules as choosing it (`communities.posting.addressed`), the
mention linking to the community's page, and a clear refusal with nothing written."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy, text
from kith.accounts.models import Account
from kith.communities import moderation, posting
from kith.communities import service as communities
from kith.communities.models import (
    Community,
    CommunityGate,
    CommunityPost,
    CommunityPostState,
    MembershipModel,
)
from kith.communities.service import CommunityInput
from kith.config import Settings
from kith.errors import ValidationFailed
from kith.posts import service as posts
from kith.posts.models import Mention, Post, Visibility
from kith.posts.service import PostInput
from tests.mastodon_api.conftest import bearer, token_for
from tests.world import browser, person, running_app, viewer


async def found(
    db: AsyncSession,
    owner: Account,
    handle: str,
    membership: MembershipModel = MembershipModel.OPEN,
    **fields: Any,
) -> Community:
    data = CommunityInput(name=handle.title(), membership=membership, **fields)
    return await communities.create_community(db, owner.id, handle, data)


async def member(db: AsyncSession, c: Community, who: Account, owner: Account) -> None:
    _, code = await communities.create_invite(db, owner.id, c)
    await communities.join(db, who.id, c, invite_code=code)


async def write(
    db: AsyncSession,
    author: Account,
    text: str,
    *,
    visibility: Visibility = Visibility.PUBLIC,
    reply_to: Post | None = None,
    to: list[Community] | None = None,
) -> Post:
    return await posts.create_post(
        db,
        author,
        PostInput(
            source=text,
            visibility=visibility,
            in_reply_to_id=reply_to.id if reply_to else None,
            community_ids=[c.id for c in to or []],
        ),
    )


async def rows_of(db: AsyncSession, p: Post) -> dict[int, str]:
    """{community id: state} of a post's community rows."""
    rows = await db.execute(
        select(CommunityPost.community_id, CommunityPost.state).where(CommunityPost.post_id == p.id)
    )
    return dict(rows.all())  # type: ignore[arg-type]


async def post_count(db: AsyncSession) -> int:
    return int(await db.scalar(select(func.count()).select_from(Post)) or 0)


@pytest.fixture
async def world(db: AsyncSession) -> dict[str, Any]:
    owner = await person(db, "olga")
    ana = await person(db, "ana")
    stranger = await person(db, "sam")
    bikes = await found(db, owner, "Bikes")
    await communities.join(db, ana.id, bikes)
    return {"owner": owner, "ana": ana, "stranger": stranger, "bikes": bikes}


# --- the four ways to mention -------------------------------------------------------------


@pytest.mark.parametrize(
    "mention", ["@bikes", "@Bikes", "@bikes@kith.test", "!bikes", "!BIKES@kith.test"]
)
async def test_mention__a_member_posts_into_the_community_and_it_links_to_its_page(
    db: AsyncSession, world: dict[str, Any], mention: str
) -> None:
    # Given ana, a member of !bikes
    ana, bikes = world["ana"], world["bikes"]
    # When she writes a public post mentioning it
    p = await write(db, ana, f"{mention} who fixes wheels in town?")
    # Then it is a thread in the community, and the mention links to the community's page
    assert await rows_of(db, p) == {bikes.id: CommunityPostState.APPROVED}
    assert 'href="http://kith.test/c/Bikes" class="u-url mention"' in p.content_html
    shown = await posting.communities_of(db, [p.id])
    assert [c.id for c in shown[p.id]] == [bikes.id]


async def test_mention__lemmy_sigil_renders_as_bang_and_an_account_mention_is_unchanged(
    db: AsyncSession, world: dict[str, Any]
) -> None:
    ana, owner = world["ana"], world["owner"]
    p = await write(db, ana, "!bikes and @olga and @nobody")
    assert "!<span>bikes</span></a>" in p.content_html
    assert 'href="http://kith.test/@olga" class="u-url mention"' in p.content_html
    assert "@nobody" in p.content_html and "/c/nobody" not in p.content_html
    # olga is mentioned as a person (notified as usual), not as a community
    assert owner.id in {m.id for m in (await posts_mentions(db, p))}


async def posts_mentions(db: AsyncSession, p: Post) -> list[Account]:
    rows = await db.scalars(
        select(Account)
        .join(Mention, Mention.account_id == Account.id)
        .where(Mention.post_id == p.id)
    )
    return list(rows.all())


async def test_mention__same_community_named_twice_and_chosen_is_one_thread(
    db: AsyncSession, world: dict[str, Any]
) -> None:
    ana, bikes = world["ana"], world["bikes"]
    p = await write(db, ana, "@bikes !bikes !bikes@kith.test", to=[bikes])
    assert await rows_of(db, p) == {bikes.id: CommunityPostState.APPROVED}


async def test_mention__another_servers_community_is_left_alone(
    db: AsyncSession, world: dict[str, Any]
) -> None:
    # !bikes@elsewhere.example is not ours: plain text, not addressed (remote Groups are
    # federation's to resolve)
    p = await write(db, world["stranger"], "see !bikes@elsewhere.example")
    assert await rows_of(db, p) == {}
    assert "!bikes@elsewhere.example" in p.content_html and "<a" not in p.content_html


# --- refusals: the same rules as choosing the community ------------------------------------


async def test_mention__a_non_member_is_refused_naming_the_community_and_nothing_is_written(
    db: AsyncSession, world: dict[str, Any]
) -> None:
    before = await post_count(db)
    with pytest.raises(ValidationFailed) as refused:
        await write(db, world["stranger"], "Anyone up for a ride? @bikes")
    assert refused.value.field == "status"
    assert "!Bikes" in refused.value.message and "join it first" in refused.value.message
    assert "Mentioning a community posts to it" in refused.value.message
    assert await post_count(db) == before


async def test_mention__a_banned_person_is_refused(db: AsyncSession, world: dict[str, Any]) -> None:
    owner, ana, bikes = world["owner"], world["ana"], world["bikes"]
    await moderation.ban(db, owner.id, bikes, ana.id, reason="spam")
    before = await post_count(db)
    with pytest.raises(ValidationFailed, match="banned from !Bikes"):
        await write(db, ana, "!bikes I'm back")
    assert await post_count(db) == before


@pytest.mark.parametrize(
    "model", [MembershipModel.APPROVAL, MembershipModel.INVITE, MembershipModel.PRIVATE]
)
async def test_mention__every_membership_model_lets_members_in_and_keeps_others_out(
    db: AsyncSession, world: dict[str, Any], model: MembershipModel
) -> None:
    owner, ana, sam = world["owner"], world["ana"], world["stranger"]
    c = await found(db, owner, "club", model)
    await member(db, c, ana, owner)
    if model != MembershipModel.INVITE:
        await communities.join(db, sam.id, c, answer="please")  # a request, still pending
    # A member's mention makes a thread there
    p = await write(db, ana, "@club meeting at 6")
    assert await rows_of(db, p) == {c.id: CommunityPostState.APPROVED}
    if model == MembershipModel.PRIVATE:
        refreshed = await db.get(Post, p.id)
        assert refreshed is not None and refreshed.community_gate == CommunityGate.MEMBERS
    # Someone not in (or only asking) is refused
    with pytest.raises(ValidationFailed, match="Only members can post in !club"):
        await write(db, sam, "!club hello?")


async def test_mention__post_approval_puts_the_thread_in_the_queue(
    db: AsyncSession, world: dict[str, Any]
) -> None:
    owner, ana = world["owner"], world["ana"]
    c = await found(db, owner, "quiet", post_approval=True)
    await communities.join(db, ana.id, c)
    p = await write(db, ana, "@quiet a thread for the moderators to approve")
    assert await rows_of(db, p) == {c.id: CommunityPostState.PENDING}
    # not visible to a stranger while it waits
    assert not await policy.can_see_post(db, viewer(world["stranger"]), p)


async def test_mention__at_most_five_communities_counting_the_chosen_ones(
    db: AsyncSession, world: dict[str, Any]
) -> None:
    owner, ana, bikes = world["owner"], world["ana"], world["bikes"]
    others = [await found(db, owner, f"c{i}") for i in range(5)]
    for c in others:
        await communities.join(db, ana.id, c)
    # Five (one chosen, four mentioned) are fine
    p = await write(db, ana, "@c0 @c1 @c2 @c3 news", to=[bikes])
    assert len(await rows_of(db, p)) == 5
    # Six are refused, with nothing written
    before = await post_count(db)
    with pytest.raises(ValidationFailed, match="at most 5 communities") as refused:
        await write(db, ana, "@c0 @c1 @c2 @c3 @c4 news", to=[bikes])
    assert refused.value.field == "status"
    assert await post_count(db) == before


async def test_mention__a_private_community_mentioned_with_another_is_refused(
    db: AsyncSession, world: dict[str, Any]
) -> None:
    owner, ana = world["owner"], world["ana"]
    secret = await found(db, owner, "secret", MembershipModel.PRIVATE)
    await member(db, secret, ana, owner)
    with pytest.raises(ValidationFailed, match="private community's posts stay in it"):
        await write(db, ana, "@secret and @bikes both meet tonight")


# --- when a mention only names a community -------------------------------------------------


@pytest.mark.parametrize("visibility", [Visibility.PRIVATE, Visibility.DIRECT])
async def test_mention__a_followers_only_or_direct_post_only_links_the_community(
    db: AsyncSession, world: dict[str, Any], visibility: Visibility
) -> None:
    # Given sam, who is not a member: a post for a few people merely names the community
    p = await write(db, world["stranger"], "@ana have you seen @bikes?", visibility=visibility)
    assert await rows_of(db, p) == {}
    assert 'href="http://kith.test/c/Bikes"' in p.content_html


async def test_mention__a_reply_goes_to_its_threads_communities_not_the_ones_it_names(
    db: AsyncSession, world: dict[str, Any]
) -> None:
    owner, ana, sam, bikes = world["owner"], world["ana"], world["stranger"], world["bikes"]
    other = await found(db, owner, "other")
    thread = await write(db, ana, "@bikes flat tyre help")
    # A reply naming the thread's community and another one (sam is in neither)
    reply = await write(db, sam, "@ana @bikes try @other", reply_to=thread)
    rows = await rows_of(db, reply)
    assert rows == {bikes.id: CommunityPostState.APPROVED}  # open: anyone may reply
    assert other.id not in rows
    # A reply outside any community stays outside
    plain = await write(db, sam, "a plain post")
    assert await rows_of(db, await write(db, ana, "@bikes!", reply_to=plain)) == {}


async def test_mention__an_edit_links_the_community_but_moves_nothing(
    db: AsyncSession, world: dict[str, Any]
) -> None:
    sam = world["stranger"]
    p = await write(db, sam, "a ride on sunday")
    edited = await posts.edit_post(db, viewer(sam), p.id, PostInput(source="a ride @bikes"))
    assert 'href="http://kith.test/c/Bikes"' in edited.content_html
    assert await rows_of(db, edited) == {}


# --- the edges: web composer and API ------------------------------------------------------


async def test_web_composer__mention_posts_for_a_member_and_is_a_form_error_for_others(
    db: AsyncSession, settings: Settings, world: dict[str, Any]
) -> None:
    bikes = world["bikes"]
    async with browser(settings) as b:
        await b.sign_in("ana")
        r = await b.post("/posts", {"status": "!bikes saddle for sale", "visibility": "public"})
        assert r.status_code == 303
    p = await db.scalar(select(Post).where(Post.source == "!bikes saddle for sale"))
    assert p is not None and await rows_of(db, p) == {bikes.id: CommunityPostState.APPROVED}
    async with browser(settings) as b:
        await b.sign_in("sam")
        before = await post_count(db)
        r = await b.post("/posts", {"status": "@bikes anyone?", "visibility": "public"})
        assert r.status_code == 422
        assert "Only members can post in !Bikes" in r.text
        assert "@bikes anyone?" in r.text  # the text comes back in the form
        assert await post_count(db) == before


async def test_web_community_composer__mentioning_a_second_community_one_is_not_in(
    db: AsyncSession, settings: Settings, world: dict[str, Any]
) -> None:
    owner = world["owner"]
    await found(db, owner, "roads")
    async with browser(settings) as b:
        await b.sign_in("ana")
        before = await post_count(db)
        r = await b.post("/c/bikes/posts", {"status": "cross to @roads"})
        assert r.status_code == 422 and "Only members can post in !roads" in r.text
        assert await post_count(db) == before


async def test_api_status__mention_posts_for_a_member_and_422_names_the_community_otherwise(
    db: AsyncSession, settings: Settings, world: dict[str, Any]
) -> None:
    async with running_app(settings) as api:
        await _api_story(db, api, world)


async def _api_story(db: AsyncSession, api: httpx.AsyncClient, world: dict[str, Any]) -> None:
    bikes = world["bikes"]
    ana_token = await token_for(db, world["ana"])
    sam_token = await token_for(db, world["stranger"])
    r = await api.post(
        "/api/v1/statuses", json={"status": "@bikes ride at 9"}, headers=bearer(ana_token)
    )
    assert r.status_code == 200, r.text
    assert 'href="http://kith.test/c/Bikes"' in r.json()["content"]
    p = await db.get(Post, int(r.json()["id"]))
    assert p is not None and await rows_of(db, p) == {bikes.id: CommunityPostState.APPROVED}
    before = await post_count(db)
    r = await api.post(
        "/api/v1/statuses", json={"status": "!bikes@kith.test hi"}, headers=bearer(sam_token)
    )
    assert r.status_code == 422
    assert "!Bikes" in r.json()["error"] and "join it first" in r.json()["error"]
    assert await post_count(db) == before


# --- the text: how `!name` is read -----------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "communities_", "mentions"),
    [
        ("!bikes and !Roads@Kith.Test", ("bikes", "roads@kith.test"), ()),
        ("@bikes", (), ("bikes",)),
        ("wow!bikes, !!bikes, \\!bikes, `!bikes`", (), ()),
        ("[!bikes](https://x.example) !bikes@nodot", (), ()),
        ("a !@ana", (), ("ana",)),
    ],
)
def test_parse_text__lemmy_style_community_mentions(
    source: str, communities_: tuple[str, ...], mentions: tuple[str, ...]
) -> None:
    parsed = text.parse_text(source)
    assert parsed.community_mentions == communities_
    assert parsed.mentions == mentions


def test_count_characters__a_remote_community_mention_counts_as_its_name() -> None:
    assert text.count_characters("!bikes@lemmy.example hi") == len("!bikes hi")
    assert text.count_characters("@ana@social.example") == len("@ana")
