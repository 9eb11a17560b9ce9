"""Signed GETs: a remote actor's signed fetch of our documents is answered for that actor (a
follower's server gets a followers-only post, a stranger's does not), a forged or stale
signature counts as none, "authorized fetch" mode refuses unsigned document GETs but keeps
the instance actor, WebFinger and NodeInfo open; and every GET Kith sends is signed."""

from __future__ import annotations

import asyncio
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
        f"/users/ana/statuses/{hello.id}",
        f"/users/ana/statuses/{hello.id}/activity",
        f"/@ana/{hello.id}",
        f"/users/ana/statuses/{hello.id}/replies",
        f"/users/ana/statuses/{hello.id}/replies?page=true",
        f"/users/ana/statuses/{hello.id}/likes",
        f"/users/ana/statuses/{hello.id}/shares",
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
    # (actors answer unsigned GETs with their key only: test_authorized_fetch__key_only_actor…)
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


KEY_ONLY_FIELDS = {"@context", "id", "type", "preferredUsername", "inbox", "endpoints", "publicKey"}


async def test_authorized_fetch__unsigned_actor_get_gets_the_key_only(
    db: AsyncSession, settings: Settings, peer: Peer
) -> None:
    # Given an instance in authorized fetch mode, and ana with a name, a bio and a field
    ana = await person(db, "ana")
    ana.display_name, ana.bio_html = "Ana Lopez", "<p>gardener</p>"
    ana.fields = [{"name": "site", "value": "ana.example"}]
    await db.commit()
    strict = settings.model_copy(update={"authorized_fetch": True})
    async with running_app(strict) as client:
        # When a server fetches her actor unsigned (by the actor id and by the profile URL),
        # then signed, and a browser opens it
        unsigned = [
            (await client.get(p, headers={"Accept": AS2})).json() for p in ("/users/ana", "/@ana")
        ]
        signed = (await client.get("/users/ana", headers=signed_get(peer, "/users/ana"))).json()
        page = await client.get("/users/ana", headers={"Accept": BROWSER})
        instance = await client.get("/actor", headers={"Accept": AS2})
    # Then the unsigned fetch gets her key and inbox and nothing about her
    for doc in unsigned:
        assert set(doc) == KEY_ONLY_FIELDS, doc
        assert doc["id"] == "http://kith.test/users/ana"
        assert doc["publicKey"]["id"] == "http://kith.test/users/ana#main-key"
        assert doc["publicKey"] == signed["publicKey"]
        assert "Ana Lopez" not in str(doc) and "gardener" not in str(doc)
    # And the signed fetch gets the whole Person; the page and the instance actor stay open
    assert signed["name"] == "Ana Lopez" and signed["outbox"] and signed["attachment"]
    assert page.status_code == 302
    assert instance.status_code == 200 and instance.json()["type"] == "Application"


async def test_authorized_fetch__a_peer_fetches_our_key_unsigned_to_check_our_fetch(
    db: AsyncSession, settings: Settings, peer: Peer
) -> None:
    from kith.federation.actors import fetch_json
    from kith.federation.signatures import RequestParts, parse_signature
    from tests.federation.local_http import RawRequest, json_document

    # Given an instance in authorized fetch mode, and a peer in that mode too: it answers a
    # GET only once it has checked the signature, with the key it fetches from us, unsigned
    ana = await person(db, "ana")
    strict = settings.model_copy(update={"authorized_fetch": True})
    fetched_keys: list[dict[str, object]] = []
    secret = {"id": f"{peer.base}/notes/1", "type": "Note", "content": "checked"}
    async with running_app(strict) as kith:

        async def checked_note(request: RawRequest, writer: asyncio.StreamWriter) -> None:
            parts = RequestParts(
                method=request.method,
                scheme="http",
                authority=request.headers["host"],
                path=request.target,
                query="",
                headers=tuple(request.headers.items()),
            )
            signature = parse_signature(parts)
            key_url = signature.key_id.split("#", 1)[0].removeprefix("http://kith.test")
            answer = await kith.get(key_url, headers={"Accept": AS2})  # no signature
            fetched_keys.append(answer.json())
            pem = answer.json()["publicKey"]["publicKeyPem"]
            ok = answer.status_code == 200 and signature.verify(pem)
            await json_document(secret if ok else {"error": "bad"}, 200 if ok else 401)(
                request, writer
            )

        peer.server.routes["/notes/1"] = checked_note
        # When Kith fetches the peer's note on ana's behalf (signed with her key)
        _, doc = await fetch_json(db, secret["id"], on_behalf_of=ana)
    # Then the peer could read her key without signing, saw only the key, and answered
    assert doc["content"] == "checked"
    (key_doc,) = fetched_keys
    assert set(key_doc) == KEY_ONLY_FIELDS
    assert key_doc["publicKey"]["owner"] == "http://kith.test/users/ana"  # type: ignore[index]
