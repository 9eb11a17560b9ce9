"""Reports to the moderators (POST /api/v1/reports)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from kith.errors import ValidationFailed
from kith.mastodon_api.deps import Auth, documented, parse_id, scoped
from kith.mastodon_api.entities import iso
from kith.mastodon_api.params import read_params
from kith.mastodon_api.render import one_account
from kith.moderation import service as moderation
from kith.web.deps import get_db

router = APIRouter(prefix="/api/v1")


@router.post(
    "/reports",
    openapi_extra=documented(
        body={
            "account_id": "string",
            "status_ids": "strings",
            "comment": "string",
            "category": "string",
            "forward": "boolean",
        }
    ),
)
async def file_report(
    request: Request,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(scoped("write:reports")),
) -> dict[str, Any]:
    p = await read_params(request)
    account_id = parse_id(p.text("account_id"))
    if account_id is None:
        raise ValidationFailed("account_id is required", field="account_id")
    status_ids = [i for i in (parse_id(str(s)) for s in p.many("status_ids")) if i is not None]
    report = await moderation.file_report(
        db,
        auth.viewer,
        account_id=account_id,
        post_ids=status_ids,
        category=p.text("category") or "other",
        comment=p.text("comment") or "",
        forward=p.flag("forward"),
    )
    from kith.accounts.models import Account

    target = await db.get(Account, report.target_account_id)
    assert target is not None
    return {
        "id": str(report.id),
        "action_taken": False,
        "action_taken_at": None,
        "category": report.category,
        "comment": report.comment,
        "forwarded": report.forwarded,
        "created_at": iso(report.created_at),
        "status_ids": [str(i) for i in report.post_ids],
        "rule_ids": [],
        "target_account": await one_account(db, target),
    }
