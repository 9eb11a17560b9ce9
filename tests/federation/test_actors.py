"""Actor documents: a local account as a `Person`, the instance's `Application`, and how the
same URLs answer browsers and servers."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts import service as accounts
from kith.accounts.models import UserState
from kith.config import Settings
from kith.federation.models import ActorKey
from kith.moderation import service as moderation
from tests.federation.helpers import AS2, BASE, BROWSER, LD_JSON, as2, fetch
from tests.world import person, running_app


async def _alice(db: AsyncSession) -> None:
    alice = await person(db, "alice", locked=True)
    alice.display_name = "Alice A."
    alice.bio_html = "<p>Gardener</p>"
    alice.fields = [{"name": "Site", "value": "ex.test", "value_html": "<a>ex.test</a>"}]
    alice.avatar_path = "avatars/abc.webp"
    alice.discoverable = False
    await db.commit()


@pytest.mark.parametrize("accept", [AS2, LD_JSON])
async def test_actor__as_person_with_keys_and_endpoints(
    db: AsyncSession, settings: Settings, accept: str
) -> None:
    # Given alice, locked and not discoverable, with a bio, a field and an avatar
    await _alice(db)
    async with running_app(settings) as client:
        # When a server fetches her actor
        doc = as2(await fetch(client, "/users/alice", accept))
    # Then it is a Person with everything a peer needs to follow and verify her
    me = f"{BASE}/users/alice"
    assert doc["@context"][0] == "https://www.w3.org/ns/activitystreams"
    assert "https://w3id.org/security/v1" in doc["@context"]
    terms = doc["@context"][2]
    for term in ("manuallyApprovesFollowers", "discoverable", "indexable", "featured"):
        assert term in terms
    assert doc["id"] == me and doc["type"] == "Person"
    assert doc["preferredUsername"] == "alice" and doc["name"] == "Alice A."
    assert doc["summary"] == "<p>Gardener</p>"
    assert doc["url"] == f"{BASE}/@alice"
    assert doc["inbox"] == f"{me}/inbox"
    assert doc["outbox"] == f"{me}/outbox"
    assert doc["followers"] == f"{me}/followers"
    assert doc["following"] == f"{me}/following"
    assert doc["featured"] == f"{me}/collections/featured"
    assert doc["endpoints"] == {"sharedInbox": f"{BASE}/inbox"}
    assert doc["manuallyApprovesFollowers"] is True
    assert doc["discoverable"] is False and doc["indexable"] is False
    assert doc["published"].endswith("T00:00:00Z")
    assert doc["icon"] == {
        "type": "Image",
        "mediaType": "image/webp",
        "url": f"{BASE}/media/avatars/abc.webp",
    }
    assert "image" not in doc  # no header picture
    assert doc["attachment"] == [
        {"type": "PropertyValue", "name": "Site", "value": "<a>ex.test</a>"}
    ]
    key = doc["publicKey"]
    assert key["id"] == f"{me}#main-key" and key["owner"] == me
    assert key["publicKeyPem"].startswith("-----BEGIN PUBLIC KEY-----")
    # And the private half never leaves the server
    assert "PRIVATE" not in str(doc)


async def test_actor__same_key_on_every_fetch(db: AsyncSession, settings: Settings) -> None:
    await person(db, "alice")
    async with running_app(settings) as client:
        first = as2(await fetch(client, "/users/alice"))["publicKey"]["publicKeyPem"]
        again = as2(await fetch(client, "/@alice"))["publicKey"]["publicKeyPem"]
    assert first == again
    stored = await db.scalar(ActorKey.__table__.select().with_only_columns(ActorKey.public_key_pem))
    assert stored == first


async def test_profile_url__negotiates_between_page_and_actor(
    db: AsyncSession, settings: Settings
) -> None:
    await _alice(db)
    async with running_app(settings) as client:
        # A server asking /@alice for AS2 gets the actor
        doc = as2(await fetch(client, "/@alice", LD_JSON))
        assert doc["id"] == f"{BASE}/users/alice"
        # A browser gets the HTML page, which varies by Accept too
        page = await fetch(client, "/@alice", BROWSER)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "Alice A." in page.text
        # Asking for both prefers the page only when AS2 is refused
        assert (
            (await fetch(client, "/@alice", f"{AS2};q=0, text/html"))
            .headers["content-type"]
            .startswith("text/html")
        )
        # And a browser opening the actor URI is sent to the profile page
        r = await fetch(client, "/users/alice", BROWSER)
        assert r.status_code == 302 and r.headers["location"] == "/@alice"
        # A plain JSON client is not a federation peer: it keeps the page's answer
        assert (
            (await fetch(client, "/@alice", "application/json"))
            .headers["content-type"]
            .startswith("text/html")
        )


@pytest.mark.parametrize("path", ["/users/nobody", "/@nobody", "/users/waiting", "/@waiting"])
async def test_actor__unknown_or_awaiting_approval__404_json(
    db: AsyncSession, settings: Settings, path: str
) -> None:
    waiting = await person(db, "waiting")
    user = await accounts.user_for_account(db, waiting.id)
    assert user is not None
    user.state = UserState.PENDING
    await db.commit()
    async with running_app(settings) as client:
        r = await fetch(client, path)
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/json")


async def test_actor__remote_account__not_served_here(db: AsyncSession, settings: Settings) -> None:
    from kith.accounts.models import Account

    db.add(Account(username="bob", username_key="bob", domain="elsewhere.example"))
    await db.commit()
    async with running_app(settings) as client:
        assert (await fetch(client, "/users/bob")).status_code == 404


async def test_actor__suspended__stub_that_says_so_and_collections_refused(
    db: AsyncSession, settings: Settings
) -> None:
    # Given alice, with a profile, is suspended (which can be lifted)
    await _alice(db)
    alice = await accounts.find_local_account(db, "alice")
    assert alice is not None
    await moderation.suspend(db, alice)
    async with running_app(settings) as client:
        # When a server fetches her actor
        doc = as2(await fetch(client, "/users/alice"))
        # Then it learns she is suspended, keeps her id and key, and sees nothing of her
        assert doc["suspended"] is True
        assert doc["id"] == f"{BASE}/users/alice" and doc["publicKey"]["publicKeyPem"]
        assert doc["name"] == "" and doc["summary"] == "" and doc["attachment"] == []
        assert "icon" not in doc
        # And her collections are refused (403, as Mastodon while a suspension can be lifted)
        for c in ("outbox", "followers", "following", "collections/featured"):
            assert (await fetch(client, f"/users/alice/{c}")).status_code == 403, c


async def test_instance_actor__application_with_its_own_key(
    db: AsyncSession, settings: Settings
) -> None:
    alice = await person(db, "alice")
    async with running_app(settings) as client:
        doc = as2(await fetch(client, "/actor"))
        alice_doc = as2(await fetch(client, "/users/alice"))
        outbox = as2(await fetch(client, "/actor/outbox"))
    assert doc["type"] == "Application" and doc["id"] == f"{BASE}/actor"
    assert doc["publicKey"]["id"] == f"{BASE}/actor#main-key"
    assert doc["publicKey"]["owner"] == f"{BASE}/actor"
    assert doc["publicKey"]["publicKeyPem"] != alice_doc["publicKey"]["publicKeyPem"]
    assert doc["inbox"] == f"{BASE}/inbox"
    assert outbox["totalItems"] == 0
    assert alice.id  # the instance actor is no account
