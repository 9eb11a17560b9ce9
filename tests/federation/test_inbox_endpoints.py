"""The inboxes are answered by a plain ASGI layer before FastAPI's routing (for speed:
kith.federation.inbox_routes). What every other request gets still holds for them: Edge's
security headers and NUL refusal, FastAPI's 405 for other methods and its redirect of
`/inbox/`, a 400 (and nothing stored) for a client that hangs up mid-body."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from kith.app import create_app
from kith.config import Settings
from kith.edge import SECURITY_HEADERS
from kith.federation.inbox_routes import inbox_owner
from tests.federation.local_http import local_server
from tests.federation.peer import Peer
from tests.federation.test_inbox import nothing_stored
from tests.world import person, running_app

pytestmark = pytest.mark.usefixtures("rt")


@pytest.fixture
def fed_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"federation_allow_private": True})


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    async with local_server("127.0.0.1") as server:
        p = Peer(server)
        p.add_actor("alice", key=0)
        yield p


def test_inbox_owner__matches_what_the_routes_matched() -> None:
    assert inbox_owner("/inbox") == ""
    assert inbox_owner("/users/bo/inbox") == "bo"
    for other in ("/inbox/", "/users//inbox", "/users/a/b/inbox", "/users/bo/inbox/", "/x/inbox"):
        assert inbox_owner(other) is None


async def test_accepted_and_refused_deliveries__carry_the_security_headers(
    db: AsyncSession, fed_settings: Settings, peer: Peer
) -> None:
    # Given a signed delivery and an unsigned one
    headers, body = peer.sign(peer.activity("alice", "Create", peer.note("alice")))
    async with running_app(fed_settings) as client:
        # When both are posted to the shared inbox
        accepted = await client.post("/inbox", content=body, headers=headers)
        refused = await client.post(
            "/inbox", content=body, headers={"Content-Type": "application/activity+json"}
        )
    # Then each answer carries the headers every page carries
    assert (accepted.status_code, refused.status_code) == (202, 401)
    for answer in (accepted, refused):
        for name, value in SECURITY_HEADERS.items():
            assert answer.headers[name] == value


async def test_nul_in_the_address__refused_before_the_inbox(
    db: AsyncSession, fed_settings: Settings, peer: Peer
) -> None:
    await person(db, "bo")
    activity = peer.activity("alice", "Create", peer.note("alice"))
    async with running_app(fed_settings) as client:
        for path in ("/inbox?x=%00", "/users/bo/inbox?x=%00"):
            answer = await client.post(path, **_signed(peer, activity, path))
            assert answer.status_code == 422
    assert await nothing_stored(db)


def _signed(peer: Peer, activity: dict[str, Any], path: str) -> dict[str, Any]:
    headers, body = peer.sign(activity, path=path.split("?", 1)[0])
    return {"content": body, "headers": headers}


async def test_other_methods__405_and_a_trailing_slash__redirected(
    db: AsyncSession, fed_settings: Settings
) -> None:
    async with running_app(fed_settings) as client:
        for method, path in (("GET", "/inbox"), ("PUT", "/inbox"), ("GET", "/users/bo/inbox")):
            assert (await client.request(method, path)).status_code == 405
        slashed = await client.post("/inbox/", content=b"{}")
    assert slashed.status_code == 307 and slashed.headers["location"].endswith("/inbox")


async def test_client_hangs_up_mid_body__400_and_nothing_stored(
    db: AsyncSession, fed_settings: Settings, peer: Peer
) -> None:
    # Given a delivery whose sender disconnects after the first half of the body
    headers, body = peer.sign(peer.activity("alice", "Create", peer.note("alice")))
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": body[: len(body) // 2], "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    app = create_app(fed_settings)
    async with app.router.lifespan_context(app):
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/inbox",
            "raw_path": b"/inbox",
            "root_path": "",
            "query_string": b"",
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]
            + [(b"host", b"kith.test")],
            "client": ("203.0.113.7", 1234),
            "server": ("kith.test", 80),
        }
        # When the app handles it
        await app(scope, receive, send)
    # Then it answers 400 (to nobody) and stores nothing
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 400
    assert await nothing_stored(db)
