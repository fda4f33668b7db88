"""Stripping metadata from photos without re-encoding them.

Phones write where and when a photo was taken, and by which device, into the file (EXIF, XMP,
IPTC, text chunks). gridflow keeps the pixels exactly as taken (they are evidence) and removes
every metadata block, keeping only what is needed to show the image right: the colour profile
and, for JPEG, the orientation (rewritten as a fresh EXIF block holding nothing else).
"""

from __future__ import annotations

import struct

from PIL import Image


class Malformed(ValueError):
    """The container structure could not be walked; the photo is refused."""


def strip_jpeg(data: bytes, orientation: int | None) -> bytes:
    if data[:2] != b"\xff\xd8":
        raise Malformed("no JPEG start marker")
    out = [data[:2]]
    if orientation and orientation != 1:
        exif = Image.Exif()
        exif[0x0112] = orientation
        payload = exif.tobytes()
        out.append(b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload)
    i = 2
    while i < len(data):
        if data[i] != 0xFF:
            raise Malformed(f"expected a marker at byte {i}")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0xDA or marker == 0xD9:  # start of scan / end: the rest is image data
            out.append(data[i:])
            return b"".join(out)
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length
            out.append(data[i : i + 2])
            i += 2
            continue
        if i + 4 > len(data):
            raise Malformed("truncated segment header")
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        end = i + 2 + length
        if length < 2 or end > len(data):
            raise Malformed(f"segment at byte {i} overruns the file")
        # APP1 (EXIF, XMP), APP12/13 (Ducky, IPTC), APP3..APP11, APP15, COM: dropped.
        # APP0 (JFIF), APP2 (ICC profile), APP14 (Adobe colour transform) are kept.
        dropped = (0xE1 <= marker <= 0xEF and marker not in (0xE2, 0xEE)) or marker == 0xFE
        if not dropped:
            out.append(data[i:end])
        i = end
    raise Malformed("no image data")


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_DROP = {b"eXIf", b"tEXt", b"zTXt", b"iTXt", b"tIME"}


def strip_png(data: bytes) -> bytes:
    if not data.startswith(_PNG_SIGNATURE):
        raise Malformed("no PNG signature")
    out = [_PNG_SIGNATURE]
    i = len(_PNG_SIGNATURE)
    while i < len(data):
        if i + 8 > len(data):
            raise Malformed("truncated chunk header")
        length, kind = struct.unpack(">I4s", data[i : i + 8])
        end = i + 12 + length
        if end > len(data):
            raise Malformed(f"chunk {kind!r} overruns the file")
        if kind not in _PNG_DROP:
            out.append(data[i:end])
        i = end
        if kind == b"IEND":
            break
    return b"".join(out)


_WEBP_DROP = {b"EXIF", b"XMP "}


def strip_webp(data: bytes) -> bytes:
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        raise Malformed("no WebP header")
    chunks = []
    i = 12
    while i + 8 <= len(data):
        kind = data[i : i + 4]
        (length,) = struct.unpack("<I", data[i + 4 : i + 8])
        end = i + 8 + length + (length & 1)
        if end > len(data) + 1:
            raise Malformed(f"chunk {kind!r} overruns the file")
        chunk = data[i:end]
        if kind == b"VP8X" and len(chunk) >= 9:
            flags = chunk[8] & ~0x0C  # clear the EXIF (0x08) and XMP (0x04) flags
            chunk = chunk[:8] + bytes([flags]) + chunk[9:]
        if kind not in _WEBP_DROP:
            chunks.append(chunk)
        i = end
    body = b"WEBP" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def strip(data: bytes, fmt: str, orientation: int | None) -> bytes:
    if fmt == "JPEG":
        return strip_jpeg(data, orientation)
    if fmt == "PNG":
        return strip_png(data)
    if fmt == "WEBP":
        return strip_webp(data)
    raise Malformed(f"no metadata stripper for {fmt}")
