"""Micro-communities, first increment: founding, the four membership models, roles, bans,
invites, the moderation log, and the `kith community create` command."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from typer.testing import CliRunner

from kith.accounts import service as accounts
from kith.accounts.models import Account
from kith.communities import moderation, permissions
from kith.communities import service as communities
from kith.communities.models import (
    Community,
    CommunityBan,
    CommunityCreation,
    CommunityInvite,
    Membership,
    MembershipModel,
    ModAction,
    ModerationLogEntry,
    Role,
)
from kith.communities.permissions import CommunityAction
from kith.communities.service import CommunityChanges, CommunityInput
from kith.config import Settings, get_settings
from kith.db import utcnow
from kith.errors import Forbidden, NotFound, ValidationFailed
from tests.world import person


async def found(
    db: AsyncSession,
    owner: Account,
    handle: str = "gardeners",
    membership: MembershipModel = MembershipModel.OPEN,
    **fields: Any,
) -> Community:
    data = CommunityInput(name=fields.pop("name", "Gardeners"), membership=membership, **fields)
    return await communities.create_community(db, owner.id, handle, data)


async def state_of(db: AsyncSession, community: Community, who: Account) -> tuple[str, str] | None:
    """(state, role) as stored, read past the session's cache; None when not in."""
    row = (
        await db.execute(
            select(Membership.state, Membership.role).where(
                Membership.community_id == community.id, Membership.account_id == who.id
            )
        )
    ).first()
    return None if row is None else (row[0], row[1])


async def count(db: AsyncSession, model: Any, *where: Any) -> int:
    return int(await db.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def logged(db: AsyncSession, community: Community) -> list[str]:
    """The community's moderation log actions, oldest first."""
    rows = await db.scalars(
        select(ModerationLogEntry.action)
        .where(ModerationLogEntry.community_id == community.id)
        .order_by(ModerationLogEntry.id)
    )
    return list(rows)


@pytest.fixture
async def owner(db: AsyncSession) -> Account:
    await person(db, "root_admin", admin=True)  # the first account is the admin: not the owner
    return await person(db, "ivy")


# --- founding ------------------------------------------------------------------------------


async def test_create__owner_is_the_first_member_and_fields_are_kept(
    db: AsyncSession, owner: Account
) -> None:
    c = await found(
        db,
        owner,
        "Garden_Club",
        MembershipModel.APPROVAL,
        description="Seeds and soil",
        rules="Be kind.",
        topics=["#Gardening", "seeds", "gardening"],
        language="en",
        join_question="What do you grow?",
    )
    assert (c.handle, c.handle_key) == ("Garden_Club", "garden_club")
    assert c.topics == ["gardening", "seeds"]  # normalized, repeats dropped
    assert c.owner_id == owner.id
    assert await state_of(db, c, owner) == ("active", "owner")
    assert await communities.find_community(db, "@GARDEN_club") is not None


@pytest.mark.parametrize(
    ("handle", "fields", "field"),
    [
        ("GARDENERS", {}, "handle"),  # taken, whatever the case
        ("ivy", {}, "handle"),  # a person's username
        ("admin", {}, "handle"),  # reserved
        ("no spaces", {}, "handle"),
        ("roses", {"rules": "x" * (communities.MAX_RULES + 1)}, "rules"),
        ("roses", {"name": "  "}, "name"),
        ("roses", {"membership": "secret"}, "membership"),
        ("roses", {"topics": ["not a tag!"]}, "topics"),
        ("roses", {"topics": [f"t{i}" for i in range(11)]}, "topics"),
        ("roses", {"language": "english!"}, "language"),
    ],
)
async def test_create__bad_input_is_refused_with_nothing_written(
    db: AsyncSession, owner: Account, handle: str, fields: dict[str, Any], field: str
) -> None:
    # Given one community
    await found(db, owner, "gardeners")
    # When another is founded with bad input
    with pytest.raises(ValidationFailed) as err:
        await found(db, owner, handle, **fields)
    # Then the error names the field, and there is still only the first community
    assert err.value.field == field
    assert await count(db, Community) == 1
    assert await count(db, Membership) == 1


async def test_sign_up__a_username_cannot_take_a_community_handle(
    db: AsyncSession, owner: Account
) -> None:
    await found(db, owner, "Gardeners")
    with pytest.raises(ValidationFailed) as err:
        await person(db, "gardeners")
    assert err.value.field == "username"
    assert await accounts.find_local_account(db, "gardeners") is None


async def test_create__instance_may_keep_founding_to_admins(
    db: AsyncSession, owner: Account
) -> None:
    admin = await accounts.find_local_account(db, "root_admin")
    assert admin is not None
    (await accounts.get_instance_settings(db)).community_creation = CommunityCreation.ADMINS
    await db.commit()
    with pytest.raises(Forbidden):
        await found(db, owner, "gardeners")
    assert await count(db, Community) == 0
    assert (await found(db, admin, "gardeners")).owner_id == admin.id
    # An operator (the CLI) may found one for anybody
    data = CommunityInput(name="Roses")
    made = await communities.create_community(db, owner.id, "roses", data, operator=True)
    assert made.owner_id == owner.id


# --- the four membership models ------------------------------------------------------------


async def test_open__anyone_joins_at_once_and_may_post(db: AsyncSession, owner: Account) -> None:
    c = await found(db, owner)
    ash = await person(db, "ash")
    assert not await permissions.can_post(db, ash.id, c)
    await communities.join(db, ash.id, c)
    assert await state_of(db, c, ash) == ("active", "member")
    assert await permissions.can_post(db, ash.id, c)
    # Joining again changes nothing
    await communities.join(db, ash.id, c)
    assert await count(db, Membership, Membership.community_id == c.id) == 2


async def test_approval__request_waits_with_its_answer_until_a_moderator_approves(
    db: AsyncSession, owner: Account
) -> None:
    c = await found(db, owner, membership=MembershipModel.APPROVAL, join_question="Why?")
    ash = await person(db, "ash")
    # When ash asks without answering the question, nothing is recorded
    with pytest.raises(ValidationFailed) as err:
        await communities.join(db, ash.id, c)
    assert err.value.field == "answer" and await state_of(db, c, ash) is None
    # With an answer, ash waits, and may not post yet
    row = await communities.join(db, ash.id, c, answer="I grow beans")
    assert (row.answer, await state_of(db, c, ash)) == ("I grow beans", ("pending", "member"))
    assert not await permissions.can_post(db, ash.id, c)
    # The owner approves: ash is in, and the log says so
    await moderation.approve(db, owner.id, c, ash.id)
    assert await state_of(db, c, ash) == ("active", "member")
    assert await permissions.can_post(db, ash.id, c)
    assert await logged(db, c) == [ModAction.APPROVE]


async def test_approval__approving_twice_is_a_clear_error_that_changes_nothing(
    db: AsyncSession, owner: Account
) -> None:
    c = await found(db, owner, membership=MembershipModel.APPROVAL)
    ash = await person(db, "ash")
    await communities.join(db, ash.id, c)
    await moderation.approve(db, owner.id, c, ash.id)
    with pytest.raises(ValidationFailed, match="already a member"):
        await moderation.approve(db, owner.id, c, ash.id)
    assert await state_of(db, c, ash) == ("active", "member")
    assert await logged(db, c) == [ModAction.APPROVE]


async def test_approval__a_rejected_request_is_gone_and_logged_with_its_reason(
    db: AsyncSession, owner: Account
) -> None:
    c = await found(db, owner, membership=MembershipModel.APPROVAL)
    ash = await person(db, "ash")
    await communities.join(db, ash.id, c)
    await moderation.reject(db, owner.id, c, ash.id, reason="Off topic")
    assert await state_of(db, c, ash) is None
    entry = (await moderation.log_entries(db, c))[0]
    assert (entry.action, entry.target_account_id, entry.reason) == ("reject", ash.id, "Off topic")
    with pytest.raises(NotFound):
        await moderation.approve(db, owner.id, c, ash.id)


async def test_invite__only_a_valid_code_lets_people_in(db: AsyncSession, owner: Account) -> None:
    c = await found(db, owner, membership=MembershipModel.INVITE)
    ash = await person(db, "ash")
    invite, code = await communities.create_invite(db, owner.id, c, max_uses=2)
    # Only the hash of the code is stored
    assert invite.code_hash == hashlib.sha256(code.encode()).hexdigest() != code
    for wrong in (None, "", "not-the-code", code[:-1]):
        with pytest.raises(ValidationFailed) as err:
            await communities.join(db, ash.id, c, invite_code=wrong)
        assert err.value.field == "invite_code"
    assert await state_of(db, c, ash) is None
    await communities.join(db, ash.id, c, invite_code=code)
    assert await state_of(db, c, ash) == ("active", "member")
    assert await db.scalar(select(CommunityInvite.uses)) == 1


async def test_invite__a_code_of_another_community_does_not_work(
    db: AsyncSession, owner: Account
) -> None:
    a = await found(db, owner, "alpha", MembershipModel.INVITE)
    b = await found(db, owner, "beta", MembershipModel.INVITE)
    ash = await person(db, "ash")
    _, code = await communities.create_invite(db, owner.id, a)
    with pytest.raises(ValidationFailed):
        await communities.join(db, ash.id, b, invite_code=code)
    assert await state_of(db, b, ash) is None


async def test_invite__used_up_or_expired_codes_are_refused_and_not_counted(
    db: AsyncSession, owner: Account
) -> None:
    c = await found(db, owner, membership=MembershipModel.INVITE)
    ash, bo, cy = await person(db, "ash"), await person(db, "bo"), await person(db, "cy")
    single, single_code = await communities.create_invite(db, owner.id, c, max_uses=1)
    await communities.join(db, ash.id, c, invite_code=single_code)
    # Used up
    with pytest.raises(ValidationFailed, match="used up"):
        await communities.join(db, bo.id, c, invite_code=single_code)
    assert await state_of(db, c, bo) is None
    assert await db.scalar(select(CommunityInvite.uses).where(CommunityInvite.id == single.id)) == 1
    # Expired
    old, old_code = await communities.create_invite(db, owner.id, c)
    await db.execute(
        update(CommunityInvite)
        .where(CommunityInvite.id == old.id)
        .values(expires_at=utcnow() - timedelta(seconds=1))
    )
    await db.commit()
    with pytest.raises(ValidationFailed, match="expired"):
        await communities.join(db, cy.id, c, invite_code=old_code)
    assert await state_of(db, c, cy) is None
    assert await db.scalar(select(CommunityInvite.uses).where(CommunityInvite.id == old.id)) == 0


@pytest.mark.parametrize(
    ("expires_in", "max_uses"), [(timedelta(seconds=5), None), (None, 0), (None, 10_001)]
)
async def test_invite__out_of_range_limits_are_refused(
    db: AsyncSession, owner: Account, expires_in: timedelta | None, max_uses: int | None
) -> None:
    c = await found(db, owner, membership=MembershipModel.INVITE)
    with pytest.raises(ValidationFailed):
        await communities.create_invite(db, owner.id, c, expires_in=expires_in, max_uses=max_uses)
    assert await count(db, CommunityInvite) == 0 and await logged(db, c) == []


async def test_private__joins_by_invite_at_once_or_by_request(
    db: AsyncSession, owner: Account
) -> None:
    c = await found(db, owner, membership=MembershipModel.PRIVATE, join_question="Who sent you?")
    ash, bo = await person(db, "ash"), await person(db, "bo")
    _, code = await communities.create_invite(db, owner.id, c)
    await communities.join(db, ash.id, c, invite_code=code)
    await communities.join(db, bo.id, c, answer="ash did")
    assert await state_of(db, c, ash) == ("active", "member")
    assert await state_of(db, c, bo) == ("pending", "member")


# --- roles ---------------------------------------------------------------------------------


async def test_member__cannot_moderate_invite_edit_or_manage_roles(
    db: AsyncSession, owner: Account
) -> None:
    c = await found(db, owner, membership=MembershipModel.APPROVAL)
    ash, bo = await person(db, "ash"), await person(db, "bo")
    await communities.join(db, ash.id, c)
    await moderation.approve(db, owner.id, c, ash.id)
    await communities.join(db, bo.id, c)
    refused = [
        moderation.approve(db, ash.id, c, bo.id),
        moderation.reject(db, ash.id, c, bo.id),
        moderation.ban(db, ash.id, c, bo.id),
        communities.create_invite(db, ash.id, c),
        communities.update_community(db, ash.id, c, CommunityChanges(name="Mine now")),
        moderation.set_role(db, ash.id, c, ash.id, Role.MODERATOR),
    ]
    for attempt in refused:
        with pytest.raises(Forbidden):
            await attempt
    assert await state_of(db, c, bo) == ("pending", "member")
    assert (await communities.get_community(db, c.id)).name == "Gardeners"
    assert await count(db, CommunityBan) == 0 and await count(db, CommunityInvite) == 0
    assert await logged(db, c) == [ModAction.APPROVE]


async def test_moderator__moderates_but_cannot_ban_the_owner_or_another_moderator(
    db: AsyncSession, owner: Account
) -> None:
    c = await found(db, owner)
    mod, mod2, ash = await person(db, "fern"), await person(db, "moss"), await person(db, "ash")
    for who in (mod, mod2, ash):
        await communities.join(db, who.id, c)
    await moderation.set_role(db, owner.id, c, mod.id, Role.MODERATOR)
    await moderation.set_role(db, owner.id, c, mod2.id, Role.MODERATOR)
    # A moderator edits the community and bans a member
    assert await communities.update_community(
        db, mod.id, c, CommunityChanges(rules="No spam.")
    ) == ["rules"]
    await moderation.ban(db, mod.id, c, ash.id, reason="spam")
    # … but not the owner, nor another moderator, nor set roles
    for target in (owner, mod2):
        with pytest.raises(Forbidden):
            await moderation.ban(db, mod.id, c, target.id)
    with pytest.raises(Forbidden):
        await moderation.set_role(db, mod.id, c, mod2.id, Role.MEMBER)
    assert await state_of(db, c, owner) == ("active", "owner")
    assert await state_of(db, c, mod2) == ("active", "moderator")
    # The owner may ban a moderator
    await moderation.ban(db, owner.id, c, mod2.id)
    assert await state_of(db, c, mod2) is None


async def test_moderator_of_one_community__has_no_power_in_another(
    db: AsyncSession, owner: Account
) -> None:
    a = await found(db, owner, "alpha")
    b = await found(db, owner, "beta", MembershipModel.APPROVAL)
    mod, ash = await person(db, "fern"), await person(db, "ash")
    await communities.join(db, mod.id, a)
    await moderation.set_role(db, owner.id, a, mod.id, Role.MODERATOR)
    await communities.join(db, mod.id, b)
    await moderation.approve(db, owner.id, b, mod.id)  # a plain member of beta
    await communities.join(db, ash.id, b)
    assert await permissions.can(db, mod.id, a, CommunityAction.MODERATE)
    assert not await permissions.can(db, mod.id, b, CommunityAction.MODERATE)
    for attempt in (
        moderation.approve(db, mod.id, b, ash.id),
        moderation.ban(db, mod.id, b, ash.id),
        communities.create_invite(db, mod.id, b),
        communities.update_community(db, mod.id, b, CommunityChanges(rules="mine")),
    ):
        with pytest.raises(Forbidden):
            await attempt
    assert await state_of(db, b, ash) == ("pending", "member")
    assert await logged(db, b) == [ModAction.APPROVE]


async def test_roles__same_role_twice_or_owner_role_is_refused(
    db: AsyncSession, owner: Account
) -> None:
    c = await found(db, owner)
    ash = await person(db, "ash")
    await communities.join(db, ash.id, c)
    with pytest.raises(ValidationFailed):
        await moderation.set_role(db, owner.id, c, ash.id, Role.MEMBER)
    with pytest.raises(ValidationFailed):
        await moderation.set_role(db, owner.id, c, ash.id, Role.OWNER)
    assert await logged(db, c) == []


async def test_owner__cannot_leave_until_ownership_is_handed_over(
    db: AsyncSession, owner: Account
) -> None:
    c = await found(db, owner)
    ash = await person(db, "ash")
    await communities.join(db, ash.id, c)
    with pytest.raises(ValidationFailed):
        await communities.leave(db, owner.id, c)
    assert await state_of(db, c, owner) == ("active", "owner")
    # When the owner hands over to ash
    await moderation.transfer_ownership(db, owner.id, c, ash.id)
    # Then ash owns it (and can't leave), and the old owner stays as a moderator, free to go
    assert (await communities.get_community(db, c.id)).owner_id == ash.id
    assert await state_of(db, c, ash) == ("active", "owner")
    assert await state_of(db, c, owner) == ("active", "moderator")
    assert not await permissions.can(db, owner.id, c, CommunityAction.MANAGE_ROLES)
    with pytest.raises(ValidationFailed):
        await communities.leave(db, ash.id, c)
    await communities.leave(db, owner.id, c)
    assert await state_of(db, c, owner) is None
    assert await logged(db, c) == [ModAction.TRANSFER_OWNERSHIP]


# --- bans ----------------------------------------------------------------------------------


async def test_ban__removes_the_member_who_then_cannot_post_or_rejoin(
    db: AsyncSession, owner: Account
) -> None:
    c = await found(db, owner)
    ash = await person(db, "ash")
    await communities.join(db, ash.id, c)
    ban = await moderation.ban(db, owner.id, c, ash.id, duration=timedelta(days=7), reason="spam")
    assert ban.until is not None and ban.reason == "spam" and ban.by_id == owner.id
    assert await state_of(db, c, ash) is None
    assert not await permissions.can_post(db, ash.id, c)
    with pytest.raises(Forbidden, match="banned"):
        await communities.join(db, ash.id, c)
    assert await state_of(db, c, ash) is None
    # Unbanned, ash may join again (nothing is restored by itself)
    await moderation.unban(db, owner.id, c, ash.id)
    await communities.join(db, ash.id, c)
    assert await state_of(db, c, ash) == ("active", "member")
    assert await logged(db, c) == [ModAction.BAN, ModAction.UNBAN]


async def test_ban__a_banned_request_cannot_be_approved(db: AsyncSession, owner: Account) -> None:
    c = await found(db, owner, membership=MembershipModel.APPROVAL)
    ash = await person(db, "ash")
    await communities.join(db, ash.id, c)
    await moderation.ban(db, owner.id, c, ash.id)
    with pytest.raises((NotFound, Forbidden)):
        await moderation.approve(db, owner.id, c, ash.id)
    # Even a request left behind (say, written by an older version) is not let in
    db.add(Membership(community_id=c.id, account_id=ash.id, state="pending"))
    await db.commit()
    with pytest.raises(Forbidden, match="banned"):
        await moderation.approve(db, owner.id, c, ash.id)
    assert await state_of(db, c, ash) == ("pending", "member")
    assert await logged(db, c) == [ModAction.BAN]


async def test_ban__ends_when_its_time_is_up(db: AsyncSession, owner: Account) -> None:
    c = await found(db, owner)
    ash = await person(db, "ash")
    await moderation.ban(db, owner.id, c, ash.id, duration=timedelta(hours=1))
    await db.execute(update(CommunityBan).values(until=utcnow() - timedelta(seconds=1)))
    await db.commit()
    await communities.join(db, ash.id, c)
    assert await permissions.can_post(db, ash.id, c)
    with pytest.raises(ValidationFailed, match="not banned"):
        await moderation.unban(db, owner.id, c, ash.id)


@pytest.mark.parametrize(("duration", "reason"), [(timedelta(seconds=1), ""), (None, "x" * 1001)])
async def test_ban__bad_duration_or_reason_changes_nothing(
    db: AsyncSession, owner: Account, duration: timedelta | None, reason: str
) -> None:
    c = await found(db, owner)
    ash = await person(db, "ash")
    await communities.join(db, ash.id, c)
    with pytest.raises(ValidationFailed):
        await moderation.ban(db, owner.id, c, ash.id, duration=duration, reason=reason)
    assert await state_of(db, c, ash) == ("active", "member")
    assert await count(db, CommunityBan) == 0 and await logged(db, c) == []


async def test_suspended_account__has_no_power_in_any_community(
    db: AsyncSession, owner: Account
) -> None:
    c = await found(db, owner)
    owner.suspended_at = utcnow()
    await db.commit()
    assert not await permissions.can_post(db, owner.id, c)
    assert not await permissions.can(db, owner.id, c, CommunityAction.MODERATE)


# --- the moderation log --------------------------------------------------------------------


async def test_every_moderation_action__is_logged_with_actor_and_target(
    db: AsyncSession, owner: Account
) -> None:
    c = await found(db, owner, membership=MembershipModel.APPROVAL)
    ash, bo = await person(db, "ash"), await person(db, "bo")
    await communities.update_community(
        db, owner.id, c, CommunityChanges(rules="Be kind.", name="Gardeners"), reason="tidy"
    )
    await communities.create_invite(db, owner.id, c, max_uses=5)
    await communities.join(db, ash.id, c)
    await moderation.approve(db, owner.id, c, ash.id)
    await communities.join(db, bo.id, c)
    await moderation.reject(db, owner.id, c, bo.id)
    await moderation.ban(db, owner.id, c, bo.id, reason="rude")
    await moderation.unban(db, owner.id, c, bo.id)
    await moderation.set_role(db, owner.id, c, ash.id, Role.MODERATOR)
    await moderation.set_role(db, owner.id, c, ash.id, Role.MEMBER)
    await moderation.transfer_ownership(db, owner.id, c, ash.id)
    assert await logged(db, c) == [
        ModAction.UPDATE,
        ModAction.CREATE_INVITE,
        ModAction.APPROVE,
        ModAction.REJECT,
        ModAction.BAN,
        ModAction.UNBAN,
        ModAction.MAKE_MODERATOR,
        ModAction.REMOVE_MODERATOR,
        ModAction.TRANSFER_OWNERSHIP,
    ]
    newest = await moderation.log_entries(db, c)
    assert all(e.actor_id == owner.id for e in newest)
    update_entry = newest[-1]
    assert (update_entry.detail, update_entry.reason) == ("changed rules", "tidy")
    ban_entry = next(e for e in newest if e.action == ModAction.BAN)
    assert (ban_entry.target_account_id, ban_entry.reason, ban_entry.detail) == (
        bo.id,
        "rude",
        "for good",
    )


# --- command line --------------------------------------------------------------------------


def test_cli__community_create(
    settings: Settings, rt: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kith.cli import app

    monkeypatch.setenv("KITH_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("KITH_DOMAIN", settings.domain)
    monkeypatch.setenv("KITH_VAR_DIR", str(settings.var_dir))
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        r = runner.invoke(
            app,
            [
                "user",
                "create",
                "ivy",
                "--email",
                "ivy@example.test",
                "--password",
                "pw-long-enough-1",
            ],
        )
        assert r.exit_code == 0, r.output
        args = ["community", "create", "Gardeners", "--name", "Gardeners", "--owner", "ivy"]
        r = runner.invoke(app, [*args, "--membership", "approval"])
        assert r.exit_code == 0, r.output
        assert "created community @Gardeners (approval), owned by @ivy" in r.output
        r = runner.invoke(app, args)
        assert r.exit_code == 2 and "handle: This name is taken." in r.output
        r = runner.invoke(app, ["community", "create", "roses", "--name", "R", "--owner", "nobody"])
        assert r.exit_code == 2 and "no local account named nobody" in r.output
        r = runner.invoke(
            app,
            ["community", "create", "roses", "--name", "R", "--owner", "ivy", "--membership", "x"],
        )
        assert r.exit_code == 2 and "membership" in r.output
    finally:
        get_settings.cache_clear()
