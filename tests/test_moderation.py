"""Reports: filing them through /report, and what the moderators see of reported posts."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from kith import policy
from kith.errors import Forbidden, ValidationFailed
from kith.graph import service as graph
from kith.moderation import service as moderation
from kith.moderation.models import Report
from kith.notifications.models import Notification, NotificationType
from kith.posts.models import Visibility
from tests.world import browser, person, post, viewer


async def _count(db, model) -> int:  # type: ignore[no-untyped-def]
    return int(await db.scalar(select(func.count()).select_from(model)) or 0)


async def test_report_post__moderators_get_it_with_the_post(db, settings) -> None:  # type: ignore[no-untyped-def]
    # Given an admin, and bob who can see mallory's spam
    boss = await person(db, "boss", admin=True)
    await person(db, "bob")
    mallory = await person(db, "mallory")
    spam = await post(db, mallory, "Buy cheap seeds at example.com")
    async with browser(settings) as b:
        await b.sign_in("bob")
        # When bob opens the report form from the post
        r = await b.get("/report", params={"post_id": str(spam.id)})
        assert r.status_code == 200
        assert "Report" in r.text and "@mallory" in r.text
        assert f'value="{spam.id}" checked' in r.text
        # and sends it
        r = await b.post(
            "/report",
            {
                "account_id": str(mallory.id),
                "status_ids": [str(spam.id)],
                "category": "spam",
                "comment": "Every day the same",
            },
        )
        assert r.status_code == 303 and r.headers["location"] == "/report/sent"
        assert "Thanks" in (await b.get("/report/sent")).text
    # Then the report holds the post, and the admin is notified
    report = await db.scalar(select(Report))
    assert report is not None
    assert (report.target_account_id, report.post_ids, report.category) == (
        mallory.id,
        [spam.id],
        "spam",
    )
    assert report.comment == "Every day the same"
    note = await db.scalar(select(Notification).where(Notification.account_id == boss.id))
    assert note is not None and note.type == NotificationType.ADMIN_REPORT
    assert note.report_id == report.id


async def test_report_account__form_lists_only_posts_the_reporter_sees(db, settings) -> None:  # type: ignore[no-untyped-def]
    await person(db, "bob")
    mallory = await person(db, "mallory")
    await post(db, mallory, "visible rudeness")
    await post(db, mallory, "secret rudeness", visibility=Visibility.PRIVATE)
    async with browser(settings) as b:
        await b.sign_in("bob")
        r = await b.get("/report", params={"account": "mallory"})
        assert r.status_code == 200
        assert "visible rudeness" in r.text and "secret rudeness" not in r.text
        # An account with no posts picked is a valid report too
        r = await b.post("/report", {"account_id": str(mallory.id), "category": "other"})
        assert r.status_code == 303
    assert await _count(db, Report) == 1


async def test_report__a_post_one_cannot_see_is_refused_and_nothing_is_written(
    db, settings
) -> None:  # type: ignore[no-untyped-def]
    # Given a followers-only post of alice that bob (not a follower) can't see
    await person(db, "boss", admin=True)
    alice = await person(db, "alice")
    await person(db, "bob")
    hidden = await post(db, alice, "for my followers", visibility=Visibility.PRIVATE)
    async with browser(settings) as b:
        await b.sign_in("bob")
        # When bob tries to open the report form for it: it does not exist for him
        r = await b.get("/report", params={"post_id": str(hidden.id)})
        assert r.status_code == 404 and "for my followers" not in r.text
        # When he forges the form with its id
        r = await b.post(
            "/report",
            {"account_id": str(alice.id), "status_ids": [str(hidden.id)], "category": "spam"},
        )
        # Then it is refused with the reason, and the post's text is not shown
        assert r.status_code == 422
        assert "only report posts of this account that you can see" in r.text
        assert "for my followers" not in r.text
    assert await _count(db, Report) == 0
    assert await _count(db, Notification) == 0


async def test_report__bad_input_is_a_422_and_nothing_is_written(db, settings) -> None:  # type: ignore[no-untyped-def]
    bob = await person(db, "bob")
    alice = await person(db, "alice")
    mallory = await person(db, "mallory")
    alices = await post(db, alice, "alice's post")
    async with browser(settings) as b:
        await b.sign_in("bob")
        await b.get("/report", params={"account": "mallory"})
        m = str(mallory.id)
        cases = [
            {"account_id": m, "category": "other", "comment": "x" * 1001},
            {"account_id": m, "category": "bogus"},
            {"account_id": m, "category": "other", "status_ids": [str(alices.id)]},
            {"account_id": m, "category": "other", "status_ids": ["12abc"]},
            {"account_id": m, "category": "other", "status_ids": ["99999999"]},
            {"account_id": str(bob.id), "category": "other"},
            {"account_id": "424242", "category": "other"},
            {"account_id": "not-a-number", "category": "other"},
        ]
        for data in cases:
            r = await b.post("/report", data)
            assert r.status_code == 422, (data, r.text[:300])
        assert (await b.get("/report", params={"account": "bob"})).status_code == 422
        assert (await b.get("/report", params={"account": "nobody"})).status_code == 404
        assert (await b.get("/report")).status_code == 404
    assert await _count(db, Report) == 0


async def test_report__needs_sign_in(app_client) -> None:  # type: ignore[no-untyped-def]
    r = await app_client.get("/report", params={"account": "x"})
    assert r.status_code == 303 and "/auth/sign_in" in r.headers["location"]


async def test_file_report__at_most_twenty_posts(db) -> None:  # type: ignore[no-untyped-def]
    bob, mallory = await person(db, "bob"), await person(db, "mallory")
    ids = [(await post(db, mallory, f"spam {i}")).id for i in range(21)]
    with pytest.raises(ValidationFailed):
        await moderation.file_report(db, viewer(bob), account_id=mallory.id, post_ids=ids)
    report = await moderation.file_report(
        db, viewer(bob), account_id=mallory.id, post_ids=ids[:20] + ids[:3]
    )
    assert len(report.post_ids) == 20


async def test_reported_posts__admin_sees_followers_only_post_through_the_report_only(db) -> None:  # type: ignore[no-untyped-def]
    # Given bob follows alice and reports her followers-only post
    boss = await person(db, "boss", admin=True)
    alice, bob = await person(db, "alice"), await person(db, "bob")
    await graph.follow(db, bob.id, alice.id)
    reported = await post(db, alice, "nasty words", visibility=Visibility.PRIVATE)
    other = await post(db, alice, "other private words", visibility=Visibility.PRIVATE)
    report = await moderation.file_report(
        db, viewer(bob), account_id=alice.id, post_ids=[reported.id], category="violation"
    )
    mod = viewer(boss, admin=True)
    # Then the admin sees the reported post through the report
    assert [p.id for p in await moderation.reported_posts(db, mod, report)] == [reported.id]
    views = await moderation.open_report_views(db, mod)
    assert [p.id for v in views for p in v.posts] == [reported.id]
    # but gets no extra reach anywhere else
    assert not await policy.can_see_post(db, mod, reported)
    assert not policy.can_moderator_see_reported_post(mod, report, other)
    # and nobody else sees posts through a report
    assert not policy.can_moderator_see_reported_post(viewer(bob), report, reported)
    with pytest.raises(Forbidden):
        await moderation.reported_posts(db, viewer(bob), report)


async def test_reported_posts__still_shown_after_the_author_is_suspended(db) -> None:  # type: ignore[no-untyped-def]
    boss = await person(db, "boss", admin=True)
    bob, mallory = await person(db, "bob"), await person(db, "mallory")
    bad = await post(db, mallory, "bad stuff")
    report = await moderation.file_report(db, viewer(bob), account_id=mallory.id, post_ids=[bad.id])
    await moderation.suspend(db, mallory)
    mod = viewer(boss, admin=True)
    assert [p.id for p in await moderation.reported_posts(db, mod, report)] == [bad.id]
