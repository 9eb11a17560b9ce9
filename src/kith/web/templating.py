"""Render Jinja2 templates with what every page shows (who is signed in, CSRF, unread count)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts import service as accounts
from kith.db import utcnow
from kith.emojis.html import emojify
from kith.notifications import service as notifications
from kith.web.deps import CSRF_COOKIE, CSRF_FIELD, Current, csrf_token_for, runtime

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


def ago(moment: datetime | None) -> str:
    """ "3m", "5h", "2d" or a date: compact times as timelines show them."""
    if moment is None:
        return ""
    seconds = (utcnow() - moment).total_seconds()
    if seconds < 60:
        return "now"
    if seconds < 3600:
        return f"{int(seconds // 60)}m"
    if seconds < 86400:
        return f"{int(seconds // 3600)}h"
    if seconds < 7 * 86400:
        return f"{int(seconds // 86400)}d"
    return moment.strftime("%b %-d, %Y")


def until(moment: datetime | None) -> str:
    if moment is None:
        return ""
    seconds = (moment - utcnow()).total_seconds()
    if seconds <= 0:
        return "ended"
    if seconds < 3600:
        return f"{int(seconds // 60) + 1} minutes left"
    if seconds < 86400:
        return f"{int(seconds // 3600)} hours left"
    return f"{int(seconds // 86400)} days left"


TEMPLATES.env.filters["ago"] = ago
TEMPLATES.env.filters["until"] = until
TEMPLATES.env.filters["emojify"] = emojify
TEMPLATES.env.globals["CSRF_FIELD"] = CSRF_FIELD


async def render(
    request: Request,
    db: AsyncSession,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    status: int = 200,
) -> HTMLResponse:
    """Render a page; sets the pre-sign-in CSRF cookie the first time it is needed."""
    me: Current = getattr(request.state, "current", None) or Current()
    settings = runtime(request).settings
    token = csrf_token_for(request)
    ctx: dict[str, Any] = {
        "request": request,
        "me": me,
        "instance": await accounts.get_instance_settings(db),
        "settings": settings,
        "csrf_token": token,
        "csrf_input": Markup(  # noqa: S704 (token is hex, name is a constant)
            f'<input type="hidden" name="{CSRF_FIELD}" value="{token}">'
        ),
        "unread": await notifications.unread_count(db, me.user) if me.user else 0,
        "errors": {},
        "form": {},
    }
    ctx.update(context or {})
    response = TEMPLATES.TemplateResponse(request, template, ctx, status_code=status)
    new_cookie = request.state.__dict__.get("new_csrf_cookie")
    if new_cookie:
        response.set_cookie(
            CSRF_COOKIE,
            new_cookie,
            httponly=True,
            samesite="lax",
            secure=settings.https,
            max_age=7 * 86400,
        )
    return response
