"""A real worker process for the crash test in tests/test_jobs.py.

`python -m tests.jobs_fixture` runs kith.jobs.worker.work_forever — the loop `kith worker`
runs — against the database in KITH_DATABASE_URL, with a lease of KITH_TEST_LEASE seconds. It
wraps the real `poll.ended` handler so that the first run anywhere (marked by the file named in
KITH_TEST_STALL_MARKER) does all its work, flushes it, and then stalls before the commit: the
moment a crash hurts most. The test SIGKILLs the process there.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from kith import handlers  # noqa: F401  (registers the real handlers before we wrap one)
from kith.config import Settings
from kith.jobs import queue, worker
from kith.runtime import Runtime

STALL_MARKER_ENV = "KITH_TEST_STALL_MARKER"
LEASE_ENV = "KITH_TEST_LEASE"

_real_poll_ended = queue.HANDLERS["poll.ended"]


@queue.job_handler("poll.ended")
async def poll_ended_then_stall(db: AsyncSession, payload: dict[str, Any]) -> None:
    """The real handler, then — on the very first run only — a long stall before commit."""
    await _real_poll_ended(db, payload)
    await db.flush()
    marker = Path(os.environ[STALL_MARKER_ENV])
    if not marker.exists():  # noqa: ASYNC240 (a test stub: a tiny local file is fine)
        marker.write_text(str(os.getpid()))  # noqa: ASYNC240
        await asyncio.sleep(600)


async def _main() -> None:
    rt = Runtime.from_settings(Settings())
    try:
        await worker.work_forever(
            rt.sessions, idle_sleep=0.1, lease=float(os.environ.get(LEASE_ENV, "2"))
        )
    finally:
        await rt.close()


if __name__ == "__main__":
    asyncio.run(_main())
