"""The measurements of bench/timelines.py: the home timeline service, the Home page over HTTP
against a real `kith serve`, post creation, and the server's resident memory."""

from __future__ import annotations

import asyncio
import collections
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy import select

from kith import policy
from kith.accounts import service as accounts
from kith.accounts.models import Account, User
from kith.posts import service as posts
from kith.posts.models import Visibility
from kith.posts.service import PostInput
from kith.runtime import Runtime
from kith.timelines import service as timelines
from kith.timelines.shapes import ENTITIES

CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Dist:
    """A latency distribution in milliseconds."""

    n: int
    p50: float
    p90: float
    p99: float
    mean: float
    max: float

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Dist:
        ms = sorted(s * 1000 for s in seconds)
        if not ms:
            return cls(0, 0.0, 0.0, 0.0, 0.0, 0.0)

        def q(p: float) -> float:  # nearest rank
            return round(ms[min(len(ms) - 1, max(0, int(round(p * len(ms))) - 1))], 2)

        return cls(
            len(ms), q(0.50), q(0.90), q(0.99), round(sum(ms) / len(ms), 2), round(ms[-1], 2)
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads), from /proc/<pid>/stat."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_memory_mb(pid: int) -> dict[str, float]:
    """VmRSS (resident now) and VmHWM (peak resident) in MB, from /proc/<pid>/status."""
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = round(int(value.split()[0]) / 1024, 1)
    return out


# --- (1) the home timeline service --------------------------------------------------------


async def _home_page(rt: Runtime, viewer_id: int, max_id: int | None) -> timelines.Page:
    # A session per call, as each web request gets its own.
    async with rt.sessions() as db:
        return await timelines.home(
            db, policy.Viewer(viewer_id), max_id=max_id, limit=40, shape=ENTITIES
        )


async def service_home(
    rt: Runtime, viewer_ids: list[int], *, samples: int, deep_samples: int, rng: random.Random
) -> dict[str, Any]:
    """kith.timelines.service.home(limit=40) for random viewers: the first page, and the 10th
    page reached by walking max_id (the nine pages before it are not timed)."""
    for v in rng.sample(viewer_ids, min(20, len(viewer_ids))):  # warm caches and pools
        await _home_page(rt, v, None)
    first: list[float] = []
    sizes: list[int] = []
    for v in rng.choices(viewer_ids, k=samples):
        t0 = time.perf_counter()
        page = await _home_page(rt, v, None)
        first.append(time.perf_counter() - t0)
        sizes.append(len(page.posts))
    deep: list[float] = []
    short = 0
    for v in rng.choices(viewer_ids, k=deep_samples):
        max_id: int | None = None
        for _ in range(9):
            page = await _home_page(rt, v, max_id)
            max_id = page.older_max_id
            if max_id is None:
                break
        if max_id is None:
            short += 1  # this person's Home has fewer than 10 pages
            continue
        t0 = time.perf_counter()
        await _home_page(rt, v, max_id)
        deep.append(time.perf_counter() - t0)
    return {
        "first_page": Dist.of(first).as_dict(),
        "page_10": Dist.of(deep).as_dict(),
        "mean_posts_on_first_page": round(sum(sizes) / max(1, len(sizes)), 1),
        "viewers_with_fewer_than_10_pages": short,
    }


# --- (2) the Home page over HTTP ----------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def sign_in_directly(rt: Runtime, account_ids: list[int]) -> list[str]:
    """Session cookies for these accounts, made by the accounts service (no password check)."""
    tokens = []
    async with rt.sessions() as db:
        users = (await db.scalars(select(User).where(User.account_id.in_(account_ids)))).all()
        for user in users:
            tokens.append(await accounts.start_session(db, user, user_agent="kith-bench"))
    return tokens


class Server:
    """`kith serve --no-worker` in a child process, on a free loopback port (with
    `--workers N` web processes when asked; they need `redis_url`)."""

    def __init__(
        self,
        database_url: str,
        var_dir: Path,
        variant: str = "current",
        *,
        workers: int = 1,
        redis_url: str = "",
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("KITH_")}
        env.update(
            KITH_DATABASE_URL=database_url,
            KITH_VAR_DIR=str(var_dir),
            KITH_SECRET_KEY="bench-secret-not-for-production",
            KITH_DOMAIN=f"127.0.0.1:{self.port}",
            KITH_LOG_LEVEL="warning",  # no access log line per request
            KITH_REDIS_URL=redis_url,  # several workers need it (`kith serve --workers`)
        )
        env.update(extra_env or {})
        kith = Path(sys.executable).with_name("kith")
        if variant != "current":  # the same command with a proposal swapped in
            cmd = [sys.executable, str(Path(__file__).with_name("serve_variant.py")), variant]
        elif kith.exists():
            cmd = [str(kith)]
        else:
            cmd = [sys.executable, "-m", "kith.cli"]
        cmd += ["serve", "--no-worker", "--host", "127.0.0.1", "--port", str(self.port)]
        if workers != 1:
            cmd += ["--workers", str(workers)]
        var_dir.mkdir(parents=True, exist_ok=True)
        self.log = var_dir / "serve.log"
        self.proc = subprocess.Popen(  # noqa: ASYNC220 (started once, before any load)
            cmd, env=env, stdout=self.log.open("w"), stderr=subprocess.STDOUT
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def ready(self, wait_s: float = 90) -> None:
        deadline = time.monotonic() + wait_s
        async with httpx.AsyncClient(base_url=self.base) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"kith serve exited: see {self.log}")
                try:
                    if (await client.get("/auth/sign_in")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.25)
        raise RuntimeError(f"kith serve did not answer within {wait_s} s: see {self.log}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


async def _pg_backend_pids(database_url: str | None) -> list[int]:
    """PostgreSQL backends serving the benchmark database (not this query's own)."""
    if not database_url or not database_url.startswith("postgresql"):
        return []
    name = database_url.rsplit("/", 1)[1]
    dsn = database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )
    finally:
        await conn.close()
    return [int(r["pid"]) for r in rows]


def _cpu_of(pids: list[int]) -> dict[int, float]:
    out = {}
    for pid in pids:
        try:
            out[pid] = proc_cpu_seconds(pid)
        except (FileNotFoundError, ProcessLookupError):
            pass
    return out


async def _hammer(
    base: str, tokens: list[str], *, concurrency: int, total: int
) -> tuple[list[float], collections.Counter[str], float]:
    """GET /home `total` times from `concurrency` clients, each its own keep-alive connection,
    cycling through the signed-in people."""
    latencies: list[float] = []
    errors: collections.Counter[str] = collections.Counter()
    counter = iter(range(total))

    async def client(slot: int) -> None:
        async with httpx.AsyncClient(base_url=base, timeout=60, follow_redirects=False) as c:
            for i in counter:
                token = tokens[(i * 7 + slot) % len(tokens)]
                t0 = time.perf_counter()
                try:
                    r = await c.get("/home", headers={"cookie": f"kith_session={token}"})
                    latencies.append(time.perf_counter() - t0)
                    if r.status_code != 200:
                        errors[f"HTTP {r.status_code}"] += 1
                except httpx.HTTPError as exc:
                    errors[type(exc).__name__] += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(client(s) for s in range(concurrency)))
    return latencies, errors, time.perf_counter() - t0


async def http_home(
    rt: Runtime,
    viewer_ids: list[int],
    *,
    var_dir: Path,
    concurrency: int,
    requests: int,
    sequential: int,
    users: int,
    rng: random.Random,
    variant: str = "current",
) -> dict[str, Any]:
    """The Home page through uvicorn: concurrent and one-at-a-time latency, server CPU per
    request (and, on PostgreSQL, the database backends' CPU), and the server's memory."""
    tokens = await sign_in_directly(rt, rng.sample(viewer_ids, min(users, len(viewer_ids))))
    server = Server(rt.settings.effective_database_url, var_dir, variant)
    result: dict[str, Any] = {"concurrency": concurrency, "signed_in_people": len(tokens)}
    try:
        await server.ready()
        result["rss_after_start_mb"] = proc_memory_mb(server.pid)["VmRSS"]
        async with httpx.AsyncClient(base_url=server.base) as c:
            page = await c.get("/home", headers={"cookie": f"kith_session={tokens[0]}"})
        if page.status_code != 200:
            raise RuntimeError(f"GET /home answered {page.status_code}: sign-in did not work")
        result["posts_on_page"] = page.text.count('<article class="post')
        result["page_kb"] = round(len(page.content) / 1024, 1)
        await _hammer(server.base, tokens, concurrency=concurrency, total=concurrency * 10)
        result["rss_after_warmup_mb"] = proc_memory_mb(server.pid)["VmRSS"]

        for label, conc, total in (
            ("sequential", 1, sequential),
            ("concurrent", concurrency, requests),
        ):
            backends = await _pg_backend_pids(rt.settings.database_url)
            db_before = _cpu_of(backends)
            cpu0, client0 = proc_cpu_seconds(server.pid), time.process_time()
            lat, errors, wall = await _hammer(server.base, tokens, concurrency=conc, total=total)
            cpu = proc_cpu_seconds(server.pid) - cpu0
            client_cpu = time.process_time() - client0
            db_after = _cpu_of(backends)
            db_cpu = sum(db_after[p] - db_before[p] for p in db_after if p in db_before)
            done = len(lat)
            entry: dict[str, Any] = {
                "latency_ms": Dist.of(lat).as_dict(),
                "requests": done,
                "errors": dict(errors),
                "wall_s": round(wall, 2),
                "throughput_rps": round(done / wall, 1),
                "server_cpu_ms_per_request": round(cpu * 1000 / max(1, done), 2),
                "server_cpu_utilisation": round(cpu / wall, 2),
                "load_generator_cpu_ms_per_request": round(client_cpu * 1000 / max(1, done), 2),
            }
            if backends:
                entry["postgres_backend_cpu_ms_per_request"] = round(
                    db_cpu * 1000 / max(1, done), 2
                )
            result[label] = entry
        mem = proc_memory_mb(server.pid)
        result["rss_after_load_mb"] = mem["VmRSS"]
        result["rss_peak_mb"] = mem["VmHWM"]
    finally:
        server.stop()
    return result


# --- (3) creating posts -------------------------------------------------------------------


async def create_posts(
    rt: Runtime,
    author_ids: list[int],
    usernames: list[str],
    tag_names: list[str],
    *,
    seconds: float,
    concurrency: int,
    rng: random.Random,
) -> dict[str, Any]:
    """kith.posts.service.create_post, each post with two mentions and two hashtags, for
    `seconds` from `concurrency` tasks in this one process."""
    async with rt.sessions() as db:
        authors = list(
            (await db.scalars(select(Account).where(Account.id.in_(author_ids[:500])))).all()
        )
    words = "walked the river path at dawn and the light on the water was unreal today".split()
    latencies: list[float] = []
    errors: collections.Counter[str] = collections.Counter()
    deadline = time.perf_counter() + seconds

    async def writer() -> None:
        while time.perf_counter() < deadline:
            author = rng.choice(authors)
            m1, m2 = rng.sample(usernames, 2)
            t1, t2 = rng.sample(tag_names[:200], 2)
            body = " ".join(rng.sample(words, rng.randint(5, len(words))))
            data = PostInput(
                source=f"{body.capitalize()} @{m1} @{m2} #{t1} #{t2}",
                visibility=Visibility.PUBLIC if rng.random() < 0.85 else Visibility.UNLISTED,
            )
            t0 = time.perf_counter()
            try:
                async with rt.sessions() as db:
                    await posts.create_post(db, author, data)
                latencies.append(time.perf_counter() - t0)
            except Exception as exc:  # counted and reported: a failed write is a finding
                errors[f"{type(exc).__name__}: {str(exc).splitlines()[0][:80]}"] += 1

    t0 = time.perf_counter()
    cpu0 = time.process_time()
    await asyncio.gather(*(writer() for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    return {
        "concurrency": concurrency,
        "posts": len(latencies),
        "errors": dict(errors),
        "wall_s": round(wall, 2),
        "posts_per_s": round(len(latencies) / wall, 1),
        "latency_ms": Dist.of(latencies).as_dict(),
        "process_cpu_ms_per_post": round(cpu * 1000 / max(1, len(latencies)), 2),
    }
