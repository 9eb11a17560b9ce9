"""Invite links: who may make them, making, listing and revoking them.

Admins may always invite. When the instance is invite-only, every active member may too
(otherwise nobody but admins could ever bring a friend). Sign-up with a code is
`accounts.service.register(invite_code=...)`."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts.models import Invite, RegistrationMode, User, UserState
from kith.accounts.service import get_instance_settings
from kith.db import utcnow
from kith.errors import Forbidden, NotFound, ValidationFailed

# The choices the form offers (Mastodon's); the service accepts any value in range.
EXPIRY_CHOICES = (1800, 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400)
MAX_USES_CHOICES = (1, 5, 10, 25, 50, 100)
MAX_EXPIRY = timedelta(days=365)
MAX_USES = 10_000


async def may_invite(db: AsyncSession, user: User) -> bool:
    """Admins always; everyone active when registration is by invite only."""
    if user.is_admin:
        return True
    if user.state != UserState.ACTIVE or user.account.suspended_at is not None:
        return False
    instance = await get_instance_settings(db)
    return instance.registration_mode == RegistrationMode.INVITE


@dataclass(frozen=True)
class InviteView:
    """An invite as its list shows it."""

    invite: Invite
    url: str

    @property
    def active(self) -> bool:
        inv = self.invite
        return not (
            (inv.expires_at is not None and inv.expires_at <= utcnow())
            or (inv.max_uses is not None and inv.uses >= inv.max_uses)
        )


def invite_url(base_url: str, invite: Invite) -> str:
    """The link to hand out."""
    return f"{base_url}/auth/sign_up?invite={invite.code}"


async def create_invite(
    db: AsyncSession,
    user: User,
    *,
    expires_in: int | None = None,
    max_uses: int | None = None,
) -> Invite:
    """Make an invite (expiry in seconds and use limit optional). Commits."""
    if not await may_invite(db, user):
        raise Forbidden("Only admins can make invite links on this instance.")
    if expires_in is not None and not 60 <= expires_in <= MAX_EXPIRY.total_seconds():
        raise ValidationFailed("Choose an expiry between a minute and a year.", field="expires_in")
    if max_uses is not None and not 1 <= max_uses <= MAX_USES:
        raise ValidationFailed(f"Choose between 1 and {MAX_USES} uses.", field="max_uses")
    invite = Invite(
        code=secrets.token_urlsafe(12),
        created_by_id=user.account_id,
        expires_at=utcnow() + timedelta(seconds=expires_in) if expires_in else None,
        max_uses=max_uses,
    )
    db.add(invite)
    await db.commit()
    return invite


async def list_invites(db: AsyncSession, user: User, base_url: str) -> list[InviteView]:
    """The invites this person made, newest first."""
    rows = await db.scalars(
        select(Invite).where(Invite.created_by_id == user.account_id).order_by(Invite.id.desc())
    )
    return [InviteView(inv, invite_url(base_url, inv)) for inv in rows]


async def revoke_invite(db: AsyncSession, user: User, invite_id: int) -> None:
    """Stop an invite from working (its maker or an admin). The row stays, so the accounts it
    brought in still show where they came from. Commits."""
    invite = await db.get(Invite, invite_id)
    if invite is None or (invite.created_by_id != user.account_id and not user.is_admin):
        raise NotFound("No such invite.")
    now: datetime = utcnow()
    if invite.expires_at is None or invite.expires_at > now:
        invite.expires_at = now
    await db.commit()
