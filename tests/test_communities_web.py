"""Community web pages: the directory and its suggestions, founding and editing, a community's
page (joining, invites, posting, who sees what), the moderators' pages and the public
moderation log; bad input shown as form errors with nothing written; CSRF."""

from __future__ import annotations

import io
import re
from typing import Any

from PIL import Image
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts import service as accounts
from kith.accounts.models import Account
from kith.communities import moderation
from kith.communities import service as communities
from kith.communities.models import (
    Community,
    CommunityBan,
    CommunityInvite,
    CommunityPost,
    Membership,
    MembershipModel,
    ModAction,
    ModerationLogEntry,
)
from kith.communities.service import CommunityInput
from kith.config import Settings
from kith.media import storage
from kith.posts import service as posts
from kith.posts.models import Post
from tests.test_accounts_images import jpeg_with_gps
from tests.world import Browser, browser, person, post, viewer


async def found(
    db: AsyncSession,
    owner: Account,
    handle: str = "gardeners",
    membership: MembershipModel = MembershipModel.OPEN,
    **fields: Any,
) -> Community:
    data = CommunityInput(name=fields.pop("name", "Gardeners"), membership=membership, **fields)
    return await communities.create_community(db, owner.id, handle, data)


async def count(db: AsyncSession, model: Any, *where: Any) -> int:
    return int(await db.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def member_row(
    db: AsyncSession, community: Community, who: Account
) -> tuple[str, str] | None:
    row = (
        await db.execute(
            select(Membership.state, Membership.role).where(
                Membership.community_id == community.id, Membership.account_id == who.id
            )
        )
    ).first()
    return None if row is None else (row[0], row[1])


async def log_actions(db: AsyncSession, community: Community) -> list[str]:
    rows = await db.scalars(
        select(ModerationLogEntry.action)
        .where(ModerationLogEntry.community_id == community.id)
        .order_by(ModerationLogEntry.id)
    )
    return list(rows.all())


class _SignedIn:
    """A browser signed in as `name`, for `async with`."""

    def __init__(self, settings: Settings, name: str) -> None:
        self._cm = browser(settings)
        self._name = name

    async def __aenter__(self) -> Browser:
        b = await self._cm.__aenter__()
        await b.sign_in(self._name)
        return b

    async def __aexit__(self, *exc: Any) -> None:
        await self._cm.__aexit__(*exc)


def as_(settings: Settings, name: str) -> _SignedIn:
    return _SignedIn(settings, name)


# --- the directory -------------------------------------------------------------------------


async def test_directory__lists_searches_and_sorts_with_the_membership_model(
    db: AsyncSession, settings: Settings
) -> None:
    # Given a small community with a busy week and a bigger quiet one
    alice, bob, carol = (
        await person(db, "alice"),
        await person(db, "bob"),
        await person(db, "carol"),
    )
    small = await found(db, alice, "gardeners", topics=["seeds"], description="Growing things")
    big = await found(db, bob, "chess", name="Chess club", membership=MembershipModel.APPROVAL)
    for who in (alice, carol):
        await communities.join(db, who.id, big, answer="I play")
        await moderation.approve(db, bob.id, big, who.id)
    for i in range(3):
        await post(db, alice, f"Seedling {i}", community_ids=[small.id])
    async with browser(settings) as b:
        # When anyone opens the directory sorted by members, then by activity
        by_members = (await b.get("/communities?sort=members")).text
        by_activity = (await b.get("/communities?sort=active")).text
        # Then both are listed with their sizes and models, in the chosen order
        assert by_members.index("Chess club") < by_members.index("Gardeners")
        assert by_activity.index("Gardeners") < by_activity.index("Chess club")
        assert "3 members" in by_members and "Join by approval" in by_members
        assert "3 posts this week" in by_members
        # And a search by name, by topic and by description finds only the match
        for q in ("garden", "%23seeds", "growing"):
            found_page = (await b.get(f"/communities?q={q}")).text
            assert "Gardeners" in found_page and "Chess club" not in found_page, q
        assert "No community matches" in (await b.get("/communities?q=knitting")).text
        # And !handle goes straight to the community, with or without our domain
        for q in ("!chess", "!Chess@kith.test"):
            r = await b.get(f"/communities?q={q}")
            assert r.status_code == 303 and r.headers["location"] == "/c/chess", q
        # And a bad sort is a form error, not a 500
        r = await b.get("/communities?sort=loudest")
        assert r.status_code == 422 and "Sort by members" in r.text


async def test_directory__lists_a_private_community_by_name_never_its_activity(
    db: AsyncSession, settings: Settings
) -> None:
    # Given a private community with a post, and a newer, quiet open one
    alice = await person(db, "alice")
    secret = await found(
        db, alice, "circle", name="Quiet circle", membership=MembershipModel.PRIVATE
    )
    await post(db, alice, "Members-only musing", community_ids=[secret.id])
    await found(db, alice, "open", name="Open field")
    async with browser(settings) as b:
        page = (await b.get("/communities")).text
        by_activity = (await b.get("/communities?sort=active")).text
    # Then its activity neither shows nor counts: the quiet open one ranks first (newer)
    assert by_activity.index("Open field") < by_activity.index("Quiet circle")
    assert "Quiet circle" in page and "Private" in page
    card = page[page.index("Quiet circle") :].split("</li>")[0]
    assert "this week" not in card  # its activity is content: not shown
    assert "Members-only musing" not in page


async def test_suggested__matches_topics_of_what_i_wrote_liked_and_boosted_and_says_why(
    db: AsyncSession, settings: Settings
) -> None:
    # Given bob wrote about #seeds, liked a post about #compost, and two communities exist
    alice, bob = await person(db, "alice"), await person(db, "bob")
    seeds = await found(db, alice, "seedswap", name="Seed swap", topics=["seeds"])
    await found(db, alice, "compost", name="Compost corner", topics=["compost"])
    await found(db, alice, "chess", name="Chess club", topics=["chess"])
    await post(db, bob, "Saving tomato #seeds")
    await post(db, bob, "More #seeds today")
    liked = await post(db, alice, "Turning the #compost")
    await posts.like(db, viewer(bob), liked.id)
    async with as_(settings, "bob") as b:
        page = (await b.get("/communities")).text
    # Then both matching communities are suggested, strongest first, each with its reason
    section = page[page.index("Suggested for you") : page.index("All communities")]
    assert section.index("Seed swap") < section.index("Compost corner")
    assert "Because you wrote 2 posts tagged #seeds." in section
    assert "Because you liked 1 tagged #compost." in section
    assert "Chess club" not in section
    # And once he joins one, it is no longer suggested
    await communities.join(db, bob.id, seeds)
    async with as_(settings, "bob") as b:
        page = (await b.get("/communities")).text
    section = page[page.index("Suggested for you") : page.index("All communities")]
    assert "Seed swap" not in section and "Compost corner" in section


# --- founding and editing ------------------------------------------------------------------


def _new(handle: str = "gardeners", **more: str) -> dict[str, object]:
    return {
        "handle": handle,
        "name": "Gardeners",
        "description": "All about gardens",
        "rules": "Be kind",
        "topics": "gardening, seeds",
        "language": "en",
        "membership": "approval",
        "join_question": "What do you grow?",
        **more,
    }


async def test_create__the_founder_owns_a_community_with_what_they_typed(
    db: AsyncSession, settings: Settings
) -> None:
    alice = await person(db, "alice")
    async with as_(settings, "alice") as b:
        assert "Start a community" in (await b.get("/communities/new")).text
        r = await b.post("/communities", _new(post_approval="on"))
        assert r.status_code == 303 and r.headers["location"].startswith("/c/gardeners")
        page = (await b.get("/c/gardeners")).text
    made = await communities.find_community(db, "gardeners")
    assert made is not None and made.topics == ["gardening", "seeds"] and made.post_approval
    assert await member_row(db, made, alice) == ("active", "owner")
    assert "!gardeners@kith.test" in page and "All about gardens" in page
    assert "You are the owner" in page and "What do you grow?" not in page


async def test_create__bad_input_is_a_form_error_and_nothing_is_written(
    db: AsyncSession, settings: Settings
) -> None:
    alice = await person(db, "alice")
    await person(db, "bob")
    await found(db, alice, "chess")
    cases = [
        (_new("Chess"), "handle", "This name is taken."),  # duplicate, any case
        (_new("bob"), "handle", "This name is taken."),  # someone's username
        (_new("no spaces"), "handle", "Use 1–30 characters"),
        (_new(rules="x" * 5001), "rules", "Keep this under 5000 characters."),
        (_new(name=""), "name", "be empty"),
        (_new(membership="secret"), "membership", "Choose one of"),
        (_new(topics=" ".join(f"t{i}" for i in range(11))), "topics", "at most 10"),
    ]
    async with as_(settings, "alice") as b:
        for data, field, message in cases:
            r = await b.post("/communities", data)
            assert r.status_code == 422, (field, r.status_code)
            assert f'id="{field}-error"' in r.text and message in r.text, field
            assert 'value="All about gardens"' not in r.text  # textareas keep it as text
            assert "All about gardens" in r.text  # what was typed comes back
    assert await count(db, Community) == 1


async def test_create__only_admins_when_the_instance_says_so(
    db: AsyncSession, settings: Settings
) -> None:
    await person(db, "alice")
    await person(db, "ada", admin=True)
    instance = await accounts.get_instance_settings(db)
    instance.community_creation = "admins"
    await db.commit()
    async with as_(settings, "alice") as b:
        assert "only admins can start communities" in (await b.get("/communities/new")).text
        assert "Start a community</a>" not in (await b.get("/communities")).text
        r = await b.post("/communities", _new())
        assert r.status_code == 403 and "only admins can start communities" in r.text
    assert await count(db, Community) == 0
    async with as_(settings, "ada") as b:
        assert (await b.post("/communities", _new())).status_code == 303
    assert await count(db, Community) == 1


async def test_edit__moderators_change_the_card_and_it_is_logged(
    db: AsyncSession, settings: Settings
) -> None:
    alice = await person(db, "alice")
    community = await found(db, alice, rules="Old rules")
    async with as_(settings, "alice") as b:
        page = (await b.get("/c/gardeners/edit")).text
        assert "Old rules" in page
        data = _new(rules="New rules", membership="private", post_approval="on", reason="Spam")
        data.pop("handle")
        r = await b.post("/c/gardeners/edit", data)
        assert r.status_code == 303
        # Oversized rules: a form error, nothing changed
        r = await b.post("/c/gardeners/edit", {**data, "rules": "x" * 5001})
        assert r.status_code == 422 and 'id="rules-error"' in r.text
        log = (await b.get("/c/gardeners/log")).text
    await db.refresh(community)
    assert community.rules == "New rules" and community.membership == "private"
    assert community.post_approval
    assert await log_actions(db, community) == [ModAction.UPDATE]
    assert "edited the community" in log and "Reason: Spam" in log and "rules" in log


# --- joining -------------------------------------------------------------------------------


async def test_join__open_at_once_and_leave(db: AsyncSession, settings: Settings) -> None:
    alice, bob = await person(db, "alice"), await person(db, "bob")
    community = await found(db, alice)
    async with as_(settings, "bob") as b:
        r = await b.post("/c/gardeners/join")
        assert r.status_code == 303 and "notice=joined" in r.headers["location"]
        assert "You are a member" in (await b.get(r.headers["location"])).text
        assert await member_row(db, community, bob) == ("active", "member")
        await b.post("/c/gardeners/leave")
    assert await member_row(db, community, bob) is None


async def test_join__approval_request_with_answer_then_approved_once(
    db: AsyncSession, settings: Settings
) -> None:
    alice, bob = await person(db, "alice"), await person(db, "bob")
    community = await found(
        db, alice, membership=MembershipModel.APPROVAL, join_question="What do you grow?"
    )
    async with as_(settings, "bob") as b:
        page = (await b.get("/c/gardeners")).text
        assert "What do you grow?" in page and "Ask to join" in page
        # An empty answer is a form error, nothing written
        r = await b.post("/c/gardeners/join", {"answer": "  "})
        assert r.status_code == 422 and 'id="answer-error"' in r.text
        assert await member_row(db, community, bob) is None
        r = await b.post("/c/gardeners/join", {"answer": "Tomatoes & <b>beans</b>"})
        assert "notice=requested" in r.headers["location"]
        assert "waiting for the moderators" in (await b.get("/c/gardeners")).text
    async with as_(settings, "alice") as b:
        assert 'Requests <span class="badge">1</span>' in (await b.get("/c/gardeners")).text
        page = (await b.get("/c/gardeners/requests")).text
        assert "Tomatoes &amp; &lt;b&gt;beans&lt;/b&gt;" in page  # the answer, escaped
        r = await b.post(f"/c/gardeners/requests/{bob.id}/approve")
        assert r.status_code == 303
        # Approving twice: a form error, and nothing more is written
        r = await b.post(f"/c/gardeners/requests/{bob.id}/approve")
        assert r.status_code == 422 and "already a member" in r.text
    assert await member_row(db, community, bob) == ("active", "member")
    assert await log_actions(db, community) == [ModAction.APPROVE]


async def test_join__reject_lets_them_ask_again(db: AsyncSession, settings: Settings) -> None:
    alice, bob = await person(db, "alice"), await person(db, "bob")
    community = await found(db, alice, membership=MembershipModel.APPROVAL)
    await communities.join(db, bob.id, community)
    async with as_(settings, "alice") as b:
        r = await b.post(f"/c/gardeners/requests/{bob.id}/reject", {"reason": "Not a gardener"})
        assert r.status_code == 303
        assert "No one is waiting" in (await b.get("/c/gardeners/requests")).text
    assert await member_row(db, community, bob) is None


async def test_invite__link_shown_once_lets_a_friend_in_and_a_bad_code_does_not(
    db: AsyncSession, settings: Settings
) -> None:
    alice, bob = await person(db, "alice"), await person(db, "bob")
    await person(db, "carol")
    community = await found(db, alice, membership=MembershipModel.INVITE)
    async with as_(settings, "alice") as b:
        r = await b.post("/c/gardeners/invites", {"expires_in": "86400", "max_uses": "1"})
        assert r.status_code == 200 and "shown only this once" in r.text
        links = re.findall(r'value="(http://kith\.test/c/gardeners\?invite=([^"]+))"', r.text)
        assert len(links) == 1
        url, code = links[0]
        listing = (await b.get("/c/gardeners/invites")).text
        assert code not in listing and "0 of 1" in listing  # the code is never shown again
    async with as_(settings, "carol") as b:
        # A wrong code: a form error by the field, nothing written
        r = await b.post("/c/gardeners/join", {"invite_code": "not-the-code"})
        assert r.status_code == 422 and 'id="invite_code-error"' in r.text
        assert "not right" in r.text
    async with as_(settings, "bob") as b:
        page = await b.get(url.removeprefix("http://kith.test"))
        assert page.headers["referrer-policy"] == "no-referrer"
        assert f'value="{code}"' in page.text and "You were invited" in page.text
        r = await b.post("/c/gardeners/join", {"invite_code": code})
        assert "notice=joined" in r.headers["location"]
    async with as_(settings, "carol") as b:
        r = await b.post("/c/gardeners/join", {"invite_code": code})
        assert r.status_code == 422 and "used up" in r.text
    assert await member_row(db, community, bob) == ("active", "member")
    assert await count(db, Membership, Membership.community_id == community.id) == 2


async def test_invite__revoked_link_no_longer_works(db: AsyncSession, settings: Settings) -> None:
    alice, bob = await person(db, "alice"), await person(db, "bob")
    community = await found(db, alice, membership=MembershipModel.INVITE)
    invite, code = await communities.create_invite(db, alice.id, community)
    async with as_(settings, "alice") as b:
        r = await b.post(f"/c/gardeners/invites/{invite.id}/revoke")
        assert r.status_code == 303
        assert "no longer works" in (await b.get("/c/gardeners/invites")).text
        r = await b.post(f"/c/gardeners/invites/{invite.id}/revoke")
        assert r.status_code == 422
    async with as_(settings, "bob") as b:
        r = await b.post("/c/gardeners/join", {"invite_code": code})
        assert r.status_code == 422 and "expired" in r.text
    assert await member_row(db, community, bob) is None
    assert await log_actions(db, community) == [ModAction.CREATE_INVITE, ModAction.REVOKE_INVITE]


# --- bans ----------------------------------------------------------------------------------


async def test_ban__with_duration_and_reason_then_the_person_cannot_rejoin(
    db: AsyncSession, settings: Settings
) -> None:
    alice, bob = await person(db, "alice"), await person(db, "bob")
    community = await found(db, alice)
    await communities.join(db, bob.id, community)
    async with as_(settings, "alice") as b:
        r = await b.post(
            f"/c/gardeners/members/{bob.id}/ban", {"duration": "86400", "reason": "Spam links"}
        )
        assert r.status_code == 303
        bans = (await b.get("/c/gardeners/bans")).text
        assert "@bob" in bans and "Spam links" in bans and "UTC" in bans
    async with as_(settings, "bob") as b:
        page = (await b.get("/c/gardeners")).text
        assert "You are banned from this community until" in page and "Spam links" in page
        r = await b.post("/c/gardeners/join")
        assert r.status_code == 403 and "banned" in r.text
    assert await member_row(db, community, bob) is None
    async with as_(settings, "alice") as b:
        assert (await b.post(f"/c/gardeners/bans/{bob.id}/unban")).status_code == 303
        r = await b.post(f"/c/gardeners/bans/{bob.id}/unban")  # not banned any more
        assert r.status_code == 422
    assert await log_actions(db, community) == [ModAction.BAN, ModAction.UNBAN]


async def test_ban_by_name__unknown_person_is_a_form_error(
    db: AsyncSession, settings: Settings
) -> None:
    alice = await person(db, "alice")
    await person(db, "bob")
    community = await found(db, alice)
    async with as_(settings, "alice") as b:
        r = await b.post("/c/gardeners/bans", {"username": "nobody", "duration": ""})
        assert r.status_code == 422 and 'id="username-error"' in r.text
        r = await b.post("/c/gardeners/bans", {"username": "@bob", "duration": ""})
        assert r.status_code == 303
        assert "for good" in (await b.get("/c/gardeners/bans")).text
    assert await count(db, CommunityBan, CommunityBan.community_id == community.id) == 1


# --- roles ---------------------------------------------------------------------------------


async def test_roles__owner_makes_a_moderator_and_hands_the_community_over(
    db: AsyncSession, settings: Settings
) -> None:
    alice, bob = await person(db, "alice"), await person(db, "bob")
    community = await found(db, alice)
    await communities.join(db, bob.id, community)
    async with as_(settings, "alice") as b:
        r = await b.post(f"/c/gardeners/members/{bob.id}/role", {"role": "moderator"})
        assert r.status_code == 303
        # A wrong confirmation changes nothing
        r = await b.post(f"/c/gardeners/members/{bob.id}/transfer", {"confirm": "nope"})
        assert r.status_code == 422 and 'id="confirm-error"' in r.text
        r = await b.post(f"/c/gardeners/members/{bob.id}/transfer", {"confirm": "Gardeners"})
        assert r.status_code == 303
        # Now a moderator, alice may no longer manage roles
        r = await b.post(f"/c/gardeners/members/{bob.id}/role", {"role": "member"})
        assert r.status_code == 403
    await db.refresh(community)
    assert community.owner_id == bob.id
    assert await member_row(db, community, alice) == ("active", "moderator")
    assert await log_actions(db, community) == [
        ModAction.MAKE_MODERATOR,
        ModAction.TRANSFER_OWNERSHIP,
    ]


# --- who may open what ---------------------------------------------------------------------

MOD_PAGES = ["members", "requests", "bans", "invites", "queue", "edit"]


async def test_moderator_pages__refused_to_members_strangers_and_other_moderators(
    db: AsyncSession, settings: Settings
) -> None:
    # Given bob, a member; carol, a stranger; dave, who moderates another community
    alice, bob = await person(db, "alice"), await person(db, "bob")
    carol, dave = await person(db, "carol"), await person(db, "dave")
    community = await found(db, alice, membership=MembershipModel.APPROVAL)
    await found(db, dave, "chess")
    await communities.join(db, bob.id, community, answer="hi")
    await moderation.approve(db, alice.id, community, bob.id)
    await communities.join(db, carol.id, community, answer="let me in")
    thread = await post(db, bob, "A thread", community_ids=[community.id])
    forms = {
        f"/c/gardeners/requests/{carol.id}/approve": {},
        f"/c/gardeners/members/{carol.id}/ban": {"duration": ""},
        "/c/gardeners/bans": {"username": "carol", "duration": ""},
        "/c/gardeners/invites": {"expires_in": "3600"},
        f"/c/gardeners/posts/{thread.id}/remove": {"reason": "x"},
        f"/c/gardeners/posts/{thread.id}/pin": {},
        "/c/gardeners/edit": {"name": "Taken over"},
        f"/c/gardeners/members/{bob.id}/role": {"role": "moderator"},
    }
    for name in ("bob", "carol", "dave"):
        async with as_(settings, name) as b:
            # When they open each moderators' page and send each form with a valid token
            for section in MOD_PAGES:
                r = await b.get(f"/c/gardeners/{section}")
                assert r.status_code == 403, (name, section)
            for url, data in forms.items():
                r = await b.post(url, data)
                assert r.status_code == 403, (name, url, r.status_code)
    # Then nothing changed
    await db.refresh(community)
    assert community.name == "Gardeners"
    assert await member_row(db, community, carol) == ("pending", "member")
    assert await count(db, CommunityBan) == 0 and await count(db, CommunityInvite) == 0
    assert await log_actions(db, community) == [ModAction.APPROVE]
    # And anonymous visitors are sent to sign in
    async with browser(settings) as b:
        r = await b.get("/c/gardeners/members")
        assert r.status_code == 303 and "/auth/sign_in" in r.headers["location"]


async def test_csrf__forms_without_the_token_change_nothing(
    db: AsyncSession, settings: Settings
) -> None:
    alice, bob = await person(db, "alice"), await person(db, "bob")
    community = await found(db, alice)
    async with as_(settings, "bob") as b:
        b.csrf = "0" * 64
        assert (await b.post("/c/gardeners/join")).status_code == 403
        assert (await b.post("/communities", _new("other"))).status_code == 403
    async with as_(settings, "alice") as b:
        b.csrf = "0" * 64
        r = await b.post("/c/gardeners/bans", {"username": "bob", "duration": ""})
        assert r.status_code == 403
    assert await member_row(db, community, bob) is None
    assert await count(db, Community) == 1 and await count(db, CommunityBan) == 0


async def test_unknown_community_and_section__not_found(
    db: AsyncSession, settings: Settings
) -> None:
    alice = await person(db, "alice")
    await found(db, alice)
    async with as_(settings, "alice") as b:
        assert (await b.get("/c/nowhere")).status_code == 404
        assert (await b.get("/c/gardeners/secrets")).status_code == 404
        assert (await b.post("/c/gardeners/posts/1/explode")).status_code == 404
        r = await b.get("/c/GARDENERS")
        assert r.status_code == 303 and r.headers["location"] == "/c/gardeners"


# --- private communities -------------------------------------------------------------------


async def test_private__outsiders_see_the_card_only_members_see_posts_members_and_log(
    db: AsyncSession, settings: Settings
) -> None:
    alice, bob = await person(db, "alice"), await person(db, "bob")
    await person(db, "carol")
    community = await found(
        db,
        alice,
        membership=MembershipModel.PRIVATE,
        description="A quiet place",
        join_question="Who sent you?",
    )
    await communities.join(db, bob.id, community, answer="alice")
    await moderation.approve(db, alice.id, community, bob.id)
    await post(db, bob, "Members-only musing", community_ids=[community.id])
    for who in (None, "carol"):
        async with browser(settings) as b:
            if who:
                await b.sign_in(who)
            page = await b.get("/c/gardeners")
            assert page.status_code == 200
            # The card: name, description, how to join
            assert "A quiet place" in page.text and "only its members see its posts" in page.text
            if who:
                assert "Who sent you?" in page.text and "Have an invite code?" in page.text
            # Never the posts, the members or the log
            assert "Members-only musing" not in page.text
            assert "@bob" not in page.text and "Moderators" not in page.text
            assert (await b.get("/c/gardeners/log")).status_code == 404
    async with as_(settings, "bob") as b:
        page = (await b.get("/c/gardeners")).text
        assert "Members-only musing" in page and "Moderators" in page
        assert (await b.get("/c/gardeners/log")).status_code == 200


async def test_public_log__anyone_reads_an_open_communitys_log(
    db: AsyncSession, settings: Settings
) -> None:
    alice, bob = await person(db, "alice"), await person(db, "bob")
    community = await found(db, alice)
    await moderation.ban(db, alice.id, community, bob.id, reason="Rude")
    async with browser(settings) as b:
        page = (await b.get("/c/gardeners/log")).text
    assert "@alice" in page and "banned" in page and "@bob" in page and "Reason: Rude" in page


# --- posting and moderating posts ----------------------------------------------------------


async def test_post__a_member_posts_from_the_page_and_it_is_in_the_feed(
    db: AsyncSession, settings: Settings
) -> None:
    alice = await person(db, "alice")
    await person(db, "bob")
    community = await found(db, alice)
    async with as_(settings, "bob") as b:
        # Not a member yet: no composer, and posting is refused with nothing written
        assert "Post in Gardeners" not in (await b.get("/c/gardeners")).text
        r = await b.post("/c/gardeners/posts", {"status": "Sneaking in"})
        assert r.status_code == 422 and "join it first" in r.text
        assert await count(db, Post) == 0
        await b.post("/c/gardeners/join")
        # Followers-only is not an audience for a community post
        r = await b.post("/c/gardeners/posts", {"status": "Hi", "visibility": "private"})
        assert r.status_code == 422 and 'id="visibility-error"' in r.text
        r = await b.post("/c/gardeners/posts", {"status": "First sprouts!"})
        assert "notice=posted" in r.headers["location"]
        for sort in ("new", "active", "top"):
            page = (await b.get(f"/c/gardeners?sort={sort}")).text
            assert "First sprouts!" in page, sort
    assert await count(db, CommunityPost, CommunityPost.community_id == community.id) == 1


async def test_post__waits_for_approval_then_a_moderator_approves_it_once(
    db: AsyncSession, settings: Settings
) -> None:
    alice, bob = await person(db, "alice"), await person(db, "bob")
    community = await found(db, alice, post_approval=True)
    await communities.join(db, bob.id, community)
    async with as_(settings, "bob") as b:
        r = await b.post("/c/gardeners/posts", {"status": "Please approve me"})
        assert "notice=queued" in r.headers["location"]
    async with browser(settings) as b:
        assert "Please approve me" not in (await b.get("/c/gardeners")).text
    thread = await db.scalar(select(Post).where(Post.account_id == bob.id))
    assert thread is not None
    async with as_(settings, "alice") as b:
        assert "Please approve me" in (await b.get("/c/gardeners/queue")).text
        r = await b.post(f"/c/gardeners/posts/{thread.id}/approve")
        assert r.status_code == 303
        r = await b.post(f"/c/gardeners/posts/{thread.id}/approve")
        assert r.status_code == 422 and "not waiting for approval" in r.text
    async with browser(settings) as b:
        assert "Please approve me" in (await b.get("/c/gardeners")).text
    assert await log_actions(db, community) == [ModAction.APPROVE_POST]


async def test_moderate_post__remove_lock_pin_from_the_page_show_in_the_log(
    db: AsyncSession, settings: Settings
) -> None:
    alice, bob = await person(db, "alice"), await person(db, "bob")
    community = await found(db, alice)
    await communities.join(db, bob.id, community)
    keep = await post(db, bob, "Keep this one", community_ids=[community.id])
    spam = await post(db, bob, "Buy cheap pills", community_ids=[community.id])
    async with as_(settings, "alice") as b:
        page = (await b.get("/c/gardeners")).text
        assert "Remove from the community" in page
        await b.post(f"/c/gardeners/posts/{keep.id}/pin")
        await b.post(f"/c/gardeners/posts/{keep.id}/lock", {"reason": "Settled"})
        r = await b.post(f"/c/gardeners/posts/{spam.id}/remove", {"reason": "Spam"})
        assert r.status_code == 303
        log = (await b.get("/c/gardeners/log")).text
    async with as_(settings, "bob") as b:
        page = (await b.get("/c/gardeners")).text
        assert "Buy cheap pills" not in page  # his own post, but out of the feed
        assert "📌 Pinned" in page and "Locked" in page
        assert "Remove from the community" not in page  # no moderator tools for members
    assert "removed a post by" in log and "Reason: Spam" in log and "locked a thread" in log
    assert await log_actions(db, community) == [
        ModAction.PIN,
        ModAction.LOCK,
        ModAction.REMOVE_POST,
    ]


# --- icon and banner -----------------------------------------------------------------------


async def _upload(b: Browser, handle: str, kind: str, data: bytes) -> Any:
    return await b.client.post(
        f"/c/{handle}/edit/{kind}",
        data={"csrf_token": b.csrf},
        files={kind: ("photo.jpg", data, "image/jpeg")},
    )


async def test_icon_and_banner__stored_without_metadata_shown_and_removed(
    db: AsyncSession, settings: Settings
) -> None:
    alice = await person(db, "alice")
    community = await found(db, alice)
    async with as_(settings, "alice") as b:
        await b.get("/c/gardeners/edit")
        r = await _upload(b, "gardeners", "icon", jpeg_with_gps())
        assert r.status_code == 303
        r = await _upload(b, "gardeners", "banner", jpeg_with_gps((900, 300)))
        assert r.status_code == 303
        await db.refresh(community)
        assert community.icon_path and community.banner_path
        page = (await b.get("/c/gardeners")).text
        assert f"/media/{community.icon_path}" in page and f"/media/{community.banner_path}" in page
        served = await b.get(f"/media/{community.icon_path}")
        assert served.status_code == 200 and b"SpyCam" not in served.content
        with Image.open(io.BytesIO(served.content)) as img:
            assert img.size == (400, 400) and not img.getexif()
        # Not an image: a form error by the field, the old icon kept
        await b.get("/c/gardeners/edit")
        r = await _upload(b, "gardeners", "icon", b"not an image")
        assert r.status_code == 422 and 'id="icon-error"' in r.text
        old_icon = community.icon_path
        await db.refresh(community)
        assert community.icon_path == old_icon
        r = await b.post("/c/gardeners/edit/banner", {"remove": "on"})
        assert r.status_code == 303
    await db.refresh(community)
    assert community.banner_path is None
    assert storage.resolve(settings.effective_media_dir, old_icon) is not None
    assert await log_actions(db, community) == [ModAction.UPDATE] * 3


async def test_icon__a_member_cannot_change_it(db: AsyncSession, settings: Settings) -> None:
    alice, bob = await person(db, "alice"), await person(db, "bob")
    community = await found(db, alice)
    await communities.join(db, bob.id, community)
    async with as_(settings, "bob") as b:
        await b.get("/c/gardeners")
        r = await _upload(b, "gardeners", "icon", jpeg_with_gps())
        assert r.status_code == 403
    await db.refresh(community)
    assert community.icon_path is None
    assert not (settings.effective_media_dir / "community_icons").exists()


async def test_hostile_numbers_and_lengths__form_errors_never_500(
    db: AsyncSession, settings: Settings
) -> None:
    alice, bob = await person(db, "alice"), await person(db, "bob")
    community = await found(db, alice)
    await communities.join(db, bob.id, community)
    huge = "9" * 18
    async with as_(settings, "alice") as b:
        r = await b.post(f"/c/gardeners/members/{bob.id}/ban", {"duration": huge})
        assert r.status_code == 422 and 'id="duration-error"' in r.text
        r = await b.post(f"/c/gardeners/members/{bob.id}/ban", {"duration": "-5"})
        assert r.status_code == 422
        r = await b.post(
            f"/c/gardeners/members/{bob.id}/ban", {"duration": "", "reason": "x" * 1001}
        )
        assert r.status_code == 422 and 'id="reason-error"' in r.text
        r = await b.post("/c/gardeners/invites", {"expires_in": huge})
        assert r.status_code == 422 and 'id="expires_in-error"' in r.text
        r = await b.post("/c/gardeners/invites", {"expires_in": "", "max_uses": huge})
        assert r.status_code == 422 and 'id="max_uses-error"' in r.text
        for url in ("/communities?offset=99999", "/communities?offset=-1", "/c/gardeners?offset=x"):
            assert (await b.get(url)).status_code in (200, 422), url
        r = await b.get("/communities?q=" + "a" * 101)
        assert r.status_code == 422 and 'id="q-error"' in r.text
    assert await member_row(db, community, bob) == ("active", "member")
    assert await count(db, CommunityBan) == 0 and await count(db, CommunityInvite) == 0
