"""Which remote hosts this instance refuses to federate with (admin domain blocks)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession


async def domain_is_blocked(db: AsyncSession, host: str) -> bool:
    """True if activities from `host` (an authority such as "example.com" or
    "127.0.0.2:8001") must be refused outright (an admin's suspend-level domain block).

    A seam for now: there is no domain-block table yet, so nothing is blocked. The inbox
    already asks this before it fetches keys or stores anything."""
    return False
