"""Where one inbox delivery spends its CPU and its statements: signed `Create(Note)` POSTs to
the shared inbox through the ASGI app in this process (no HTTP server, no concurrency), on a
fresh database, keys fetched from a scripted remote server by a warm-up round first (as in
bench/federation.py).

Prints CPU per delivery without the profiler, the SQL statements one delivery runs (counted
with a `before_cursor_execute` listener, the texts of the last one), then the functions where
the profiled run spent the most time.

    .venv/bin/python bench/profile_inbox.py                        # SQLite, 1,000 deliveries
    .venv/bin/python bench/profile_inbox.py --db postgres
    .venv/bin/python bench/profile_inbox.py --no-profile --requests 2000
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from seeded_databases import BENCH_VAR, REPO, create_pg_database, drop_pg_database
from sqlalchemy import event

from kith.app import create_app
from kith.config import Settings
from kith.migrate import upgrade

sys.path.insert(0, str(REPO))
from tests.federation.local_http import local_server  # noqa: E402
from tests.federation.peer import Peer  # noqa: E402

HOST = "kith.bench"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    p.add_argument("--actors", type=int, default=20)
    p.add_argument("--requests", type=int, default=1000)
    p.add_argument("--no-profile", action="store_true")
    p.add_argument("--top", type=int, default=40)
    p.add_argument("--save", type=Path, help="write the profile there (pstats format)")
    p.add_argument("--show-calls", action="store_true", help="print each SQLite thread call")
    p.add_argument(
        "--cpu-timer",
        action="store_true",
        help="profile this thread's CPU time, not wall time (waits for the GIL, the SQLite "
        "thread and a busy machine then count for nothing)",
    )
    return p.parse_args()


def _count_aiosqlite_calls(show: bool) -> list[int]:
    """Count the calls into aiosqlite's connection thread (each a hop between threads);
    `show`: print each one's name."""
    import aiosqlite.core

    counter = [0]
    original = aiosqlite.core.Connection._execute

    async def counted(self: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
        counter[0] += 1
        if show:
            print("  hop:", getattr(fn, "__qualname__", fn))
        return await original(self, fn, *args, **kwargs)

    aiosqlite.core.Connection._execute = counted  # type: ignore[method-assign]
    return counter


async def main(args: argparse.Namespace) -> None:
    var = BENCH_VAR / f"profile-inbox-{args.db}"
    var.mkdir(parents=True, exist_ok=True)
    pg_name = None
    if args.db == "postgres":
        url, pg_name = await create_pg_database()
    else:
        path = var / "kith.db"
        for stale in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            stale.unlink(missing_ok=True)
        url = f"sqlite+aiosqlite:///{path}"
    await asyncio.to_thread(upgrade, url)
    async with local_server("127.0.0.1") as remote:
        peer = Peer(remote)
        names = [f"far{i}" for i in range(args.actors)]
        for i, name in enumerate(names):
            peer.add_actor(name, key=i % 4)
        settings = Settings(
            database_url=url,
            var_dir=var,
            secret_key="x" * 40,
            domain=HOST,
            redis_url="",
            run_worker=False,
            federation_allowed_hosts=remote.authority,
        )

        def signed(name: str) -> tuple[dict[str, str], bytes]:
            activity = peer.activity(name, "Create", peer.note(name, "hello #bench"))
            activity["to"] = activity["object"]["to"]
            return peer.sign(activity, host=HOST)

        app = create_app(settings)
        async with app.router.lifespan_context(app):
            statements: list[str] = []
            engine = app.state.runtime.engine.sync_engine

            hops = _count_aiosqlite_calls(args.show_calls)

            @event.listens_for(engine, "before_cursor_execute")
            def count(*a: Any) -> None:
                statements.append(a[2])

            app_cpu = [0.0]

            async def timed(scope: Any, receive: Any, send: Any) -> None:
                """The app, its CPU counted (the client waits meanwhile: requests are
                sequential, so the process's CPU in here is the server's)."""
                t0 = time.process_time()
                try:
                    await app(scope, receive, send)
                finally:
                    app_cpu[0] += time.process_time() - t0

            transport = httpx.ASGITransport(app=timed)
            async with httpx.AsyncClient(transport=transport, base_url=f"http://{HOST}") as c:

                async def post(batch: list[tuple[dict[str, str], bytes]]) -> None:
                    for headers, body in batch:
                        r = await c.post("/inbox", content=body, headers=headers)
                        if r.status_code != 202:
                            raise RuntimeError(f"{r.status_code}: {r.text}")

                await post([signed(n) for n in names])  # warm-up: keys fetched and stored
                await post([signed(names[i % len(names)]) for i in range(50)])
                statements.clear()
                hops[0] = 0
                await post([signed(names[0])])
                # SQLAlchemy's statements; the inbox's one-hop writes on SQLite
                # (kith.sqlite_writes) bypass it and show as SQLite calls only.
                print(f"statements per delivery: {len(statements)} (SQLite calls: {hops[0]})")
                for s in statements:
                    print("   ", " ".join(s.split())[:160])
                batch = [signed(names[i % len(names)]) for i in range(args.requests)]
                statements.clear()
                app_cpu[0] = 0.0
                cpu0, wall0 = time.process_time(), time.perf_counter()
                await post(batch)
                cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
                print(
                    f"{args.requests} deliveries: {cpu * 1000 / args.requests:.2f} ms CPU "
                    f"(the app's: {app_cpu[0] * 1000 / args.requests:.2f} ms) and "
                    f"{wall * 1000 / args.requests:.2f} ms wall each "
                    f"({len(statements) / args.requests:.2f} statements each)"
                )
                if not args.no_profile:
                    batch = [signed(names[i % len(names)]) for i in range(args.requests)]
                    profiler = (
                        cProfile.Profile(time.thread_time) if args.cpu_timer else cProfile.Profile()
                    )
                    profiler.enable()
                    await post(batch)
                    profiler.disable()
                    if args.save:
                        profiler.dump_stats(args.save)
                    stats = pstats.Stats(profiler).sort_stats("cumulative")
                    stats.print_stats(args.top)
                    stats.sort_stats("tottime").print_stats(args.top)
    if pg_name:
        await drop_pg_database(pg_name)


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
