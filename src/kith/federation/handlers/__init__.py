"""What the `federation.inbox` job does with each kind of activity, one module per family.

Importing this package registers every handler in `processing.ACTIVITY_HANDLERS`. Each
handler is idempotent (a job may run twice) and assumes `origin.check_origin` already passed;
the rules it adds (whose object may change, which audience stays) are in its module."""

from kith.federation.handlers import (  # noqa: F401
    flags,
    follows,
    interactions,
    moves,
    notes,
    people,
)
