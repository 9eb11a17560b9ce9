"""The origin rule: a server speaks only for what it hosts.

An activity signed by an actor on host A may create, update or delete only objects whose ids
are on host A, and never someone else's object there either (`attributedTo` must be the
actor). Without this rule any server could forge posts "by" anyone, edit or delete them. It is
checked before any activity takes effect (`check_origin`), on top of the inbox's check that
the signing key belongs to the activity's actor."""

from __future__ import annotations

from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

ACTOR_TYPES = frozenset({"Person", "Service", "Application", "Group", "Organization"})
# Activities whose object must be the actor's own (same host, and theirs when it says whose).
OWN_OBJECT_ACTIVITIES = frozenset({"Create", "Update", "Delete"})


class OriginViolation(Exception):
    """The activity touches an object its actor's server does not own."""


@lru_cache(maxsize=4096)  # an inbox delivery asks 5 times, 4 of them for the same few URIs
def origin_of(uri: str) -> str:
    """The authority (host and non-default port, lowercase) of an http(s) URI; "" if it has
    none. Two ids with the same origin are controlled by the same server."""
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        return ""
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return ""
    default = 443 if parts.scheme == "https" else 80
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    return host if port in (None, default) else f"{host}:{port}"


def id_of(value: Any) -> str | None:
    """The id of a reference that is a URI string or an embedded object with `id`."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("id"), str):
        return value["id"]
    return None


def ids_of(value: Any) -> list[str]:
    """The ids of a reference or a list of references (PeerTube attributes videos to a
    Person and a Group)."""
    values = value if isinstance(value, list) else [value]
    return [i for i in (id_of(v) for v in values) if i is not None]


def first_id(value: Any) -> str | None:
    """The id of a single reference, or of the one element of a one-element list."""
    if isinstance(value, list):
        return id_of(value[0]) if len(value) == 1 else None
    return id_of(value)


def type_of(value: Any) -> str:
    """The (first) type of an object, "" if it has none."""
    kind = value.get("type") if isinstance(value, dict) else None
    if isinstance(kind, list):
        kind = next((k for k in kind if isinstance(k, str)), "")
    return kind if isinstance(kind, str) else ""


def _same_origin(uri: str | None, actor_origin: str) -> bool:
    return uri is not None and origin_of(uri) == actor_origin


def check_origin(activity: dict[str, Any]) -> None:
    """Raise OriginViolation unless everything this activity creates, updates or deletes
    belongs to its actor's server (and, where the object says who wrote it, to the actor)."""
    actor = first_id(activity.get("actor"))
    if actor is None or not origin_of(actor):
        raise OriginViolation("the activity has no single http(s) actor")
    origin = origin_of(actor)
    if not _same_origin(id_of(activity), origin):
        raise OriginViolation(f"activity id is not on the actor's host {origin}")
    kind = type_of(activity)
    obj = activity.get("object")
    if kind in OWN_OBJECT_ACTIVITIES:
        _check_own_object(obj, actor, origin, kind)
    elif kind == "Undo":
        undone = obj if isinstance(obj, dict) else None
        if not _same_origin(id_of(obj), origin):
            raise OriginViolation("Undo of an activity from another host")
        if undone is not None and first_id(undone.get("actor")) not in (None, actor):
            raise OriginViolation("Undo of another actor's activity")


def _check_own_object(obj: Any, actor: str, origin: str, kind: str) -> None:
    objects = obj if isinstance(obj, list) else [obj]
    if not objects or any(id_of(o) is None for o in objects):
        raise OriginViolation(f"{kind} without an object id")
    for item in objects:
        if not _same_origin(id_of(item), origin):
            raise OriginViolation(f"{kind} of an object on another host than {origin}")
        if not isinstance(item, dict):
            continue
        if type_of(item) in ACTOR_TYPES:
            if id_of(item) != actor:
                raise OriginViolation(f"{kind} of another actor")
            continue
        authors = ids_of(item.get("attributedTo"))
        if authors and actor not in authors:
            raise OriginViolation(f"{kind} of an object attributed to someone else")
