"""The measurements of bench/api.py: Mastodon API load with wrk (timelines and posting), and
WebSocket streaming delivery to many clients, against a real `kith serve`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import resource
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select
from timeline_probes import Dist, Server, _pg_backend_pids, proc_cpu_seconds, proc_memory_mb
from websockets.asyncio.client import ClientConnection, connect

from kith.accounts.models import Account, User, UserState
from kith.graph.models import Follow
from kith.oauth import service as oauth
from kith.runtime import Runtime

# Only these characters go into the generated Lua (tokens are URL-safe base64; seeded
# usernames and tags are letters and digits), so no escaping is needed.
_LUA_SAFE = re.compile(r"^[A-Za-z0-9_.\-]+$")


# --- people and their tokens --------------------------------------------------------------


async def api_tokens(rt: Runtime, account_ids: Sequence[int]) -> dict[int, str]:
    """A "read write" personal access token for each of these accounts (as the Development
    settings page makes them), by account id."""
    tokens: dict[int, str] = {}
    async with rt.sessions() as db:
        accounts = (await db.scalars(select(Account).where(Account.id.in_(account_ids)))).all()
        for account in accounts:
            issued = await oauth.create_personal_token(db, account, "kith-bench", "read write")
            tokens[account.id] = issued.access_token
    return tokens


async def most_followed(rt: Runtime, limit: int) -> tuple[int, int, list[int]]:
    """(account id, follower count, up to `limit` of its followers who can sign in) for the
    seed's most followed active account."""
    async with rt.sessions() as db:
        star, count = (
            await db.execute(
                select(Follow.followee_id, func.count().label("n"))
                .join(User, User.account_id == Follow.followee_id)
                .where(User.state == UserState.ACTIVE)
                .group_by(Follow.followee_id)
                .order_by(func.count().desc())
                .limit(1)
            )
        ).one()
        followers = (
            await db.scalars(
                select(Follow.follower_id)
                .join(User, User.account_id == Follow.follower_id)
                .join(Account, Account.id == Follow.follower_id)
                .where(
                    Follow.followee_id == star,
                    User.state == UserState.ACTIVE,
                    Account.suspended_at.is_(None),
                )
                .order_by(Follow.follower_id)
                .limit(limit)
            )
        ).all()
    return int(star), int(count), list(followers)


# --- the server's CPU ---------------------------------------------------------------------


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants (uvicorn's worker processes are children of the
    supervisor), from the ppid field of /proc/*/stat."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            raw = stat.read_text()
        except OSError:
            continue
        ppid = int(raw[raw.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(stat.parent.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def cpu_of(pids: Sequence[int]) -> dict[int, float]:
    """CPU seconds of each process still alive."""
    out = {}
    for pid in pids:
        with contextlib.suppress(OSError, ValueError):
            out[pid] = proc_cpu_seconds(pid)
    return out


def cpu_spent(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(after[p] - before[p] for p in after if p in before)


def tree_rss_mb(root: int) -> float:
    total = 0.0
    for pid in process_tree(root):
        with contextlib.suppress(OSError):
            total += proc_memory_mb(pid).get("VmRSS", 0.0)
    return round(total, 1)


@dataclass
class CpuWindow:
    """CPU of the server's process tree (and PostgreSQL backends) over a measured window."""

    server: Server
    database_url: str
    _pids: list[int] = field(default_factory=list)
    _backends: list[int] = field(default_factory=list)
    _before: dict[int, float] = field(default_factory=dict)
    _db_before: dict[int, float] = field(default_factory=dict)

    async def start(self) -> None:
        self._pids = process_tree(self.server.pid)
        self._backends = await _pg_backend_pids(self.database_url)
        self._before, self._db_before = cpu_of(self._pids), cpu_of(self._backends)

    def stop(self) -> dict[str, Any]:
        """Seconds of CPU spent since start (processes started meanwhile are not counted)."""
        out: dict[str, Any] = {
            "server_cpu_s": round(cpu_spent(self._before, cpu_of(self._pids)), 3),
            "server_processes": len(self._pids),
        }
        if self._backends:
            out["postgres_cpu_s"] = round(cpu_spent(self._db_before, cpu_of(self._backends)), 3)
            out["postgres_backends"] = len(self._backends)
        return out


# --- wrk ----------------------------------------------------------------------------------

# Runs in each wrk thread (its own Lua state); `setup` and `done` run in wrk's main state.
_LUA_COMMON = """
local threads, next_id, counter = {}, 0, 0
statuses = {}  -- a global: done() reads each thread's with thread:get
function setup(thread)
  next_id = next_id + 1
  thread:set("thread_id", next_id)
  table.insert(threads, thread)
end
function init(args)
  counter = (thread_id or 1) * 7919
  math.randomseed(thread_id or 1)
end
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
function done(summary, latency, requests)
  local total, codes = {}, {}
  for _, t in ipairs(threads) do
    for code, n in pairs(t:get("statuses")) do total[code] = (total[code] or 0) + n end
  end
  for code, n in pairs(total) do table.insert(codes, string.format('"%d": %d', code, n)) end
  local e = summary.errors
  io.write(string.format(
    'KITH-WRK {"duration_us": %d, "requests": %d, "bytes": %d, "p50_us": %d, "p90_us": %d, '
    .. '"p99_us": %d, "max_us": %d, "mean_us": %.1f, "connect": %d, "read": %d, "write": %d, '
    .. '"timeout": %d, "non_2xx_3xx": %d, "statuses": {%s}}\\n',
    summary.duration, summary.requests, summary.bytes, latency:percentile(50),
    latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
    e.connect, e.read, e.write, e.timeout, e.status, table.concat(codes, ", ")))
end
"""


def _lua_list(name: str, items: Sequence[str]) -> str:
    bad = [i for i in items if not _LUA_SAFE.match(i)]
    if bad:
        raise ValueError(f"cannot put {bad[0]!r} into the wrk script")
    return f"local {name} = {{" + ", ".join(f'"{i}"' for i in items) + "}\n"


def get_script(path: str, tokens: Sequence[str]) -> str:
    """wrk script: GET `path`, each request with the next person's Bearer token."""
    return (
        _lua_list("tokens", tokens)
        + _LUA_COMMON
        + f"""
function request()
  counter = counter + 1
  local auth = "Bearer " .. tokens[(counter % #tokens) + 1]
  return wrk.format("GET", "{path}", {{["Authorization"] = auth}})
end
"""
    )


def post_script(tokens: Sequence[str], usernames: Sequence[str], tags: Sequence[str]) -> str:
    """wrk script: POST /api/v1/statuses as JSON, authors rotating, each text with two
    @mentions of real people and two hashtags, 85 % public and the rest unlisted."""
    words = "walked the river path at dawn and the light on the water was unreal today".split()
    return (
        _lua_list("tokens", tokens)
        + _lua_list("users", usernames)
        + _lua_list("tags", tags)
        + _lua_list("words", words)
        + _LUA_COMMON
        + """
local function pick(list) return list[math.random(#list)] end
function request()
  counter = counter + 1
  local auth = "Bearer " .. tokens[(counter % #tokens) + 1]
  local body = {}
  for i = 1, math.random(5, #words) do body[i] = pick(words) end
  local text = table.concat(body, " ") .. " @" .. pick(users) .. " @" .. pick(users)
    .. " #" .. pick(tags) .. " #" .. pick(tags)
  local visibility = math.random() < 0.85 and "public" or "unlisted"
  local json = '{"status": "' .. text .. '", "visibility": "' .. visibility .. '"}'
  return wrk.format("POST", "/api/v1/statuses",
    {["Authorization"] = auth, ["Content-Type"] = "application/json"}, json)
end
"""
    )


async def run_wrk(
    url: str, script: Path, *, connections: int, threads: int, seconds: float
) -> dict[str, Any]:
    """One wrk run; its summary (latency in ms), the load generator's own CPU, and wrk's text."""
    usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = await asyncio.create_subprocess_exec(
        "wrk",
        f"-t{min(threads, connections)}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(script),
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    raw, _ = await proc.communicate()
    usage1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    text = raw.decode(errors="replace")
    line = next((ln for ln in text.splitlines() if ln.startswith("KITH-WRK ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {text[-2000:]}")
    s = json.loads(line.removeprefix("KITH-WRK "))
    seconds_run = s["duration_us"] / 1e6
    requests = s["requests"]
    statuses = {int(k): v for k, v in s["statuses"].items()}
    wrk_cpu = (usage1.ru_utime + usage1.ru_stime) - (usage0.ru_utime + usage0.ru_stime)
    return {
        "connections": connections,
        "seconds": round(seconds_run, 2),
        "requests": requests,
        "requests_per_s": round(requests / seconds_run, 1),
        "latency_ms": {
            "p50": s["p50_us"] / 1000,
            "p90": s["p90_us"] / 1000,
            "p99": s["p99_us"] / 1000,
            "mean": round(s["mean_us"] / 1000, 2),
            "max": s["max_us"] / 1000,
        },
        "statuses": statuses,
        "non_2xx": sum(n for code, n in statuses.items() if not 200 <= code < 300),
        "rate_limited_429": statuses.get(429, 0),
        "socket_errors": {k: s[k] for k in ("connect", "read", "write", "timeout") if s[k]},
        "kb_per_response": round(s["bytes"] / 1024 / max(1, requests), 1),
        "wrk_cpu_ms_per_request": round(wrk_cpu * 1000 / max(1, requests), 3),
        "wrk_output": [ln for ln in text.splitlines() if not ln.startswith("KITH-WRK ")],
    }


async def measure_wrk(
    server: Server,
    database_url: str,
    script_text: str,
    *,
    name: str,
    var_dir: Path,
    path: str,
    connections: int,
    threads: int,
    warmup_s: float,
    seconds: float,
) -> dict[str, Any]:
    """Warm up, then one measured wrk run with the server's CPU per request around it."""
    script = var_dir / f"{name}.lua"
    script.write_text(script_text)
    url = server.base + path
    warm: dict[str, Any] | None = None
    if warmup_s > 0:
        warm = await run_wrk(
            url, script, connections=connections, threads=threads, seconds=warmup_s
        )
    window = CpuWindow(server, database_url)
    await window.start()
    result = await run_wrk(url, script, connections=connections, threads=threads, seconds=seconds)
    cpu = window.stop()
    n = max(1, result["requests"])
    result["server_cpu_ms_per_request"] = round(cpu["server_cpu_s"] * 1000 / n, 2)
    result["server_cpu_utilisation"] = round(cpu["server_cpu_s"] / result["seconds"], 2)
    result["server_processes"] = cpu["server_processes"]
    if "postgres_cpu_s" in cpu:
        result["postgres_cpu_ms_per_request"] = round(cpu["postgres_cpu_s"] * 1000 / n, 2)
        result["postgres_backends"] = cpu["postgres_backends"]
    if warm is not None:
        result["warmup"] = {k: warm[k] for k in ("requests", "statuses", "socket_errors")}
    return result


# --- streaming ----------------------------------------------------------------------------


def raise_open_file_limit(wanted: int) -> int:
    """Lift this process's soft RLIMIT_NOFILE towards `wanted` (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


@dataclass
class StreamClient:
    """One WebSocket subscribed to `user`; every frame kept with its arrival time."""

    token: str
    ws: ClientConnection | None = None
    frames: list[tuple[float, str]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    _updates: dict[str, float] = field(default_factory=dict)
    _parsed: int = 0

    async def listen(self) -> None:
        assert self.ws is not None
        with contextlib.suppress(Exception):  # a dropped connection shows as a missed post
            async for frame in self.ws:
                self.frames.append((time.perf_counter(), str(frame)))

    def update_times(self) -> dict[str, float]:
        """Arrival time of each `update` event, by status id (frames parsed once, after
        their arrival was noted, so parsing never delays the timestamp)."""
        frames = self.frames[self._parsed :]
        self._parsed += len(frames)
        for at, raw in frames:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                msg = json.loads(raw)
                if msg.get("event") == "update":
                    self._updates.setdefault(str(json.loads(msg["payload"])["id"]), at)
        return self._updates


async def _open_clients(
    ws_url: str, tokens: Sequence[str], *, parallel: int, deflate: bool
) -> tuple[list[StreamClient], dict[str, int]]:
    gate = asyncio.Semaphore(parallel)
    failures: dict[str, int] = {}
    clients = [StreamClient(t) for t in tokens]

    async def open_one(c: StreamClient) -> None:
        async with gate:
            try:
                c.ws = await connect(
                    ws_url,
                    additional_headers={"Authorization": f"Bearer {c.token}"},
                    compression="deflate" if deflate else None,
                    ping_interval=None,  # the server pings; answering is enough
                    open_timeout=60,
                    close_timeout=2,
                    max_size=2**22,
                )
                c.task = asyncio.create_task(c.listen())
            except Exception as exc:  # counted: a refused handshake is a finding
                key = f"{type(exc).__name__}: {str(exc)[:80]}"
                failures[key] = failures.get(key, 0) + 1

    await asyncio.gather(*(open_one(c) for c in clients))
    return [c for c in clients if c.ws is not None], failures


def _share_within(delays_s: Sequence[float], limit_s: float, of: int) -> float:
    return round(100 * sum(1 for d in delays_s if d <= limit_s) / max(1, of), 2)


async def stream_delivery(
    server: Server,
    database_url: str,
    *,
    author_token: str,
    follower_tokens: Sequence[str],
    posts: int,
    interval_s: float,
    settle_s: float,
    deadline_s: float,
    within_s: float,
    parallel_handshakes: int,
    deflate: bool,
) -> dict[str, Any]:
    """Connect a WebSocket (stream=user) per follower, let the author post through the API,
    and time each `update` event's arrival at each client."""
    ws_url = server.base.replace("http://", "ws://") + "/api/v1/streaming?stream=user"
    t0 = time.perf_counter()
    clients, failures = await _open_clients(
        ws_url, follower_tokens, parallel=parallel_handshakes, deflate=deflate
    )
    connect_s = time.perf_counter() - t0
    await asyncio.sleep(settle_s)  # the server subscribes each socket to the bus after accept
    rss_connected = tree_rss_mb(server.pid)
    sent: list[tuple[str, float, float]] = []  # (status id, request start, response)
    errors: dict[str, int] = {}
    window = CpuWindow(server, database_url)
    await window.start()
    bench_cpu0 = time.process_time()
    async with httpx.AsyncClient(base_url=server.base, timeout=30) as http:
        for k in range(posts):
            if k:
                await asyncio.sleep(interval_s)
            start = time.perf_counter()
            r = await http.post(
                "/api/v1/statuses",
                json={"status": f"Stream check {k + 1} of {posts}", "visibility": "public"},
                headers={"Authorization": f"Bearer {author_token}"},
            )
            done = time.perf_counter()
            if r.status_code != 200:
                errors[f"HTTP {r.status_code}"] = errors.get(f"HTTP {r.status_code}", 0) + 1
                continue
            sent.append((str(r.json()["id"]), start, done))
    # Wait until every client has every post, or the deadline after the last one.
    ids = {sid for sid, _, _ in sent}
    last = sent[-1][2] if sent else time.perf_counter()
    while time.perf_counter() < last + deadline_s:
        if all(ids <= set(c.update_times()) for c in clients):
            break
        await asyncio.sleep(0.25)
    cpu = window.stop()
    bench_cpu = time.process_time() - bench_cpu0
    per_post: list[dict[str, Any]] = []
    from_response: list[float] = []
    from_request: list[float] = []
    never = 0
    for sid, start, done in sent:
        got = [c.update_times().get(sid) for c in clients]
        arrived = [g for g in got if g is not None and g - done <= deadline_s]
        never += len(clients) - len(arrived)
        after_response = [g - done for g in arrived]
        after_request = [g - start for g in arrived]
        from_response += after_response
        from_request += after_request
        per_post.append(
            {
                "post_ms": round((done - start) * 1000, 1),
                "within_pct_of_response": _share_within(after_response, within_s, len(clients)),
                "delivery_ms_after_response": Dist.of(after_response).as_dict(),
            }
        )
    expected = len(clients) * len(sent)
    for c in clients:
        if c.task is not None:
            c.task.cancel()
    await asyncio.gather(*(c.ws.close() for c in clients if c.ws is not None))
    return {
        "clients_wanted": len(follower_tokens),
        "clients": len(clients),
        "handshake_failures": failures,
        "connect_all_s": round(connect_s, 2),
        "server_rss_mb_connected": rss_connected,
        "posts": len(sent),
        "post_errors": errors,
        "within_ms": round(within_s * 1000),
        "within_pct_of_response": _share_within(from_response, within_s, expected),
        "within_pct_of_request_start": _share_within(from_request, within_s, expected),
        "delivery_ms_after_response": Dist.of(from_response).as_dict(),
        "delivery_ms_after_request_start": Dist.of(from_request).as_dict(),
        "never_received": never,
        "deadline_s": deadline_s,
        "server_cpu_ms_per_delivery": round(
            cpu["server_cpu_s"] * 1000 / max(1, len(from_response)), 3
        ),
        **({"postgres_cpu_s": cpu["postgres_cpu_s"]} if "postgres_cpu_s" in cpu else {}),
        # The clients' own cost (this process): high values would delay the arrival times.
        "bench_cpu_ms_per_delivery": round(bench_cpu * 1000 / max(1, len(from_response)), 3),
        "per_post": per_post,
    }
