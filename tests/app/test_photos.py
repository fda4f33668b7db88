import hashlib
import io
import random

import pytest
from PIL import Image, PngImagePlugin

from app.photos.store import PhotoStore, check_photo
from app.platform.errors import InvalidPhoto, PayloadTooLarge
from tests.harness import png_bytes

LIMITS = {"max_bytes": 1_000_000, "max_pixels": 40_000_000}


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_real_images_are_accepted(fmt: str) -> None:
    photo = check_photo(png_bytes((40, 30), fmt), name="p", **LIMITS)
    assert (photo.width, photo.height) == (40, 30)
    assert photo.content_type == f"image/{fmt.lower()}"


def test_text_posing_as_a_photo_is_refused() -> None:
    with pytest.raises(InvalidPhoto):
        check_photo(b"hello, I am a JPEG, honest", name="photo.jpg", **LIMITS)


def test_truncated_image_is_refused() -> None:
    data = png_bytes((200, 200), "JPEG")
    with pytest.raises(InvalidPhoto):
        check_photo(data[: len(data) // 2], name="cut.jpg", **LIMITS)


def test_other_image_formats_are_refused() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (10, 10)).save(buf, format="GIF")
    with pytest.raises(InvalidPhoto, match="GIF"):
        check_photo(buf.getvalue(), name="x.gif", **LIMITS)


def test_oversized_photo_is_413() -> None:
    with pytest.raises(PayloadTooLarge):
        check_photo(b"x" * 1_000_001, name="big", **LIMITS)


def test_pixel_bomb_is_refused_before_decoding() -> None:
    buf = io.BytesIO()
    Image.new("1", (8000, 8000)).save(buf, format="PNG")  # 64 M pixels in a few kB
    assert len(buf.getvalue()) < 100_000
    with pytest.raises(InvalidPhoto, match="pixels"):
        check_photo(buf.getvalue(), name="bomb.png", **LIMITS)


def test_store_is_content_addressed(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = PhotoStore(tmp_path)
    photo = check_photo(png_bytes(), name="p", **LIMITS)
    first = store.save(photo)
    assert store.save(photo) == first
    assert first.read_bytes() == photo.data
    assert first.name.startswith(photo.sha256)


def tagged_photo(fmt: str) -> bytes:
    """A photo as a phone writes it: GPS position, camera, time, orientation, a comment."""
    rng = random.Random(3)
    img = Image.new("RGB", (48, 32))
    img.putdata(
        [(rng.randrange(256), rng.randrange(256), rng.randrange(256)) for _ in range(48 * 32)]
    )
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    exif[0x0110] = "Model X"  # Model
    exif[0x0132] = "2026:11:28 07:00:00"  # DateTime
    exif[0x0112] = 6  # Orientation: rotate 90° to show
    gps = exif.get_ifd(0x8825)
    gps.update({1: "N", 2: (30.0, 15.0, 27.5), 3: "E", 4: (120.0, 9.0, 11.2)})
    buf = io.BytesIO()
    if fmt == "PNG":
        info = PngImagePlugin.PngInfo()
        info.add_text("Comment", "taken at home, Building 3")
        img.save(buf, format="PNG", exif=exif, pnginfo=info)
    else:
        img.save(buf, format=fmt, exif=exif, quality=95, lossless=fmt == "WEBP")
    data = buf.getvalue()
    assert b"PhoneMaker" in data
    return data


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_metadata_is_stripped_and_pixels_are_kept(fmt: str) -> None:
    original = tagged_photo(fmt)
    photo = check_photo(original, name="p", **LIMITS)
    assert b"PhoneMaker" not in photo.data and b"Model X" not in photo.data
    assert b"Building 3" not in photo.data
    with Image.open(io.BytesIO(photo.data)) as clean, Image.open(io.BytesIO(original)) as raw:
        exif = clean.getexif()
        assert not exif.get_ifd(0x8825)  # no GPS
        assert set(exif) <= {0x0112}  # at most the orientation
        if fmt == "JPEG":
            assert exif.get(0x0112) == 6  # still shown the right way up
        assert clean.tobytes() == raw.tobytes()  # not re-encoded: the same pixels
    assert hashlib.sha256(photo.data).hexdigest() == photo.sha256


def test_a_broken_container_is_refused() -> None:
    data = bytearray(tagged_photo("JPEG"))
    data[4:6] = b"\xff\xff"  # the first segment's length now runs past the end
    with pytest.raises(InvalidPhoto):
        check_photo(bytes(data), name="bad.jpg", **LIMITS)
