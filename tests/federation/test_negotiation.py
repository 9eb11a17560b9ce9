"""Which Accept headers ask for ActivityPub JSON (servers) and which for the page (browsers)."""

from __future__ import annotations

import pytest

from kith.federation.negotiation import wants_activity_json


@pytest.mark.parametrize(
    "accept",
    [
        "application/activity+json",
        'application/ld+json; profile="https://www.w3.org/ns/activitystreams"',
        "application/ld+json;profile=https://www.w3.org/ns/activitystreams",
        "application/ld+json",
        "APPLICATION/ACTIVITY+JSON",
        "application/activity+json, application/ld+json, text/html;q=0.1",
        "text/html;q=0.5, application/activity+json",
    ],
)
def test_servers_accept_headers__ask_for_activity_json(accept: str) -> None:
    assert wants_activity_json(accept)


@pytest.mark.parametrize(
    "accept",
    [
        "",
        "*/*",
        "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        "application/json",
        "application/activity+json;q=0",
        "application/activity+json; q=0.0, text/html",
        "application/activity+jsonx",
    ],
)
def test_browsers_and_json_clients__get_the_page(accept: str) -> None:
    assert not wants_activity_json(accept)
