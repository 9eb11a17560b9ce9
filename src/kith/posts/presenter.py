"""Turn Post rows into what a page or an API entity shows, loading related rows in batches."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import inspect, select
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy
from kith.accounts.models import Account
from kith.db import utcnow
from kith.media import service as media_service
from kith.media.models import MediaAttachment
from kith.posts.models import (
    Bookmark,
    Like,
    Mention,
    Pin,
    Poll,
    PollVote,
    Post,
    PostTag,
    Tag,
    Visibility,
)


@dataclass
class PollView:
    """A poll as the viewer sees it: totals hidden until they voted or it ended."""

    options: list[str]
    counts: list[int] | None
    votes_count: int
    voters_count: int
    multiple: bool
    expires_at: datetime
    expired: bool
    voted: bool
    own_votes: list[int]


@dataclass
class PostView:
    """A post with what the viewer needs to show it and act on it."""

    post: Post
    author: Account
    reblog: PostView | None = None
    liked: bool = False
    boosted: bool = False
    bookmarked: bool = False
    pinned: bool = False
    poll: PollView | None = None
    mentions: list[Account] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    can_boost: bool = False
    is_own: bool = False
    filtered: list[str] = field(default_factory=list)  # titles of "warn" filters that matched
    filter_hits: list[Any] = field(default_factory=list)  # filters.FilterHit behind `filtered`
    media: list[MediaAttachment] = field(default_factory=list)  # attachments, in order

    @property
    def shown(self) -> PostView:
        """The post to display: the original for a boost."""
        return self.reblog or self

    @property
    def visibility(self) -> Visibility:
        return Visibility(self.post.visibility)


async def present(db: AsyncSession, viewer: policy.Viewer, posts: list[Post]) -> list[PostView]:
    """PostViews for `posts` (already filtered by policy), in the same order."""
    if not posts:
        return []
    originals_ids = {p.reblog_of_id for p in posts if p.reblog_of_id is not None}
    originals: dict[int, Post] = {}
    if originals_ids:
        originals = {
            p.id: p
            for p in (await db.scalars(select(Post).where(Post.id.in_(originals_ids)))).all()
        }
    all_posts = {p.id: p for p in posts} | originals
    for p in all_posts.values():
        # Counters updated by SQL expressions are expired in the session: reload them here,
        # where awaiting is possible, rather than on attribute access.
        if inspect(p).expired_attributes:
            await db.refresh(p)
    ids = list(all_posts)
    account_ids = {p.account_id for p in all_posts.values()}
    mention_rows = (
        await db.execute(
            select(Mention.post_id, Mention.account_id).where(Mention.post_id.in_(ids))
        )
    ).all()
    account_ids |= {a for _, a in mention_rows}
    accounts = {
        a.id: a
        for a in (await db.scalars(select(Account).where(Account.id.in_(account_ids)))).all()
    }
    tag_rows = (
        await db.execute(
            select(PostTag.post_id, Tag.name).join(Tag).where(PostTag.post_id.in_(ids))
        )
    ).all()
    polls = {
        p.post_id: p for p in (await db.scalars(select(Poll).where(Poll.post_id.in_(ids)))).all()
    }
    pins = set((await db.scalars(select(Pin.post_id).where(Pin.post_id.in_(ids)))).all())
    attachments = await media_service.for_posts(db, ids)
    liked: set[int] = set()
    boosted: set[int] = set()
    bookmarked: set[int] = set()
    votes: dict[int, list[int]] = {}
    counts: dict[int, list[int]] = {}
    me = viewer.account_id
    if me is not None:
        liked = set(
            (
                await db.scalars(
                    select(Like.post_id).where(Like.account_id == me, Like.post_id.in_(ids))
                )
            ).all()
        )
        boosted = set(
            (
                await db.scalars(
                    select(Post.reblog_of_id).where(
                        Post.account_id == me, Post.reblog_of_id.in_(ids)
                    )
                )
            ).all()  # type: ignore[arg-type]
        )
        bookmarked = set(
            (
                await db.scalars(
                    select(Bookmark.post_id).where(
                        Bookmark.account_id == me, Bookmark.post_id.in_(ids)
                    )
                )
            ).all()
        )
        if polls:
            for pid, choice in (
                await db.execute(
                    select(PollVote.post_id, PollVote.choice).where(
                        PollVote.account_id == me, PollVote.post_id.in_(list(polls))
                    )
                )
            ).all():
                votes.setdefault(pid, []).append(choice)
    if polls:
        from sqlalchemy import func

        for pid, choice, n in (
            await db.execute(
                select(PollVote.post_id, PollVote.choice, func.count())
                .where(PollVote.post_id.in_(list(polls)))
                .group_by(PollVote.post_id, PollVote.choice)
            )
        ).all():
            counts.setdefault(pid, [0] * len(polls[pid].options))
            if 0 <= choice < len(counts[pid]):
                counts[pid][choice] = int(n)
    now = utcnow()

    def view(p: Post) -> PostView:
        v = PostView(post=p, author=accounts[p.account_id])
        v.is_own = me == p.account_id
        v.liked = p.id in liked
        v.boosted = p.id in boosted
        v.bookmarked = p.id in bookmarked
        v.pinned = p.id in pins
        v.mentions = [accounts[a] for pid, a in mention_rows if pid == p.id and a in accounts]
        v.tags = [name for pid, name in tag_rows if pid == p.id]
        v.can_boost = me is not None and policy.can_boost(viewer, p)
        v.media = attachments.get(p.id, [])
        poll = polls.get(p.id)
        if poll is not None:
            expired = poll.expires_at <= now
            mine = sorted(votes.get(p.id, []))
            show = expired or bool(mine) or v.is_own
            v.poll = PollView(
                options=list(poll.options),
                counts=(counts.get(p.id) or [0] * len(poll.options)) if show else None,
                votes_count=poll.votes_count,
                voters_count=poll.voters_count,
                multiple=poll.multiple,
                expires_at=poll.expires_at,
                expired=expired,
                voted=bool(mine),
                own_votes=mine,
            )
        return v

    result = []
    for p in posts:
        v = view(p)
        if p.reblog_of_id is not None and p.reblog_of_id in originals:
            v.reblog = view(originals[p.reblog_of_id])
        result.append(v)
    return result
