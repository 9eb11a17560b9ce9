"""Mastodon API benchmarks (issue 3, "Speed"): seed a community, then load a real `kith serve`
over HTTP on SQLite and PostgreSQL, with one and with several web processes.

Phases (--phases, any subset, in this order), each against the same server:
1. home:   GET /api/v1/timelines/home?limit=40, 16 keep-alive connections (wrk), each request
           with the Bearer token of one of --readers people in turn; p50/p90/p99, requests/s,
           non-2xx, socket errors, and server CPU per request (the `kith serve` process and all
           its descendants, i.e. uvicorn's workers; on PostgreSQL also the backends' CPU).
           Targets: p50 ≤ 15 ms, p99 ≤ 60 ms, server CPU ≤ 8 ms per request.
2. public: GET /api/v1/timelines/public?local=true&limit=40, the same way and targets.
3. post:   POST /api/v1/statuses (JSON: two @mentions of real people, two hashtags, 85 % public)
           from --authors people in turn, at 16 connections (target ≥ 200 requests/s,
           p99 ≤ 100 ms), then at 4 (latency when not saturated).
4. stream: --ws-clients WebSockets on /api/v1/streaming?stream=user, each with the token of a
           distinct follower of the seed's most followed account (as many as it has, when
           fewer); once all are connected, that account posts --ws-posts times through the
           API; the share of clients whose `update` event arrived within 250 ms of the POST's
           response (target 99 %), delivery p50/p90/p99/max, clients that never got it.

Every request carries a token, and tokens rotate so that no one nears the API's rate limit
(1,500 requests / 5 min per token, counted per server process): any 429 is reported.
Needs wrk (Debian package `wrk`; `make bench` installs it).

    .venv/bin/python bench/api.py                # full scale, both databases, 1 and 2 workers
    .venv/bin/python bench/api.py --quick --db sqlite --workers 1
    .venv/bin/python bench/api.py --db postgres --phases home,public --duration 30
    .venv/bin/python bench/api.py --phases stream --ws-clients 2000
    .venv/bin/python bench/api.py --json var/bench/api.json
    .venv/bin/python bench/api.py --from-json var/bench/api.json   # tables again

--workers 2 (or more) runs `kith serve --workers N` with Redis as the bus (KITH_BENCH_REDIS_URL,
or what scripts/test-redis-url prints), under a key prefix of its own. The seeded SQLite file
is shared with bench/timelines.py (var/bench/cache/), worked on as var/bench/run-api-sqlite.db;
PostgreSQL gets a throwaway copy per run of a kept seeded database (seeded once per schema).
The run lowers its own priority (--nice).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import uvloop
from api_probes import (
    api_tokens,
    get_script,
    measure_wrk,
    most_followed,
    post_script,
    raise_open_file_limit,
    stream_delivery,
    tree_rss_mb,
)
from seed_world import Scale
from seeded_databases import (
    BENCH_VAR,
    REPO,
    Prepared,
    drop_pg_database,
    prepare_postgres,
    prepare_sqlite,
)
from sqlalchemy import select
from timeline_probes import Server
from timelines import _save, machine, markdown, report

from kith.accounts.models import Account, User, UserState
from kith.config import Settings
from kith.posts.models import Tag
from kith.runtime import Runtime

PHASES = ("home", "public", "post", "stream")
TIMELINE_PATHS = {
    "home": "/api/v1/timelines/home?limit=40",
    "public": "/api/v1/timelines/public?local=true&limit=40",
}
TARGETS = {
    "p50_ms": 15.0,
    "p99_ms": 60.0,
    "cpu_ms": 8.0,
    "posts_per_s": 200.0,
    "post_p99_ms": 100.0,
}
T = TypeVar("T")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    p.add_argument("--accounts", type=int, default=10_000)
    p.add_argument("--posts", type=int, default=1_000_000)
    p.add_argument("--follows", type=int, default=150, help="mean follows per account")
    p.add_argument("--seed", type=int, default=20240501, help="random seed of the world")
    p.add_argument(
        "--quick", action="store_true", help="smoke run: 1,000 accounts, 50,000 posts, 5 s runs"
    )
    p.add_argument(
        "--reseed",
        action="store_true",
        help="rebuild the cached seeded database (SQLite file, PostgreSQL template)",
    )
    p.add_argument("--phases", default=",".join(PHASES), help="comma-separated subset")
    p.add_argument("--workers", default="1,2", help="web process counts, each measured apart")
    p.add_argument("--duration", type=float, help="seconds of each measured wrk run (20)")
    p.add_argument("--warmup", type=float, help="seconds of wrk before each measured run (5)")
    p.add_argument("--connections", type=int, default=16, help="wrk connections")
    p.add_argument("--post-light-connections", type=int, default=4, help="0 skips that run")
    p.add_argument("--wrk-threads", type=int, default=2)
    p.add_argument("--readers", type=int, default=64, help="people whose tokens read timelines")
    p.add_argument("--authors", type=int, default=200, help="people whose tokens post")
    p.add_argument("--ws-clients", type=int, default=1000)
    p.add_argument("--ws-posts", type=int, default=5, help="posts by the followed account")
    p.add_argument("--ws-interval", type=float, default=2.0, help="seconds between them")
    p.add_argument("--ws-settle", type=float, default=1.0, help="seconds after all handshakes")
    p.add_argument("--ws-deadline", type=float, default=10.0, help="later than this = missed")
    p.add_argument("--ws-handshakes", type=int, default=50, help="handshakes in flight at once")
    p.add_argument("--ws-no-deflate", action="store_true", help="no permessage-deflate")
    p.add_argument("--nice", type=int, default=10, help="lower this process's priority by N")
    p.add_argument("--keep-pg", action="store_true", help="do not drop the PostgreSQL database")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--from-json", type=Path, help="only print the report of a saved run")
    args = p.parse_args(argv)
    if args.quick:
        args.accounts, args.posts = 1_000, 50_000
    args.duration = args.duration or (5.0 if args.quick else 20.0)
    args.warmup = args.warmup if args.warmup is not None else (2.0 if args.quick else 5.0)
    args.phase_list = [ph for ph in PHASES if ph in args.phases.split(",")]
    unknown = set(args.phases.split(",")) - set(PHASES)
    if unknown:
        p.error(f"unknown phases: {', '.join(sorted(unknown))}")
    args.worker_counts = [int(w) for w in args.workers.split(",")]
    return args


def run(coro: Coroutine[Any, Any, T]) -> T:
    """uvloop, as `kith serve` uses: the load side's own event loop costs less CPU."""
    return uvloop.run(coro)


def redis_url() -> str:
    """Redis for several web processes: KITH_BENCH_REDIS_URL or the test suite's server."""
    url = os.environ.get("KITH_BENCH_REDIS_URL")
    if url:
        return url
    out = subprocess.run(
        [str(REPO / "scripts" / "test-redis-url")], capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


# --- the people who take part ------------------------------------------------------------


async def cast(prep: Prepared, args: argparse.Namespace) -> dict[str, Any]:
    """Tokens for readers, authors, and the most followed account and its followers; the
    usernames and tags the posts mention."""
    settings = Settings(
        database_url=prep.url,
        var_dir=BENCH_VAR / f"api-var-{prep.backend}",
        secret_key="bench-secret-not-for-production",
        domain="127.0.0.1:8000",
        run_worker=False,
        redis_url="",
    )
    rt = Runtime.from_settings(settings)
    rng = random.Random(args.seed)
    phases = set(args.phase_list)
    out: dict[str, Any] = {}
    try:
        async with rt.sessions() as db:
            people = (
                await db.execute(
                    select(Account.id, Account.username)
                    .join(User, User.account_id == Account.id)
                    .where(Account.suspended_at.is_(None), User.state == UserState.ACTIVE)
                    .order_by(Account.id)
                )
            ).all()
            out["tags"] = list(await db.scalars(select(Tag.name).order_by(Tag.id).limit(200)))
        ids = [a for a, _ in people]
        out["usernames"] = rng.sample([u for _, u in people], min(2000, len(people)))
        if phases & {"home", "public"}:
            readers = rng.sample(ids, min(args.readers, len(ids)))
            out["readers"] = list((await api_tokens(rt, readers)).values())
        if "post" in phases:
            authors = rng.sample(ids, min(args.authors, len(ids)))
            out["authors"] = list((await api_tokens(rt, authors)).values())
        if "stream" in phases:
            star, followers, chosen = await most_followed(rt, args.ws_clients)
            tokens = await api_tokens(rt, [star, *chosen])
            out["star"] = {"followers": followers, "token": tokens.pop(star)}
            out["followers"] = list(tokens.values())
    finally:
        await rt.close()
    return out


# --- the report ---------------------------------------------------------------------------


def _ok(ok: bool) -> str:
    return "  ok" if ok else "  MISS"


def _errors(r: dict[str, Any]) -> str:
    socket = sum(r["socket_errors"].values())
    return f"{r['non_2xx']} ({r['rate_limited_429']}) / {socket}"


def _timeline_rows(name: str, r: dict[str, Any]) -> list[tuple[str, str, str]]:
    lat, cpu = r["latency_ms"], r["server_cpu_ms_per_request"]
    ok = lat["p50"] <= TARGETS["p50_ms"] and lat["p99"] <= TARGETS["p99_ms"]
    rows = [
        (
            f"GET {name}, {r['connections']} conns: p50 / p99 ms",
            "≤15 / ≤60",
            f"{lat['p50']} / {lat['p99']}{_ok(ok)}",
        ),
        (f"  {name}: p90 ms; requests/s", "", f"{lat['p90']}; {r['requests_per_s']}"),
        (f"  {name}: server CPU per request, ms", "≤8", f"{cpu}{_ok(cpu <= TARGETS['cpu_ms'])}"),
    ]
    if "postgres_cpu_ms_per_request" in r:
        rows.append(
            (f"  {name}: + PostgreSQL backends, ms", "", f"{r['postgres_cpu_ms_per_request']}")
        )
    errs = r["non_2xx"] + sum(r["socket_errors"].values())
    rows.append((f"  {name}: non-2xx (429s) / socket errors", "0", f"{_errors(r)}{_ok(errs == 0)}"))
    return rows


def _post_rows(r: dict[str, Any], first: bool) -> list[tuple[str, str, str]]:
    lat, n = r["latency_ms"], r["connections"]
    rps = r["requests_per_s"]
    errs = r["non_2xx"] + sum(r["socket_errors"].values())
    rows = [
        (
            f"POST statuses, {n} conns: requests/s",
            "≥200" if first else "",
            f"{rps}{_ok(rps >= TARGETS['posts_per_s']) if first else ''}",
        ),
        (
            f"  {n} conns: p50 / p99 ms",
            "p99 ≤100" if first else "",
            f"{lat['p50']} / {lat['p99']}"
            + (_ok(lat["p99"] <= TARGETS["post_p99_ms"]) if first else ""),
        ),
        (f"  {n} conns: server CPU per request, ms", "", f"{r['server_cpu_ms_per_request']}"),
    ]
    if "postgres_cpu_ms_per_request" in r:
        rows.append(
            (f"  {n} conns: + PostgreSQL backends, ms", "", f"{r['postgres_cpu_ms_per_request']}")
        )
    rows.append(
        (f"  {n} conns: non-2xx (429s) / socket errors", "0", f"{_errors(r)}{_ok(errs == 0)}")
    )
    return rows


def _stream_rows(s: dict[str, Any]) -> list[tuple[str, str, str]]:
    d = s["delivery_ms_after_response"]
    share = s["within_pct_of_response"]
    return [
        (
            "stream: clients (of wanted) / posts",
            "1000",
            f"{s['clients']} ({s['clients_wanted']}) / {s['posts']}",
        ),
        ("  got it ≤250 ms after response, %", "≥99", f"{share}{_ok(share >= 99)}"),
        ("  … after request start, %", "", f"{s['within_pct_of_request_start']}"),
        ("  delivery p50/p90/p99/max ms", "", f"{d['p50']}/{d['p90']}/{d['p99']}/{d['max']}"),
        (
            "  never received / failed handshakes",
            "0",
            f"{s['never_received']} / {sum(s['handshake_failures'].values())}"
            f"{_ok(s['never_received'] == 0 and not s['handshake_failures'])}",
        ),
        ("  server CPU per delivery, ms", "", f"{s['server_cpu_ms_per_delivery']}"),
        ("  handshakes: all connected in s", "", f"{s['connect_all_s']}"),
    ]


def api_rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(label, target, value) rows for one server (one worker count)."""
    rows: list[tuple[str, str, str]] = []
    for name in ("home", "public"):
        if name in r:
            rows += _timeline_rows(name, r[name])
    for i, run_ in enumerate(r.get("post", [])):
        rows += _post_rows(run_, first=i == 0)
    if "stream" in r:
        rows += _stream_rows(r["stream"])
    rows.append(("server RSS, start / end MB", "", f"{r['rss_start_mb']} / {r['rss_end_mb']}"))
    errors: dict[str, int] = {}
    for phase in r.get("server_log", {}).values():
        for kind, n in phase.items():
            errors[kind] = errors.get(kind, 0) + n
    listed = ", ".join(f"{k} ×{n}" for k, n in errors.items())
    rows.append(("server log: errors", "none", f"{listed or 'none'}{_ok(not errors)}"))
    return rows


# --- one server, all phases ---------------------------------------------------------------


_EXCEPTION = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Disconnect|Timeout)\w*)(?::|$)")


def _log_problems(log: Path, seen: int) -> tuple[int, dict[str, int]]:
    """Errors the server logged after line `seen`: each exception's name (the last line of a
    traceback), and other ERROR lines, counted."""
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    found: dict[str, int] = {}
    for line in lines[seen:]:
        m = _EXCEPTION.match(line)
        kind = m.group(1) if m else None
        if kind is None and line.startswith("ERROR") and "Exception in ASGI" not in line:
            kind = line[:120]
        if kind:
            found[kind] = found.get(kind, 0) + 1
    return len(lines), found


async def measure(
    prep: Prepared, args: argparse.Namespace, people: dict[str, Any], workers: int
) -> dict[str, Any]:
    """Every chosen phase against one `kith serve --workers N`."""
    var_dir = BENCH_VAR / f"api-serve-{prep.backend}-{workers}"
    server = Server(
        prep.url,
        var_dir,
        workers=workers,
        redis_url=redis_url() if workers > 1 else "",
        extra_env={"KITH_REDIS_PREFIX": f"kith-bench-{uuid.uuid4().hex[:8]}:"},
    )
    out: dict[str, Any] = {"workers": workers}
    seen = 0
    try:
        await server.ready()
        await asyncio.sleep(1.0 if workers > 1 else 0.2)  # the other processes start too
        out["rss_start_mb"] = tree_rss_mb(server.pid)
        common: dict[str, Any] = dict(
            var_dir=var_dir, threads=args.wrk_threads, warmup_s=args.warmup, seconds=args.duration
        )
        for phase in args.phase_list:
            print(f"  {phase}…", flush=True)
            if phase in TIMELINE_PATHS:
                path = TIMELINE_PATHS[phase]
                out[phase] = await measure_wrk(
                    server,
                    prep.url,
                    get_script(path, people["readers"]),
                    name=phase,
                    path=path,
                    connections=args.connections,
                    **common,
                )
            elif phase == "post":
                script = post_script(people["authors"], people["usernames"], people["tags"])
                runs = [args.connections] + [args.post_light_connections] * (
                    args.post_light_connections > 0
                )
                out["post"] = [
                    await measure_wrk(
                        server,
                        prep.url,
                        script,
                        name="post",
                        path="/api/v1/statuses",
                        connections=n,
                        **common,
                    )
                    for n in runs
                ]
            elif phase == "stream":
                out["stream"] = await stream_delivery(
                    server,
                    prep.url,
                    author_token=people["star"]["token"],
                    follower_tokens=people["followers"],
                    posts=args.ws_posts,
                    interval_s=args.ws_interval,
                    settle_s=args.ws_settle,
                    deadline_s=args.ws_deadline,
                    within_s=0.25,
                    parallel_handshakes=args.ws_handshakes,
                    deflate=not args.ws_no_deflate,
                )
                out["stream"]["author_followers"] = people["star"]["followers"]
            seen, problems = _log_problems(server.log, seen)
            if problems:
                out.setdefault("server_log", {})[phase] = problems
        out["rss_end_mb"] = tree_rss_mb(server.pid)
    finally:
        server.stop()
    return out


def run_backend(
    backend: str, scale: Scale, args: argparse.Namespace, result: dict[str, Any]
) -> None:
    """Seed one database, make the tokens, and measure each worker count; results land in
    `result` (and --json) after each, so a late failure loses nothing before it."""
    prep = (
        prepare_sqlite(scale, reseed=args.reseed, work_name="run-api-sqlite.db")
        if backend == "sqlite"
        else prepare_postgres(scale, reseed=args.reseed)
    )
    entry: dict[str, Any] = {
        "backend": backend,
        "seeded_now_s": None if prep.seed_seconds is None else round(prep.seed_seconds, 1),
        "world": prep.world,
        "variants": {},
    }
    result["backends"].append(entry)
    try:
        t0 = time.perf_counter()
        people = run(cast(prep, args))
        print(f"[bench] tokens made in {time.perf_counter() - t0:.0f} s", flush=True)
        for workers in args.worker_counts:
            name = f"{workers} worker{'s' if workers > 1 else ''}"
            print(f"[bench] measuring {backend}, kith serve --workers {workers}", flush=True)
            try:
                entry["variants"][name] = run(measure(prep, args, people, workers))
            except Exception as exc:  # recorded; the other worker counts still run
                print(f"[bench] {backend}/{name} failed: {exc!r}", flush=True)
                entry["variants"][name] = {"error": repr(exc)}
            _save(result, args)
    finally:
        if prep.pg_name and not args.keep_pg:
            run(drop_pg_database(prep.pg_name))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    title = "Kith Mastodon API benchmark"
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        print(report(saved, api_rows, title))
        print()
        print(markdown(saved, api_rows))
        return 0
    if args.nice:
        os.nice(args.nice)
    # Each WebSocket is a file here and one in the server (which inherits the limit).
    raise_open_file_limit(2 * args.ws_clients + 4096)
    scale = Scale(args.accounts, args.posts, args.follows, args.seed)
    result: dict[str, Any] = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine(),
        "scale": {"accounts": scale.accounts, "posts": scale.posts, "follows": scale.follows},
        "settings": {
            k: getattr(args, k)
            for k in ("duration", "warmup", "connections", "wrk_threads", "readers", "authors")
        },
        "backends": [],
    }
    started = time.perf_counter()
    for backend in ("sqlite", "postgres") if args.db == "both" else (args.db,):
        run_backend(backend, scale, args, result)
    result["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    result["total_seconds"] = round(time.perf_counter() - started)
    print()
    print(report(result, api_rows, title))
    _save(result, args)
    if args.json:
        print(f"\nresults written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
