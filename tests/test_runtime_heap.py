"""kith.runtime.settle_heap_now: what a long-running process does to the cyclic collector
once it has started (in a process of its own: it changes the interpreter for good)."""

from __future__ import annotations

import json
import subprocess
import sys

from kith.runtime import YOUNG_COLLECTION_EVERY

_PROBE = """
import gc, json
from kith.runtime import settle_heap_now
import kith.app  # what a server has loaded by then
before = gc.get_threshold()
settle_heap_now()
print(json.dumps({"before": before, "after": gc.get_threshold(),
                  "frozen": gc.get_freeze_count(), "tracked": len(gc.get_objects())}))
"""


def test_start_up_is_frozen_and_young_objects_are_collected_less_often() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True, timeout=60
    )
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["before"] == [700, 10, 10]  # Python's own, until then
    assert seen["after"] == [YOUNG_COLLECTION_EVERY, 10, 10]
    assert seen["frozen"] > 50_000  # modules, mappers, routes ...
    assert seen["tracked"] < seen["frozen"] / 10  # ... out of the collector's sight
