"""Federation benchmark, delivery side (issue 4, "Speed"): a post by an account with 10,000
followers on 500 remote servers, delivered to every shared inbox by `kith worker` processes.

1. A fresh database (SQLite file, or a throwaway PostgreSQL database) gets one local account
   and --followers remote accounts following it, bulk-inserted, spread over --hosts servers.
   Each server is its own loopback address on one port (127.0.1.1:PORT, 127.0.1.2:PORT, …),
   so the breaker table and the connection pool see distinct hosts; every account advertises
   its server's shared inbox (`http://127.0.1.1:PORT/inbox`). The settings allow-list
   127.0.0.0/8, as local federation does.
2. --receivers processes of bench/delivery_receiver.py listen on 0.0.0.0:PORT (SO_REUSEPORT)
   and verify every request as an inbox would (Kith's own verifier, the local account's
   public key, the Digest against the body), answering 202; their CPU is measured too, to
   show they are not the bottleneck.
3. For each worker count in --workers, --rounds times: N `kith worker` processes are started
   and left to settle (imports, periodic jobs), then the local account posts through
   `posts.service.create_post` — the real path, which writes one `federation.deliver` job per
   shared inbox in the post's transaction — and the run lasts until no delivery job is due.
   Measured: wall time from the post's commit to the last delivery received, deliveries/s
   (and per worker process), worker CPU per delivery, receiver CPU. Checked: every shared
   inbox got the activity exactly once, with a valid signature. Target: ≥ 200 deliveries/s
   per worker process.

    .venv/bin/python bench/delivery.py                                # SQLite, 1 and 2 workers
    .venv/bin/python bench/delivery.py --db postgres --rounds 3
    .venv/bin/python bench/delivery.py --workers 1 --rounds 1 --profile var/bench/deliver.prof

--profile runs the (single) worker under cProfile and prints the top functions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pstats
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from api_probes import cpu_of, cpu_spent
from seeded_databases import BENCH_VAR, create_pg_database, drop_pg_database
from sqlalchemy import delete, func, insert, select, text
from timeline_probes import _pg_backend_pids

from kith.accounts import service as accounts
from kith.accounts.models import Account
from kith.config import Settings
from kith.db import new_id, utcnow
from kith.federation import keys
from kith.federation.delivery import DELIVER_JOB
from kith.federation.models import DeliveryHost, OutboundActivity, RemoteActor
from kith.graph.models import Follow
from kith.jobs.models import Job
from kith.migrate import upgrade
from kith.posts import service as posts
from kith.runtime import Runtime

DOMAIN = "kith-bench.test"  # never contacted: only names the local actor and its key
POSTER = "loud"
TARGET_PER_WORKER = 200.0


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    p.add_argument("--followers", type=int, default=10_000)
    p.add_argument("--hosts", type=int, default=500)
    p.add_argument("--workers", default="1,2", help="worker process counts to measure")
    p.add_argument("--rounds", type=int, default=3, help="posts per worker count (medians)")
    p.add_argument("--receivers", type=int, default=1, help="receiver processes")
    p.add_argument(
        "--keep-hosts",
        action="store_true",
        help="keep the delivery_hosts rows between rounds (default: each round starts "
        "without them, as the first post to these servers does)",
    )
    p.add_argument("--profile", type=Path, help="cProfile the worker (one worker) into FILE")
    p.add_argument("--json", type=Path)
    return p.parse_args()


def host_address(i: int) -> str:
    """The i-th remote server's address: 127.0.1.1 … 127.0.1.254, 127.0.2.1 …"""
    return f"127.0.{1 + i // 254}.{1 + i % 254}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return int(s.getsockname()[1])


def load_average() -> str:
    """As `uptime` shows it: the machine is shared, so every figure comes with its load."""
    return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def _log(msg: str) -> None:
    print(f"[delivery {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --- the world --------------------------------------------------------------------------


async def seed(rt: Runtime, followers: int, hosts: int, port: int) -> tuple[int, str, str]:
    """One local account followed by `followers` remote accounts on `hosts` servers;
    returns (its id, its key id, its public key PEM)."""
    async with rt.sessions() as db:
        reg = await accounts.register(
            db,
            username=POSTER,
            email="loud@example.test",
            password="correct horse battery",
            bypass_mode=True,
        )
        poster_id = reg.account.id
        key = await keys.local_key(db, reg.account)  # made now, not by the first delivery
        key_id, public_pem = key.key_id, key.public_key_pem
    now = utcnow()
    people, actors, follows = [], [], []
    for i in range(followers):
        host = f"{host_address(i % hosts)}:{port}"
        account_id = new_id()
        name = f"f{i}"
        people.append(
            {
                "id": account_id,
                "username": name,
                "username_key": name,
                "domain": host,
                "uri": f"http://{host}/users/{name}",
                "created_at": now,
            }
        )
        actors.append(
            {
                "id": new_id(),
                "account_id": account_id,
                "inbox_url": f"http://{host}/users/{name}/inbox",
                "shared_inbox_url": f"http://{host}/inbox",
                "followers_url": f"http://{host}/users/{name}/followers",
                "fetched_at": now,
            }
        )
        follows.append({"follower_id": account_id, "followee_id": poster_id, "created_at": now})
    async with rt.sessions() as db:
        for table, rows in ((Account, people), (RemoteActor, actors), (Follow, follows)):
            for start in range(0, len(rows), 2000):
                await db.execute(insert(table), rows[start : start + 2000])
        await db.commit()
    if rt.engine.dialect.name == "postgresql":
        # What autovacuum does soon after a bulk load; without statistics the planner picks
        # a plan for the followers' inboxes that takes ~1.3 s instead of ~0.1 s.
        async with rt.engine.connect() as conn:
            auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await auto.execute(text("ANALYZE"))
    return poster_id, key_id, public_pem


# --- processes --------------------------------------------------------------------------


class Receivers:
    """The receiver processes of one round, and what they counted."""

    def __init__(self, n: int, port: int, key_id: str, pem_file: Path, stats_dir: Path) -> None:
        stats_dir.mkdir(parents=True, exist_ok=True)
        for old in stats_dir.iterdir():
            old.unlink()
        self.stats_dir = stats_dir
        script = Path(__file__).with_name("delivery_receiver.py")
        args = ["--port", str(port), "--key-id", key_id, "--key-pem", str(pem_file)]
        self.procs = [
            subprocess.Popen(  # noqa: ASYNC220 (started before the measured window)
                [sys.executable, str(script), *args, "--stats-dir", str(stats_dir)],
                stdout=(stats_dir.parent / f"receiver-{i}.log").open("w"),
                stderr=subprocess.STDOUT,
            )
            for i in range(n)
        ]

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    async def ready(self) -> None:
        deadline = time.monotonic() + 30
        while len(list(self.stats_dir.glob("ready-*"))) < len(self.procs):
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.procs):
                raise RuntimeError(f"receivers did not start: see {self.stats_dir.parent}")
            await asyncio.sleep(0.05)

    def stop(self) -> list[dict[str, Any]]:
        for p in self.procs:
            p.send_signal(signal.SIGTERM)
        for p in self.procs:
            p.wait(30)
        return [json.loads(f.read_text()) for f in self.stats_dir.glob("receiver-*.json")]


def start_workers(n: int, env: dict[str, str], var: Path, profile: Path | None) -> list[Any]:
    kith = Path(sys.executable).with_name("kith")
    procs = []
    for i in range(n):
        if profile is not None:
            cmd = [sys.executable, "-m", "cProfile", "-o", str(profile), "-m", "kith.cli", "worker"]
        else:
            cmd = [str(kith), "worker"]
        procs.append(
            subprocess.Popen(  # noqa: ASYNC220 (started before the measured window)
                cmd,
                env=env,
                stdout=(var / f"worker-{i}.log").open("w"),
                stderr=subprocess.STDOUT,
            )
        )
    return procs


async def settled(procs: list[Any], rt: Runtime) -> None:
    """Wait until the workers have imported everything, run their periodic jobs and idle
    (their CPU stops growing), so the measured window holds deliveries only."""
    deadline = time.monotonic() + 60
    await asyncio.sleep(1.0)
    before = cpu_of([p.pid for p in procs])
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        if any(p.poll() is not None for p in procs):
            raise RuntimeError("a worker exited: see its log under var/bench/")
        after = cpu_of([p.pid for p in procs])
        busy = any(after.get(pid, 0) - before.get(pid, 0) > 0.05 for pid in after)
        if not busy and await _due_jobs(rt, None) == 0:
            return
        before = after
    raise RuntimeError("workers did not settle within 60 s")


def stop_workers(procs: list[Any]) -> None:
    for p in procs:
        p.send_signal(signal.SIGINT)  # lets cProfile write its file
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


async def _due_jobs(rt: Runtime, kind: str | None) -> int:
    """Jobs due now or held by a worker (a retry scheduled later is not counted)."""
    now = utcnow()
    q = select(func.count()).select_from(Job).where(Job.failed_at.is_(None), Job.run_at <= now)
    if kind:
        q = q.where(Job.kind == kind)
    async with rt.sessions() as db:
        return int(await db.scalar(q) or 0)


async def _jobs_left(rt: Runtime) -> tuple[int, str]:
    """Delivery jobs still in the table (retries, failures) and one of their errors."""
    async with rt.sessions() as db:
        q = select(func.count()).select_from(Job).where(Job.kind == DELIVER_JOB)
        error = await db.scalar(
            select(Job.last_error).where(Job.kind == DELIVER_JOB, Job.last_error.is_not(None))
        )
        return int(await db.scalar(q) or 0), (error or "")[:300]


# --- one round --------------------------------------------------------------------------


async def one_round(
    rt: Runtime,
    args: argparse.Namespace,
    n_workers: int,
    round_no: int,
    ctx: dict[str, Any],
) -> dict[str, Any]:
    var: Path = ctx["var"]
    if not args.keep_hosts:
        async with rt.sessions() as db:
            await db.execute(delete(DeliveryHost))
            await db.commit()
    receivers = Receivers(
        args.receivers, ctx["port"], ctx["key_id"], ctx["pem_file"], var / "receiver-stats"
    )
    workers: list[Any] = []
    try:
        await receivers.ready()
        workers = start_workers(n_workers, ctx["worker_env"], var, args.profile)
        await settled(workers, rt)
        load = os.getloadavg()
        backends = await _pg_backend_pids(rt.settings.database_url) if args.db == "postgres" else []
        worker_cpu0 = cpu_of([p.pid for p in workers])
        receiver_cpu0 = cpu_of(receivers.pids)
        db_cpu0 = cpu_of(backends)
        t_post = time.time()
        async with rt.sessions() as db:
            author = await db.get(Account, ctx["poster_id"])
            assert author is not None
            post = await posts.create_post(
                db, author, posts.PostInput(source=f"Round {round_no} for {n_workers} worker(s)")
            )
            activity_id = await db.scalar(
                select(OutboundActivity.activity_id).order_by(OutboundActivity.id.desc()).limit(1)
            )
            assert activity_id and str(post.id) in activity_id
        t_committed = time.time()
        deadline = time.monotonic() + 600
        # Polling the database is the point: the workers are other processes.
        while await _due_jobs(rt, DELIVER_JOB) > 0 and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        t_done = time.time()
        worker_cpu = cpu_spent(worker_cpu0, cpu_of([p.pid for p in workers]))
        receiver_cpu = cpu_spent(receiver_cpu0, cpu_of(receivers.pids))
        db_cpu = cpu_spent(db_cpu0, cpu_of(backends))
    finally:
        stop_workers(workers)
        counted = receivers.stop()
    return summarize(
        counted,
        hosts=[f"{host_address(i)}:{ctx['port']}" for i in range(args.hosts)],
        activity_id=activity_id,
        n_workers=n_workers,
        times=(t_post, t_committed, t_done),
        cpu=(worker_cpu, receiver_cpu, db_cpu),
        load=load,
        left=await _jobs_left(rt),
    )


def summarize(
    counted: list[dict[str, Any]],
    *,
    hosts: list[str],
    activity_id: str,
    n_workers: int,
    times: tuple[float, float, float],
    cpu: tuple[float, float, float],
    load: tuple[float, float, float],
    left: tuple[int, str],
) -> dict[str, Any]:
    """One round's figures and its correctness check."""
    t_post, t_committed, t_done = times
    per_host: dict[str, int] = {}
    other_ids: set[str] = set()
    bad: dict[str, int] = {}
    first, last = float("inf"), 0.0
    for c in counted:
        for host, ids in c["ok"].items():
            for aid, n in ids.items():
                if aid == activity_id:
                    per_host[host] = per_host.get(host, 0) + n
                else:
                    other_ids.add(aid)
        for reason, n in c["bad"].items():
            bad[reason] = bad.get(reason, 0) + n
        if c["first"]:
            first = min(first, c["first"])
            last = max(last, c["last"])
    delivered = sum(per_host.values())
    exactly_once = sum(1 for h in hosts if per_host.get(h) == 1)
    wall = max(last, t_committed) - t_committed
    steady = last - first if delivered > 1 else 0.0
    worker_cpu, receiver_cpu, db_cpu = cpu
    per_s = delivered / wall if wall else 0.0
    return {
        "workers": n_workers,
        "load_avg_1m": round(load[0], 2),
        "create_post_s": round(t_committed - t_post, 3),
        "delivered": delivered,
        "inboxes_exactly_once": exactly_once,
        "inboxes": len(hosts),
        "unexpected_inboxes": sorted(set(per_host) - set(hosts))[:5],
        "other_activities": sorted(other_ids)[:5],
        "invalid": bad,
        "jobs_left": left[0],
        "job_error": left[1],
        "wall_s": round(wall, 3),
        "first_to_last_s": round(steady, 3),
        "deliveries_per_s": round(per_s, 1),
        "per_worker_per_s": round(per_s / n_workers, 1),
        "worker_cpu_ms_per_delivery": round(worker_cpu * 1000 / max(1, delivered), 2),
        "worker_cpu_share": round(worker_cpu / wall / n_workers, 2) if wall else None,
        "receiver_cpu_ms_per_delivery": round(receiver_cpu * 1000 / max(1, delivered), 3),
        "receiver_cpu_share": round(receiver_cpu / wall, 3) if wall else None,
        "db_cpu_ms_per_delivery": round(db_cpu * 1000 / max(1, delivered), 2),
        "poll_lag_s": round(t_done - max(last, t_committed), 3),
        "ok": exactly_once == len(hosts) and delivered == len(hosts) and not bad and not left[0],
        "activity_id": activity_id,
    }


MEDIAN_KEYS = (
    "wall_s",
    "deliveries_per_s",
    "per_worker_per_s",
    "worker_cpu_ms_per_delivery",
    "worker_cpu_share",
    "receiver_cpu_ms_per_delivery",
    "receiver_cpu_share",
    "db_cpu_ms_per_delivery",
    "create_post_s",
    "load_avg_1m",
)


def medians(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in MEDIAN_KEYS:
        values = [r[k] for r in rounds if r.get(k) is not None]
        out[k] = round(statistics.median(values), 3) if values else None
    out["all_ok"] = all(r["ok"] for r in rounds)
    return out


def print_table(result: dict[str, Any]) -> None:
    rows = [
        ("wall, post commit → last delivery, s", "wall_s"),
        ("deliveries/s", "deliveries_per_s"),
        (f"… per worker process (target ≥ {TARGET_PER_WORKER:.0f})", "per_worker_per_s"),
        ("worker CPU per delivery, ms", "worker_cpu_ms_per_delivery"),
        ("worker CPU share (of a core, per worker)", "worker_cpu_share"),
        ("receiver CPU per delivery, ms", "receiver_cpu_ms_per_delivery"),
        ("receiver CPU share (of a core)", "receiver_cpu_share"),
        ("PostgreSQL backends CPU per delivery, ms", "db_cpu_ms_per_delivery"),
        ("create_post (writes the jobs), s", "create_post_s"),
        ("load average (1 min) at the start", "load_avg_1m"),
    ]
    counts = list(result["by_workers"])
    print(f"\nmedians of {result['rounds']} round(s), {result['db']}:")
    print(f"{'':48}" + "".join(f"{n + ' worker(s)':>16}" for n in counts))
    for label, key in rows:
        cells = "".join(f"{str(result['by_workers'][n]['median'][key]):>16}" for n in counts)
        print(f"{label:48}{cells}")
    oks = "".join(f"{str(result['by_workers'][n]['median']['all_ok']):>16}" for n in counts)
    print(f"{'every inbox exactly once, all signatures valid':48}{oks}")


# --- main -------------------------------------------------------------------------------


async def main(args: argparse.Namespace) -> dict[str, Any]:
    var = BENCH_VAR / f"delivery-{args.db}"
    var.mkdir(parents=True, exist_ok=True)
    pg_name = None
    if args.db == "postgres":
        url, pg_name = await create_pg_database()
    else:
        path = var / "kith.db"
        for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            p.unlink(missing_ok=True)
        url = f"sqlite+aiosqlite:///{path}"
    port = free_port()
    allowed = "127.0.0.0/8"
    settings = Settings(
        database_url=url,
        var_dir=var,
        secret_key="x" * 40,
        domain=DOMAIN,
        redis_url="",
        federation_allowed_hosts=allowed,
    )
    rt = Runtime.from_settings(settings)
    result: dict[str, Any] = {
        "db": args.db,
        "followers": args.followers,
        "hosts": args.hosts,
        "receivers": args.receivers,
        "rounds": args.rounds,
        "load_at_start": load_average(),
        "by_workers": {},
    }
    try:
        t0 = time.perf_counter()
        await asyncio.to_thread(upgrade, url)
        poster_id, key_id, pem = await seed(rt, args.followers, args.hosts, port)
        result["seed_s"] = round(time.perf_counter() - t0, 1)
        _log(f"seeded {args.followers} followers on {args.hosts} hosts in {result['seed_s']} s")
        pem_file = var / "poster-public.pem"
        pem_file.write_text(pem)
        worker_env = {k: v for k, v in os.environ.items() if not k.startswith("KITH_")}
        worker_env.update(
            KITH_DATABASE_URL=url,
            KITH_VAR_DIR=str(var),
            KITH_SECRET_KEY="x" * 40,
            KITH_DOMAIN=DOMAIN,
            KITH_REDIS_URL="",
            KITH_LOG_LEVEL="warning",
            KITH_WORKER_IDLE_SECONDS="0.05",
            KITH_FEDERATION_ALLOWED_HOSTS=allowed,
            KITH_FEDERATION_ALLOW_PRIVATE="false",
        )
        ctx = {
            "var": var,
            "port": port,
            "key_id": key_id,
            "pem_file": pem_file,
            "poster_id": poster_id,
            "worker_env": worker_env,
        }
        counts = [int(n) for n in args.workers.split(",")]
        if args.profile and counts != [1]:
            raise SystemExit("--profile needs --workers 1")
        for n in counts:
            rounds = []
            for r in range(args.rounds):
                out = await one_round(rt, args, n, r, ctx)
                _log(
                    f"{n} worker(s), round {r + 1}: {out['delivered']} delivered in "
                    f"{out['wall_s']} s = {out['deliveries_per_s']}/s; worker CPU "
                    f"{out['worker_cpu_ms_per_delivery']} ms/delivery; receiver CPU "
                    f"{out['receiver_cpu_share']} of a core; ok={out['ok']} "
                    f"(load {out['load_avg_1m']})"
                )
                rounds.append(out)
            result["by_workers"][str(n)] = {"median": medians(rounds), "rounds": rounds}
    finally:
        await rt.close()
        if pg_name:
            await drop_pg_database(pg_name)
    result["load_at_end"] = load_average()
    return result


def show_profile(path: Path) -> None:
    stats = pstats.Stats(str(path))
    stats.sort_stats("cumulative").print_stats(45)
    stats.sort_stats("tottime").print_stats(30)


if __name__ == "__main__":
    arguments = parse_args()
    out = asyncio.run(main(arguments))
    print(json.dumps(out, indent=2))
    print_table(out)
    if arguments.profile:
        show_profile(arguments.profile)
    if arguments.json:
        arguments.json.parent.mkdir(parents=True, exist_ok=True)
        arguments.json.write_text(json.dumps(out, indent=2))
