"""Email confirmation, password reset by mail, and password and email changes in settings.

Mail goes through the real job queue: the tests run the worker once and read the .eml files
it wrote (no SMTP is configured)."""

from __future__ import annotations

import email
import re
from datetime import timedelta
from email.message import Message
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from kith.accounts import credentials, email_tokens
from kith.accounts import service as accounts
from kith.accounts.models import EmailToken, User, UserSession
from kith.config import Settings
from kith.db import utcnow
from kith.errors import ValidationFailed
from kith.jobs.worker import run_once
from kith.posts.models import Post
from kith.runtime import Runtime
from tests.world import PASSWORD, Browser, browser, person

NEW_PASSWORD = "a brand new sturdy phrase"
LINK_RE = re.compile(r"http://kith\.test(/auth/[a-z/_]+\?token=[A-Za-z0-9_-]+)")


def read_mail_dir(folder: Path) -> list[Message]:
    """Every mail written to the folder, oldest first (file names are time-sortable ids)."""
    files = sorted(folder.glob("*.eml"), key=lambda p: int(p.stem)) if folder.exists() else []
    return [email.message_from_bytes(p.read_bytes()) for p in files]


async def mails_to(rt: Runtime, settings: Settings, address: str) -> list[Message]:
    """Run the queued jobs, then every mail written for `address`, oldest first."""
    while await run_once(rt.sessions, "test"):
        pass
    return [m for m in read_mail_dir(settings.effective_mail_dir) if m["To"] == address]


def link_in(message: Message) -> str:
    """The site-relative link a mail carries."""
    body = message.get_payload(decode=True)
    assert isinstance(body, bytes)
    match = LINK_RE.search(body.decode())
    assert match, body
    return match.group(1)


async def sign_up(b: Browser, name: str) -> None:
    await b.get("/auth/sign_up")
    r = await b.post(
        "/auth/sign_up",
        {
            "username": name,
            "email": f"{name}@example.test",
            "password": PASSWORD,
            "password_confirmation": PASSWORD,
            "agreement": "on",
        },
    )
    assert r.status_code == 303, r.text
    await b.get("/home")


async def user_named(rt: Runtime, name: str) -> User:
    async with rt.sessions() as db:
        user = await db.scalar(select(User).where(User.email_key == f"{name}@example.test"))
        assert user is not None
        return user


async def require_confirmation(rt: Runtime) -> None:
    async with rt.sessions() as db:
        instance = await accounts.get_instance_settings(db)
        instance.require_email_confirmation = True
        await db.commit()


# --- confirmation ------------------------------------------------------------------------


async def test_sign_up__mails_a_confirmation_link_that_confirms_the_address(
    settings, rt, app_client
) -> None:  # type: ignore[no-untyped-def]
    # Given someone who just signed up
    await sign_up(app_client, "wren")
    assert (await user_named(rt, "wren")).email_confirmed_at is None
    # When they open the link from the mail the worker sent
    [mail] = await mails_to(rt, settings, "wren@example.test")
    assert "Confirm" in mail["Subject"]
    r = await app_client.get(link_in(mail))
    # Then the address is confirmed
    assert r.status_code == 200 and "Address confirmed" in r.text
    assert (await user_named(rt, "wren")).email_confirmed_at is not None
    # And the database never held the token itself, only its hash
    async with rt.sessions() as db:
        stored = (await db.scalars(select(EmailToken.token_hash))).all()
    token = link_in(mail).split("token=")[1]
    assert token not in stored and email_tokens.token_hash(token) in stored


async def test_confirmation_link__works_only_once(settings, rt, app_client) -> None:  # type: ignore[no-untyped-def]
    await sign_up(app_client, "wren")
    [mail] = await mails_to(rt, settings, "wren@example.test")
    assert (await app_client.get(link_in(mail))).status_code == 200
    # When the same link is opened again
    r = await app_client.get(link_in(mail))
    # Then it is refused with a way forward
    assert r.status_code == 400 and "invalid or has expired" in r.text


async def test_confirmation_link__expired_after_a_day_is_refused(settings, rt, app_client) -> None:  # type: ignore[no-untyped-def]
    await sign_up(app_client, "wren")
    [mail] = await mails_to(rt, settings, "wren@example.test")
    # Given the link is 25 hours old
    async with rt.sessions() as db:
        await db.execute(update(EmailToken).values(expires_at=utcnow() - timedelta(hours=1)))
        await db.commit()
    r = await app_client.get(link_in(mail))
    assert r.status_code == 400
    assert (await user_named(rt, "wren")).email_confirmed_at is None


async def test_unconfirmed_member__can_sign_in_but_not_post_until_confirmed(
    settings, rt, app_client
) -> None:  # type: ignore[no-untyped-def]
    # Given an instance that requires confirmed addresses, and a member who has not confirmed
    await sign_up(app_client, "wren")
    await require_confirmation(rt)
    home = await app_client.get("/home")
    assert home.status_code == 200 and "Confirm your email address" in home.text
    # When they post, Then they are told why not, their text is kept and nothing is posted
    r = await app_client.post("/posts", {"status": "first!", "visibility": "public"})
    assert r.status_code == 422
    assert "Confirm your email address before posting" in r.text and "first!" in r.text
    async with rt.sessions() as db:
        assert await db.scalar(select(func.count()).select_from(Post)) == 0
    # When they confirm, Then they can post
    [mail] = await mails_to(rt, settings, "wren@example.test")
    await app_client.get(link_in(mail))
    r = await app_client.post("/posts", {"status": "first!", "visibility": "public"})
    assert r.status_code == 303


async def test_require_confirmed__is_a_no_op_when_the_instance_does_not_ask(db) -> None:  # type: ignore[no-untyped-def]
    reg = await accounts.register(db, username="wren", email="wren@example.test", password=PASSWORD)
    await accounts.require_confirmed(db, reg.user)  # default: confirmation not required
    (await accounts.get_instance_settings(db)).require_email_confirmation = True
    await db.commit()
    with pytest.raises(accounts.EmailNotConfirmed):
        await accounts.require_confirmed(db, reg.user)


async def test_resend_confirmation__sends_a_new_link_and_is_throttled(
    settings, rt, app_client
) -> None:  # type: ignore[no-untyped-def]
    await sign_up(app_client, "wren")
    await app_client.get("/settings/account")
    r = await app_client.post("/settings/account/confirmation")
    assert r.status_code == 303
    assert len(await mails_to(rt, settings, "wren@example.test")) == 2
    # Three mails an hour per address at most (the sign-up mail was not counted by the throttle)
    await app_client.post("/settings/account/confirmation")
    await app_client.post("/settings/account/confirmation")
    r = await app_client.post("/settings/account/confirmation")
    assert r.status_code == 429 and "Try again" in r.text


# --- password reset ----------------------------------------------------------------------


async def ask_reset(b: Browser, address: str) -> str:
    await b.get("/auth/password/forgot")
    r = await b.post("/auth/password/forgot", {"email": address})
    assert r.status_code == 200, r.text
    return r.text


async def test_forgot_password__answers_the_same_for_unknown_addresses(
    settings, rt, db, app_client
) -> None:  # type: ignore[no-untyped-def]
    await person(db, "wren")
    # When someone asks for a known and an unknown address
    known = await ask_reset(app_client, "WREN@example.test")
    unknown = await ask_reset(app_client, "nobody@example.test")
    # Then the pages say the same thing, and only the known address gets a mail
    strip = re.compile(r'name="csrf_token" value="[0-9a-f]+"|content="[0-9a-f]{64}"')
    assert strip.sub("", known) == strip.sub("", unknown)
    assert "if an account uses that address" in known.lower()
    assert len(await mails_to(rt, settings, "wren@example.test")) == 1
    assert await mails_to(rt, settings, "nobody@example.test") == []


async def test_password_reset__sets_the_password_and_signs_out_everywhere(settings, rt, db) -> None:  # type: ignore[no-untyped-def]
    # Given wren is signed in on one browser and forgot the password on another
    await person(db, "wren")
    async with browser(settings) as laptop, browser(settings) as phone:
        await laptop.sign_in("wren")
        assert (await laptop.get("/home")).status_code == 200
        await ask_reset(phone, "wren@example.test")
        [mail] = await mails_to(rt, settings, "wren@example.test")
        # When they follow the link and choose a new password
        page = await phone.get(link_in(mail))
        assert page.status_code == 200 and "Choose a new password" in page.text
        token = link_in(mail).split("token=")[1]
        r = await phone.post(
            "/auth/password/reset",
            {"token": token, "password": NEW_PASSWORD, "password_confirmation": NEW_PASSWORD},
        )
        assert r.status_code == 303 and r.headers["location"] == "/auth/sign_in?notice=reset"
        # Then the laptop is signed out, the old password fails and the new one works
        assert (await laptop.get("/home")).headers.get("location", "").startswith("/auth/sign_in")
        assert (await phone.sign_in("wren")).status_code == 422
        assert (await phone.sign_in("wren", NEW_PASSWORD)).status_code == 303
    async with rt.sessions() as fresh:
        assert await fresh.scalar(select(func.count()).select_from(UserSession)) == 1


async def test_password_reset__link_used_twice_is_refused(settings, rt, db, app_client) -> None:  # type: ignore[no-untyped-def]
    await person(db, "wren")
    await ask_reset(app_client, "wren@example.test")
    token = link_in((await mails_to(rt, settings, "wren@example.test"))[0]).split("token=")[1]
    form = {"token": token, "password": NEW_PASSWORD, "password_confirmation": NEW_PASSWORD}
    assert (await app_client.post("/auth/password/reset", form)).status_code == 303
    # When the same link is used again to set another password
    again = {
        **form,
        "password": "yet another phrase 42",
        "password_confirmation": "yet another phrase 42",
    }
    await app_client.get(f"/auth/password/reset?token={token}")
    r = await app_client.post("/auth/password/reset", again)
    # Then it is refused and the first new password stands
    assert r.status_code == 400 and "invalid or has expired" in r.text
    assert (await app_client.sign_in("wren", NEW_PASSWORD)).status_code == 303


async def test_password_reset__expired_link_is_refused(settings, rt, db, app_client) -> None:  # type: ignore[no-untyped-def]
    await person(db, "wren")
    await ask_reset(app_client, "wren@example.test")
    token = link_in((await mails_to(rt, settings, "wren@example.test"))[0]).split("token=")[1]
    # Given the hour has passed
    async with rt.sessions() as s:
        await s.execute(update(EmailToken).values(expires_at=utcnow() - timedelta(seconds=1)))
        await s.commit()
    assert (await app_client.get(f"/auth/password/reset?token={token}")).status_code == 400
    r = await app_client.post(
        "/auth/password/reset",
        {"token": token, "password": NEW_PASSWORD, "password_confirmation": NEW_PASSWORD},
    )
    assert r.status_code == 400
    assert (await app_client.sign_in("wren")).status_code == 303  # old password unchanged


async def test_password_reset__a_confirmation_token_cannot_reset_a_password(
    settings, rt, app_client
) -> None:  # type: ignore[no-untyped-def]
    # Given the confirmation link from sign-up
    await sign_up(app_client, "wren")
    token = link_in((await mails_to(rt, settings, "wren@example.test"))[0]).split("token=")[1]
    # When it is presented to the reset form
    r = await app_client.post(
        "/auth/password/reset",
        {"token": token, "password": NEW_PASSWORD, "password_confirmation": NEW_PASSWORD},
    )
    # Then it is refused, and it still confirms the address (it was not used up)
    assert r.status_code == 400
    async with rt.sessions() as db:
        with pytest.raises(ValidationFailed):
            await credentials.reset_password(db, token, NEW_PASSWORD)
    assert (await app_client.get(f"/auth/confirm?token={token}")).status_code == 200


async def test_password_reset__a_reset_token_cannot_confirm_an_address(
    settings, rt, app_client
) -> None:  # type: ignore[no-untyped-def]
    await sign_up(app_client, "wren")
    await ask_reset(app_client, "wren@example.test")
    reset_mail = (await mails_to(rt, settings, "wren@example.test"))[-1]
    token = link_in(reset_mail).split("token=")[1]
    assert (await app_client.get(f"/auth/confirm?token={token}")).status_code == 400
    assert (await user_named(rt, "wren")).email_confirmed_at is None


async def test_password_reset__weak_password_is_refused_and_the_link_keeps_working(
    settings, rt, db, app_client
) -> None:  # type: ignore[no-untyped-def]
    await person(db, "wren")
    await ask_reset(app_client, "wren@example.test")
    token = link_in((await mails_to(rt, settings, "wren@example.test"))[0]).split("token=")[1]
    r = await app_client.post(
        "/auth/password/reset",
        {"token": token, "password": "password1", "password_confirmation": "password1"},
    )
    assert r.status_code == 422 and "at least 10" in r.text
    r = await app_client.post(
        "/auth/password/reset",
        {"token": token, "password": NEW_PASSWORD, "password_confirmation": NEW_PASSWORD},
    )
    assert r.status_code == 303


async def test_password_reset__garbage_tokens_are_refused_cleanly(app_client) -> None:  # type: ignore[no-untyped-def]
    for token in ["", "x", "a" * 500, "../../etc/passwd", "' OR 1=1 --"]:
        r = await app_client.get("/auth/password/reset", params={"token": token})
        assert r.status_code == 400
        r = await app_client.get("/auth/confirm", params={"token": token})
        assert r.status_code == 400


async def test_forgot_password__is_throttled_per_client(settings, rt, app_client) -> None:  # type: ignore[no-untyped-def]
    for _ in range(10):
        await ask_reset(app_client, "nobody@example.test")
    r = await app_client.post("/auth/password/forgot", {"email": "nobody@example.test"})
    assert r.status_code == 429 and r.headers["Retry-After"]


# --- changes in settings -----------------------------------------------------------------


async def test_change_password__needs_the_current_one_and_signs_out_other_browsers(
    settings, rt, db
) -> None:  # type: ignore[no-untyped-def]
    await person(db, "wren")
    async with browser(settings) as laptop, browser(settings) as phone:
        await laptop.sign_in("wren")
        await phone.sign_in("wren")
        await laptop.get("/settings/account")
        # A wrong current password changes nothing
        r = await laptop.post(
            "/settings/account/password",
            {
                "current_password": "not the password",
                "password": NEW_PASSWORD,
                "password_confirmation": NEW_PASSWORD,
            },
        )
        assert r.status_code == 422 and "current password is not right" in r.text
        assert (await phone.get("/home")).status_code == 200
        # The right one changes it; this browser stays signed in, the other is signed out
        r = await laptop.post(
            "/settings/account/password",
            {
                "current_password": PASSWORD,
                "password": NEW_PASSWORD,
                "password_confirmation": NEW_PASSWORD,
            },
        )
        assert r.status_code == 303
        assert (await laptop.get("/home")).status_code == 200
        assert (await phone.get("/home")).status_code == 303
        assert (await phone.sign_in("wren", NEW_PASSWORD)).status_code == 303


async def test_change_email__needs_reconfirmation_and_kills_links_to_the_old_address(
    settings, rt, app_client
) -> None:  # type: ignore[no-untyped-def]
    # Given wren signed up and has an unused confirmation link for the old address
    await sign_up(app_client, "wren")
    [old_link] = [link_in(m) for m in await mails_to(rt, settings, "wren@example.test")]
    # When wren moves to a new address
    await app_client.get("/settings/account")
    r = await app_client.post(
        "/settings/account/email", {"email": "wren@new.example", "email_password": PASSWORD}
    )
    assert r.status_code == 303
    # Then the old link cannot confirm the new address
    assert (await app_client.get(old_link)).status_code == 400
    # And the old address is told, and the new one gets a link that confirms it
    notices = await mails_to(rt, settings, "wren@example.test")
    assert any("was changed" in m["Subject"] for m in notices)
    [new_mail] = await mails_to(rt, settings, "wren@new.example")
    assert (await app_client.get(link_in(new_mail))).status_code == 200
    async with rt.sessions() as db:
        moved = await db.scalar(select(User).where(User.email_key == "wren@new.example"))
        assert moved is not None and moved.email_confirmed_at is not None


async def test_change_email__wrong_password_or_taken_address_is_refused(
    settings, rt, db, app_client
) -> None:  # type: ignore[no-untyped-def]
    await person(db, "wren")
    await person(db, "finch")
    await app_client.sign_in("wren")
    await app_client.get("/settings/account")
    r = await app_client.post(
        "/settings/account/email", {"email": "w2@example.test", "email_password": "nope nope"}
    )
    assert r.status_code == 422 and 'id="email_password-error"' in r.text
    r = await app_client.post(
        "/settings/account/email",
        {"email": "FINCH@example.test", "email_password": PASSWORD},
    )
    assert r.status_code == 422 and "exists" in r.text
    async with rt.sessions() as s:
        assert await s.scalar(select(User.email).where(User.email_key == "wren@example.test"))
