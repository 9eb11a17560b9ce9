"""OAuth 2 protocol endpoints (token, revoke) and app registration (POST /api/v1/apps)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession

from kith.errors import ValidationFailed
from kith.mastodon_api.deps import Auth, documented, scoped
from kith.mastodon_api.params import read_params
from kith.oauth import service as oauth
from kith.web.deps import get_db

router = APIRouter()


def _app_entity(
    app: object, secret: str | None = None, *, client_id: bool = True
) -> dict[str, object]:
    from kith.oauth.models import OAuthApp

    assert isinstance(app, OAuthApp)
    data: dict[str, object] = {
        "id": str(app.id),
        "name": app.name,
        "website": app.website,
        "scopes": app.scopes.split(),
        "redirect_uri": "\n".join(app.redirect_uris),
        "redirect_uris": app.redirect_uris,
        "vapid_key": "",
    }
    if client_id:
        data["client_id"] = app.client_id
    if secret:
        data["client_secret"] = secret
        data["client_secret_expires_at"] = 0
    return data


@router.post(
    "/api/v1/apps",
    openapi_extra=documented(
        body={
            "client_name": "string",
            "redirect_uris": "string",
            "scopes": "string",
            "website": "string",
        }
    ),
)
async def create_app(request: Request, db: AsyncSession = Depends(get_db)) -> JSONResponse:
    p = await read_params(request)
    uris = p.get("redirect_uris")
    if isinstance(uris, list):
        uris = [str(u) for u in uris]
    elif uris is None:
        raise ValidationFailed("redirect_uris is required", field="redirect_uris")
    else:
        uris = str(uris)
    new = await oauth.register_app(
        db,
        name=p.text("client_name") or "",
        redirect_uris=uris,
        scopes=p.text("scopes"),
        website=p.text("website"),
    )
    return JSONResponse(_app_entity(new.app, new.client_secret))


@router.get("/api/v1/apps/verify_credentials")
async def verify_app(auth: Auth = Depends(scoped("read", user=False))) -> JSONResponse:
    assert auth.info is not None
    return JSONResponse(_app_entity(auth.info.app, client_id=False))


def _oauth_error(err: oauth.OAuthError) -> JSONResponse:
    return JSONResponse(
        {"error": err.code, "error_description": err.message}, status_code=err.status
    )


@router.post("/oauth/token")
async def token(request: Request, db: AsyncSession = Depends(get_db)) -> JSONResponse:
    """Token endpoint: authorization_code (with PKCE), client_credentials, refresh_token."""
    p = await read_params(request)
    try:
        grant = p.text("grant_type") or ""
        app = await oauth.authenticate_client(
            db, p.text("client_id") or "", p.text("client_secret") or ""
        )
        if grant == "authorization_code":
            issued = await oauth.exchange_code(
                db,
                app,
                code=p.text("code") or "",
                redirect_uri=p.text("redirect_uri") or "",
                code_verifier=p.text("code_verifier"),
            )
        elif grant == "client_credentials":
            issued = await oauth.client_credentials(db, app, p.text("scope"))
        elif grant == "refresh_token":
            issued = await oauth.refresh(db, app, p.text("refresh_token") or "")
        else:
            raise oauth.OAuthError(
                "unsupported_grant_type",
                "Supported grants: authorization_code, client_credentials, refresh_token.",
            )
    except oauth.OAuthError as err:
        return _oauth_error(err)
    body: dict[str, object] = {
        "access_token": issued.access_token,
        "token_type": "Bearer",
        "scope": issued.scope,
        "created_at": issued.created_at,
    }
    if issued.refresh_token:
        body["refresh_token"] = issued.refresh_token
    return JSONResponse(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


@router.post("/oauth/revoke")
async def revoke(request: Request, db: AsyncSession = Depends(get_db)) -> JSONResponse:
    p = await read_params(request)
    try:
        app = await oauth.authenticate_client(
            db, p.text("client_id") or "", p.text("client_secret") or ""
        )
    except oauth.OAuthError as err:
        return _oauth_error(err)
    await oauth.revoke(db, app, p.text("token") or "")
    return JSONResponse({})
