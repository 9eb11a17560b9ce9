"""Mastodon.py, the real client library, using a community as apps do: a `group: true`
account found by search, followed to join, mentioned to post into, read as a timeline."""

from __future__ import annotations

import asyncio

import pytest
from mastodon.errors import MastodonAPIError

from kith.communities import service as communities
from kith.communities.service import CommunityInput
from kith.config import Settings
from tests.live_server import live_server
from tests.mastodon_api.test_mastodon_py import client_for
from tests.world import person


def story(base: str) -> None:
    alice = client_for(base, "alice")
    carol = client_for(base, "carol")
    # Found by search with Lemmy's `!handle`, and by lookup
    found = alice.search_v2("!bikes", resolve=False, result_type="accounts").accounts
    assert [(a.acct, a.group) for a in found] == [("bikes", True)]
    group = alice.account_lookup("bikes")
    assert group.id == found[0].id and group.url == f"{base}/c/bikes"
    # Following joins it
    rel = alice.account_follow(group.id)
    assert rel.following and not rel.requested
    assert alice.account(group.id).followers_count == 2
    # Mentioning it posts into it: the post is the community's newest status
    posted = alice.status_post("@bikes who fixes wheels in town?")
    assert posted.visibility == "public"
    assert [s.id for s in alice.account_statuses(group.id)] == [posted.id]
    # Someone who did not join is refused with the reason, and nothing is posted
    with pytest.raises(MastodonAPIError) as refused:
        carol.status_post("!bikes hi")
    assert refused.value.args[1] == 422 and "join it first" in str(refused.value)
    assert [s.id for s in carol.account_statuses(group.id)] == [posted.id]
    # Unfollowing leaves
    assert not alice.account_unfollow(group.id).following


async def test_mastodon_py__a_community_is_a_group_account(settings: Settings, db) -> None:  # type: ignore[no-untyped-def]
    # Given a community and two people outside it
    owner = await person(db, "olga")
    await person(db, "alice")
    await person(db, "carol")
    await communities.create_community(db, owner.id, "bikes", CommunityInput(name="Bikes"))
    # When a real client library drives the API, Then it behaves as a Mastodon group would
    with live_server(settings) as base:
        await asyncio.to_thread(story, base)
