"""Photo checking and storage.

A photo is accepted only if its bytes decode as JPEG, PNG or WebP (the file name and declared
type are ignored), it is within the byte limit, and its pixel count is within the limit, checked
from the header before any decoding (a defence against decompression bombs). Files are stored
under their SHA-256, so a retried upload writes nothing new and a file left by a failed
transaction is harmless. Metadata (EXIF with GPS, XMP, IPTC, text chunks) is stripped before
anything is stored (`app/photos/metadata.py`); the stored bytes, and so the hash, are the clean
ones.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from app.photos import metadata
from app.platform.errors import InvalidPhoto, PayloadTooLarge

FORMATS = {
    "JPEG": ("image/jpeg", "jpg"),
    "PNG": ("image/png", "png"),
    "WEBP": ("image/webp", "webp"),
}
EXTENSIONS = {content_type: ext for content_type, ext in FORMATS.values()}


@dataclass(frozen=True)
class CheckedPhoto:
    data: bytes
    sha256: str
    content_type: str
    extension: str
    width: int
    height: int


def check_photo(data: bytes, *, name: str, max_bytes: int, max_pixels: int) -> CheckedPhoto:
    if len(data) > max_bytes:
        raise PayloadTooLarge(
            f"photo {name!r} is {len(data)} bytes; the limit is {max_bytes}",
            limit_bytes=max_bytes,
        )
    if not data:
        raise InvalidPhoto(f"photo {name!r} is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                fmt = img.format or ""
                width, height = img.size
                if fmt not in FORMATS:
                    raise InvalidPhoto(
                        f"photo {name!r} is {fmt or 'not an image'}; send JPEG, PNG or WebP"
                    )
                if width * height > max_pixels:
                    raise InvalidPhoto(
                        f"photo {name!r} has {width}x{height} pixels; the limit is {max_pixels}"
                    )
                img.load()  # decode fully: a truncated or corrupt file fails here
                orientation = img.getexif().get(0x0112)
        clean = metadata.strip(data, fmt, orientation if isinstance(orientation, int) else None)
        with Image.open(io.BytesIO(clean)) as img:  # what is stored must still decode
            img.load()
    except InvalidPhoto:
        raise
    except (
        UnidentifiedImageError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
    ) as exc:
        raise InvalidPhoto(f"photo {name!r} is not a readable image") from exc
    except (OSError, ValueError, SyntaxError) as exc:  # metadata.Malformed is a ValueError
        raise InvalidPhoto(f"photo {name!r} could not be decoded: {exc}") from exc
    content_type, ext = FORMATS[fmt]
    return CheckedPhoto(clean, hashlib.sha256(clean).hexdigest(), content_type, ext, width, height)


class PhotoStore:
    """Content-addressed files under one directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, sha256: str, extension: str) -> Path:
        return self.root / sha256[:2] / f"{sha256}.{extension}"

    def save(self, photo: CheckedPhoto) -> Path:
        path = self.path_for(photo.sha256, photo.extension)
        if path.exists():
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        with open(tmp, "wb") as fh:
            fh.write(photo.data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        return path

    def delete(self, sha256: str, extension: str) -> bool:
        """Remove a stored photo's bytes (a resident's data erased); False if it was not there.
        The caller checks first that no photo row still names it."""
        try:
            self.path_for(sha256, extension).unlink()
        except FileNotFoundError:
            return False
        return True
