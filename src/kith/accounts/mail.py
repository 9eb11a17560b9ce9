"""Outgoing email as durable jobs: SMTP when configured, else files in var/mail/ and the log."""

from __future__ import annotations

import asyncio
import logging
import smtplib
from email.message import EmailMessage
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from kith.config import Settings
from kith.db import new_id
from kith.jobs.queue import enqueue, job_handler
from kith.runtime import runtime_of

log = logging.getLogger(__name__)


async def send_later(db: AsyncSession, *, to: str, subject: str, body: str) -> None:
    """Queue a plain-text email in the caller's transaction."""
    await enqueue(
        db, "email.send", {"to": to, "subject": subject, "body": body, "key": str(new_id())}
    )


def _message(settings: Settings, payload: dict[str, Any]) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = settings.smtp_from
    msg["To"] = str(payload["to"])
    msg["Subject"] = str(payload["subject"])
    msg["Message-ID"] = f"<{payload.get('key')}@{settings.domain.split(':')[0]}>"
    msg.set_content(str(payload["body"]))
    return msg


def _deliver_smtp(settings: Settings, msg: EmailMessage) -> None:
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=30) as smtp:
        if settings.smtp_starttls:
            smtp.starttls()
        if settings.smtp_user:
            smtp.login(settings.smtp_user, settings.smtp_password)
        smtp.send_message(msg)


@job_handler("email.send")
async def send_email(db: AsyncSession, payload: dict[str, Any]) -> None:
    """Deliver one email. Without SMTP, write it to var/mail/<key>.eml (idempotent by key)."""
    settings = runtime_of(db).settings
    msg = _message(settings, payload)
    if settings.smtp_host:
        await asyncio.to_thread(_deliver_smtp, settings, msg)
        return
    folder = settings.effective_mail_dir
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{payload.get('key')}.eml"
    path.write_bytes(bytes(msg))
    log.info(
        "mail to %s written to %s (no SMTP configured): %s", payload["to"], path, payload["subject"]
    )
