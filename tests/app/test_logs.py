"""Structured logs: JSON lines with the work's context, a request id per request, and no
secret, token, device secret or report text in any line of a whole demo run."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from app.demo import Demo
from app.platform import logs
from app.platform.db import Database
from tests.app.test_demo import run_on_the_harness_clock
from tests.harness import Harness


@contextlib.contextmanager
def captured(*names: str, level: int = logging.DEBUG) -> Iterator[io.StringIO]:
    """Every line of the named loggers (the root when none), as the JSON formatter writes it."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logs.JsonLines())
    targets = [logging.getLogger(n) for n in names] or [logging.getLogger()]
    before = [(t, t.level) for t in targets]
    for t in targets:
        t.addHandler(handler)
        t.setLevel(level)
    try:
        yield out
    finally:
        for t, was in before:
            t.removeHandler(handler)
            t.setLevel(was)


def lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]


def test_a_line_is_json_with_its_context() -> None:
    log = logging.getLogger("gridflow.test")
    with captured("gridflow.test") as out:
        with logs.bind(request_id="r-1", role="worker"), logs.bind(case_id="c-9"):
            log.info("accepted %s", "t-1", extra={"partition": 3, "offset": 41})
        log.warning("after")
        try:
            raise RuntimeError("token was Bearer abc.def.ghi")
        except RuntimeError:
            log.exception("failed at /v1/feed?ticket=gft1.secret")
    first, second, third = lines(out)
    assert first["message"] == "accepted t-1" and first["level"] == "info"
    assert first["logger"] == "gridflow.test" and first["time"].endswith("+00:00")
    assert (first["request_id"], first["role"], first["case_id"]) == ("r-1", "worker", "c-9")
    assert (first["partition"], first["offset"]) == (3, 41)
    assert "request_id" not in second  # the binding ended with its block
    assert "gft1.secret" not in third["message"] and "[redacted]" in third["message"]
    assert "RuntimeError" in third["exc"] and "abc.def.ghi" not in third["exc"]


def test_people_lines_on_a_terminal_in_development() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    root = logging.getLogger()
    before = (root.level, list(root.handlers))
    try:
        tty = Tty()
        logs.configure(development=True, stream=tty)
        with logs.bind(case_id="c-1"):
            logging.getLogger("gridflow.x").info("hello")
        assert re.search(
            r"\d\d:\d\d:\d\d\.\d{3} INFO gridflow.x: hello  case_id=c-1", tty.getvalue()
        )
        pipe = io.StringIO()
        logs.configure(development=True, stream=pipe)  # replaces the first handler
        logging.getLogger("gridflow.x").info("hello")
        assert json.loads(pipe.getvalue())["message"] == "hello"
        assert tty.getvalue().count("hello") == 1
        assert (
            sum(
                isinstance(h, logging.StreamHandler) and h.stream in (tty, pipe)
                for h in root.handlers
            )
            == 1
        )
    finally:
        for h in [h for h in root.handlers if h not in before[1]]:
            root.removeHandler(h)
        root.setLevel(before[0])


async def test_every_answer_has_a_request_id_and_its_lines_too(h: Harness) -> None:
    with captured("uvicorn.access", level=logging.INFO) as out:
        r = await h.client.get("/v1/catalog/categories", headers={"X-Request-ID": "app-7.3"})
        assert r.headers["x-request-id"] == "app-7.3"
        r = await h.client.get("/v1/reports/mine", headers=h.auth("resident", "alice"))
        made = r.headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", made)
        r = await h.client.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"})
        assert r.headers["x-request-id"] != "bad id\twith spaces"
    access = lines(out)
    by_id = {line.get("request_id"): line for line in access}
    assert "app-7.3" in by_id and made in by_id
    assert by_id[made]["role"] == "resident"  # the role, never the token or the subject
    assert "alice" not in json.dumps(access)


async def test_a_whole_demo_run_logs_no_secret(h: Harness) -> None:
    demo = Demo(h.settings, h.base_url, cases=4, timeout_s=60, clock=h.clock.now)
    issued: list[str] = []
    make = demo.token

    def remembered(role: Any, subject: str) -> str:
        issued.append(token := make(role, subject))
        return token

    demo.token = remembered  # type: ignore[method-assign]

    # At the level gridflow runs at (info; debug is for a developer's machine: libraries print
    # SQL parameters there), the server's and gridflow's lines.
    info = logging.INFO
    with (
        captured(level=info) as root,
        captured("uvicorn.access", "uvicorn.error", level=info) as server,
    ):
        assert await run_on_the_harness_clock(h, demo) == 0
    text = root.getvalue() + server.getvalue()
    lines(root)  # every line of gridflow's is JSON
    assert len(lines(server)) > 20  # a line a request: the whole run is in there
    devices = json.loads((h.settings.data_dir / "demo-devices.json").read_text())
    secrets = {
        "signing secret": h.settings.jwt_secret(),
        "audit key": h.settings.audit_key().decode(),
        "device master key": h.settings.device_master_key().decode(),
        **{f"device secret {d}": k["secret"] for d, k in devices.items()},
        **{f"token {i}": t for i, t in enumerate(set(issued))},
    }
    assert len(issued) > 10
    leaked = [name for name, value in secrets.items() if value in text]
    assert not leaked, leaked
    assert "eyJ" not in text  # no JWT of any kind
    assert not re.search(r"gfs_[A-Za-z0-9_-]{20}", text)  # no device secret of any kind
    assert "网格员迟迟未到场" not in text  # nor what residents wrote


async def test_an_unhandled_error_keeps_its_request_id(h: Harness) -> None:
    async def broken() -> None:
        raise RuntimeError("a bug")

    h.app.add_api_route("/v1/broken-for-a-test", broken)
    with captured("app.http.errors", level=logging.ERROR) as out:
        r = await h.client.get("/v1/broken-for-a-test", headers={"X-Request-ID": "rid-500"})
    assert r.status_code == 500 and r.json()["error"] == "internal_error"
    assert r.headers["x-request-id"] == "rid-500"
    (line,) = lines(out)
    assert line["request_id"] == "rid-500" and "RuntimeError: a bug" in line["exc"]


def test_a_silenced_access_log_stays_silent() -> None:
    access = logging.getLogger("uvicorn.access")
    before = (list(access.handlers), access.propagate)
    root = logging.getLogger()
    kept = (root.level, list(root.handlers))
    try:
        access.handlers, access.propagate = [], False  # uvicorn without --access-log
        logs.configure(stream=io.StringIO())
        assert not access.propagate and not access.hasHandlers()
        access.handlers = [logging.StreamHandler(io.StringIO())]  # uvicorn's own formatting
        logs.configure(stream=io.StringIO())
        assert access.propagate and not access.handlers  # ours, through the root
    finally:
        access.handlers, access.propagate = before
        for handler in [x for x in root.handlers if x not in kept[1]]:
            root.removeHandler(handler)
        root.setLevel(kept[0])


async def test_a_failed_statement_does_not_carry_what_was_written(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    try:
        async with db.engine.connect() as conn:
            with pytest.raises(DBAPIError) as failed:
                await conn.execute(text("SELECT no_such_column, :what"), {"what": "李四 138"})
    finally:
        await db.dispose()
    assert "no_such_column" in str(failed.value) and "李四" not in str(failed.value)
