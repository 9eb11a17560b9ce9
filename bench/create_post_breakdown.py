"""Where the time of kith.posts.service.create_post goes: the same post with parts of the work
left out, one at a time, on an already seeded database (run bench/timelines.py first; it
leaves its SQLite working copy at var/bench/run-sqlite.db).

    .venv/bin/python bench/create_post_breakdown.py
    .venv/bin/python bench/create_post_breakdown.py --url postgresql+asyncpg://…/kith_bench_…

Stubbing a function is for measuring only: the rows written without notifications are not what
Kith would write. Figures are CPU milliseconds of this process per post (on SQLite that
includes the database's own work, which runs in aiosqlite's thread) and wall milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select

from kith import policy
from kith.accounts.models import Account
from kith.config import Settings
from kith.notifications import service as notifications
from kith.posts import service as posts
from kith.posts.service import PostInput
from kith.runtime import Runtime

REPO = Path(__file__).resolve().parent.parent
FULL = "Walked the river path today @{m1} @{m2} #photography #walks"
CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("2 mentions + 2 hashtags (as in timelines.py)", FULL, {}),
    ("plain text, no mentions, no hashtags", "Walked the river path today, lovely light", {}),
    ("2 hashtags only", "Walked the river path today #photography #walks", {}),
    ("2 mentions only", "Walked the river path today @{m1} @{m2}", {}),
    ("2 mentions + 2 hashtags, notifications skipped", FULL, {"notify": True}),
    ("2 mentions + 2 hashtags, can_see_post() skipped", FULL, {"can_see_post": True}),
]


async def _skip_notify(*_a: Any, **_k: Any) -> None:
    return None


async def _skip_notify_many(*_a: Any, **_k: Any) -> dict[int, int]:
    return {}


async def _always_visible(*_a: Any, **_k: Any) -> bool:
    return True


async def main(url: str, n: int) -> None:
    settings = Settings(
        database_url=url,
        var_dir=REPO / "var" / "bench" / "breakdown",
        secret_key="bench-secret-not-for-production",
        run_worker=False,
        redis_url="",
    )
    rt = Runtime.from_settings(settings)
    rng = random.Random(7)
    async with rt.sessions() as db:
        authors = list(
            await db.scalars(select(Account).where(Account.suspended_at.is_(None)).limit(400))
        )
    names = [a.username for a in authors]
    real_notify, real_can_see = notifications.notify, policy.can_see_post
    real_notify_many = notifications.notify_many

    def post_one(template: str) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            m1, m2 = rng.sample(names, 2)
            async with rt.sessions() as db:
                data = PostInput(source=template.format(m1=m1, m2=m2))
                await posts.create_post(db, rng.choice(authors), data)

        return run

    print(f"{'case':50} {'CPU ms/post':>12} {'wall ms/post':>13}")
    try:
        for label, template, skip in CASES:
            notifications.notify = _skip_notify if skip.get("notify") else real_notify
            notifications.notify_many = (
                _skip_notify_many if skip.get("notify") else real_notify_many
            )
            policy.can_see_post = _always_visible if skip.get("can_see_post") else real_can_see
            one = post_one(template)
            for _ in range(5):
                await one()
            cpu0, t0 = time.process_time(), time.perf_counter()
            for _ in range(n):
                await one()
            cpu = (time.process_time() - cpu0) / n * 1000
            wall = (time.perf_counter() - t0) / n * 1000
            print(f"{label:50} {cpu:12.1f} {wall:13.1f}", flush=True)
    finally:
        notifications.notify, policy.can_see_post = real_notify, real_can_see
        notifications.notify_many = real_notify_many
        await rt.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--url", default=f"sqlite+aiosqlite:///{REPO / 'var' / 'bench' / 'run-sqlite.db'}"
    )
    parser.add_argument("--posts", type=int, default=150, help="posts per case")
    parser.add_argument("--nice", type=int, default=10)
    args = parser.parse_args()
    if args.nice:
        os.nice(args.nice)
    asyncio.run(main(args.url, args.posts))
