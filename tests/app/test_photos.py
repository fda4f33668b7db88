import io

import pytest
from PIL import Image

from app.core.errors import InvalidPhoto, PayloadTooLarge
from app.core.photos import PhotoStore, check_photo
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
