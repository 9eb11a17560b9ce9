"""The periodic clean-up job: forget what has expired."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts.models import EmailToken, UserSession
from kith.db import utcnow
from kith.federation.delivery import forget_old_activities
from kith.graph.models import Mute
from kith.jobs.models import Job
from kith.jobs.queue import job_handler
from kith.media import service as media


@job_handler("cleanup")
async def cleanup(db: AsyncSession, payload: dict[str, Any]) -> None:
    """Delete expired sessions, mutes and mail tokens, jobs that gave up a month ago,
    uploads never attached to a post within a day, and week-old outbound activities."""
    now = utcnow()
    await db.execute(delete(UserSession).where(UserSession.expires_at < now))
    await db.execute(delete(Mute).where(Mute.expires_at.is_not(None), Mute.expires_at < now))
    await db.execute(delete(EmailToken).where(EmailToken.expires_at < now - timedelta(days=1)))
    await db.execute(
        delete(Job).where(Job.failed_at.is_not(None), Job.failed_at < now - timedelta(days=30))
    )
    await media.forget_stale_uploads(db)
    await forget_old_activities(db)
