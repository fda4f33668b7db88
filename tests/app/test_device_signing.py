"""Signed device requests: window, replay, tampering, rotation and revocation."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import update

from app.devices.keys import add_key, sign
from app.models import DeviceKey
from tests.app.test_alerts import alert
from tests.harness import Harness


async def post(h: Harness, raw: bytes, headers: dict[str, str]) -> int:
    return (await h.client.post("/v1/alerts", content=raw, headers=headers)).status_code


async def test_a_signed_alert_is_accepted_once(h: Harness) -> None:
    raw, headers = h.signed(alert("s-1"))
    assert await post(h, raw, headers) == 202
    replay = await h.client.post("/v1/alerts", content=raw, headers=headers)
    assert replay.status_code == 401 and "replay" in replay.json()["detail"]


async def test_tampering_and_bad_signatures_are_refused(h: Harness) -> None:
    before = await h.counts()
    raw, headers = h.signed(alert("s-2"))
    changed = raw.replace(b"fire_lane_blocked", b"street_vending")
    assert await post(h, changed, headers) == 401  # the body changed after signing
    wrong = headers | {"X-Signature": "0" * 64}
    assert await post(h, raw, wrong) == 401
    other = headers | {"X-Device-Key-Id": h.device("cam-002")["key_id"]}
    assert await post(h, raw, other) == 401  # signed with cam-001's secret
    for name in ("X-Device-Key-Id", "X-Timestamp", "X-Signature"):
        missing = {k: v for k, v in headers.items() if k != name}
        r = await h.client.post("/v1/alerts", content=raw, headers=missing)
        assert r.status_code == 401 and r.json()["error"] == "unauthorized"
    assert await post(h, raw, headers | {"X-Timestamp": "soon"}) in (401, 422)
    # Signed for another path: refused here.
    _, elsewhere = h.signed(alert("s-2"), path="/v1/other")
    assert await post(h, raw, elsewhere) == 401
    assert await h.counts() == before


async def test_the_timestamp_must_be_within_five_minutes(h: Harness) -> None:
    now = int(h.clock.now().timestamp())
    for skew, status in ((-301, 401), (301, 401), (-299, 202), (299, 202)):
        raw, headers = h.signed(alert(f"t{skew}"), timestamp=now + skew)
        r = await h.client.post("/v1/alerts", content=raw, headers=headers)
        assert r.status_code == status, (skew, r.text)


async def test_keys_rotate_and_revoke(h: Harness) -> None:
    old = h.device("cam-004")
    master = h.settings.device_master_key()
    async with h.runtime.db.transaction() as uow:
        s = uow.session
        new_id, new_secret = add_key(s, "cam-004", master, h.clock.now())

    def signed_with(key_id: str, secret: str, n: int) -> tuple[bytes, dict[str, str]]:
        body = alert(
            f"rot-{n}", category="illegal_parking", location={"lat": 30.2902, "lon": 120.2113}
        )
        raw, headers = h.signed(body, "cam-004")
        stamp = headers["X-Timestamp"]
        return raw, headers | {
            "X-Device-Key-Id": key_id,
            "X-Signature": sign(secret, stamp, "POST", "/v1/alerts", raw),
        }

    assert await post(h, *signed_with(new_id, new_secret, 1)) == 202  # the new key works
    assert await post(h, *signed_with(old["key_id"], old["secret"], 2)) == 202  # so does the old
    async with h.runtime.db.transaction() as uow:
        s = uow.session
        await s.execute(
            update(DeviceKey)
            .where(DeviceKey.id == old["key_id"])
            .values(revoked_at=datetime.now(UTC))
        )
    assert await post(h, *signed_with(old["key_id"], old["secret"], 3)) == 401
    assert await post(h, *signed_with(new_id, new_secret, 4)) == 202
    # A secret made up for the new key id is useless without the server's master key.
    assert await post(h, *signed_with(new_id, "gfs_guess", 5)) == 401
