"""The Mastodon-compatible client API: existing apps work against Kith."""

from fastapi import APIRouter


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
