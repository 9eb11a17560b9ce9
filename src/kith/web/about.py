"""The About page: the instance's name, description, rules and who runs it."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession

from kith.federation import domain_blocks
from kith.moderation import instance
from kith.web.deps import Current, current, get_db
from kith.web.templating import render

router = APIRouter()


@router.get("/about")
async def about_page(
    request: Request, db: AsyncSession = Depends(get_db), me: Current = Depends(current)
) -> Response:
    about = await instance.about(db)
    blocks = await domain_blocks.public_blocks(db)
    return await render(
        request, db, "about.html", {"title": "About", "about": about, "blocks": blocks}
    )
