"""Two-factor sign-in: time-based codes (TOTP, RFC 6238) from an authenticator app, and
single-use recovery codes for when the phone is lost.

A code is accepted for its own 30-second step and one step either side (clock drift), and only
once: the last accepted step is stored, and a code for that step or an earlier one is refused.
Recovery codes are stored as SHA-256 hashes (they are long random strings, so a slow hash adds
nothing) and each works once."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time

import pyotp
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from kith.accounts import passwords
from kith.accounts.models import RecoveryCode, User
from kith.accounts.throttle import SlidingWindow
from kith.db import utcnow
from kith.errors import RateLimited, ValidationFailed

RECOVERY_CODE_COUNT = 10
VALID_WINDOW = 1  # steps either side of now
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i to misread
_TOTP_RE = re.compile(r"\d{6}")
WRONG_CODE = "That code is not right (or was already used). Try the next one."


class SecondFactorThrottle:
    """At most `limit` wrong codes (or passwords on the two-factor forms) per person per window:
    a six-digit code falls to guessing without it."""

    def __init__(self, limit: int = 10, window: float = 300) -> None:
        self.by_user = SlidingWindow(limit, window)

    def check(self, user_id: int) -> None:
        """Raise RateLimited when this person has had too many wrong tries lately."""
        wait = self.by_user.retry_after(str(user_id))
        if wait:
            raise RateLimited("Too many wrong codes. Try again in a few minutes.", wait)

    def failed(self, user_id: int) -> None:
        """Record one wrong try."""
        self.by_user.hit(str(user_id))


def _normalize_recovery(code: str) -> str:
    return re.sub(r"[\s-]", "", code).lower()


def _recovery_hash(code: str) -> str:
    return hashlib.sha256(_normalize_recovery(code).encode()).hexdigest()


def new_recovery_code() -> str:
    """A fresh recovery code, e.g. "k7mqx-3vtrp" (about 49 bits)."""
    raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(10))
    return f"{raw[:5]}-{raw[5:]}"


def provisioning_uri(user: User, secret: str, issuer: str) -> str:
    """The otpauth:// URI an authenticator app imports (as text; no QR code needed)."""
    return pyotp.TOTP(secret).provisioning_uri(name=user.account.username, issuer_name=issuer)


async def _use_totp(db: AsyncSession, user: User, code: str) -> bool:
    """Accept a six-digit code for a step within the window and later than the last one used,
    recording its step (not committed). The conditional UPDATE makes two concurrent requests
    with the same code accept it at most once."""
    digits = re.sub(r"\s", "", code)
    if not user.totp_secret or not _TOTP_RE.fullmatch(digits):
        return False
    totp = pyotp.TOTP(user.totp_secret)
    now_step = totp.timecode(time.time())
    matched = None
    for step in range(now_step - VALID_WINDOW, now_step + VALID_WINDOW + 1):
        if hmac.compare_digest(totp.generate_otp(step), digits):
            matched = step
    if matched is None or (user.totp_last_step is not None and matched <= user.totp_last_step):
        return False
    result = await db.execute(
        update(User)
        .where(
            User.id == user.id,
            or_(User.totp_last_step.is_(None), User.totp_last_step < matched),
        )
        .values(totp_last_step=matched)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        return False
    set_committed_value(user, "totp_last_step", matched)
    return True


async def _use_recovery_code(db: AsyncSession, user: User, code: str) -> bool:
    normalized = _normalize_recovery(code)
    if not 8 <= len(normalized) <= 20:
        return False
    result = await db.execute(
        update(RecoveryCode)
        .where(
            RecoveryCode.user_id == user.id,
            RecoveryCode.code_hash == _recovery_hash(normalized),
            RecoveryCode.used_at.is_(None),
        )
        .values(used_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return getattr(result, "rowcount", 0) == 1


async def _check_code(
    db: AsyncSession,
    user: User,
    code: str,
    throttle: SecondFactorThrottle,
    *,
    allow_recovery: bool,
) -> None:
    """Use up a valid code (not committed) or raise ValidationFailed(field="code")."""
    throttle.check(user.id)
    code = code.strip()[:64]
    ok = await _use_totp(db, user, code)
    if not ok and allow_recovery and not _TOTP_RE.fullmatch(re.sub(r"\s", "", code)):
        ok = await _use_recovery_code(db, user, code)
    if not ok:
        throttle.failed(user.id)
        raise ValidationFailed(WRONG_CODE, field="code")


def _check_password(
    user: User, password: str, throttle: SecondFactorThrottle, field: str = "password"
) -> None:
    throttle.check(user.id)
    if not passwords.verify_password(user.password_hash, password):
        throttle.failed(user.id)
        raise ValidationFailed("Your password is not right.", field=field)


async def _replace_recovery_codes(db: AsyncSession, user: User) -> list[str]:
    await db.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    codes = [new_recovery_code() for _ in range(RECOVERY_CODE_COUNT)]
    db.add_all(RecoveryCode(user_id=user.id, code_hash=_recovery_hash(c)) for c in codes)
    return codes


# --- setting it up and down ------------------------------------------------------------


async def begin_setup(
    db: AsyncSession, user: User, *, password: str, throttle: SecondFactorThrottle
) -> str:
    """Make a new secret for the person to add to their app (the password is asked again so a
    borrowed session cannot lock the owner out). Not active until `enable`. Commits."""
    if user.totp_enabled_at is not None:
        raise ValidationFailed("Two-factor sign-in is already on.", field="password")
    _check_password(user, password, throttle)
    user.totp_secret = pyotp.random_base32()
    user.totp_last_step = None
    await db.commit()
    return user.totp_secret


async def enable(
    db: AsyncSession, user: User, *, code: str, throttle: SecondFactorThrottle
) -> list[str]:
    """Turn two-factor sign-in on once the person proved their app makes the right codes.

    Returns the recovery codes, which are shown this once and stored only as hashes. Commits."""
    if user.totp_enabled_at is not None:
        raise ValidationFailed("Two-factor sign-in is already on.", field="code")
    if not user.totp_secret:
        raise ValidationFailed("Start the set-up again.", field="code")
    await _check_code(db, user, code, throttle, allow_recovery=False)
    user.totp_enabled_at = utcnow()
    codes = await _replace_recovery_codes(db, user)
    await db.commit()
    return codes


async def disable(
    db: AsyncSession,
    user: User,
    *,
    code: str = "",
    password: str = "",
    throttle: SecondFactorThrottle,
) -> None:
    """Turn two-factor sign-in off; needs a current code (or recovery code) or the password.
    Commits."""
    if user.totp_enabled_at is None:
        raise ValidationFailed("Two-factor sign-in is not on.", field="code")
    if code.strip():
        await _check_code(db, user, code, throttle, allow_recovery=True)
    elif password:
        _check_password(user, password, throttle)
    else:
        raise ValidationFailed("Enter a code from your app, or your password.", field="code")
    user.totp_secret = None
    user.totp_enabled_at = None
    user.totp_last_step = None
    await db.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    await db.commit()


async def regenerate_recovery_codes(
    db: AsyncSession, user: User, *, code: str, throttle: SecondFactorThrottle
) -> list[str]:
    """Replace all recovery codes (the old ones stop working); needs a current app code."""
    if user.totp_enabled_at is None:
        raise ValidationFailed("Two-factor sign-in is not on.", field="code")
    await _check_code(db, user, code, throttle, allow_recovery=False)
    codes = await _replace_recovery_codes(db, user)
    await db.commit()
    return codes


async def confirm_identity(
    db: AsyncSession,
    user: User,
    *,
    password: str,
    code: str = "",
    throttle: SecondFactorThrottle,
) -> None:
    """Prove that an irreversible request (deleting the account) is the person's own: the
    password, and — when two-factor sign-in is on — a code from their app or a recovery
    code, which is used up (not committed: the caller's transaction). Raises
    ValidationFailed(field="password" or "code") or RateLimited."""
    _check_password(user, password, throttle)
    if user.totp_enabled_at is None:
        return
    if not code.strip():
        raise ValidationFailed("Enter a code from your app, or a recovery code.", field="code")
    await _check_code(db, user, code, throttle, allow_recovery=True)


async def recovery_codes_left(db: AsyncSession, user: User) -> int:
    """How many unused recovery codes the person has."""
    count = await db.scalar(
        select(func.count())
        .select_from(RecoveryCode)
        .where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))
    )
    return int(count or 0)


# --- signing in --------------------------------------------------------------------------


async def verify_sign_in(
    db: AsyncSession, user: User, code: str, throttle: SecondFactorThrottle
) -> None:
    """Check the second step of a sign-in: an app code or a recovery code, used up on success.
    Commits what it used up; raises ValidationFailed(field="code") or RateLimited."""
    if user.totp_enabled_at is None:
        return
    await _check_code(db, user, code, throttle, allow_recovery=True)
    await db.commit()
