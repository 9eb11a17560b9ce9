"""The Mastodon-compatible client API: existing apps work against Kith."""

from typing import Any

from fastapi import APIRouter, Depends


def routers() -> list[APIRouter]:
    """Every router of the client API, in the order they must be matched."""
    from kith.mastodon_api import (
        accounts,
        collections,
        discovery,
        filters,
        instance,
        lists,
        media,
        notifications,
        oauth_routes,
        reports,
        search,
        statuses,
        streaming,
        tags,
        timelines,
        trends,
    )

    # lists before accounts: /accounts/{id}/lists is a list route, not an account action.
    modules = [
        oauth_routes, instance, lists, collections, search, accounts, statuses, timelines,
        notifications, tags, reports, discovery, streaming, filters, media,
        trends,
    ]  # fmt: skip
    return [m.router for m in modules] + [notifications.router_v2]


def guards() -> list[Any]:
    """Dependencies of every API route: include each of `routers()` with them. (Not one
    router holding the others: each level of nesting costs every request a second pass of
    FastAPI's matching over the level's routers.)"""
    from kith.mastodon_api.deps import refuse_nul_characters

    return [Depends(refuse_nul_characters)]
