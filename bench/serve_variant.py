"""`kith` with a proposed Home variant swapped in (see bench/proposed_home.py), so the HTTP
measurements of bench/timelines.py --variants run the proposal inside a real `kith serve`.

    python bench/serve_variant.py window serve --no-worker --port 8001
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import proposed_home  # noqa: E402

from kith.cli import app  # noqa: E402

if __name__ == "__main__":
    variant = sys.argv.pop(1)
    if variant != "current":
        proposed_home.install(variant)
    app()
