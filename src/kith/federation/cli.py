"""`kith domain …`: domain blocks from the command line (operators and scripts). The operator
acts as an admin without an account (`created_by` stays empty)."""

from __future__ import annotations

from typing import Annotated

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from kith.cli_support import OPERATOR, run_in_session

domain_app = typer.Typer(help="Domain blocks: suspend or silence remote servers, reject media.")


@domain_app.command("block")
def block(
    domain: Annotated[str, typer.Argument(help="The domain (its subdomains are covered too).")],
    severity: Annotated[str, typer.Option(help="suspend, silence or none.")] = "suspend",
    reject_media: Annotated[bool, typer.Option(help="Do not fetch its media files.")] = False,
    reason: Annotated[str, typer.Option(help="Public reason, shown on /about.")] = "",
    note: Annotated[str, typer.Option(help="Private note for admins.")] = "",
) -> None:
    """Block DOMAIN, or change its block."""
    from kith.federation import domain_blocks

    async def work(db: AsyncSession) -> str:
        b = await domain_blocks.block_domain(
            db,
            OPERATOR,
            domain,
            severity=severity,
            reject_media=reject_media,
            public_comment=reason,
            private_comment=note,
        )
        return b.domain

    typer.echo(f"{severity} {run_in_session(work)}{' (media rejected)' if reject_media else ''}")


@domain_app.command("unblock")
def unblock(domain: Annotated[str, typer.Argument(help="The blocked domain.")]) -> None:
    """Lift the block of DOMAIN."""
    from kith.federation import domain_blocks

    async def work(db: AsyncSession) -> None:
        await domain_blocks.unblock_domain(db, OPERATOR, domain)

    run_in_session(work)
    typer.echo(f"unblocked {domain}")


@domain_app.command("list")
def list_blocks() -> None:
    """List blocks: domain, severity, media, public reason, private note (tab-separated)."""
    from kith.federation import domain_blocks

    async def work(db: AsyncSession) -> list[str]:
        return [
            "\t".join(
                (
                    b.domain,
                    b.severity,
                    "reject_media" if b.reject_media else "-",
                    b.public_comment or "-",
                    b.private_comment or "-",
                )
            )
            for b in await domain_blocks.list_blocks(db, OPERATOR)
        ]

    for line in run_in_session(work):
        typer.echo(line)
