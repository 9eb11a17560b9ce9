"""Communities as FEP-1b12 `Group` actors: the actor document at `/c/HANDLE`, its
collections, and WebFinger. A private community shows its card, never its members or posts."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts.models import Account
from kith.communities import moderation
from kith.communities import service as communities
from kith.communities.models import Community, MembershipModel, Role
from kith.communities.service import CommunityInput
from kith.config import Settings
from kith.federation.models import ActorKey
from tests.federation.helpers import BASE, BROWSER, PUBLIC, as2, fetch
from tests.world import person, post, running_app

GROUP = f"{BASE}/c/gardeners"


async def found(
    db: AsyncSession,
    owner: Account,
    handle: str = "gardeners",
    membership: MembershipModel = MembershipModel.OPEN,
    **fields: Any,
) -> Community:
    data = CommunityInput(name=fields.pop("name", "Gardeners"), membership=membership, **fields)
    return await communities.create_community(db, owner.id, handle, data)


async def test_group__served_with_its_card_endpoints_collections_and_key(
    db: AsyncSession, settings: Settings
) -> None:
    # Given an open community with a description, rules and topics
    ann = await person(db, "ann")
    await found(
        db,
        ann,
        description="We grow <things>.",
        rules="Be kind.\n\nNo spam.",
        topics=["roses"],
        language="en",
    )
    async with running_app(settings) as client:
        # When a server fetches /c/gardeners as ActivityPub
        doc = as2(await fetch(client, "/c/gardeners"))
    # Then it is a Group a peer can follow, read and verify
    assert doc["id"] == GROUP and doc["type"] == "Group"
    assert doc["preferredUsername"] == "gardeners" and doc["name"] == "Gardeners"
    assert doc["summary"] == "<p>We grow &lt;things&gt;.</p>"  # plain text, escaped
    assert doc["content"] == "<p>Be kind.</p><p>No spam.</p>"
    assert doc["inbox"] == f"{BASE}/inbox"
    for name in ("outbox", "followers", "featured", "moderators"):
        assert doc[name] == f"{GROUP}/{name}"
    assert doc["attributedTo"] == f"{GROUP}/moderators"
    assert doc["manuallyApprovesFollowers"] is False
    assert doc["postingRestrictedToMods"] is False
    assert doc["tag"][0]["name"] == "#roses"
    assert doc["publicKey"]["id"] == f"{GROUP}#main-key"
    assert doc["publicKey"]["owner"] == GROUP
    assert "BEGIN PUBLIC KEY" in doc["publicKey"]["publicKeyPem"]
    terms = doc["@context"][-1]
    assert "postingRestrictedToMods" in terms and "moderators" in terms
    assert "icon" not in doc and "image" not in doc  # none set yet
    # and the key is kept, with the community (no account owns it)
    key = await db.get(ActorKey, (await _key_id(db)))
    assert key is not None and key.account_id is None and key.private_key_pem


async def _key_id(db: AsyncSession) -> int:
    from sqlalchemy import select

    key_id = await db.scalar(select(ActorKey.id).where(ActorKey.key_id == f"{GROUP}#main-key"))
    assert key_id is not None
    return key_id


async def test_group__icon_and_banner_are_its_icon_and_image(
    db: AsyncSession, settings: Settings
) -> None:
    ann = await person(db, "ann")
    community = await found(db, ann)
    community.icon_path, community.banner_path = "community_icons/a.webp", "community_banners/b.png"
    await db.commit()
    async with running_app(settings) as client:
        doc = as2(await fetch(client, "/c/gardeners"))
    assert doc["icon"] == {
        "type": "Image",
        "mediaType": "image/webp",
        "url": f"{BASE}/media/community_icons/a.webp",
    }
    assert doc["image"]["url"] == f"{BASE}/media/community_banners/b.png"


async def test_group__browsers_still_get_the_page_and_unknown_handles_are_404(
    db: AsyncSession, settings: Settings
) -> None:
    ann = await person(db, "ann")
    await found(db, ann)
    async with running_app(settings) as client:
        page = await fetch(client, "/c/gardeners", BROWSER)
        missing = await fetch(client, "/c/nobody")
        missing_outbox = await fetch(client, "/c/nobody/outbox")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert missing.status_code == 404 and missing.json() == {"error": "No such community."}
    assert missing_outbox.status_code == 404


async def test_group__models_that_are_not_open_approve_followers_by_hand(
    db: AsyncSession, settings: Settings
) -> None:
    ann = await person(db, "ann")
    for handle, model in (("a", "approval"), ("i", "invite"), ("p", "private")):
        await found(db, ann, handle=handle, membership=MembershipModel(model))
    async with running_app(settings) as client:
        for handle in ("a", "i", "p"):
            doc = as2(await fetch(client, f"/c/{handle}"))
            assert doc["manuallyApprovesFollowers"] is True


async def test_group_collections__public_threads_pins_and_moderators(
    db: AsyncSession, settings: Settings
) -> None:
    # Given an open community with two threads (one pinned), a thread waiting for approval,
    # and a moderator
    ann, bo = await person(db, "ann"), await person(db, "bo")
    community = await found(db, ann)
    await communities.join(db, bo.id, community)
    first = await post(db, ann, "first", community_ids=[community.id])
    second = await post(db, bo, "second", community_ids=[community.id])
    await moderation.pin_thread(db, ann.id, community, first.id)
    await moderation.set_role(db, ann.id, community, bo.id, Role.MODERATOR)
    await communities.update_community(
        db, ann.id, community, communities.CommunityChanges(post_approval=True)
    )
    cy = await person(db, "cy")
    await communities.join(db, cy.id, community)
    await post(db, cy, "waiting", community_ids=[community.id])
    async with running_app(settings) as client:
        outbox = as2(await fetch(client, "/c/gardeners/outbox"))
        page = as2(await fetch(client, outbox["first"]))
        featured = as2(await fetch(client, "/c/gardeners/featured"))
        mods = as2(await fetch(client, "/c/gardeners/moderators"))
        followers = as2(await fetch(client, "/c/gardeners/followers"))
    # Then the outbox announces the two approved threads, newest first, not the waiting one
    assert outbox["totalItems"] == 2
    objects = [item["object"] for item in page["orderedItems"]]
    assert objects == [
        f"{BASE}/users/bo/statuses/{second.id}",
        f"{BASE}/users/ann/statuses/{first.id}",
    ]
    assert all(
        item["type"] == "Announce" and item["actor"] == GROUP for item in page["orderedItems"]
    )
    assert page["orderedItems"][0]["to"] == [PUBLIC]
    assert featured["orderedItems"] == [f"{BASE}/users/ann/statuses/{first.id}"]
    assert set(mods["orderedItems"]) == {f"{BASE}/users/ann", f"{BASE}/users/bo"}
    assert followers["totalItems"] == 3 and "orderedItems" not in followers


async def test_private_group__shows_its_card_but_never_members_or_posts(
    db: AsyncSession, settings: Settings
) -> None:
    # Given a private community with a member's pinned thread
    ann = await person(db, "ann")
    community = await found(
        db, ann, handle="secret", membership=MembershipModel.PRIVATE, description="Hush."
    )
    hidden = await post(db, ann, "members only", community_ids=[community.id])
    await moderation.pin_thread(db, ann.id, community, hidden.id)
    async with running_app(settings) as client:
        doc = as2(await fetch(client, "/c/secret"))
        outbox = as2(await fetch(client, "/c/secret/outbox"))
        outbox_page = as2(await fetch(client, "/c/secret/outbox?page=true"))
        featured = as2(await fetch(client, "/c/secret/featured"))
        mods = as2(await fetch(client, "/c/secret/moderators"))
        followers = as2(await fetch(client, "/c/secret/followers"))
        note = await fetch(client, f"/users/ann/statuses/{hidden.id}")
    # Then the card is there, and nothing else
    assert doc["name"] == "Gardeners" and doc["summary"] == "<p>Hush.</p>"
    assert doc["discoverable"] is False
    assert outbox["totalItems"] == 0 and "first" not in outbox
    assert outbox_page["orderedItems"] == []
    assert featured["orderedItems"] == [] and mods["orderedItems"] == []
    assert followers["totalItems"] == 0
    assert note.status_code == 404  # the post itself, to a stranger


async def test_webfinger__finds_a_community_by_acct_and_by_url(
    db: AsyncSession, settings: Settings
) -> None:
    ann = await person(db, "ann")
    await found(db, ann, handle="Gardeners")
    async with running_app(settings) as client:
        by_acct = await client.get("/.well-known/webfinger?resource=acct:gardeners@kith.test")
        by_url = await client.get(f"/.well-known/webfinger?resource={BASE}/c/Gardeners")
        person_jrd = await client.get("/.well-known/webfinger?resource=acct:ann@kith.test")
        elsewhere = await client.get("/.well-known/webfinger?resource=acct:gardeners@else.test")
        nobody = await client.get("/.well-known/webfinger?resource=acct:nobody@kith.test")
    for r in (by_acct, by_url):
        assert r.status_code == 200
        jrd = r.json()
        assert jrd["subject"] == "acct:Gardeners@kith.test"
        (self_link,) = [link for link in jrd["links"] if link["rel"] == "self"]
        assert self_link["href"] == f"{BASE}/c/Gardeners"
    assert person_jrd.json()["subject"] == "acct:ann@kith.test"
    assert elsewhere.status_code == 404 and nobody.status_code == 404


async def test_community_post__its_note_names_the_community_as_audience(
    db: AsyncSession, settings: Settings
) -> None:
    ann = await person(db, "ann")
    community = await found(db, ann)
    mine = await post(db, ann, "In the garden", community_ids=[community.id])
    elsewhere = await post(db, ann, "Not in a community")
    async with running_app(settings) as client:
        note = as2(await fetch(client, f"/users/ann/statuses/{mine.id}"))
        create = as2(await fetch(client, f"/users/ann/statuses/{mine.id}/activity"))
        plain = as2(await fetch(client, f"/users/ann/statuses/{elsewhere.id}"))
    assert note["audience"] == GROUP and create["object"]["audience"] == GROUP
    assert note["to"] == [PUBLIC]
    assert "audience" not in plain
