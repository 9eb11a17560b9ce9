"""Polls across instances: remote votes in our polls count once per voter and option, only
while open and only from people who may see the poll; our votes in remote polls go to the
poll's author; Update(Question) refreshes remote counts; our ended polls send their results."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts.models import Account
from kith.config import Settings
from kith.db import utcnow
from kith.errors import ValidationFailed
from kith.federation import keys
from kith.graph.models import Follow
from kith.jobs.models import Job
from kith.posts import service as posts
from kith.posts.models import Poll, PollVote, Post, Visibility
from kith.posts.service import PollInput
from kith.runtime import Runtime
from tests.federation.helpers import PUBLIC
from tests.federation.inbound import count, deliver, local, loopback
from tests.federation.local_http import local_server
from tests.federation.peer import Peer
from tests.federation.remote_inbox import RemoteInbox, learn_keys, run_jobs
from tests.federation.remote_world import remote_post
from tests.world import person, post, viewer

pytestmark = pytest.mark.usefixtures("rt")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return loopback(settings)


@pytest.fixture
async def peer() -> AsyncIterator[tuple[Peer, RemoteInbox]]:
    async with local_server("127.0.0.1") as server:
        p = Peer(server)
        p.add_actor("alice", key=0)
        p.add_actor("mallory", key=1)
        inbox = RemoteInbox(server)
        for path in ("/inbox", "/users/alice/inbox"):
            server.routes[path] = inbox.route
        yield p, inbox


async def ana_poll(
    db: AsyncSession, *, visibility: Visibility = Visibility.PUBLIC, multiple: bool = False
) -> Post:
    ana = await person(db, "ana")
    return await post(
        db,
        ana,
        "Tomatoes or beans?",
        visibility=visibility,
        poll=PollInput(options=["tomatoes", "beans", "both"], expires_in=3600, multiple=multiple),
    )


def vote(p: Peer, name: str, poll_post: Post, option: str) -> dict[str, Any]:
    p.counter += 1
    note = {
        "id": f"{p.actor_uri(name)}#votes/{p.counter}",
        "type": "Note",
        "name": option,
        "attributedTo": p.actor_uri(name),
        "to": [local("ana")],
        "inReplyTo": f"{local('ana')}/statuses/{poll_post.id}",
    }
    return p.activity(name, "Create", note, to=[local("ana")])


async def tally(db: AsyncSession, poll_post: Post) -> tuple[list[int], int, int]:
    counts = await posts.poll_results(db, poll_post.id)
    poll = await db.get(Poll, poll_post.id, populate_existing=True)
    assert poll is not None
    return counts, poll.votes_count, poll.voters_count


async def test_remote_vote__in_an_open_public_poll__counts_once(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: tuple[Peer, RemoteInbox]
) -> None:
    p, _ = peer
    poll_post = await ana_poll(db)
    # When alice votes "beans", and the same vote arrives again under another id
    first = await deliver(settings, rt, p, vote(p, "alice", poll_post, "beans"))
    again = await deliver(settings, rt, p, vote(p, "alice", poll_post, "beans"))
    # Then it counts once, and is not stored as a post
    assert (first, again) == ("counted", "ignored: already counted")
    assert await tally(db, poll_post) == ([0, 1, 0], 1, 1)
    assert await count(db, Post, Post.content_html == "") == 0


async def test_attack__second_choice_in_a_single_choice_poll__is_refused(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: tuple[Peer, RemoteInbox]
) -> None:
    p, _ = peer
    poll_post = await ana_poll(db)
    await deliver(settings, rt, p, vote(p, "alice", poll_post, "beans"))
    outcome = await deliver(settings, rt, p, vote(p, "alice", poll_post, "tomatoes"))
    assert outcome == "refused: one choice only in this poll"
    assert await tally(db, poll_post) == ([0, 1, 0], 1, 1)


async def test_remote_votes__in_a_multiple_choice_poll__count_per_option(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: tuple[Peer, RemoteInbox]
) -> None:
    p, _ = peer
    poll_post = await ana_poll(db, multiple=True)
    for option in ("beans", "both", "beans"):
        await deliver(settings, rt, p, vote(p, "alice", poll_post, option))
    assert await tally(db, poll_post) == ([0, 1, 1], 2, 1)


async def test_attack__vote_in_a_closed_poll__is_refused(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: tuple[Peer, RemoteInbox]
) -> None:
    p, _ = peer
    poll_post = await ana_poll(db)
    poll = await db.get(Poll, poll_post.id)
    assert poll is not None
    poll.expires_at = utcnow() - timedelta(minutes=1)
    await db.commit()
    outcome = await deliver(settings, rt, p, vote(p, "alice", poll_post, "beans"))
    assert outcome == "refused: the poll has ended"
    assert await count(db, PollVote) == 0


async def test_attack__vote_by_someone_who_cannot_see_the_poll__is_refused(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: tuple[Peer, RemoteInbox]
) -> None:
    p, _ = peer
    # Given a followers-only poll; mallory does not follow ana, alice does
    poll_post = await ana_poll(db, visibility=Visibility.PRIVATE)
    await deliver(settings, rt, p, p.activity("alice", "Like", f"{local('ana')}/statuses/1"))
    alice = await db.scalar(select(Account).where(Account.uri == p.actor_uri("alice")))
    assert alice is not None
    db.add(Follow(follower_id=alice.id, followee_id=poll_post.account_id))
    await db.commit()
    # When both vote
    refused = await deliver(settings, rt, p, vote(p, "mallory", poll_post, "beans"))
    counted = await deliver(settings, rt, p, vote(p, "alice", poll_post, "tomatoes"))
    # Then only alice's vote counts
    assert refused == "refused: the voter cannot see the poll"
    assert counted == "counted"
    assert await tally(db, poll_post) == ([1, 0, 0], 1, 1)


async def test_attack__vote_for_an_option_the_poll_does_not_have__is_refused(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: tuple[Peer, RemoteInbox]
) -> None:
    p, _ = peer
    poll_post = await ana_poll(db)
    outcome = await deliver(settings, rt, p, vote(p, "alice", poll_post, "zucchini"))
    assert outcome == "refused: no such option"
    assert await count(db, PollVote) == 0


async def remote_poll(db: AsyncSession, p: Peer) -> tuple[Account, Post]:
    """alice's remote poll, as stored after its Create."""
    alice = await db.scalar(select(Account).where(Account.uri == p.actor_uri("alice")))
    assert alice is not None
    question = await remote_post(db, alice, text="<p>Red or green?</p>")
    db.add(
        Poll(
            post_id=question.id,
            options=["red", "green"],
            expires_at=utcnow() + timedelta(hours=1),
            votes_count=3,
            voters_count=3,
            remote_counts=[1, 2],
        )
    )
    await db.commit()
    return alice, question


async def test_local_vote__in_a_remote_poll__goes_to_its_author_only(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: tuple[Peer, RemoteInbox]
) -> None:
    p, inbox = peer
    await deliver(settings, rt, p, p.activity("alice", "Like", f"{local('ana')}/statuses/1"))
    alice, question = await remote_poll(db, p)
    bo = await person(db, "bo")
    # When bo votes "green"
    poll = await posts.vote(db, viewer(bo), question.id, [1])
    # Then the counts here move at once
    assert poll.remote_counts == [1, 3] and (poll.votes_count, poll.voters_count) == (4, 4)
    # And alice's inbox receives a Note named "green" in reply to the Question, for her only
    await keys.local_key(db, bo)
    await learn_keys(db, inbox)
    await run_jobs(rt)
    (create,) = inbox.activities("Create")
    note = create["object"]
    assert note["name"] == "green" and note["inReplyTo"] == question.uri
    assert note["to"] == [alice.uri] and create["to"] == [alice.uri] and "cc" not in note
    assert inbox.received[0].path == "/users/alice/inbox" and inbox.received[0].verified
    # And voting twice is refused
    with pytest.raises(ValidationFailed):
        await posts.vote(db, viewer(bo), question.id, [0])


async def test_update_question__refreshes_remote_counts(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: tuple[Peer, RemoteInbox]
) -> None:
    p, _ = peer
    await deliver(settings, rt, p, p.activity("alice", "Like", f"{local('ana')}/statuses/1"))
    _, question = await remote_poll(db, p)
    update = {
        "id": question.uri,
        "type": "Question",
        "attributedTo": p.actor_uri("alice"),
        "content": "<p>Red or green?</p>",
        "to": [PUBLIC],
        "oneOf": [
            {"type": "Note", "name": "red", "replies": {"type": "Collection", "totalItems": 7}},
            {"type": "Note", "name": "green", "replies": {"type": "Collection", "totalItems": 5}},
        ],
        "votersCount": 12,
    }
    await deliver(settings, rt, p, p.activity("alice", "Update", update))
    poll = await db.get(Poll, question.id, populate_existing=True)
    assert poll is not None
    assert poll.remote_counts == [7, 5] and (poll.votes_count, poll.voters_count) == (12, 12)


async def test_local_poll_ending__sends_its_results_to_remote_readers(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: tuple[Peer, RemoteInbox]
) -> None:
    p, inbox = peer
    # Given alice follows ana, who has a poll alice voted in
    poll_post = await ana_poll(db)
    await deliver(settings, rt, p, vote(p, "alice", poll_post, "both"))
    alice = await db.scalar(select(Account).where(Account.uri == p.actor_uri("alice")))
    assert alice is not None
    db.add(Follow(follower_id=alice.id, followee_id=poll_post.account_id))
    poll = await db.get(Poll, poll_post.id)
    assert poll is not None
    poll.expires_at = utcnow() - timedelta(seconds=1)
    await db.commit()
    await db.execute(Job.__table__.update().where(Job.kind == "poll.ended").values(run_at=utcnow()))
    await db.commit()
    ana = await db.get(Account, poll_post.account_id)
    assert ana is not None
    await keys.local_key(db, ana)
    await learn_keys(db, inbox)
    # When the poll's end job runs
    await run_jobs(rt)
    # Then alice's server gets Update(Question) with the final counts
    (update,) = inbox.activities("Update")
    question = update["object"]
    assert question["type"] == "Question" and question["votersCount"] == 1
    assert [o["replies"]["totalItems"] for o in question["oneOf"]] == [0, 0, 1]
    assert "closed" in question
