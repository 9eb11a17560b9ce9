"""Alembic environment: runs migrations over the async engine of the configured database."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from kith.db import make_engine
from kith.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _main() -> None:
    engine = make_engine(config.get_main_option("sqlalchemy.url") or "")
    async with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            # SQLite rebuilds a table to change it (batch operations, 0008): with foreign
            # keys on, dropping the old table would delete the rows that refer to it. The
            # pragma only takes effect outside a transaction; 0008 checks the keys itself.
            # (This engine is disposed afterwards: no connection keeps the setting.)
            await conn.exec_driver_sql("PRAGMA foreign_keys = OFF")
            await conn.commit()
        async with conn.begin():
            await conn.run_sync(_run)
    await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported")
asyncio.run(_main())
