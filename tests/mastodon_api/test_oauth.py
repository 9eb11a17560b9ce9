"""OAuth 2: registration, the consent flow with PKCE, code replay, refresh, revoke, scripts."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import subprocess
import sys
from urllib.parse import parse_qs, urlsplit

import httpx
from sqlalchemy import select

from kith.oauth.models import OAuthToken
from tests.mastodon_api.conftest import bearer
from tests.world import Browser, person

REDIRECT = "com.example.app://callback"


async def register(api: httpx.AsyncClient, scopes: str = "read write") -> dict[str, str]:
    r = await api.post(
        "/api/v1/apps", data={"client_name": "Test", "redirect_uris": REDIRECT, "scopes": scopes}
    )
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )
    return verifier, challenge


async def approve(
    web: Browser, app: dict[str, str], challenge: str | None, scope: str = "read write"
) -> str:
    params = {
        "client_id": app["client_id"],
        "redirect_uri": REDIRECT,
        "response_type": "code",
        "scope": scope,
        "state": "xyz",
    }
    if challenge:
        params |= {"code_challenge": challenge, "code_challenge_method": "S256"}
    page = await web.get("/oauth/authorize", params=params)
    assert page.status_code == 200 and "Test" in page.text
    assert "com.example.app:" in page.headers["content-security-policy"]
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page.text))
    fields.pop("csrf_token", None)
    r = await web.post("/oauth/authorize", {**fields, "decision": "approve"})
    assert r.status_code == 303 and r.headers["location"].startswith(REDIRECT)
    query = parse_qs(urlsplit(r.headers["location"]).query)
    assert query["state"] == ["xyz"]
    return query["code"][0]


async def test_authorization_code_with_pkce__then_refresh_and_revoke(
    app_client: Browser, db
) -> None:  # type: ignore[no-untyped-def]
    await person(db, "alice")
    api = app_client.client
    app = await register(api)
    await app_client.sign_in("alice")
    verifier, challenge = pkce()
    code = await approve(app_client, app, challenge)
    token_req = {
        "grant_type": "authorization_code",
        "client_id": app["client_id"],
        "client_secret": app["client_secret"],
        "redirect_uri": REDIRECT,
        "code": code,
    }
    # Wrong verifier: refused
    bad = await api.post("/oauth/token", data={**token_req, "code_verifier": "x" * 43})
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_grant"
    good = await api.post("/oauth/token", data={**token_req, "code_verifier": verifier})
    assert good.status_code == 200, good.text
    tokens = good.json()
    assert tokens["token_type"] == "Bearer" and tokens["scope"] == "read write"
    me = await api.get(
        "/api/v1/accounts/verify_credentials", headers=bearer(tokens["access_token"])
    )
    assert me.json()["username"] == "alice"
    # Refresh rotates: the old access token stops working
    refreshed = await api.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "client_id": app["client_id"],
            "client_secret": app["client_secret"],
            "refresh_token": tokens["refresh_token"],
        },
    )
    assert refreshed.status_code == 200
    old = await api.get(
        "/api/v1/accounts/verify_credentials", headers=bearer(tokens["access_token"])
    )
    assert old.status_code == 401
    new_token = refreshed.json()["access_token"]
    await api.post(
        "/oauth/revoke",
        data={
            "client_id": app["client_id"],
            "client_secret": app["client_secret"],
            "token": new_token,
        },
    )
    assert (
        await api.get("/api/v1/accounts/verify_credentials", headers=bearer(new_token))
    ).status_code == 401


async def test_code_replay__refused_and_revokes_the_first_token(app_client: Browser, db) -> None:  # type: ignore[no-untyped-def]
    await person(db, "alice")
    api = app_client.client
    app = await register(api)
    await app_client.sign_in("alice")
    code = await approve(app_client, app, None)
    req = {
        "grant_type": "authorization_code",
        "client_id": app["client_id"],
        "client_secret": app["client_secret"],
        "redirect_uri": REDIRECT,
        "code": code,
    }
    first = (await api.post("/oauth/token", data=req)).json()["access_token"]
    replay = await api.post("/oauth/token", data=req)
    assert replay.status_code == 400
    assert (
        await api.get("/api/v1/accounts/verify_credentials", headers=bearer(first))
    ).status_code == 401


async def test_redirect_uri_must_match_exactly(app_client: Browser, db) -> None:  # type: ignore[no-untyped-def]
    await person(db, "alice")
    app = await register(app_client.client)
    await app_client.sign_in("alice")
    page = await app_client.get(
        "/oauth/authorize",
        params={
            "client_id": app["client_id"],
            "redirect_uri": REDIRECT + "/evil",
            "response_type": "code",
        },
    )
    assert page.status_code == 400 and "not registered" in page.text


async def test_bad_registrations__422(app_client: Browser) -> None:
    api = app_client.client
    for data in (
        {"client_name": "x", "redirect_uris": "javascript:alert(1)"},
        {"client_name": "x", "redirect_uris": "http://evil.example/cb"},
        {"client_name": "", "redirect_uris": REDIRECT},
        {"client_name": "x", "redirect_uris": REDIRECT, "scopes": "read admin:everything"},
    ):
        r = await api.post("/api/v1/apps", data=data)
        assert r.status_code == 422, data


async def test_client_credentials__app_token_without_a_user(app_client: Browser) -> None:
    api = app_client.client
    app = await register(api)
    r = await api.post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": app["client_id"],
            "client_secret": app["client_secret"],
        },
    )
    token = r.json()["access_token"]
    assert (await api.get("/api/v1/apps/verify_credentials", headers=bearer(token))).json()[
        "name"
    ] == "Test"
    assert (
        await api.get("/api/v1/accounts/verify_credentials", headers=bearer(token))
    ).status_code == 401
    wrong = await api.post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": app["client_id"],
            "client_secret": "nope",
        },
    )
    assert wrong.status_code == 401
    password = await api.post(
        "/oauth/token",
        data={
            "grant_type": "password",
            "client_id": app["client_id"],
            "client_secret": app["client_secret"],
            "username": "a",
            "password": "b",
        },
    )
    assert password.json()["error"] == "unsupported_grant_type"


async def test_development_page__shows_a_token_and_apps_page_revokes_it(
    app_client: Browser, db
) -> None:  # type: ignore[no-untyped-def]
    await person(db, "botmaker")
    await app_client.sign_in("botmaker")
    r = await app_client.post(
        "/settings/development", {"name": "My bot", "scopes": ["read", "write"]}
    )
    token = re.search(r'<code id="access-token">([^<]+)</code>', r.text).group(1)  # type: ignore[union-attr]
    api = app_client.client
    posted = await api.post("/api/v1/statuses", json={"status": "beep"}, headers=bearer(token))
    assert posted.status_code == 200
    apps = await app_client.get("/settings/applications")
    app_id = re.search(r'name="app_id" value="(\d+)"', apps.text).group(1)  # type: ignore[union-attr]
    await app_client.post("/settings/applications/revoke", {"app_id": app_id})
    assert (
        await api.get("/api/v1/accounts/verify_credentials", headers=bearer(token))
    ).status_code == 401
    assert all(t.revoked_at for t in (await db.scalars(select(OAuthToken))).all())


async def test_cli_token_create__prints_a_working_token(settings, db, app_client: Browser) -> None:  # type: ignore[no-untyped-def]
    await person(db, "scripter")
    env = {
        "KITH_DATABASE_URL": settings.database_url,
        "KITH_VAR_DIR": str(settings.var_dir),
        "PATH": "/usr/bin:/bin",
    }
    out = subprocess.run(  # noqa: ASYNC221 (a one-off CLI run)
        [
            sys.executable,
            "-m",
            "kith.cli",
            "token",
            "create",
            "cron job",
            "--user",
            "scripter",
            "--scopes",
            "read write follow",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    token = out.stdout.strip()
    me = await app_client.client.get("/api/v1/accounts/verify_credentials", headers=bearer(token))
    assert me.json()["username"] == "scripter"
