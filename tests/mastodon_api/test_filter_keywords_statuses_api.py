"""Filters one piece at a time (/api/v2/filters/…/keywords, …/statuses): owners only, bad
input is a 422 naming the field, and a filter that targets a status catches it (and boosts
of it) with `status_matches`."""

from __future__ import annotations

import httpx
from sqlalchemy import func, select

from kith.filters.models import FilterKeyword, FilterStatus
from kith.graph import service as graph
from kith.posts import service as posts
from kith.posts.models import Visibility
from tests.mastodon_api.conftest import bearer, token_for
from tests.world import person, post, viewer


async def _filter(api: httpx.AsyncClient, token: dict[str, str], **body: object) -> dict:
    r = await api.post(
        "/api/v2/filters",
        json={"title": "Mine", "context": ["home"], "filter_action": "warn", **body},
        headers=token,
    )
    assert r.status_code == 200, r.text
    return r.json()


def _filtered(home: list[dict], status_id: str) -> list[dict]:
    return next(s["filtered"] for s in home if s["id"] == status_id)


async def test_keywords_one_at_a_time__add_get_edit_delete_and_applied(
    api: httpx.AsyncClient, db
) -> None:  # type: ignore[no-untyped-def]
    # Given bob, who follows alice, and his filter with one keyword
    alice, bob = await person(db, "alice"), await person(db, "bob")
    await graph.follow(db, bob.id, alice.id)
    durian = await post(db, alice, "Durian season is here")
    token = bearer(await token_for(db, bob, "read write"))
    f = await _filter(api, token, keywords_attributes=[{"keyword": "spoiler"}])
    first_id = f["keywords"][0]["id"]
    # When he adds a keyword to it
    r = await api.post(
        f"/api/v2/filters/{f['id']}/keywords",
        json={"keyword": " durian ", "whole_word": False},
        headers=token,
    )
    # Then he gets the FilterKeyword, trimmed, readable by its own id
    assert r.status_code == 200, r.text
    added = r.json()
    assert added["keyword"] == "durian" and added["whole_word"] is False
    got = await api.get(f"/api/v2/filters/keywords/{added['id']}", headers=token)
    assert got.status_code == 200 and got.json() == added
    # And alice's post is marked in his Home with the keyword that caught it
    home = (await api.get("/api/v1/timelines/home", headers=token)).json()
    [result] = _filtered(home, str(durian.id))
    assert result["keyword_matches"] == ["durian"] and result["status_matches"] is None
    # When he edits it (form-encoded, as some clients send), then the change shows everywhere
    r = await api.put(
        f"/api/v2/filters/keywords/{added['id']}",
        data={"keyword": "season", "whole_word": "true"},
        headers=token,
    )
    assert r.status_code == 200 and r.json() == {
        "id": added["id"],
        "keyword": "season",
        "whole_word": True,
    }
    listed = (await api.get(f"/api/v2/filters/{f['id']}/keywords", headers=token)).json()
    assert [k["keyword"] for k in listed] == ["spoiler", "season"]
    home = (await api.get("/api/v1/timelines/home", headers=token)).json()
    assert _filtered(home, str(durian.id))[0]["keyword_matches"] == ["season"]
    # And editing the filter as a whole keeps the keywords' ids
    r = await api.put(f"/api/v2/filters/{f['id']}", json={"title": "Renamed"}, headers=token)
    assert {k["id"] for k in r.json()["keywords"]} == {first_id, added["id"]}
    # When he deletes it, then it is gone and the post is no longer marked
    r = await api.delete(f"/api/v2/filters/keywords/{added['id']}", headers=token)
    assert r.status_code == 200 and r.json() == {}
    gone = await api.get(f"/api/v2/filters/keywords/{added['id']}", headers=token)
    assert gone.status_code == 404
    home = (await api.get("/api/v1/timelines/home", headers=token)).json()
    assert _filtered(home, str(durian.id)) == []


async def test_keywords_and_statuses_of_someone_else__404_and_untouched(
    api: httpx.AsyncClient, db
) -> None:  # type: ignore[no-untyped-def]
    # Given alice's filter, with a keyword and a targeted status
    alice, mallory = await person(db, "alice"), await person(db, "mallory")
    p = await post(db, alice, "Hello")
    alice_token = bearer(await token_for(db, alice, "read write"))
    f = await _filter(api, alice_token, keywords_attributes=[{"keyword": "secret"}])
    kid = f["keywords"][0]["id"]
    r = await api.post(
        f"/api/v2/filters/{f['id']}/statuses", json={"status_id": str(p.id)}, headers=alice_token
    )
    sid = r.json()["id"]
    # When mallory aims at them with a token holding every filter scope
    token = bearer(await token_for(db, mallory, "read write"))
    attempts = [
        ("GET", f"/api/v2/filters/keywords/{kid}", None),
        ("PUT", f"/api/v2/filters/keywords/{kid}", {"keyword": "pwned"}),
        ("DELETE", f"/api/v2/filters/keywords/{kid}", None),
        ("GET", f"/api/v2/filters/{f['id']}/keywords", None),
        ("POST", f"/api/v2/filters/{f['id']}/keywords", {"keyword": "pwned"}),
        ("GET", f"/api/v2/filters/statuses/{sid}", None),
        ("DELETE", f"/api/v2/filters/statuses/{sid}", None),
        ("GET", f"/api/v2/filters/{f['id']}/statuses", None),
        ("POST", f"/api/v2/filters/{f['id']}/statuses", {"status_id": str(p.id)}),
        # and bad input on someone else's filter is still a 404, not a 422 that confirms it
        ("POST", f"/api/v2/filters/{f['id']}/keywords", {"keyword": ""}),
        ("PUT", f"/api/v2/filters/keywords/{kid}", {"keyword": ""}),
        ("POST", f"/api/v2/filters/{f['id']}/statuses", {}),
    ]
    for method, url, body in attempts:
        r = await api.request(method, url, json=body, headers=token)
        # Then each is a 404, as for an id nothing has
        assert r.status_code == 404 and set(r.json()) == {"error"}, (method, url, r.status_code)
    # And alice's filter is as she left it
    mine = (await api.get(f"/api/v2/filters/{f['id']}", headers=alice_token)).json()
    assert [k["keyword"] for k in mine["keywords"]] == ["secret"]
    assert mine["statuses"] == [{"id": sid, "status_id": str(p.id)}]


async def test_bad_keyword_or_status__422_naming_the_field_and_nothing_written(
    api: httpx.AsyncClient, db
) -> None:  # type: ignore[no-untyped-def]
    # Given bob's filter with a keyword and a targeted status, and posts he cannot see
    alice, bob = await person(db, "alice"), await person(db, "bob")
    seen = await post(db, alice, "Public")
    hidden = await post(db, alice, "Followers only", visibility=Visibility.PRIVATE)
    token = bearer(await token_for(db, bob, "read write"))
    f = await _filter(api, token, keywords_attributes=[{"keyword": "taken"}])
    kid = f["keywords"][0]["id"]
    r = await api.post(
        f"/api/v2/filters/{f['id']}/statuses", json={"status_id": str(seen.id)}, headers=token
    )
    assert r.status_code == 200
    keywords_before = await db.scalar(select(func.count()).select_from(FilterKeyword))
    statuses_before = await db.scalar(select(func.count()).select_from(FilterStatus))
    cases = [
        ("POST", f"/api/v2/filters/{f['id']}/keywords", {"keyword": "   "}, "keyword"),
        ("POST", f"/api/v2/filters/{f['id']}/keywords", {}, "keyword"),
        ("POST", f"/api/v2/filters/{f['id']}/keywords", {"keyword": "x" * 201}, "keyword"),
        ("POST", f"/api/v2/filters/{f['id']}/keywords", {"keyword": "taken"}, "keyword"),
        ("POST", f"/api/v2/filters/{f['id']}/keywords", {"keyword": ["x"]}, "keyword"),
        (
            "POST",
            f"/api/v2/filters/{f['id']}/keywords",
            {"keyword": "x", "whole_word": "maybe"},
            "whole_word",
        ),
        ("PUT", f"/api/v2/filters/keywords/{kid}", {"keyword": ""}, "keyword"),
        ("PUT", f"/api/v2/filters/keywords/{kid}", {"whole_word": "maybe"}, "whole_word"),
        ("POST", f"/api/v2/filters/{f['id']}/statuses", {}, "status_id"),
        ("POST", f"/api/v2/filters/{f['id']}/statuses", {"status_id": "nope"}, "status_id"),
        ("POST", f"/api/v2/filters/{f['id']}/statuses", {"status_id": {"a": 1}}, "status_id"),
        ("POST", f"/api/v2/filters/{f['id']}/statuses", {"status_id": "1234567"}, "status_id"),
        # a post bob may not see gets the very answer an unknown one gets (no leak)
        ("POST", f"/api/v2/filters/{f['id']}/statuses", {"status_id": str(hidden.id)}, None),
        ("POST", f"/api/v2/filters/{f['id']}/statuses", {"status_id": str(seen.id)}, "status_id"),
    ]
    unknown_answer = None
    for method, url, body, field in cases:
        # When he sends it
        r = await api.request(method, url, json=body, headers=token)
        # Then 422, and the message names the field
        assert r.status_code == 422, (method, url, body, r.status_code, r.text)
        message = r.json()["error"]
        if field:
            assert message.startswith(field), (body, message)
        if body.get("status_id") == "1234567":
            unknown_answer = message
        if body.get("status_id") == str(hidden.id):
            assert message == unknown_answer
    # And nothing was written or changed
    assert await db.scalar(select(func.count()).select_from(FilterKeyword)) == keywords_before
    assert await db.scalar(select(func.count()).select_from(FilterStatus)) == statuses_before
    got = (await api.get(f"/api/v2/filters/keywords/{kid}", headers=token)).json()
    assert got["keyword"] == "taken" and got["whole_word"] is True


async def test_status_filter__catches_the_status_and_its_boosts__then_hides__then_lets_go(
    api: httpx.AsyncClient, db
) -> None:  # type: ignore[no-untyped-def]
    # Given bob, who follows alice and carol; alice's two posts; carol boosts the first
    alice, bob = await person(db, "alice"), await person(db, "bob")
    carol = await person(db, "carol")
    await graph.follow(db, bob.id, alice.id)
    await graph.follow(db, bob.id, carol.id)
    target = await post(db, alice, "A post bob is tired of")
    other = await post(db, alice, "Something else")
    boost = await posts.boost(db, viewer(carol), target.id)
    token = bearer(await token_for(db, bob, "read write"))
    # When bob makes a filter without keywords (as Mastodon's "filter this post" does) and
    # adds the post to it
    f = await _filter(api, token, title="Tired")
    assert f["keywords"] == [] and f["statuses"] == []
    r = await api.post(
        f"/api/v2/filters/{f['id']}/statuses", data={"status_id": str(target.id)}, headers=token
    )
    assert r.status_code == 200, r.text
    fs = r.json()
    assert fs["status_id"] == str(target.id) and set(fs) == {"id", "status_id"}
    # Then the filter lists it, and the FilterStatus reads by its own id
    listed = (await api.get(f"/api/v2/filters/{f['id']}/statuses", headers=token)).json()
    assert listed == [fs]
    assert (await api.get(f"/api/v2/filters/statuses/{fs['id']}", headers=token)).json() == fs
    assert (await api.get(f"/api/v2/filters/{f['id']}", headers=token)).json()["statuses"] == [fs]
    # And in Home the post and carol's boost of it are marked, with the post's id; the other
    # post is not
    home = (await api.get("/api/v1/timelines/home", headers=token)).json()
    for shown in (str(target.id), str(boost.id)):
        [result] = _filtered(home, shown)
        assert result["status_matches"] == [str(target.id)], shown
        assert result["keyword_matches"] is None
        assert result["filter"]["id"] == f["id"] and result["filter"]["title"] == "Tired"
    assert _filtered(home, str(other.id)) == []
    # And only where the filter applies: alice's profile is another context
    profile = (await api.get(f"/api/v1/accounts/{alice.id}/statuses", headers=token)).json()
    assert _filtered(profile, str(target.id)) == []
    # When the filter hides instead, then both leave Home
    r = await api.put(f"/api/v2/filters/{f['id']}", json={"filter_action": "hide"}, headers=token)
    assert r.status_code == 200 and r.json()["statuses"] == [fs]
    home = (await api.get("/api/v1/timelines/home", headers=token)).json()
    assert [s["id"] for s in home] == [str(other.id)]
    # When he removes the status from the filter, then it is back, unmarked
    r = await api.delete(f"/api/v2/filters/statuses/{fs['id']}", headers=token)
    assert r.status_code == 200 and r.json() == {}
    assert (await api.get(f"/api/v2/filters/statuses/{fs['id']}", headers=token)).status_code == 404
    home = (await api.get("/api/v1/timelines/home", headers=token)).json()
    assert {s["id"] for s in home} == {str(target.id), str(boost.id), str(other.id)}
    assert all(s["filtered"] == [] for s in home)


async def test_status_filter__goes_when_the_post_is_deleted(api: httpx.AsyncClient, db) -> None:  # type: ignore[no-untyped-def]
    # Given bob's filter targeting alice's post
    alice, bob = await person(db, "alice"), await person(db, "bob")
    p = await post(db, alice, "Soon gone")
    token = bearer(await token_for(db, bob, "read write"))
    f = await _filter(api, token)
    r = await api.post(
        f"/api/v2/filters/{f['id']}/statuses", json={"status_id": str(p.id)}, headers=token
    )
    assert r.status_code == 200
    # When alice deletes the post, then the filter no longer lists it (and still exists)
    await posts.delete_post(db, viewer(alice), p.id)
    assert (await api.get(f"/api/v2/filters/{f['id']}/statuses", headers=token)).json() == []
    assert (await api.get(f"/api/v2/filters/{f['id']}", headers=token)).status_code == 200
