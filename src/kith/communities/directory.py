"""Finding communities: the directory (search by name or topic, sorted by size, activity or
age) and "suggested for you", which says why each community is suggested.

Every community's card — name, handle, description, topics, membership model, member count —
is public (`policy.can_see_community` keeps only a private community's *content* to its
members), so the directory lists private communities too. The activity figure counts only
what anyone may see: approved posts that are not members-only, so a private community's
activity is never shown or used to sort."""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import Select, func, literal, or_, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from kith.communities.models import (
    Community,
    CommunityBan,
    CommunityPost,
    CommunityPostState,
    Membership,
    MemberState,
)
from kith.db import id_for_time, utcnow
from kith.errors import ValidationFailed
from kith.posts.models import Like, Post, PostTag, Tag
from kith.text import normalize_hashtag

PAGE_SIZE = 30
MAX_OFFSET = 1000
MAX_QUERY = 100
ACTIVITY_WINDOW = timedelta(days=7)
# "Suggested for you" reads what one wrote, liked and boosted in this window …
ENGAGEMENT_WINDOW = timedelta(days=30)
# … counts at most this many of each (the newest), and keeps the most used tags.
ENGAGEMENT_READ = 500
SUGGESTION_TAGS = 20


class DirectorySort(enum.StrEnum):
    MEMBERS = "members"  # most active members first
    ACTIVE = "active"  # most public posts (threads and replies) in the last 7 days first
    NEW = "new"  # newest first


@dataclass
class Listing:
    """One community as the directory shows it."""

    community: Community
    members: int
    activity: int  # approved, not members-only posts in the last ACTIVITY_WINDOW


@dataclass
class TagUse:
    """How I used one hashtag lately: the reason a community with that topic is suggested."""

    tag: str
    wrote: int = 0
    liked: int = 0
    boosted: int = 0

    @property
    def explanation(self) -> str:
        """What the suggestion rests on, e.g. “you wrote 2 posts and liked 1 tagged #seeds”."""
        did = []
        if self.wrote:
            did.append(f"wrote {self.wrote} post{'' if self.wrote == 1 else 's'}")
        if self.boosted:
            did.append(f"boosted {self.boosted}")
        if self.liked:
            did.append(f"liked {self.liked}")
        done = " and ".join([", ".join(did[:-1]), did[-1]] if len(did) > 1 else did)
        return f"you {done} tagged #{self.tag}"

    @property
    def weight(self) -> int:
        # Writing about a topic says more than liking it.
        return 2 * self.wrote + self.boosted + self.liked


@dataclass
class Suggestion:
    listing: Listing
    because: list[TagUse] = field(default_factory=list)  # matched topics, strongest first


def _members_count() -> Any:
    return (
        select(Membership.community_id, func.count().label("n"))
        .where(Membership.state == MemberState.ACTIVE)
        .group_by(Membership.community_id)
        .subquery()
    )


def _activity_count() -> Any:
    floor = id_for_time(utcnow() - ACTIVITY_WINDOW)
    return (
        select(CommunityPost.community_id, func.count().label("n"))
        .where(
            CommunityPost.state == CommunityPostState.APPROVED,
            CommunityPost.members_only.is_(False),
            CommunityPost.post_id >= floor,
        )
        .group_by(CommunityPost.community_id)
        .subquery()
    )


def _listings_statement() -> tuple[Select[Any], Any, Any]:
    members, activity = _members_count(), _activity_count()
    n_members = func.coalesce(members.c.n, 0)
    n_activity = func.coalesce(activity.c.n, 0)
    stmt = (
        select(Community, n_members, n_activity)
        .outerjoin(members, members.c.community_id == Community.id)
        .outerjoin(activity, activity.c.community_id == Community.id)
    )
    return stmt, n_members, n_activity


async def _ids_with_topics(db: AsyncSession, tags: set[str]) -> set[int]:
    """Communities having any of these topics. Topics are a JSON list, which SQLite and
    PostgreSQL cannot index alike, so they are matched here; fine for thousands of
    communities (a `community_topics` table is the next step beyond that)."""
    if not tags:
        return set()
    rows = await db.execute(select(Community.id, Community.topics))
    return {cid for cid, topics in rows.all() if tags.intersection(topics or [])}


async def browse(
    db: AsyncSession,
    *,
    query: str = "",
    sort: str = DirectorySort.MEMBERS,
    offset: int = 0,
    limit: int = PAGE_SIZE,
) -> list[Listing]:
    """Communities matching `query` (words in the name, handle or description; `#tag` or a
    word that is one of its topics), in the chosen order. Empty query: all of them."""
    try:
        order = DirectorySort(sort)
    except ValueError:
        raise ValidationFailed("Sort by members, active or new.", field="sort") from None
    if not 0 <= offset <= MAX_OFFSET:
        raise ValidationFailed(f"Use an offset between 0 and {MAX_OFFSET}.", field="offset")
    query = query.strip()
    if len(query) > MAX_QUERY:
        raise ValidationFailed(f"Search with at most {MAX_QUERY} characters.", field="q")
    stmt, n_members, n_activity = _listings_statement()
    # This instance's communities: a remote one is reached by its `!name@host` address.
    stmt = stmt.where(Community.domain == "")
    if query:
        tag = normalize_hashtag(query.lstrip("#"))
        by_topic = await _ids_with_topics(db, {tag} if tag else set())
        if query.startswith("#"):
            stmt = stmt.where(Community.id.in_(by_topic or [-1]))
        else:
            needle = query.lower()
            stmt = stmt.where(
                or_(
                    func.lower(Community.name).contains(needle, autoescape=True),
                    Community.handle_key.contains(needle.lstrip("!@"), autoescape=True),
                    func.lower(Community.description).contains(needle, autoescape=True),
                    Community.id.in_(by_topic or [-1]),
                )
            )
    if order == DirectorySort.MEMBERS:
        stmt = stmt.order_by(n_members.desc(), n_activity.desc(), Community.id.desc())
    elif order == DirectorySort.ACTIVE:
        stmt = stmt.order_by(n_activity.desc(), n_members.desc(), Community.id.desc())
    else:
        stmt = stmt.order_by(Community.id.desc())
    rows = await db.execute(stmt.offset(offset).limit(max(1, min(limit, 100))))
    return [Listing(c, int(m), int(a)) for c, m, a in rows.all()]


async def listing(db: AsyncSession, community: Community) -> Listing:
    """One community's card figures (for its own page)."""
    stmt, _, _ = _listings_statement()
    row = (await db.execute(stmt.where(Community.id == community.id))).one()
    return Listing(community, int(row[1]), int(row[2]))


# --- suggested for you ---------------------------------------------------------------------


def _recent_tags(account_id: int, floor: int) -> Any:
    """(kind, tag name) for each hashtag of what the person wrote, liked and boosted since
    `floor` (an id), the newest ENGAGEMENT_READ of each kind."""
    wrote = (
        select(Post.id.label("post_id"))
        .where(Post.account_id == account_id, Post.id >= floor, Post.reblog_of_id.is_(None))
        .order_by(Post.id.desc())
        .limit(ENGAGEMENT_READ)
        .subquery()
    )
    liked = (
        select(Like.post_id.label("post_id"))
        .where(Like.account_id == account_id, Like.id >= floor)
        .order_by(Like.id.desc())
        .limit(ENGAGEMENT_READ)
        .subquery()
    )
    boosted = (
        select(Post.reblog_of_id.label("post_id"))
        .where(Post.account_id == account_id, Post.id >= floor, Post.reblog_of_id.isnot(None))
        .order_by(Post.id.desc())
        .limit(ENGAGEMENT_READ)
        .subquery()
    )
    parts = [
        select(literal(kind).label("kind"), Tag.name)
        .select_from(sub)
        .join(PostTag, PostTag.post_id == sub.c.post_id)
        .join(Tag, Tag.id == PostTag.tag_id)
        for kind, sub in (("wrote", wrote), ("liked", liked), ("boosted", boosted))
    ]
    return union_all(*parts)


async def tag_uses(db: AsyncSession, account_id: int) -> list[TagUse]:
    """The hashtags the person used lately (wrote, liked, boosted), most weighty first."""
    floor = id_for_time(utcnow() - ENGAGEMENT_WINDOW)
    counts: Counter[tuple[str, str]] = Counter()
    for kind, name in (await db.execute(_recent_tags(account_id, floor))).all():
        counts[(kind, name)] += 1
    uses: dict[str, TagUse] = {}
    for (kind, name), n in counts.items():
        use = uses.setdefault(name, TagUse(name))
        setattr(use, kind, getattr(use, kind) + n)
    ranked = sorted(uses.values(), key=lambda u: (-u.weight, u.tag))
    return ranked[:SUGGESTION_TAGS]


async def suggested(db: AsyncSession, account_id: int, *, limit: int = 5) -> list[Suggestion]:
    """Communities whose topics match the hashtags of posts the person wrote, liked or boosted
    in the last 30 days, and that they are not in, have not asked to join and are not banned
    from: the strongest matches first, each with the tags that made it."""
    uses = await tag_uses(db, account_id)
    by_tag = {u.tag: u for u in uses}
    ids = await _ids_with_topics(db, set(by_tag))
    if not ids:
        return []
    mine = select(Membership.community_id).where(Membership.account_id == account_id)
    banned = select(CommunityBan.community_id).where(
        CommunityBan.account_id == account_id,
        or_(CommunityBan.until.is_(None), CommunityBan.until > utcnow()),
    )
    stmt, _, _ = _listings_statement()
    stmt = stmt.where(Community.id.in_(ids), Community.id.not_in(mine), Community.id.not_in(banned))
    out: list[Suggestion] = []
    for community, members, activity in (await db.execute(stmt)).all():
        because = [by_tag[t] for t in community.topics or [] if t in by_tag]
        because.sort(key=lambda u: (-u.weight, u.tag))
        out.append(Suggestion(Listing(community, int(members), int(activity)), because))
    out.sort(
        key=lambda s: (
            -sum(u.weight for u in s.because),
            -s.listing.members,
            s.listing.community.id,
        )
    )
    return out[:limit]
