"""Files under the media directory: save under a random name, delete, and resolve a public
path back to a file without ever leaving the directory.

This is the local-directory backend; an S3 backend will offer the same three operations."""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

# Which files may be served, and as what. Anything else under the directory stays private.
CONTENT_TYPES = {
    ".webp": "image/webp",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
}
# folder/name.ext with a plain name: no dot-segments, no backslashes, no hidden files.
_PUBLIC_PATH_RE = re.compile(r"[a-z0-9_]{1,32}(?:/[A-Za-z0-9_-]{1,64}){1,3}\.[a-z0-9]{2,5}")


def save(media_dir: Path, folder: str, data: bytes, extension: str) -> str:
    """Write `data` to media_dir/folder/<random><extension> and return the relative path.

    Written to a temporary name first and renamed, so a reader never sees half a file."""
    name = f"{secrets.token_urlsafe(18)}{extension}"
    target_dir = media_dir / folder
    target_dir.mkdir(parents=True, exist_ok=True)
    tmp = target_dir / f".{name}.tmp"
    tmp.write_bytes(data)
    os.replace(tmp, target_dir / name)
    return f"{folder}/{name}"


def delete(media_dir: Path, relative: str | None) -> None:
    """Remove a stored file if it is there (a missing file is not an error)."""
    path = resolve(media_dir, relative) if relative else None
    if path is not None:
        path.unlink(missing_ok=True)


def resolve(media_dir: Path, relative: str) -> Path | None:
    """The file a public media path names, or None when the path is malformed, escapes the
    directory (through `..`, an absolute path or a symlink) or names no regular file."""
    if not _PUBLIC_PATH_RE.fullmatch(relative) or Path(relative).suffix not in CONTENT_TYPES:
        return None
    root = media_dir.resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        return None
    return path


def content_type(path: Path) -> str:
    """The Content-Type to serve a resolved media file with."""
    return CONTENT_TYPES[path.suffix]
