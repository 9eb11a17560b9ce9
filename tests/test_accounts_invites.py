"""Invite links: who may make them, signing up with one, limits, expiry and revoking."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from kith.accounts import invites
from kith.accounts import service as accounts
from kith.accounts.models import Invite, RegistrationMode, User
from kith.db import utcnow
from kith.errors import Forbidden, NotFound, ValidationFailed
from kith.runtime import Runtime
from tests.world import PASSWORD, Browser, browser, person

LINK_RE = re.compile(r'value="http://kith\.test/auth/sign_up\?invite=([A-Za-z0-9_-]+)"')


async def set_mode(rt: Runtime, mode: RegistrationMode) -> None:
    async with rt.sessions() as db:
        (await accounts.get_instance_settings(db)).registration_mode = mode
        await db.commit()


async def make_invite(b: Browser, **form: str) -> str:
    await b.get("/settings/invites")
    r = await b.post("/settings/invites", form)
    assert r.status_code == 303, r.text
    page = await b.get("/settings/invites")
    codes = LINK_RE.findall(page.text)
    assert codes, page.text
    return codes[0]


async def sign_up_with(settings, name: str, code: str):  # type: ignore[no-untyped-def]
    async with browser(settings) as b:
        page = await b.get(f"/auth/sign_up?invite={code}")
        assert f'value="{code}"' in page.text  # the form carries the code along
        return await b.post(
            "/auth/sign_up",
            {
                "username": name,
                "email": f"{name}@example.test",
                "password": PASSWORD,
                "password_confirmation": PASSWORD,
                "invite": code,
                "agreement": "on",
            },
        )


async def test_invite_only_instance__a_member_invites_a_friend_who_joins(settings, rt, db) -> None:  # type: ignore[no-untyped-def]
    # Given an invite-only instance and a member
    await person(db, "root_admin", admin=True)
    await person(db, "wren")
    await set_mode(rt, RegistrationMode.INVITE)
    async with browser(settings) as wren:
        await wren.sign_in("wren")
        # When wren makes a single-use link and a friend signs up with it
        code = await make_invite(wren, max_uses="1")
        r = await sign_up_with(settings, "robin", code)
        # Then the friend is in, and the link shows it was used up
        assert r.status_code == 303 and r.headers["location"] == "/home"
        page = await wren.get("/settings/invites")
        assert "1 of 1" in page.text and "no longer works" in page.text
    async with rt.sessions() as s:
        robin = await s.scalar(select(User).where(User.email_key == "robin@example.test"))
        invite = await s.scalar(select(Invite))
        assert robin is not None and invite is not None and robin.invite_id == invite.id
    # And a second person cannot use it
    r = await sign_up_with(settings, "jay", code)
    assert r.status_code == 422 and "not valid any more" in r.text


async def test_open_instance__only_admins_may_invite(settings, rt, db) -> None:  # type: ignore[no-untyped-def]
    await person(db, "boss", admin=True)
    await person(db, "wren")
    async with browser(settings) as wren:
        await wren.sign_in("wren")
        page = await wren.get("/settings/invites")
        assert "Only admins can make invite links" in page.text
        r = await wren.post("/settings/invites", {})
        assert r.status_code == 403
    async with browser(settings) as boss:
        await boss.sign_in("boss")
        assert await make_invite(boss)


async def test_expired_invite__is_refused(settings, rt, db) -> None:  # type: ignore[no-untyped-def]
    await person(db, "boss", admin=True)
    await set_mode(rt, RegistrationMode.INVITE)
    async with browser(settings) as boss:
        await boss.sign_in("boss")
        code = await make_invite(boss, expires_in="1800")
    async with rt.sessions() as s:
        await s.execute(update(Invite).values(expires_at=utcnow() - timedelta(seconds=1)))
        await s.commit()
    r = await sign_up_with(settings, "robin", code)
    assert r.status_code == 422 and "not valid any more" in r.text


async def test_revoked_invite__stops_working_and_only_its_maker_or_an_admin_may_revoke(
    settings, rt, db
) -> None:  # type: ignore[no-untyped-def]
    await person(db, "boss", admin=True)
    await person(db, "wren")
    await person(db, "mallory")
    await set_mode(rt, RegistrationMode.INVITE)
    async with browser(settings) as wren:
        await wren.sign_in("wren")
        code = await make_invite(wren)
    async with rt.sessions() as s:
        invite = await s.scalar(select(Invite))
        assert invite is not None
    # Someone else cannot revoke it (nor learn that it exists)
    async with browser(settings) as mallory:
        await mallory.sign_in("mallory")
        assert "invite=" not in (await mallory.get("/settings/invites")).text
        r = await mallory.post(f"/settings/invites/{invite.id}/revoke")
        assert r.status_code == 404
    assert (await sign_up_with(settings, "robin", code)).status_code == 303
    # Its maker can
    async with browser(settings) as wren:
        await wren.sign_in("wren")
        await wren.get("/settings/invites")
        r = await wren.post(f"/settings/invites/{invite.id}/revoke")
        assert r.status_code == 303
    r = await sign_up_with(settings, "jay", code)
    assert r.status_code == 422


async def test_create_invite__out_of_range_limits_are_refused(db) -> None:  # type: ignore[no-untyped-def]
    account = await person(db, "boss", admin=True)
    user = await db.scalar(select(User).where(User.account_id == account.id))
    with pytest.raises(ValidationFailed) as err:
        await invites.create_invite(db, user, expires_in=5)
    assert err.value.field == "expires_in"
    with pytest.raises(ValidationFailed) as err:
        await invites.create_invite(db, user, max_uses=0)
    assert err.value.field == "max_uses"


async def test_create_invite__a_pending_member_may_not_invite(db) -> None:  # type: ignore[no-untyped-def]
    await person(db, "boss", admin=True)
    instance = await accounts.get_instance_settings(db)
    instance.registration_mode = RegistrationMode.APPROVAL
    await db.commit()
    reg = await accounts.register(db, username="newbie", email="n@example.test", password=PASSWORD)
    assert reg.needs_approval
    instance.registration_mode = RegistrationMode.INVITE
    await db.commit()
    with pytest.raises(Forbidden):
        await invites.create_invite(db, reg.user)
    with pytest.raises(NotFound):
        await invites.revoke_invite(db, reg.user, 12345)


async def test_invite__skips_approval_on_an_approval_instance(settings, rt, db) -> None:  # type: ignore[no-untyped-def]
    await person(db, "boss", admin=True)
    await set_mode(rt, RegistrationMode.APPROVAL)
    async with browser(settings) as boss:
        await boss.sign_in("boss")
        code = await make_invite(boss)
    r = await sign_up_with(settings, "robin", code)
    assert r.status_code == 303 and r.headers["location"] == "/home"
