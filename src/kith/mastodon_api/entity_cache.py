"""Status entities built from parts cached per process: the API's hot path.

A Status entity is mostly what changes rarely (text, media, mentions, tags, its author's
profile) and a little that changes all the time or differs per viewer (counters, favourited,
reblogged, bookmarked, pinned, poll, filters). The rare part is cached here, per post and per
account, keyed by the row's `render_rev` (database triggers bump it on every change of what the
entity shows, whoever makes it: migration 0004). A request reads, in one statement, the fresh
revisions and counters of its posts, their boosted originals and their authors, and the
viewer's marks (liked, boosted, bookmarked, pinned); it builds only the parts it has not cached
(bench/profile_api.py and bench/api.py measure it; docs/benchmarks.md has the figures).

Two rules keep it right:
- The revision is read first, the parts after it: a part stored under revision r was built
  from data at least as new as r (PostgreSQL's READ COMMITTED could otherwise pair an old row
  the session already held with a newer revision).
- A session that has written and not committed builds but never stores: its writes may still
  roll back. (`kith.db.has_uncommitted_writes`.)
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, TypeVar

from sqlalchemy import BigInteger, bindparam, exists, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from kith import db_plans, policy
from kith.accounts.models import Account, AccountStats
from kith.db import has_uncommitted_writes, one_of, utc_day
from kith.emojis import service as emoji_service
from kith.filters import service as filters
from kith.filters.models import Filter
from kith.mastodon_api import entities
from kith.posts import presenter
from kith.posts.models import Bookmark, Like, Pin, Poll, Post
from kith.runtime import runtime_of
from kith.timelines.shapes import PostRef

Json = dict[str, Any]
K = TypeVar("K")
V = TypeVar("V")

MAX_POSTS = 20_000  # ~1.5 KB each: ~30 MB per process at most
MAX_ACCOUNTS = 10_000


class Lru(Generic[K, V]):
    """A small least-recently-used map (the event loop is its only user: no locking)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


@dataclass(frozen=True, slots=True)
class PostPart:
    """What a Status entity shows of one post that only changes with its `render_rev`."""

    rev: int
    static: Json  # entities.status_static: never mutated once stored


@dataclass
class EntityCache:
    posts: Lru[int, PostPart]
    accounts: Lru[int, tuple[int, Json]]  # id → (render_rev, entities.account_static)


def cache_of(db: AsyncSession) -> EntityCache:
    """This process's cache (one per Runtime)."""
    caches = runtime_of(db).caches
    cache = caches.get("entities")
    if cache is None:
        cache = caches["entities"] = EntityCache(Lru(MAX_POSTS), Lru(MAX_ACCOUNTS))
    return cache


class PostState(NamedTuple):
    """What is read fresh for each post every time: revisions, counters, the viewer's marks.
    (A named tuple: made from each row of every page, where a frozen dataclass's
    `object.__setattr__` per field cost ~5 % of a public timeline request.)"""

    id: int
    rev: int
    account_id: int
    reblog_of_id: int | None
    replies: int
    reblogs: int
    likes: int
    has_poll: bool
    liked: bool
    boosted: bool
    bookmarked: bool
    pinned: bool
    viewer_filters: bool  # the viewer has filters (of any context): judge the posts
    account_rev: int
    moved_to_id: int | None
    statuses_count: int | None
    followers_count: int | None
    following_count: int | None
    last_status_day: str | None  # entities.Counts


@functools.cache
def _state_statement(dialect_name: str) -> Any:
    """One row per post bound as `ids` (a page's posts and the originals they boost, which
    the caller knows: a boost's original never changes), for the viewer bound as `me` (None:
    anonymous): its PostState. Built once per process; one round trip to the database for a
    whole page, whatever is cached. (The statement once found the originals itself, through
    a union that read each post of the page twice more.)"""
    me: Any = bindparam("me", type_=BigInteger())
    boost = aliased(Post)
    return (
        select(
            Post.id,
            Post.render_rev,
            Post.account_id,
            Post.reblog_of_id,
            Post.replies_count,
            Post.reblogs_count,
            Post.likes_count,
            exists().where(Poll.post_id == Post.id),
            exists().where(Like.post_id == Post.id, Like.account_id == me),
            exists().where(boost.reblog_of_id == Post.id, boost.account_id == me),
            exists().where(Bookmark.post_id == Post.id, Bookmark.account_id == me),
            exists().where(Pin.post_id == Post.id, Pin.account_id == Post.account_id),
            exists().where(Filter.account_id == me),
            Account.render_rev,
            Account.moved_to_id,
            AccountStats.statuses_count,
            AccountStats.followers_count,
            AccountStats.following_count,
            utc_day(AccountStats.last_status_at),
        )
        .join(Account, Account.id == Post.account_id)
        .outerjoin(AccountStats, AccountStats.account_id == Post.account_id)
        .where(one_of(Post.id, "ids", dialect_name))
    )


async def _states(
    db: AsyncSession, me: int | None, posts: Sequence[Post | PostRef]
) -> dict[int, PostState]:
    """The states of these posts and of the originals they boost."""
    ids = {p.id: None for p in posts}
    ids.update((p.reblog_of_id, None) for p in posts if p.reblog_of_id is not None)
    statement = _state_statement(db.get_bind().dialect.name)
    rows = await db_plans.read(db, statement, {"ids": list(ids), "me": me})
    make = PostState._make
    return {r[0]: make(r) for r in rows}


async def _post_parts(
    db: AsyncSession, cache: EntityCache, viewer: policy.Viewer, states: dict[int, PostState]
) -> dict[int, PostPart]:
    """The static part of every post in `states`, from the cache or built (and stored)."""
    parts: dict[int, PostPart] = {}
    missing: list[int] = []
    for pid, state in states.items():
        part = cache.posts.get(pid)
        if part is not None and part.rev == state.rev:
            parts[pid] = part
        else:
            missing.append(pid)
    if not missing:
        return parts
    # A post this session has just written, unchanged since: its part from what the writer
    # held, at the revision its transaction left (presenter.remember_fresh).
    settings = runtime_of(db).settings
    keep = not has_uncommitted_writes(db)
    for pid in list(missing):
        view = presenter.fresh_view(db, pid, states[pid].rev)
        if view is not None:
            parts[pid] = PostPart(states[pid].rev, entities.status_static(settings, view))
            if keep:
                cache.posts.put(pid, parts[pid])
            missing.remove(pid)
    if not missing:
        return parts
    # Read after the revisions (see the module's docstring): fresh rows, not the session's.
    rows = (
        await db.scalars(
            select(Post).where(Post.id.in_(missing)).execution_options(populate_existing=True)
        )
    ).all()
    views = await presenter.present(db, viewer, list(rows))
    for v in views:
        part = PostPart(states[v.post.id].rev, entities.status_static(settings, v))
        parts[v.post.id] = part
        # A remote file not cached yet shows a placeholder until it is: presenting the post
        # again is what asks for it (presenter → media.remote.refetch_soon).
        if keep and not any(m.remote_url and not m.file_path for m in v.media):
            cache.posts.put(v.post.id, part)
    return parts


async def _accounts(
    db: AsyncSession, cache: EntityCache, states: dict[int, PostState]
) -> dict[int, Json]:
    """Account entities of the posts' authors: the static part cached, the counters fresh."""
    out: dict[int, Json] = {}
    missing: dict[int, PostState] = {}
    for state in states.values():
        if state.account_id in out:
            continue
        hit = cache.accounts.get(state.account_id)
        if hit is not None and hit[0] == state.account_rev:
            out[state.account_id] = hit[1] | entities.account_counts_fields(_counts(state))
        else:
            missing[state.account_id] = state
    if missing:
        settings = runtime_of(db).settings
        keep = not has_uncommitted_writes(db)
        accounts = await db.scalars(
            select(Account)
            .where(Account.id.in_(list(missing)))
            .execution_options(populate_existing=True)
        )
        rows = list(accounts)
        emojis = await emoji_service.for_accounts(db, rows)
        for a in rows:
            state = missing[a.id]
            static = entities.account_static(settings, a, emojis.get(a.id, ()))
            if keep:
                cache.accounts.put(a.id, (state.account_rev, static))
            out[a.id] = static | entities.account_counts_fields(_counts(state))
    moved = {s.account_id: s.moved_to_id for s in states.values() if s.moved_to_id is not None}
    await with_moved(db, out, moved)
    return out


async def with_moved(db: AsyncSession, found: dict[int, Json], moved: dict[int, int]) -> None:
    """Add Mastodon's `moved` (the Account entity of the account it moved to, without a
    `moved` of its own) to the entities in `found` ({account id: entity}) of the accounts in
    `moved` ({account id: id of the account it moved to}). One query, only when someone has
    moved; the target is read fresh (its profile changes with its own revision, not the
    mover's)."""
    if not moved:
        return
    targets = {
        a.id: a
        for a in await db.scalars(select(Account).where(Account.id.in_(set(moved.values()))))
    }
    counts = await entities.account_counts(db, list(targets))
    emojis = await emoji_service.for_accounts(db, targets.values())
    settings = runtime_of(db).settings
    for account_id, target_id in moved.items():
        target = targets.get(target_id)
        if target is not None and account_id in found:
            found[account_id]["moved"] = entities.account(
                settings, target, counts[target_id], emojis.get(target_id, ())
            )


def _counts(s: PostState) -> entities.Counts:
    return (s.statuses_count or 0, s.followers_count or 0, s.following_count or 0,
            s.last_status_day)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Marks:
    """What a viewer did to a post: liked, boosted, bookmarked."""

    liked: bool
    boosted: bool
    bookmarked: bool


def _entity(
    pid: int,
    states: dict[int, PostState],
    parts: dict[int, PostPart],
    accounts: dict[int, Json],
    polls: dict[int, presenter.PollView],
    me: int | None,
    hits: list[Any],
    marks: Marks | None = None,
) -> Json:
    """The one assembly of a Status entity from its parts (every API answer and every
    streamed event goes through it): the cached static part, the author, the boosted
    original, the counters, the viewer's marks (`marks`, else those read with the state)
    and the poll."""
    state = states[pid]
    data = dict(parts[pid].static)
    data["account"] = dict(accounts[state.account_id])
    original = state.reblog_of_id
    data["reblog"] = (
        _entity(original, states, parts, accounts, polls, me, []) if original in parts else None
    )
    data.update(entities.status_counts_fields(state.replies, state.reblogs, state.likes))
    own = me == state.account_id
    mine = marks or Marks(state.liked, state.boosted, state.bookmarked)
    data.update(
        entities.status_viewer_fields(
            liked=mine.liked,
            boosted=mine.boosted,
            bookmarked=mine.bookmarked,
            pinned=state.pinned if own else None,
            hits=hits,
        )
    )
    data["poll"] = entities.poll_of(pid, polls.get(pid), is_own=own)
    return data


async def statuses(
    db: AsyncSession,
    viewer: policy.Viewer,
    posts: Sequence[Post | PostRef],
    *,
    context: str | None = None,
) -> list[Json]:
    """Status entities for posts the viewer may see (kith.policy decided), in order, with the
    filters of `context` applied (a "hide" filter drops a post). Entities or refs alike: of
    each post only its id is used, unless the viewer's filters need its text."""
    if not posts:
        return []
    cache = cache_of(db)
    me = viewer.account_id
    states = await _states(db, me, posts)
    parts = await _post_parts(db, cache, viewer, states)
    accounts = await _accounts(db, cache, states)
    polls = await presenter.poll_views(
        db, me, {s.id: s.account_id for s in states.values() if s.has_poll}
    )
    hits_of: dict[int, list[Any] | None] = {}
    if context and any(s.viewer_filters for s in states.values()):
        hits_of = await _filter_hits(db, viewer, posts, states, context)
    out = []
    for p in posts:
        if p.id not in parts or p.id not in states:
            continue  # deleted meanwhile
        hits = hits_of.get(p.id, [])
        if hits is None:
            continue  # a "hide" filter caught it
        out.append(_entity(p.id, states, parts, accounts, polls, me, hits))
    return out


async def status_for_many(
    db: AsyncSession, post: Post, viewer_ids: Collection[int], *, context: str
) -> dict[int, Json]:
    """The Status entity of one post for many viewers who may all see it (a live post sent
    to everyone connected): {viewer id: entity}, each equal to what `statuses` gives that
    viewer; viewers whose "hide" filter catches it are left out. The parts are read once;
    what differs per viewer (liked, boosted, bookmarked, filter results) comes from one
    query each, and viewers alike share one entity. Only for an original post without a
    poll by someone else than the viewers (a boost's original and a poll's votes are the
    viewer's own: render those with `statuses`)."""
    assert post.reblog_of_id is None and post.account_id not in viewer_ids
    if not viewer_ids:
        return {}
    cache = cache_of(db)
    states = await _states(db, None, [post])  # no viewer: their marks are read below
    state = states.get(post.id)
    if state is None:
        return {}  # deleted meanwhile
    assert not state.has_poll, "polls are rendered one viewer at a time"
    parts = await _post_parts(db, cache, policy.Viewer(next(iter(viewer_ids))), states)
    accounts = await _accounts(db, cache, states)
    marks = await presenter.marks_of_viewers(db, post.id, viewer_ids)
    rules = await filters.active_rules_of(db, viewer_ids, context, post_ids={post.id})
    shared: dict[tuple[Any, ...], Json] = {}
    out: dict[int, Json] = {}
    for vid in viewer_ids:
        hits = filters.judge_post(post, post, False, rules.get(vid, []))
        if hits is None:
            continue
        done = marks.get(vid, set())
        mine = Marks(presenter.LIKE in done, presenter.BOOST in done, presenter.BOOKMARK in done)
        key = (mine, tuple(h.filter.id for h in hits))
        entity = shared.get(key)
        if entity is None:
            entity = _entity(post.id, states, parts, accounts, {}, vid, hits, mine)
            shared[key] = entity
        out[vid] = entity
    return out


async def _filter_hits(
    db: AsyncSession,
    viewer: policy.Viewer,
    posts: Sequence[Post | PostRef],
    states: dict[int, PostState],
    context: str,
) -> dict[int, list[Any] | None]:
    """{post id: the viewer's filter hits (None: hidden)} for the posts some filter of theirs
    catches in this context; nothing at all (one query) for the many who have none."""
    rules = await filters.active_rules(db, viewer, context, post_ids=list(states))
    if not rules:
        return {}
    # The text judged is the shown post's (a boost's original): entities of those not given.
    rows = {p.id: p for p in posts if isinstance(p, Post)}
    shown_ids = {p.reblog_of_id if p.reblog_of_id is not None else p.id for p in posts}
    if shown_ids - rows.keys():
        found = await db.scalars(select(Post).where(Post.id.in_(list(shown_ids - rows.keys()))))
        rows |= {p.id: p for p in found}
    out: dict[int, list[Any] | None] = {}
    for p in posts:
        shown = rows.get(p.reblog_of_id if p.reblog_of_id is not None else p.id)
        if shown is None:
            continue
        hits = filters.judge_post(p, shown, viewer.account_id == shown.account_id, rules)
        if hits:
            out[p.id] = hits
        elif hits is None:
            out[p.id] = None
    return out
