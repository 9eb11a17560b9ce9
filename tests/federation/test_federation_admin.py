"""The admins' federation page (known instances, delivery state, queue, re-deliver now), domain
blocks managed from that page and the CLI and published on /about and the Mastodon API, and
actors forgotten when their server answers 410 Gone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from typer.testing import CliRunner

from kith import policy
from kith.accounts.models import Account
from kith.config import Settings, get_settings
from kith.db import utcnow
from kith.errors import Forbidden
from kith.federation import delivery, domain_blocks, instances, keys
from kith.federation.actors import ActorFetchFailed
from kith.federation.models import ActorKey, DeliveryHost, DomainBlock, RemoteActor
from kith.federation.remote_accounts import fetch_account
from kith.jobs.models import Job
from kith.runtime import Runtime
from tests.federation.inbound import count, loopback
from tests.federation.local_http import local_server, respond
from tests.federation.remote_inbox import (
    RemoteInbox,
    learn_keys,
    remote_inbox,
    remote_person,
    run_jobs,
)
from tests.world import Browser, browser, person, running_app, viewer

pytestmark = pytest.mark.usefixtures("rt")
ADMIN = policy.Viewer(None, is_admin=True)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return loopback(settings).model_copy(update={"federation_delivery_retry_seconds": 30.0})


@pytest.fixture
async def peer(db: AsyncSession) -> AsyncIterator[RemoteInbox]:
    async with remote_inbox("127.0.0.1") as inbox:
        yield inbox


@pytest.fixture
async def ana(db: AsyncSession, peer: RemoteInbox) -> Account:
    account = await person(db, "ana")
    await keys.local_key(db, account)
    await learn_keys(db, peer)
    return account


def like(n: int, obj: str = "http://127.0.0.1/users/bob/statuses/1") -> dict[str, Any]:
    return {
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": f"http://kith.test/users/ana#likes/{n}",
        "type": "Like",
        "actor": "http://kith.test/users/ana",
        "object": obj,
    }


async def signed_in_admin(b: Browser, db: AsyncSession) -> None:
    await person(db, "boss", admin=True)
    await b.sign_in("boss")


# --- known instances, delivery state, re-deliver now --------------------------------------


async def test_known_instances__show_accounts_queue_and_last_answer(
    db: AsyncSession, rt: Runtime, ana: Account, peer: RemoteInbox
) -> None:
    # Given a remote person on the peer and two deliveries to it, one failed with 500
    await remote_person(db, peer, "bob")
    peer.answer(500)
    await delivery.deliver(db, ana, like(1), [peer.shared_inbox])
    await db.commit()
    await run_jobs(rt)
    await delivery.deliver(db, ana, like(2), [peer.personal_inbox("bob")])
    await db.commit()
    # When an admin looks
    rows = await instances.known_instances(db, ADMIN)
    # Then the peer is listed with its account, both deliveries waiting and the 500
    [row] = rows
    assert (row.host, row.accounts, row.queued) == (peer.host, 1, 2)
    assert row.delivery is not None and row.delivery.last_status == 500
    assert row.delivery.consecutive_failures == 1 and not row.breaker_open
    with pytest.raises(Forbidden):
        await instances.known_instances(db, viewer(ana))


async def test_redeliver_now__closes_the_breaker_and_sends_what_waits(
    db: AsyncSession, rt: Runtime, ana: Account, peer: RemoteInbox
) -> None:
    # Given the peer's breaker is open and a delivery waits for hours
    db.add(
        DeliveryHost(
            host=peer.host, consecutive_failures=7, unavailable_until=utcnow() + timedelta(hours=2)
        )
    )
    await delivery.deliver(db, ana, like(1), [peer.shared_inbox])
    await db.execute(update(Job).values(run_at=utcnow() + timedelta(hours=3)))
    await db.commit()
    assert await run_jobs(rt) == 0
    # When an admin asks to re-deliver now
    assert await instances.redeliver_now(db, ADMIN, peer.host) == 1
    await run_jobs(rt)
    # Then the delivery is made at once and the breaker is closed
    assert [d.activity["id"] for d in peer.received] == [like(1)["id"]]
    state = await db.get(DeliveryHost, peer.host, populate_existing=True)
    assert state is not None and state.unavailable_until is None
    assert state.consecutive_failures == 0
    assert await count(db, Job) == 0


async def test_federation_page__lists_hosts_and_redelivers_for_admins_only(
    db: AsyncSession, settings: Settings, rt: Runtime, ana: Account, peer: RemoteInbox
) -> None:
    await remote_person(db, peer, "bob")
    await delivery.deliver(db, ana, like(1), [peer.shared_inbox])
    await db.execute(update(Job).values(run_at=utcnow() + timedelta(hours=3)))
    await db.commit()
    async with browser(settings) as b:
        await b.sign_in("ana")
        assert (await b.get("/admin/federation")).status_code == 403
        r = await b.post(f"/admin/federation/hosts/{peer.host}/redeliver")
        assert r.status_code == 403
    waiting = await db.scalar(select(Job.run_at).execution_options(populate_existing=True))
    assert waiting is not None and waiting > utcnow() + timedelta(hours=2)
    async with browser(settings) as b:
        await signed_in_admin(b, db)
        page = await b.get("/admin/federation")
        assert page.status_code == 200
        assert f'id="host-{peer.host}"' in page.text and "Re-deliver now" in page.text
        r = await b.post(f"/admin/federation/hosts/{peer.host}/redeliver")
        assert r.status_code == 303
    waiting = await db.scalar(select(Job.run_at).execution_options(populate_existing=True))
    assert waiting is not None and waiting <= utcnow()


# --- domain blocks on the admin page, /about, the API and the CLI -------------------------


async def test_domain_block_form__saves_lifts_and_refuses_bad_input(
    db: AsyncSession, settings: Settings
) -> None:
    async with browser(settings) as b:
        await signed_in_admin(b, db)
        await b.get("/admin/federation")
        # A bad domain: 422 with the message, nothing written
        r = await b.post(
            "/admin/federation/domain_blocks", {"domain": "not a domain", "severity": "suspend"}
        )
        assert r.status_code == 422 and "not a domain name" in r.text
        assert await count(db, DomainBlock) == 0
        # A good one
        r = await b.post(
            "/admin/federation/domain_blocks",
            {
                "domain": "spam.example",
                "severity": "silence",
                "reject_media": "on",
                "public_comment": "Spam waves",
                "private_comment": "ticket 42",
            },
        )
        assert r.status_code == 303
        page = await b.get("/admin/federation")
        assert "spam.example" in page.text and "ticket 42" in page.text
        [block] = (await db.scalars(select(DomainBlock))).all()
        assert (block.severity, block.reject_media) == ("silence", True)
        assert block.created_by_id is not None
        # Lifting it
        r = await b.post("/admin/federation/domain_blocks/remove", {"domain": "spam.example"})
        assert r.status_code == 303
    assert await count(db, DomainBlock) == 0


async def test_domain_block_form__members_get_403_and_nothing_changes(
    db: AsyncSession, settings: Settings
) -> None:
    await person(db, "bo")
    async with browser(settings) as b:
        await b.sign_in("bo")
        r = await b.post(
            "/admin/federation/domain_blocks", {"domain": "spam.example", "severity": "suspend"}
        )
        assert r.status_code == 403
    assert await count(db, DomainBlock) == 0


async def test_moderated_servers__public_reason_on_about_and_api__never_the_private_note(
    db: AsyncSession, settings: Settings
) -> None:
    await domain_blocks.block_domain(
        db, ADMIN, "spam.example", public_comment="Spam waves", private_comment="ticket 42"
    )
    await domain_blocks.block_domain(db, ADMIN, "big.example", severity="none", reject_media=True)
    await domain_blocks.block_domain(db, ADMIN, "quiet.example", severity="none")
    async with running_app(settings) as client:
        about = await client.get("/about")
        api = await client.get("/api/v1/instance/domain_blocks")
    assert "spam.example" in about.text and "Spam waves" in about.text
    assert "ticket 42" not in about.text and "ticket 42" not in api.text
    assert "quiet.example" not in about.text
    assert api.status_code == 200
    by_domain = {b["domain"]: b for b in api.json()}
    assert set(by_domain) == {"spam.example", "big.example"}
    assert by_domain["spam.example"]["severity"] == "suspend"
    assert by_domain["spam.example"]["comment"] == "Spam waves"
    assert by_domain["big.example"]["severity"] == "noop"
    assert len(by_domain["spam.example"]["digest"]) == 64


def test_cli__block_list_unblock(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from kith.cli import app

    monkeypatch.setenv("KITH_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("KITH_DOMAIN", settings.domain)
    monkeypatch.setenv("KITH_VAR_DIR", str(settings.var_dir))
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        r = runner.invoke(
            app, ["domain", "block", "Spam.Example", "--severity", "silence", "--reason", "Spam"]
        )
        assert r.exit_code == 0, r.output
        r = runner.invoke(app, ["domain", "list"])
        assert r.output.split("\t")[:4] == ["spam.example", "silence", "-", "Spam"]
        r = runner.invoke(app, ["domain", "block", "not a domain"])
        assert r.exit_code == 2 and "not a domain name" in r.output
        assert runner.invoke(app, ["domain", "unblock", "spam.example"]).exit_code == 0
        assert runner.invoke(app, ["domain", "list"]).output == ""
        r = runner.invoke(app, ["domain", "unblock", "spam.example"])
        assert r.exit_code == 2
    finally:
        get_settings.cache_clear()


# --- 410 Gone ------------------------------------------------------------------------------


async def test_delivery_answered_410_by_a_personal_inbox__forgets_the_actor(
    db: AsyncSession, rt: Runtime, ana: Account, peer: RemoteInbox
) -> None:
    bob = await remote_person(db, peer, "bob", shared=False)
    db.add(ActorKey(account_id=bob.id, key_id=f"{bob.uri}#main-key", public_key_pem="x"))
    await db.commit()
    peer.answer(410)
    await delivery.deliver(db, ana, like(1), [peer.personal_inbox("bob")])
    await db.commit()
    await run_jobs(rt)
    # Then bob's endpoints and key are gone, so nothing more is delivered to him
    assert await count(db, RemoteActor) == 0
    assert await count(db, ActorKey, ActorKey.account_id == bob.id) == 0
    assert await delivery.inboxes_of(db, [bob.id]) == set()


async def test_delivery_answered_410_by_a_shared_inbox__forgets_nobody(
    db: AsyncSession, rt: Runtime, ana: Account, peer: RemoteInbox
) -> None:
    await remote_person(db, peer, "bob")
    peer.answer(410)
    await delivery.deliver(db, ana, like(1), [peer.shared_inbox])
    await db.commit()
    await run_jobs(rt)
    assert await count(db, RemoteActor) == 1


async def test_fetching_an_actor_that_answers_410__forgets_it(
    db: AsyncSession, rt: Runtime
) -> None:
    async with local_server("127.0.0.1") as server:
        server.routes["/users/bob"] = respond(410, b"")
        uri = f"{server.base}/users/bob"
        bob = Account(username="bob", username_key="bob", domain=server.authority, uri=uri)
        db.add(bob)
        await db.flush()
        db.add(
            RemoteActor(
                account_id=bob.id,
                inbox_url=f"{uri}/inbox",
                fetched_at=utcnow() - timedelta(days=3),
            )
        )
        await db.commit()
        with pytest.raises(ActorFetchFailed):
            await fetch_account(db, uri)
        await db.commit()
    assert await count(db, RemoteActor) == 0
