"""Timeline benchmarks: seed a community, then measure Home on SQLite and PostgreSQL.

Measures, for each database (see docs/benchmarks.md for the results and what they mean):
1. kith.timelines.service.home(limit=40): first page and 10th page, p50/p99;
2. GET /home over HTTP against `kith serve --no-worker` (uvicorn) with 16 concurrent clients
   (and one client, for the unqueued time): latency, throughput, server CPU per request;
3. kith.posts.service.create_post with mentions and hashtags: posts per second;
4. resident memory of the `kith serve` process after the seed and the load.

    .venv/bin/python bench/timelines.py                 # the issue's scale, both databases
    .venv/bin/python bench/timelines.py --quick --db sqlite
    .venv/bin/python bench/timelines.py --json var/bench/result.json
    .venv/bin/python bench/timelines.py --variants current,window,prebuilt  # with the proposal
    .venv/bin/python bench/timelines.py --from-json var/bench/result.json   # tables again

The seeded SQLite file is cached under var/bench/cache/ (keyed by scale and migrations);
--reseed rebuilds it. PostgreSQL gets a throwaway database each run (KITH_TEST_POSTGRES_URL
or the local test server as admin URL). The run lowers its own priority (--nice) because the
machine is shared.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import proposed_home
from seed_world import Scale
from seeded_databases import (
    BENCH_VAR,
    PG_ADMIN_URL,
    REPO,
    Prepared,
    drop_pg_database,
    prepare_postgres,
    prepare_sqlite,
)
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import create_async_engine
from timeline_probes import create_posts, http_home, service_home

from kith.accounts.models import Account
from kith.config import Settings
from kith.posts.models import Tag
from kith.runtime import Runtime

TARGETS = {
    "service_p50_ms": 5.0,
    "service_p99_ms": 20.0,
    "http_p50_ms": 25.0,
    "posts_per_s": 300.0,
    "rss_mb": 200.0,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    p.add_argument("--accounts", type=int, default=10_000)
    p.add_argument("--posts", type=int, default=1_000_000)
    p.add_argument("--follows", type=int, default=150, help="mean follows per account")
    p.add_argument("--seed", type=int, default=20240501, help="random seed of the world")
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 1,000 accounts, 50,000 posts, fewer samples",
    )
    p.add_argument(
        "--reseed",
        action="store_true",
        help="rebuild the cached seeded database (SQLite file, PostgreSQL template)",
    )
    p.add_argument("--samples", type=int, default=300, help="first-page service samples")
    p.add_argument("--deep-samples", type=int, default=100, help="10th-page service samples")
    p.add_argument("--concurrency", type=int, default=16, help="HTTP clients")
    p.add_argument("--http-requests", type=int, default=1600)
    p.add_argument("--http-sequential", type=int, default=100, help="requests from one client")
    p.add_argument("--http-users", type=int, default=64, help="people signed in for HTTP")
    p.add_argument("--create-seconds", type=float, default=15.0)
    p.add_argument("--create-concurrency", type=int, default=4, help="0 skips this variant")
    p.add_argument("--phases", default="service,http,create", help="comma-separated subset to run")
    p.add_argument(
        "--variants",
        default="current",
        help="comma-separated: current (Kith as it is), window and prebuilt (the proposed\n"
        "Home query of bench/proposed_home.py, swapped in for the measurement)",
    )
    p.add_argument("--nice", type=int, default=10, help="lower this process's priority by N")
    p.add_argument("--keep-pg", action="store_true", help="do not drop the PostgreSQL database")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument(
        "--from-json", type=Path, help="only print the report (and Markdown) of a saved run"
    )
    args = p.parse_args(argv)
    if args.quick:
        args.accounts, args.posts = 1_000, 50_000
        args.samples, args.deep_samples = 100, 50
        args.http_requests, args.http_sequential = 400, 50
        args.create_seconds = 5.0
    return args


# --- the machine --------------------------------------------------------------------------


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _mem_total_gb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal"):
            return round(int(line.split()[1]) / 1024 / 1024, 1)
    return 0.0


async def _pg_version() -> str:
    try:
        engine = create_async_engine(PG_ADMIN_URL)
        async with engine.connect() as conn:
            version = str(await conn.scalar(text("SHOW server_version")))
        await engine.dispose()
        return version
    except Exception as exc:  # reported, not fatal: a SQLite-only run needs no server
        return f"unavailable ({type(exc).__name__})"


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except OSError:
        return ""


def machine() -> dict[str, Any]:
    """What ran the benchmark (quoted next to every number)."""
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "date_utc": datetime.now(UTC).strftime("%Y-%m-%d %H:%M"),
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": _cpu_model(),
        "ram_gb": _mem_total_gb(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "postgresql": asyncio.run(_pg_version()),
        "git_commit": _git("rev-parse", "--short", "HEAD"),
        "tracked_files_modified": len(dirty.splitlines()) if dirty else 0,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


# --- running one database ---------------------------------------------------------------


async def measure(prep: Prepared, args: argparse.Namespace, variant: str) -> dict[str, Any]:
    """All phases against one seeded database, with one variant of the Home query."""
    proposed_home.uninstall()
    if variant != "current":
        proposed_home.install(variant)
    settings = Settings(
        database_url=prep.url,
        var_dir=BENCH_VAR / f"var-{prep.backend}",
        secret_key="bench-secret-not-for-production",
        domain="127.0.0.1:8000",
        run_worker=False,
        redis_url="",
    )
    rt = Runtime.from_settings(settings)
    rng = random.Random(args.seed)
    phases = set(args.phases.split(","))
    out: dict[str, Any] = {}
    try:
        async with rt.sessions() as db:
            people = (
                await db.execute(
                    select(Account.id, Account.username).where(Account.suspended_at.is_(None))
                )
            ).all()
            tags = list((await db.scalars(select(Tag.name).order_by(Tag.id))).all())
        viewer_ids = [a for a, _ in people]
        usernames = [u for _, u in people]
        if "service" in phases:
            print("  service: home timeline…", flush=True)
            out["service"] = await service_home(
                rt, viewer_ids, samples=args.samples, deep_samples=args.deep_samples, rng=rng
            )
        if "http" in phases:
            print("  http: GET /home against kith serve…", flush=True)
            out["http"] = await http_home(
                rt,
                viewer_ids,
                var_dir=BENCH_VAR / f"serve-{prep.backend}",
                concurrency=args.concurrency,
                requests=args.http_requests,
                sequential=args.http_sequential,
                users=args.http_users,
                rng=rng,
                variant=variant,
            )
        if "create" in phases:
            print("  create: create_post…", flush=True)
            out["create"] = [
                await create_posts(
                    rt,
                    viewer_ids,
                    usernames,
                    tags,
                    seconds=args.create_seconds,
                    concurrency=1,
                    rng=rng,
                )
            ]
            if args.create_concurrency > 1:
                out["create"].append(
                    await create_posts(
                        rt,
                        viewer_ids,
                        usernames,
                        tags,
                        seconds=args.create_seconds,
                        concurrency=args.create_concurrency,
                        rng=rng,
                    )
                )
    finally:
        await rt.close()
        proposed_home.uninstall()
    return out


def run_backend(
    backend: str, scale: Scale, args: argparse.Namespace, result: dict[str, Any]
) -> None:
    """Seed one database and measure every variant on it; results land in `result` (and in
    --json) after each variant, so a failure late in a long run loses nothing before it."""
    prep = (
        prepare_sqlite(scale, reseed=args.reseed)
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
        for variant in args.variants.split(","):
            print(f"[bench] measuring {backend}, Home variant {variant!r}", flush=True)
            try:
                entry["variants"][variant] = asyncio.run(measure(prep, args, variant))
            except Exception as exc:  # recorded; the other variants still run
                print(f"[bench] {backend}/{variant} failed: {exc!r}", flush=True)
                entry["variants"][variant] = {"error": repr(exc)}
            _save(result, args)
            print(json.dumps(entry["variants"][variant], indent=None)[:3000], flush=True)
    finally:
        if prep.pg_name and not args.keep_pg:
            asyncio.run(drop_pg_database(prep.pg_name))


def _save(result: dict[str, Any], args: argparse.Namespace) -> None:
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))


# --- the report ---------------------------------------------------------------------------


def _mark(ok: bool | None) -> str:
    return "" if ok is None else ("  ok" if ok else "  MISS")


def _rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(label, target, value) rows for one backend's results."""
    rows: list[tuple[str, str, str]] = []
    t = TARGETS
    svc = r.get("service")
    if svc:
        for key, label in (("first_page", "home(), page 1 of 40"), ("page_10", "home(), page 10")):
            d = svc[key]
            ok = d["p50"] <= t["service_p50_ms"] and d["p99"] <= t["service_p99_ms"]
            rows.append(
                (f"{label}: p50 / p99 ms", "≤5 / ≤20", f"{d['p50']} / {d['p99']}{_mark(ok)}")
            )
    http = r.get("http")
    if http:
        c, s = http["concurrent"], http["sequential"]
        ok = c["latency_ms"]["p50"] <= t["http_p50_ms"]
        rows.append(
            (
                f"GET /home, {http['concurrency']} clients: p50 / p99 ms",
                "p50 ≤25",
                f"{c['latency_ms']['p50']} / {c['latency_ms']['p99']}{_mark(ok)}",
            )
        )
        rows.append(("  throughput, req/s", "", f"{c['throughput_rps']}"))
        rows.append(("  server CPU per request, ms", "report", f"{c['server_cpu_ms_per_request']}"))
        if "postgres_backend_cpu_ms_per_request" in c:
            rows.append(
                (
                    "  + PostgreSQL backends CPU, ms",
                    "",
                    f"{c['postgres_backend_cpu_ms_per_request']}",
                )
            )
        rows.append(
            (
                "GET /home, 1 client: p50 / p99 ms",
                "",
                f"{s['latency_ms']['p50']} / {s['latency_ms']['p99']}",
            )
        )
        rows.append(("  server CPU per request, ms", "", f"{s['server_cpu_ms_per_request']}"))
        errs = sum(c["errors"].values()) + sum(s["errors"].values())
        rows.append(("  HTTP errors", "0", f"{errs}{_mark(errs == 0)}"))
        ok = http["rss_after_load_mb"] <= t["rss_mb"]
        rows.append(
            (
                "kith serve RSS: start / warm / after load MB",
                "≤200",
                f"{http['rss_after_start_mb']} / {http['rss_after_warmup_mb']} / "
                f"{http['rss_after_load_mb']}{_mark(ok)}",
            )
        )
    for c in r.get("create", []):
        n = c["concurrency"]
        ok = c["posts_per_s"] >= t["posts_per_s"] if n == 1 else None
        errs = f", {sum(c['errors'].values())} errors" if c["errors"] else ""
        rows.append(
            (
                f"create_post, {n} task{'s' if n > 1 else ''}: posts/s (p50 ms)",
                "≥300" if n == 1 else "",
                f"{c['posts_per_s']} ({c['latency_ms']['p50']}){errs}{_mark(ok)}",
            )
        )
    return rows


Rows = Callable[[dict[str, Any]], list[tuple[str, str, str]]]


def report(
    result: dict[str, Any], rows: Rows = _rows, title: str = "Kith timelines benchmark"
) -> str:
    """The results as plain-text tables: one per database, one column per Home variant
    (bench/api.py passes its own `rows`, with one column per worker count)."""
    m = result["machine"]
    sc = result["scale"]
    lines = [
        f"{title}, {m['date_utc']} UTC",
        f"scale: {sc['accounts']:,} accounts, {sc['posts']:,} posts, ~{sc['follows']} follows each",
        f"machine: {m['nproc']} CPUs ({m['cpu']}), {m['ram_gb']} GB RAM, Python {m['python']}, "
        f"SQLite {m['sqlite']}, PostgreSQL {m['postgresql']}, load avg at start "
        f"{m['load_average_at_start']}, at end {m.get('load_average_at_end')}",
    ]
    for b in result["backends"]:
        names = [v for v in b["variants"] if "error" not in b["variants"][v]]
        for v, res in b["variants"].items():
            if "error" in res:
                lines.append(f"{b['backend']}/{v} failed: {res['error']}")
        table = {v: {(lab, tgt): val for lab, tgt, val in rows(b["variants"][v])} for v in names}
        keys: list[tuple[str, str]] = []
        for v in names:
            keys += [k for k in table[v] if k not in keys]
        w0 = max([len(k[0]) for k in keys] + [10])
        w1 = max([len(k[1]) for k in keys] + [6])
        lines += [
            "",
            f"== {b['backend']} ==",
            f"{'':{w0}}  {'target':{w1}}  " + "  ".join(f"{n:26}" for n in names),
        ]
        for k in keys:
            vals = "  ".join(f"{table[n].get(k, '-'):26}" for n in names)
            lines.append(f"{k[0]:{w0}}  {k[1]:{w1}}  {vals}")
        w = b["world"]
        lines.append(
            f"world: {w['rows']}; followers max {w['followers_max']}, "
            f"p99 {w['followers_p99']}, median {w['followers_median']}; "
            f"{w['accounts_over_1000_followers']} accounts with ≥1000 followers; "
            f"seeded in {w.get('seed_seconds')} s"
            + ("" if b["seeded_now_s"] is not None else " (cached file reused)")
        )
    return "\n".join(lines)


def markdown(result: dict[str, Any], rows: Rows = _rows) -> str:
    """The same tables as `report`, in Markdown (pasted into docs/benchmarks.md)."""
    out: list[str] = []
    for b in result["backends"]:
        names = [v for v in b["variants"] if "error" not in b["variants"][v]]
        table = {v: {(lab, tgt): val for lab, tgt, val in rows(b["variants"][v])} for v in names}
        keys: list[tuple[str, str]] = []
        for v in names:
            keys += [k for k in table[v] if k not in keys]
        out += [f"**{b['backend']}**", "", "| | target | " + " | ".join(names) + " |"]
        out.append("|---|---|" + "---|" * len(names))
        for k in keys:
            vals = " | ".join(table[n].get(k, "-").strip() for n in names)
            out.append(f"| {k[0].strip()} | {k[1]} | {vals} |")
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        print(report(saved))
        print()
        print(markdown(saved))
        return 0
    if args.nice:
        os.nice(args.nice)
    scale = Scale(args.accounts, args.posts, args.follows, args.seed)
    result: dict[str, Any] = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine(),
        "scale": {"accounts": scale.accounts, "posts": scale.posts, "follows": scale.follows},
        "backends": [],
    }
    started = time.perf_counter()
    for backend in ("sqlite", "postgres") if args.db == "both" else (args.db,):
        run_backend(backend, scale, args, result)
    result["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    result["total_seconds"] = round(time.perf_counter() - started)
    print()
    print(report(result))
    _save(result, args)
    if args.json:
        print(f"\nresults written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
