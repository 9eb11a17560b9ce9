"""Joining and signing in: username and password rules, races, throttling, first admin."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select

from kith.accounts import service as accounts
from kith.accounts.models import Account, RegistrationMode, User
from kith.errors import RateLimited, ValidationFailed
from tests.world import PASSWORD, Browser, person


async def test_first_account__becomes_admin_and_later_ones_do_not(db) -> None:  # type: ignore[no-untyped-def]
    # Given an empty instance, When two people sign up
    first = await accounts.register(db, username="first", email="f@example.test", password=PASSWORD)
    second = await accounts.register(
        db, username="second", email="s@example.test", password=PASSWORD
    )
    # Then only the first is an admin
    assert first.user.is_admin and not second.user.is_admin


@pytest.mark.parametrize(
    "name",
    ["", "a" * 31, "with space", "dash-name", "émile", "admin", "Admin", "settings", "@", "a.b"],
)
async def test_sign_up__invalid_or_reserved_username_is_refused(db, name: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValidationFailed) as err:
        await accounts.register(db, username=name, email="x@example.test", password=PASSWORD)
    assert err.value.field == "username"
    assert await db.scalar(select(func.count()).select_from(Account)) == 0


async def test_sign_up__usernames_are_unique_case_insensitively(db) -> None:  # type: ignore[no-untyped-def]
    await person(db, "river")
    with pytest.raises(ValidationFailed) as err:
        await accounts.register(db, username="RIVER", email="other@example.test", password=PASSWORD)
    assert err.value.field == "username"


@pytest.mark.parametrize(
    "password",
    ["short", "password123", "Password2024!", "qwertyuiop", "1234567890", "aaaaaaaaaaaa"],
)
async def test_sign_up__weak_password_is_refused(db, password: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValidationFailed) as err:
        await accounts.register(db, username="newbie", email="n@example.test", password=password)
    assert err.value.field == "password"


async def test_sign_up__password_containing_username_is_refused(db) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValidationFailed):
        await accounts.register(
            db, username="marigold", email="m@example.test", password="marigold-is-me-99"
        )


async def test_duplicate_sign_ups_racing__exactly_one_wins(rt) -> None:  # type: ignore[no-untyped-def]
    # Given ten concurrent sign-ups for the same name
    async def attempt(i: int) -> str:
        async with rt.sessions() as db:
            try:
                await accounts.register(
                    db, username="racer", email=f"r{i}@example.test", password=PASSWORD
                )
                return "ok"
            except ValidationFailed as err:
                return err.field or "?"

    results = await asyncio.gather(*(attempt(i) for i in range(10)))
    # Then one account exists and the others got a clear username error, not a crash
    assert results.count("ok") == 1
    assert set(results) <= {"ok", "username"}
    async with rt.sessions() as db:
        assert await db.scalar(select(func.count()).select_from(User)) == 1


async def test_registration_modes__approval_and_invite_and_closed(db) -> None:  # type: ignore[no-untyped-def]
    await person(db, "owner", admin=True)
    instance = await accounts.get_instance_settings(db)
    instance.registration_mode = RegistrationMode.APPROVAL
    await db.commit()
    reg = await accounts.register(db, username="waiting", email="w@example.test", password=PASSWORD)
    assert reg.needs_approval
    throttle = accounts.LoginThrottle()
    with pytest.raises(ValidationFailed, match="approval"):
        await accounts.authenticate(db, throttle, login="waiting", password=PASSWORD, ip="1.2.3.4")
    instance.registration_mode = RegistrationMode.INVITE
    await db.commit()
    with pytest.raises(ValidationFailed) as err:
        await accounts.register(db, username="noinvite", email="ni@example.test", password=PASSWORD)
    assert err.value.field == "invite"
    instance.registration_mode = RegistrationMode.CLOSED
    await db.commit()
    with pytest.raises(ValidationFailed):
        await accounts.register(db, username="closed", email="c@example.test", password=PASSWORD)


async def test_sign_in__by_username_or_email_and_wrong_password(db) -> None:  # type: ignore[no-untyped-def]
    await person(db, "juniper")
    throttle = accounts.LoginThrottle()
    assert (
        await accounts.authenticate(db, throttle, login="Juniper", password=PASSWORD, ip="1.1.1.1")
    ).id
    assert (
        await accounts.authenticate(
            db, throttle, login="juniper@example.test", password=PASSWORD, ip="1.1.1.1"
        )
    ).id
    with pytest.raises(ValidationFailed) as err:
        await accounts.authenticate(
            db, throttle, login="juniper", password="wrong password!", ip="1.1.1.1"
        )
    assert err.value.field == "login"


async def test_sign_in__throttled_after_25_tries_per_ip_in_5_minutes(db) -> None:  # type: ignore[no-untyped-def]
    # Given one address guessing passwords of many different names
    throttle = accounts.LoginThrottle(ip_limit=25, account_limit=10, window=300)
    for i in range(25):
        with pytest.raises(ValidationFailed):
            await accounts.authenticate(
                db, throttle, login=f"nobody{i}", password="x", ip="9.9.9.9"
            )
    # Then the 26th attempt is refused before any password is checked, with a wait time
    with pytest.raises(RateLimited) as err:
        await accounts.authenticate(db, throttle, login="nobody99", password="x", ip="9.9.9.9")
    assert err.value.retry_after > 0
    # And another address is not affected
    with pytest.raises(ValidationFailed):
        await accounts.authenticate(db, throttle, login="nobody99", password="x", ip="8.8.8.8")


async def test_sign_in__throttled_per_account_across_addresses(db) -> None:  # type: ignore[no-untyped-def]
    await person(db, "target")
    throttle = accounts.LoginThrottle(ip_limit=25, account_limit=10, window=300)
    for i in range(10):
        with pytest.raises(ValidationFailed):
            await accounts.authenticate(
                db, throttle, login="target", password="guess", ip=f"10.0.0.{i}"
            )
    with pytest.raises(RateLimited):
        await accounts.authenticate(db, throttle, login="target", password=PASSWORD, ip="10.0.1.1")


async def test_web_sign_in__429_page_after_too_many_attempts(app_client: Browser) -> None:
    await app_client.get("/auth/sign_in")
    statuses = []
    for i in range(26):
        r = await app_client.post(
            "/auth/sign_in", {"login": f"ghost{i}", "password": "nope nope nope"}
        )
        statuses.append(r.status_code)
    assert statuses[:25] == [422] * 25
    assert statuses[25] == 429 and "Retry-After" in r.headers


async def test_web_sign_up__errors_are_shown_on_the_form_with_the_field(
    app_client: Browser,
) -> None:
    await app_client.get("/auth/sign_up")
    r = await app_client.post(
        "/auth/sign_up",
        {
            "username": "<script>alert(1)</script>",
            "email": "x@example.test",
            "password": PASSWORD,
            "password_confirmation": PASSWORD,
            "agreement": "on",
        },
    )
    assert r.status_code == 422
    assert 'id="username-error"' in r.text
    assert "<script>alert(1)</script>" not in r.text  # echoed back escaped


async def test_session_cookie__httponly_and_samesite(app_client: Browser) -> None:
    await app_client.get("/auth/sign_up")
    r = await app_client.post(
        "/auth/sign_up",
        {
            "username": "cookie",
            "email": "c@example.test",
            "password": PASSWORD,
            "password_confirmation": PASSWORD,
            "agreement": "on",
        },
    )
    cookie = r.headers["set-cookie"].lower()
    assert "kith_session=" in cookie and "httponly" in cookie and "samesite=lax" in cookie


async def test_sign_out__ends_the_session(app_client: Browser, db) -> None:  # type: ignore[no-untyped-def]
    await person(db, "leaver")
    await app_client.sign_in("leaver")
    assert (await app_client.get("/home")).status_code == 200
    await app_client.post("/auth/sign_out")
    r = await app_client.get("/home")
    assert r.status_code == 303 and "/auth/sign_in" in r.headers["location"]


async def test_open_redirect_after_sign_in__is_not_followed(app_client: Browser, db) -> None:  # type: ignore[no-untyped-def]
    await person(db, "nav")
    await app_client.get("/auth/sign_in")
    r = await app_client.post(
        "/auth/sign_in", {"login": "nav", "password": PASSWORD, "next": "//evil.example/"}
    )
    assert r.headers["location"] == "/home"
