"""Ids: each process holds its own slot, so concurrent processes never make the same id."""

from __future__ import annotations

import fcntl
import json
import subprocess
import sys
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

from kith.db import IdGenerator, id_for_time, utcnow

# Claims a slot as a server would, makes ids as fast as it can, prints its slot and ids; it
# stays alive (holding the slot) until its stdin closes.
_CHILD = """
import json, sys
from kith import id_slots
from kith.db import _ids, new_id
id_slots.claim(sys.argv[1])
ids = [new_id() for _ in range(5000)]
print(json.dumps({"slot": _ids.slot, "ids": ids}), flush=True)
sys.stdin.read()
"""


def test_concurrent_processes_hold_distinct_slots_and_never_share_an_id(
    database_url: str,
) -> None:
    children = [_run_child(database_url) for _ in range(6)]
    try:
        outputs = [json.loads(child.stdout.readline()) for child in children]  # type: ignore[union-attr]
    finally:
        for child in children:
            child.communicate(timeout=30)
    slots = [o["slot"] for o in outputs]
    assert len(set(slots)) == len(slots), slots
    all_ids = [i for o in outputs for i in o["ids"]]
    assert len(set(all_ids)) == len(all_ids)
    for o in outputs:
        assert all((i >> IdGenerator.SEQ_BITS) & 0x3F == o["slot"] for i in o["ids"])


def _run_child(database_url: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _CHILD, database_url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


async def _slot_is_free(database_url: str, slot: int) -> bool:
    """Could another process take `slot` now?"""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        path = Path(str(url.database) + ".idslots") / str(slot)
        with path.open("ab") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            fcntl.flock(handle, fcntl.LOCK_UN)
            return True
    conn = await asyncpg.connect(url.set(drivername="postgresql").render_as_string(False))
    try:
        got = await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", 0x6B697468, slot)
        if got:
            await conn.fetchval("SELECT pg_advisory_unlock($1, $2)", 0x6B697468, slot)
        return bool(got)
    finally:
        await conn.close()


async def test_a_slot_is_held_while_its_process_lives_and_freed_when_it_ends(
    database_url: str,
) -> None:
    child = _run_child(database_url)
    try:
        slot = json.loads(child.stdout.readline())["slot"]  # type: ignore[union-attr]
        assert not await _slot_is_free(database_url, slot)
    finally:
        child.communicate(timeout=30)
    assert await _slot_is_free(database_url, slot)


def test_ids_rise_within_a_millisecond_and_borrow_the_next_when_the_counter_runs_out() -> None:
    gen = IdGenerator()
    gen.use_slot(5)
    start = id_for_time(utcnow())
    ids = [gen.next_id() for _ in range(5000)]  # more than 1,024 in most milliseconds
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert ids[0] >= start - (1 << 16)
    assert all((i >> IdGenerator.SEQ_BITS) & 0x3F == 5 for i in ids)
    now = id_for_time(utcnow()) >> 16
    assert (ids[-1] >> 16) <= now + 5  # 5,000 ids borrow at most 5 milliseconds
