"""Property-based testing of the whole HTTP API from its OpenAPI document (Schemathesis).

`gridflow serve` runs as a real process on the embedded default; every operation gets
generated requests, valid and invalid, with the credentials of the role it is meant for (and
a device signature for sensors). Every answer must be documented, carry the documented
content type, match its schema, and never be a 5xx. Findings become regression tests in
tests/app/test_hostile.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from app.auth.tokens import Role, issue_token
from app.devices.keys import sign

# Per operation: bounded, and the same every run (derandomized). Raise it for a deeper hunt:
# GRIDFLOW_SCHEMATHESIS_EXAMPLES=500 .venv/bin/pytest tests/app/test_schemathesis.py
EXAMPLES = int(os.environ.get("GRIDFLOW_SCHEMATHESIS_EXAMPLES", "30"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


class Server:
    def __init__(self, base_url: str, data_dir: Path) -> None:
        self.base_url = base_url
        self.data_dir = data_dir

    def token(self, role: Role, subject: str) -> str:
        secret = (self.data_dir / "jwt-secret").read_text().strip()
        return issue_token(
            secret,
            role=role,
            subject=subject,
            issuer="gridflow",
            audience="gridflow",
            now=datetime.now(UTC),
            ttl_s=3600,
        )

    def device(self) -> dict[str, Any]:
        return dict(json.loads((self.data_dir / "demo-devices.json").read_text())["cam-001"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("schemathesis")
    port = free_port()
    env = {
        **os.environ,
        "GRIDFLOW_ENV": "test",
        "GRIDFLOW_DATA_DIR": str(data_dir),
        "GRIDFLOW_LIMITS__ENABLED": "false",  # thousands of requests from one address
    }
    env.pop("GRIDFLOW_DB__URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("gridflow serve did not become ready")
            time.sleep(0.2)
        yield Server(base, data_dir)
    finally:
        proc.terminate()
        proc.wait(timeout=20)


ROLE_BY_PREFIX = [
    ("/v1/reports", Role.RESIDENT, "resident-1"),
    ("/v1/me", Role.RESIDENT, "resident-1"),
    ("/v1/tasks", Role.WORKER, "w-33010600100101-1"),
    ("/v1/workers/me/verifications", Role.WORKER, "w-33010600100101-2"),  # an inspector
    ("/v1/workers", Role.WORKER, "w-33010600100101-1"),
    ("/v1/cases", Role.OPERATOR, "ops-1"),
    ("/v1/stats", Role.OPERATOR, "ops-1"),
    ("/v1/photos", Role.OPERATOR, "ops-1"),
    ("/v1/admin", Role.ADMIN, "admin-1"),
]


def credentials(server: Server, path: str) -> dict[str, str]:
    for prefix, role, subject in ROLE_BY_PREFIX:
        if path.startswith(prefix):
            return {"Authorization": f"Bearer {server.token(role, subject)}"}
    return {}


def check_case(case: Any, server: Server) -> int:
    if case.path == "/v1/alerts":
        # Sign exactly the bytes that are sent, as a device does.
        raw = json.dumps(case.body).encode() if case.body is not None else b""
        dev = server.device()
        stamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "X-Device-Key-Id": dev["key_id"],
            "X-Timestamp": stamp,
            "X-Signature": sign(dev["secret"], stamp, "POST", "/v1/alerts", raw),
        }
        response = httpx.post(f"{server.base_url}/v1/alerts", content=raw, headers=headers)
        case.validate_response(response, checks=CHECKS)
        return response.status_code
    if case.path == "/v1/tasks" and case.method == "GET" and isinstance(case.query, dict):
        wait = case.query.get("wait")
        if isinstance(wait, int) and wait > 1:
            case.query["wait"] = 1  # a long poll waits up to a minute: keep the run short
    answer = case.call_and_validate(
        base_url=server.base_url,
        headers=credentials(server, case.path),
        checks=CHECKS,
        timeout=15,
    )
    return int(answer.status_code)


def test_every_operation_answers_as_documented(server: Server) -> None:
    schema = schemathesis.openapi.from_url(f"{server.base_url}/openapi.json")
    failures: list[str] = []
    seen: dict[str, set[int]] = {}
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            label = f"{case.method.upper()} {case.path}"
            seen.setdefault(label, set()).add(check_case(case, server))

        try:
            run()
        except Exception as exc:  # collect every operation's findings, then fail once
            cause = getattr(exc, "exceptions", [exc])[0]
            failures.append(f"{operation.method.upper()} {operation.path}: {cause}"[:3000])
    assert operations >= 20
    assert not failures, "\n\n".join(failures)
    # The generated requests got through the doors: the credentials were accepted, so the
    # answers come from validation and the service itself, not from the authentication.
    for label in ("POST /v1/reports", "GET /v1/cases", "PUT /v1/admin/grids"):
        assert not seen[label] & {401, 403}, (label, seen[label])
    assert 200 in seen["GET /v1/cases"] and 200 in seen["GET /v1/tasks"]
    # A sensor's signature was accepted (422: the generated alert itself was refused); the
    # 401s are generated copies of an earlier request, refused as replays.
    assert 422 in seen["POST /v1/alerts"]
