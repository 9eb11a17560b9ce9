"""Still-image processing with Pillow: check an upload, then re-encode its pixels only.

An upload is opened with the plugins we accept (JPEG, PNG, WebP, GIF) and nothing else, its
size and pixel count are bounded before anything is decoded, the camera's orientation is
applied, and the pixels are copied into a fresh image, so no EXIF (GPS, camera serial), ICC
or text chunk of the original can reach the saved file. CPU-bound: call from a thread."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import blurhash
from PIL import Image, ImageOps, UnidentifiedImageError

from kith.errors import ValidationFailed

ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF")
# Far above any phone camera (48 MP is 8000×6000), far below what a decompression bomb claims.
MAX_PIXELS = 50_000_000
AVATAR_SIZE = (400, 400)
HEADER_MAX = (1500, 500)
ATTACHMENT_MAX = (2560, 2560)  # long side of the full-size copy of a post's image
PREVIEW_MAX = (400, 400)  # long side of the preview shown in timelines
EMOJI_MAX = (128, 128)  # custom emoji are shown at text size; 128 px is sharp on any screen
EMOJI_FORMATS = ("PNG", "GIF", "WEBP")
BLURHASH_MAX = (64, 64)  # blurhash is computed on a thumbnail this small (pure Python)

# Pillow only warns between its limit and twice its limit; a bomb must be an error everywhere.
# Set once for the process (toggling filters per call is not thread-safe).
warnings.simplefilter("error", Image.DecompressionBombWarning)


class ImageRejected(ValidationFailed):
    """The upload is not an image we accept, or is too large."""


def _open(data: bytes, *, max_bytes: int, field: str) -> Image.Image:
    """The first frame of an accepted image, decoded; raises ImageRejected otherwise."""
    if not data:
        raise ImageRejected("Choose an image file.", field=field)
    if len(data) > max_bytes:
        raise ImageRejected(
            f"The image is too large: at most {max_bytes // (1024 * 1024)} MB.", field=field
        )
    try:
        img = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
        if img.width * img.height > MAX_PIXELS:
            raise ImageRejected(
                f"The image has too many pixels ({img.width}×{img.height}).", field=field
            )
        img.seek(0)  # animated GIF/WebP/PNG: the first frame
        img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageRejected("The image has too many pixels.", field=field) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
        raise ImageRejected(
            "This file is not an image we can use: upload a JPEG, PNG, WebP or GIF.", field=field
        ) from None
    return img


def _pixels_only(img: Image.Image, *, field: str) -> Image.Image:
    """Upright pixels in RGB or RGBA in a new image that carries no metadata at all."""
    try:
        upright = ImageOps.exif_transpose(img) or img
        has_alpha = upright.mode in ("RGBA", "LA", "PA") or (
            upright.mode == "P" and "transparency" in upright.info
        )
        converted = upright.convert("RGBA" if has_alpha else "RGB")
    except (OSError, SyntaxError, ValueError):  # broken EXIF, an exotic pixel mode
        raise ImageRejected("This image could not be read.", field=field) from None
    return Image.frombytes(converted.mode, converted.size, converted.tobytes())


def _encode_webp(img: Image.Image) -> bytes:
    out = io.BytesIO()
    img.save(out, format="WEBP", quality=85, method=4)
    return out.getvalue()


def avatar_from_upload(data: bytes, *, max_bytes: int) -> bytes:
    """A 400×400 WebP avatar (centre-cropped) from an uploaded image; ImageRejected if unfit."""
    with _open(data, max_bytes=max_bytes, field="avatar") as img:
        clean = _pixels_only(img, field="avatar")
    square = ImageOps.fit(clean, AVATAR_SIZE, Image.Resampling.LANCZOS, centering=(0.5, 0.5))
    return _encode_webp(square)


def header_from_upload(data: bytes, *, max_bytes: int) -> bytes:
    """A WebP header of at most 1500×500 (aspect kept) from an uploaded image."""
    with _open(data, max_bytes=max_bytes, field="header") as img:
        clean = _pixels_only(img, field="header")
    clean.thumbnail(HEADER_MAX, Image.Resampling.LANCZOS)
    return _encode_webp(clean)


def emoji_from_upload(
    data: bytes,
    *,
    max_bytes: int,
    field: str = "image",
    formats: tuple[str, ...] = EMOJI_FORMATS,
) -> bytes:
    """A custom emoji as a PNG of at most 128×128 (aspect kept, transparency kept) from an
    image in one of `formats` (uploads: PNG, GIF or WebP, as Mastodon takes them); an animated
    one keeps its first frame. ImageRejected (`field`) if unfit."""
    if len(data) > max_bytes:
        raise ImageRejected(f"The image is too large: at most {max_bytes // 1024} KB.", field=field)
    with _open(data, max_bytes=max_bytes, field=field) as img:
        if img.format not in formats:
            raise ImageRejected("An emoji must be a PNG, GIF or WebP image.", field=field)
        clean = _pixels_only(img, field=field)
    clean.thumbnail(EMOJI_MAX, Image.Resampling.LANCZOS)
    out = io.BytesIO()
    clean.save(out, format="PNG", optimize=True)
    return out.getvalue()


@dataclass(frozen=True)
class ProcessedImage:
    """A post's image, cleaned: full-size and preview WebP files, their sizes, a blurhash."""

    full: bytes
    width: int
    height: int
    preview: bytes
    preview_width: int
    preview_height: int
    blurhash: str


def _blurhash(img: Image.Image) -> str:
    """Blurhash of an image, from a thumbnail of at most 64 px (4×4 components, as Mastodon)."""
    small = img.convert("RGB")
    small.thumbnail(BLURHASH_MAX, Image.Resampling.BILINEAR)
    width, height = small.size
    data = small.tobytes()
    rows = [
        [list(data[(y * width + x) * 3 : (y * width + x) * 3 + 3]) for x in range(width)]
        for y in range(height)
    ]
    return str(blurhash.encode(rows, components_x=4, components_y=4))


def attachment_from_upload(data: bytes, *, max_bytes: int) -> ProcessedImage:
    """A post's image from an upload: upright pixels only (no EXIF/GPS), at most 2560 px on
    the long side, plus a 400 px preview and a blurhash. ImageRejected (field "file") if unfit.
    An animated GIF, PNG or WebP keeps its first frame."""
    with _open(data, max_bytes=max_bytes, field="file") as img:
        clean = _pixels_only(img, field="file")
    clean.thumbnail(ATTACHMENT_MAX, Image.Resampling.LANCZOS)
    preview = clean.copy()
    preview.thumbnail(PREVIEW_MAX, Image.Resampling.LANCZOS)
    return ProcessedImage(
        full=_encode_webp(clean),
        width=clean.width,
        height=clean.height,
        preview=_encode_webp(preview),
        preview_width=preview.width,
        preview_height=preview.height,
        blurhash=_blurhash(preview),
    )
