"""Proving and changing what a person signs in with: email confirmation, password reset by
mail, password change and email change."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts import access, mail, passwords
from kith.accounts.email_tokens import (
    TokenPurpose,
    find_valid,
    mark_used,
    queue_confirmation_mail,
    queue_reset_mail,
    revoke_all,
)
from kith.accounts.models import User, UserState
from kith.accounts.service import check_email, end_other_sessions
from kith.accounts.throttle import SlidingWindow
from kith.db import utcnow
from kith.errors import RateLimited, ValidationFailed

INVALID_LINK = "This link is invalid or has expired. Ask for a new one."


class MailThrottle:
    """Keeps forms that send mail from being used to flood an inbox or probe addresses.

    Per client address: 10 requests per 15 minutes (the visitor is told). Per recipient:
    3 mails per hour (silently: telling would reveal that the address has an account)."""

    def __init__(self, ip_limit: int = 10, address_limit: int = 3) -> None:
        self.by_ip = SlidingWindow(ip_limit, 15 * 60)
        self.by_address = SlidingWindow(address_limit, 3600)

    def check_ip(self, ip: str) -> None:
        """Count one request from `ip`; raise RateLimited when there were too many."""
        wait = self.by_ip.retry_after(ip)
        if wait:
            raise RateLimited("Too many requests. Try again in a few minutes.", wait)
        self.by_ip.hit(ip)

    def may_mail(self, address: str) -> bool:
        """Count one mail to `address`; False when it already got enough this hour."""
        key = address.lower()
        if self.by_address.retry_after(key):
            return False
        self.by_address.hit(key)
        return True


# --- confirmation -------------------------------------------------------------------------


async def confirm_email(db: AsyncSession, token: str) -> User:
    """Mark the address the token was mailed to as confirmed. Commits.

    Raises ValidationFailed(field="token") for an unknown, used, expired or reset token."""
    row = await find_valid(db, token, TokenPurpose.CONFIRM)
    if row is None or not await mark_used(db, row):
        raise ValidationFailed(INVALID_LINK, field="token")
    user = await db.get(User, row.user_id)
    assert user is not None
    if user.email_confirmed_at is None:
        user.email_confirmed_at = utcnow()
    await db.commit()
    return user


async def resend_confirmation(db: AsyncSession, user: User, throttle: MailThrottle) -> None:
    """Mail a fresh confirmation link to the user's unconfirmed address. Commits."""
    if user.email_confirmed_at is not None:
        raise ValidationFailed("Your address is already confirmed.", field="email")
    if not throttle.may_mail(user.email):
        raise RateLimited("We sent you several links already. Try again in an hour.", 3600)
    await queue_confirmation_mail(db, user)
    await db.commit()


# --- password reset by mail --------------------------------------------------------------


async def request_password_reset(db: AsyncSession, email: str, throttle: MailThrottle) -> None:
    """Mail a reset link if an active account has this address; otherwise do nothing.

    The caller answers the same either way, so the form cannot tell who has an account."""
    key = email.strip().lower()[:320]
    if not key:
        raise ValidationFailed("Enter your email address.", field="email")
    user = await db.scalar(select(User).where(User.email_key == key))
    if user is None or user.account.suspended_at is not None or user.state != UserState.ACTIVE:
        return
    if not throttle.may_mail(key):
        return
    await queue_reset_mail(db, user)
    await db.commit()


async def check_reset_token(db: AsyncSession, token: str) -> User:
    """The user a reset link belongs to, without using it up (to show the form)."""
    row = await find_valid(db, token, TokenPurpose.RESET)
    user = await db.get(User, row.user_id) if row is not None else None
    if user is None:
        raise ValidationFailed(INVALID_LINK, field="token")
    return user


async def reset_password(db: AsyncSession, token: str, new_password: str) -> User:
    """Set a new password with a reset link: uses the link up, ends every session, and counts
    the address as confirmed (the link proved it). Commits, or raises with nothing written.

    The password is checked before the token is used, so a rejected password leaves the
    link working."""
    row = await find_valid(db, token, TokenPurpose.RESET)
    user = await db.get(User, row.user_id) if row is not None else None
    if row is None or user is None:
        raise ValidationFailed(INVALID_LINK, field="token")
    passwords.check_new_password(new_password, username=user.account.username_key, email=user.email)
    new_hash = passwords.hash_password(new_password)
    if not await mark_used(db, row):
        await db.rollback()
        raise ValidationFailed(INVALID_LINK, field="token")
    user.password_hash = new_hash
    if user.email_confirmed_at is None:
        user.email_confirmed_at = utcnow()
    await revoke_all(db, user.id, TokenPurpose.RESET)
    await end_other_sessions(db, user.id, keep_token=None)
    await db.commit()
    await access.access_changed(db, [user.account_id])  # streams of ended sessions close
    return user


# --- changes from the settings page ------------------------------------------------------


def _require_password(user: User, password: str, field: str = "current_password") -> None:
    if not passwords.verify_password(user.password_hash, password):
        raise ValidationFailed("Your current password is not right.", field=field)


async def change_password(
    db: AsyncSession,
    user: User,
    *,
    current_password: str,
    new_password: str,
    keep_session: str | None,
) -> None:
    """Change the password (the current one is required) and sign out every other browser.

    Outstanding reset links stop working. Commits, or raises with nothing written."""
    _require_password(user, current_password)
    passwords.check_new_password(new_password, username=user.account.username_key, email=user.email)
    if passwords.verify_password(user.password_hash, new_password):
        raise ValidationFailed("That is your current password.", field="password")
    user.password_hash = passwords.hash_password(new_password)
    await revoke_all(db, user.id, TokenPurpose.RESET)
    await end_other_sessions(db, user.id, keep_token=keep_session)
    await db.commit()
    await access.access_changed(db, [user.account_id])  # streams of ended sessions close


async def change_email(
    db: AsyncSession,
    user: User,
    *,
    current_password: str,
    new_email: str,
    throttle: MailThrottle,
) -> None:
    """Move the account to a new address, which must be confirmed again. Commits.

    Links mailed to the old address stop working; the old address is told of the change,
    so a hijacked session cannot move the account away silently."""
    _require_password(user, current_password)
    email = check_email(new_email)
    if email.lower() == user.email_key:
        raise ValidationFailed("That is your current address.", field="email")
    if await db.scalar(select(User.id).where(User.email_key == email.lower())):
        raise ValidationFailed("An account with this email exists.", field="email")
    if not throttle.may_mail(email):
        raise RateLimited("Too many address changes. Try again in an hour.", 3600)
    old = user.email
    user.email = email
    user.email_key = email.lower()
    user.email_confirmed_at = None
    await revoke_all(db, user.id, TokenPurpose.CONFIRM)
    await revoke_all(db, user.id, TokenPurpose.RESET)
    await queue_confirmation_mail(db, user)
    await mail.send_later(
        db,
        to=old,
        subject="Your email address was changed",
        body=(
            f"Hello @{user.account.username},\n\n"
            f"the email address of your account was changed to {email}. If you did not do "
            "this, contact the moderators of your instance right away.\n"
        ),
    )
    try:
        await db.commit()
    except IntegrityError:  # another account took the address a moment ago
        await db.rollback()
        await db.refresh(user)  # the page shows the user again: reload what rollback expired
        raise ValidationFailed("An account with this email exists.", field="email") from None
