"""The admin area: who may enter, reports, account actions, sign-ups, instance settings, /about."""

from __future__ import annotations

from sqlalchemy import func, select

from kith.accounts.models import Account, InstanceSettings, User, UserSession, UserState
from kith.jobs.models import Job
from kith.moderation import service as moderation
from kith.moderation.models import Report
from kith.notifications.models import Notification, NotificationType
from kith.posts.models import Visibility
from tests.world import PASSWORD, Browser, browser, person, post, viewer

ADMIN_PAGES = ["/admin", "/admin/reports", "/admin/accounts", "/admin/sign_ups", "/admin/settings"]


def admin_actions(account_id: int, report_id: int) -> list[tuple[str, dict[str, object]]]:
    return [
        (f"/admin/reports/{report_id}/resolve", {}),
        (f"/admin/accounts/{account_id}/suspend", {}),
        (f"/admin/accounts/{account_id}/silence", {}),
        (f"/admin/accounts/{account_id}/unsuspend", {}),
        (f"/admin/sign_ups/{account_id}/approve", {}),
        (f"/admin/sign_ups/{account_id}/reject", {}),
        (f"/admin/accounts/{account_id}/delete", {"confirm": "mallory"}),
        ("/admin/settings", {"name": "Pwned", "registration_mode": "open"}),
    ]


async def _sign_up(b: Browser, name: str) -> None:
    await b.get("/auth/sign_up")
    r = await b.post(
        "/auth/sign_up",
        {
            "username": name,
            "email": f"{name}@example.test",
            "password": PASSWORD,
            "password_confirmation": PASSWORD,
            "agreement": "on",
            "reason": "I grow <b>beans</b>",
        },
    )
    assert r.status_code in (200, 303), r.text


# --- who may enter ------------------------------------------------------------------------


async def test_admin_area__members_get_403_and_nothing_changes(db, settings) -> None:  # type: ignore[no-untyped-def]
    # Given a member, a pending sign-up and an open report
    await person(db, "boss", admin=True)
    bob, mallory = await person(db, "bob"), await person(db, "mallory")
    report = await moderation.file_report(db, viewer(bob), account_id=mallory.id, post_ids=[])
    async with browser(settings) as b:
        await b.sign_in("bob")
        # When bob opens every admin page and sends every admin form with a valid CSRF token
        for url in ADMIN_PAGES:
            r = await b.get(url)
            assert r.status_code == 403, url
        for url, data in admin_actions(mallory.id, report.id):
            await b.get("/home")
            r = await b.post(url, data)
            assert r.status_code == 403, url
    # Then nothing changed
    await db.refresh(mallory)
    await db.refresh(report)
    assert mallory.suspended_at is None and mallory.silenced_at is None
    assert mallory.deleted_at is None
    assert report.resolved_at is None
    settings_row = await db.get(InstanceSettings, 1)
    assert settings_row is None or settings_row.name != "Pwned"


async def test_admin_area__visitors_are_sent_to_sign_in_and_forms_refused(db, settings) -> None:  # type: ignore[no-untyped-def]
    mallory = await person(db, "mallory")
    async with browser(settings) as b:
        for url in ADMIN_PAGES:
            r = await b.get(url)
            assert r.status_code == 303 and "/auth/sign_in" in r.headers["location"], url
        for url, data in admin_actions(mallory.id, 1):
            r = await b.post(url, data)
            assert r.status_code in (401, 403), url
    await db.refresh(mallory)
    assert mallory.suspended_at is None


async def test_admin_pages__open_for_admins(db, settings) -> None:  # type: ignore[no-untyped-def]
    await person(db, "boss", admin=True)
    async with browser(settings) as b:
        await b.sign_in("boss")
        for url in ADMIN_PAGES:
            r = await b.get(url)
            assert r.status_code == 200, url
        assert 'href="/admin"' in (await b.get("/home")).text


# --- reports ------------------------------------------------------------------------------


async def test_reports_page__shows_reported_followers_only_post_and_resolves(db, settings) -> None:  # type: ignore[no-untyped-def]
    from kith.graph import service as graph

    # Given bob follows alice and reports her followers-only post
    await person(db, "boss", admin=True)
    alice, bob = await person(db, "alice"), await person(db, "bob")
    await graph.follow(db, bob.id, alice.id)
    bad = await post(db, alice, "followers-only insult", visibility=Visibility.PRIVATE)
    await post(db, alice, "unreported private note", visibility=Visibility.PRIVATE)
    report = await moderation.file_report(
        db, viewer(bob), account_id=alice.id, post_ids=[bad.id], comment="<i>rude</i>"
    )
    async with browser(settings) as b:
        await b.sign_in("boss")
        # When the admin opens the reports
        r = await b.get("/admin/reports")
        # Then the reported post shows, through the report, and nothing else of hers
        assert "followers-only insult" in r.text
        assert "unreported private note" not in r.text
        assert "&lt;i&gt;rude&lt;/i&gt;" in r.text and "<i>rude</i>" not in r.text
        # The post itself stays closed to the admin outside the report
        assert (await b.get(f"/@alice/{bad.id}")).status_code == 404
        # When the admin resolves it
        r = await b.post(f"/admin/reports/{report.id}/resolve")
        assert r.status_code == 303
        assert "No open reports" in (await b.get("/admin/reports")).text
    await db.refresh(report)
    assert report.resolved_at is not None


async def test_report_notification__links_admins_to_the_report(db, settings) -> None:  # type: ignore[no-untyped-def]
    await person(db, "boss", admin=True)
    bob, mallory = await person(db, "bob"), await person(db, "mallory")
    report = await moderation.file_report(db, viewer(bob), account_id=mallory.id, post_ids=[])
    async with browser(settings) as b:
        await b.sign_in("boss")
        r = await b.get("/notifications")
        assert f'href="/admin/reports#report-{report.id}"' in r.text


# --- account actions ----------------------------------------------------------------------


async def test_account_actions__suspend_silence_and_undo(db, settings) -> None:  # type: ignore[no-untyped-def]
    await person(db, "boss", admin=True)
    mallory = await person(db, "mallory")
    await post(db, mallory, "mallory was here")
    async with browser(settings) as b, browser(settings) as m:
        await m.sign_in("mallory")
        await b.sign_in("boss")
        assert "@mallory" in (await b.get("/admin/accounts", params={"q": "mall"})).text
        # Silence: her posts leave Local
        r = await b.post(f"/admin/accounts/{mallory.id}/silence", {"next": "/admin/accounts"})
        assert r.status_code == 303
        assert "mallory was here" not in (await b.get("/local")).text
        await b.post(f"/admin/accounts/{mallory.id}/unsilence")
        assert "mallory was here" in (await b.get("/local")).text
        # Suspend: she is signed out, her posts and profile are gone
        r = await b.post(f"/admin/accounts/{mallory.id}/suspend", {"next": "/admin/reports"})
        assert r.status_code == 303 and r.headers["location"].startswith("/admin/reports")
        assert (await m.get("/home")).status_code == 303
        assert "mallory was here" not in (await b.get("/local")).text
        assert "suspended" in (await b.get("/admin/accounts")).text
        await b.post(f"/admin/accounts/{mallory.id}/unsuspend")
        assert "mallory was here" in (await b.get("/local")).text
        # A `next` outside the admin area is not followed
        r = await b.post(f"/admin/accounts/{mallory.id}/silence", {"next": "https://evil.test/"})
        assert r.headers["location"].startswith("/admin/accounts")
    assert await db.scalar(select(func.count()).select_from(UserSession)) >= 1


async def test_account_actions__not_on_oneself_or_other_admins(db, settings) -> None:  # type: ignore[no-untyped-def]
    boss = await person(db, "boss", admin=True)
    other = await person(db, "other_admin", admin=True)
    async with browser(settings) as b:
        await b.sign_in("boss")
        for target in (boss, other):
            r = await b.post(f"/admin/accounts/{target.id}/suspend")
            assert r.status_code == 422
        assert (await b.post("/admin/accounts/1/frobnicate")).status_code == 404
        assert (await b.post("/admin/accounts/424242/suspend")).status_code == 404
    for a in (boss, other):
        await db.refresh(a)
        assert a.suspended_at is None


# --- sign-ups -----------------------------------------------------------------------------


async def _approval_mode(db) -> None:  # type: ignore[no-untyped-def]
    from kith.accounts.service import get_instance_settings

    row = await get_instance_settings(db)
    row.registration_mode = "approval"
    await db.commit()


async def test_sign_up_in_approval_mode__admins_notified_then_approve(db, settings) -> None:  # type: ignore[no-untyped-def]
    # Given an instance where an admin approves each sign-up
    boss = await person(db, "boss", admin=True)
    await _approval_mode(db)
    async with browser(settings) as newcomer, browser(settings) as admin:
        # When someone signs up
        await _sign_up(newcomer, "sprout")
        sprout = await db.scalar(select(Account).where(Account.username == "sprout"))
        assert sprout is not None
        # Then the admin is notified, and sees the request with its reason (escaped)
        note = await db.scalar(select(Notification).where(Notification.account_id == boss.id))
        assert note is not None and note.type == NotificationType.ADMIN_SIGN_UP
        assert note.from_account_id == sprout.id
        await admin.sign_in("boss")
        assert 'href="/admin/sign_ups"' in (await admin.get("/notifications")).text
        page = await admin.get("/admin/sign_ups")
        assert "@sprout" in page.text and "&lt;b&gt;beans&lt;/b&gt;" in page.text
        # and the newcomer can't sign in yet
        r = await newcomer.post("/auth/sign_in", {"login": "sprout", "password": PASSWORD})
        assert r.status_code == 422
        # When the admin approves
        jobs_before = await db.scalar(select(func.count()).select_from(Job))
        r = await admin.post(f"/admin/sign_ups/{sprout.id}/approve")
        assert r.status_code == 303
        assert "Nobody is waiting" in (await admin.get("/admin/sign_ups")).text
        # Then the newcomer is mailed and can sign in
        assert await db.scalar(select(func.count()).select_from(Job)) == (jobs_before or 0) + 1
        await newcomer.get("/auth/sign_in")
        r = await newcomer.post("/auth/sign_in", {"login": "sprout", "password": PASSWORD})
        assert r.status_code == 303
        # Deciding twice is refused
        assert (await admin.post(f"/admin/sign_ups/{sprout.id}/approve")).status_code == 422


async def test_sign_up_rejected__account_deleted_and_name_free_again(db, settings) -> None:  # type: ignore[no-untyped-def]
    await person(db, "boss", admin=True)
    await _approval_mode(db)
    async with browser(settings) as newcomer, browser(settings) as admin:
        await _sign_up(newcomer, "weed")
        weed = await db.scalar(select(Account).where(Account.username == "weed"))
        assert weed is not None
        await admin.sign_in("boss")
        r = await admin.post(f"/admin/sign_ups/{weed.id}/reject")
        assert r.status_code == 303
    db.expunge_all()
    assert await db.scalar(select(Account).where(Account.username == "weed")) is None
    assert await db.scalar(select(User).where(User.email_key == "weed@example.test")) is None
    assert await db.scalar(select(func.count()).select_from(Notification)) == 0


async def test_reject__only_pending_sign_ups(db, settings) -> None:  # type: ignore[no-untyped-def]
    await person(db, "boss", admin=True)
    member = await person(db, "member")
    async with browser(settings) as admin:
        await admin.sign_in("boss")
        assert (await admin.post(f"/admin/sign_ups/{member.id}/reject")).status_code == 422
        assert (await admin.post("/admin/sign_ups/424242/reject")).status_code == 404
    user = await db.scalar(select(User).where(User.account_id == member.id))
    assert user is not None and user.state == UserState.ACTIVE


# --- instance settings and /about ---------------------------------------------------------


async def test_instance_settings__saved_and_shown_on_about_escaped(db, settings) -> None:  # type: ignore[no-untyped-def]
    await person(db, "boss", admin=True)
    async with browser(settings) as b:
        await b.sign_in("boss")
        await b.get("/admin/settings")
        r = await b.post(
            "/admin/settings",
            {
                "name": "<script>alert(1)</script>Allotment",
                "description": "We **grow** things. <img src=x onerror=alert(1)> [site](https://a.test)",
                "rules": "Be kind\n\n<b>No</b> spam\r\n  ",
                "registration_mode": "invite",
                "require_email_confirmation": "on",
            },
        )
        assert r.status_code == 303
        row = await db.get(InstanceSettings, 1)
        assert row is not None
        await db.refresh(row)
        assert row.rules == ["Be kind", "<b>No</b> spam"]
        assert (row.registration_mode, row.require_email_confirmation) == ("invite", True)
        about = await b.get("/about")
    assert about.status_code == 200
    assert "&lt;script&gt;alert(1)&lt;/script&gt;Allotment" in about.text
    assert "<script>alert" not in about.text
    assert "<strong>grow</strong>" in about.text and "<img" not in about.text
    assert "&lt;b&gt;No&lt;/b&gt; spam" in about.text
    assert 'href="/@boss"' in about.text  # the admin to contact
    assert "invite link" in about.text


async def test_instance_settings__bad_input_is_a_422_and_nothing_changes(db, settings) -> None:  # type: ignore[no-untyped-def]
    await person(db, "boss", admin=True)
    good = {"name": "Allotment", "description": "", "rules": "", "registration_mode": "open"}
    async with browser(settings) as b:
        await b.sign_in("boss")
        await b.get("/admin/settings")
        cases = [
            ({**good, "name": "  "}, "name"),
            ({**good, "name": "n" * 101}, "name"),
            ({**good, "description": "d" * 5001}, "description"),
            ({**good, "rules": "\n".join(f"rule {i}" for i in range(21))}, "rules"),
            ({**good, "rules": "r" * 301}, "rules"),
            ({**good, "registration_mode": "everyone"}, "registration_mode"),
            ({**good, "community_creation": "moderators"}, "community_creation"),
        ]
        for data, field in cases:
            r = await b.post("/admin/settings", data)
            assert r.status_code == 422, field
            assert f'id="{field}-error"' in r.text, field
    row = await db.get(InstanceSettings, 1)
    assert row is None or row.name == "Kith"


async def test_about__works_for_visitors_with_no_rules(app_client) -> None:  # type: ignore[no-untyped-def]
    r = await app_client.get("/about")
    assert r.status_code == 200 and "About Kith" in r.text


async def test_report_count__overview_shows_what_waits(db, settings) -> None:  # type: ignore[no-untyped-def]
    await person(db, "boss", admin=True)
    bob, mallory = await person(db, "bob"), await person(db, "mallory")
    await moderation.file_report(db, viewer(bob), account_id=mallory.id, post_ids=[])
    async with browser(settings) as b:
        await b.sign_in("boss")
        assert "1 open report" in (await b.get("/admin")).text
    assert await db.scalar(select(func.count()).select_from(Report)) == 1


async def test_instance_settings__who_may_start_a_community(db, settings) -> None:  # type: ignore[no-untyped-def]
    from kith.communities import service as communities

    await person(db, "boss", admin=True)
    member = await person(db, "member")
    assert await communities.may_create(db, member.id)
    base = {"name": "Allotment", "description": "", "rules": "", "registration_mode": "open"}
    async with browser(settings) as b:
        await b.sign_in("boss")
        page = await b.get("/admin/settings")
        assert 'name="community_creation" value="everyone" checked' in page.text
        r = await b.post("/admin/settings", {**base, "community_creation": "admins"})
        assert r.status_code == 303
        assert 'value="admins" checked' in (await b.get("/admin/settings")).text
        # A form without the field (an older page) leaves the setting as it is
        assert (await b.post("/admin/settings", base)).status_code == 303
    row = await db.get(InstanceSettings, 1)
    assert row is not None
    await db.refresh(row)
    assert row.community_creation == "admins"
    assert not await communities.may_create(db, member.id)
