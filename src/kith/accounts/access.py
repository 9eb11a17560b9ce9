"""Telling open live streams that someone's access may have ended.

A stream (Mastodon streaming API, the web pages' live updates) checks its token or session
once, when it opens; what ends access later — a revoked token or app, a refreshed token pair,
a sign-out, a password change or reset that ends other sessions, a suspension, an account
deletion — publishes `ACCESS_CHANGED` after its commit, and every stream it may concern asks
the database again whether its own credential is still live, closing if not. The event is a
hint that names no credential: the database decides, so a stream never closes for a change
that did not concern it, and a hint lost (a process restarting) costs at most the stream's
own next check (when the client subscribes again).

Channels: `user:<account id>` (the viewer's own channel, to which every signed-in stream
already listens) and, for a token acting as an app with no user (client_credentials),
`token:<token id>`. With Redis as the bus the hint reaches every process; with the
in-process bus only the process that made the change (so `kith user delete` run from a shell
reaches open streams only when the instance uses Redis)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncSession

from kith.runtime import runtime_of

ACCESS_CHANGED = "access.changed"


def user_channel(account_id: int) -> str:
    """The bus channel of one person's own events (notifications, filters, access)."""
    return f"user:{account_id}"


def token_channel(token_id: int) -> str:
    """The bus channel of a token that acts with no user (client_credentials)."""
    return f"token:{token_id}"


async def access_changed(db: AsyncSession, account_ids: Iterable[int]) -> None:
    """After a commit that may have ended some access of these accounts: have their open
    streams check their credentials again."""
    bus = runtime_of(db).bus
    for account_id in sorted(set(account_ids)):
        await bus.publish(user_channel(account_id), {"type": ACCESS_CHANGED})


async def tokens_ended(db: AsyncSession, tokens: Iterable[tuple[int, int | None]]) -> None:
    """After a commit that revoked these tokens ((token id, account id or None)): have the
    streams opened with them check again."""
    rows = list(tokens)
    await access_changed(db, [a for _, a in rows if a is not None])
    bus = runtime_of(db).bus
    for token_id in sorted({t for t, a in rows if a is None}):
        await bus.publish(token_channel(token_id), {"type": ACCESS_CHANGED})
