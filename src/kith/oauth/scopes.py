"""Mastodon's OAuth scopes and how a granted set satisfies a required scope."""

from __future__ import annotations

from kith.errors import ValidationFailed

READ_SCOPES = frozenset(
    f"read:{s}"
    for s in "accounts blocks bookmarks favourites filters follows lists mutes notifications "
    "search statuses".split()
)
WRITE_SCOPES = frozenset(
    f"write:{s}"
    for s in "accounts blocks bookmarks conversations favourites filters follows lists media "
    "mutes notifications reports statuses".split()
)
# "follow" is Mastodon's old umbrella for relationship management.
FOLLOW_IMPLIES = frozenset(
    {"read:blocks", "read:follows", "read:mutes", "write:blocks", "write:follows", "write:mutes"}
)
TOP_LEVEL = frozenset({"read", "write", "follow", "push", "profile"})
ALL_SCOPES = TOP_LEVEL | READ_SCOPES | WRITE_SCOPES


def parse_scopes(raw: str | None, *, default: str = "read") -> frozenset[str]:
    """Split a space- (or '+'-) separated scope string; unknown scopes are refused."""
    parts = frozenset((raw or default).replace("+", " ").split())
    unknown = parts - ALL_SCOPES
    if unknown:
        raise ValidationFailed(f"Unknown scope: {sorted(unknown)[0]}", field="scope")
    if not parts:
        raise ValidationFailed("No scope requested.", field="scope")
    return parts


def satisfies(granted: frozenset[str], required: str) -> bool:
    """Does a token with `granted` scopes allow an endpoint that requires `required`?
    `read` covers every `read:*`; `follow` covers relationship scopes; `profile` covers
    only verify_credentials (asked for as "profile")."""
    if required in granted:
        return True
    if required == "profile":  # verify_credentials: any account-reading token will do
        return bool(granted & {"read", "read:accounts"})
    top = required.split(":", 1)[0]
    if top in granted and top in ("read", "write"):
        return True
    return "follow" in granted and required in FOLLOW_IMPLIES


def format_scopes(scopes: frozenset[str]) -> str:
    """Scopes as Mastodon writes them: space separated, stable order."""
    order = ["read", "write", "follow", "push", "profile"]
    head = [s for s in order if s in scopes]
    return " ".join(head + sorted(scopes - set(order)))
