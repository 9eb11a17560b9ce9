"""`kith emoji …`: the instance's custom emoji from the command line. The operator acts as an
admin without an account."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy
from kith.config import get_settings
from kith.errors import KithError

emoji_app = typer.Typer(help="Custom emoji: add, remove and list the instance's own.")
OPERATOR = policy.Viewer(account_id=None, is_admin=True)
T = TypeVar("T")


def _run(work: Callable[[AsyncSession], Awaitable[T]]) -> T:
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


@emoji_app.command("add")
def add(
    shortcode: Annotated[str, typer.Argument(help="Letters, digits and _, at least 2.")],
    file: Annotated[Path, typer.Argument(help="A PNG, GIF or WebP image (at most 256 KB).")],
) -> None:
    """Add the emoji :SHORTCODE: with the picture in FILE."""
    from kith.emojis import service as emojis

    try:
        with file.open("rb") as f:
            data = f.read(emojis.MAX_EMOJI_BYTES + 1)
    except OSError as exc:
        typer.echo(f"error: image: cannot read {file}: {exc.strerror}", err=True)
        raise typer.Exit(2) from None

    async def work(db: AsyncSession) -> str:
        return (await emojis.add_local(db, OPERATOR, shortcode, data)).shortcode

    typer.echo(f"added :{_run(work)}:")


@emoji_app.command("remove")
def remove(shortcode: Annotated[str, typer.Argument(help="The emoji's shortcode.")]) -> None:
    """Remove the emoji :SHORTCODE:."""
    from kith.emojis import service as emojis

    async def work(db: AsyncSession) -> None:
        await emojis.remove_local(db, OPERATOR, shortcode)

    _run(work)
    typer.echo(f"removed :{shortcode.strip(':')}:")


@emoji_app.command("list")
def list_() -> None:
    """The instance's emoji, one shortcode a line."""
    from kith.emojis import service as emojis

    async def work(db: AsyncSession) -> list[str]:
        return [e.shortcode for e in await emojis.list_local(db)]

    for code in _run(work):
        typer.echo(f":{code}:")
