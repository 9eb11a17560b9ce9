"""Where one Mastodon API endpoint spends its CPU: requests through the ASGI app in this process
(no HTTP, no concurrency), on a copy of the seeded SQLite file of bench/api.py (run that first).

Prints CPU per request (process time: the event loop and aiosqlite's thread) without the
profiler, then the functions where the profiled run spent the most time.

    .venv/bin/python bench/profile_api.py                          # home, 200 requests
    .venv/bin/python bench/profile_api.py --path "/api/v1/timelines/public?local=true&limit=40"
    .venv/bin/python bench/profile_api.py --no-profile --requests 500
    .venv/bin/python bench/profile_api.py --no-profile --requests 300 --rounds 9   # median
    .venv/bin/python bench/profile_api.py --path /api/v1/statuses --post-json '{"status": "hi {i}"}'
    .venv/bin/python bench/profile_api.py --statements --no-profile     # SQL per request
    .venv/bin/python bench/profile_api.py --url postgresql+asyncpg://…/kith_bench_… --statements
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from api_probes import api_tokens
from seeded_databases import BENCH_VAR
from sqlalchemy import Engine, event, select

from kith.accounts.models import Account, User, UserState
from kith.app import create_app
from kith.config import Settings
from kith.runtime import Runtime


def _seeded_file() -> Path:
    cached = sorted((BENCH_VAR / "cache").glob("kith-*.db"), key=lambda p: p.stat().st_mtime)
    cached = [p for p in cached if ".seeding." not in p.name]
    if not cached:
        sys.exit("no seeded SQLite file: run bench/api.py --db sqlite first")
    return cached[-1]


async def main(args: argparse.Namespace) -> None:
    if args.url:
        url = args.url  # e.g. a PostgreSQL database kept by bench/api.py --keep-pg
    else:
        work = BENCH_VAR / "profile-api.db"
        for stale in (work, work.with_name(work.name + "-wal"), work.with_name(work.name + "-shm")):
            stale.unlink(missing_ok=True)
        shutil.copyfile(_seeded_file(), work)
        url = f"sqlite+aiosqlite:///{work}"
    settings = Settings(
        database_url=url,
        var_dir=BENCH_VAR / "profile-var",
        run_worker=False,
    )
    rt = Runtime.from_settings(settings)
    async with rt.sessions() as db:
        readers = (
            await db.scalars(
                select(Account.id)
                .join(User, User.account_id == Account.id)
                .where(User.state == UserState.ACTIVE)
                .order_by(Account.id)
                .limit(args.readers)
            )
        ).all()
    tokens = list((await api_tokens(rt, list(readers))).values())
    await rt.close()

    app = create_app(settings, settle_heap=args.settle_heap)  # as `kith serve` does
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=settings.base_url) as client:

            async def run(n: int) -> tuple[float, float]:
                start, start_main = time.process_time(), time.thread_time()
                for i in range(n):
                    headers = {"Authorization": f"Bearer {tokens[i % len(tokens)]}"}
                    if args.post_json:
                        body = json.loads(args.post_json.replace("{i}", str(i)))
                        r = await client.post(args.path, json=body, headers=headers)
                    else:
                        r = await client.get(args.path, headers=headers)
                    if r.status_code != 200:
                        sys.exit(f"{r.status_code}: {r.text[:300]}")
                main = time.thread_time() - start_main
                return (time.process_time() - start) / n, main / n

            await run(args.warmup)
            statements = _count_statements() if args.statements else None
            rounds = [await run(args.requests) for _ in range(args.rounds)]
            per, main = sorted(rounds)[len(rounds) // 2]
            if statements is not None:
                _print_statements(statements, args.requests * args.rounds)
            spread = ""
            if args.rounds > 1:
                low, high = min(rounds)[0], max(rounds)[0]
                spread = f"; median of {args.rounds} rounds, {low * 1000:.2f}-{high * 1000:.2f}"
            print(
                f"{args.path}: {per * 1000:.2f} ms CPU per request, {main * 1000:.2f} ms of it on"
                f" the event loop's thread (the rest: the database's threads) ({args.requests}"
                f" requests, the test client included{spread})"
            )
            if args.profile:
                # The event loop thread's CPU time, not wall time: a thread hand-off that
                # waits for the other core must not show as work.
                prof = cProfile.Profile(time.thread_time)
                prof.enable()
                await run(args.requests)
                prof.disable()
                if args.dump:
                    prof.dump_stats(args.dump)
                stats = pstats.Stats(prof).strip_dirs()
                stats.sort_stats("tottime").print_stats(args.top)
                stats.sort_stats("cumulative").print_stats(args.top)


def _count_statements() -> dict[str, list[float]]:
    """From now on: each distinct statement's count and database time (all engines)."""
    seen: dict[str, list[float]] = {}

    @event.listens_for(Engine, "before_cursor_execute")
    def before(conn: Any, _cur: Any, _stmt: str, _params: Any, _ctx: Any, _many: bool) -> None:
        conn.info["kith_started"] = time.perf_counter()

    @event.listens_for(Engine, "after_cursor_execute")
    def after(conn: Any, _cur: Any, stmt: str, _params: Any, _ctx: Any, _many: bool) -> None:
        took = time.perf_counter() - conn.info.pop("kith_started", time.perf_counter())
        entry = seen.setdefault(" ".join(stmt.split())[:120], [0, 0.0])
        entry[0] += 1
        entry[1] += took

    return seen


def _print_statements(seen: dict[str, list[float]], requests: int) -> None:
    total = sum(n for n, _ in seen.values()) / requests
    print(f"statements per request: {total:.1f} (count, ms of database time, per request)")
    for stmt, (n, took) in sorted(seen.items(), key=lambda kv: -kv[1][0]):
        print(f"  {n / requests:5.2f} {took / requests * 1000:7.3f}  {stmt}")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--path", default="/api/v1/timelines/home?limit=40")
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure this many rounds of --requests and print the median (a noisy machine)",
    )
    p.add_argument("--readers", type=int, default=64)
    p.add_argument("--top", type=int, default=45)
    p.add_argument("--dump", help="also write the profile here (pstats format)")
    p.add_argument("--no-profile", dest="profile", action="store_false")
    p.add_argument(
        "--no-settle-heap",
        dest="settle_heap",
        action="store_false",
        help="leave start-up's objects to the cyclic collector (as before session 6)",
    )
    p.add_argument("--statements", action="store_true", help="count the SQL of each request")
    p.add_argument(
        "--url",
        help="a seeded database to use as it is (PostgreSQL: one kept by bench/api.py --keep-pg;"
        " its writes stay) instead of a copy of the cached SQLite seed",
    )
    p.add_argument(
        "--post-json",
        help='POST this JSON body instead of a GET ("{i}" is replaced by the request number), e.g.'
        ' --path /api/v1/statuses --post-json \'{"status": "hello #kith {i}"}\'',
    )
    asyncio.run(main(p.parse_args()))
