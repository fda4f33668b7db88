"""Hostile input and the answers' headers: limits, strict JSON, Unicode, CORS, no stack traces."""

from __future__ import annotations

import pytest

from tests.conftest import Configured
from tests.harness import CITY_POINT, Harness


async def test_every_answer_carries_the_security_headers(h: Harness) -> None:
    for path in ("/v1/categories", "/v1/grids/locate?lat=1&lon=1", "/v1/cases", "/nope"):
        r = await h.client.get(path)
        assert r.headers["x-content-type-options"] == "nosniff", path
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["referrer-policy"] == "no-referrer"
        assert "default-src 'none'" in r.headers["content-security-policy"]
        assert r.headers["cache-control"] == "no-store"
        assert "strict-transport-security" not in r.headers  # off unless behind TLS
    docs = await h.client.get("/docs")
    assert docs.status_code == 200 and "content-security-policy" not in docs.headers


async def test_no_cross_origin_access_unless_configured(h: Harness) -> None:
    r = await h.client.options(
        "/v1/cases",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert "access-control-allow-origin" not in r.headers


async def test_configured_origins_may_call(configured: Configured) -> None:
    origin = "https://ops.city.example"
    async with configured(http={"cors_origins": [origin], "hsts": True}) as h:
        ok = await h.client.options(
            "/v1/cases", headers={"Origin": origin, "Access-Control-Request-Method": "GET"}
        )
        assert ok.headers["access-control-allow-origin"] == origin
        bad = await h.client.options(
            "/v1/cases",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
        )
        assert "access-control-allow-origin" not in bad.headers
        plain = await h.client.get("/v1/categories")
        assert plain.headers["strict-transport-security"].startswith("max-age=")


@pytest.mark.parametrize(
    "text",
    [
        "井盖缺失，晚上很危险，请尽快处理！",
        "🚧🕳️ manhole open 🚨 ⚠️",
        "שלום العربية mixed with 中文 \u202eRTL override\u202c",
        "zero\u200bwidth and combining e\u0301",
    ],
)
async def test_unicode_text_is_kept_exactly(h: Harness, text: str) -> None:
    body = {"category": "road_damage", "description": text, "location": CITY_POINT}
    r = await h.client.post("/v1/reports", json=body, headers=h.auth("resident", "u1"))
    assert r.status_code == 201, r.text
    got = await h.client.get(f"/v1/reports/{r.json()['id']}", headers=h.auth("resident", "u1"))
    assert got.json()["description"] == text


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b'{"category": "other", "location": {"lat": NaN, "lon": 120.18}}', 422),
        (b'{"category": "other", "location": {"lat": Infinity, "lon": 120.18}}', 422),
        (b'{"category": "other", "location": {"lat": 1e999, "lon": 120.18}}', 422),
        (b'{"category": "other", "location": {"lat": 30.2, "lon": 120.18}, "x": "\xff"}', 400),
        (b"[" * 10_000 + b"]" * 10_000, 400),  # nesting beyond the parser's limit
        (b'{"category": "' + b"a" * 70_000 + b'"}', 413),
    ],
)
async def test_hostile_bodies_get_a_4xx_and_no_trace(h: Harness, raw: bytes, status: int) -> None:
    headers = h.auth("resident", "u2") | {"content-type": "application/json"}
    r = await h.client.post("/v1/reports", content=raw, headers=headers)
    assert r.status_code == status, r.text
    assert "Traceback" not in r.text and 'File "' not in r.text
    assert r.json()["error"]
