"""Domain blocks: an admin suspends, silences or rejects the media of a remote domain (and its
subdomains). Suspension stops federation both ways and hides the domain's accounts and posts
everywhere, as suspended accounts; silence keeps their posts out of public listings for people
who don't follow them. Lifting a block undoes exactly what it did."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy
from kith.accounts.models import Account
from kith.config import Settings
from kith.db import utcnow
from kith.errors import Forbidden, ValidationFailed
from kith.federation import delivery, domain_blocks, keys
from kith.federation.actors import ActorFetchFailed
from kith.federation.domain_blocks import NO_POLICY, normalize_domain, policy_for
from kith.federation.models import DomainBlock, InboxItem
from kith.federation.remote_accounts import fetch_account
from kith.graph.models import Follow, FollowRequest
from kith.jobs import worker
from kith.jobs.models import Job
from kith.posts.models import Post
from kith.runtime import Runtime
from tests.federation.inbound import (
    PUBLIC,
    addressed,
    count,
    deliver,
    followers,
    local,
    loopback,
    two_actor_peer,
)
from tests.federation.peer import Peer
from tests.federation.remote_inbox import learn_keys, remote_inbox, remote_person, run_jobs
from tests.world import person, running_app, viewer

pytestmark = pytest.mark.usefixtures("rt")
ADMIN = policy.Viewer(None, is_admin=True)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return loopback(settings)


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    async with two_actor_peer() as p:
        yield p


def peer_host(peer: Peer) -> str:
    return peer.server.authority


async def remote(db: AsyncSession, peer: Peer, name: str) -> Account:
    account = await db.scalar(
        select(Account)
        .where(Account.uri == peer.actor_uri(name))
        .execution_options(populate_existing=True)
    )
    assert account is not None
    return account


async def fresh(db: AsyncSession, model: type, ident: int) -> object:
    return await db.get(model, ident, populate_existing=True)


async def alice_posts_to_bo(
    settings: Settings, rt: Runtime, peer: Peer, db: AsyncSession
) -> tuple[Account, Account, Post]:
    """bo (local) and remote alice follow each other; alice's public post is stored here."""
    bo = await person(db, "bo")
    await deliver(settings, rt, peer, peer.activity("alice", "Like", f"{local('bo')}/statuses/1"))
    alice = await remote(db, peer, "alice")
    db.add_all(
        [
            Follow(follower_id=bo.id, followee_id=alice.id),
            Follow(follower_id=alice.id, followee_id=bo.id),
        ]
    )
    await db.commit()
    note = addressed(peer.note("alice", "Over the hills"), [PUBLIC], [followers(peer, "alice")])
    assert await deliver(settings, rt, peer, peer.activity("alice", "Create", note)) == "stored"
    stored = await db.scalar(select(Post).where(Post.uri == note["id"]))
    assert stored is not None
    return bo, alice, stored


# --- which domains a block covers ----------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("example.social", "example.social"),
        ("  Example.SOCIAL. ", "example.social"),
        ("https://example.social/about/more", "example.social"),
        ("*.example.social", "example.social"),
        ("café.example", "xn--caf-dma.example"),
        ("127.0.0.2:8001", "127.0.0.2:8001"),
        ("peer.test:8443", "peer.test:8443"),
    ],
)
def test_normalize_domain__accepts_what_admins_paste(typed: str, stored: str) -> None:
    assert normalize_domain(typed) == stored


@pytest.mark.parametrize(
    "typed", ["", "exa mple.social", "a..b", "-bad.social", "peer.test:99999", "peer.test:x"]
)
def test_normalize_domain__refuses_what_is_no_domain(typed: str) -> None:
    with pytest.raises(ValidationFailed):
        normalize_domain(typed)


async def test_policy_for__covers_subdomains_and_ports__the_most_specific_block_wins(
    db: AsyncSession,
) -> None:
    # Given example.social suspended, and one of its subdomains only media-rejected
    await domain_blocks.block_domain(db, ADMIN, "example.social")
    await domain_blocks.block_domain(
        db, ADMIN, "safe.example.social", severity="none", reject_media=True
    )
    # Then the domain, its subdomains and any port are suspended
    for host in ("example.social", "a.b.example.social", "example.social:8443"):
        assert (await policy_for(db, host)).suspend, host
        assert await domain_blocks.domain_is_blocked(db, host)
    # but the exempted subdomain (and below it) is not, only its media are rejected
    for host in ("safe.example.social", "x.safe.example.social"):
        rule = await policy_for(db, host)
        assert not rule.suspend and rule.reject_media, host
    # and look-alike names are not covered
    for host in ("notexample.social", "example.social.evil.test", "social", ""):
        assert await policy_for(db, host) == NO_POLICY, host


async def test_rejects_media__for_media_rejected_and_suspended_domains_only(
    db: AsyncSession,
) -> None:
    await domain_blocks.block_domain(db, ADMIN, "gone.test", severity="suspend")
    await domain_blocks.block_domain(db, ADMIN, "loud.test", severity="silence")
    await domain_blocks.block_domain(db, ADMIN, "heavy.test", severity="silence", reject_media=True)
    assert await domain_blocks.rejects_media(db, "gone.test")
    assert not await domain_blocks.rejects_media(db, "loud.test")
    assert await domain_blocks.rejects_media(db, "media.heavy.test")
    assert not await domain_blocks.rejects_media(db, "fine.test")


async def test_block__by_a_member__is_refused_and_nothing_is_written(db: AsyncSession) -> None:
    bo = await person(db, "bo")
    with pytest.raises(Forbidden):
        await domain_blocks.block_domain(db, viewer(bo), "example.social")
    with pytest.raises(ValidationFailed):
        await domain_blocks.block_domain(db, ADMIN, "example.social", severity="obliterate")
    with pytest.raises(ValidationFailed):
        await domain_blocks.block_domain(db, ADMIN, "kith.test")
    await db.rollback()
    assert await count(db, DomainBlock) == 0


async def test_block__again__changes_the_block_instead_of_adding_one(db: AsyncSession) -> None:
    await domain_blocks.block_domain(db, ADMIN, "example.social", severity="silence")
    await domain_blocks.block_domain(
        db, ADMIN, "Example.social", severity="suspend", public_comment="Spam"
    )
    blocks = await domain_blocks.list_blocks(db, ADMIN)
    assert [(b.domain, b.severity, b.public_comment) for b in blocks] == [
        ("example.social", "suspend", "Spam")
    ]


# --- suspend --------------------------------------------------------------------------------


async def test_suspend__inbox_answers_403_and_stores_nothing(
    db: AsyncSession, settings: Settings, peer: Peer
) -> None:
    # Given the peer's domain (any port) is suspended
    await domain_blocks.block_domain(db, ADMIN, "127.0.0.1")
    # When alice delivers a Create
    note = addressed(peer.note("alice"), [PUBLIC])
    async with running_app(settings) as client:
        headers, body = peer.sign(peer.activity("alice", "Create", note))
        r = await client.post("/inbox", content=body, headers=headers)
    # Then it is refused before her key is even fetched, and nothing is stored
    assert r.status_code == 403
    assert peer.fetches_of("alice") == 0
    assert await count(db, InboxItem) == 0
    assert await count(db, Account, Account.domain != "") == 0


async def test_suspend__hides_accounts_and_posts_everywhere_and_ends_follows(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    bo, alice, stored = await alice_posts_to_bo(settings, rt, peer, db)
    assert await policy.can_see_post(db, policy.ANONYMOUS, stored)
    # When an admin suspends the peer's domain
    await domain_blocks.block_domain(db, ADMIN, "127.0.0.1", public_comment="Harassment")
    # Then alice behaves as a suspended account: her post is hidden from everyone, her profile
    # too, and the follows both ways have ended
    alice = await remote(db, peer, "alice")
    assert alice.suspended_at is not None
    assert not await policy.can_see_post(db, policy.ANONYMOUS, stored)
    assert not await policy.can_see_post(db, viewer(bo), stored)
    assert not await policy.can_see_account(db, viewer(bo), alice)
    assert await count(db, Follow) == 0
    assert await count(db, FollowRequest) == 0
    # When the block is lifted
    await domain_blocks.unblock_domain(db, ADMIN, "127.0.0.1")
    # Then her post is back, but the follows that ended stay ended (as on Mastodon)
    alice = await remote(db, peer, "alice")
    assert alice.suspended_at is None
    assert await policy.can_see_post(db, viewer(bo), stored)
    assert await count(db, Follow) == 0


async def test_lifting__keeps_a_suspension_a_moderator_made_by_hand(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    await deliver(settings, rt, peer, peer.activity("alice", "Like", f"{local('bo')}/statuses/1"))
    await deliver(settings, rt, peer, peer.activity("mallory", "Like", f"{local('bo')}/statuses/1"))
    mallory = await remote(db, peer, "mallory")
    by_hand = utcnow()
    mallory.suspended_at = by_hand
    await db.commit()
    await domain_blocks.block_domain(db, ADMIN, "127.0.0.1")
    await domain_blocks.unblock_domain(db, ADMIN, "127.0.0.1")
    assert (await remote(db, peer, "alice")).suspended_at is None
    assert (await remote(db, peer, "mallory")).suspended_at == by_hand


async def test_suspend__a_stored_activity_is_refused_when_processed_later(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    # Given a Create accepted by the inbox but not processed yet
    await person(db, "bo")
    note = addressed(peer.note("alice"), [PUBLIC], [local("bo")])
    activity = peer.activity("alice", "Create", note)
    async with running_app(settings) as client:
        headers, body = peer.sign(activity)
        assert (await client.post("/inbox", content=body, headers=headers)).status_code == 202
    # When the domain is suspended before the job runs
    await domain_blocks.block_domain(db, ADMIN, "127.0.0.1")
    while await worker.run_once(rt.sessions, "test-worker"):
        pass
    # Then the job refuses it and no post is stored
    outcome = await db.scalar(
        select(InboxItem.outcome).where(InboxItem.activity_id == activity["id"])
    )
    assert outcome is not None and outcome.startswith("refused")
    assert await count(db, Post) == 0


async def test_suspend__nothing_is_fetched_from_the_domain(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    await domain_blocks.block_domain(db, ADMIN, "127.0.0.1")
    with pytest.raises(ActorFetchFailed):
        await fetch_account(db, peer.actor_uri("alice"))
    assert peer.server.requests == []


async def test_suspend__no_delivery_even_of_jobs_queued_before_the_block(
    db: AsyncSession, rt: Runtime
) -> None:
    async with remote_inbox("127.0.0.1") as inbox:
        ana = await person(db, "ana")
        await keys.local_key(db, ana)
        await learn_keys(db, inbox)
        bob = await remote_person(db, inbox, "bob")
        like = {
            "@context": "https://www.w3.org/ns/activitystreams",
            "id": "http://kith.test/users/ana#likes/1",
            "type": "Like",
            "actor": "http://kith.test/users/ana",
            "object": f"{bob.uri}/statuses/1",
        }
        # Given a delivery queued before the block
        assert await delivery.deliver(db, ana, like, [inbox.shared_inbox]) == 1
        await db.commit()
        # When the domain is suspended
        await domain_blocks.block_domain(db, ADMIN, "127.0.0.1")
        # Then nothing new is queued for it, and the queued job ends without a request
        assert (
            await delivery.deliver(db, ana, {**like, "id": like["id"] + "b"}, [inbox.shared_inbox])
            == 0
        )
        await db.commit()
        await run_jobs(rt)
        assert inbox.received == []
        assert await count(db, Job, Job.kind == delivery.DELIVER_JOB) == 0


# --- silence --------------------------------------------------------------------------------


async def test_silence__posts_leave_public_listings_except_for_followers(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    bo, alice, stored = await alice_posts_to_bo(settings, rt, peer, db)
    cy = await person(db, "cy")

    async def listed_for(who: policy.Viewer) -> bool:
        found = await db.scalar(
            select(Post.id).where(Post.id == stored.id, policy.publicly_listed_clause(who, Post))
        )
        return found is not None

    assert await listed_for(viewer(cy))
    # When the domain is silenced
    await domain_blocks.block_domain(db, ADMIN, "127.0.0.1", severity="silence")
    # Then alice's post leaves public listings for cy and anonymous visitors, not for her
    # follower bo; it still opens by link, and the follows stay
    assert not await listed_for(viewer(cy))
    assert not await listed_for(policy.ANONYMOUS)
    assert await listed_for(viewer(bo))
    assert await policy.can_see_post(db, viewer(cy), stored)
    assert await count(db, Follow) == 2
    # When silence becomes suspend, then none
    await domain_blocks.block_domain(db, ADMIN, "127.0.0.1", severity="suspend")
    alice = await remote(db, peer, "alice")
    assert alice.suspended_at is not None
    await domain_blocks.block_domain(db, ADMIN, "127.0.0.1", severity="none")
    alice = await remote(db, peer, "alice")
    assert alice.suspended_at is None and alice.silenced_at is None
    assert await listed_for(viewer(cy))


async def test_silence__accounts_first_seen_later_are_silenced_too(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    await domain_blocks.block_domain(db, ADMIN, "127.0.0.1", severity="silence")
    await deliver(settings, rt, peer, peer.activity("mallory", "Like", f"{local('bo')}/statuses/1"))
    assert (await remote(db, peer, "mallory")).silenced_at is not None


async def test_a_subdomain_exemption__overrides_the_parent_block(db: AsyncSession) -> None:
    # Given accounts on a domain and on a subdomain of it
    for name, domain in (("ann", "big.test"), ("sam", "safe.big.test:8443")):
        db.add(
            Account(username=name, username_key=name, domain=domain, uri=f"https://{domain}/{name}")
        )
    await db.commit()
    # When the domain is suspended but the subdomain only silenced
    await domain_blocks.block_domain(db, ADMIN, "big.test")
    await domain_blocks.block_domain(db, ADMIN, "safe.big.test", severity="silence")
    rows = {
        a.username: a
        for a in (await db.scalars(select(Account).execution_options(populate_existing=True))).all()
    }
    assert rows["ann"].suspended_at is not None
    assert rows["sam"].suspended_at is None and rows["sam"].silenced_at is not None
    # When the parent block is lifted, the subdomain's own block still holds
    await domain_blocks.unblock_domain(db, ADMIN, "big.test")
    ann = await fresh(db, Account, rows["ann"].id)
    sam = await fresh(db, Account, rows["sam"].id)
    assert isinstance(ann, Account) and isinstance(sam, Account)
    assert ann.suspended_at is None
    assert sam.silenced_at is not None
