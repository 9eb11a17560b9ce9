"""Communities benchmark at the issue's scale: community feeds and "My communities".

On a copy of the seeded world (10,000 accounts, 1,000,000 posts; bench/seeded_databases.py)
it adds 1,000 communities (200 members on average, three with 20,000, which needs 12,000
extra member-only accounts), puts a share of the existing posts in them as threads and the
replies under those threads (likes and boosts stay what the seed gave them; migration 0006's
triggers compute `score`), pins two threads per community, makes 20 communities private and
removes or holds a few threads. Then it times, at service level (a session per call):

- community_feed new / active / top (day, week, all), first page of 20, in a big and a typical
  community, for an anonymous viewer, a member and a non-member (and new in a private one);
- my_communities for a member of 50 communities;
- timelines.public (40), before and after the communities exist (the policy's community gate).

    .venv/bin/python bench/communities.py                  # both databases
    .venv/bin/python bench/communities.py --db sqlite --samples 100 --json var/bench/c.json

Times are medians and p90 of wall time; CPU is this process's CPU per call (on SQLite that is
all of it) and, on PostgreSQL, the mean CPU of the server backends per call (from /proc).
SQLite gets no ANALYZE (Kith never runs it); PostgreSQL is VACUUM ANALYZEd after the load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from seed_world import Scale, complete_rows
from seeded_databases import (
    BENCH_VAR,
    Prepared,
    asyncpg_dsn,
    drop_pg_database,
    prepare_postgres,
    prepare_sqlite,
)
from sqlalchemy import Table, select, text
from sqlalchemy.ext.asyncio import AsyncConnection
from timeline_probes import Dist, proc_cpu_seconds

from kith import policy
from kith.accounts.models import Account
from kith.communities import feeds
from kith.communities.models import Community, CommunityPost, Membership
from kith.config import Settings
from kith.posts.models import Post
from kith.runtime import Runtime
from kith.timelines import service as timelines
from kith.timelines.shapes import ENTITIES

TARGETS_MS = {"feed": 10.0, "mine": 15.0}
EXTRA_ACCOUNTS = 12_000
BIG = 3
BIG_MEMBERS = 20_000
TYPICAL_MEAN = 155  # with three of 20,000, the mean over 1,000 is ~200
THREADS_PER_MEMBER = 0.5
PRIVATE = 20
BATCH = 5_000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    p.add_argument("--communities", type=int, default=1_000)
    p.add_argument("--samples", type=int, default=200, help="timed calls per measurement")
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--nice", type=int, default=0, help="lower this process's priority by N")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--keep-pg", action="store_true", help="do not drop the PostgreSQL database")
    return p.parse_args(argv)


def _log(msg: str) -> None:
    print(f"[communities {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --- the communities layer ----------------------------------------------------------------


class Layer:
    """The rows added on top of the seed, and who the measured viewers and communities are."""

    def __init__(self) -> None:
        self.accounts: list[dict[str, Any]] = []
        self.communities: list[dict[str, Any]] = []
        self.members: list[dict[str, Any]] = []
        self.posts: list[dict[str, Any]] = []  # community_posts rows
        self.gates: dict[int, str] = {}  # post id -> community_gate
        self.viewers: dict[str, int] = {}
        self.typical_member = 0  # in 50 typical communities, none of the big ones
        self.picked: dict[str, int] = {}  # label -> community id
        self.facts: dict[str, Any] = {}


def _build(
    seed_accounts: list[int],
    originals: list[tuple[int, int]],
    replies: list[tuple[int, int]],
    n_communities: int,
    rng: random.Random,
) -> Layer:
    """Decide every community row from the seed's accounts and posts (ids in time order)."""
    layer = Layer()
    now = datetime.now(UTC)
    base = max(seed_accounts) + 1
    lurkers = [base + i for i in range(EXTRA_ACCOUNTS)]
    layer.accounts = [
        {"id": a, "username": f"lurker{i}", "username_key": f"lurker{i}", "domain": ""}
        for i, a in enumerate(lurkers)
    ]
    everyone = seed_accounts + lurkers
    by_author: dict[int, list[int]] = {}
    for pid, author in originals:
        by_author.setdefault(author, []).append(pid)
    posters = [a for a in seed_accounts if a in by_author]
    seed_set = set(seed_accounts)
    # The viewer of "My communities": a poster in big community 0 and 49 typical ones.
    me = posters[len(posters) // 2]
    mine = {0} | set(rng.sample(range(BIG, n_communities - PRIVATE), 48)) | {n_communities - 1}
    # And one in 50 typical communities only (no big one to fill the newest day).
    me2 = posters[len(posters) // 3]
    mine2 = set(rng.sample(range(BIG, n_communities - PRIVATE), 50))
    cids = [10_000_000 + i for i in range(n_communities)]
    taken: set[int] = set()
    sizes = []
    for c in range(n_communities):
        if c < BIG:
            size = BIG_MEMBERS
        else:
            size = max(5, min(5_000, int(TYPICAL_MEAN * rng.lognormvariate(-0.5, 1.0))))
        who = set(rng.sample(everyone, size))
        who -= {me, me2}
        if c in mine:
            who.add(me)
        if c in mine2:
            who.add(me2)
        members = sorted(who)
        sizes.append(len(members))
        private = c >= n_communities - PRIVATE
        owner = rng.choice([m for m in members if m in seed_set] or members)
        mods = set(rng.sample(members, min(2, len(members))))
        layer.communities.append(
            {
                "id": cids[c],
                "handle": f"club{c}",
                "handle_key": f"club{c}",
                "name": f"Club {c}",
                "description": "A bench community.",
                "topics": [],
                "membership": "private" if private else ("approval" if c % 7 == 0 else "open"),
                "owner_id": owner,
                "created_at": now - timedelta(days=90),
            }
        )
        waiting = rng.sample([a for a in everyone if a not in who], 3) if c % 7 == 0 else []
        _add_members(layer, cids[c], members, owner, mods, waiting, now)
        rows = _pick_threads(cids[c], members, by_author, taken, private, rng, now)
        layer.posts += rows
    # A few cross-posts: threads of public typical communities also in big community 1.
    big1 = {m["account_id"] for m in layer.members if m["community_id"] == cids[1]}
    owners = dict(originals)
    public_rows = [
        r for r in layer.posts if not r["members_only"] and r["community_id"] not in cids[:BIG]
    ]
    for r in rng.sample(public_rows, len(public_rows) // 100):
        if owners[r["post_id"]] in big1 and r["state"] == "approved":
            layer.posts.append({**r, "community_id": cids[1], "pinned_at": None})
    _add_replies(layer, replies, now)
    _gates(layer)
    typical = min(
        (c for c in range(BIG, n_communities - PRIVATE) if c in mine),
        key=lambda c: abs(sizes[c] - 200),
    )
    private_mine = n_communities - 1
    inside = {
        m["account_id"] for m in layer.members if m["community_id"] in (cids[0], cids[typical])
    }
    outsider = next(a for a in posters if a not in inside and a not in big1 and a != me2)
    layer.viewers = {"member": me, "non-member": outsider}
    layer.typical_member = me2
    layer.picked = {"big": cids[0], "typical": cids[typical], "private": cids[private_mine]}
    layer.facts = {
        "communities": n_communities,
        "members_active": sum(1 for m in layer.members if m["state"] == "active"),
        "members_mean": round(sum(sizes) / len(sizes), 1),
        "members_of_picked": {"big": sizes[0], "typical": sizes[typical]},
        "community_posts": len(layer.posts),
        "threads": sum(1 for r in layer.posts if r["is_thread"]),
        "extra_accounts": EXTRA_ACCOUNTS,
        "private_communities": PRIVATE,
        "member_of": len(mine),
        "ids": {**layer.viewers, "typical member": me2, **layer.picked},
    }
    return layer


def _add_members(
    layer: Layer,
    cid: int,
    members: list[int],
    owner: int,
    mods: set[int],
    waiting: list[int],
    now: datetime,
) -> None:
    """Active members (owner, moderators, members) and pending requests of one community."""
    for m in members:
        role = "owner" if m == owner else "moderator" if m in mods else "member"
        layer.members.append(
            {
                "community_id": cid,
                "account_id": m,
                "id": len(layer.members) + 1,
                "role": role,
                "state": "active",
                "joined_at": now - timedelta(days=80),
            }
        )
    for m in waiting:
        layer.members.append(
            {
                "community_id": cid,
                "account_id": m,
                "id": len(layer.members) + 1,
                "role": "member",
                "state": "pending",
                "answer": "I like it.",
                "joined_at": None,
            }
        )


def _pick_threads(
    cid: int,
    members: list[int],
    by_author: dict[int, list[int]],
    taken: set[int],
    private: bool,
    rng: random.Random,
    now: datetime,
) -> list[dict[str, Any]]:
    """Threads of one community: posts by its members (who have posted), about one per two
    members, none already in another community; two pinned, 1 % removed, 0.5 % pending."""
    authors = [m for m in members if m in by_author]
    want = int(len(members) * THREADS_PER_MEMBER)
    rows: list[dict[str, Any]] = []
    for _ in range(want * 2):
        if len(rows) >= want or not authors:
            break
        pid = rng.choice(by_author[rng.choice(authors)])
        if pid in taken:
            continue
        taken.add(pid)
        rows.append(_thread_row(cid, pid, private, now))
    for r in rng.sample(rows, min(2, len(rows))):
        r["pinned_at"] = now - timedelta(hours=rng.randrange(1, 500))
    for r in rows:
        roll = rng.random()
        if roll < 0.01:
            r["state"] = "removed"
        elif roll < 0.015:
            r["state"] = "pending"
    return rows


def _thread_row(cid: int, pid: int, private: bool, now: datetime) -> dict[str, Any]:
    return {
        "community_id": cid,
        "post_id": pid,
        "is_thread": True,
        "members_only": private,
        "state": "approved",
        "created_at": now,
        "thread_replies": 0,
        "active_id": pid,
        "pinned_at": None,
    }


def _add_replies(layer: Layer, replies: list[tuple[int, int]], now: datetime) -> None:
    """Replies (in id order) under a community thread join its communities; the thread's
    reply count and newest activity follow."""
    threads: dict[int, list[dict[str, Any]]] = {}
    for r in layer.posts:
        threads.setdefault(r["post_id"], []).append(r)
    root_of: dict[int, int] = {pid: pid for pid in threads}
    for pid, parent in replies:
        root = root_of.get(parent)
        if root is None:
            continue
        root_of[pid] = root
        for t in threads[root]:
            t["thread_replies"] += 1
            t["active_id"] = max(t["active_id"], pid)
            reply = _thread_row(t["community_id"], pid, t["members_only"], now)
            reply.update(is_thread=False, active_id=0, state="approved")
            layer.posts.append(reply)


def _gates(layer: Layer) -> None:
    """posts.community_gate as communities.posting.gate_of would set it."""
    rows: dict[int, list[tuple[str, bool]]] = {}
    for r in layer.posts:
        rows.setdefault(r["post_id"], []).append((r["state"], r["members_only"]))
    for pid, states in rows.items():
        approved = [mo for st, mo in states if st == "approved"]
        if not approved:
            layer.gates[pid] = "moderators"
        elif all(approved):
            layer.gates[pid] = "members"


async def _insert(conn: AsyncConnection, table: Table, rows: list[dict[str, Any]]) -> None:
    full = complete_rows(table, rows)
    for start in range(0, len(full), BATCH):
        await conn.execute(table.insert(), full[start : start + BATCH])


async def add_communities(rt: Runtime, prep: Prepared, n: int, rng: random.Random) -> Layer:
    """Read the seed, build the layer, write it (and VACUUM ANALYZE PostgreSQL, as autovacuum
    would)."""
    async with rt.engine.connect() as conn:
        seed_accounts = list((await conn.scalars(select(Account.id).order_by(Account.id))).all())
        originals = [
            (r[0], r[1])
            for r in await conn.execute(
                select(Post.id, Post.account_id)
                .where(
                    Post.in_reply_to_id.is_(None),
                    Post.reblog_of_id.is_(None),
                    Post.visibility.in_(("public", "unlisted")),
                )
                .order_by(Post.id)
            )
        ]
        replies = [
            (r[0], r[1])
            for r in await conn.execute(
                select(Post.id, Post.in_reply_to_id)
                .where(Post.in_reply_to_id.isnot(None), Post.visibility.in_(("public", "unlisted")))
                .order_by(Post.id)
            )
        ]
    layer = _build(seed_accounts, originals, replies, n, rng)
    _log(f"writing {layer.facts}")
    async with rt.engine.begin() as conn:
        await _insert(conn, Account.__table__, layer.accounts)
        await _insert(conn, Community.__table__, layer.communities)
        await _insert(conn, Membership.__table__, layer.members)
        await _insert(conn, CommunityPost.__table__, layer.posts)
        for gate in ("members", "moderators"):
            ids = [pid for pid, g in layer.gates.items() if g == gate]
            for start in range(0, len(ids), 900):
                await conn.execute(
                    Post.__table__.update()
                    .where(Post.id.in_(ids[start : start + 900]))
                    .values(community_gate=gate)
                )
    if prep.backend == "postgres":
        pg = await asyncpg.connect(asyncpg_dsn(prep.url))
        try:
            await pg.execute("VACUUM ANALYZE")
        finally:
            await pg.close()
    # SQLite: no ANALYZE. Kith never runs it, so a real instance's planner has no statistics
    # (and the seeded file has none either).
    return layer


# --- measuring ----------------------------------------------------------------------------

Call = Callable[[Any], Awaitable[Any]]


async def _server_pids(rt: Runtime) -> list[int]:
    """PostgreSQL: the backends serving this database (the pool's connections); [] on SQLite."""
    if rt.engine.dialect.name != "postgresql":
        return []
    async with rt.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND backend_type = 'client backend'"
            )
        )
        return [int(r[0]) for r in rows]


def _cpu_of(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += proc_cpu_seconds(pid)
        except OSError:  # a connection closed meanwhile
            pass
    return total


async def timed(rt: Runtime, call: Call, samples: int) -> dict[str, Any]:
    """p50/p90 wall time and median CPU of `call(db)`, a fresh session per call (and on
    PostgreSQL the server backends' CPU per call, from /proc)."""
    for _ in range(5):
        async with rt.sessions() as db:
            await call(db)
    pids = await _server_pids(rt)
    server0 = _cpu_of(pids)
    wall: list[float] = []
    cpu: list[float] = []
    size = 0
    for _ in range(samples):
        async with rt.sessions() as db:
            t0, c0 = time.perf_counter(), time.process_time()
            page = await call(db)
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        size = len(page.posts)
    server_ms = (_cpu_of(pids) - server0) * 1000 / samples if pids else None
    d = Dist.of(wall)
    c = Dist.of(cpu)
    return {
        "p50": d.p50,
        "p90": d.p90,
        "cpu_p50": c.p50,
        "cpu_mean": c.mean,
        "server_cpu_mean": None if server_ms is None else round(server_ms, 2),
        "posts": size,
    }


def _viewer(account_id: int | None) -> policy.Viewer:
    return policy.ANONYMOUS if account_id is None else policy.Viewer(account_id)


async def measure_public(rt: Runtime, viewers: dict[str, int | None], n: int) -> dict[str, Any]:
    out = {}
    for label, vid in viewers.items():

        async def call(db: Any, v: policy.Viewer = _viewer(vid)) -> Any:
            return await timelines.public(db, v, limit=40, shape=ENTITIES)

        out[label] = await timed(rt, call, n)
    return out


async def measure_feeds(rt: Runtime, layer: Layer, n: int) -> dict[str, Any]:
    viewers: dict[str, int | None] = {"anonymous": None, **layer.viewers}
    sorts = [("new", "day"), ("active", "day"), ("top", "day"), ("top", "week"), ("top", "all")]
    out: dict[str, Any] = {}
    for where in ("big", "typical", "private"):
        cid = layer.picked[where]
        for sort, window in sorts:
            if where == "private" and sort != "new":
                continue
            for label, vid in viewers.items():
                if where == "private" and label != "member":
                    continue

                async def call(
                    db: Any,
                    v: policy.Viewer = _viewer(vid),
                    s: str = sort,
                    w: str = window,
                    c: int = cid,
                ) -> Any:
                    community = await db.get(Community, c)
                    return await feeds.community_feed(db, v, community, sort=s, window=w, limit=20)

                name = f"{sort}{'' if sort != 'top' else ' ' + window}"
                out[f"{where} | {name} | {label}"] = await timed(rt, call, n)
                _log(f"{where} {name} {label}: {out[f'{where} | {name} | {label}']}")
    me = _viewer(layer.viewers["member"])

    async def mine(db: Any) -> Any:
        return await feeds.my_communities(db, me, limit=20)

    out["my communities (50, one big) | page 1 | member"] = await timed(rt, mine, n)
    me2 = _viewer(layer.typical_member)

    async def mine2(db: Any) -> Any:
        return await feeds.my_communities(db, me2, limit=20)

    out["my communities (50 typical) | page 1 | member"] = await timed(rt, mine2, n)
    return out


async def run(prep: Prepared, args: argparse.Namespace) -> dict[str, Any]:
    settings = Settings(
        database_url=prep.url,
        var_dir=BENCH_VAR / f"var-communities-{prep.backend}",
        secret_key="bench-secret-not-for-production",
        domain="127.0.0.1:8000",
        run_worker=False,
        redis_url="",
    )
    rt = Runtime.from_settings(settings)
    rng = random.Random(args.seed)
    out: dict[str, Any] = {"world": prep.world.get("rows")}
    try:
        async with rt.sessions() as db:
            someone = int((await db.scalars(select(Account.id).limit(1).offset(4321))).one())
        public_viewers: dict[str, int | None] = {"anonymous": None, "signed in": someone}
        _log("public timeline before communities")
        out["public_before"] = await measure_public(rt, public_viewers, args.samples)
        t0 = time.perf_counter()
        layer = await add_communities(rt, prep, args.communities, rng)
        out["layer"] = layer.facts
        out["layer_seconds"] = round(time.perf_counter() - t0, 1)
        _log(f"communities added in {out['layer_seconds']} s")
        out["public_after"] = await measure_public(rt, public_viewers, args.samples)
        out["feeds"] = await measure_feeds(rt, layer, args.samples)
    finally:
        await rt.close()
    return out


def markdown(result: dict[str, Any]) -> str:
    """One table per database: p50 / p90 ms (CPU p50 ms)."""
    lines = []
    for backend, r in result["backends"].items():
        lines += [
            f"**{backend}** ({ {k: v for k, v in r['layer'].items() if k != 'ids'} })",
            "",
            "| community | order | viewer | p50 / p90 ms | CPU ms | server CPU ms | posts |",
            "|---|---|---|---|---|---|---|",
        ]
        for key, d in r["feeds"].items():
            target = TARGETS_MS["mine" if key.startswith("my") else "feed"]
            mark = "" if d["p50"] <= target else " **miss**"
            cells = " | ".join(key.split(" | "))
            lines.append(
                f"| {cells} | {d['p50']} / {d['p90']}{mark} | {d['cpu_p50']} | "
                f"{d.get('server_cpu_mean') or '–'} | {d['posts']} |"
            )
        for when in ("public_before", "public_after"):
            for label, d in r[when].items():
                lines.append(
                    f"| public timeline ({when[7:]}) | 40 | {label} | {d['p50']} / {d['p90']} "
                    f"| {d['cpu_p50']} | {d.get('server_cpu_mean') or '–'} | {d['posts']} |"
                )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.nice:
        os.nice(args.nice)
    scale = Scale()
    result: dict[str, Any] = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "backends": {},
    }
    for backend in ("sqlite", "postgres") if args.db == "both" else (args.db,):
        if backend == "sqlite":
            prep = prepare_sqlite(scale, reseed=False, work_name="run-communities.db")
        else:
            prep = prepare_postgres(scale)
        try:
            result["backends"][backend] = asyncio.run(run(prep, args))
            result["backends"][backend]["load_average_after"] = [
                round(x, 2) for x in os.getloadavg()
            ]
        finally:
            if prep.pg_name and args.keep_pg:
                _log(f"kept {prep.url}")
            elif prep.pg_name:
                asyncio.run(drop_pg_database(prep.pg_name))
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(result, indent=1))
    result["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "backends"}))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
