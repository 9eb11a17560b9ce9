"""API fixtures: tokens minted through the OAuth service, and an ASGI client."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts.models import Account
from kith.config import Settings
from kith.oauth import service as oauth
from tests.world import running_app


async def token_for(db: AsyncSession, account: Account, scopes: str = "read write follow") -> str:
    """An access token of `account` with these scopes (as the Development page makes)."""
    issued = await oauth.create_personal_token(db, account, "tests", scopes)
    return issued.access_token


@pytest.fixture
async def api(settings: Settings, rt) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    async with running_app(settings) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
