"""Keyword filter settings: list, create, edit and delete filters (/settings/filters)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import FormData

from kith.errors import ValidationFailed
from kith.filters import service as filters
from kith.filters.models import Filter, FilterKeyword
from kith.filters.service import FilterInput
from kith.web.deps import Current, check_csrf, get_db, signed_in
from kith.web.forms import form_str
from kith.web.templating import render

router = APIRouter(dependencies=[Depends(check_csrf)])

# Mastodon's choices, in seconds ("" = never).
EXPIRY_CHOICES = [
    ("", "Never"),
    ("1800", "30 minutes"),
    ("3600", "1 hour"),
    ("21600", "6 hours"),
    ("43200", "12 hours"),
    ("86400", "1 day"),
    ("604800", "1 week"),
]
CONTEXT_LABELS = {
    "home": "Home timeline",
    "notifications": "Notifications",
    "public": "Public timelines (Local, hashtags)",
    "thread": "Conversations",
    "account": "Profiles",
}
KEEP = "keep"


def _filter_input(form: FormData) -> tuple[FilterInput, bool]:
    """The form as a FilterInput, and whether the current expiry should be kept."""
    whole_word = form_str(form, "whole_word") == "on"
    keywords = [(line, whole_word) for line in form_str(form, "keywords").splitlines()]
    contexts = [c for c in form.getlist("context") if isinstance(c, str)]
    expiry = form_str(form, "expires_in")
    if expiry not in {value for value, _ in EXPIRY_CHOICES} | {KEEP}:
        raise ValidationFailed("Choose when the filter expires.", field="expires_in")
    data = FilterInput(
        title=form_str(form, "title"),
        keywords=keywords,
        contexts=contexts,
        action=form_str(form, "filter_action", "warn"),
        expires_in=int(expiry) if expiry.isdigit() else None,
    )
    return data, expiry == KEEP


def _form_values(f: Filter, keywords: list[FilterKeyword]) -> dict[str, Any]:
    return {
        "title": f.title,
        "keywords": "\n".join(k.keyword for k in keywords),
        "whole_word": "on" if all(k.whole_word for k in keywords) else "",
        "context": list(f.contexts),
        "filter_action": f.action,
        "expires_in": KEEP if f.expires_at else "",
    }


async def _form_page(
    request: Request,
    db: AsyncSession,
    *,
    editing: Filter | None,
    form: dict[str, Any],
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    return await render(
        request,
        db,
        "settings/filters_form.html",
        {
            "title": "Edit filter" if editing else "New filter",
            "editing": editing,
            "form": form,
            "errors": errors or {},
            "expiry_choices": EXPIRY_CHOICES,
            "context_labels": CONTEXT_LABELS,
            "section": "filters",
        },
        status=status,
    )


def _submitted(form: FormData) -> dict[str, Any]:
    """What the person typed, to show the form again after an error."""
    values: dict[str, Any] = dict(form.items())
    values["context"] = [c for c in form.getlist("context") if isinstance(c, str)]
    return values


@router.get("/settings/filters")
async def filters_page(
    request: Request, db: AsyncSession = Depends(get_db), me: Current = Depends(signed_in)
) -> Response:
    """The person's filters, expired ones marked."""
    return await render(
        request,
        db,
        "settings/filters.html",
        {
            "title": "Filters",
            "filters": await filters.list_filters(db, me.viewer),
            "context_labels": CONTEXT_LABELS,
            "section": "filters",
        },
    )


@router.get("/settings/filters/new")
async def new_filter_page(
    request: Request, db: AsyncSession = Depends(get_db), me: Current = Depends(signed_in)
) -> Response:
    defaults = {"whole_word": "on", "context": ["home", "public"], "filter_action": "warn"}
    return await _form_page(request, db, editing=None, form=defaults)


@router.post("/settings/filters")
async def create_filter(
    request: Request, db: AsyncSession = Depends(get_db), me: Current = Depends(signed_in)
) -> Response:
    form = await request.form()
    try:
        data, _ = _filter_input(form)
        await filters.create_filter(
            db,
            me.viewer,
            title=data.title,
            keywords=data.keywords,
            contexts=data.contexts,
            action=data.action,
            expires_in=data.expires_in,
        )
    except ValidationFailed as err:
        return await _form_page(
            request,
            db,
            editing=None,
            form=_submitted(form),
            errors={err.field or "form": err.message},
            status=422,
        )
    return RedirectResponse("/settings/filters", status_code=303)


@router.get("/settings/filters/{filter_id:int}/edit")
async def edit_filter_page(
    request: Request,
    filter_id: int,
    db: AsyncSession = Depends(get_db),
    me: Current = Depends(signed_in),
) -> Response:
    f, keywords = await filters.get_filter(db, me.viewer, filter_id)
    return await _form_page(request, db, editing=f, form=_form_values(f, keywords))


@router.post("/settings/filters/{filter_id:int}")
async def update_filter(
    request: Request,
    filter_id: int,
    db: AsyncSession = Depends(get_db),
    me: Current = Depends(signed_in),
) -> Response:
    form = await request.form()
    f, _ = await filters.get_filter(db, me.viewer, filter_id)
    try:
        data, keep = _filter_input(form)
        await filters.update_filter(db, me.viewer, filter_id, data, keep_expiry=keep)
    except ValidationFailed as err:
        return await _form_page(
            request,
            db,
            editing=f,
            form=_submitted(form),
            errors={err.field or "form": err.message},
            status=422,
        )
    return RedirectResponse("/settings/filters", status_code=303)


@router.post("/settings/filters/{filter_id:int}/delete")
async def delete_filter(
    request: Request,
    filter_id: int,
    db: AsyncSession = Depends(get_db),
    me: Current = Depends(signed_in),
) -> Response:
    await filters.delete_filter(db, me.viewer, filter_id)
    return RedirectResponse("/settings/filters", status_code=303)
