"""One-time tokens mailed to a person: confirm an address, reset a password.

Only a SHA-256 of each token is stored; a token works once, for one purpose, until it expires.
The mail is queued in the caller's transaction, so it exists exactly when the change it
belongs to was committed (the raw token rides in the job's payload until the mail is sent)."""

from __future__ import annotations

import enum
import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts import mail
from kith.accounts.models import EmailToken, InstanceSettings, User
from kith.db import utcnow
from kith.runtime import runtime_of


class TokenPurpose(enum.StrEnum):
    """What a mailed token lets its holder do."""

    CONFIRM = "confirm"
    RESET = "reset"


LIFETIME = {
    TokenPurpose.CONFIRM: timedelta(hours=24),
    TokenPurpose.RESET: timedelta(hours=1),
}


def token_hash(token: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


async def issue(db: AsyncSession, user: User, purpose: TokenPurpose) -> str:
    """Add a fresh token for `user` (not committed) and return its secret."""
    token = secrets.token_urlsafe(32)
    db.add(
        EmailToken(
            user_id=user.id,
            purpose=purpose,
            token_hash=token_hash(token),
            expires_at=utcnow() + LIFETIME[purpose],
        )
    )
    return token


async def find_valid(db: AsyncSession, token: str, purpose: TokenPurpose) -> EmailToken | None:
    """The unused, unexpired token row for this secret and purpose, or None (never raises)."""
    if not token or len(token) > 100:
        return None
    row = await db.scalar(
        select(EmailToken).where(
            EmailToken.token_hash == token_hash(token), EmailToken.purpose == purpose
        )
    )
    if row is None or row.used_at is not None or row.expires_at <= utcnow():
        return None
    return row


async def mark_used(db: AsyncSession, row: EmailToken) -> bool:
    """Use the token up (not committed). False when a concurrent request used it first."""
    result = await db.execute(
        update(EmailToken)
        .where(EmailToken.id == row.id, EmailToken.used_at.is_(None))
        .values(used_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0) == 1)


async def revoke_all(db: AsyncSession, user_id: int, purpose: TokenPurpose) -> None:
    """Use up every outstanding token of this purpose (after the address or password changed)."""
    await db.execute(
        update(EmailToken)
        .where(
            EmailToken.user_id == user_id,
            EmailToken.purpose == purpose,
            EmailToken.used_at.is_(None),
        )
        .values(used_at=utcnow())
        .execution_options(synchronize_session=False)
    )


async def _instance_name(db: AsyncSession) -> str:
    row = await db.get(InstanceSettings, 1)
    return row.name if row is not None else "Kith"


async def queue_confirmation_mail(db: AsyncSession, user: User) -> None:
    """Issue a confirmation token and queue the mail with its link (not committed)."""
    token = await issue(db, user, TokenPurpose.CONFIRM)
    base = runtime_of(db).settings.base_url
    name = await _instance_name(db)
    await mail.send_later(
        db,
        to=user.email,
        subject=f"Confirm your email address for {name}",
        body=(
            f"Hello @{user.account.username},\n\n"
            f"please confirm that this is your address on {name} by opening this link:\n\n"
            f"{base}/auth/confirm?token={token}\n\n"
            "The link works once, for 24 hours. If you did not sign up, ignore this mail.\n"
        ),
    )


async def queue_reset_mail(db: AsyncSession, user: User) -> None:
    """Issue a password-reset token and queue the mail with its link (not committed)."""
    token = await issue(db, user, TokenPurpose.RESET)
    base = runtime_of(db).settings.base_url
    name = await _instance_name(db)
    await mail.send_later(
        db,
        to=user.email,
        subject=f"Reset your password on {name}",
        body=(
            f"Hello @{user.account.username},\n\n"
            f"someone asked to reset the password of your account on {name}. "
            "To choose a new one, open this link:\n\n"
            f"{base}/auth/password/reset?token={token}\n\n"
            "The link works once, for one hour. If it wasn't you, ignore this mail: "
            "your password stays as it is.\n"
        ),
    )
