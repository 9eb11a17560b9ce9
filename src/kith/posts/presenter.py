"""Turn Post rows into what a page or an API entity shows, loading related rows in batches."""

from __future__ import annotations

import functools
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CompoundSelect,
    Integer,
    bindparam,
    func,
    inspect,
    literal_column,
    select,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy
from kith.accounts.models import Account
from kith.communities.models import Community
from kith.db import one_of, utcnow
from kith.emojis import service as emoji_service
from kith.emojis.models import CustomEmoji
from kith.media import remote as remote_media
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
    emojis: list[CustomEmoji] = field(default_factory=list)  # used in its text and warning
    author_emojis: list[CustomEmoji] = field(default_factory=list)  # in the author's profile
    # Where it is approved, a cross-post in each (web pages only: `with_communities`).
    communities: list[Community] = field(default_factory=list)

    @property
    def shown(self) -> PostView:
        """The post to display: the original for a boost."""
        return self.reblog or self

    @property
    def visibility(self) -> Visibility:
        return Visibility(self.post.visibility)


PIN, LIKE, BOOST, BOOKMARK = 0, 1, 2, 3


def _kind(k: int) -> Any:
    """A mark's kind as a constant column of a union."""
    return literal_column(str(k), Integer())


@functools.cache
def _marks_statement(dialect_name: str) -> CompoundSelect:
    """(kind, post id) for the posts bound as `ids`: pinned by their author, and liked, boosted
    or bookmarked by the viewer bound as `me` (None: anonymous). One query instead of four,
    built once per process."""
    me: Any = bindparam("me", type_=BigInteger())
    return union_all(
        select(_kind(PIN), Pin.post_id).where(one_of(Pin.post_id, "ids", dialect_name)),
        select(_kind(LIKE), Like.post_id).where(
            Like.account_id == me, one_of(Like.post_id, "ids", dialect_name)
        ),
        select(_kind(BOOST), Post.reblog_of_id).where(
            Post.account_id == me, one_of(Post.reblog_of_id, "ids", dialect_name)
        ),
        select(_kind(BOOKMARK), Bookmark.post_id).where(
            Bookmark.account_id == me, one_of(Bookmark.post_id, "ids", dialect_name)
        ),
    )


@functools.cache
def _viewer_marks_statement(dialect_name: str) -> CompoundSelect:
    """(kind, viewer id) for the post bound as `post_id` and the viewers bound as
    `viewer_ids`: which of them liked, boosted or bookmarked it."""
    pid: Any = bindparam("post_id", type_=BigInteger())
    return union_all(
        select(_kind(LIKE), Like.account_id).where(
            Like.post_id == pid, one_of(Like.account_id, "viewer_ids", dialect_name)
        ),
        select(_kind(BOOST), Post.account_id).where(
            Post.reblog_of_id == pid, one_of(Post.account_id, "viewer_ids", dialect_name)
        ),
        select(_kind(BOOKMARK), Bookmark.account_id).where(
            Bookmark.post_id == pid, one_of(Bookmark.account_id, "viewer_ids", dialect_name)
        ),
    )


async def marks_of_viewers(
    db: AsyncSession, post_id: int, viewer_ids: Collection[int]
) -> dict[int, set[int]]:
    """For one post and many viewers: {viewer id: {LIKE, BOOST, BOOKMARK} they did to it},
    in one query (a live post rendered for everyone connected)."""
    if not viewer_ids:
        return {}
    out: dict[int, set[int]] = {}
    params = {"post_id": post_id, "viewer_ids": list(viewer_ids)}
    statement = _viewer_marks_statement(db.get_bind().dialect.name)
    for k, account_id in await db.execute(statement, params):
        out.setdefault(account_id, set()).add(k)
    return out


def _poll_counts(poll: Poll, local: list[int] | None) -> list[int]:
    """Votes per option: counted from PollVote rows for our polls, as the author's server last
    reported them for remote ones."""
    if poll.remote_counts is not None and len(poll.remote_counts) == len(poll.options):
        return [int(n) for n in poll.remote_counts]
    return local or [0] * len(poll.options)


async def marks_of(db: AsyncSession, me: int | None, ids: list[int]) -> dict[int, set[int]]:
    """{PIN: ids pinned by their author, LIKE / BOOST / BOOKMARK: ids the viewer `me` liked,
    boosted, bookmarked} for these post ids, in one query."""
    marks: dict[int, set[int]] = {PIN: set(), LIKE: set(), BOOST: set(), BOOKMARK: set()}
    if ids:
        statement = _marks_statement(db.get_bind().dialect.name)
        for kind, post_id in await db.execute(statement, {"ids": ids, "me": me}):
            marks[kind].add(post_id)
    return marks


async def poll_views(
    db: AsyncSession, me: int | None, authors: dict[int, int]
) -> dict[int, PollView]:
    """The polls among these posts ({post id: author id}) as the viewer `me` sees them: totals
    hidden until they voted, the poll ended, or it is their own."""
    if not authors:
        return {}
    polls = {
        p.post_id: p
        for p in (await db.scalars(select(Poll).where(Poll.post_id.in_(list(authors))))).all()
    }
    if not polls:
        return {}
    votes: dict[int, list[int]] = {}
    if me is not None:
        for pid, choice in await db.execute(
            select(PollVote.post_id, PollVote.choice).where(
                PollVote.account_id == me, PollVote.post_id.in_(list(polls))
            )
        ):
            votes.setdefault(pid, []).append(choice)
    counts: dict[int, list[int]] = {}
    for pid, choice, n in await db.execute(
        select(PollVote.post_id, PollVote.choice, func.count())
        .where(PollVote.post_id.in_(list(polls)))
        .group_by(PollVote.post_id, PollVote.choice)
    ):
        counts.setdefault(pid, [0] * len(polls[pid].options))
        if 0 <= choice < len(counts[pid]):
            counts[pid][choice] = int(n)
    now = utcnow()
    out = {}
    for pid, poll in polls.items():
        expired = poll.expires_at <= now
        mine = sorted(votes.get(pid, []))
        show = expired or bool(mine) or me == authors[pid]
        out[pid] = PollView(
            options=list(poll.options),
            counts=_poll_counts(poll, counts.get(pid)) if show else None,
            votes_count=poll.votes_count,
            voters_count=poll.voters_count,
            multiple=poll.multiple,
            expires_at=poll.expires_at,
            expired=expired,
            voted=bool(mine),
            own_votes=mine,
        )
    return out


FRESH_VIEWS = "kith_fresh_post_views"


def remember_fresh(db: AsyncSession, view: PostView, rev: int) -> None:
    """Keep, for this session, the view of a post it has just written, built from what the
    writer held (mentions by account id and tags by name, as `present` orders them; no
    media), with the post's `render_rev` as the writer's transaction left it. The entity
    cache uses it instead of reading the post back while the revision is still `rev`
    (`fresh_view`); marks, counters and polls are never taken from it."""
    db.info.setdefault(FRESH_VIEWS, {})[view.post.id] = (rev, view)


def fresh_view(db: AsyncSession, post_id: int, rev: int) -> PostView | None:
    """The view `remember_fresh` kept for this post in this session, if it is of `rev`."""
    kept: dict[int, tuple[int, PostView]] | None = db.info.get(FRESH_VIEWS)
    found = None if kept is None else kept.get(post_id)
    return found[1] if found is not None and found[0] == rev else None


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
            select(Mention.post_id, Mention.account_id)
            .where(Mention.post_id.in_(ids))
            .order_by(Mention.account_id)  # a stable order (remember_fresh uses it too)
        )
    ).all()
    account_ids |= {a for _, a in mention_rows}
    accounts = {
        a.id: a
        for a in (await db.scalars(select(Account).where(Account.id.in_(account_ids)))).all()
    }
    tag_rows = (
        await db.execute(
            select(PostTag.post_id, Tag.name)
            .join(Tag)
            .where(PostTag.post_id.in_(ids))
            .order_by(Tag.name)  # a stable order (remember_fresh uses it too)
        )
    ).all()
    attachments = await media_service.for_posts(db, ids)
    # Remote files not cached (yet, or any more) are fetched for the next look; never linked.
    remote_media.refetch_soon(db, [m for rows in attachments.values() for m in rows])
    me = viewer.account_id
    marks = await marks_of(db, me, ids)
    pins, liked, boosted, bookmarked = marks[PIN], marks[LIKE], marks[BOOST], marks[BOOKMARK]
    polls = await poll_views(db, me, {p.id: p.account_id for p in all_posts.values()})
    emojis = await emoji_service.for_posts(db, all_posts.values(), accounts)
    profile_emojis = await emoji_service.for_accounts(
        db, [accounts[p.account_id] for p in all_posts.values() if p.account_id in accounts]
    )

    mentions_of: dict[int, list[Account]] = {}
    for pid, a in mention_rows:
        if a in accounts:
            mentions_of.setdefault(pid, []).append(accounts[a])
    tags_of: dict[int, list[str]] = {}
    for pid, name in tag_rows:
        tags_of.setdefault(pid, []).append(name)

    def view(p: Post) -> PostView:
        v = PostView(post=p, author=accounts[p.account_id])
        v.is_own = me == p.account_id
        v.liked = p.id in liked
        v.boosted = p.id in boosted
        v.bookmarked = p.id in bookmarked
        v.pinned = p.id in pins
        v.mentions = list(mentions_of.get(p.id, ()))
        v.tags = list(tags_of.get(p.id, ()))
        v.can_boost = me is not None and policy.can_boost(viewer, p)
        v.media = attachments.get(p.id, [])
        v.poll = polls.get(p.id)
        v.emojis = emojis.get(p.id, [])
        v.author_emojis = profile_emojis.get(p.account_id, [])
        return v

    result = []
    for p in posts:
        v = view(p)
        if p.reblog_of_id is not None and p.reblog_of_id in originals:
            v.reblog = view(originals[p.reblog_of_id])
        result.append(v)
    return result


async def with_communities(db: AsyncSession, views: list[PostView]) -> list[PostView]:
    """Fill in the communities of the posts these views show (a boost: its original's), for
    the web pages' "in !club" line: one query for the page. The posts already passed the
    policy, and a community's name and address are public (its card), a private one's too;
    the communities are those the post is approved in (`posting.communities_of`)."""
    from kith.communities.posting import communities_of  # posting imports posts: import late

    shown = [v.shown for v in views]
    found = await communities_of(db, list({v.post.id for v in shown}))
    for v in shown:
        v.communities = found.get(v.post.id, [])
    return views
