"""Remote profiles are browsable like local ones: `/@user@host` and the Mastodon API's
account, lookup and statuses endpoints show a known remote account and the posts stored for
it, each post only to whom kith.policy shows it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from kith.config import Settings
from kith.db import utcnow
from kith.graph.models import Follow
from kith.posts.models import Visibility
from tests.federation.local_http import LocalServer, local_server
from tests.federation.remote_world import remote_account, remote_post
from tests.world import browser, person, running_app

pytestmark = pytest.mark.usefixtures("rt")


@pytest.fixture
async def server() -> AsyncIterator[LocalServer]:
    async with local_server("127.0.0.1") as s:
        yield s


async def test_remote_profile_page__shows_its_public_posts_only_to_strangers(
    db: AsyncSession, settings: Settings, server: LocalServer
) -> None:
    # Given remote alice with a public and a followers-only post, and fields
    alice = await remote_account(db, server, "alice")
    alice.display_name = "Alice Afar"
    alice.fields = [{"name": "Garden", "value": "tomatoes", "value_html": "<b>tomatoes</b>"}]
    await db.commit()
    await remote_post(db, alice, text="<p>public words</p>")
    await remote_post(db, alice, text="<p>for followers</p>", visibility=Visibility.PRIVATE)
    # When a stranger opens her profile here
    async with running_app(settings) as client:
        page = await client.get(f"/@{alice.acct}")
        missing = await client.get(f"/@nobody@{server.authority}")
    # Then it shows her, her fields and her public post, not the followers-only one
    assert page.status_code == 200, page.text
    assert "Alice Afar" in page.text and f"@{alice.acct}" in page.text
    assert "<b>tomatoes</b>" in page.text
    assert "public words" in page.text and "for followers" not in page.text
    # And an unknown remote name is not found (nothing is fetched by a page view)
    assert missing.status_code == 404
    assert server.requests == []


async def test_remote_profile_page__shows_followers_only_posts_to_a_local_follower(
    db: AsyncSession, settings: Settings, server: LocalServer
) -> None:
    alice = await remote_account(db, server, "alice")
    await remote_post(db, alice, text="<p>for followers</p>", visibility=Visibility.PRIVATE)
    bo = await person(db, "bo")
    db.add(Follow(follower_id=bo.id, followee_id=alice.id))
    await db.commit()
    async with browser(settings) as b:
        await b.sign_in("bo")
        page = await b.get(f"/@{alice.acct}")
    assert page.status_code == 200 and "for followers" in page.text


async def test_remote_account__through_the_mastodon_api(
    db: AsyncSession, settings: Settings, server: LocalServer
) -> None:
    # Given remote alice with a public, an unlisted and a direct post
    alice = await remote_account(db, server, "alice")
    public = await remote_post(db, alice, text="<p>public</p>")
    unlisted = await remote_post(db, alice, text="<p>quiet</p>", visibility=Visibility.UNLISTED)
    await remote_post(db, alice, text="<p>secret</p>", visibility=Visibility.DIRECT)
    async with running_app(settings) as client:
        looked_up = await client.get("/api/v1/accounts/lookup", params={"acct": alice.acct})
        one = await client.get(f"/api/v1/accounts/{alice.id}")
        statuses = await client.get(f"/api/v1/accounts/{alice.id}/statuses")
    # Then she is found by her acct, and anonymous readers get her public and unlisted posts
    assert looked_up.status_code == 200 and looked_up.json()["id"] == str(alice.id)
    assert one.json()["acct"] == alice.acct and one.json()["url"] == alice.uri
    ids = [s["id"] for s in statuses.json()]
    assert ids == [str(unlisted.id), str(public.id)]


async def test_suspended_remote_account__is_not_shown(
    db: AsyncSession, settings: Settings, server: LocalServer
) -> None:
    alice = await remote_account(db, server, "alice")
    await remote_post(db, alice, text="<p>public</p>")
    alice.suspended_at = utcnow()
    await db.commit()
    async with running_app(settings) as client:
        assert (await client.get(f"/@{alice.acct}")).status_code == 404
        assert (await client.get(f"/api/v1/accounts/{alice.id}/statuses")).status_code == 404
