"""Where the posts of one's Home come from: one's own, the accounts one follows, the
threads of the communities one keeps in Home (`Membership.in_home`) and the public posts of
the hashtags one follows — as SQL for the Home
rule (`timelines.service.home_clause`), in the shape each use runs fastest in, and whether a
viewer has a source at all (the searched Home leaves out what it would search in vain)."""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Select,
    and_,
    bindparam,
    exists,
    or_,
    select,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from kith import policy
from kith.communities.models import CommunityPost, CommunityPostState, Membership, MemberState
from kith.graph.models import Follow
from kith.posts.models import Post, PostTag
from kith.timelines.models import TagFollow


def kept_threads(me: Any) -> list[ColumnElement[bool]]:
    """The conditions of a thread approved in a community where `me` (a value or a column)
    is an active member who keeps its threads in Home (`Membership.in_home`). Leaving, a ban
    (it deletes the membership), a pending request or the setting turned off: not in Home.
    Who may *see* the post is still the policy's (a private community's, a waiting one)."""
    return [
        CommunityPost.is_thread.is_(True),
        CommunityPost.state == CommunityPostState.APPROVED,
        Membership.community_id == CommunityPost.community_id,
        Membership.account_id == me,
        Membership.state == MemberState.ACTIVE,
        Membership.in_home.is_(True),
    ]


def community_threads_clause(me: Any, post: Any = Post) -> ColumnElement[bool]:
    """SQL: `post` is a thread of a community `me` keeps in Home, probed for this one post
    (for a few candidates: a feed's page, one new post)."""
    return (
        exists()
        .where(CommunityPost.post_id == post.id, *kept_threads(me))
        .correlate_except(CommunityPost, Membership)
    )


def community_thread_ids(me: Any, floor: Any, ceiling: Any) -> Select[Any]:
    """SQL: the ids, from `floor` up to below `ceiling`, of the threads of the communities `me`
    keeps in Home: one range scan per community (the feed index)."""
    return select(CommunityPost.post_id).where(
        *kept_threads(me), CommunityPost.post_id >= floor, CommunityPost.post_id < ceiling
    )


def followed_tag_ids(me: Any, floor: Any, ceiling: Any) -> Select[Any]:
    """SQL: the ids, from `floor` up to below `ceiling`, of the posts carrying a hashtag `me`
    follows: one range scan per followed tag."""
    return (
        select(PostTag.post_id)
        .join(TagFollow, TagFollow.tag_id == PostTag.tag_id)
        .where(TagFollow.account_id == me, PostTag.post_id >= floor, PostTag.post_id < ceiling)
    )


def followed_tags_probe(me: Any, post: Any = Post) -> ColumnElement[bool]:
    """SQL: `post` carries a hashtag `me` follows, probed for this one post. The OFFSET keeps
    PostgreSQL from turning the probe into a hashed list of every post of the followed tags
    (as it did, planning on an estimate of ~200 posts a tag: 106,765 rows, 63 ms a page)."""
    return (
        select(PostTag.post_id)
        .join(TagFollow, TagFollow.tag_id == PostTag.tag_id)
        .where(PostTag.post_id == post.id, TagFollow.account_id == me)
        .correlate_except(PostTag, TagFollow)
        .offset(0)
        .exists()
    )


def follows_clause(
    me: Any, account: Any, *, per_post: bool, with_boosts: bool = False
) -> ColumnElement[bool]:
    """SQL: `me` follows `account` (a column), with their boosts shown if `with_boosts`. As a
    probe of the follow's key for a statement that tests a few given posts (`per_post`): the
    list of everyone followed, made for each statement, cost SQLite more than the ~65 probes
    of a feed's page (0.41 against 0.54-0.70 ms a page); as that list for a scan."""
    conditions = [Follow.follower_id == me]
    if with_boosts:
        conditions.append(Follow.show_reblogs.is_(True))
    if per_post:
        return exists().where(Follow.followee_id == account, *conditions)
    return account.in_(select(Follow.followee_id).where(*conditions))


def sources_clause(
    viewer: policy.Viewer,
    post: Any,
    *,
    communities: bool,
    tags: bool,
    window: tuple[Any, Any] | None,
    listed: bool,
    per_post: bool = False,
) -> ColumnElement[bool]:
    """SQL: the post is the viewer's own, a followed account's, (with `communities`) a
    thread of a community they keep in Home, or (with `tags`) a post listed publicly with a
    hashtag they follow. One meaning, three shapes, each the fastest measured where it is
    used (docs/communities.md, "Home"; bench/followed_tags.py):

    - no `window`: probed per post (a feed's page, one new post, streams), whom one follows
      too with `per_post` (`follows_clause`);
    - a `window` (floor, ceiling) of a scan over posts, `listed` (SQLite): one list of
      candidate ids read from covering index ranges, each followed account's, each kept
      community's and each followed tag's; a candidate by none of its authors must be listed
      publicly. With the threads or the tagged posts OR'ed in, SQLite read every (public)
      post of the window;
    - a `window`, not `listed` (PostgreSQL): the authors' OR, the window's threads and tagged
      posts as hashed lists. PostgreSQL walks posts newest first and stops at the page; a
      list made it sort every candidate.

    Never the list of every post of the followed tags: a popular tag has hundreds of
    thousands, and SQLite made that list for each statement (~65 ms a page of a feed for 5
    followed tags of the bench's seed)."""
    me = viewer.account_id
    authors = or_(post.account_id == me, follows_clause(me, post.account_id, per_post=per_post))
    if window is None:
        # After the author tests: most posts pass on those without probing the EXISTS.
        if communities:
            authors = or_(authors, community_threads_clause(me, post))
        if tags:
            listed_tagged = and_(
                followed_tags_probe(me, post), policy.publicly_listed_clause(viewer, post)
            )
            authors = or_(authors, listed_tagged)
        return authors
    floor, ceiling = window
    if not listed:
        if communities:
            authors = or_(authors, post.id.in_(community_thread_ids(me, floor, ceiling)))
        if tags:
            listed_tagged = and_(
                post.id.in_(followed_tag_ids(me, floor, ceiling)),
                policy.publicly_listed_clause(viewer, post),
            )
            authors = or_(authors, listed_tagged)
        return authors
    other = aliased(Post)
    candidates: Any = select(other.id).where(
        or_(other.account_id == me, follows_clause(me, other.account_id, per_post=False)),
        other.id >= floor,
        other.id < ceiling,
    )
    if communities:
        candidates = union_all(candidates, community_thread_ids(me, floor, ceiling))
    if not tags:
        return post.id.in_(candidates)
    candidates = union_all(candidates, followed_tag_ids(me, floor, ceiling))
    by_source = or_(authors, community_threads_clause(me, post)) if communities else authors
    return and_(
        post.id.in_(candidates), or_(by_source, policy.publicly_listed_clause(viewer, post))
    )


@functools.cache
def _sources_statement() -> Select[bool, bool]:
    me = bindparam("viewer_id", type_=BigInteger())
    tags = select(TagFollow.tag_id).where(TagFollow.account_id == me)
    kept = select(Membership.community_id).where(
        Membership.account_id == me,
        Membership.state == MemberState.ACTIVE,
        Membership.in_home.is_(True),
    )
    return select(exists(tags), exists(kept))


async def home_sources(db: AsyncSession, viewer: policy.Viewer) -> tuple[bool, bool]:
    """Does the viewer follow a hashtag, and keep a community in Home? (One statement: what
    the searched Home needs to leave out what it would search in vain.)"""
    row = (await db.execute(_sources_statement(), {"viewer_id": viewer.account_id})).one()
    return bool(row[0]), bool(row[1])
