"""Micro-communities, second increment: posting into communities (cross-posts, the approval
queue, replies joining their thread, locks and pins), post moderation, and the feeds."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy
from kith.accounts.models import Account
from kith.communities import feeds, moderation, posting
from kith.communities import service as communities
from kith.communities.models import (
    Community,
    CommunityPost,
    MembershipModel,
    ModAction,
    ModerationLogEntry,
    Role,
)
from kith.communities.service import CommunityInput
from kith.errors import Forbidden, NotFound, ValidationFailed
from kith.posts import service as posts
from kith.posts.models import Post, Visibility
from kith.posts.service import PostInput
from kith.timelines import service as timelines
from tests.world import person, viewer


async def found(
    db: AsyncSession,
    owner: Account,
    handle: str,
    membership: MembershipModel = MembershipModel.OPEN,
    **fields: Any,
) -> Community:
    data = CommunityInput(name=handle.title(), membership=membership, **fields)
    return await communities.create_community(db, owner.id, handle, data)


async def member(db: AsyncSession, community: Community, who: Account, owner: Account) -> None:
    """Bring `who` in, whatever the membership model (an invite code does it)."""
    _, code = await communities.create_invite(db, owner.id, community)
    await communities.join(db, who.id, community, invite_code=code)


async def write(
    db: AsyncSession,
    author: Account,
    text: str,
    *to: Community,
    reply_to: Post | None = None,
    visibility: Visibility = Visibility.PUBLIC,
) -> Post:
    data = PostInput(
        source=text,
        visibility=visibility,
        in_reply_to_id=reply_to.id if reply_to else None,
        community_ids=[c.id for c in to],
    )
    return await posts.create_post(db, author, data)


async def count(db: AsyncSession, model: Any, *where: Any) -> int:
    return int(await db.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def feed_ids(db: AsyncSession, who: Account | None, c: Community, **kw: Any) -> list[int]:
    page = await feeds.community_feed(db, viewer(who), c, **kw)
    return [p.id for p in page.posts]


async def state(db: AsyncSession, c: Community, p: Post) -> str | None:
    return await db.scalar(
        select(CommunityPost.state).where(
            CommunityPost.community_id == c.id, CommunityPost.post_id == p.id
        )
    )


async def logged(db: AsyncSession, c: Community) -> list[str]:
    rows = await db.scalars(
        select(ModerationLogEntry.action)
        .where(ModerationLogEntry.community_id == c.id)
        .order_by(ModerationLogEntry.id)
    )
    return list(rows)


@pytest.fixture
async def owner(db: AsyncSession) -> Account:
    await person(db, "root_admin", admin=True)
    return await person(db, "ivy")


@pytest.fixture
async def ash(db: AsyncSession) -> Account:
    return await person(db, "ash")


# --- posting -------------------------------------------------------------------------------


async def test_cross_post__is_one_post_listed_in_each_community(
    db: AsyncSession, owner: Account, ash: Account
) -> None:
    # Given ash is a member of two open communities
    roses, tulips = await found(db, owner, "roses"), await found(db, owner, "tulips")
    for c in (roses, tulips):
        await communities.join(db, ash.id, c)
    # When ash posts once to both (naming one twice)
    p = await write(db, ash, "Spring is here", roses, tulips, roses)
    # Then there is one post, shown with both communities, in both feeds, public as usual
    assert await count(db, Post, Post.account_id == ash.id) == 1
    shown = await posting.communities_of(db, [p.id])
    assert [c.handle for c in shown[p.id]] == ["roses", "tulips"]
    assert await feed_ids(db, None, roses) == [p.id]
    assert await feed_ids(db, None, tulips) == [p.id]
    assert p.community_gate is None


@pytest.mark.parametrize(
    ("membership", "setup"),
    [
        (MembershipModel.OPEN, "none"),  # membership is needed to start a thread
        (MembershipModel.APPROVAL, "pending"),
        (MembershipModel.PRIVATE, "pending"),
        (MembershipModel.OPEN, "banned"),
        (MembershipModel.OPEN, "suspended"),
    ],
)
async def test_posting__refused_to_non_members_banned_and_suspended_with_nothing_written(
    db: AsyncSession, owner: Account, ash: Account, membership: MembershipModel, setup: str
) -> None:
    # Given a community ash may not post in
    c = await found(db, owner, "roses", membership)
    if setup == "pending":
        await communities.join(db, ash.id, c)
    elif setup == "banned":
        await communities.join(db, ash.id, c)
        await moderation.ban(db, owner.id, c, ash.id)
    elif setup == "suspended":
        await communities.join(db, ash.id, c)
        ash.suspended_at = func.now()
        await db.commit()
        await db.refresh(ash)
    # When ash tries to post there
    with pytest.raises(ValidationFailed) as err:
        await write(db, ash, "Let me in #roses", c)
    # Then it is refused, naming the field, and no post, tag or community row is written
    assert err.value.field == "community_ids"
    assert await count(db, Post, Post.account_id == ash.id) == 0
    assert await count(db, CommunityPost) == 0


@pytest.mark.parametrize(
    ("case", "field"),
    [
        ("unknown community", "community_ids"),
        ("id out of range", "community_ids"),
        ("followers-only", "visibility"),
        ("private cross-post", "community_ids"),
        ("too many", "community_ids"),
    ],
)
async def test_posting__bad_addressing_is_refused(
    db: AsyncSession, owner: Account, case: str, field: str
) -> None:
    roses = await found(db, owner, "roses")
    secret = await found(db, owner, "secret", MembershipModel.PRIVATE)
    ids = [roses.id]
    visibility = Visibility.PUBLIC
    if case == "unknown community":
        ids = [roses.id, 12345]
    elif case == "id out of range":
        ids = [roses.id, 2**70]
    elif case == "followers-only":
        visibility = Visibility.PRIVATE
    elif case == "private cross-post":
        ids = [roses.id, secret.id]
    else:
        ids = [(await found(db, owner, f"c{i}")).id for i in range(6)]
    data = PostInput(source="Hello", visibility=visibility, community_ids=ids)
    with pytest.raises(ValidationFailed) as err:
        await posts.create_post(db, owner, data)
    assert err.value.field == field
    assert await count(db, Post) == 0


async def test_reply__joins_its_thread_and_counts_as_its_activity(
    db: AsyncSession, owner: Account, ash: Account
) -> None:
    # Given a thread in an open community, and ash, who is not a member
    roses = await found(db, owner, "roses")
    root = await write(db, owner, "Pruning tips?", roses)
    # When ash replies, and owner replies to the reply
    reply = await write(db, ash, "In March", reply_to=root)
    deeper = await write(db, owner, "Thanks", reply_to=reply)
    # Then both replies are in the community (not as threads), the thread counts them
    rows = (
        await db.execute(
            select(CommunityPost.post_id, CommunityPost.is_thread).where(
                CommunityPost.community_id == roses.id
            )
        )
    ).all()
    assert set(rows) == {(root.id, True), (reply.id, False), (deeper.id, False)}
    thread = await db.get(CommunityPost, (roses.id, root.id))
    assert thread is not None
    await db.refresh(thread)
    assert (thread.thread_replies, thread.active_id) == (2, deeper.id)
    # And the feed lists the thread alone
    assert await feed_ids(db, None, roses) == [root.id]


async def test_reply__in_an_approval_community_needs_membership(
    db: AsyncSession, owner: Account, ash: Account
) -> None:
    c = await found(db, owner, "roses", MembershipModel.APPROVAL)
    root = await write(db, owner, "Members only talk here", c)
    with pytest.raises(ValidationFailed) as err:
        await write(db, ash, "Me too", reply_to=root)
    assert err.value.field == "in_reply_to_id"
    assert await count(db, Post, Post.account_id == ash.id) == 0


async def test_reply__from_a_banned_person_is_refused(
    db: AsyncSession, owner: Account, ash: Account
) -> None:
    roses = await found(db, owner, "roses")
    root = await write(db, owner, "Pruning tips?", roses)
    await moderation.ban(db, owner.id, roses, ash.id)
    with pytest.raises(ValidationFailed):
        await write(db, ash, "Ha", reply_to=root)
    assert await count(db, Post, Post.account_id == ash.id) == 0


async def test_reply__cannot_be_addressed_elsewhere(
    db: AsyncSession, owner: Account, ash: Account
) -> None:
    roses, tulips = await found(db, owner, "roses"), await found(db, owner, "tulips")
    root = await write(db, owner, "Pruning tips?", roses)
    with pytest.raises(ValidationFailed) as err:
        await write(db, owner, "Also here", tulips, reply_to=root)
    assert err.value.field == "community_ids"


async def test_private_community__replies_stay_with_its_members(
    db: AsyncSession, owner: Account, ash: Account
) -> None:
    # Given a private community with ash as a member, and a stranger who follows nobody
    secret = await found(db, owner, "secret", MembershipModel.PRIVATE)
    await member(db, secret, ash, owner)
    stranger = await person(db, "stranger")
    root = await write(db, owner, "Our plans", secret)
    # When ash replies publicly
    reply = await write(db, ash, "Count me in", reply_to=root)
    # Then the reply, too, is members-only: the stranger can't open it, Local doesn't list it
    for p in (root, reply):
        assert await policy.can_see_post(db, viewer(ash), p)
        assert not await policy.can_see_post(db, viewer(stranger), p)
        assert not await policy.can_see_post(db, policy.ANONYMOUS, p)
    local = await timelines.local(db, viewer(ash), limit=40)
    assert not {root.id, reply.id} & {p.id for p in local.posts}
    # And nobody can boost it out of the community
    with pytest.raises(ValidationFailed):
        await posts.boost(db, viewer(ash), root.id)


# --- the approval queue --------------------------------------------------------------------


async def test_queue__a_post_waits_until_approved_and_approving_twice_changes_nothing(
    db: AsyncSession, owner: Account, ash: Account
) -> None:
    # Given a community whose new threads wait for approval
    c = await found(db, owner, "roses", post_approval=True)
    await communities.join(db, ash.id, c)
    # When ash posts
    p = await write(db, ash, "My first roses", c)
    # Then it waits: not in the feed, queued for the moderators, seen by ash and owner alone
    assert await state(db, c, p) == "pending"
    assert await feed_ids(db, ash, c) == []
    assert [r.post_id for r in await moderation.approval_queue(db, owner.id, c)] == [p.id]
    assert not await policy.can_see_post(db, policy.ANONYMOUS, p)
    assert await policy.can_see_post(db, viewer(owner), p)
    # When the owner approves it
    await moderation.approve_post(db, owner.id, c, p.id)
    # Then it is in the feed, seen by all, and the approval is logged
    assert await feed_ids(db, None, c) == [p.id]
    assert await policy.can_see_post(db, policy.ANONYMOUS, p)
    assert (await logged(db, c))[-1] == ModAction.APPROVE_POST
    # And approving again is a clear error that changes nothing
    log_before = await logged(db, c)
    with pytest.raises(ValidationFailed) as err:
        await moderation.approve_post(db, owner.id, c, p.id)
    assert err.value.field == "post_id"
    assert await state(db, c, p) == "approved"
    assert await logged(db, c) == log_before


async def test_queue__a_rejected_post_stays_hidden_and_the_moderators_own_posts_skip_it(
    db: AsyncSession, owner: Account, ash: Account
) -> None:
    c = await found(db, owner, "roses", post_approval=True)
    await communities.join(db, ash.id, c)
    p = await write(db, ash, "Buy my seeds", c)
    await moderation.reject_post(db, owner.id, c, p.id, reason="Ads")
    assert await state(db, c, p) == "removed"
    assert not await policy.can_see_post(db, policy.ANONYMOUS, p)
    assert await policy.can_see_post(db, viewer(ash), p)  # still the author's
    with pytest.raises(ValidationFailed):
        await moderation.reject_post(db, owner.id, c, p.id)
    own = await write(db, owner, "Welcome", c)
    assert await state(db, c, own) == "approved"


async def test_queue__members_cannot_approve_and_setting_it_is_logged(
    db: AsyncSession, owner: Account, ash: Account
) -> None:
    c = await found(db, owner, "roses")
    await communities.join(db, ash.id, c)
    with pytest.raises(Forbidden):
        await communities.update_community(
            db, ash.id, c, communities.CommunityChanges(post_approval=True)
        )
    changed = await communities.update_community(
        db, owner.id, c, communities.CommunityChanges(post_approval=True)
    )
    assert changed == ["post_approval"]
    p = await write(db, ash, "Hi", c)
    with pytest.raises(Forbidden):
        await moderation.approve_post(db, ash.id, c, p.id)
    assert await state(db, c, p) == "pending"


# --- removing, locking, pinning ------------------------------------------------------------


async def test_remove__takes_the_post_out_of_the_feed_and_restore_brings_it_back(
    db: AsyncSession, owner: Account, ash: Account
) -> None:
    roses, tulips = await found(db, owner, "roses"), await found(db, owner, "tulips")
    for c in (roses, tulips):
        await communities.join(db, ash.id, c)
    alone = await write(db, ash, "Only in roses", roses)
    both = await write(db, ash, "In both", roses, tulips)
    await moderation.remove_post(db, owner.id, roses, alone.id, reason="Off topic")
    await moderation.remove_post(db, owner.id, roses, both.id)
    # Out of the roses feed; the cross-post stays in tulips and stays visible
    assert await feed_ids(db, None, roses) == []
    assert await feed_ids(db, None, tulips) == [both.id]
    assert await policy.can_see_post(db, policy.ANONYMOUS, both)
    # The post removed from its only community is seen by its author and moderators alone
    assert not await policy.can_see_post(db, policy.ANONYMOUS, alone)
    with pytest.raises(NotFound):
        await posts.get_visible_post(db, viewer(await person(db, "curious")), alone.id)
    assert await policy.can_see_post(db, viewer(ash), alone)
    with pytest.raises(ValidationFailed):
        await moderation.remove_post(db, owner.id, roses, alone.id)
    await moderation.restore_post(db, owner.id, roses, alone.id)
    assert await feed_ids(db, None, roses) == [alone.id]
    assert await policy.can_see_post(db, policy.ANONYMOUS, alone)
    assert (await logged(db, roses))[-3:] == ["remove_post", "remove_post", "restore_post"]


async def test_lock__blocks_new_replies_until_unlocked(
    db: AsyncSession, owner: Account, ash: Account
) -> None:
    roses = await found(db, owner, "roses")
    await communities.join(db, ash.id, roses)
    root = await write(db, ash, "Hot take", roses)
    first = await write(db, owner, "Calm down", reply_to=root)
    await moderation.lock_thread(db, owner.id, roses, root.id, reason="Heated")
    # Replies to the root and to replies in the thread are refused, nothing written
    for target in (root, first):
        with pytest.raises(ValidationFailed) as err:
            await write(db, ash, "But", reply_to=target)
        assert err.value.field == "in_reply_to_id"
    assert await count(db, Post, Post.in_reply_to_id.isnot(None)) == 1
    with pytest.raises(ValidationFailed):
        await moderation.lock_thread(db, owner.id, roses, root.id)
    with pytest.raises(ValidationFailed):  # a reply is not a thread
        await moderation.lock_thread(db, owner.id, roses, first.id)
    await moderation.lock_thread(db, owner.id, roses, root.id, locked=False)
    await write(db, ash, "Thanks for reopening", reply_to=root)
    assert (await logged(db, roses))[-2:] == ["lock", "unlock"]


async def test_pin__shows_above_the_feed_and_only_approved_threads(
    db: AsyncSession, owner: Account, ash: Account
) -> None:
    c = await found(db, owner, "roses", post_approval=True)
    await communities.join(db, ash.id, c)
    rules = await write(db, owner, "Read the rules", c)
    waiting = await write(db, ash, "Pending", c)
    await moderation.pin_thread(db, owner.id, c, rules.id)
    assert [p.id for p in await feeds.pinned_threads(db, policy.ANONYMOUS, c)] == [rules.id]
    with pytest.raises(ValidationFailed):
        await moderation.pin_thread(db, owner.id, c, waiting.id)
    with pytest.raises(ValidationFailed):
        await moderation.pin_thread(db, owner.id, c, rules.id)
    await moderation.pin_thread(db, owner.id, c, rules.id, pinned=False)
    assert await feeds.pinned_threads(db, policy.ANONYMOUS, c) == []
    assert (await logged(db, c))[-2:] == ["pin", "unpin"]


async def test_moderator_of_one_community__has_no_power_over_posts_of_another(
    db: AsyncSession, owner: Account, ash: Account
) -> None:
    # Given ash moderates roses, and tulips (queued) has a waiting post
    roses = await found(db, owner, "roses")
    tulips = await found(db, owner, "tulips", post_approval=True)
    await communities.join(db, ash.id, roses)
    await moderation.set_role(db, owner.id, roses, ash.id, Role.MODERATOR)
    other = await person(db, "other")
    await communities.join(db, other.id, tulips)
    p = await write(db, other, "Waiting", tulips)
    shown = await write(db, owner, "Approved", tulips)
    # Then ash can do nothing to tulips' posts, nor see the waiting one
    for act in (
        moderation.approve_post(db, ash.id, tulips, p.id),
        moderation.remove_post(db, ash.id, tulips, shown.id),
        moderation.lock_thread(db, ash.id, tulips, shown.id),
        moderation.pin_thread(db, ash.id, tulips, shown.id),
        moderation.approval_queue(db, ash.id, tulips),
    ):
        with pytest.raises(Forbidden):
            await act
    assert not await policy.can_see_post(db, viewer(ash), p)
    assert await state(db, tulips, p) == "pending"
    # Nor through the community ash moderates: the post is not in it
    with pytest.raises(NotFound):
        await moderation.remove_post(db, ash.id, roses, shown.id)
    with pytest.raises(NotFound):
        await moderation.approve_post(db, ash.id, roses, p.id)
    assert await state(db, tulips, shown) == "approved"


# --- feeds ---------------------------------------------------------------------------------


async def test_feed__new_pages_by_id_and_top_ranks_by_engagement(
    db: AsyncSession, owner: Account, ash: Account
) -> None:
    c = await found(db, owner, "roses")
    await communities.join(db, ash.id, c)
    made = [await write(db, owner, f"Thread {i}", c) for i in range(5)]
    # new: newest first, pages by max_id and min_id without gaps
    first = await feeds.community_feed(db, policy.ANONYMOUS, c, limit=2)
    assert [p.id for p in first.posts] == [made[4].id, made[3].id]
    second = await feeds.community_feed(db, policy.ANONYMOUS, c, limit=2, max_id=first.older_max_id)
    assert [p.id for p in second.posts] == [made[2].id, made[1].id]
    newer = await feeds.community_feed(db, policy.ANONYMOUS, c, limit=2, min_id=made[1].id)
    assert [p.id for p in newer.posts] == [made[3].id, made[2].id]
    # top: the liked and replied thread first
    await posts.like(db, viewer(ash), made[1].id)
    await write(db, ash, "Great", reply_to=made[1])
    await posts.like(db, viewer(ash), made[2].id)
    top = await feed_ids(db, None, c, sort="top", window="all")
    assert top[:3] == [made[1].id, made[2].id, made[4].id]
    # active: the thread just replied to is the most active
    assert (await feed_ids(db, None, c, sort="active"))[0] == made[1].id
    with pytest.raises(ValidationFailed) as err:
        await feeds.community_feed(db, policy.ANONYMOUS, c, sort="hot")
    assert err.value.field == "sort"
    with pytest.raises(ValidationFailed) as err:
        await feeds.community_feed(db, policy.ANONYMOUS, c, sort="top", window="year")
    assert err.value.field == "window"


def test_active_rank__recency_weighs_more_than_engagement() -> None:
    from datetime import timedelta

    from kith.db import id_for_time, utcnow

    now = utcnow()
    fresh_rank = feeds.active_rank(0, id_for_time(now - timedelta(hours=1)), now)
    old_rank = feeds.active_rank(150, id_for_time(now - timedelta(days=3)), now)
    assert fresh_rank > old_rank
    hour_old = feeds.active_rank(150, id_for_time(now - timedelta(hours=1)), now)
    assert hour_old > fresh_rank


async def test_my_communities__one_cross_post_once_and_gone_after_leaving(
    db: AsyncSession, owner: Account, ash: Account
) -> None:
    roses, tulips, other = [await found(db, owner, h) for h in ("roses", "tulips", "other")]
    for c in (roses, tulips):
        await communities.join(db, ash.id, c)
    both = await write(db, owner, "Both", roses, tulips)
    elsewhere = await write(db, owner, "Elsewhere", other)
    plain = await write(db, owner, "Not in a community")
    page = await feeds.my_communities(db, viewer(ash))
    assert [p.id for p in page.posts] == [both.id]
    assert not {elsewhere.id, plain.id} & {p.id for p in page.posts}
    await communities.leave(db, ash.id, roses)
    assert [p.id for p in (await feeds.my_communities(db, viewer(ash))).posts] == [both.id]
    await communities.leave(db, ash.id, tulips)
    assert (await feeds.my_communities(db, viewer(ash))).posts == []
    with pytest.raises(Forbidden):
        await feeds.my_communities(db, policy.ANONYMOUS)


@pytest.mark.parametrize("sort", ["active", "top"])
async def test_ranked_feeds__still_fill_the_page_when_the_best_threads_are_hidden(
    db: AsyncSession, owner: Account, ash: Account, sort: str
) -> None:
    # Given the best threads are by someone the viewer blocks, and one more by the owner
    from kith.graph import service as graph

    c = await found(db, owner, "roses")
    loud = await person(db, "loud")
    await communities.join(db, loud.id, c)
    await communities.join(db, ash.id, c)
    mine = await write(db, owner, "Quiet thread", c)
    best = [await write(db, loud, f"Loud {i}", c) for i in range(3)]
    for p in best:
        await posts.like(db, viewer(owner), p.id)
    await graph.block(db, ash.id, loud.id)
    # When ash reads one thread per page, then the page holds the one ash may see
    page = await feeds.community_feed(db, viewer(ash), c, sort=sort, window="all", limit=1)
    assert [p.id for p in page.posts] == [mine.id]
    # And the next page is empty
    after = await feeds.community_feed(
        db, viewer(ash), c, sort=sort, window="all", limit=1, offset=1
    )
    assert after.posts == []


async def test_feed__private_community_is_closed_to_non_members_and_bad_offsets_refused(
    db: AsyncSession, owner: Account, ash: Account
) -> None:
    c = await found(db, owner, "secret", MembershipModel.PRIVATE)
    await write(db, owner, "Inside", c)
    admin = await db.scalar(select(Account).where(Account.username == "root_admin"))
    for who in (None, ash, admin):
        with pytest.raises(Forbidden):
            await feeds.community_feed(db, viewer(who, admin=who is admin), c)
        with pytest.raises(Forbidden):
            await feeds.pinned_threads(db, viewer(who), c)
    open_c = await found(db, owner, "roses")
    for offset in (-1, feeds.MAX_OFFSET + 1):
        with pytest.raises(ValidationFailed) as err:
            await feeds.community_feed(db, policy.ANONYMOUS, open_c, sort="top", offset=offset)
        assert err.value.field == "offset"


async def test_top_score__kept_on_the_row_by_likes_boosts_and_replies(
    db: AsyncSession, owner: Account, ash: Account
) -> None:
    """Migration 0006's triggers: `community_posts.score` follows the post's likes and boosts
    and the thread's replies, whoever changes them (here also a bare SQL recount, as a
    federation handler's would be), in every community the thread is in."""
    roses, tulips = await found(db, owner, "roses"), await found(db, owner, "tulips")
    for c in (roses, tulips):
        await communities.join(db, ash.id, c)
    thread = await write(db, owner, "Cross-posted", roses, tulips)

    async def scores() -> list[int]:
        rows = await db.scalars(
            select(CommunityPost.score)
            .where(CommunityPost.post_id == thread.id)
            .execution_options(populate_existing=True)
        )
        return list(rows)

    assert await scores() == [0, 0]
    await posts.like(db, viewer(ash), thread.id)
    await posts.boost(db, viewer(ash), thread.id)
    await write(db, ash, "Agreed", reply_to=thread)
    assert await scores() == [3, 3]
    await posts.unlike(db, viewer(ash), thread.id)
    assert await scores() == [2, 2]
    await db.execute(update(Post).where(Post.id == thread.id).values(likes_count=40))
    await db.commit()
    assert await scores() == [42, 42]  # 40 likes, the boost, the reply
