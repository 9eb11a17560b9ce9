"""Reports to a community's moderators: someone who can see a post of the community reports
it (reason, maybe a rule); that community's moderators alone are told (`community.report`,
listed by the Mastodon API only when asked for by name), list the open reports and settle
them by removing the post (logged, through the moderation service) or dismissing. Bad
input, a second report, a post one cannot see, other people's powers, CSRF: refused with
nothing written. A ban does not stop a report; the instance's moderators can be told too."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts.models import Account
from kith.communities import moderation, reports
from kith.communities import service as communities
from kith.communities.models import (
    Community,
    CommunityPost,
    CommunityReport,
    MembershipModel,
    ModAction,
    ModerationLogEntry,
    ReportState,
    Role,
)
from kith.config import Settings
from kith.errors import Forbidden, NotFound, ValidationFailed
from kith.moderation.models import Report
from kith.notifications.models import Notification
from kith.posts.models import Post
from tests.mastodon_api.conftest import bearer, token_for
from tests.test_communities_web import as_, count, found
from tests.test_community_posts import member, write
from tests.world import browser, person, running_app, viewer


async def told(db: AsyncSession, who: Account) -> list[str]:
    rows = await db.scalars(
        select(Notification.type).where(
            Notification.account_id == who.id, Notification.type == "community.report"
        )
    )
    return list(rows.all())


async def post_state(db: AsyncSession, c: Community, p: Post) -> str | None:
    return await db.scalar(
        select(CommunityPost.state).where(
            CommunityPost.community_id == c.id, CommunityPost.post_id == p.id
        )
    )


async def world(db: AsyncSession) -> tuple[Community, Account, Account, Account, Account, Post]:
    """ann owns !gardeners (rules: 2 lines), mod moderates it, bob posted a thread in it,
    cy is a member, dee moderates !chess."""
    ann, mod, bob = await person(db, "ann"), await person(db, "moe"), await person(db, "bob")
    cy, dee = await person(db, "cy"), await person(db, "dee")
    c = await found(db, ann, "gardeners", rules="Be kind\nNo spam")
    await found(db, dee, "chess")
    for who in (mod, bob, cy):
        await communities.join(db, who.id, c)
    await moderation.set_role(db, ann.id, c, mod.id, Role.MODERATOR)
    thread = await write(db, bob, "Buy cheap seeds at spam.example", c)
    return c, ann, mod, bob, cy, thread


async def test_report__its_moderators_are_told_no_other_moderator(db: AsyncSession) -> None:
    c, ann, mod, bob, cy, thread = await world(db)
    dee = await db.scalar(select(Account).where(Account.username == "dee"))
    assert dee is not None
    report = await reports.report_post(db, viewer(cy), c, thread.id, " Spam ", rule=2)
    assert (report.reason, report.rule, report.state) == ("Spam", 2, ReportState.OPEN)
    assert await told(db, ann) == ["community.report"] and await told(db, mod) == [
        "community.report"
    ]
    assert await told(db, dee) == [] and await told(db, bob) == []
    listed = await reports.open_reports(db, mod.id, c)
    assert [(r.reporter.id, r.post.id, r.author.id) for r in listed] == [(cy.id, thread.id, bob.id)]
    for outsider in (dee, cy, bob):
        with pytest.raises(Forbidden):
            await reports.open_reports(db, outsider.id, c)
        assert await reports.open_count(db, outsider.id, c) == 0
    assert await reports.open_count(db, ann.id, c) == 1


@pytest.mark.parametrize(
    ("reason", "rule", "field"),
    [("", None, "reason"), ("x" * 1001, None, "reason"), ("Spam", 3, "rule"), ("Spam", 0, "rule")],
)
async def test_report__bad_input_refused_with_nothing_written(
    db: AsyncSession, reason: str, rule: int | None, field: str
) -> None:
    c, ann, _, _, cy, thread = await world(db)
    with pytest.raises(ValidationFailed) as err:
        await reports.report_post(db, viewer(cy), c, thread.id, reason, rule=rule)
    assert err.value.field == field
    assert await count(db, CommunityReport) == 0 and await told(db, ann) == []


async def test_report__twice_or_ones_own_post_refused(db: AsyncSession) -> None:
    c, _, _, bob, cy, thread = await world(db)
    await reports.report_post(db, viewer(cy), c, thread.id, "Spam")
    with pytest.raises(ValidationFailed, match="already reported"):
        await reports.report_post(db, viewer(cy), c, thread.id, "Spam again")
    with pytest.raises(ValidationFailed, match="your own post"):
        await reports.report_post(db, viewer(bob), c, thread.id, "Oops")
    assert await count(db, CommunityReport) == 1


async def test_report__a_post_one_cannot_see_or_not_in_the_community_is_not_found(
    db: AsyncSession,
) -> None:
    c, ann, _, bob, cy, thread = await world(db)
    dee = await db.scalar(select(Account).where(Account.username == "dee"))
    assert dee is not None
    # A private community's post, to someone outside it
    secret = await found(db, ann, "secret", MembershipModel.PRIVATE)
    await member(db, secret, bob, ann)
    hidden = await write(db, bob, "Members only", secret)
    with pytest.raises(NotFound):
        await reports.report_post(db, viewer(dee), secret, hidden.id, "Hm")
    # A post of another community, reported through this one
    chess = await db.scalar(select(Community).where(Community.handle == "chess"))
    assert chess is not None
    other = await write(db, dee, "e4 e5", chess)
    with pytest.raises(NotFound):
        await reports.report_post(db, viewer(cy), c, other.id, "Off topic")
    # A removed post (seen by its author and the moderators only)
    await moderation.remove_post(db, ann.id, c, thread.id, "Spam")
    with pytest.raises(NotFound):
        await reports.report_post(db, viewer(cy), c, thread.id, "Spam")
    assert await count(db, CommunityReport) == 0


async def test_report__a_banned_person_may_still_report(db: AsyncSession) -> None:
    c, ann, _, _, cy, thread = await world(db)
    await moderation.ban(db, ann.id, c, cy.id, reason="Rude")
    report = await reports.report_post(db, viewer(cy), c, thread.id, "Spam all the same")
    assert report.state == ReportState.OPEN


async def test_report__also_to_the_instance_moderators(db: AsyncSession) -> None:
    c, _, _, bob, cy, thread = await world(db)
    report = await reports.report_post(db, viewer(cy), c, thread.id, "Spam", tell_instance=True)
    filed = await db.get(Report, report.instance_report_id)
    assert filed is not None and filed.target_account_id == bob.id
    assert filed.post_ids == [thread.id] and "Spam" in filed.comment


async def test_resolve__remove_through_moderation_settles_every_report_of_the_post(
    db: AsyncSession,
) -> None:
    c, ann, mod, bob, cy, thread = await world(db)
    first = await reports.report_post(db, viewer(cy), c, thread.id, "Spam")
    second = await reports.report_post(db, viewer(ann), c, thread.id, "Spam, truly")
    await reports.resolve_report(db, mod.id, c, first.id, remove=True, reason="Spam")
    assert await post_state(db, c, thread) == "removed"
    for r in (first, second):
        await db.refresh(r)
        assert (r.state, r.resolved_by_id) == (ReportState.REMOVED, mod.id)
    logged = await db.scalar(
        select(ModerationLogEntry.action).where(ModerationLogEntry.target_post_id == thread.id)
    )
    assert logged == ModAction.REMOVE_POST
    with pytest.raises(ValidationFailed, match="already been dealt with"):
        await reports.resolve_report(db, mod.id, c, first.id, remove=False)
    assert await reports.open_reports(db, mod.id, c) == []


async def test_resolve__dismiss_leaves_the_post_and_outsiders_cannot(db: AsyncSession) -> None:
    c, ann, mod, bob, cy, thread = await world(db)
    dee = await db.scalar(select(Account).where(Account.username == "dee"))
    chess = await db.scalar(select(Community).where(Community.handle == "chess"))
    assert dee is not None and chess is not None
    report = await reports.report_post(db, viewer(cy), c, thread.id, "Spam?")
    for outsider in (cy, bob, dee):
        with pytest.raises(Forbidden):
            await reports.resolve_report(db, outsider.id, c, report.id, remove=True)
    with pytest.raises(NotFound):  # through a community dee moderates
        await reports.resolve_report(db, dee.id, chess, report.id, remove=True)
    await reports.resolve_report(db, ann.id, c, report.id, remove=False)
    await db.refresh(report)
    assert report.state == ReportState.DISMISSED
    assert await post_state(db, c, thread) == "approved"
    assert await count(db, ModerationLogEntry, ModerationLogEntry.target_post_id == thread.id) == 0


async def test_api__the_report_notification_only_when_asked_for_by_name(
    db: AsyncSession, settings: Settings
) -> None:
    c, ann, _, _, cy, thread = await world(db)
    await reports.report_post(db, viewer(cy), c, thread.id, "Spam")
    headers = bearer(await token_for(db, ann))
    async with running_app(settings) as api:
        plain = (await api.get("/api/v1/notifications", headers=headers)).json()
        asked = await api.get(
            "/api/v1/notifications", params={"types[]": "community.report"}, headers=headers
        )
    assert "community.report" not in [n["type"] for n in plain]
    (item,) = asked.json()
    assert item["type"] == "community.report" and item["account"]["username"] == "cy"


# --- the web -------------------------------------------------------------------------------


async def test_web__report_then_a_moderator_removes_from_the_reports_page(
    db: AsyncSession, settings: Settings
) -> None:
    c, ann, _, _, _, thread = await world(db)
    async with as_(settings, "cy") as b:
        page = (await b.get("/c/gardeners")).text
        assert f'href="/c/gardeners/report/{thread.id}"' in page
        form = (await b.get(f"/c/gardeners/report/{thread.id}")).text
        assert "2. No spam" in form
        r = await b.post(f"/c/gardeners/report/{thread.id}", {"reason": "Spam", "rule": "2"})
        assert r.status_code == 303 and "notice=reported" in r.headers["location"]
        r = await b.post(f"/c/gardeners/report/{thread.id}", {"reason": "Spam"})
        assert r.status_code == 422 and "already reported" in r.text
        r = await b.post(f"/c/gardeners/report/{thread.id}", {"reason": "x" * 1001})
        assert r.status_code == 422
        assert (await b.get("/c/gardeners/reports")).status_code == 403
    (report,) = (await db.scalars(select(CommunityReport))).all()
    async with as_(settings, "ann") as b:
        page = (await b.get("/c/gardeners")).text
        assert 'Reports <span class="badge">1</span>' in page
        listed = (await b.get("/c/gardeners/reports")).text
        assert "Buy cheap seeds" in listed and "rule 2" in listed
        notes = (await b.get("/notifications?type=communities")).text
        assert "reported a post in" in notes
        r = await b.post(f"/c/gardeners/reports/{report.id}/remove", {"reason": "Spam"})
        assert r.status_code == 303
        assert "No open reports" in (await b.get("/c/gardeners/reports")).text
    assert await post_state(db, c, thread) == "removed"


async def test_web__other_moderators_strangers_and_csrf_change_nothing(
    db: AsyncSession, settings: Settings
) -> None:
    c, ann, _, _, cy, thread = await world(db)
    secret = await found(db, ann, "secret", MembershipModel.PRIVATE)
    hidden = await write(db, ann, "Members only", secret)
    report = await reports.report_post(db, viewer(cy), c, thread.id, "Spam")
    async with as_(settings, "dee") as b:
        assert (await b.get("/c/gardeners/reports")).status_code == 403
        r = await b.post(f"/c/gardeners/reports/{report.id}/remove", {"reason": "x"})
        assert r.status_code == 403
        assert (await b.get(f"/c/secret/report/{hidden.id}")).status_code == 404
        r = await b.post(f"/c/secret/report/{hidden.id}", {"reason": "Peek"})
        assert r.status_code == 404
    async with as_(settings, "cy") as b:
        b.csrf = "0" * 64
        r = await b.post(f"/c/gardeners/report/{thread.id}", {"reason": "Again"})
        assert r.status_code == 403
    async with as_(settings, "ann") as b:
        b.csrf = "0" * 64
        r = await b.post(f"/c/gardeners/reports/{report.id}/dismiss")
        assert r.status_code == 403
    async with browser(settings) as b:  # anonymous: sign in first
        r = await b.get(f"/c/gardeners/report/{thread.id}")
        assert r.status_code == 303 and "/auth/sign_in" in r.headers["location"]
    await db.refresh(report)
    assert report.state == ReportState.OPEN and await count(db, CommunityReport) == 1
    assert await post_state(db, c, thread) == "approved"
