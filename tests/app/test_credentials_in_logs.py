"""No credential reaches a log: every live endpoint (the WebSocket feed, a report's SSE stream,
a worker's long poll) and the calls around them, against a server logging every request as
`gridflow serve` does; and the stream tickets and token renewal that keep tokens out of URLs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
import websockets
from uvicorn.logging import AccessFormatter
from websockets.exceptions import InvalidStatus

from app.auth.tickets import issue_ticket, read_ticket
from app.auth.tokens import Principal, Role, issue_token
from app.platform.clock import ManualClock
from app.platform.errors import Unauthorized
from app.platform.redact import REDACTED, redact
from tests.app.test_alerts import alert
from tests.harness import CITY_POINT, Harness, copy_data, make_settings


class Collect(logging.Handler):
    """Each line as the server prints it: access lines through uvicorn's own access formatter
    (which reads the record's arguments one by one), the others as their message."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.errors: list[str] = []  # lines the server could not have printed
        self.access = AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s')

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if record.name == "uvicorn.access":
                self.lines.append(self.access.format(record))
            else:
                self.lines.append(record.getMessage())
        except Exception as exc:
            self.errors.append(f"{record.name}: {exc!r}")


@contextlib.contextmanager
def captured() -> Iterator[Collect]:
    """What the server's request loggers and the application's loggers print."""
    handler = Collect()
    loggers = [logging.getLogger(n) for n in ("uvicorn.access", "uvicorn.error", "app", "")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield handler
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


@pytest.fixture
async def loud(tmp_path: Path, template_data: Path, database_url: str | None) -> Harness:
    data = tmp_path / "data"
    copy_data(template_data, data)
    harness = Harness(make_settings(data, database_url), ManualClock(), log_level="info")
    await harness.start()
    try:
        yield harness  # type: ignore[misc]
    finally:
        await harness.stop()


async def test_no_token_ticket_or_device_secret_in_the_logs(loud: Harness) -> None:
    h = loud
    operator = h.token("operator", "ops")
    resident = h.token("resident", "rita")
    worker_id = "w-33010600100101-1"
    worker = h.token("worker", worker_id)
    device = h.device()
    secrets_seen: list[str] = [operator, resident, worker, device["secret"]]
    with captured() as logs:
        r = await h.client.post(
            "/v1/reports",
            headers={"Authorization": f"Bearer {resident}"},
            json={"category": "garbage_overflow", "location": CITY_POINT},
        )
        assert r.status_code == 201
        report_id = r.json()["id"]
        r = await h.alert(alert("log-1"))
        assert r.status_code in (201, 202), r.text
        ws = h.base_url.replace("http", "ws") + "/v1/feed"
        # the feed: with a ticket, with the header, and with a token in the URL (refused)
        ticket = await h.ticket("operator", "ops")
        secrets_seen.append(ticket)
        async with asyncio.timeout(10), websockets.connect(f"{ws}?ticket={ticket}&since=0") as c:
            await c.recv()
        async with websockets.connect(
            ws, additional_headers={"Authorization": f"Bearer {operator}"}
        ):
            pass
        with pytest.raises(InvalidStatus):
            async with websockets.connect(f"{ws}?token={operator}"):
                pass
        # the report's events: ticket, header, a token in the URL (refused)
        events = f"/v1/reports/{report_id}/events"
        sse_ticket = await h.ticket("resident", "rita")
        secrets_seen.append(sse_ticket)
        for path, headers in (
            (f"{events}?ticket={sse_ticket}", {}),
            (events, {"Authorization": f"Bearer {resident}"}),
        ):
            async with asyncio.timeout(10), h.client.stream("GET", path, headers=headers) as s:
                assert s.status_code == 200
                async for line in s.aiter_lines():
                    if line.startswith("retry:"):
                        break
        r = await h.client.get(f"{events}?token={resident}")
        assert r.status_code == 401
        # a worker's long poll
        r = await h.client.get("/v1/tasks?wait=1", headers={"Authorization": f"Bearer {worker}"})
        assert r.status_code == 200
        renewed = await h.client.post(
            "/v1/token/refresh", headers={"Authorization": f"Bearer {operator}"}
        )
        assert renewed.status_code == 200
        secrets_seen.append(renewed.json()["access_token"])
    assert not logs.errors, logs.errors
    printed = "\n".join(logs.lines)
    assert "/v1/feed" in printed and "/events" in printed and "/v1/tasks" in printed
    assert REDACTED in printed  # the URLs that carried a credential were logged, blanked
    for secret in secrets_seen:
        assert secret not in printed
        assert secret[:40] not in printed


def test_redaction_of_urls_and_headers() -> None:
    line = 'GET /v1/feed?since=3&token=eyJ.abc.def&grid=1 "Authorization: Bearer eyJ.x.y"'
    assert redact(line) == (
        f'GET /v1/feed?since=3&token={REDACTED}&grid=1 "Authorization: Bearer {REDACTED}"'
    )
    assert redact("/x?ticket=gft1.a.b") == f"/x?ticket={REDACTED}"
    assert redact("/v1/reports?page=2") == "/v1/reports?page=2"


def test_tickets_are_signed_short_lived_and_carry_the_caller() -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    who = Principal(Role.OPERATOR, "ops-1")
    ticket = issue_ticket("s" * 40, who, now=now, ttl_s=30)
    read = read_ticket("s" * 40, ticket, now=now + timedelta(seconds=29))
    assert read.principal == who and len(read.nonce) == 32
    assert read_ticket("s" * 40, issue_ticket("s" * 40, who, now=now, ttl_s=30), now=now).nonce != (
        read.nonce
    )
    for bad, at in (
        (ticket, now + timedelta(seconds=30)),  # expired
        (ticket[:-2] + ("AA" if not ticket.endswith("AA") else "BB"), now),  # forged
        ("gft1.e30.AAAA", now),
        ("not a ticket", now),
    ):
        with pytest.raises(Unauthorized):
            read_ticket("s" * 40, bad, now=at)
    with pytest.raises(Unauthorized):
        read_ticket("t" * 40, ticket, now=now)  # another deployment's secret


async def test_a_token_is_renewed_within_the_session_and_not_after(h: Harness) -> None:
    auth = h.settings.auth
    assert auth.token_ttl_s <= 24 * 3600  # tokens live hours, not a month
    now = datetime.now(UTC)  # token times are wall-clock times
    fresh = h.token("operator", "ops")
    r = await h.client.post("/v1/token/refresh", headers={"Authorization": f"Bearer {fresh}"})
    assert r.status_code == 200, r.text
    renewed = r.json()["access_token"]
    claims = jwt.decode(renewed, options={"verify_signature": False})
    assert claims["sub"] == "ops" and claims["role"] == "operator"
    assert (
        claims["auth_time"] == jwt.decode(fresh, options={"verify_signature": False})["auth_time"]
    )
    r = await h.client.get("/v1/cases", headers={"Authorization": f"Bearer {renewed}"})
    assert r.status_code == 200
    old_session = issue_token(
        h.runtime.secret,
        role=Role.OPERATOR,
        subject="ops",
        issuer=auth.issuer,
        audience=auth.audience,
        now=now,
        ttl_s=3600,
        auth_time=int((now - timedelta(seconds=auth.session_max_s + 60)).timestamp()),
    )
    r = await h.client.post("/v1/token/refresh", headers={"Authorization": f"Bearer {old_session}"})
    assert r.status_code == 401 and "sign in again" in r.json()["detail"]
