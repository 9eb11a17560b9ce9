"""Signed GETs: a remote actor's signed fetch of our documents is answered for that actor (a
follower's server gets a followers-only post, a stranger's does not), a forged or stale
signature counts as none, "authorized fetch" mode refuses unsigned document GETs but keeps
the instance actor, WebFinger and NodeInfo open; and every GET Kith sends is signed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts.models import Account
from kith.config import Settings
from kith.federation.remote_accounts import fetch_account, resolve_handle
from kith.federation.signatures import sign_request
from kith.graph.models import Follow
from kith.posts.models import Visibility
from tests.federation.helpers import AS2, BROWSER
from tests.federation.inbound import loopback, two_actor_peer
from tests.federation.local_http import json_document
from tests.federation.peer import Peer
from tests.world import person, post, running_app

pytestmark = pytest.mark.usefixtures("rt")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return loopback(settings)


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    async with two_actor_peer() as p:
        yield p


def signed_get(
    peer: Peer,
    path: str,
    *,
    name: str = "alice",
    key_of: str | None = None,
    now: datetime | None = None,
    host: str = "kith.test",
) -> dict[str, str]:
    """Headers of a GET of `path` signed by the peer's `name` (with `key_of`'s key: a forgery
    when it is another actor's)."""
    request = httpx.Request("GET", f"http://{host}{path}", headers={"Accept": AS2})
    sign_request(request, peer.key_id(name), peer.keys[key_of or name], now=now)
    return {
        k: v for k, v in request.headers.items() if k.lower() in ("accept", "date", "signature")
    }


async def followers_only_post(db: AsyncSession, peer: Peer) -> tuple[Account, str]:
    """ana's followers-only post, which the peer's alice (a follower) may read and its
    mallory (a stranger) may not; returns ana and the post's path."""
    ana = await person(db, "ana")
    alice = await fetch_account(db, peer.actor_uri("alice"))
    await fetch_account(db, peer.actor_uri("mallory"))
    db.add(Follow(follower_id=alice.id, followee_id=ana.id))
    await db.commit()
    secret = await post(db, ana, "for my followers", visibility=Visibility.PRIVATE)
    return ana, f"/users/ana/statuses/{secret.id}"


async def test_signed_fetch__a_followers_server_reads_a_followers_only_post(
    db: AsyncSession, settings: Settings, peer: Peer
) -> None:
    # Given ana's followers-only post, followed by alice, not by mallory
    _, path = await followers_only_post(db, peer)
    async with running_app(settings) as client:
        # When each fetches it: unsigned, signed by alice, signed by mallory
        unsigned = await client.get(path, headers={"Accept": AS2})
        by_alice = await client.get(path, headers=signed_get(peer, path))
        by_mallory = await client.get(path, headers=signed_get(peer, path, name="mallory"))
    # Then only the follower's signed fetch gets the Note
    assert unsigned.status_code == 404
    assert by_alice.status_code == 200, by_alice.text
    assert by_alice.json()["content"] == "<p>for my followers</p>"
    assert by_mallory.status_code == 404


async def test_signed_fetch__an_unknown_signer_is_fetched_and_remembered(
    db: AsyncSession, settings: Settings, peer: Peer
) -> None:
    # Given a public post and a signer nobody here has seen
    ana = await person(db, "ana")
    hello = await post(db, ana, "hello")
    path = f"/users/ana/statuses/{hello.id}"
    async with running_app(settings) as client:
        # When alice's server fetches it twice
        first = await client.get(path, headers=signed_get(peer, path))
        second = await client.get(path, headers=signed_get(peer, path))
    # Then both are answered and her key was fetched once
    assert first.status_code == second.status_code == 200
    assert peer.fetches_of("alice") == 1


@pytest.mark.parametrize(
    "forgery",
    ["mallory's key under alice's keyId", "stale date", "signed for another host", "garbage"],
)
async def test_attack__forged_signature_on_a_get_counts_as_none(
    db: AsyncSession, settings: Settings, peer: Peer, forgery: str
) -> None:
    # Given ana's followers-only post that alice may read
    _, path = await followers_only_post(db, peer)
    headers = {
        "mallory's key under alice's keyId": lambda: signed_get(peer, path, key_of="mallory"),
        "stale date": lambda: signed_get(peer, path, now=datetime.now(UTC) - timedelta(hours=13)),
        "signed for another host": lambda: signed_get(peer, path, host="other.test"),
        "garbage": lambda: {"Accept": AS2, "Signature": 'keyId="x",signature="!!"'},
    }[forgery]()
    async with running_app(settings) as client:
        # When a request claiming to be alice's fetches it with that forgery
        r = await client.get(path, headers=headers)
        # Then it is answered as for a stranger
        assert r.status_code == 404
    # And in authorized fetch mode it is refused outright
    strict = settings.model_copy(update={"authorized_fetch": True})
    async with running_app(strict) as client:
        r = await client.get(path, headers=headers)
    assert r.status_code == 401
    assert r.json() == {"error": "This server answers signed requests only."}


async def test_authorized_fetch__documents_need_a_signature_discovery_stays_open(
    db: AsyncSession, settings: Settings, peer: Peer
) -> None:
    # Given an instance in authorized fetch mode, with ana and her public post
    ana = await person(db, "ana")
    hello = await post(db, ana, "hello")
    strict = settings.model_copy(update={"authorized_fetch": True})
    documents = [
        "/users/ana",
        "/@ana",
        f"/users/ana/statuses/{hello.id}",
        f"/users/ana/statuses/{hello.id}/activity",
        f"/@ana/{hello.id}",
        "/users/ana/outbox",
        "/users/ana/outbox?page=true",
        "/users/ana/followers",
        "/users/ana/following",
        "/users/ana/collections/featured",
    ]
    async with running_app(strict) as client:
        # When servers fetch them unsigned, then signed
        unsigned = {
            p: (await client.get(p, headers={"Accept": AS2})).status_code for p in documents
        }
        signed = {
            p: (await client.get(p, headers=signed_get(peer, p))).status_code for p in documents
        }
        # And when the open endpoints and a browser are asked unsigned
        open_ = {
            p: (await client.get(p, headers={"Accept": AS2})).status_code
            for p in (
                "/actor",
                "/.well-known/webfinger?resource=acct:ana@kith.test",
                "/.well-known/nodeinfo",
                "/nodeinfo/2.1",
                "/.well-known/host-meta",
            )
        }
        page = await client.get("/users/ana", headers={"Accept": BROWSER})
    # Then every document needs the signature, and the rest answers anyone
    assert set(unsigned.values()) == {401}, unsigned
    assert set(signed.values()) == {200}, signed
    assert set(open_.values()) == {200}, open_
    assert page.status_code == 302


async def test_outbound_gets__are_signed_as_the_instance_actor(
    db: AsyncSession, peer: Peer
) -> None:
    # Given a peer whose WebFinger knows alice
    jrd = {
        "links": [
            {"rel": "self", "type": "application/activity+json", "href": peer.actor_uri("alice")}
        ]
    }
    peer.server.routes["/.well-known/webfinger"] = json_document(jrd)
    # When Kith resolves @alice there (a WebFinger GET, then the actor's)
    await resolve_handle(db, "alice", peer.server.authority)
    # Then both GETs carry a signature by the instance actor's key
    gets = [r for r in peer.server.requests if r.method == "GET"]
    assert [r.target.split("?")[0] for r in gets] == ["/.well-known/webfinger", "/users/alice"]
    for r in gets:
        assert 'keyId="http://kith.test/actor#main-key"' in r.headers["signature"]
        assert 'headers="(request-target) host date"' in r.headers["signature"]


async def test_outbound_get__on_behalf_of_a_person_is_signed_with_their_key(
    db: AsyncSession, peer: Peer
) -> None:
    from kith.federation.actors import fetch_json

    # Given a local person
    ana = await person(db, "ana")
    # When Kith fetches a document on her behalf
    await fetch_json(db, peer.actor_uri("alice"), on_behalf_of=ana)
    # Then the GET is signed with her key
    [get] = [r for r in peer.server.requests if r.method == "GET"]
    assert 'keyId="http://kith.test/users/ana#main-key"' in get.headers["signature"]
