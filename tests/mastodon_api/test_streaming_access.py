"""Open streams end when their access does: a WebSocket closes with code 4001 ("access
ended"), an SSE response ends, a web page's live stream ends — within a second of the
change, and nothing more arrives on it. Every way access ends is made the way people make it
(the OAuth endpoints, the settings and admin pages), against a real server; the last tests
do it across two server processes sharing Redis."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import pytest
import websockets
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy
from kith.accounts.models import Account
from kith.config import Settings
from kith.graph import service as graph
from kith.mastodon_api.streaming import (
    ACCESS_ENDED,
    SUBSCRIBE_RECHECK_SECONDS,
    StreamSession,
)
from kith.oauth import service as oauth
from kith.runtime import Runtime
from tests.browser.servers import KithServer
from tests.live_server import live_server
from tests.mastodon_api.conftest import bearer, token_for
from tests.test_live import redis_url, two_servers  # noqa: F401  (fixtures)
from tests.world import PASSWORD, Browser, person

WITHIN = 2.0  # seconds from the change to the closed stream (generous: CI shares two cores)


@dataclass
class AppToken:
    """A token minted through the authorization-code flow, with its app's credentials."""

    client_id: str
    client_secret: str
    app_id: int
    access: str
    refresh: str | None


async def app_token(db: AsyncSession, account: Account | None, name: str = "Phone") -> AppToken:
    """An app registered as POST /api/v1/apps does, and a token of `account` from its code
    (or, for None, a client_credentials token acting as the app)."""
    new = await oauth.register_app(db, name=name, redirect_uris=oauth.OOB, scopes="read write")
    if account is None:
        issued = await oauth.client_credentials(db, new.app, "read")
    else:
        request = await oauth.check_authorization_request(
            db,
            client_id=new.app.client_id,
            redirect_uri=oauth.OOB,
            response_type="code",
            scope="read write",
            state=None,
            code_challenge=None,
            code_challenge_method=None,
        )
        code = await oauth.issue_code(db, request, account)
        issued = await oauth.exchange_code(
            db, new.app, code=code, redirect_uri=oauth.OOB, code_verifier=None
        )
    return AppToken(
        new.app.client_id, new.client_secret, new.app.id, issued.access_token, issued.refresh_token
    )


@asynccontextmanager
async def browser_at(base: str, name: str) -> AsyncIterator[Browser]:
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        b = Browser(client)
        r = await b.sign_in(name)
        assert r.status_code == 303, r.text
        yield b


async def closes_without_update(ws: websockets.ClientConnection, since: float) -> int:
    """Read until the server closes the socket (failing on any `update`); its close code,
    after checking it came within WITHIN seconds of `since`."""
    try:
        while True:
            left = since + WITHIN - time.monotonic()
            msg = json.loads(await asyncio.wait_for(ws.recv(), max(left, 0.01)))
            assert msg.get("event") != "update", f"an update after access ended: {msg}"
    except websockets.exceptions.ConnectionClosed:
        pass
    assert time.monotonic() - since <= WITHIN
    assert ws.close_code is not None
    return ws.close_code


async def ends_without_update(lines: AsyncIterator[str], since: float) -> None:
    """Read an event stream's lines until the response ends (failing on any `update`),
    checking it ended within WITHIN seconds of `since`."""
    with pytest.raises(StopAsyncIteration):
        while True:
            left = since + WITHIN - time.monotonic()
            line = await asyncio.wait_for(anext(lines), max(left, 0.01))
            assert not line.startswith("event: update"), f"an update after access ended: {line}"
    assert time.monotonic() - since <= WITHIN


async def post_as(http: httpx.AsyncClient, token: str, text: str) -> None:
    r = await http.post("/api/v1/statuses", json={"status": text}, headers=bearer(token))
    assert r.status_code == 200, r.text


# --- how access ends (each through the edge people use) --------------------------------------

End = Callable[[str, AsyncSession, Account, AppToken], Awaitable[None]]


async def revoke_at_oauth(base: str, db: AsyncSession, who: Account, t: AppToken) -> None:
    async with httpx.AsyncClient(base_url=base) as http:
        r = await http.post(
            "/oauth/revoke",
            data={"client_id": t.client_id, "client_secret": t.client_secret, "token": t.access},
        )
        assert r.status_code == 200, r.text


async def refresh_the_pair(base: str, db: AsyncSession, who: Account, t: AppToken) -> None:
    async with httpx.AsyncClient(base_url=base) as http:
        r = await http.post(
            "/oauth/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": t.refresh,
                "client_id": t.client_id,
                "client_secret": t.client_secret,
            },
        )
        assert r.status_code == 200, r.text


async def revoke_on_settings_page(base: str, db: AsyncSession, who: Account, t: AppToken) -> None:
    async with browser_at(base, who.username) as b:
        await b.get("/settings/applications")
        r = await b.post("/settings/applications/revoke", {"app_id": str(t.app_id)})
        assert r.status_code == 303, r.text


async def delete_own_account(base: str, db: AsyncSession, who: Account, t: AppToken) -> None:
    async with browser_at(base, who.username) as b:
        await b.get("/settings/delete")
        r = await b.post("/settings/delete", {"password": PASSWORD})
        assert r.status_code == 303, r.text


async def admin_deletes(base: str, db: AsyncSession, who: Account, t: AppToken) -> None:
    async with browser_at(base, "warden") as admin:
        await admin.get(f"/admin/accounts/{who.id}/delete")
        r = await admin.post(f"/admin/accounts/{who.id}/delete", {"confirm": who.username})
        assert r.status_code == 303, r.text


async def admin_suspends(base: str, db: AsyncSession, who: Account, t: AppToken) -> None:
    async with browser_at(base, "warden") as admin:
        await admin.get("/admin/accounts")
        r = await admin.post(f"/admin/accounts/{who.id}/suspend")
        assert r.status_code == 303, r.text


ENDINGS: dict[str, End] = {
    "token revoked (POST /oauth/revoke)": revoke_at_oauth,
    "token pair refreshed": refresh_the_pair,
    "app revoked on the settings page": revoke_on_settings_page,
    "account deleted by its owner": delete_own_account,
    "account deleted by an admin": admin_deletes,
    "account suspended": admin_suspends,
}


async def _people(db: AsyncSession) -> tuple[Account, Account, str]:
    """alice follows bob, who holds a token to post with; warden is an admin."""
    alice, bob = await person(db, "alice"), await person(db, "bob")
    await person(db, "warden", admin=True)
    await graph.follow(db, alice.id, bob.id)
    return alice, bob, await token_for(db, bob)


@pytest.mark.parametrize("how", list(ENDINGS))
async def test_websocket__closes_when_access_ends(
    how: str, settings: Settings, db: AsyncSession
) -> None:
    # Given alice's app has her user stream open, and another app of hers too
    alice, _, bob_token = await _people(db)
    phone, laptop = await app_token(db, alice), await app_token(db, alice, "Laptop")
    with live_server(settings) as base:
        ws_url = base.replace("http", "ws") + "/api/v1/streaming?stream=user"
        async with (
            httpx.AsyncClient(base_url=base, timeout=10) as http,
            websockets.connect(f"{ws_url}&access_token={phone.access}") as ws,
            websockets.connect(f"{ws_url}&access_token={laptop.access}") as other,
        ):
            await asyncio.sleep(0.3)  # the server subscribes each socket after accepting it
            # When her access ends that way, and bob posts right after
            await ENDINGS[how](base, db, alice, phone)
            closing = asyncio.create_task(closes_without_update(ws, time.monotonic()))
            await post_as(http, bob_token, "after the end")
            # Then the socket closes with 4001 within a second, and bob's post never came
            assert await closing == ACCESS_ENDED
            # And a reconnection with the same token is refused
            with pytest.raises(
                (websockets.exceptions.InvalidStatus, websockets.exceptions.ConnectionClosed)
            ):
                async with websockets.connect(f"{ws_url}&access_token={phone.access}") as again:
                    await asyncio.wait_for(again.recv(), 5)
            # While the other app's stream lives on when only the first token ended
            if how in ("token revoked (POST /oauth/revoke)", "token pair refreshed"):
                got = json.loads(await asyncio.wait_for(other.recv(), 5))
                assert got["event"] == "update"


async def test_websocket__a_token_without_a_user_closes_when_revoked(
    settings: Settings, db: AsyncSession
) -> None:
    # Given a bot reading the local timeline with a client_credentials token
    _, _, bob_token = await _people(db)
    bot = await app_token(db, None, "Bot")
    with live_server(settings) as base:
        url = base.replace("http", "ws") + "/api/v1/streaming?stream=public:local"
        async with (
            httpx.AsyncClient(base_url=base, timeout=10) as http,
            websockets.connect(f"{url}&access_token={bot.access}") as ws,
        ):
            await asyncio.sleep(0.3)
            await post_as(http, bob_token, "before")
            assert json.loads(await asyncio.wait_for(ws.recv(), 5))["event"] == "update"
            # When its token is revoked
            await revoke_at_oauth(base, db, await person(db, "nobody"), bot)
            closing = asyncio.create_task(closes_without_update(ws, time.monotonic()))
            await post_as(http, bob_token, "after")
            # Then its stream closes, without the later post
            assert await closing == ACCESS_ENDED


async def test_websocket__subscribing_again_checks_the_token(
    settings: Settings, db: AsyncSession
) -> None:
    # Given alice's open stream
    alice, _, _ = await _people(db)
    phone = await app_token(db, alice)
    with live_server(settings) as base:
        url = base.replace("http", "ws") + f"/api/v1/streaming?access_token={phone.access}"
        async with websockets.connect(url) as ws:
            # (a subscription asks again at most once a second: SUBSCRIBE_RECHECK_SECONDS)
            await asyncio.sleep(SUBSCRIBE_RECHECK_SECONDS + 0.1)
            # When her token is revoked where the server cannot hear of it (this test's own
            # process, whose bus the server does not share: as if the announcement was lost)
            app = await oauth.app_by_client_id(db, phone.client_id)
            assert app is not None
            await oauth.revoke(db, app, phone.access)
            # Then her next subscribe message closes the stream instead of adding one
            since = time.monotonic()
            await ws.send(json.dumps({"type": "subscribe", "stream": "public"}))
            assert await closes_without_update(ws, since) == ACCESS_ENDED


async def test_stream_session__a_flood_of_subscriptions_asks_the_database_once_a_second(
    rt: Runtime, db: AsyncSession
) -> None:
    # Given a stream opened with alice's token, which is then revoked
    alice = await person(db, "alice")
    phone = await app_token(db, alice)
    info = await oauth.token_info(db, phone.access)
    assert info is not None
    session = StreamSession(rt, policy.Viewer(alice.id), token_id=info.token.id)
    assert await session.still_allowed()
    app = await oauth.app_by_client_id(db, phone.client_id)
    assert app is not None
    await oauth.revoke(db, app, phone.access)
    # When subscriptions ask right after the last check, the database is not asked again
    assert await session.still_allowed(unless_within=SUBSCRIBE_RECHECK_SECONDS)
    # But an announced change (and a subscription a second later) always asks
    assert not await session.still_allowed()
    session.checked_at -= SUBSCRIBE_RECHECK_SECONDS
    assert not await session.still_allowed(unless_within=SUBSCRIBE_RECHECK_SECONDS)


@pytest.mark.parametrize("how", ["token revoked (POST /oauth/revoke)", "account suspended"])
async def test_sse__the_response_ends_when_access_ends(
    how: str, settings: Settings, db: AsyncSession
) -> None:
    # Given alice's app reads her user stream over Server-Sent Events
    alice, _, bob_token = await _people(db)
    phone = await app_token(db, alice)
    with live_server(settings) as base:
        async with (
            httpx.AsyncClient(base_url=base, timeout=10) as http,
            http.stream("GET", "/api/v1/streaming/user", headers=bearer(phone.access)) as r,
        ):
            assert r.status_code == 200
            lines = r.aiter_lines()
            assert (await asyncio.wait_for(anext(lines), 5)).startswith(":")  # listening
            # When her access ends, and bob posts right after
            await ENDINGS[how](base, db, alice, phone)
            ending = asyncio.create_task(ends_without_update(lines, time.monotonic()))
            await post_as(http, bob_token, "after the end")
            # Then the response ends within a second, without bob's post
            await ending


# --- the web pages' live stream ---------------------------------------------------------------


async def _web_stream_ends(b: Browser, act: Callable[[], Awaitable[None]]) -> None:
    """Open /stream/home in `b`, run `act`, and check the stream ends within a second."""
    async with b.client.stream("GET", "/stream/home") as r:
        lines = r.aiter_lines()
        while (await asyncio.wait_for(anext(lines), 5)) != "event: ready":
            pass
        await act()
        await ends_without_update(lines, time.monotonic())


async def test_web_stream__ends_when_its_browser_signs_out(
    settings: Settings, db: AsyncSession
) -> None:
    await _people(db)
    with live_server(settings) as base:
        async with browser_at(base, "alice") as reading, browser_at(base, "alice") as signing_out:
            # Given alice has Home open in one browser; when she signs out in it
            cookie = reading.client.cookies.get("kith_session")

            async def sign_out() -> None:
                async with httpx.AsyncClient(base_url=base) as same_browser:
                    same_browser.cookies.set("kith_session", cookie or "")
                    b = Browser(same_browser)
                    await b.get("/home")
                    r = await b.post("/auth/sign_out")
                    assert r.status_code == 303

            # Then that stream ends, and the other browser's stays signed in
            await _web_stream_ends(reading, sign_out)
            assert (await signing_out.get("/settings/account")).status_code == 200


async def test_web_stream__ends_when_a_password_change_signs_other_browsers_out(
    settings: Settings, db: AsyncSession
) -> None:
    await _people(db)
    with live_server(settings) as base:
        async with browser_at(base, "alice") as phone, browser_at(base, "alice") as laptop:
            # Given alice has Home open on her phone; when she changes her password on her
            # laptop
            async def change_password() -> None:
                await laptop.get("/settings/account")
                r = await laptop.post(
                    "/settings/account/password",
                    {
                        "current_password": PASSWORD,
                        "password": "a brand new passphrase",
                        "password_confirmation": "a brand new passphrase",
                    },
                )
                assert r.status_code == 303, r.text

            # Then the phone's stream ends
            await _web_stream_ends(phone, change_password)
            # And the laptop's own stream is still served
            async with laptop.client.stream("GET", "/stream/home") as r:
                lines = r.aiter_lines()
                while (await asyncio.wait_for(anext(lines), 5)) != "event: ready":
                    pass


# --- across two server processes (Redis) --------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    "how",
    ["token revoked (POST /oauth/revoke)", "account suspended", "account deleted by an admin"],
)
async def test_two_servers__a_change_made_through_b_closes_a_stream_on_a(
    how: str,
    two_servers: list[KithServer],  # noqa: F811
    db: AsyncSession,
) -> None:
    server_a, server_b = two_servers
    alice, _, bob_token = await _people(db)
    phone = await app_token(db, alice)
    ws_url = server_a.base_url.replace("http", "ws") + "/api/v1/streaming?stream=user"
    async with (
        httpx.AsyncClient(base_url=server_a.base_url, timeout=10) as at_a,
        websockets.connect(f"{ws_url}&access_token={phone.access}") as ws,
    ):
        await asyncio.sleep(0.5)
        # When her access ends through server B, and bob posts through server A
        await ENDINGS[how](server_b.base_url, db, alice, phone)
        closing = asyncio.create_task(closes_without_update(ws, time.monotonic()))
        await post_as(at_a, bob_token, "after the end")
        # Then her socket on server A closes within a second, without the post
        assert await closing == ACCESS_ENDED
