"""The real client library, Mastodon.py, against a running Kith: the paths apps take."""

from __future__ import annotations

import asyncio
import re
import threading
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from mastodon import Mastodon, StreamListener
from mastodon.errors import MastodonNotFoundError, MastodonUnauthorizedError

from kith.config import Settings
from tests.live_server import live_server
from tests.world import PASSWORD, person

CSRF_RE = re.compile(r'name="csrf_token" value="([0-9a-f]+)"')
REDIRECT = "http://127.0.0.1:9/callback"


class Collector(StreamListener):
    """Collects `update` events from a stream."""

    def __init__(self) -> None:
        self.updates: list[Any] = []
        self.got = threading.Event()
        self.connected = threading.Event()

    def handle_heartbeat(self) -> None:
        # The server's first line is a comment sent once it listens: the stream is live.
        self.connected.set()

    def on_update(self, status: Any) -> None:
        self.updates.append(status)
        self.got.set()


def authorize_in_browser(base: str, url: str, username: str) -> str:
    """Sign in through the web form and approve the app, as a person would; returns the code."""
    with httpx.Client(base_url=base, follow_redirects=False) as web:
        page = web.get("/auth/sign_in")
        token = CSRF_RE.search(page.text).group(1)  # type: ignore[union-attr]
        r = web.post(
            "/auth/sign_in", data={"csrf_token": token, "login": username, "password": PASSWORD}
        )
        assert r.status_code == 303
        consent = web.get(url.replace(base, ""))
        assert consent.status_code == 200 and "Authorize" in consent.text
        fields = dict(
            re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', consent.text)
        )
        fields["decision"] = "approve"
        r = web.post("/oauth/authorize", data=fields)
        assert r.status_code == 303
        location = r.headers["location"]
        assert location.startswith(REDIRECT)
        return parse_qs(urlsplit(location).query)["code"][0]


def client_for(base: str, username: str) -> Mastodon:
    client_id, client_secret = Mastodon.create_app(
        "Kith test app",
        scopes=["read", "write", "follow"],
        redirect_uris=REDIRECT,
        api_base_url=base,
    )
    api = Mastodon(client_id=client_id, client_secret=client_secret, api_base_url=base)
    url = api.auth_request_url(redirect_uris=REDIRECT, scopes=["read", "write", "follow"])
    code = authorize_in_browser(base, url, username)
    api.log_in(code=code, redirect_uri=REDIRECT, scopes=["read", "write", "follow"])
    return api


def story(base: str) -> None:
    alice = client_for(base, "alice")
    bob = client_for(base, "bob")
    me = alice.account_verify_credentials()
    assert me.username == "alice" and "source" in me
    bob_acct = bob.account_lookup("bob")
    # Follow and accept: bob is locked
    rel = alice.account_follow(bob_acct.id)
    assert rel.requested and not rel.following
    requests = bob.follow_requests()
    assert [a.username for a in requests] == ["alice"]
    bob.follow_request_authorize(requests[0].id)
    assert alice.account_relationships(bob_acct.id)[0].following
    # Streaming: alice's user stream sees bob's new post arrive
    listener = Collector()
    handle = alice.stream_user(listener, run_async=True, reconnect_async=False)
    try:
        assert listener.connected.wait(10), "the user stream did not open"
        live = bob.status_post("Live from the stream", visibility="private")
        assert listener.got.wait(10), "no update arrived on the user stream"
        assert listener.updates[0].id == live.id
    finally:
        handle.close()
    # Post, reply, poll and vote
    status = bob.status_post(
        "Hello from #Kith via Mastodon.py", visibility="private", language="en"
    )
    assert status.visibility == "private" and status.tags[0].name == "kith"
    home = alice.timeline_home()
    assert status.id in [s.id for s in home]
    reply = alice.status_post("Welcome!", in_reply_to_id=status.id)
    assert reply.in_reply_to_id == status.id
    context = bob.status_context(status.id)
    assert [s.id for s in context.descendants] == [reply.id]
    poll = bob.make_poll(["tea", "coffee"], expires_in=3600)
    poll_status = bob.status_post("Which?", poll=poll)
    voted = alice.poll_vote(poll_status.poll.id, [1])
    assert voted.voted and voted.options[1].votes_count == 1
    # Favourite, boost (of a public post), bookmark
    public = bob.status_post("A public one")
    assert alice.status_favourite(public.id).favourited
    assert alice.status_reblog(public.id).reblog.id == public.id
    assert alice.status_bookmark(public.id).bookmarked
    with pytest.raises(Exception):  # noqa: B017  followers-only posts can't be boosted
        alice.status_reblog(status.id)
    # Edit with history, delete with source for redraft
    edited = bob.status_update(public.id, "A public one, edited")
    assert edited.edited_at is not None
    assert len(bob.status_history(public.id)) == 2
    # Notifications
    kinds = {n.type for n in bob.notifications()}
    assert {"follow", "favourite", "reblog", "mention"} <= kinds
    deleted = alice.status_delete(reply.id)
    assert deleted.text == "Welcome!"
    assert "mention" not in {n.type for n in bob.notifications()}
    # Lists: alice puts bob on a list and reads its timeline
    garden = alice.list_create("Garden friends")
    alice.list_accounts_add(garden.id, [bob_acct.id])
    assert [a.username for a in alice.list_accounts(garden.id)] == ["bob"]
    assert status.id in [s.id for s in alice.timeline_list(garden.id)]
    # Filters: a "warn" filter marks matching statuses in Home
    f = alice.create_filter_v2(
        "No kith", ["home"], "warn", keywords_attributes=[{"keyword": "kith", "whole_word": True}]
    )
    flagged = [s for s in alice.timeline_home() if s.id == status.id][0]
    assert flagged.filtered and flagged.filtered[0].filter.id == f.id
    assert [x.title for x in alice.filters_v2()] == ["No kith"]
    # Search finds public statuses, people and tags through the client library
    found = alice.search_v2("public", resolve=False)
    assert public.id in [s.id for s in found.statuses]
    assert [
        a.username for a in alice.search_v2("bo", resolve=False, result_type="accounts").accounts
    ] == ["bob"]
    # A stranger can't see the followers-only post, and it doesn't leak as 403
    carol = client_for(base, "carol")
    with pytest.raises(MastodonNotFoundError):
        carol.status(status.id)
    assert status.id not in [s.id for s in carol.timeline_public()]
    # A revoked token is a 401
    carol.revoke_access_token()
    with pytest.raises(MastodonUnauthorizedError):
        carol.account_verify_credentials()


async def test_mastodon_py__a_day_in_the_life(settings: Settings, db) -> None:  # type: ignore[no-untyped-def]
    # Given three people, one of them locked
    await person(db, "alice")
    await person(db, "bob", locked=True)
    await person(db, "carol")
    # When a real client library drives the API, Then every step behaves as Mastodon's would
    # (a short heartbeat: Mastodon.py's stream close waits for the next one)
    settings = settings.model_copy(update={"stream_heartbeat_seconds": 0.5})
    with live_server(settings) as base:
        await asyncio.to_thread(story, base)
