"""Make the benchmark databases: migrate, bulk-load a seeded world, cache (SQLite) or drop
(PostgreSQL) them.

SQLite: the seeded file is cached under var/bench/cache/, keyed by the scale and a fingerprint
of the migrations, and each run works on a fresh copy (the benchmark writes posts and sessions).
PostgreSQL: a throwaway database on the test server per run, copied (`CREATE DATABASE …
TEMPLATE`) from a kept seeded one (`kith_seed_<scale>_<fingerprint>`), which is loaded with COPY
(asyncpg's copy_records_to_table) and VACUUM ANALYZEd as autovacuum would, once per schema.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from seed_world import Scale, World, complete_rows, encode_json_values, facts_to_json
from sqlalchemy import create_engine, event, text
from sqlalchemy.ext.asyncio import create_async_engine

from kith.migrate import MIGRATIONS_DIR, upgrade

REPO = Path(__file__).resolve().parent.parent
BENCH_VAR = REPO / "var" / "bench"
SEED_VERSION = "1"  # bump when the world's shape changes, to invalidate cached files
PG_ADMIN_URL = os.environ.get(
    "KITH_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)


@dataclass
class Prepared:
    """A seeded database ready to be measured."""

    backend: str
    url: str
    seed_seconds: float | None  # None when a cached file was reused
    world: dict[str, Any]
    pg_name: str | None = None


def schema_fingerprint() -> str:
    """Changes whenever a migration file (or the seeder's version) changes."""
    h = hashlib.sha256(SEED_VERSION.encode())
    for path in sorted((MIGRATIONS_DIR / "versions").glob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:10]


def _log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --- SQLite ------------------------------------------------------------------------------


def _load_sqlite(path: Path, scale: Scale) -> dict[str, Any]:
    """Bulk-load the world with Core executemany, in one write transaction per batch."""
    engine = create_engine(f"sqlite:///{path}")

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        # A throwaway load: no fsyncs, a big page cache. Foreign keys stay off (pysqlite's
        # default); the generator writes parents first anyway.
        cur.execute("PRAGMA synchronous=OFF")
        cur.execute("PRAGMA cache_size=-262144")
        cur.execute("PRAGMA temp_store=MEMORY")
        cur.close()

    world = World(scale)
    with engine.connect() as conn:
        for table, rows in world.batches():
            conn.execute(table.insert(), complete_rows(table, rows))
            conn.commit()
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return facts_to_json(world.facts())


def prepare_sqlite(scale: Scale, *, reseed: bool, work_name: str = "run-sqlite.db") -> Prepared:
    """A working copy of the cached seeded SQLite file (seeding it first when needed), named
    `work_name` under var/bench/ (benchmarks that may run side by side use their own)."""
    cache_dir = BENCH_VAR / "cache"
    cache_dir.mkdir(parents=True, exist_ok=True)
    cache = cache_dir / f"kith-{scale.key}-{schema_fingerprint()}.db"
    sidecar = cache.with_suffix(".json")
    seconds: float | None = None
    if reseed or not cache.exists() or not sidecar.exists():
        tmp = cache.with_suffix(".seeding.db")
        for p in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
            p.unlink(missing_ok=True)
        _log(f"seeding SQLite {scale.key} into {tmp.name}")
        t0 = time.perf_counter()
        upgrade(f"sqlite+aiosqlite:///{tmp}")
        facts = _load_sqlite(tmp, scale)
        seconds = time.perf_counter() - t0
        facts["seed_seconds"] = round(seconds, 1)
        sidecar.write_text(json.dumps(facts, indent=1))
        tmp.rename(cache)
        for stale in cache_dir.glob(f"kith-{scale.key}-*"):  # older schemas of this scale
            if stale.stem != cache.stem:
                stale.unlink()
        _log(f"seeded SQLite in {seconds:.0f} s ({cache.stat().st_size / 1e6:.0f} MB)")
    else:
        _log(f"reusing cached {cache.name}")
    work = BENCH_VAR / work_name
    for p in (work, Path(f"{work}-wal"), Path(f"{work}-shm")):
        p.unlink(missing_ok=True)
    shutil.copyfile(cache, work)
    world = json.loads(sidecar.read_text())
    world["file_mb"] = round(cache.stat().st_size / 1e6)
    return Prepared("sqlite", f"sqlite+aiosqlite:///{work}", seconds, world)


# --- PostgreSQL --------------------------------------------------------------------------


async def _admin(sql: str) -> None:
    admin = create_async_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(sql))
    await admin.dispose()


async def create_pg_database() -> tuple[str, str]:
    """A fresh, uniquely named database on the test server."""
    name = f"kith_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    await _admin(f'CREATE DATABASE "{name}"')
    return f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}", name


async def drop_pg_database(name: str) -> None:
    await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def asyncpg_dsn(url: str) -> str:
    """The SQLAlchemy URL as asyncpg wants it."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def _load_postgres(url: str, scale: Scale) -> dict[str, Any]:
    """Bulk-load the world with COPY, then VACUUM ANALYZE (what autovacuum would get to)."""
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        world = World(scale)
        for table, rows in world.batches():
            full = encode_json_values(table, complete_rows(table, rows))
            cols = [c.name for c in table.columns]
            await conn.copy_records_to_table(
                table.name, records=[tuple(r[c] for c in cols) for r in full], columns=cols
            )
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()
    return facts_to_json(world.facts())


def prepare_postgres(scale: Scale, *, reseed: bool = False) -> Prepared:
    """A throwaway PostgreSQL database, migrated and seeded (drop it with drop_pg_database):
    a copy (`CREATE DATABASE … TEMPLATE`, seconds) of a kept seeded database named after the
    scale and the schema's fingerprint, seeded first when missing (minutes). Seeded databases
    of this scale under another fingerprint are dropped."""
    import asyncio

    template = f"kith_seed_{scale.key.replace('-', '_')}_{schema_fingerprint()}"[:63]
    seconds: float | None = None
    existing = asyncio.run(_seeded_databases(scale))
    if reseed or template not in existing:
        if template in existing:
            asyncio.run(drop_pg_database(template))
        _log(f"seeding PostgreSQL {scale.key} into {template}")
        t0 = time.perf_counter()
        seeding = f"{template[:54]}_seeding"
        asyncio.run(drop_pg_database(seeding))
        asyncio.run(_admin(f'CREATE DATABASE "{seeding}"'))
        url = f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{seeding}"
        try:
            upgrade(url)
            facts = asyncio.run(_load_postgres(url, scale))
            facts["seed_seconds"] = round(time.perf_counter() - t0, 1)
            comment = json.dumps(facts).replace("'", "''")
            asyncio.run(_admin(f"COMMENT ON DATABASE \"{seeding}\" IS '{comment}'"))
            asyncio.run(_admin(f'ALTER DATABASE "{seeding}" RENAME TO "{template}"'))
        except BaseException:
            asyncio.run(drop_pg_database(seeding))
            raise
        for stale in existing:  # this scale under an older schema
            if stale != template:
                asyncio.run(drop_pg_database(stale))
        seconds = time.perf_counter() - t0
        _log(f"seeded PostgreSQL in {seconds:.0f} s")
    else:
        _log(f"reusing seeded {template}")
    name = f"kith_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    facts = json.loads(asyncio.run(_comment_of(template)) or "{}")
    return Prepared(
        "postgres", f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}", seconds, facts, pg_name=name
    )


async def _seeded_databases(scale: Scale) -> list[str]:
    prefix = f"kith_seed_{scale.key.replace('-', '_')}_"
    conn = await asyncpg.connect(asyncpg_dsn(PG_ADMIN_URL))
    try:
        rows = await conn.fetch("SELECT datname FROM pg_database")
    finally:
        await conn.close()
    return [r["datname"] for r in rows if r["datname"].startswith(prefix)]


async def _comment_of(database: str) -> str | None:
    conn = await asyncpg.connect(asyncpg_dsn(PG_ADMIN_URL))
    try:
        return await conn.fetchval(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1",
            database,
        )
    finally:
        await conn.close()
