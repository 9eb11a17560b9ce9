"""Home for people who follow hashtags: a page of Home (kith.timelines.service.home, limit 40,
the API's shape) for readers following none, then the same readers following the seed's most
used hashtags; from their feed and searched (no feed), on SQLite and PostgreSQL.

A followed tag's public posts join one's Home. The Home rule once tested "carries a followed
tag" against the list of every post of every followed tag, made anew for each statement: a
popular tag's posts are counted in hundreds of thousands on a real instance.

    .venv/bin/python bench/followed_tags.py                       # SQLite, 5 tags
    .venv/bin/python bench/followed_tags.py --db both --tags 1,5
    .venv/bin/python bench/followed_tags.py --db postgres --pg-url postgresql+asyncpg://…/kith_…

Uses a copy of bench/api.py's seeded SQLite file (run that first) and, for PostgreSQL, a
throwaway copy of its seeded template (or --pg-url, whose tag follows it changes).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from typing import Any

from seed_world import Scale
from seeded_databases import BENCH_VAR, drop_pg_database, prepare_postgres, prepare_sqlite
from sqlalchemy import delete, func, select
from timeline_probes import Dist

from kith import policy
from kith.config import Settings
from kith.db import new_id, utcnow
from kith.graph.models import Follow
from kith.posts.models import PostTag
from kith.runtime import Runtime
from kith.timelines import feeds, service
from kith.timelines.models import HomeFeed, TagFollow
from kith.timelines.shapes import REFS


async def _page(rt: Runtime, viewer_id: int, *, searched: bool) -> int:
    async with rt.sessions() as db:
        viewer = policy.Viewer(viewer_id)
        if searched:  # as for someone without a feed (or below its floor)
            top = new_id()
            return len(await service._searched_home(db, viewer, top=top, n=40, shape=REFS))
        return len((await service.home(db, viewer, limit=40, shape=REFS)).posts)


async def _timed(rt: Runtime, readers: list[int], samples: int, searched: bool) -> Dist:
    rng = random.Random(7)
    for v in readers:  # warm: caches, pools, the statements' plans
        await _page(rt, v, searched=searched)
    took = []
    for v in rng.choices(readers, k=samples):
        t0 = time.perf_counter()
        await _page(rt, v, searched=searched)
        took.append(time.perf_counter() - t0)
    return Dist.of(took)


async def _follow_tags(rt: Runtime, readers: list[int], tag_ids: list[int]) -> None:
    """The readers follow exactly `tag_ids`; their feeds are made again (a feed holds the
    followed tags' posts from when it is made)."""
    async with rt.sessions() as db:
        await db.execute(delete(TagFollow).where(TagFollow.account_id.in_(readers)))
        db.add_all(
            TagFollow(id=new_id(), account_id=a, tag_id=t, created_at=utcnow())
            for a in readers
            for t in tag_ids
        )
        await db.execute(delete(HomeFeed).where(HomeFeed.account_id.in_(readers)))
        await db.commit()
    for a in readers:
        async with rt.sessions() as db:
            await feeds.build(db, a)
            await db.commit()


async def measure(url: str, backend: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    settings = Settings(
        database_url=url,
        var_dir=BENCH_VAR / f"var-tags-{backend}",
        secret_key="bench-secret-not-for-production",
        domain="127.0.0.1:8000",
        run_worker=False,
        redis_url="",
    )
    rt = Runtime.from_settings(settings)
    out = []
    try:
        async with rt.sessions() as db:
            followers = (
                select(Follow.follower_id)
                .group_by(Follow.follower_id)
                .having(func.count() >= 50)
                .order_by(Follow.follower_id)
                .limit(args.readers)
            )
            readers = list((await db.scalars(followers)).all())
            popular = (
                select(PostTag.tag_id, func.count().label("n"))
                .group_by(PostTag.tag_id)
                .order_by(func.count().desc())
                .limit(max(args.tags))
            )
            tags = [(t, n) for t, n in (await db.execute(popular)).all()]
        for k in [0, *args.tags]:
            await _follow_tags(rt, readers, [t for t, _ in tags[:k]])
            for searched in (False, True):
                d = await _timed(rt, readers, args.samples, searched)
                row = {
                    "db": backend,
                    "tags": k,
                    "their posts": sum(n for _, n in tags[:k]),
                    "path": "searched" if searched else "feed",
                    "p50": d.p50,
                    "p90": d.p90,
                    "p99": d.p99,
                }
                print(
                    f"{backend:8} {k} tags ({row['their posts']:>6} posts) {row['path']:8}"
                    f" p50 {d.p50:7.2f}  p90 {d.p90:7.2f}  p99 {d.p99:7.2f} ms",
                    flush=True,
                )
                out.append(row)
        await _follow_tags(rt, readers, [])
    finally:
        await rt.close()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--db", choices=["sqlite", "postgres", "both"], default="sqlite")
    p.add_argument("--tags", default="5", help="comma-separated numbers of tags to follow")
    p.add_argument("--readers", type=int, default=16)
    p.add_argument("--samples", type=int, default=200)
    p.add_argument("--pg-url", help="a seeded PostgreSQL database to use as it is")
    args = p.parse_args()
    args.tags = [int(t) for t in args.tags.split(",")]
    scale = Scale()
    if args.db in ("sqlite", "both"):
        prep = prepare_sqlite(scale, reseed=False, work_name="run-tags-sqlite.db")
        asyncio.run(measure(prep.url, "sqlite", args))
    if args.db in ("postgres", "both"):
        if args.pg_url:
            asyncio.run(measure(args.pg_url, "postgres", args))
        else:
            pg = prepare_postgres(scale)
            try:
                asyncio.run(measure(pg.url, "postgres", args))
            finally:
                assert pg.pg_name is not None
                asyncio.run(drop_pg_database(pg.pg_name))


if __name__ == "__main__":
    main()
