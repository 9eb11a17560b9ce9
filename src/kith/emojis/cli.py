"""`kith emoji …`: the instance's custom emoji from the command line. The operator acts as an
admin without an account."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from kith.cli_support import OPERATOR, run_in_session

emoji_app = typer.Typer(help="Custom emoji: add, remove and list the instance's own.")


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

    typer.echo(f"added :{run_in_session(work)}:")


@emoji_app.command("remove")
def remove(shortcode: Annotated[str, typer.Argument(help="The emoji's shortcode.")]) -> None:
    """Remove the emoji :SHORTCODE:."""
    from kith.emojis import service as emojis

    async def work(db: AsyncSession) -> None:
        await emojis.remove_local(db, OPERATOR, shortcode)

    run_in_session(work)
    typer.echo(f"removed :{shortcode.strip(':')}:")


@emoji_app.command("list")
def list_() -> None:
    """The instance's emoji, one shortcode a line."""
    from kith.emojis import service as emojis

    async def work(db: AsyncSession) -> list[str]:
        return [e.shortcode for e in await emojis.list_local(db)]

    for code in run_in_session(work):
        typer.echo(f":{code}:")
