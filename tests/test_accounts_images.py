"""Avatar and header uploads: what is accepted, what is refused, what is stripped, and how the
files are served back from /media."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import pytest
from PIL import ExifTags, Image
from sqlalchemy import select

from kith.accounts.models import Account
from kith.media import images, storage
from tests.world import Browser, person

MB = 1024 * 1024


def png(size: tuple[int, int] = (64, 48), color: tuple[int, ...] = (10, 120, 200)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()


def jpeg_with_gps(size: tuple[int, int] = (60, 40)) -> bytes:
    """A phone photo: GPS position, camera make, rotation flag and an ICC profile."""
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6  # rotate 90° clockwise to view
    exif[ExifTags.Base.Make] = "SpyCam"
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (48.0, 51.0, 29.0)
    gps[ExifTags.GPS.GPSLongitudeRef] = "E"
    gps[ExifTags.GPS.GPSLongitude] = (2.0, 17.0, 40.0)
    out = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(
        out, "JPEG", exif=exif, icc_profile=b"KITH-ICC-MARKER" * 8
    )
    return out.getvalue()


def png_bomb(width: int = 20_000, height: int = 20_000) -> bytes:
    """A real decompression bomb: a PNG of a few dozen kilobytes that decodes to `width` ×
    `height` pixels (1-bit greyscale, all zero)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    compressor = zlib.compressobj(9)
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed pixels
    rows = row * 1000
    idat = b"".join(compressor.compress(rows) for _ in range(height // 1000))
    idat += compressor.flush()
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def gif_animation() -> bytes:
    frames = [Image.new("P", (30, 30), i) for i in (1, 2, 3)]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return out.getvalue()


# --- the image service -------------------------------------------------------------------


def test_avatar__is_a_400_square_webp_without_any_metadata() -> None:
    # Given a phone photo with GPS and a rotation flag
    photo = jpeg_with_gps((60, 40))
    # When it becomes an avatar
    out = images.avatar_from_upload(photo, max_bytes=MB)
    # Then it is a 400×400 WebP with no EXIF, no GPS, no ICC and no camera name left
    img = Image.open(io.BytesIO(out))
    assert img.format == "WEBP" and img.size == (400, 400)
    assert not img.getexif() and "exif" not in img.info and "icc_profile" not in img.info
    assert b"SpyCam" not in out and b"KITH-ICC-MARKER" not in out and b"Exif" not in out


def test_header__keeps_its_aspect_within_1500_by_500_and_is_turned_upright() -> None:
    # A 60×40 landscape photo flagged "rotate 90°" is a 40×60 portrait once upright
    upright = Image.open(io.BytesIO(images.header_from_upload(jpeg_with_gps(), max_bytes=MB)))
    assert upright.size == (40, 60)
    big = Image.open(io.BytesIO(images.header_from_upload(png((3000, 600)), max_bytes=MB)))
    assert big.size == (1500, 300)


def test_avatar__centre_crop_keeps_the_middle() -> None:
    # A wide image: red bands left and right, green in the middle
    img = Image.new("RGB", (300, 100), (255, 0, 0))
    img.paste((0, 255, 0), (100, 0, 200, 100))
    out = io.BytesIO()
    img.save(out, "PNG")
    avatar = Image.open(io.BytesIO(images.avatar_from_upload(out.getvalue(), max_bytes=MB)))
    r, g, _ = avatar.convert("RGB").getpixel((200, 200))  # type: ignore[misc]
    assert g > 200 and r < 60


def test_accepted_formats__webp_gif_first_frame_and_transparent_png() -> None:
    out = io.BytesIO()
    Image.new("RGB", (20, 20), (1, 2, 3)).save(out, "WEBP")
    assert Image.open(io.BytesIO(images.avatar_from_upload(out.getvalue(), max_bytes=MB)))
    gif = Image.open(io.BytesIO(images.avatar_from_upload(gif_animation(), max_bytes=MB)))
    assert getattr(gif, "n_frames", 1) == 1
    clear = io.BytesIO()
    Image.new("RGBA", (20, 20), (0, 0, 0, 0)).save(clear, "PNG")
    result = Image.open(io.BytesIO(images.avatar_from_upload(clear.getvalue(), max_bytes=MB)))
    assert result.mode == "RGBA"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"<?php system($_GET['c']); ?>",
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 40,  # a PNG signature and nothing sensible after it
        b"<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'/>",
        b"BM" + b"\x00" * 60,
    ],
    ids=["empty", "php", "broken-png", "svg", "bmp"],
)
def test_upload__anything_but_a_jpeg_png_webp_or_gif_is_refused(data: bytes) -> None:
    with pytest.raises(images.ImageRejected):
        images.avatar_from_upload(data, max_bytes=MB)


def test_upload__a_real_bmp_or_tiff_is_refused_even_though_pillow_reads_it() -> None:
    for fmt in ("BMP", "TIFF"):
        out = io.BytesIO()
        Image.new("RGB", (10, 10)).save(out, fmt)
        with pytest.raises(images.ImageRejected):
            images.avatar_from_upload(out.getvalue(), max_bytes=MB)


def test_upload__a_truncated_jpeg_is_refused() -> None:
    with pytest.raises(images.ImageRejected):
        images.avatar_from_upload(jpeg_with_gps((400, 400))[:-300], max_bytes=MB)


def test_upload__a_decompression_bomb_is_refused_before_decoding() -> None:
    # Given a 20000×20000 PNG that is small on disk
    bomb = png_bomb()
    assert len(bomb) < 200_000
    # Then it is refused, for its pixel count
    with pytest.raises(images.ImageRejected) as err:
        images.avatar_from_upload(bomb, max_bytes=MB)
    assert "too many pixels" in err.value.message


# kith.media.images makes this warning an error for the process; pytest resets warning filters
# around each test, so the mark puts the production setting back.
@pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")
def test_upload__a_bomb_in_pillows_warning_range_is_refused_too() -> None:
    # 10000×10000 = 100 MP: above Pillow's 89 MP warning but below its error threshold
    with pytest.raises(images.ImageRejected):
        images.header_from_upload(png_bomb(10_000, 10_000), max_bytes=MB)


def test_upload__larger_than_the_limit_is_refused() -> None:
    with pytest.raises(images.ImageRejected) as err:
        images.avatar_from_upload(png(), max_bytes=100)
    assert "too large" in err.value.message


# --- the files on disk -------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "../secret_key",
        "avatars/../../secret_key",
        "/etc/passwd",
        "avatars/%2e%2e/x.webp",
        "avatars\\x.webp",
        "avatars/.hidden.webp",
        "avatars/x.html",
        "avatars/x.webp/",
    ],
)
def test_storage_resolve__never_leaves_the_media_directory(tmp_path: Path, path: str) -> None:
    (tmp_path / "media" / "avatars").mkdir(parents=True)
    (tmp_path / "secret_key").write_text("s3cret")
    (tmp_path / "media" / "avatars" / "x.html").write_text("<script>")
    assert storage.resolve(tmp_path / "media", path) is None


def test_storage_resolve__refuses_a_symlink_out_of_the_directory(tmp_path: Path) -> None:
    (tmp_path / "media" / "avatars").mkdir(parents=True)
    (tmp_path / "outside.webp").write_bytes(b"x")
    (tmp_path / "media" / "avatars" / "link.webp").symlink_to(tmp_path / "outside.webp")
    assert storage.resolve(tmp_path / "media", "avatars/link.webp") is None


# --- through the settings page -----------------------------------------------------------


async def upload(b: Browser, kind: str, data: bytes, filename: str = "me.png"):  # type: ignore[no-untyped-def]
    await b.get("/settings/profile")
    return await b.client.post(
        f"/settings/profile/{kind}",
        data={"csrf_token": b.csrf},
        files={kind: (filename, data, "image/png")},
    )


async def avatar_path(rt) -> str | None:  # type: ignore[no-untyped-def]
    async with rt.sessions() as s:
        return await s.scalar(select(Account.avatar_path).where(Account.username_key == "wren"))


async def test_avatar_upload__is_stored_served_and_replaced(settings, rt, db, app_client) -> None:  # type: ignore[no-untyped-def]
    # Given wren signed in
    await person(db, "wren")
    await app_client.sign_in("wren")
    # When they upload a photo with GPS data
    r = await upload(app_client, "avatar", jpeg_with_gps(), "holiday.jpg")
    assert r.status_code == 303, r.text
    path = await avatar_path(rt)
    assert path and path.startswith("avatars/") and path.endswith(".webp")
    # Then it is served as WebP with a long cache, without the GPS data
    served = await app_client.get(f"/media/{path}")
    assert served.status_code == 200 and served.headers["content-type"] == "image/webp"
    assert "immutable" in served.headers["cache-control"]
    assert served.headers["x-content-type-options"] == "nosniff"
    assert b"SpyCam" not in served.content and not Image.open(io.BytesIO(served.content)).getexif()
    # And the profile shows it
    assert f'src="/media/{path}"' in (await app_client.get("/@wren")).text
    # When they upload another, the old file is deleted
    assert (await upload(app_client, "avatar", png())).status_code == 303
    assert (await app_client.get(f"/media/{path}")).status_code == 404
    assert not (settings.effective_media_dir / path).exists()
    # When they remove it, the file goes too
    newer = await avatar_path(rt)
    await app_client.get("/settings/profile")
    r = await app_client.post("/settings/profile/avatar", {"remove": "on"})
    assert r.status_code == 303 and await avatar_path(rt) is None
    assert not (settings.effective_media_dir / str(newer)).exists()


async def test_header_upload__is_stored_within_1500_by_500(settings, rt, db, app_client) -> None:  # type: ignore[no-untyped-def]
    await person(db, "wren")
    await app_client.sign_in("wren")
    assert (await upload(app_client, "header", png((2400, 1200)))).status_code == 303
    async with rt.sessions() as s:
        path = await s.scalar(select(Account.header_path))
    assert path and path.startswith("headers/")
    served = await app_client.get(f"/media/{path}")
    assert Image.open(io.BytesIO(served.content)).size == (1000, 500)


async def test_upload__a_text_file_renamed_png_is_refused_with_a_form_error(
    settings, rt, db, app_client
) -> None:  # type: ignore[no-untyped-def]
    await person(db, "wren")
    await app_client.sign_in("wren")
    r = await upload(app_client, "avatar", b"#!/bin/sh\nrm -rf /\n", "cute-cat.png")
    assert r.status_code == 422
    assert 'id="avatar-error"' in r.text and "not an image we can use" in r.text
    assert await avatar_path(rt) is None
    assert not list((settings.effective_media_dir).glob("**/*.webp"))


async def test_upload__a_png_bomb_is_refused(settings, rt, db, app_client) -> None:  # type: ignore[no-untyped-def]
    await person(db, "wren")
    await app_client.sign_in("wren")
    r = await upload(app_client, "header", png_bomb(), "bomb.png")
    assert r.status_code == 422 and "too many pixels" in r.text


async def test_upload__too_large_is_refused_before_it_is_read(settings, rt, db) -> None:  # type: ignore[no-untyped-def]
    from tests.world import browser

    await person(db, "wren")
    small = settings.model_copy(update={"max_avatar_bytes": 10_000})
    async with browser(small) as b:
        await b.sign_in("wren")
        # A body far over the limit: refused on its declared length
        r = await upload(b, "avatar", b"\x00" * 400_000)
        assert r.status_code == 413
        # Just over the limit: refused after reading one byte more than allowed
        r = await upload(b, "avatar", png((200, 200), (1, 2, 3)) + b"\x00" * 12_000)
        assert r.status_code == 422 and "too large" in r.text


async def test_media_route__serves_nothing_outside_the_media_directory(
    settings, rt, app_client
) -> None:  # type: ignore[no-untyped-def]
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    (settings.var_dir / "secret_key").write_text("s3cret")
    (settings.effective_media_dir / "avatars").mkdir(parents=True, exist_ok=True)
    for url in (
        "/media/../secret_key",
        "/media/%2e%2e/secret_key",
        "/media/avatars/..%2f..%2fsecret_key",
        "/media/avatars/missing.webp",
        "/media/",
    ):
        r = await app_client.get(url)
        assert r.status_code == 404, url
        assert "s3cret" not in r.text
