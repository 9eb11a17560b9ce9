"""What the web's composers share — the main one (`/posts`) and a community's (`/c/HANDLE/posts`):
uploading the chosen images and creating the post, and the size of body they accept.
The fields themselves are parsed by `web.forms.post_input`; the template parts are in
`_composer_parts.html`."""

from __future__ import annotations

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import FormData

from kith.accounts import service as accounts
from kith.errors import ValidationFailed
from kith.media import service as media
from kith.posts import service as posts
from kith.posts.models import Post
from kith.posts.service import PostInput
from kith.web.deps import Current, declares_body_over, runtime
from kith.web.forms import COMPOSER_IMAGES, image_uploads
from kith.web.settings import UploadTooLarge

# Room for the text fields and the multipart framing beside the images.
_FORM_ALLOWANCE = 1024 * 1024


async def limit_composer_body(request: Request) -> None:
    """Refuse, before anything parses it, a body larger than the composer's images at their
    largest and its text."""
    limit = COMPOSER_IMAGES * runtime(request).settings.max_image_bytes + _FORM_ALLOWANCE
    if declares_body_over(request, limit):
        raise UploadTooLarge(
            f"The upload is too large: at most {limit // (1024 * 1024)} MB.", field="media"
        )


async def publish(
    request: Request, db: AsyncSession, me: Current, form: FormData, data: PostInput
) -> Post:
    """Upload the form's images (with their alt text) and create the post from `data`. On a
    refusal — an image (named by its place, field `media`) or the post itself — what was
    uploaded for it is discarded (the files cannot come back into the form) and the
    ValidationFailed raised again."""
    assert me.account is not None and me.user is not None
    uploaded: list[int] = []
    try:
        await accounts.require_confirmed(db, me.user)
        limit = runtime(request).settings.max_image_bytes
        for image in image_uploads(form):
            try:
                row = await media.upload(
                    db,
                    me.account,
                    await image.file.read(limit + 1),  # a byte past the limit is enough
                    image.file.content_type,
                    description=image.description,
                )
            except ValidationFailed as err:
                message = f"Image {image.index + 1}: {err.message}"
                raise ValidationFailed(message, field="media") from None
            uploaded.append(row.id)
        data.media_ids = uploaded
        return await posts.create_post(db, me.account, data)
    except ValidationFailed:
        await media.discard(db, me.account, uploaded)
        raise
