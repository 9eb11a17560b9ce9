"""WebFinger, host-meta and NodeInfo: how other servers find Kith's people and software."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts import service as accounts
from kith.accounts.models import RegistrationMode, UserState
from kith.config import Settings
from kith.db import utcnow
from kith.moderation import service as moderation
from tests.federation.helpers import BASE
from tests.world import person, post, running_app


async def test_webfinger__acct_resource__points_at_the_actor(
    db: AsyncSession, settings: Settings
) -> None:
    # Given alice
    await person(db, "alice")
    async with running_app(settings) as client:
        # When another server looks her up by handle
        r = await client.get("/.well-known/webfinger", params={"resource": "acct:alice@kith.test"})
    # Then it gets her actor's URI and her profile page, openly (CORS)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/jrd+json")
    assert r.headers["access-control-allow-origin"] == "*"
    jrd = r.json()
    assert jrd["subject"] == "acct:alice@kith.test"
    assert f"{BASE}/users/alice" in jrd["aliases"]
    links = {link["rel"]: link for link in jrd["links"]}
    assert links["self"] == {
        "rel": "self",
        "type": "application/activity+json",
        "href": f"{BASE}/users/alice",
    }
    assert links["http://webfinger.net/rel/profile-page"]["href"] == f"{BASE}/@alice"


@pytest.mark.parametrize(
    "resource",
    [
        "acct:Alice@KITH.test",
        "acct:@alice@kith.test",
        f"{BASE}/users/alice",
        f"{BASE}/@alice",
    ],
)
async def test_webfinger__case_and_actor_url_resources__answer_the_same(
    db: AsyncSession, settings: Settings, resource: str
) -> None:
    await person(db, "alice")
    async with running_app(settings) as client:
        r = await client.get("/.well-known/webfinger", params={"resource": resource})
    assert r.status_code == 200, r.text
    assert r.json()["subject"] == "acct:alice@kith.test"


@pytest.mark.parametrize(
    "resource",
    [
        "acct:nobody@kith.test",  # no such account
        "acct:alice@elsewhere.example",  # someone else's domain
        "https://elsewhere.example/users/alice",
        f"{BASE}/users/alice/statuses/1",  # not an actor
        "acct:bob@elsewhere.example",  # a remote account we know of
        "acct:sus@kith.test",  # suspended
        "acct:waiting@kith.test",  # sign-up waiting for approval
    ],
)
async def test_webfinger__unknown_remote_or_hidden__404(
    db: AsyncSession, settings: Settings, resource: str
) -> None:
    from kith.accounts.models import Account

    await person(db, "alice")
    sus = await person(db, "sus")
    await moderation.suspend(db, sus)
    waiting = await person(db, "waiting")
    user = await accounts.user_for_account(db, waiting.id)
    assert user is not None
    user.state = UserState.PENDING
    db.add(Account(username="bob", username_key="bob", domain="elsewhere.example"))
    await db.commit()
    async with running_app(settings) as client:
        r = await client.get("/.well-known/webfinger", params={"resource": resource})
    assert r.status_code == 404
    assert r.headers["access-control-allow-origin"] == "*"


@pytest.mark.parametrize(
    "resource", [None, "", "alice", "alice@kith.test", "mailto:alice@kith.test"]
)
async def test_webfinger__malformed_resource__400(
    db: AsyncSession, settings: Settings, resource: str | None
) -> None:
    await person(db, "alice")
    params = {} if resource is None else {"resource": resource}
    async with running_app(settings) as client:
        r = await client.get("/.well-known/webfinger", params=params)
    assert r.status_code == 400
    assert "error" in r.json()


async def test_host_meta__gives_the_webfinger_template(settings: Settings, rt: object) -> None:
    async with running_app(settings) as client:
        r = await client.get("/.well-known/host-meta")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/xrd+xml")
    assert f'template="{BASE}/.well-known/webfinger?resource={{uri}}"' in r.text


async def test_nodeinfo__discovery_lists_2_0_and_2_1(settings: Settings, rt: object) -> None:
    async with running_app(settings) as client:
        r = await client.get("/.well-known/nodeinfo")
        links = r.json()["links"]
        assert [link["rel"] for link in links] == [
            "http://nodeinfo.diaspora.software/ns/schema/2.0",
            "http://nodeinfo.diaspora.software/ns/schema/2.1",
        ]
        for link in links:
            assert link["href"].startswith(f"{BASE}/nodeinfo/")
            doc = (await client.get(link["href"].removeprefix(BASE))).json()
            assert doc["version"] == link["href"].rsplit("/", 1)[1]
            assert doc["software"]["name"] == "kith"
            assert doc["protocols"] == ["activitypub"]
        assert (await client.get("/nodeinfo/1.0")).status_code == 404


async def test_nodeinfo__counts_people_activity_posts_and_registrations(
    db: AsyncSession, settings: Settings
) -> None:
    # Given alice (posts), bob (posted 100 days ago), carol (quiet for a year), a suspended
    # account and a sign-up waiting for approval; registrations are by invite only
    from kith.accounts.models import UserSession

    alice, bob, carol = [await person(db, n) for n in ("alice", "bob", "carol")]
    await post(db, alice, "Hello")
    await post(db, alice, "Again")
    old = await post(db, bob, "Long ago")
    old.created_at = utcnow() - timedelta(days=100)
    carol.created_at = utcnow() - timedelta(days=365)
    for a in (alice, bob, carol):
        user = await accounts.user_for_account(db, a.id)
        assert user is not None
        await db.execute(
            UserSession.__table__.update()
            .where(UserSession.user_id == user.id)
            .values(last_seen_at=utcnow() - timedelta(days=365))
        )
    sus = await person(db, "sus")
    await post(db, sus, "Suspended soon")
    await moderation.suspend(db, sus)
    waiting = await person(db, "waiting")
    pending = await accounts.user_for_account(db, waiting.id)
    assert pending is not None
    pending.state = UserState.PENDING
    (await accounts.get_instance_settings(db)).registration_mode = RegistrationMode.INVITE
    await db.commit()
    async with running_app(settings) as client:
        doc = (await client.get("/nodeinfo/2.1")).json()
    # Then the usage counts the three people, the active ones per period, and local posts
    assert doc["usage"]["users"] == {"total": 3, "activeMonth": 1, "activeHalfyear": 2}
    assert doc["usage"]["localPosts"] == 4
    assert doc["openRegistrations"] is False
