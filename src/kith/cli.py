"""The `kith` command: serve, worker, migrate, demo data and user administration."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Annotated, Any

import typer
from sqlalchemy import select

from kith.config import get_settings
from kith.emojis.cli import emoji_app
from kith.federation.cli import domain_app

app = typer.Typer(help="Kith: a self-hostable, federated social platform.", no_args_is_help=True)
user_app = typer.Typer(help="Manage local accounts (non-interactive, for operators and scripts).")
app.add_typer(user_app, name="user")
token_app = typer.Typer(help="Access tokens for scripts and bots (Mastodon API).")
app.add_typer(token_app, name="token")
app.add_typer(domain_app, name="domain")
app.add_typer(emoji_app, name="emoji")
community_app = typer.Typer(help="Manage micro-communities (for operators and scripts).")
app.add_typer(community_app, name="community")


def _logging() -> None:
    settings = get_settings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


@app.command()
def migrate() -> None:
    """Apply database migrations (creates the SQLite file under var/ when needed)."""
    from kith.migrate import upgrade

    upgrade(get_settings().effective_database_url)
    typer.echo("database is up to date")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind (default KITH_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default KITH_PORT).")] = None,
    worker: Annotated[bool, typer.Option(help="Run a job worker in this process too.")] = True,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="Web processes sharing the port (one per core). More than one needs "
            "KITH_REDIS_URL, so live updates reach every process.",
        ),
    ] = 1,
) -> None:
    """Serve the web app (with an in-process job worker unless --no-worker)."""
    import uvicorn

    from kith.app import create_app

    _logging()
    settings = get_settings()
    settings.run_worker = worker
    options: dict[str, Any] = dict(
        host=host or settings.host,
        port=port or settings.port,
        log_level=settings.log_level,
        # Open streams would hold a shutdown forever: give them a few seconds, then close.
        timeout_graceful_shutdown=5,
        proxy_headers=False,
        ws_per_message_deflate=settings.stream_compression,
    )
    if workers == 1:
        uvicorn.run(create_app(settings, settle_heap=True), **options)
        return
    if not settings.redis_url:
        raise typer.BadParameter(
            "several processes need KITH_REDIS_URL: without it a post made through one "
            "process would not reach live timelines served by another",
            param_hint="--workers",
        )
    # Each process builds its app from the environment: pass on what the options changed,
    # and make the generated secret before the processes start, so they all share it.
    settings.effective_secret_key()
    os.environ["KITH_RUN_WORKER"] = "true" if worker else "false"
    uvicorn.run("kith.app:create_served_app", factory=True, workers=workers, **options)


@app.command("worker")
def worker_command() -> None:
    """Run a job worker (start as many as you like, on any machine that reaches the database)."""
    from kith.jobs.worker import work_forever
    from kith.runtime import Runtime, settle_heap_now

    _logging()

    async def main() -> None:
        rt = Runtime.from_settings(get_settings())
        settle_heap_now()
        try:
            await work_forever(rt.sessions, idle_sleep=rt.settings.worker_idle_seconds)
        finally:
            await rt.close()

    asyncio.run(main())


@app.command()
def demo(
    force: Annotated[
        bool, typer.Option(help="Load even if the database already has accounts.")
    ] = False,
) -> None:
    """Load demo data (a small living community) into an empty database."""
    from kith.demo import load_demo

    _logging()
    typer.echo(asyncio.run(load_demo(get_settings(), force=force)))


@user_app.command("create")
def user_create(
    name: str,
    email: Annotated[str, typer.Option(help="Email address.")],
    password: Annotated[str, typer.Option(help="Password (≥ 10 characters, not a common one).")],
    admin: Annotated[bool, typer.Option(help="Make the account an admin.")] = False,
) -> None:
    """Create an active local account, whatever the registration mode."""
    from kith.accounts import service as accounts
    from kith.errors import KithError
    from kith.runtime import Runtime

    async def main() -> None:
        rt = Runtime.from_settings(get_settings())
        try:
            async with rt.sessions() as db:
                reg = await accounts.register(
                    db,
                    username=name,
                    email=email,
                    password=password,
                    admin=admin or None,
                    bypass_mode=True,
                )
                typer.echo(
                    f"created @{reg.account.username}{' (admin)' if reg.user.is_admin else ''}"
                )
        finally:
            await rt.close()

    try:
        asyncio.run(main())
    except KithError as err:
        typer.echo(f"error: {err.field or ''}: {err.message}", err=True)
        raise typer.Exit(2) from None


@user_app.command("list")
def user_list() -> None:
    """List local accounts: username, email, role and state."""
    from kith.accounts.models import Account, User
    from kith.runtime import Runtime

    async def main() -> None:
        rt = Runtime.from_settings(get_settings())
        try:
            async with rt.sessions() as db:
                rows = await db.execute(
                    select(Account, User)
                    .join(User, User.account_id == Account.id)
                    .order_by(Account.id)
                )
                for account, user in rows.all():
                    flags = [
                        f
                        for f, on in (
                            ("admin", user.is_admin),
                            ("suspended", account.suspended_at),
                            ("pending", user.state == "pending"),
                        )
                        if on
                    ]
                    typer.echo(f"{account.username}\t{user.email}\t{','.join(flags) or '-'}")
        finally:
            await rt.close()

    asyncio.run(main())


@user_app.command("suspend")
def user_suspend(name: str) -> None:
    """Suspend a local account: it can't sign in and its posts disappear."""
    from kith.moderation import service as moderation
    from kith.runtime import Runtime

    async def main() -> bool:
        rt = Runtime.from_settings(get_settings())
        try:
            async with rt.sessions() as db:
                return await moderation.suspend_by_name(db, name)
        finally:
            await rt.close()

    if not asyncio.run(main()):
        typer.echo(f"error: no local account named {name}", err=True)
        raise typer.Exit(2)
    typer.echo(f"suspended @{name}")


@user_app.command("delete")
def user_delete(
    name: str,
    yes: Annotated[bool, typer.Option("--yes", help="Don't ask for confirmation.")] = False,
) -> None:
    """Delete a local account for good: it is locked at once, what it made is removed by the
    worker, and the servers that know it are told. The username stays reserved. The last
    admin can't be deleted."""
    from kith.accounts import deletion
    from kith.errors import KithError
    from kith.runtime import Runtime

    if not yes:
        typer.confirm(f"Delete @{name} for good? This cannot be undone.", abort=True)

    async def main() -> str:
        rt = Runtime.from_settings(get_settings())
        try:
            async with rt.sessions() as db:
                account = await deletion.delete_by_name(db, name)
                return account.username
        finally:
            await rt.close()

    try:
        deleted = asyncio.run(main())
    except KithError as err:
        typer.echo(f"error: {err.message}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"deleted @{deleted}; the worker removes what it left")


@community_app.command("create")
def community_create(
    handle: Annotated[str, typer.Argument(help="The community's @handle (a–z, 0–9, _).")],
    name: Annotated[str, typer.Option(help="Its display name.")],
    owner: Annotated[str, typer.Option(help="Local account that will own it.")],
    membership: Annotated[
        str, typer.Option(help="How people join: open, approval, invite or private.")
    ] = "open",
) -> None:
    """Start a community owned by OWNER, whoever the instance lets found communities."""
    from kith.accounts import service as accounts
    from kith.communities import service as communities
    from kith.errors import KithError
    from kith.runtime import Runtime

    async def main() -> str:
        rt = Runtime.from_settings(get_settings())
        try:
            async with rt.sessions() as db:
                account = await accounts.find_local_account(db, owner)
                if account is None:
                    raise KithError(f"no local account named {owner}", field="owner")
                data = communities.CommunityInput(name=name, membership=membership)
                made = await communities.create_community(
                    db, account.id, handle, data, operator=True
                )
                return (
                    f"created community @{made.handle} ({made.membership}), "
                    f"owned by @{account.username}"
                )
        finally:
            await rt.close()

    try:
        typer.echo(asyncio.run(main()))
    except KithError as err:
        typer.echo(f"error: {err.field or ''}: {err.message}", err=True)
        raise typer.Exit(2) from None


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Argument(help="Application name the token belongs to.")],
    user: Annotated[str, typer.Option(help="Local account the token acts as.")],
    scopes: Annotated[
        str, typer.Option(help='Space-separated scopes, e.g. "read write follow".')
    ] = "read",
) -> None:
    """Create an application owned by USER and print its access token (as the Development
    settings page does)."""
    from kith.accounts import service as accounts
    from kith.errors import KithError
    from kith.oauth import service as oauth
    from kith.runtime import Runtime

    async def main() -> str:
        rt = Runtime.from_settings(get_settings())
        try:
            async with rt.sessions() as db:
                account = await accounts.find_local_account(db, user)
                if account is None:
                    raise KithError(f"no local account named {user}", field="user")
                issued = await oauth.create_personal_token(db, account, name, scopes)
                return issued.access_token
        finally:
            await rt.close()

    try:
        typer.echo(asyncio.run(main()))
    except KithError as err:
        typer.echo(f"error: {err.field or ''}: {err.message}", err=True)
        raise typer.Exit(2) from None


if __name__ == "__main__":
    app()
