"""Tokens and scopes: every endpoint group checks its scope, and dead tokens get 401.

The table below is written by hand from Mastodon's documentation (the scope each endpoint
requires). Each row is asked twice: with a token holding every granular scope *but* the one
required (403 — scopes don't leak into each other), and with a token holding exactly that
scope (anything but 401/403: the id may still be unknown, the body still wrong).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from kith.accounts.models import Account
from kith.app import create_app
from kith.config import Settings
from kith.db import utcnow
from kith.moderation import service as moderation
from kith.oauth import service as oauth
from kith.oauth.models import OAuthApp, OAuthToken
from kith.oauth.scopes import READ_SCOPES, WRITE_SCOPES
from kith.runtime import Runtime
from tests.conftest import _wipe
from tests.mastodon_api.conftest import bearer, token_for
from tests.world import person

UNKNOWN = "1234567"  # an id nothing has

# (method, path, required scope)
SCOPE_TABLE = [
    # statuses
    ("POST", "/api/v1/statuses", "write:statuses"),
    ("PUT", f"/api/v1/statuses/{UNKNOWN}", "write:statuses"),
    ("DELETE", f"/api/v1/statuses/{UNKNOWN}", "write:statuses"),
    ("GET", f"/api/v1/statuses/{UNKNOWN}/source", "read:statuses"),
    ("POST", f"/api/v1/statuses/{UNKNOWN}/reblog", "write:statuses"),
    ("POST", f"/api/v1/statuses/{UNKNOWN}/unreblog", "write:statuses"),
    ("POST", f"/api/v1/statuses/{UNKNOWN}/favourite", "write:favourites"),
    ("POST", f"/api/v1/statuses/{UNKNOWN}/unfavourite", "write:favourites"),
    ("POST", f"/api/v1/statuses/{UNKNOWN}/bookmark", "write:bookmarks"),
    ("POST", f"/api/v1/statuses/{UNKNOWN}/unbookmark", "write:bookmarks"),
    ("POST", f"/api/v1/statuses/{UNKNOWN}/pin", "write:accounts"),
    ("POST", f"/api/v1/statuses/{UNKNOWN}/unpin", "write:accounts"),
    ("POST", f"/api/v1/polls/{UNKNOWN}/votes", "write:statuses"),
    ("GET", "/api/v1/scheduled_statuses", "read:statuses"),
    ("PUT", f"/api/v1/scheduled_statuses/{UNKNOWN}", "write:statuses"),
    ("DELETE", f"/api/v1/scheduled_statuses/{UNKNOWN}", "write:statuses"),
    # timelines and the viewer's collections
    ("GET", "/api/v1/timelines/home", "read:statuses"),
    ("GET", f"/api/v1/timelines/list/{UNKNOWN}", "read:lists"),
    ("GET", "/api/v1/conversations", "read:statuses"),
    ("GET", "/api/v1/bookmarks", "read:bookmarks"),
    ("GET", "/api/v1/favourites", "read:favourites"),
    ("GET", "/api/v1/markers", "read:statuses"),
    ("POST", "/api/v1/markers", "write:statuses"),
    ("GET", "/api/v1/preferences", "read:accounts"),
    # accounts
    ("GET", "/api/v1/accounts/verify_credentials", "profile"),
    ("PATCH", "/api/v1/accounts/update_credentials", "write:accounts"),
    ("GET", "/api/v1/accounts/search?q=a", "read:accounts"),
    ("GET", "/api/v1/accounts/relationships", "read:follows"),
    ("GET", "/api/v1/accounts/familiar_followers", "read:follows"),
    ("POST", f"/api/v1/accounts/{UNKNOWN}/follow", "write:follows"),
    ("POST", f"/api/v1/accounts/{UNKNOWN}/unfollow", "write:follows"),
    ("POST", f"/api/v1/accounts/{UNKNOWN}/remove_from_followers", "write:follows"),
    ("POST", f"/api/v1/accounts/{UNKNOWN}/block", "write:blocks"),
    ("POST", f"/api/v1/accounts/{UNKNOWN}/unblock", "write:blocks"),
    ("POST", f"/api/v1/accounts/{UNKNOWN}/mute", "write:mutes"),
    ("POST", f"/api/v1/accounts/{UNKNOWN}/unmute", "write:mutes"),
    ("GET", "/api/v1/blocks", "read:blocks"),
    ("GET", "/api/v1/mutes", "read:mutes"),
    ("GET", "/api/v1/follow_requests", "read:follows"),
    ("POST", f"/api/v1/follow_requests/{UNKNOWN}/authorize", "write:follows"),
    ("POST", f"/api/v1/follow_requests/{UNKNOWN}/reject", "write:follows"),
    ("GET", "/api/v2/suggestions", "read"),
    # notifications
    ("GET", "/api/v1/notifications", "read:notifications"),
    ("GET", "/api/v2/notifications", "read:notifications"),
    ("GET", f"/api/v1/notifications/{UNKNOWN}", "read:notifications"),
    ("GET", "/api/v1/notifications/unread_count", "read:notifications"),
    ("POST", "/api/v1/notifications/clear", "write:notifications"),
    ("POST", f"/api/v1/notifications/{UNKNOWN}/dismiss", "write:notifications"),
    # lists
    ("GET", "/api/v1/lists", "read:lists"),
    ("POST", "/api/v1/lists", "write:lists"),
    ("GET", f"/api/v1/lists/{UNKNOWN}", "read:lists"),
    ("PUT", f"/api/v1/lists/{UNKNOWN}", "write:lists"),
    ("DELETE", f"/api/v1/lists/{UNKNOWN}", "write:lists"),
    ("GET", f"/api/v1/lists/{UNKNOWN}/accounts", "read:lists"),
    ("POST", f"/api/v1/lists/{UNKNOWN}/accounts", "write:lists"),
    ("DELETE", f"/api/v1/lists/{UNKNOWN}/accounts", "write:lists"),
    ("GET", f"/api/v1/accounts/{UNKNOWN}/lists", "read:lists"),
    # tags
    ("POST", "/api/v1/tags/garden/follow", "write:follows"),
    ("POST", "/api/v1/tags/garden/unfollow", "write:follows"),
    ("GET", "/api/v1/followed_tags", "read:follows"),
    # filters
    ("GET", "/api/v2/filters", "read:filters"),
    ("POST", "/api/v2/filters", "write:filters"),
    ("GET", f"/api/v2/filters/{UNKNOWN}", "read:filters"),
    ("PUT", f"/api/v2/filters/{UNKNOWN}", "write:filters"),
    ("DELETE", f"/api/v2/filters/{UNKNOWN}", "write:filters"),
    ("GET", f"/api/v2/filters/{UNKNOWN}/keywords", "read:filters"),
    ("POST", f"/api/v2/filters/{UNKNOWN}/keywords", "write:filters"),
    ("GET", f"/api/v2/filters/keywords/{UNKNOWN}", "read:filters"),
    ("PUT", f"/api/v2/filters/keywords/{UNKNOWN}", "write:filters"),
    ("DELETE", f"/api/v2/filters/keywords/{UNKNOWN}", "write:filters"),
    ("GET", f"/api/v2/filters/{UNKNOWN}/statuses", "read:filters"),
    ("POST", f"/api/v2/filters/{UNKNOWN}/statuses", "write:filters"),
    ("GET", f"/api/v2/filters/statuses/{UNKNOWN}", "read:filters"),
    ("DELETE", f"/api/v2/filters/statuses/{UNKNOWN}", "write:filters"),
    # reports, media
    ("POST", "/api/v1/reports", "write:reports"),
    ("POST", "/api/v1/media", "write:media"),
    ("POST", "/api/v2/media", "write:media"),
    ("GET", f"/api/v1/media/{UNKNOWN}", "write:media"),
    ("PUT", f"/api/v1/media/{UNKNOWN}", "write:media"),
]
GRANULAR = READ_SCOPES | WRITE_SCOPES


def _all_but(required: str) -> str:
    """Every granular scope except `required` (and no umbrella: read, write, follow)."""
    lacking = GRANULAR - {required}
    if required == "profile":  # `profile` is also granted by read:accounts
        lacking -= {"read:accounts"}
    return " ".join(sorted(lacking | {"push"}))


@dataclass
class ScopeWorld:
    rt: Runtime
    client: httpx.AsyncClient
    alice: Account
    tokens: dict[str, str] = field(default_factory=dict)

    async def token(self, scopes: str) -> str:
        if scopes not in self.tokens:
            async with self.rt.sessions() as db:
                alice = await db.get(Account, self.alice.id)
                assert alice is not None
                self.tokens[scopes] = await token_for(db, alice, scopes)
        return self.tokens[scopes]


@pytest.fixture(scope="module")
async def world(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ScopeWorld]:
    settings = Settings(
        database_url=database_url,
        var_dir=Path(tmp_path_factory.mktemp("scopes")),
        secret_key="test-secret-key-not-for-production",
        domain="kith.test",
        run_worker=False,
        redis_url="",
    )
    rt = Runtime.from_settings(settings)
    await _wipe(rt)
    async with rt.sessions() as db:
        alice = await person(db, "alice")
    app = create_app(settings)
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(app.router.lifespan_context(app))
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 1234))
        client = await stack.enter_async_context(
            httpx.AsyncClient(transport=transport, base_url="http://kith.test")
        )
        yield ScopeWorld(rt=rt, client=client, alice=alice)
    await rt.close()


@pytest.mark.parametrize(
    ("method", "path", "scope"),
    [pytest.param(*row, id=f"{row[0]} {row[1]}") for row in SCOPE_TABLE],
)
async def test_scope__lacking_it_403__having_exactly_it_passes(
    world: ScopeWorld, method: str, path: str, scope: str
) -> None:
    # Given a token with every granular scope but the one this endpoint requires
    without = await world.token(_all_but(scope))
    # When it calls the endpoint, then 403 with Mastodon's message
    r = await world.client.request(method, path, headers=bearer(without))
    assert r.status_code == 403, (r.status_code, r.text)
    assert r.json() == {"error": "This action is outside the authorized scopes"}
    # And a token with exactly that scope gets past the scope check
    exactly = await world.token(scope)
    r = await world.client.request(method, path, headers=bearer(exactly))
    assert r.status_code not in (401, 403), (r.status_code, r.text)
    if UNKNOWN in path:
        # (to an id nothing has, which is a 404 — in Mastodon's error shape)
        assert r.status_code == 404 and set(r.json()) == {"error"}, (r.status_code, r.text)


@pytest.mark.parametrize(
    ("umbrella", "scope"),
    [("read", "read:notifications"), ("write", "write:lists"), ("follow", "write:blocks")],
)
async def test_umbrella_scopes__cover_their_granular_scopes(
    world: ScopeWorld, umbrella: str, scope: str
) -> None:
    # Given a token with only the umbrella scope, when it calls endpoints of a granular one
    token = await world.token(umbrella)
    for method, path, required in SCOPE_TABLE:
        if required != scope:
            continue
        r = await world.client.request(method, path, headers=bearer(token))
        # Then the umbrella is enough
        assert r.status_code not in (401, 403), (method, path, r.status_code)


# One endpoint of each group, for the dead-token checks (public ones included: a bad token is a
# 401 even where no token is needed).
GROUP_ENDPOINTS = [
    ("GET", "/api/v1/timelines/home"),
    ("GET", "/api/v1/timelines/public"),
    ("POST", "/api/v1/statuses"),
    ("GET", f"/api/v1/statuses/{UNKNOWN}"),
    ("GET", "/api/v1/notifications"),
    ("GET", "/api/v1/bookmarks"),
    ("GET", "/api/v1/lists"),
    ("GET", "/api/v2/filters"),
    ("GET", "/api/v2/search?q=a"),
    ("GET", "/api/v1/accounts/verify_credentials"),
    ("GET", "/api/v1/streaming/public"),
]


async def _assert_dead(world: ScopeWorld, token: str) -> None:
    for method, path in GROUP_ENDPOINTS:
        r = await world.client.request(method, path, headers=bearer(token))
        assert r.status_code == 401, (method, path, r.status_code)
        assert "error" in r.json()


async def test_expired_token__401_everywhere(world: ScopeWorld) -> None:
    # Given a token whose lifetime ran out
    token = await world.token("read write follow")
    async with world.rt.sessions() as db:
        row = (await db.scalars(select(OAuthToken).order_by(OAuthToken.id.desc()))).first()
        assert row is not None
        row.expires_at = utcnow() - timedelta(seconds=1)
        await db.commit()
    # Then every endpoint group answers 401
    await _assert_dead(world, token)


async def test_revoked_and_rotated_tokens__401_everywhere(world: ScopeWorld) -> None:
    # Given an app's token pair, refreshed once (rotation), and a second token revoked
    async with world.rt.sessions() as db:
        alice = await db.get(Account, world.alice.id)
        assert alice is not None
        issued = await oauth.create_personal_token(db, alice, "rotating", "read write")
        token_row = (await db.scalars(select(OAuthToken).order_by(OAuthToken.id.desc()))).first()
        assert token_row is not None and issued.refresh_token
        app = await db.get(OAuthApp, token_row.app_id)
        assert app is not None
        fresh = await oauth.refresh(db, app, issued.refresh_token)
        await oauth.revoke(db, app, fresh.access_token)
    # Then the rotated-away token and the revoked one are both dead
    await _assert_dead(world, issued.access_token)
    await _assert_dead(world, fresh.access_token)


async def test_token_of_a_suspended_person__401(world: ScopeWorld) -> None:
    # Given bob's token, and then bob is suspended
    async with world.rt.sessions() as db:
        bob = await person(db, "bob")
        token = await token_for(db, bob, "read write")
        await moderation.suspend(db, bob)
    # Then his token opens nothing
    await _assert_dead(world, token)


async def test_app_token_without_a_user__401_on_user_endpoints(world: ScopeWorld) -> None:
    # Given a client_credentials token (the app alone, no person behind it)
    async with world.rt.sessions() as db:
        new = await oauth.register_app(
            db, name="reader", redirect_uris=oauth.OOB, scopes="read write"
        )
        issued = await oauth.client_credentials(db, new.app, "read")
    headers = bearer(issued.access_token)
    # When it asks for a person's own data, then 401
    for path in ("/api/v1/timelines/home", "/api/v1/notifications", "/api/v1/bookmarks"):
        r = await world.client.get(path, headers=headers)
        assert r.status_code == 401, path
    # But public endpoints and the app's own credentials answer
    assert (await world.client.get("/api/v1/timelines/public", headers=headers)).status_code == 200
    r = await world.client.get("/api/v1/apps/verify_credentials", headers=headers)
    assert r.status_code == 200 and r.json()["name"] == "reader"
