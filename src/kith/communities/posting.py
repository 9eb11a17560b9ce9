"""Posts in communities: a new thread addressed to communities, a reply joining its thread's
communities, and the gate (`posts.community_gate`) that keeps a private community's posts,
and those waiting for approval or removed, to their audience.

`posts.service.create_post` calls `addressed` before it writes anything (every refusal is a
ValidationFailed naming the field, with nothing written) and `attach` once the post row is
flushed, in its transaction. A public or unlisted new thread is also addressed to the local
communities its text mentions (`mentioned`), under the same rules. Who may post is
`communities.permissions`'; who may see is `kith.policy`'s, from the gate set here."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kith.communities import notices, permissions
from kith.communities.models import (
    Community,
    CommunityFlair,
    CommunityGate,
    CommunityPost,
    CommunityPostState,
    Membership,
    MembershipModel,
    MemberState,
)
from kith.communities.permissions import CommunityAction
from kith.db import utcnow
from kith.errors import ValidationFailed
from kith.posts.models import Post, Visibility
from kith.runtime import runtime_of
from kith.text import ParsedText

MAX_COMMUNITIES_PER_POST = 5
# Posts addressed to a community are for the community: not followers-only, not direct.
COMMUNITY_VISIBILITIES = (Visibility.PUBLIC, Visibility.UNLISTED)


@dataclass(frozen=True)
class Addressed:
    """Where a new post goes, checked before anything is written."""

    threads: list[Community] = field(default_factory=list)  # it starts a thread in these
    # A reply: the communities of its thread (root id, community, members-only there).
    thread_root_id: int | None = None
    replies: list[tuple[Community, bool]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.threads and not self.replies


NOWHERE = Addressed()


async def mentioned(
    db: AsyncSession, parsed: ParsedText, *, accounts: Collection[str] = ()
) -> dict[str, Community]:
    """The local communities a post's text mentions — `@handle`, `@handle@our.domain`,
    `!handle`, `!handle@our.domain` — under the keys `text.render_post` links mentions by
    ("bikes", "bikes@host", "!bikes", "!bikes@host"). `accounts`: the `@` mention keys
    already found to be accounts (handles and usernames never clash, so those are not
    looked up). Communities of other servers are not ours to find here."""
    domain = runtime_of(db).settings.domain.lower()
    ours = {domain, domain.split(":")[0]}
    names: dict[str, str] = {}  # mention key → handle key
    for key in parsed.mentions:
        name, _, host = key.partition("@")
        if key not in accounts and (not host or host in ours):
            names[key] = name
    for key in parsed.community_mentions:
        name, _, host = key.partition("@")
        if not host or host in ours:
            names["!" + key] = name
    if not names:
        return {}
    rows = await db.scalars(
        select(Community).where(
            Community.handle_key.in_(set(names.values())), Community.domain == ""
        )
    )
    by_handle = {c.handle_key: c for c in rows}
    return {key: by_handle[name] for key, name in names.items() if name in by_handle}


async def addressed(
    db: AsyncSession,
    author_id: int,
    community_ids: Sequence[int],
    visibility: str,
    parent: Post | None,
    mentioned: Sequence[Community] = (),
) -> Addressed:
    """Check where a new post may go: the communities it is addressed to (a thread), or, for a
    reply, its thread's. Raises ValidationFailed (field `community_ids`, `visibility` or
    `in_reply_to_id`) when the author may not post there or the thread is locked.

    `mentioned` (from `mentioned`): communities its text names. A public or unlisted new
    thread is addressed to them as if they were in `community_ids`, and refused the same way
    (field `status`: the mention is what to change). A reply ignores them (it goes to its
    thread's communities), and so does a followers-only or direct post: it is meant for a
    few people, so naming a community there only links to it."""
    if parent is not None:
        if community_ids:
            raise ValidationFailed(
                "A reply goes to the communities of its thread.", field="community_ids"
            )
        return await _thread_of(db, author_id, parent)
    ids = list(dict.fromkeys(community_ids))
    by_mention: list[Community] = []
    if visibility in COMMUNITY_VISIBILITIES:
        for community in mentioned:
            if community.id not in ids and all(c.id != community.id for c in by_mention):
                by_mention.append(community)
    if not ids and not by_mention:
        return NOWHERE
    if any(not isinstance(i, int) or not 0 < i < 2**63 for i in ids):
        raise ValidationFailed("No such community.", field="community_ids")
    if len(ids) + len(by_mention) > MAX_COMMUNITIES_PER_POST:
        raise ValidationFailed(
            f"Post to at most {MAX_COMMUNITIES_PER_POST} communities at once."
            + (_BY_MENTION if by_mention else ""),
            field="community_ids" if len(ids) > MAX_COMMUNITIES_PER_POST else "status",
        )
    if visibility not in COMMUNITY_VISIBILITIES:
        raise ValidationFailed(
            "Posts in a community are public or unlisted: choose one of those.",
            field="visibility",
        )
    found = {c.id: c for c in await db.scalars(select(Community).where(Community.id.in_(ids)))}
    if len(found) != len(ids):
        raise ValidationFailed("No such community.", field="community_ids")
    targets = [found[i] for i in ids] + by_mention
    if len(targets) > 1 and any(c.membership == MembershipModel.PRIVATE for c in targets):
        raise ValidationFailed(
            "A private community's posts stay in it: post there alone."
            + (_BY_MENTION if by_mention else ""),
            field="status" if by_mention else "community_ids",
        )
    if len(targets) > 1 and any(c.is_remote for c in targets):
        # Its Group names one community in `audience`, and its own server decides about it.
        raise ValidationFailed(
            "A community on another server takes posts of its own: post there alone.",
            field="community_ids",
        )
    for community in targets:
        who = await permissions.standing(db, author_id, community)
        if not permissions.allows(who, CommunityAction.POST):
            if community.id not in ids:
                raise ValidationFailed(_refusal(who, community) + _BY_MENTION, field="status")
            raise ValidationFailed(_refusal(who, community), field="community_ids")
    return Addressed(threads=targets)


# Said with a refusal caused by a mention, so the author sees why naming one mattered.
_BY_MENTION = " (Mentioning a community posts to it.)"


def _refusal(who: permissions.Standing, community: Community) -> str:
    if who.banned:
        return f"You are banned from !{community.handle}."
    if who.suspended:
        return "This account can't post in communities."
    return f"Only members can post in !{community.handle}: join it first."


async def _thread_of(db: AsyncSession, author_id: int, parent: Post) -> Addressed:
    """A reply joins the communities of its thread, unless a moderator locked it there or the
    replier may not reply in one of them (`permissions.can_reply`)."""
    root_id = parent.thread_root_id or parent.id
    rows = (
        await db.execute(
            select(Community, CommunityPost.locked_at, CommunityPost.members_only)
            .join(CommunityPost, CommunityPost.community_id == Community.id)
            .where(CommunityPost.post_id == root_id, CommunityPost.is_thread.is_(True))
        )
    ).all()
    if not rows:
        return NOWHERE
    if any(locked_at is not None for _, locked_at, _ in rows):
        raise ValidationFailed("This thread is locked: no new replies.", field="in_reply_to_id")
    for community, _, _ in rows:
        if not await permissions.can_reply(db, author_id, community):
            raise ValidationFailed(
                f"You can't reply in !{community.handle}'s threads.", field="in_reply_to_id"
            )
    return Addressed(thread_root_id=root_id, replies=[(c, private) for c, _, private in rows])


async def check_flairs(db: AsyncSession, where: Addressed, flairs: Mapping[int, int]) -> None:
    """Each chosen flair (community id → flair id) is one of that community's, and the post
    starts a thread there; ValidationFailed (field `flair`) otherwise. Before any write."""
    if not flairs:
        return
    threads = {c.id: c for c in where.threads}
    rows = await db.execute(
        select(CommunityFlair.community_id, CommunityFlair.id).where(
            CommunityFlair.id.in_(list(flairs.values()))
        )
    )
    known = {(community_id, flair_id) for community_id, flair_id in rows}
    for community_id, flair_id in flairs.items():
        if community_id not in threads or (community_id, flair_id) not in known:
            raise ValidationFailed("No such flair in this community.", field="flair")


async def attach(
    db: AsyncSession, post: Post, where: Addressed, flairs: Mapping[int, int] | None = None
) -> None:
    """Write the post's community rows and its gate (in the caller's transaction, after the
    post row is flushed). A new thread waits for approval where the community asks for it,
    unless its author moderates there, and wears its flair there (`flairs`, checked by
    `check_flairs`); a reply never waits, and counts as the thread's newest activity."""
    if where.empty:
        return
    now = utcnow()
    rows: list[CommunityPost] = []
    for community in where.threads:
        queued = community.post_approval and not await permissions.can(
            db, post.account_id, community, CommunityAction.MODERATE
        )
        rows.append(
            CommunityPost(
                community_id=community.id,
                post_id=post.id,
                is_thread=True,
                members_only=community.membership == MembershipModel.PRIVATE,
                state=CommunityPostState.PENDING if queued else CommunityPostState.APPROVED,
                created_at=now,
                active_id=post.id,
                flair_id=(flairs or {}).get(community.id),
            )
        )
    for community, members_only in where.replies:
        rows.append(
            CommunityPost(
                community_id=community.id,
                post_id=post.id,
                is_thread=False,
                members_only=members_only,
                state=CommunityPostState.APPROVED,
                created_at=now,
                active_id=post.id,
            )
        )
    db.add_all(rows)
    if where.thread_root_id is not None:
        await db.execute(
            update(CommunityPost)
            .where(
                CommunityPost.post_id == where.thread_root_id,
                CommunityPost.community_id.in_([c.id for c, _ in where.replies]),
            )
            .values(thread_replies=CommunityPost.thread_replies + 1, active_id=post.id)
            .execution_options(synchronize_session=False)
        )
    post.community_gate = gate_of((r.state, r.members_only) for r in rows)
    await db.flush()  # the gate must be in place before notifications ask the policy
    waiting = [r.community_id for r in rows if r.state == CommunityPostState.PENDING]
    if waiting:
        await notices.post_waiting(db, waiting, post.id, post.account_id)


def gate_of(rows: Iterable[tuple[str, bool]]) -> str | None:
    """The gate of a post from its community rows (state, members-only): none when it is in
    no community or approved in an open one; members when approved only in a private one;
    moderators when approved nowhere (waiting or removed everywhere)."""
    rows = list(rows)
    if not rows:
        return None
    approved = [
        members_only for state, members_only in rows if state == CommunityPostState.APPROVED
    ]
    if not approved:
        return CommunityGate.MODERATORS
    return CommunityGate.MEMBERS if all(approved) else None


async def refresh_gate(db: AsyncSession, post_id: int) -> None:
    """Recompute a post's gate from its rows after a moderator changed one (caller's
    transaction)."""
    rows = (
        await db.execute(
            select(CommunityPost.state, CommunityPost.members_only).where(
                CommunityPost.post_id == post_id
            )
        )
    ).all()
    gate = gate_of((state, members_only) for state, members_only in rows)
    await db.execute(
        update(Post)
        .where(Post.id == post_id)
        .values(community_gate=gate)
        .execution_options(synchronize_session="fetch")
    )


async def communities_of(db: AsyncSession, post_ids: Sequence[int]) -> dict[int, list[Community]]:
    """The communities each post is approved in (a cross-post shows them all), for display."""
    if not post_ids:
        return {}
    rows = await db.execute(
        select(CommunityPost.post_id, Community)
        .join(Community, Community.id == CommunityPost.community_id)
        .where(
            CommunityPost.post_id.in_(list(post_ids)),
            CommunityPost.state == CommunityPostState.APPROVED,
        )
        .order_by(CommunityPost.post_id, Community.handle_key)
    )
    out: dict[int, list[Community]] = {}
    for post_id, community in rows.all():
        out.setdefault(post_id, []).append(community)
    return out


async def cross_post_choices(
    db: AsyncSession, account_id: int, community: Community
) -> list[Community]:
    """The other communities a thread started in `community` could also go to, for a
    composer to offer: ours where the person is an active member and that are not private
    (a private community's posts go there alone), by name; none when `community` is private
    or another server's. `addressed` still decides when the post is made."""
    if community.membership == MembershipModel.PRIVATE or community.is_remote:
        return []
    rows = await db.scalars(
        select(Community)
        .join(Membership, Membership.community_id == Community.id)
        .where(
            Membership.account_id == account_id,
            Membership.state == MemberState.ACTIVE,
            Community.id != community.id,
            Community.domain == "",
            Community.membership != MembershipModel.PRIVATE,
        )
        .order_by(Community.name, Community.handle_key)
    )
    return list(rows.all())
