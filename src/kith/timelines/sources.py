"""Where the posts of one's Home come from: one's own, the accounts one follows, and the
threads of the communities one keeps in Home (`Membership.in_home`) — as SQL for the Home
rule (`timelines.service.home_clause`), in the shape each use runs fastest in, and whether a
viewer has a source at all (the searched Home leaves out what it would search in vain)."""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, Select, bindparam, exists, or_, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from kith import policy
from kith.communities.models import CommunityPost, CommunityPostState, Membership, MemberState
from kith.posts.models import Post
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


def authors_clause(
    me: Any,
    followed: Select[Any],
    post: Any,
    *,
    communities: bool,
    window: tuple[Any, Any] | None,
    listed: bool,
) -> ColumnElement[bool]:
    """SQL: the post is the viewer's own, a followed account's or (with `communities`) a
    thread of a community they keep in Home. One meaning, three shapes, each the fastest
    measured where it is used (docs/communities.md, "Home"):

    - no `window`: probed per post (a feed's page, one new post, streams);
    - a `window` (floor, ceiling) of a scan over posts, `listed` (SQLite): one list of
      candidate ids read from covering index ranges, each followed account's and each kept
      community's. With the threads OR'ed in, SQLite read every post of the window;
    - a `window`, not `listed` (PostgreSQL): the authors' OR, the window's threads as a
      hashed list. PostgreSQL walks posts newest first and stops at the page; a list made
      it sort every candidate."""
    authors = or_(post.account_id == me, post.account_id.in_(followed))
    if window is None:
        # After the author tests: most posts pass on those without probing the EXISTS.
        return or_(authors, community_threads_clause(me, post)) if communities else authors
    floor, ceiling = window
    threads = community_thread_ids(me, floor, ceiling)
    if not listed:
        return or_(authors, post.id.in_(threads)) if communities else authors
    other = aliased(Post)
    candidates: Any = select(other.id).where(
        or_(other.account_id == me, other.account_id.in_(followed)),
        other.id >= floor,
        other.id < ceiling,
    )
    if communities:
        candidates = union_all(candidates, threads)
    return post.id.in_(candidates)


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
