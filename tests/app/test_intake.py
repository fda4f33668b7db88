import json
from typing import Any

import pytest

from geo.crs import CRS, from_wgs84
from tests.harness import CITY_POINT, Harness, png_bytes


async def test_json_report_is_placed_in_its_grid(h: Harness) -> None:
    r = await h.client.post(
        "/v1/reports",
        json={
            "category": "fire_lane_blocked",
            "description": "消防通道被堵 🚒",
            "location": CITY_POINT,
            "address": "湖畔路 12 号",
        },
        headers=h.auth("resident", "alice"),
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "received"
    assert body["category"] == "fire_lane_blocked"
    grid = body["grid"]
    assert len(grid["code"]) == 14
    assert [p["level"] for p in grid["path"]] == ["street", "community", "unit"]
    assert grid["path"][-1]["code"] == grid["code"]
    assert body["links"]["self"] == f"/v1/reports/{body['id']}"
    assert body["links"]["events"].endswith("/events")


@pytest.mark.parametrize("crs", [CRS.GCJ02, CRS.BD09])
async def test_phone_coordinates_are_converted_before_locating(h: Harness, crs: CRS) -> None:
    # A point near a grid's centre, sent as the phone would send it.
    grid = h.runtime.grids.require().units[37]
    centre = grid.geometry.representative_point()
    lon, lat = from_wgs84(centre.x, centre.y, crs)
    r = await h.client.post(
        "/v1/reports",
        json={"category": "other", "location": {"lat": lat, "lon": lon, "crs": crs.value}},
        headers=h.auth("resident", "alice"),
    )
    assert r.status_code == 201, r.text
    assert r.json()["grid"]["code"] == grid.code


async def test_multipart_report_with_photos(h: Harness) -> None:
    report = {"category": "road_damage", "location": CITY_POINT}
    files = [
        ("report", (None, json.dumps(report), "application/json")),
        ("photos", ("a.png", png_bytes(), "image/png")),
        ("photos", ("b.jpg", png_bytes((50, 50), "JPEG"), "image/jpeg")),
    ]
    r = await h.client.post("/v1/reports", files=files, headers=h.auth("resident", "bob"))
    assert r.status_code == 201, r.text
    report_id = r.json()["id"]
    got = await h.client.get(f"/v1/reports/{report_id}", headers=h.auth("resident", "bob"))
    assert got.json()["photos"] == 2
    stored = list((h.settings.data_dir / "photos").rglob("*.*"))
    assert len(stored) == 2


BAD_JSON: list[tuple[str, Any, int, str]] = [
    (
        "lat out of range",
        {"category": "other", "location": {"lat": 95, "lon": 120.18}},
        422,
        "validation_error",
    ),
    (
        "lon out of range",
        {"category": "other", "location": {"lat": 30.2, "lon": 181}},
        422,
        "validation_error",
    ),
    (
        "outside the city",
        {"category": "other", "location": {"lat": 39.9, "lon": 116.4}},
        422,
        "outside_service_area",
    ),
    (
        "unknown category",
        {"category": "ufo_sighting", "location": CITY_POINT},
        422,
        "unknown_category",
    ),
    (
        "description too long",
        {"category": "other", "location": CITY_POINT, "description": "长" * 2001},
        422,
        "validation_error",
    ),
    (
        "unknown crs",
        {"category": "other", "location": {**CITY_POINT, "crs": "utm"}},
        422,
        "validation_error",
    ),
    ("missing location", {"category": "other"}, 422, "validation_error"),
    (
        "extra field",
        {"category": "other", "location": CITY_POINT, "admin": True},
        422,
        "validation_error",
    ),
]


@pytest.mark.parametrize(
    ("name", "body", "status", "error"), BAD_JSON, ids=[b[0] for b in BAD_JSON]
)
async def test_bad_json_is_refused_and_leaves_nothing(
    h: Harness, name: str, body: Any, status: int, error: str
) -> None:
    before = await h.counts()
    r = await h.client.post("/v1/reports", json=body, headers=h.auth("resident", "alice"))
    assert r.status_code == status, r.text
    assert r.json()["error"] == error
    assert await h.counts() == before


RAW_BODIES = [
    # The JSON reader tolerates the NaN/Infinity literals; the coordinate types refuse them.
    (
        "NaN latitude",
        b'{"category":"other","location":{"lat":NaN,"lon":120.18}}',
        422,
        "validation_error",
    ),
    (
        "Infinity",
        b'{"category":"other","location":{"lat":30.2,"lon":Infinity}}',
        422,
        "validation_error",
    ),
    ("malformed", b'{"category": "other", "location": {', 400, "malformed_json"),
    ("not an object", b"[1, 2, 3]", 422, "validation_error"),
]


@pytest.mark.parametrize(
    ("name", "raw", "status", "error"), RAW_BODIES, ids=[b[0] for b in RAW_BODIES]
)
async def test_malformed_bodies_are_refused(
    h: Harness, name: str, raw: bytes, status: int, error: str
) -> None:
    before = await h.counts()
    r = await h.client.post(
        "/v1/reports",
        content=raw,
        headers={**h.auth("resident", "alice"), "content-type": "application/json"},
    )
    assert r.status_code == status, r.text
    assert r.json()["error"] == error
    assert await h.counts() == before


async def test_nan_as_a_string_is_refused(h: Harness) -> None:
    r = await h.client.post(
        "/v1/reports",
        content=b'{"category":"other","location":{"lat":"NaN","lon":120.18}}',
        headers={**h.auth("resident", "alice"), "content-type": "application/json"},
    )
    assert r.status_code == 422 and r.json()["error"] == "validation_error"


async def test_oversized_photo_is_413_and_leaves_nothing(h: Harness) -> None:
    limit = h.settings.intake.max_photo_bytes
    big = png_bytes() + b"\0" * limit  # a real PNG header, padded past the limit
    files = [
        ("report", (None, json.dumps({"category": "other", "location": CITY_POINT}))),
        ("photos", ("big.png", big, "image/png")),
    ]
    before = await h.counts()
    r = await h.client.post("/v1/reports", files=files, headers=h.auth("resident", "alice"))
    assert r.status_code == 413, r.text
    assert r.json()["error"] == "payload_too_large"
    assert await h.counts() == before


async def test_text_file_posing_as_photo_leaves_nothing(h: Harness) -> None:
    files = [
        ("report", (None, json.dumps({"category": "other", "location": CITY_POINT}))),
        ("photos", ("cat.jpg", b"this is not a picture", "image/jpeg")),
    ]
    before = await h.counts()
    r = await h.client.post("/v1/reports", files=files, headers=h.auth("resident", "alice"))
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "invalid_photo"
    assert await h.counts() == before
    assert not (h.settings.data_dir / "photos").exists()


async def test_too_many_photos(h: Harness) -> None:
    n = h.settings.intake.max_photos + 1
    files = [("report", (None, json.dumps({"category": "other", "location": CITY_POINT})))]
    files += [("photos", (f"{i}.png", png_bytes(), "image/png")) for i in range(n)]
    before = await h.counts()
    r = await h.client.post("/v1/reports", files=files, headers=h.auth("resident", "alice"))
    assert 400 <= r.status_code < 500, r.text
    assert await h.counts() == before


async def test_multipart_without_report_part(h: Harness) -> None:
    files = [("photos", ("a.png", png_bytes(), "image/png"))]
    r = await h.client.post("/v1/reports", files=files, headers=h.auth("resident", "alice"))
    assert r.status_code == 422 and r.json()["error"] == "validation_error"


async def test_unsupported_content_type(h: Harness) -> None:
    r = await h.client.post(
        "/v1/reports",
        content=b"category=other",
        headers={
            **h.auth("resident", "alice"),
            "content-type": "application/x-www-form-urlencoded",
        },
    )
    assert r.status_code == 415 and r.json()["error"] == "unsupported_media_type"


async def test_accepted_report_writes_report_and_outbox_together(h: Harness) -> None:
    before = await h.counts()
    await h.report()
    after = await h.counts()
    assert after["reports"] == before["reports"] + 1
    assert after["outbox"] > before["outbox"]
