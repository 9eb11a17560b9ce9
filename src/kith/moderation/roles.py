"""Who moderates: the instance's admins (Kith has no separate moderator role yet)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy
from kith.accounts.models import User
from kith.errors import Forbidden


def require_moderator(viewer: policy.Viewer) -> None:
    """Refuse anyone but an admin, whatever the edge already checked."""
    if not viewer.is_admin:
        raise Forbidden("Only admins may do this.")


async def admin_account_ids(db: AsyncSession) -> list[int]:
    """Accounts of the instance's admins, who receive reports and sign-up requests."""
    return list((await db.scalars(select(User.account_id).where(User.is_admin.is_(True)))).all())
