"""Deleting an account through its edges: the settings page (password, two-factor code,
CSRF), the admin page, and what the Mastodon API and ActivityPub answer afterwards (404 for
the account, 401 for its token, 410 Gone with a Tombstone for its actor and posts)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts.models import Account, User
from kith.config import Settings
from kith.jobs.models import Job
from kith.posts import service as posts
from kith.posts.service import PollInput
from kith.runtime import Runtime
from tests.federation.helpers import AS2, BASE, BROWSER, fetch
from tests.mastodon_api.conftest import bearer, token_for
from tests.test_account_deletion import purge
from tests.test_accounts_two_factor import turn_on
from tests.world import PASSWORD, browser, person, post, running_app, viewer


async def deleted_at(db: AsyncSession, account: Account) -> object:
    return (await db.get(Account, account.id, populate_existing=True)).deleted_at  # type: ignore[union-attr]


async def test_settings__wrong_password_is_a_form_error_and_nothing_happens(
    db: AsyncSession, settings: Settings
) -> None:
    # Given ana signed in
    await person(db, "ada", admin=True)
    ana = await person(db, "ana")
    async with browser(settings) as b:
        await b.sign_in("ana")
        page = await b.get("/settings/delete")
        assert page.status_code == 200 and "cannot be undone" in page.text
        assert "@ana" in page.text and "stays reserved" in page.text
        # When she sends the form with a wrong password
        r = await b.post("/settings/delete", {"password": "not my password"})
        # Then the form says so, and she is still here and signed in
        assert r.status_code == 422
        assert 'id="password-error"' in r.text and "not right" in r.text
        assert (await b.get("/settings/account")).status_code == 200
    assert await deleted_at(db, ana) is None
    assert await db.scalar(select(func.count()).where(Job.kind == "accounts.purge")) == 0


async def test_settings__without_the_csrf_token_nothing_happens(
    db: AsyncSession, settings: Settings
) -> None:
    await person(db, "ada", admin=True)
    ana = await person(db, "ana")
    async with browser(settings) as b:
        await b.sign_in("ana")
        r = await b.client.post("/settings/delete", data={"password": PASSWORD})
        assert r.status_code == 403
    assert await deleted_at(db, ana) is None


async def test_settings__right_password_deletes_signs_out_and_the_sign_in_fails(
    db: AsyncSession, settings: Settings
) -> None:
    await person(db, "ada", admin=True)
    ana = await person(db, "ana")
    async with browser(settings) as b:
        await b.sign_in("ana")
        await b.get("/settings/delete")
        r = await b.post("/settings/delete", {"password": PASSWORD})
        assert r.status_code == 303 and r.headers["location"] == "/auth/sign_in?notice=deleted"
        notice = await b.get(r.headers["location"])
        assert "Your account is deleted" in notice.text
        # The old session is gone
        assert (await b.get("/settings/account")).status_code in (303, 401)
        r = await b.sign_in("ana")
        assert "Wrong username or password" in r.text
    assert await deleted_at(db, ana) is not None
    assert await db.scalar(select(User).where(User.email_key == "ana@example.test")) is None


async def test_settings__with_two_factor_a_code_is_needed_too(
    db: AsyncSession, settings: Settings
) -> None:
    await person(db, "ada", admin=True)
    ana = await person(db, "ana")
    async with browser(settings) as b:
        await b.sign_in("ana")
        _, recovery = await turn_on(b)
        page = await b.get("/settings/delete")
        assert 'name="code"' in page.text
        # Password alone: refused, the code field says why
        r = await b.post("/settings/delete", {"password": PASSWORD})
        assert r.status_code == 422 and 'id="code-error"' in r.text
        r = await b.post("/settings/delete", {"password": PASSWORD, "code": "000000"})
        assert r.status_code == 422 and 'id="code-error"' in r.text
        assert await deleted_at(db, ana) is None
        # Password and a recovery code: deleted
        r = await b.post("/settings/delete", {"password": PASSWORD, "code": recovery[0]})
        assert r.status_code == 303, r.text
    assert await deleted_at(db, ana) is not None


async def test_settings__the_last_admin_is_told_why_not(
    db: AsyncSession, settings: Settings
) -> None:
    ada = await person(db, "ada", admin=True)
    async with browser(settings) as b:
        await b.sign_in("ada")
        await b.get("/settings/delete")
        r = await b.post("/settings/delete", {"password": PASSWORD})
        assert r.status_code == 422 and "last admin" in r.text
    assert await deleted_at(db, ada) is None


async def test_admin_page__deletes_after_the_username_is_typed(
    db: AsyncSession, settings: Settings
) -> None:
    await person(db, "ada", admin=True)
    bob = await person(db, "bob")
    async with browser(settings) as b:
        await b.sign_in("ada")
        listing = await b.get("/admin/accounts")
        assert f'href="/admin/accounts/{bob.id}/delete"' in listing.text
        page = await b.get(f"/admin/accounts/{bob.id}/delete")
        assert page.status_code == 200 and "cannot be undone" in page.text
        r = await b.post(f"/admin/accounts/{bob.id}/delete", {"confirm": "someone"})
        assert r.status_code == 422 and 'id="confirm-error"' in r.text
        assert await deleted_at(db, bob) is None
        r = await b.post(f"/admin/accounts/{bob.id}/delete", {"confirm": "@Bob"})
        assert r.status_code == 303 and "notice=deleted" in r.headers["location"]
        listing = await b.get("/admin/accounts")
        assert "deleted" in listing.text
        assert (await b.get(f"/admin/accounts/{bob.id}/delete")).status_code == 404
    assert await deleted_at(db, bob) is not None


async def test_api__token_401_and_account_404_after_deletion(
    rt: Runtime, db: AsyncSession, settings: Settings
) -> None:
    # Given ana with a token, and cy who looks at her
    await person(db, "ada", admin=True)
    ana, cy = await person(db, "ana"), await person(db, "cy")
    ana_token, cy_token = await token_for(db, ana), await token_for(db, cy)
    ana_post = await post(db, ana, "soon gone")
    async with running_app(settings) as api:
        assert (
            await api.get(f"/api/v1/accounts/{ana.id}", headers=bearer(cy_token))
        ).status_code == 200
        # When ana is deleted (not purged yet)
        from kith.accounts import deletion

        await deletion.delete_by_name(db, "ana")
        # Then her token is refused, and nobody finds her or her posts
        r = await api.get("/api/v1/accounts/verify_credentials", headers=bearer(ana_token))
        assert r.status_code == 401
        for url in (
            f"/api/v1/accounts/{ana.id}",
            "/api/v1/accounts/lookup?acct=ana",
            f"/api/v1/statuses/{ana_post.id}",
            f"/api/v1/accounts/{ana.id}/statuses",
        ):
            r = await api.get(url, headers=bearer(cy_token))
            assert r.status_code == 404, (url, r.status_code)
        # And her HTML profile is a 404 too
        assert (await api.get("/@ana", headers={"Accept": BROWSER})).status_code == 404


async def test_activitypub__deleted_actor_and_posts_answer_410_with_tombstones(
    rt: Runtime, db: AsyncSession, settings: Settings
) -> None:
    # Given ana's post and poll, and a post she deleted herself earlier
    await person(db, "ada", admin=True)
    ana = await person(db, "ana")
    note = await post(db, ana, "a note")
    question = await post(db, ana, "a poll", poll=PollInput(options=["a", "b"], expires_in=600))
    earlier = await post(db, ana, "deleted alone")
    await posts.delete_post(db, viewer(ana), earlier.id)
    async with running_app(settings) as client:
        # Then a post she deleted answers 410 while she is still here; unknown ids 404
        r = await fetch(client, f"{BASE}/users/ana/statuses/{earlier.id}")
        assert r.status_code == 410 and r.headers["content-type"].startswith(AS2)
        assert r.json()["type"] == "Tombstone" and r.json()["formerType"] == "Note"
        assert (await fetch(client, f"{BASE}/users/ana/statuses/1234")).status_code == 404
        assert (await fetch(client, f"{BASE}/users/ana")).status_code == 200
        # When she is deleted: before and after the purge
        from kith.accounts import deletion

        await deletion.delete_by_name(db, "ana")
        for stage in ("locked", "purged"):
            if stage == "purged":
                await purge(rt, ana.id)
            # Then her actor, by id and profile URL, is a Person's tombstone
            for url in (f"{BASE}/users/ana", f"{BASE}/@ana", f"{BASE}/users/ana/outbox"):
                r = await fetch(client, url)
                assert r.status_code == 410, (stage, url, r.status_code)
                body = r.json()
                assert body["type"] == "Tombstone" and body["formerType"] == "Person"
                assert body["id"] == f"{BASE}/users/ana" and body["deleted"]
            # And her posts are tombstones of their kind, at both of their addresses
            for p, kind in ((note, "Note"), (question, "Question")):
                for url in (f"{BASE}/users/ana/statuses/{p.id}", f"{BASE}/@ana/{p.id}"):
                    r = await fetch(client, url)
                    assert r.status_code == 410, (stage, url)
                    assert r.json() == {
                        "@context": "https://www.w3.org/ns/activitystreams",
                        "id": f"{BASE}/users/ana/statuses/{p.id}",
                        "type": "Tombstone",
                        "formerType": kind,
                        "deleted": r.json()["deleted"],
                    }
            # And her inbox says gone (a sender forgets her, as for her actor's 410)
            r = await client.post("/users/ana/inbox", content=b"{}", headers={"Content-Type": AS2})
            assert r.status_code == 410
            # And WebFinger says gone; the HTML pages say not found
            r = await client.get("/.well-known/webfinger?resource=acct:ana@kith.test")
            assert r.status_code == 410
            assert (await fetch(client, f"{BASE}/@ana/{note.id}", BROWSER)).status_code == 404
            assert (await fetch(client, f"{BASE}/users/ana/statuses/1234")).status_code == 404
