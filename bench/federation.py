"""Federation benchmark, inbox side (issue 4, "Speed"): how many signed activities one
`kith serve` process verifies and stores per second, and how many one worker then processes.

1. A scripted remote server (tests/federation/local_http.py, real HTTP on loopback) serves
   --actors actor documents with their keys; a local person follows every one of them, so
   their posts are wanted here and processing stores them.
2. --activities `Create(Note)` deliveries, each signed like Mastodon signs them (cavage,
   rsa-sha256, Digest), are POSTed to the shared inbox of `kith serve --no-worker` from
   --concurrency keep-alive connections (keys were fetched and cached by a warm-up round
   first, as they are after the first delivery from a server). Every request is signed and
   turned into bytes beforehand and written on plain sockets, so the load generator takes
   little of the cores the server runs on (--httpx-client: send with httpx, which cost more
   CPU per request than the server). Measured: activities stored per second, latency, and
   the server's CPU per activity. Target: ≥ 500/s on one process.
3. `kith worker` then processes the stored activities; measured: activities processed per
   second by that one worker process (its CPU too), until no inbox job is left.

    .venv/bin/python bench/federation.py                      # SQLite, 3,000 activities
    .venv/bin/python bench/federation.py --db postgres --activities 5000
    .venv/bin/python bench/federation.py --json var/bench/federation.json
    .venv/bin/python bench/federation.py --db postgres --skip-processing   # the inbox only

A burst of 200 deliveries at full concurrency precedes the measured ones (the server's pool
then holds what the run needs). On PostgreSQL the run also reports the backends' CPU and the
sessions opened. The delivery side is bench/delivery.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
from api_probes import cpu_of, cpu_spent, process_tree
from seeded_databases import BENCH_VAR, REPO, create_pg_database, drop_pg_database
from sqlalchemy import func, select
from timeline_probes import Server, _pg_backend_pids

from kith.accounts import service as accounts
from kith.accounts.models import Account
from kith.config import Settings
from kith.graph.models import Follow
from kith.jobs.models import Job
from kith.migrate import upgrade
from kith.posts.models import Post
from kith.runtime import Runtime

sys.path.insert(0, str(REPO))
from tests.federation.local_http import local_server  # noqa: E402
from tests.federation.peer import Peer  # noqa: E402


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    p.add_argument("--actors", type=int, default=20, help="remote actors (distinct keys: 4)")
    p.add_argument("--activities", type=int, default=3000)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--json", type=Path)
    p.add_argument(
        "--httpx-client",
        action="store_true",
        help="send the measured deliveries with httpx, as before session 6 (the client then "
        "takes as much CPU as the server)",
    )
    p.add_argument(
        "--skip-processing", action="store_true", help="measure the inbox only (no worker run)"
    )
    return p.parse_args()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


async def _post_all_raw(
    base: str, requests: list[tuple[dict[str, str], bytes]], concurrency: int
) -> tuple[list[float], dict[str, int], float]:
    """`_post_all` with each request's bytes made beforehand and written on plain keep-alive
    sockets: the measured window pays no HTTP client (httpx cost ~1.5 ms of CPU per request,
    more than the server's own work, on the same two cores)."""
    split = urlsplit(base)
    raw = []
    for headers, body in requests:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        raw.append(
            f"POST /inbox HTTP/1.1\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode() + body
        )
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    todo = iter(raw)

    async def client() -> None:
        reader, writer = await asyncio.open_connection(split.hostname, split.port)
        try:
            for request in todo:
                t0 = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                status = head.split(b" ", 2)[1].decode()
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                if length:
                    await reader.readexactly(length)
                latencies.append(time.perf_counter() - t0)
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return latencies, statuses, time.perf_counter() - t0


async def _post_all(
    base: str, requests: list[tuple[dict[str, str], bytes]], concurrency: int
) -> tuple[list[float], dict[str, int], float]:
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    todo = iter(requests)

    async def client() -> None:
        async with httpx.AsyncClient(base_url=base, timeout=60) as c:
            for headers, body in todo:
                t0 = time.perf_counter()
                r = await c.post("/inbox", content=body, headers=headers)
                latencies.append(time.perf_counter() - t0)
                statuses[str(r.status_code)] = statuses.get(str(r.status_code), 0) + 1

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return latencies, statuses, time.perf_counter() - t0


async def _count_inbox_jobs(rt: Runtime) -> int:
    async with rt.sessions() as db:
        return int(
            await db.scalar(
                select(func.count()).select_from(Job).where(Job.kind == "federation.inbox")
            )
            or 0
        )


async def main(args: argparse.Namespace) -> dict[str, Any]:
    var = BENCH_VAR / f"federation-{args.db}"
    var.mkdir(parents=True, exist_ok=True)
    pg_name = None
    if args.db == "postgres":
        url, pg_name = await create_pg_database()
    else:
        path = var / "kith.db"
        path.unlink(missing_ok=True)
        url = f"sqlite+aiosqlite:///{path}"
    await asyncio.to_thread(upgrade, url)
    result: dict[str, Any] = {"db": args.db, "activities": args.activities}
    async with local_server("127.0.0.1") as remote:
        peer = Peer(remote)
        names = [f"far{i}" for i in range(args.actors)]
        for i, name in enumerate(names):
            peer.add_actor(name, key=i % 4)
        env = {
            "KITH_FEDERATION_ALLOWED_HOSTS": remote.authority,
            "KITH_FEDERATION_ALLOW_PRIVATE": "false",
        }
        server = Server(url, var, extra_env=env)
        host = f"127.0.0.1:{server.port}"
        settings = Settings(
            database_url=url, var_dir=var, secret_key="x" * 40, domain=host, redis_url=""
        )
        rt = Runtime.from_settings(settings)
        try:
            await server.ready()

            def signed(name: str) -> tuple[dict[str, str], bytes]:
                activity = peer.activity(name, "Create", peer.note(name, "hello #bench"))
                activity["to"] = activity["object"]["to"]
                return peer.sign(activity, host=host)

            # Warm-up: each actor delivers once, so Kith fetches and stores its key.
            _, statuses, _ = await _post_all(server.base, [signed(n) for n in names], 4)
            if set(statuses) != {"202"}:
                raise RuntimeError(f"warm-up deliveries answered {statuses}: see {server.log}")
            # A local person follows every remote actor: their posts are wanted here.
            async with rt.sessions() as db:
                reg = await accounts.register(
                    db,
                    username="reader",
                    email="reader@example.test",
                    password="correct horse battery",
                    bypass_mode=True,
                )
                remote_ids = (
                    await db.scalars(select(Account.id).where(Account.domain != ""))
                ).all()
                db.add_all(Follow(follower_id=reg.account.id, followee_id=i) for i in remote_ids)
                await db.commit()
            result["remote_accounts"] = len(remote_ids)
            batch = [signed(names[i % len(names)]) for i in range(args.activities)]
            # A burst at full concurrency first, so the server's pool holds what the run needs.
            await _post_all(
                server.base, [signed(names[i % len(names)]) for i in range(200)], args.concurrency
            )
            jobs_before = await _count_inbox_jobs(rt)
            tree = process_tree(server.pid)
            backends = await _pg_backend_pids(url) if pg_name else []
            sessions0 = await _pg_sessions(url) if pg_name else 0
            cpu0, db_cpu0, client_cpu0 = cpu_of(tree), cpu_of(backends), time.process_time()
            post_all = _post_all if args.httpx_client else _post_all_raw
            latencies, statuses, wall = await post_all(server.base, batch, args.concurrency)
            client_cpu = time.process_time() - client_cpu0
            cpu, db_cpu = cpu_spent(cpu0, cpu_of(tree)), cpu_spent(db_cpu0, cpu_of(backends))
            stored = await _count_inbox_jobs(rt) - jobs_before
            result["inbox"] = {
                "statuses": statuses,
                "stored": stored,
                "wall_s": round(wall, 2),
                "stored_per_s": round(stored / wall, 1),
                "latency_ms": {
                    "p50": round(statistics.median(latencies) * 1000, 2),
                    "p99": round(percentile(latencies, 0.99) * 1000, 2),
                },
                "server_cpu_ms_per_activity": round(cpu * 1000 / max(1, len(latencies)), 2),
                # this process: the HTTP clients, competing with the server for the cores
                "client_cpu_ms_per_activity": round(client_cpu * 1000 / max(1, len(latencies)), 2),
            }
            if pg_name:
                # Backends that lived through the run (not ones opened and closed during it:
                # `sessions_opened` counts those).
                result["inbox"]["db_cpu_ms_per_activity"] = round(
                    db_cpu * 1000 / max(1, len(latencies)), 2
                )
                result["inbox"]["sessions_opened"] = await _pg_sessions(url) - sessions0
        finally:
            server.stop()
        if args.skip_processing:
            await rt.close()
            if pg_name:
                await drop_pg_database(pg_name)
            return result
        # Processing: one `kith worker` process drains the inbox jobs.
        worker_env = {k: v for k, v in os.environ.items() if not k.startswith("KITH_")}
        worker_env.update(
            KITH_DATABASE_URL=url,
            KITH_VAR_DIR=str(var),
            KITH_SECRET_KEY="bench-secret-not-for-production",
            KITH_DOMAIN=host,
            KITH_LOG_LEVEL="warning",
            KITH_WORKER_IDLE_SECONDS="0.1",
            **env,
        )
        kith = Path(sys.executable).with_name("kith")
        posts_before = await _count_posts(rt)
        t0 = time.perf_counter()
        worker = subprocess.Popen(  # noqa: ASYNC220 (started once)
            [str(kith), "worker"],
            env=worker_env,
            stdout=(var / "worker.log").open("w"),
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 600
            # Polling the database is the point here: the worker is another process.
            while await _count_inbox_jobs(rt) > 0 and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.2)
            wall = time.perf_counter() - t0
            cpu = sum(cpu_of([worker.pid]).values())
        finally:
            worker.terminate()
            worker.wait(15)
        processed = result["inbox"]["stored"] + args.actors
        result["processing"] = {
            "wall_s": round(wall, 2),
            "processed_per_s": round(processed / wall, 1),
            "posts_stored": await _count_posts(rt) - posts_before,
            "worker_cpu_ms_per_activity": round(cpu * 1000 / max(1, processed), 2),
            "left": await _count_inbox_jobs(rt),
        }
        await rt.close()
    if pg_name:
        await drop_pg_database(pg_name)
    return result


async def _pg_sessions(database_url: str) -> int:
    """Sessions PostgreSQL has opened on this database so far (pg_stat_database)."""
    name = database_url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute("SELECT pg_stat_force_next_flush()")
        value = await conn.fetchval(
            "SELECT sessions FROM pg_stat_database WHERE datname = $1", name
        )
    finally:
        await conn.close()
    return int(value or 0)


async def _count_posts(rt: Runtime) -> int:
    async with rt.sessions() as db:
        return int(await db.scalar(select(func.count()).select_from(Post)) or 0)


if __name__ == "__main__":
    arguments = parse_args()
    out = asyncio.run(main(arguments))
    print(json.dumps(out, indent=2))
    if arguments.json:
        arguments.json.parent.mkdir(parents=True, exist_ok=True)
        arguments.json.write_text(json.dumps(out, indent=2))
