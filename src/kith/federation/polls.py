"""Polls across instances.

Out: a local person's vote in a remote poll is a `Create` of a `Note` whose `name` is the
option and whose `inReplyTo` is the `Question`, addressed to the poll's author only (one per
option chosen), as Mastodon sends them. The local counts move at once; the author's next
`Update(Question)` brings the real ones (`remote_posts.update_note`).

In: such a Note aimed at one of our polls is a vote, never a post. It counts once per voter
and option, only while the poll is open, only when the voter may see the poll
(`kith.policy`), never from the poll's author, and one option only in a single-choice poll.
When a local poll ends, its results go out as `Update(Question)` to the servers that received
it (`outbound.post_edited`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy
from kith.accounts.models import Account
from kith.db import new_id, utcnow
from kith.federation import outbound
from kith.federation.activitypub import actor_id
from kith.federation.delivery import deliver
from kith.federation.local_objects import is_local, post_by_uri
from kith.federation.origin import first_id
from kith.posts.models import Poll, PollVote, Post
from kith.runtime import runtime_of


async def poll_voted_in(db: AsyncSession, obj: dict[str, Any]) -> tuple[Post, Poll] | None:
    """The local poll a Note votes in: a Note with a `name` replying to one of our posts that
    has a poll (Mastodon's own test); None when the Note is not a vote."""
    name = obj.get("name")
    reply_to = first_id(obj.get("inReplyTo"))
    if not isinstance(name, str) or not name or reply_to is None or not is_local(db, reply_to):
        return None
    post = await post_by_uri(db, reply_to)
    poll = await db.get(Poll, post.id) if post is not None else None
    return (post, poll) if post is not None and poll is not None else None


async def recount(db: AsyncSession, poll: Poll) -> None:
    """A local poll's totals from its vote rows."""
    poll.votes_count = int(
        await db.scalar(
            select(func.count()).select_from(PollVote).where(PollVote.post_id == poll.post_id)
        )
        or 0
    )
    poll.voters_count = int(
        await db.scalar(
            select(func.count(func.distinct(PollVote.account_id))).where(
                PollVote.post_id == poll.post_id
            )
        )
        or 0
    )


async def receive_vote(
    db: AsyncSession, voter: Account, post: Post, poll: Poll, obj: dict[str, Any]
) -> str:
    """Count a remote vote (`obj`) in a local poll if the rules allow it; returns the outcome."""
    if poll.expires_at <= utcnow():
        return "refused: the poll has ended"
    if post.account_id == voter.id:
        return "refused: an author does not vote in their own poll"
    if not await policy.can_see_post(db, policy.Viewer(voter.id), post):
        return "refused: the voter cannot see the poll"
    name = str(obj["name"]).strip()
    if name not in poll.options:
        return "refused: no such option"
    choice = list(poll.options).index(name)
    earlier = set(
        (
            await db.scalars(
                select(PollVote.choice).where(
                    PollVote.post_id == post.id, PollVote.account_id == voter.id
                )
            )
        ).all()
    )
    if choice in earlier:
        return "ignored: already counted"
    if earlier and not poll.multiple:
        return "refused: one choice only in this poll"
    try:
        async with db.begin_nested():
            db.add(PollVote(post_id=post.id, account_id=voter.id, choice=choice))
    except IntegrityError:  # the same vote, delivered twice at once
        return "ignored: already counted"
    await recount(db, poll)
    return "counted"


async def vote_cast(
    db: AsyncSession, voter_id: int, post: Post, poll: Poll, choices: list[int]
) -> None:
    """A local vote in a remote poll (rows already written): move the local counts and send
    the vote to the poll's author. No commit."""
    counts = list(poll.remote_counts or [0] * len(poll.options))
    for c in choices:
        counts[c] += 1
    poll.remote_counts = counts
    poll.votes_count += len(choices)
    poll.voters_count += 1
    voter = await db.get(Account, voter_id)
    author = await db.get(Account, post.account_id)
    if voter is None or author is None or author.is_local or not post.uri or not author.uri:
        return
    inbox = await outbound.personal_inbox(db, author)
    if inbox is None:
        return
    settings = runtime_of(db).settings
    me = actor_id(settings, voter)
    for c in choices:
        vote_id = f"{me}#votes/{new_id()}"
        note = {
            "id": vote_id,
            "type": "Note",
            "name": poll.options[c],
            "attributedTo": me,
            "to": [author.uri],
            "inReplyTo": post.uri,
        }
        activity = {
            "@context": "https://www.w3.org/ns/activitystreams",
            "id": f"{vote_id}/activity",
            "type": "Create",
            "actor": me,
            "to": [author.uri],
            "object": note,
        }
        await deliver(db, voter, activity, [inbox])


async def poll_ended(db: AsyncSession, post: Post) -> None:
    """Send the final results of a local poll (`Update(Question)`) to the servers that
    received it. No commit."""
    await outbound.post_edited(db, post)
