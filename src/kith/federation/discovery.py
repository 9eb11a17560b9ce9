"""The discovery documents: WebFinger (RFC 7033), host-meta (RFC 6415) and NodeInfo 2.0/2.1.
Converters only; `federation.service` decides who and what they describe."""

from __future__ import annotations

from importlib import metadata
from typing import Any
from xml.sax.saxutils import quoteattr

from kith.accounts.models import Account
from kith.config import Settings
from kith.federation import uris
from kith.federation.service import Usage

Json = dict[str, Any]
NODEINFO_VERSIONS = ("2.0", "2.1")
PROFILE_PAGE_REL = "http://webfinger.net/rel/profile-page"


def webfinger(settings: Settings, account: Account) -> Json:
    """The JRD of a local account."""
    actor = uris.actor_uri(settings, account.username)
    profile = uris.profile_url(settings, account.username)
    return {
        "subject": f"acct:{account.username}@{settings.domain}",
        "aliases": [actor, profile],
        "links": [
            {"rel": "self", "type": "application/activity+json", "href": actor},
            {"rel": PROFILE_PAGE_REL, "type": "text/html", "href": profile},
        ],
    }


def host_meta(settings: Settings) -> str:
    """The XRD that points old clients at WebFinger's URL template."""
    template = quoteattr(f"{settings.base_url}/.well-known/webfinger?resource={{uri}}")
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<XRD xmlns="http://docs.oasis-open.org/ns/xri/xrd-1.0">\n'
        f'  <Link rel="lrdd" template={template}/>\n'
        "</XRD>\n"
    )


def nodeinfo_links(settings: Settings) -> Json:
    return {
        "links": [
            {
                "rel": f"http://nodeinfo.diaspora.software/ns/schema/{v}",
                "href": f"{settings.base_url}/nodeinfo/{v}",
            }
            for v in NODEINFO_VERSIONS
        ]
    }


def software_version() -> str:
    try:
        return metadata.version("kith")
    except metadata.PackageNotFoundError:  # running from a source tree that isn't installed
        return "0.0.0"


def nodeinfo(version: str, usage: Usage, instance_name: str) -> Json:
    """The NodeInfo document of one schema version (Kith fills the fields both share)."""
    software: Json = {"name": "kith", "version": software_version()}
    return {
        "version": version,
        "software": software,
        "protocols": ["activitypub"],
        "services": {"inbound": [], "outbound": []},
        "openRegistrations": usage.open_registrations,
        "usage": {
            "users": {
                "total": usage.users_total,
                "activeMonth": usage.active_month,
                "activeHalfyear": usage.active_halfyear,
            },
            "localPosts": usage.local_posts,
        },
        "metadata": {"nodeName": instance_name},
    }
