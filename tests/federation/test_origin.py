"""The origin rule: an actor's server may create, update or delete only its own objects."""

from __future__ import annotations

from typing import Any

import pytest

from kith.federation.origin import OriginViolation, check_origin, origin_of

ANA = "https://a.example/users/ana"
NOTE = {"id": "https://a.example/users/ana/statuses/1", "type": "Note", "attributedTo": ANA}


def activity(kind: str, obj: Any, actor: Any = ANA, **extra: Any) -> dict[str, Any]:
    return {
        "id": "https://a.example/activities/1",
        "type": kind,
        "actor": actor,
        "object": obj,
        **extra,
    }


@pytest.mark.parametrize(
    "act",
    [
        activity("Create", NOTE),
        activity("Update", NOTE),
        activity("Delete", NOTE["id"]),
        activity("Delete", {"id": NOTE["id"], "type": "Tombstone"}),
        activity("Update", {"id": ANA, "type": "Person", "name": "Ana"}),
        activity("Delete", ANA),
        activity("Like", "https://b.example/notes/9"),  # acting on others' objects is fine
        activity("Announce", "https://b.example/notes/9"),
        activity("Follow", "https://b.example/users/bo"),
        activity("Undo", {"id": "https://a.example/likes/1", "type": "Like", "actor": ANA}),
        activity(
            "Create",
            {**NOTE, "attributedTo": [{"type": "Person", "id": ANA}, "https://a.example/c/g"]},
        ),
        activity("Create", NOTE, actor=[ANA]),
    ],
)
def test_check_origin__own_objects__pass(act: dict[str, Any]) -> None:
    check_origin(act)


@pytest.mark.parametrize(
    ("act", "why"),
    [
        (activity("Create", {**NOTE, "id": "https://b.example/notes/1"}), "another host"),
        (activity("Create", "https://b.example/notes/1"), "another host"),
        (activity("Update", {**NOTE, "id": "https://b.example/notes/1"}), "another host"),
        (activity("Delete", "https://b.example/notes/1"), "another host"),
        (
            activity("Update", {**NOTE, "attributedTo": "https://a.example/users/cy"}),
            "someone else",
        ),
        (
            activity("Update", {"id": "https://a.example/users/cy", "type": "Person"}),
            "another actor",
        ),
        (
            activity("Delete", {"id": "https://a.example/users/cy", "type": "Person"}),
            "another actor",
        ),
        (activity("Create", {"type": "Note", "content": "no id"}), "without an object id"),
        (activity("Undo", {"id": "https://b.example/likes/1", "type": "Like"}), "another host"),
        (
            activity(
                "Undo",
                {
                    "id": "https://a.example/f/1",
                    "type": "Follow",
                    "actor": "https://a.example/users/cy",
                },
            ),
            "another actor",
        ),
        ({**activity("Create", NOTE), "id": "https://b.example/activities/1"}, "activity id"),
        (activity("Create", NOTE, actor=[ANA, "https://a.example/users/cy"]), "single"),
        (activity("Create", NOTE, actor="ftp://a.example/ana"), "single"),
    ],
)
def test_check_origin__foreign_objects__are_refused(act: dict[str, Any], why: str) -> None:
    with pytest.raises(OriginViolation, match=why):
        check_origin(act)


def test_origin_of__compares_authorities() -> None:
    assert origin_of("https://A.example:443/x") == "a.example"
    assert origin_of("http://127.0.0.1:8001/users/a") == "127.0.0.1:8001"
    assert origin_of("https://a.example.evil/x") != origin_of("https://a.example/x")
    assert origin_of("javascript:alert(1)") == ""
