"""Each process that writes to a database holds its own id slot, so two processes never make
the same id (kith.db.IdGenerator: milliseconds, then the slot, then a counter).

A random counter start per process was not enough: two web workers posting at 70/s made the
same post id about every two minutes. A slot is held for the life of the process, by
something the operating system or the database lets go of when the process dies, so no
timing is assumed:

- SQLite (one machine by nature): an exclusive `flock` on one of SLOTS files in a directory
  beside the database file;
- PostgreSQL (processes may be on several machines): a session advisory lock, held by a
  connection of its own that a daemon thread keeps open (and checks every minute: if the
  connection is lost, the process takes a slot again, possibly another).

A process claims once, against the first database it opens (tests open many databases in one
process; a server opens one). If every slot is taken, or the claim fails, the process keeps
a random slot and says so in the log: collisions are then possible again, as before.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import random
import threading
from pathlib import Path
from typing import IO

from sqlalchemy.engine import make_url

from kith import db as kith_db

log = logging.getLogger(__name__)

SLOTS = 1 << kith_db.IdGenerator.SLOT_BITS
_ADVISORY_CLASS = 0x6B697468  # "kith": the first key of the advisory locks (the slot is the second)
_CHECK_SECONDS = 60.0

_lock = threading.Lock()
_claimed_for: int | None = None  # the pid that claimed (a forked child claims again)
_held: list[IO[bytes]] = []  # open lock files: closing them would let go of the slot


def claim(database_url: str) -> None:
    """Hold an id slot for this process in the database at `database_url`, if none is held."""
    global _claimed_for
    with _lock:
        if _claimed_for == os.getpid():
            return
        _claimed_for = os.getpid()
        url = make_url(database_url)
        try:
            if url.get_backend_name() == "sqlite":
                slot = _claim_sqlite(url.database)
            else:
                slot = _claim_postgres(url.set(drivername="postgresql").render_as_string(False))
        except Exception:  # noqa: BLE001 — a claim that fails must never stop the process
            log.warning("could not claim an id slot; keeping a random one", exc_info=True)
            return
        if slot is None:
            log.warning("all %d id slots are taken; keeping a random one", SLOTS)
            return
        kith_db.use_id_slot(slot)


def _claim_sqlite(database: str | None) -> int | None:
    if not database or database == ":memory:" or database.startswith("file:"):
        return None  # a database nobody else can open: any slot is unique
    folder = Path(database).with_name(Path(database).name + ".idslots")
    folder.mkdir(exist_ok=True)
    for slot in random.sample(range(SLOTS), SLOTS):
        handle = (folder / str(slot)).open("ab")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        _held.append(handle)
        return slot
    return None


def _claim_postgres(dsn: str) -> int | None:
    """Start the keeper thread and wait for its first claim (at most 15 s)."""
    first = threading.Event()
    answer: list[int | None] = []

    def keep() -> None:
        asyncio.run(_keep_postgres(dsn, first, answer))

    threading.Thread(target=keep, name="kith-id-slot", daemon=True).start()
    if not first.wait(15.0) or not answer:
        raise RuntimeError("no id slot claimed on PostgreSQL (see the log above)")
    return answer[0]


async def _keep_postgres(dsn: str, first: threading.Event, answer: list[int | None]) -> None:
    import asyncpg  # the PostgreSQL driver, only needed here

    while True:
        try:
            conn = await asyncpg.connect(dsn, timeout=10)
            slot = None
            for candidate in random.sample(range(SLOTS), SLOTS):
                if await conn.fetchval(
                    "SELECT pg_try_advisory_lock($1, $2)", _ADVISORY_CLASS, candidate
                ):
                    slot = candidate
                    break
            if not first.is_set():
                answer.append(slot)
                first.set()
            elif slot is not None:
                kith_db.use_id_slot(slot)
            if slot is None:
                await conn.close()
                return
            while True:  # hold it; a lost connection means the slot may be someone else's
                await asyncio.sleep(_CHECK_SECONDS)
                await conn.fetchval("SELECT 1")
        except Exception:  # noqa: BLE001 — keep trying: the process must keep its slot
            if not first.is_set():
                log.warning("could not claim an id slot on PostgreSQL", exc_info=True)
                first.set()  # no answer: the caller keeps a random slot
                return
            log.warning("lost the id slot's connection; claiming again", exc_info=True)
            kith_db.use_id_slot(None)  # random until claimed again
            await asyncio.sleep(5.0)
