"""Search and filters through the API: visibility holds, filters apply and stream."""

from __future__ import annotations

import httpx

from kith.posts.models import Visibility
from tests.mastodon_api.conftest import bearer, token_for
from tests.world import person, post


async def test_search_v2__finds_public_posts_accounts_and_tags_but_never_private_ones(
    api: httpx.AsyncClient, db
) -> None:  # type: ignore[no-untyped-def]
    alice, bob = await person(db, "alice"), await person(db, "bob")
    await post(db, alice, "Compost tea recipe #gardening")
    await post(db, alice, "compost secrets for followers", visibility=Visibility.PRIVATE)
    await post(db, alice, "compost by direct @bob", visibility=Visibility.DIRECT)
    token = await token_for(db, await person(db, "carol"))
    body = (await api.get("/api/v2/search", params={"q": "compost"}, headers=bearer(token))).json()
    assert [s["content"] for s in body["statuses"]] == [body["statuses"][0]["content"]]
    assert "recipe" in body["statuses"][0]["content"]
    tags = (
        await api.get(
            "/api/v2/search", params={"q": "garden", "type": "hashtags"}, headers=bearer(token)
        )
    ).json()
    assert [t["name"] for t in tags["hashtags"]] == ["gardening"]
    people = (
        await api.get(
            "/api/v2/search", params={"q": "ali", "type": "accounts"}, headers=bearer(token)
        )
    ).json()
    assert [a["username"] for a in people["accounts"]] == ["alice"]
    # bob, mentioned in the direct post, finds it; the stranger did not
    bob_token = await token_for(db, bob)
    mine = (
        await api.get(
            "/api/v2/search", params={"q": "compost", "type": "statuses"}, headers=bearer(bob_token)
        )
    ).json()
    assert any("direct" in s["content"] for s in mine["statuses"])
    bad = await api.get(
        "/api/v2/search", params={"q": "x", "type": "everything"}, headers=bearer(token)
    )
    assert bad.status_code == 422
    hostile = await api.get("/api/v2/search", params={"q": 'NEAR(" OR *) "'}, headers=bearer(token))
    assert hostile.status_code == 200


async def test_filters_v2__crud_and_applied_as_filtered_or_hidden(
    api: httpx.AsyncClient, db
) -> None:  # type: ignore[no-untyped-def]
    alice, bob = await person(db, "alice"), await person(db, "bob")
    from kith.graph import service as graph

    await graph.follow(db, bob.id, alice.id)
    await post(db, alice, "Spoilers about the finale")
    await post(db, alice, "Weather is nice")
    token = await token_for(db, bob)
    created = await api.post(
        "/api/v2/filters",
        json={
            "title": "No spoilers",
            "context": ["home"],
            "filter_action": "warn",
            "keywords_attributes": [{"keyword": "spoilers", "whole_word": True}],
        },
        headers=bearer(token),
    )
    assert created.status_code == 200, created.text
    f = created.json()
    assert f["keywords"][0]["keyword"] == "spoilers" and f["context"] == ["home"]
    home = (await api.get("/api/v1/timelines/home", headers=bearer(token))).json()
    flagged = {s["content"][:20]: s["filtered"] for s in home}
    assert any(v and v[0]["filter"]["title"] == "No spoilers" for v in flagged.values())
    # Switch to hide: the post disappears
    r = await api.put(
        f"/api/v2/filters/{f['id']}", json={"filter_action": "hide"}, headers=bearer(token)
    )
    assert r.status_code == 200 and r.json()["keywords"][0]["keyword"] == "spoilers"
    home = (await api.get("/api/v1/timelines/home", headers=bearer(token))).json()
    assert all("Spoilers" not in s["content"] for s in home) and len(home) == 1
    # Someone else can't see or delete it
    other = await token_for(db, alice)
    assert (await api.get(f"/api/v2/filters/{f['id']}", headers=bearer(other))).status_code == 404
    assert (
        await api.delete(f"/api/v2/filters/{f['id']}", headers=bearer(token))
    ).status_code == 200
    assert (await api.get("/api/v2/filters", headers=bearer(token))).json() == []
    bad = await api.post(
        "/api/v2/filters", json={"title": "x", "context": ["nowhere"]}, headers=bearer(token)
    )
    assert bad.status_code == 422
