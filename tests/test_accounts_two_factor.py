"""Two-factor sign-in: setting it up in settings, the second step of signing in, recovery codes,
replay and guessing."""

from __future__ import annotations

import re
import time

import pyotp
import pytest
from sqlalchemy import func, select

from kith.accounts import two_factor
from kith.accounts.models import RecoveryCode, User, UserSession
from kith.errors import RateLimited, ValidationFailed
from tests.world import PASSWORD, Browser, browser, person

SECRET_RE = re.compile(r'id="totp-secret">([A-Z2-7]+)<')
CODES_RE = re.compile(r"<li><code>([a-z2-9]{5}-[a-z2-9]{5})</code></li>")


def code(secret: str, steps_ahead: int = 0) -> str:
    """The app's code for now (or a later 30-second step, still inside the ±1 window)."""
    return pyotp.TOTP(secret).at(time.time() + 30 * steps_ahead)


async def turn_on(b: Browser) -> tuple[str, list[str]]:
    """Set up two-factor sign-in through the settings pages; returns (secret, recovery codes)."""
    await b.get("/settings/two_factor")
    r = await b.post("/settings/two_factor/setup", {"password": PASSWORD})
    assert r.status_code == 200, r.text
    match = SECRET_RE.search(r.text)
    assert match and "otpauth://totp/" in r.text
    secret = match.group(1)
    r = await b.post("/settings/two_factor/enable", {"code": code(secret)})
    assert r.status_code == 200 and "shown only this once" in r.text
    codes = CODES_RE.findall(r.text)
    assert r.headers["cache-control"] == "no-store"
    return secret, codes


async def with_two_factor(settings, db, name: str = "wren") -> tuple[str, list[str]]:  # type: ignore[no-untyped-def]
    await person(db, name)
    async with browser(settings) as b:
        await b.sign_in(name)
        return await turn_on(b)


async def test_set_up__shows_secret_then_enables_with_a_code_and_ten_recovery_codes(
    settings, rt, db, app_client
) -> None:  # type: ignore[no-untyped-def]
    # Given a signed-in member
    await person(db, "wren")
    await app_client.sign_in("wren")
    # When they set up two-factor sign-in
    secret, codes = await turn_on(app_client)
    # Then it is on, with ten distinct recovery codes, stored only as hashes
    assert len(set(codes)) == 10
    async with rt.sessions() as s:
        user = await s.scalar(select(User).where(User.email_key == "wren@example.test"))
        assert user is not None and user.totp_enabled_at is not None
        hashes = (await s.scalars(select(RecoveryCode.code_hash))).all()
    assert len(hashes) == 10 and not set(codes) & set(hashes)
    page = await app_client.get("/settings/two_factor")
    assert "is <strong>on</strong>" in page.text and "10 unused recovery codes" in page.text
    assert secret not in page.text and codes[0] not in page.text  # shown only once


async def test_set_up__wrong_password_or_wrong_code_is_refused(
    settings, rt, db, app_client
) -> None:  # type: ignore[no-untyped-def]
    await person(db, "wren")
    await app_client.sign_in("wren")
    await app_client.get("/settings/two_factor")
    r = await app_client.post("/settings/two_factor/setup", {"password": "not it at all"})
    assert r.status_code == 422 and 'id="setup_password-error"' in r.text
    r = await app_client.post("/settings/two_factor/setup", {"password": PASSWORD})
    secret = SECRET_RE.search(r.text).group(1)  # type: ignore[union-attr]
    wrong = f"{(int(code(secret)) + 1) % 1_000_000:06d}"
    r = await app_client.post("/settings/two_factor/enable", {"code": wrong})
    assert r.status_code == 422 and "not right" in r.text
    async with rt.sessions() as s:
        assert await s.scalar(select(User.totp_enabled_at)) is None


async def sign_in_first_step(b: Browser, name: str = "wren") -> None:
    r = await b.sign_in(name)
    assert r.status_code == 303 and r.headers["location"].startswith("/auth/two_factor")


async def test_sign_in__asks_for_a_code_and_the_half_session_is_not_signed_in(
    settings, rt, db
) -> None:  # type: ignore[no-untyped-def]
    secret, _ = await with_two_factor(settings, db)
    async with browser(settings) as b:
        # When wren enters the right password
        await sign_in_first_step(b)
        # Then no page treats them as signed in yet
        assert (await b.get("/home")).status_code == 303
        page = await b.get("/auth/two_factor?next=/notifications")
        assert page.status_code == 200 and "Code from your authenticator app" in page.text
        # When they enter the next code from their app
        r = await b.post("/auth/two_factor", {"code": code(secret, 1), "next": "/notifications"})
        # Then they are signed in, under a new session token, and sent where they were going
        assert r.status_code == 303 and r.headers["location"] == "/notifications"
        assert (await b.get("/home")).status_code == 200
    async with rt.sessions() as s:
        sessions = (await s.scalars(select(UserSession))).all()
        # the set-up browser's session and the new one; the half session is gone
        assert [x.awaiting_second_factor for x in sessions] == [False, False]


async def test_sign_in__wrong_code_is_refused(settings, rt, db) -> None:  # type: ignore[no-untyped-def]
    secret, _ = await with_two_factor(settings, db)
    async with browser(settings) as b:
        await sign_in_first_step(b)
        await b.get("/auth/two_factor")
        wrong = f"{(int(code(secret, 1)) + 500_000) % 1_000_000:06d}"
        r = await b.post("/auth/two_factor", {"code": wrong})
        assert r.status_code == 422 and "not right" in r.text
        assert (await b.get("/home")).status_code == 303


async def test_sign_in__a_code_cannot_be_replayed(settings, rt, db) -> None:  # type: ignore[no-untyped-def]
    secret, _ = await with_two_factor(settings, db)
    used = code(secret, 1)
    async with browser(settings) as first:
        await sign_in_first_step(first)
        await first.get("/auth/two_factor")
        assert (await first.post("/auth/two_factor", {"code": used})).status_code == 303
    # When someone who watched the code type it in within the same half minute
    async with browser(settings) as thief:
        await sign_in_first_step(thief)
        await thief.get("/auth/two_factor")
        r = await thief.post("/auth/two_factor", {"code": used})
        # Then it is refused
        assert r.status_code == 422
        # And so is the code of an earlier step than the one used
        r = await thief.post("/auth/two_factor", {"code": code(secret)})
        assert r.status_code == 422


async def test_sign_in__recovery_code_works_once(settings, rt, db) -> None:  # type: ignore[no-untyped-def]
    _, codes = await with_two_factor(settings, db)
    async with browser(settings) as b:
        await sign_in_first_step(b)
        await b.get("/auth/two_factor")
        # Typed in capitals and without the dash, it still works
        r = await b.post("/auth/two_factor", {"code": codes[3].upper().replace("-", "")})
        assert r.status_code == 303
    async with browser(settings) as b:
        await sign_in_first_step(b)
        await b.get("/auth/two_factor")
        r = await b.post("/auth/two_factor", {"code": codes[3]})
        assert r.status_code == 422
        # Another one still works, and the settings page counts what is left
        assert (await b.post("/auth/two_factor", {"code": codes[4]})).status_code == 303
        assert "8 unused recovery codes" in (await b.get("/settings/two_factor")).text


async def test_sign_in__guessing_codes_is_throttled(settings, rt, db) -> None:  # type: ignore[no-untyped-def]
    secret, _ = await with_two_factor(settings, db)
    async with browser(settings) as b:
        await sign_in_first_step(b)
        await b.get("/auth/two_factor")
        right = code(secret, 1)
        wrong = [f"{n:06d}" for n in range(20) if f"{n:06d}" != right][:10]
        for guess in wrong:
            assert (await b.post("/auth/two_factor", {"code": guess})).status_code == 422
        # Then even the right code must wait
        r = await b.post("/auth/two_factor", {"code": right})
        assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0


async def test_two_factor_page__without_a_half_session_goes_to_sign_in(app_client) -> None:  # type: ignore[no-untyped-def]
    r = await app_client.get("/auth/two_factor")
    assert r.status_code == 303 and r.headers["location"].startswith("/auth/sign_in")
    await app_client.get("/auth/sign_in")
    r = await app_client.post("/auth/two_factor", {"code": "123456"})
    assert r.status_code == 303 and r.headers["location"].startswith("/auth/sign_in")


async def test_disable__needs_a_code_or_the_password(settings, rt, db, app_client) -> None:  # type: ignore[no-untyped-def]
    await person(db, "wren")
    await app_client.sign_in("wren")
    await turn_on(app_client)
    await app_client.get("/settings/two_factor")
    # Neither given, or a wrong password: still on
    r = await app_client.post("/settings/two_factor/disable", {})
    assert r.status_code == 422
    r = await app_client.post("/settings/two_factor/disable", {"password": "wrong wrong"})
    assert r.status_code == 422 and 'id="disable_password-error"' in r.text
    # With the password: off, and the recovery codes are gone
    r = await app_client.post("/settings/two_factor/disable", {"password": PASSWORD})
    assert r.status_code == 303
    async with rt.sessions() as s:
        user = await s.scalar(select(User))
        assert user is not None and user.totp_enabled_at is None and user.totp_secret is None
        assert await s.scalar(select(func.count()).select_from(RecoveryCode)) == 0
    # And signing in needs only the password again
    async with browser(settings) as b:
        r = await b.sign_in("wren")
        assert r.headers["location"] == "/home"


async def test_regenerate_recovery_codes__old_ones_stop_working(settings, rt, db) -> None:  # type: ignore[no-untyped-def]
    await person(db, "wren")
    async with browser(settings) as b:
        await b.sign_in("wren")
        secret, old_codes = await turn_on(b)
        await b.get("/settings/two_factor")
        r = await b.post("/settings/two_factor/recovery_codes", {"code": code(secret, 1)})
        new_codes = CODES_RE.findall(r.text)
        assert len(new_codes) == 10 and not set(new_codes) & set(old_codes)
    async with rt.sessions() as s:
        user = await s.scalar(select(User))
        assert user is not None
        throttle = two_factor.SecondFactorThrottle()
        with pytest.raises(ValidationFailed):
            await two_factor.verify_sign_in(s, user, old_codes[0], throttle)
        await two_factor.verify_sign_in(s, user, new_codes[0], throttle)


async def test_service__throttle_counts_wrong_passwords_on_setup_too(db) -> None:  # type: ignore[no-untyped-def]
    account = await person(db, "wren")
    user = await db.scalar(select(User).where(User.account_id == account.id))
    throttle = two_factor.SecondFactorThrottle(limit=3)
    for _ in range(3):
        with pytest.raises(ValidationFailed):
            await two_factor.begin_setup(db, user, password="guess guess", throttle=throttle)
    with pytest.raises(RateLimited):
        await two_factor.begin_setup(db, user, password=PASSWORD, throttle=throttle)


async def test_half_signed_in_session__expires_within_minutes(settings, rt, db) -> None:  # type: ignore[no-untyped-def]
    await with_two_factor(settings, db)
    async with browser(settings) as b:
        await sign_in_first_step(b)
    async with rt.sessions() as s:
        half = await s.scalar(select(UserSession).where(UserSession.awaiting_second_factor))
        assert half is not None
        assert (half.expires_at - half.created_at).total_seconds() <= 600
