"""Lists of accounts (blocks, mutes, follow requests, followers, following) page by the id of
the row behind each person, with a Link header to walk them; and an account's statuses
`tagged` with a hashtag."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select

from kith.accounts.models import Account
from kith.db import utcnow
from kith.graph import service as graph
from kith.graph.models import Block, Follow, FollowRequest, Mute
from kith.posts import service as posts
from kith.posts.models import Visibility
from tests.mastodon_api.conftest import bearer, token_for
from tests.world import person, post, viewer


def _links(r: httpx.Response) -> dict[str, str]:
    """rel → URL of a Link header."""
    out = {}
    for part in r.headers.get("link", "").split(","):
        if part.strip():
            url, rel = part.split(";")
            out[rel.strip().removeprefix('rel="').rstrip('"')] = url.strip().strip("<>")
    return out


async def _walk(
    api: httpx.AsyncClient, url: str, headers: dict[str, str], rel: str
) -> list[list[str]]:
    """Follow Link `rel` from `url` until a page comes back empty; the pages' account ids."""
    pages: list[list[str]] = []
    while True:
        r = await api.get(url, headers=headers)
        assert r.status_code == 200, r.text
        ids = [a["id"] for a in r.json()]
        if not ids:
            assert "link" not in r.headers
            return pages
        pages.append(ids)
        assert len(pages) < 20, "the walk does not end"
        url = _links(r)[rel]


# (endpoint, scope, how alice ends up with each of `others` in the list, row model)
async def _block(db, alice: Account, other: Account) -> None:  # type: ignore[no-untyped-def]
    await graph.block(db, alice.id, other.id)


async def _mute(db, alice: Account, other: Account) -> None:  # type: ignore[no-untyped-def]
    await graph.mute(db, alice.id, other.id)


async def _request(db, alice: Account, other: Account) -> None:  # type: ignore[no-untyped-def]
    await graph.follow(db, other.id, alice.id)  # alice is locked: a request


async def _follower(db, alice: Account, other: Account) -> None:  # type: ignore[no-untyped-def]
    await graph.follow(db, other.id, alice.id)


async def _followed(db, alice: Account, other: Account) -> None:  # type: ignore[no-untyped-def]
    await graph.follow(db, alice.id, other.id)


LISTS = [
    ("/api/v1/blocks", _block, Block, "target_id"),
    ("/api/v1/mutes", _mute, Mute, "target_id"),
    ("/api/v1/follow_requests", _request, FollowRequest, "follower_id"),
    ("/api/v1/accounts/{me}/followers", _follower, Follow, "follower_id"),
    ("/api/v1/accounts/{me}/following", _followed, Follow, "followee_id"),
]


@pytest.mark.parametrize(
    ("endpoint", "make", "model", "column"), LISTS, ids=[row[0] for row in LISTS]
)
async def test_account_list__walks_by_row_id_without_skips_or_repeats(
    api: httpx.AsyncClient,
    db,  # type: ignore[no-untyped-def]
    endpoint: str,
    make,  # type: ignore[no-untyped-def]
    model,  # type: ignore[no-untyped-def]
    column: str,
) -> None:
    # Given alice (locked, so follows to her are requests when that is the list) and seven
    # people, put in her list in the reverse of the order they signed up in — so the row ids
    # and the account ids sort differently
    alice = await person(db, "alice", locked=endpoint.endswith("follow_requests"))
    others = [await person(db, f"p{i}") for i in range(7)]
    for other in reversed(others):
        await make(db, alice, other)
    rows = (await db.scalars(select(model).order_by(model.id.desc()))).all()
    newest_first = [str(getattr(r, column)) for r in rows]
    assert newest_first == [str(o.id) for o in others]  # the last put in is p0
    row_ids = {str(r.id) for r in rows}
    token = bearer(await token_for(db, alice, "read follow"))
    url = endpoint.format(me=alice.id)
    # When she walks it three at a time, older and older along the Link header's "next"
    pages = await _walk(api, f"{url}?limit=3", token, "next")
    # Then she sees everyone once, newest row first
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [i for p in pages for i in p] == newest_first
    # And the cursors in the Link header are the rows' ids, not the accounts'
    first = await api.get(f"{url}?limit=3", headers=token)
    cursor = httpx.URL(_links(first)["next"]).params["max_id"]
    assert cursor in row_ids and cursor not in newest_first
    # When she walks back from the oldest along "prev", then the same pages come, reversed
    last = await api.get(f"{url}?limit=3&max_id={min(int(i) for i in row_ids)}", headers=token)
    assert last.json() == []
    oldest = min(int(i) for i in row_ids)
    back = await _walk(api, f"{url}?limit=3&min_id={oldest - 1}", token, "prev")
    assert [i for p in reversed(back) for i in p] == newest_first
    assert all(len(p) == 3 for p in back[:2])
    # And since_id gives the newest above the cursor, newest first
    second_newest = sorted(row_ids, key=int)[-2]
    r = await api.get(f"{url}?since_id={second_newest}", headers=token)
    assert [a["id"] for a in r.json()] == newest_first[:1]


async def test_account_lists__someone_else_sees_their_own_not_alices(
    api: httpx.AsyncClient, db
) -> None:  # type: ignore[no-untyped-def]
    # Given alice who blocks and mutes people, and mallory who blocks and mutes no one
    alice, mallory = await person(db, "alice"), await person(db, "mallory")
    a, b = await person(db, "a"), await person(db, "b")
    await graph.block(db, alice.id, a.id)
    await graph.mute(db, alice.id, b.id)
    token = bearer(await token_for(db, mallory, "read"))
    # When mallory lists her blocks and mutes, even with alice's cursors, then they are empty
    for url in ("/api/v1/blocks", "/api/v1/mutes", "/api/v1/follow_requests"):
        for query in ("", "?max_id=9223372036854775807", "?min_id=0", "?since_id=0"):
            r = await api.get(url + query, headers=token)
            assert r.status_code == 200 and r.json() == [], (url, query)


async def test_mutes__an_expired_mute_is_not_listed(api: httpx.AsyncClient, db) -> None:  # type: ignore[no-untyped-def]
    # Given alice, who muted a for good and b for a while that is over
    alice, a, b = await person(db, "alice"), await person(db, "a"), await person(db, "b")
    await graph.mute(db, alice.id, a.id)
    await graph.mute(db, alice.id, b.id, duration=60)
    row = await db.get(Mute, (alice.id, b.id))
    row.expires_at = utcnow() - timedelta(seconds=1)
    await db.commit()
    # When she lists her mutes, then only a is there
    token = bearer(await token_for(db, alice, "read:mutes"))
    r = await api.get("/api/v1/mutes", headers=token)
    assert [x["id"] for x in r.json()] == [str(a.id)]


async def test_followers__a_hidden_network_is_an_empty_page_without_link(
    api: httpx.AsyncClient, db
) -> None:  # type: ignore[no-untyped-def]
    # Given alice, who hides her network, and her follower
    alice, fan, stranger = await person(db, "alice"), await person(db, "fan"), await person(db, "s")
    await graph.follow(db, fan.id, alice.id)
    alice.hide_network = True
    await db.commit()
    # When a stranger lists her followers and following, then both are empty, with no cursors
    token = bearer(await token_for(db, stranger, "read"))
    for which in ("followers", "following"):
        r = await api.get(f"/api/v1/accounts/{alice.id}/{which}", headers=token)
        assert r.status_code == 200 and r.json() == [] and "link" not in r.headers


async def test_account_lists__junk_cursors_ignored_junk_limit_422(
    api: httpx.AsyncClient, db
) -> None:  # type: ignore[no-untyped-def]
    alice, a = await person(db, "alice"), await person(db, "a")
    await graph.block(db, alice.id, a.id)
    token = bearer(await token_for(db, alice, "read"))
    # Given cursors that are no ids, then they are ignored (as elsewhere in the API)
    r = await api.get("/api/v1/blocks?max_id=abc&min_id=-1&since_id=1.5", headers=token)
    assert r.status_code == 200 and [x["id"] for x in r.json()] == [str(a.id)]
    # And a limit that is no number is a 422 naming it
    r = await api.get("/api/v1/blocks?limit=lots", headers=token)
    assert r.status_code == 422 and "limit" in r.json()["error"]


# --- an account's statuses, tagged ----------------------------------------------------------


async def test_account_statuses_tagged__only_their_posts_with_the_tag_as_policy_allows(
    api: httpx.AsyncClient, db
) -> None:  # type: ignore[no-untyped-def]
    # Given alice's posts with and without #garden (one followers-only, one a reply), bob's
    # #garden post that alice boosts, and someone else's #garden post
    alice, bob, fan = await person(db, "alice"), await person(db, "bob"), await person(db, "fan")
    await graph.follow(db, fan.id, alice.id)
    first = await post(db, alice, "Sowing #garden")
    await post(db, alice, "No tag here")
    private = await post(db, alice, "Secret #Garden plans", visibility=Visibility.PRIVATE)
    theirs = await post(db, bob, "My #garden")
    await posts.boost(db, viewer(alice), theirs.id)
    reply = await post(db, alice, "@bob lovely #garden", reply_to=theirs)
    other_tag = await post(db, alice, "#gardening is different")
    # When anyone asks for alice's statuses tagged garden
    r = await api.get(f"/api/v1/accounts/{alice.id}/statuses", params={"tagged": "garden"})
    # Then they get her public posts with the tag, newest first: not the followers-only one,
    # not the boost, not bob's, not #gardening
    assert r.status_code == 200
    assert [s["id"] for s in r.json()] == [str(reply.id), str(first.id)]
    # And her follower also gets the followers-only one (the tag's case does not matter)
    token = bearer(await token_for(db, fan, "read"))
    r = await api.get(
        f"/api/v1/accounts/{alice.id}/statuses", params={"tagged": "GARDEN"}, headers=token
    )
    assert [s["id"] for s in r.json()] == [str(reply.id), str(private.id), str(first.id)]
    # And exclude_replies still applies
    r = await api.get(
        f"/api/v1/accounts/{alice.id}/statuses",
        params={"tagged": "garden", "exclude_replies": "true"},
        headers=token,
    )
    assert [s["id"] for s in r.json()] == [str(private.id), str(first.id)]
    # And it pages one at a time along the Link header without skips or repeats
    pages = await _walk(
        api,
        f"/api/v1/accounts/{alice.id}/statuses?tagged=garden&limit=1",
        token,
        "next",
    )
    assert pages == [[str(reply.id)], [str(private.id)], [str(first.id)]]
    # And a tag no post has, or a tag she never used, is an empty list
    for tag in ("nothing", "gardening2", "#"):
        r = await api.get(f"/api/v1/accounts/{alice.id}/statuses", params={"tagged": tag})
        assert r.status_code == 200 and r.json() == [], tag
    assert other_tag.id  # (#gardening exists, and is not #garden)


async def test_account_statuses_tagged__blocked_viewer_gets_nothing(
    api: httpx.AsyncClient, db
) -> None:  # type: ignore[no-untyped-def]
    # Given alice's #garden post, and bob whom she blocks
    alice, bob = await person(db, "alice"), await person(db, "bob")
    await post(db, alice, "Sowing #garden")
    await graph.block(db, alice.id, bob.id)
    token = bearer(await token_for(db, bob, "read"))
    # When bob asks for her tagged statuses, then he gets nothing (404 or empty, never the post)
    r = await api.get(
        f"/api/v1/accounts/{alice.id}/statuses", params={"tagged": "garden"}, headers=token
    )
    assert r.status_code == 404 or r.json() == []
