"""What the sub-commands of `kith` share (`kith domain …`, `kith emoji …`): one session for a
piece of work, and the operator, who acts as an admin without an account."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy
from kith.config import get_settings
from kith.errors import KithError

OPERATOR = policy.Viewer(account_id=None, is_admin=True)
T = TypeVar("T")


def run_in_session(work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run `work` in a session of a runtime made for it; a KithError is printed as the
    command's error (exit status 2)."""
    from kith.runtime import Runtime

    async def main() -> T:
        rt = Runtime.from_settings(get_settings())
        try:
            async with rt.sessions() as db:
                return await work(db)
        finally:
            await rt.close()

    try:
        return asyncio.run(main())
    except KithError as err:
        typer.echo(f"error: {err.field + ': ' if err.field else ''}{err.message}", err=True)
        raise typer.Exit(2) from None
